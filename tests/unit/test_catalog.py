"""The catalog (`dli_airflow.catalog`): loading, code-over-manual resolution, conflicts, fault isolation per file."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from dli_airflow.catalog import StoreSnapshot, open_store, scan
from dli_airflow.errors import DatasetNotFoundError, StoreNotFoundError
from dli_airflow.spec import DatasetStatus, SourceType
from dli_airflow.store import LocalStore

pytestmark = pytest.mark.usefixtures("dli_isolated")

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "specs"
MakeStore = Callable[..., Path]


def spec(name: str, *, owner: str = "me@example.com", extra: str = "", query: str = "SELECT 1 AS one") -> str:
    return f"name: {name}\nowner: {owner}\nquery: {query}\n{extra}"


def _entries(snapshot: StoreSnapshot) -> dict[tuple[str, str], tuple[str, str | None]]:
    return {
        (e.name, e.source.value): (e.status.value, e.overridden_by.value if e.overridden_by else None)
        for e in snapshot.entries
    }


def _tree(root: Path) -> dict[str, tuple[bytes, int]]:
    return {str(p.relative_to(root)): (p.read_bytes(), p.stat().st_mtime_ns) for p in root.rglob("*") if p.is_file()}


# -- the example store --------------------------------------------------------------------------------------


def test_example_store_resolves(examples_store: Path) -> None:
    snapshot = scan(LocalStore(examples_store))
    assert snapshot.problems == ()
    assert _entries(snapshot) == {
        ("analytics.campaign_report", "code"): ("active", None),
        ("analytics.daily_clicks", "code"): ("active", None),
        ("analytics.user_metrics", "code"): ("active", None),
        ("analytics.user_metrics", "manual"): ("overridden", "code"),
        ("reports.ad_hoc_summary", "manual"): ("paused", None),
    }
    assert {e.name for e in snapshot.active} == {
        "analytics.campaign_report",
        "analytics.daily_clicks",
        "analytics.user_metrics",
        "reports.ad_hoc_summary",
    }
    daily = snapshot.get("analytics.daily_clicks")
    assert daily.sql_path == "code/analytics/daily_clicks.sql"
    assert "{{ execution_date }}" in daily.sql


# -- code over manual ---------------------------------------------------------------------------------------


def test_code_wins_and_manual_is_kept_untouched(make_store: MakeStore) -> None:
    root = make_store(
        {
            "code/sales/daily.yaml": spec("sales.daily", owner="code@example.com"),
            "manual/sales/daily.yaml": spec("sales.daily", owner="manual@example.com"),
        }
    )
    before = _tree(root)
    snapshot = scan(LocalStore(root))
    assert _tree(root) == before  # nothing written, renamed or touched
    assert _entries(snapshot) == {
        ("sales.daily", "code"): ("active", None),
        ("sales.daily", "manual"): ("overridden", "code"),
    }
    assert snapshot.get("sales.daily").spec.owner == "code@example.com"
    manual = snapshot.get("sales.daily", SourceType.MANUAL)
    assert manual.spec.owner == "manual@example.com" and not manual.schedules
    assert [e.source for e in snapshot.active] == [SourceType.CODE]


def test_manual_is_active_again_when_the_code_spec_goes_away(make_store: MakeStore) -> None:
    root = make_store(
        {
            "code/sales/daily.yaml": spec("sales.daily", owner="code@example.com"),
            "manual/sales/daily.yaml": spec("sales.daily", owner="manual@example.com"),
        }
    )
    store = LocalStore(root)
    assert scan(store).get("sales.daily").source is SourceType.CODE
    (root / "code/sales/daily.yaml").unlink()
    snapshot = scan(store)
    assert _entries(snapshot) == {("sales.daily", "manual"): ("active", None)}
    assert snapshot.get("sales.daily").spec.owner == "manual@example.com"
    # and back: code deployed again overrides it again
    (root / "code/sales/daily.yaml").write_text(spec("sales.daily", owner="code@example.com"))
    assert _entries(scan(store))[("sales.daily", "manual")] == ("overridden", "code")


def test_code_and_manual_may_sit_at_different_paths(make_store: MakeStore) -> None:
    root = make_store(
        {
            "code/deep/er/x.yaml": spec("sales.daily"),
            "manual/elsewhere.yml": spec("sales.daily"),
        }
    )
    assert _entries(scan(LocalStore(root)))[("sales.daily", "manual")] == ("overridden", "code")


def test_disabled_schedule_is_paused(make_store: MakeStore) -> None:
    paused = "schedule:\n  enabled: false\n  cron: '0 9 * * *'\n"
    root = make_store(
        {
            "code/a.yaml": spec("sales.paused", extra=paused),
            "code/b.yaml": spec("sales.active", extra="schedule:\n  cron: '0 9 * * *'\n"),
            "manual/c.yaml": spec("sales.manual_paused", extra=paused),
            "manual/d.yaml": spec("sales.paused"),
        }
    )
    snapshot = scan(LocalStore(root))
    assert _entries(snapshot) == {
        ("sales.paused", "code"): ("paused", None),
        ("sales.paused", "manual"): ("overridden", "code"),  # a paused code spec still wins
        ("sales.active", "code"): ("active", None),
        ("sales.manual_paused", "manual"): ("paused", None),
    }
    assert snapshot.get("sales.paused").status is DatasetStatus.PAUSED


# -- conflicts ----------------------------------------------------------------------------------------------


@pytest.mark.hostile(kind="names")
@pytest.mark.parametrize("prefix", ["code", "manual"])
def test_duplicate_names_in_one_prefix_are_one_conflict(make_store: MakeStore, prefix: str) -> None:
    root = make_store(
        {
            f"{prefix}/one.yaml": spec("sales.daily", owner="one@example.com"),
            f"{prefix}/sub/two.yml": spec("sales.daily", owner="two@example.com"),
            f"{prefix}/other.yaml": spec("sales.other"),
        }
    )
    snapshot = scan(LocalStore(root))
    assert len(snapshot.problems) == 1
    conflict = snapshot.problems[0]
    assert conflict.code == "DLI-204"
    assert f"{root}/{prefix}/one.yaml" in conflict.message and f"{root}/{prefix}/sub/two.yml" in conflict.message
    assert {p.file for p in conflict.problems} == {f"{root}/{prefix}/one.yaml", f"{root}/{prefix}/sub/two.yml"}
    assert "neither is scheduled" in conflict.render()
    assert _entries(snapshot) == {("sales.other", prefix): ("active", None)}
    with pytest.raises(DatasetNotFoundError):
        snapshot.get("sales.daily")


@pytest.mark.hostile(kind="names")
def test_conflict_in_code_keeps_the_manual_twin_overridden(make_store: MakeStore) -> None:
    root = make_store(
        {
            "code/one.yaml": spec("sales.daily"),
            "code/two.yaml": spec("sales.daily"),
            "manual/m.yaml": spec("sales.daily"),
        }
    )
    snapshot = scan(LocalStore(root))
    assert [p.code for p in snapshot.problems] == ["DLI-204"]
    assert _entries(snapshot) == {("sales.daily", "manual"): ("overridden", "code")}
    assert snapshot.active == []


def test_same_name_in_code_and_manual_is_not_a_conflict(examples_store: Path) -> None:
    assert not [p for p in scan(LocalStore(examples_store)).problems if p.code == "DLI-204"]


# -- fault isolation ----------------------------------------------------------------------------------------


@pytest.mark.hostile(kind="files")
def test_broken_code_spec_that_declares_a_name_keeps_the_manual_twin_overridden(make_store: MakeStore) -> None:
    root = make_store(
        {
            "code/daily.yaml": spec("sales.daily", extra="schedule:\n  cron: '0 9 * *'\n"),
            "manual/daily.yaml": spec("sales.daily"),
        }
    )
    snapshot = scan(LocalStore(root))
    assert [p.code for p in snapshot.problems] == ["DLI-201"]
    assert _entries(snapshot) == {("sales.daily", "manual"): ("overridden", "code")}
    assert snapshot.active == []


@pytest.mark.hostile(kind="files")
def test_broken_code_sql_template_keeps_the_manual_twin_overridden(make_store: MakeStore) -> None:
    root = make_store(
        {
            "code/daily.yaml": spec("sales.daily", query="SELECT {{ undeclared }}"),
            "manual/daily.yaml": spec("sales.daily"),
        }
    )
    snapshot = scan(LocalStore(root))
    assert [p.code for p in snapshot.problems] == ["DLI-205"]
    assert _entries(snapshot) == {("sales.daily", "manual"): ("overridden", "code")}


def test_the_rest_still_loads(make_store: MakeStore, tmp_path: Path) -> None:
    root = tmp_path / "store"
    shutil.copytree(FIXTURES / "good", root / "code" / "good")
    shutil.copytree(FIXTURES / "bad", root / "code" / "bad")
    generated_bad = {
        "manual/bad/non_utf8.yaml": b"name: x\nowner: caf\xe9\nquery: SELECT 1\n",
        "manual/bad/huge.yaml": b"name: x\nowner: y\nquery: '" + b"x" * (10 * 1024 * 1024) + b"'\n",
        "manual/bad/bomb.yaml": (
            "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
            + "".join(f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 10)}]\n" for i in range(8))
        ).encode(),
        "manual/bad/empty.yaml": b"",
        "manual/bad/apply.yml": f"name: !!python/object/apply:os.system ['touch {tmp_path}/pwned']\n".encode(),
        "manual/bad/bad_date.yaml": spec(
            "manual.bad_date", extra="parameters:\n  - {name: d, type: date, default: 2024-02-30}\n"
        ).encode(),
    }
    make_store(
        {
            **generated_bad,
            "manual/ok/one.yaml": spec("manual.one"),
            "manual/ok/two.yml": spec(
                "manual.two", query="SELECT {{ n }}", extra="parameters:\n  - {name: n, type: integer, default: 1}\n"
            ),
            "manual/README.md": "not a spec",
            "code/good/notes.txt": "not a spec",
        },
        root=root,
    )
    snapshot = scan(LocalStore(root))
    good_names = {"fixtures.full_spec", "fixtures.minimal", "fixtures.assets_only", "fixtures.paused_required"}
    assert {e.name for e in snapshot.entries} == good_names | {"manual.one", "manual.two"}
    bad_files = sorted(f"{root}/code/bad/{p.name}" for p in (FIXTURES / "bad").glob("*.y*ml")) + sorted(
        f"{root}/{rel}" for rel in generated_bad
    )
    # one problem per bad file, each naming its file
    assert len(snapshot.problems) == len(bad_files)
    for bad in bad_files:
        assert sum(bad in p.message for p in snapshot.problems) == 1, bad
    assert all(p.code.startswith("DLI-2") for p in snapshot.problems)
    assert not (tmp_path / "pwned").exists()


def test_missing_code_or_manual_folder(make_store: MakeStore, tmp_path: Path) -> None:
    only_manual = make_store({"manual/a.yaml": spec("a.only_manual")}, root=tmp_path / "m")
    only_code = make_store({"code/a.yaml": spec("a.only_code")}, root=tmp_path / "c")
    (tmp_path / "empty").mkdir()
    assert _entries(scan(LocalStore(only_manual))) == {("a.only_manual", "manual"): ("active", None)}
    assert _entries(scan(LocalStore(only_code))) == {("a.only_code", "code"): ("active", None)}
    empty = scan(LocalStore(tmp_path / "empty"))
    assert empty.entries == () and empty.problems == ()


def test_nested_folders_yml_and_ignored_files(make_store: MakeStore) -> None:
    root = make_store(
        {
            "code/a/b/c/d/deep.yaml": spec("x.deep", query="SELECT 1"),
            "code/short.yml": spec("x.short"),
            "code/a/upper.YAML.bak": "ignored",
            "code/a/query.sql": "SELECT 1",
            "code/.git/config.yaml": "not: [a spec",
            "code/a/.hidden.yaml": "not: [a spec",
            "manual/x.json": "{}",
        }
    )
    snapshot = scan(LocalStore(root))
    assert snapshot.problems == ()
    assert {(e.name, e.path) for e in snapshot.entries} == {
        ("x.deep", "code/a/b/c/d/deep.yaml"),
        ("x.short", "code/short.yml"),
    }


# -- query_file ---------------------------------------------------------------------------------------------


def test_query_file_beside_and_below_the_spec(make_store: MakeStore) -> None:
    root = make_store(
        {
            "code/sales/daily.yaml": "name: s.daily\nowner: me\nquery_file: daily.sql\n",
            "code/sales/daily.sql": "SELECT 1 AS one",
            "code/sales/sub.yaml": "name: s.sub\nowner: me\nquery_file: sql/q.sql\n",
            "code/sales/sql/q.sql": "SELECT 2 AS two",
        }
    )
    snapshot = scan(LocalStore(root))
    assert snapshot.problems == ()
    assert snapshot.get("s.daily").sql == "SELECT 1 AS one"
    assert snapshot.get("s.sub").sql_path == "code/sales/sql/q.sql"


@pytest.mark.hostile(kind="files")
@pytest.mark.parametrize(
    ("query_file", "fragment"),
    [
        ("missing.sql", "does not exist"),
        ("../other/q.sql", "'..'"),
        ("sql/../../other/q.sql", "'..'"),
        ("../../../../etc/passwd", "'..'"),
        ("/etc/passwd", "absolute path"),
        ("C:\\\\sql\\\\q.sql", "absolute path"),
        ("''", "empty"),
    ],
    ids=["not-found", "dotdot", "dotdot-inside", "dotdot-far", "absolute", "windows-absolute", "empty"],
)
def test_query_file_problems(make_store: MakeStore, query_file: str, fragment: str) -> None:
    root = make_store(
        {
            "code/sales/daily.yaml": f"name: s.daily\nowner: me\nquery_file: {query_file}\n",
            "code/other/q.sql": "SELECT 1",
            "code/sales/ok.yaml": spec("s.ok"),
        }
    )
    snapshot = scan(LocalStore(root))
    assert [e.name for e in snapshot.entries] == ["s.ok"]
    [problem] = snapshot.problems
    assert problem.code == "DLI-201"
    assert problem.message.startswith(f"{root}/code/sales/daily.yaml: query_file:"), problem.message
    assert fragment in problem.message


@pytest.mark.hostile(kind="files")
def test_query_file_symlink_escaping_the_store(make_store: MakeStore, tmp_path: Path) -> None:
    outside = tmp_path / "outside.sql"
    outside.write_text("SELECT 'secret'")
    root = make_store({"code/sales/daily.yaml": "name: s.daily\nowner: me\nquery_file: daily.sql\n"})
    os.symlink(outside, root / "code/sales/daily.sql")
    snapshot = scan(LocalStore(root))
    assert snapshot.entries == ()
    [problem] = snapshot.problems
    assert problem.code == "DLI-201"
    assert f"{root}/code/sales/daily.yaml: query_file:" in problem.message
    assert "outside the store" in problem.message
    assert [p.field for p in problem.problems] == ["query_file"]


def test_symlink_inside_the_store_is_fine(make_store: MakeStore) -> None:
    root = make_store(
        {
            "code/shared/q.sql": "SELECT 1 AS one",
            "code/sales/daily.yaml": "name: s.daily\nowner: me\nquery_file: q.sql\n",
        }
    )
    os.symlink(root / "code/shared/q.sql", root / "code/sales/q.sql")
    assert scan(LocalStore(root)).get("s.daily").sql == "SELECT 1 AS one"


@pytest.mark.hostile(kind="files")
def test_spec_file_symlink_escaping_the_store(make_store: MakeStore, tmp_path: Path) -> None:
    outside = tmp_path / "outside.yaml"
    outside.write_text(spec("s.outside"))
    root = make_store({"code/ok.yaml": spec("s.ok")})
    os.symlink(outside, root / "code/linked.yaml")
    snapshot = scan(LocalStore(root))
    assert [e.name for e in snapshot.entries] == ["s.ok"]
    [problem] = snapshot.problems
    assert problem.code == "DLI-201" and "outside the store" in problem.message


@pytest.mark.hostile(kind="files")
@pytest.mark.parametrize(
    ("sql", "code", "fragment"),
    [
        (b"SELECT 'caf\xe9'", "DLI-201", "not UTF-8"),
        (b"  \n", "DLI-201", "empty"),
        (b"SELECT '{{ d }}'", "DLI-205", "inside a quoted SQL string"),
    ],
    ids=["non-utf8", "empty", "hand-quoted"],
)
def test_bad_sql_files_name_the_sql_file(make_store: MakeStore, sql: bytes, code: str, fragment: str) -> None:
    root = make_store(
        {
            "code/s.yaml": "name: s.q\nowner: me\nquery_file: q.sql\nparameters:\n  - {name: d, type: date}\n",
            "code/q.sql": sql,
        }
    )
    [problem] = scan(LocalStore(root)).problems
    assert problem.code == code
    assert f"{root}/code/q.sql" in problem.message and fragment in problem.message


# -- the store itself ---------------------------------------------------------------------------------------


def test_missing_store_folder_is_dli_102(tmp_path: Path) -> None:
    with pytest.raises(StoreNotFoundError) as info:
        LocalStore(tmp_path / "nope")
    assert info.value.code == "DLI-102"
    assert str(tmp_path / "nope") in info.value.message
    assert "--store" in info.value.render()


def test_store_path_that_is_a_file_is_dli_102(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(StoreNotFoundError):
        open_store(tmp_path / "file")


def test_open_store_defaults_to_config(monkeypatch: pytest.MonkeyPatch, examples_store: Path) -> None:
    monkeypatch.setenv("AIRFLOW__DLI__SPEC_STORE", str(examples_store))
    assert scan(open_store()).get("analytics.daily_clicks").source is SourceType.CODE


def test_get_unknown_dataset_suggests_close_names(examples_store: Path) -> None:
    with pytest.raises(DatasetNotFoundError) as info:
        scan(LocalStore(examples_store)).get("analytics.daily_click")
    assert info.value.code == "DLI-101"
    assert "Did you mean: analytics.daily_clicks" in info.value.message


def test_get_broken_dataset_says_why(make_store: MakeStore) -> None:
    root = make_store({"code/a.yaml": spec("s.broken", extra="engine: trinoo\n")})
    with pytest.raises(DatasetNotFoundError) as info:
        scan(LocalStore(root)).get("s.broken")
    assert "has a problem" in info.value.message and "trinoo" in info.value.message


# -- unreadable code paths with no last good copy (a first start, `dli spec validate`) ----------------------

from store_faults import deny  # noqa: E402,F401  (a fixture)


def _twins(make_store: MakeStore) -> Path:
    return make_store(
        {
            "code/team/a.yaml": "name: team.a\nowner: me\nquery_file: a.sql\n",
            "code/team/a.sql": "SELECT 1 AS one",
            "code/other.yaml": spec("other.c"),
            "manual/a.yaml": spec("team.a", extra="schedule: {cron: '* * * * *'}\n"),
            "manual/only.yaml": spec("manual.only"),
        }
    )


@pytest.mark.hostile(kind="files")
def test_an_unreadable_code_folder_without_a_last_good_copy_holds_every_manual_spec(
    make_store: MakeStore, deny
) -> None:
    """Which names the folder holds is unknown, so no manual spec may take over (code always wins)."""
    root = _twins(make_store)
    deny(root / "code" / "team")
    snapshot = scan(LocalStore(root))
    assert _entries(snapshot) == {
        ("other.c", "code"): ("active", None),
        ("team.a", "manual"): ("overridden", "code"),
        ("manual.only", "manual"): ("overridden", "code"),
    }
    [problem] = snapshot.problems
    assert problem.code == "DLI-503" and f"{root}/code/team/" in problem.message
    assert "no last good copy" in problem.message and "every manual spec stays overridden" in problem.message


@pytest.mark.hostile(kind="files")
def test_an_unreadable_sql_file_holds_only_the_name_its_readable_spec_declares(make_store: MakeStore, deny) -> None:
    root = _twins(make_store)
    deny(root / "code" / "team" / "a.sql")
    snapshot = scan(LocalStore(root))
    assert _entries(snapshot)[("team.a", "manual")] == ("overridden", "code")
    assert _entries(snapshot)[("manual.only", "manual")] == ("active", None)
    [problem] = snapshot.problems
    assert problem.code == "DLI-201" and f"{root}/code/team/a.sql" in problem.message


@pytest.mark.hostile(kind="files")
def test_an_unreadable_manual_folder_holds_nothing_of_code(make_store: MakeStore, deny) -> None:
    root = _twins(make_store)
    (root / "manual" / "team").mkdir()
    (root / "manual" / "team" / "x.yaml").write_text(spec("team.x"))
    deny(root / "manual" / "team")
    snapshot = scan(LocalStore(root))
    assert {e.name for e in snapshot.active} == {"team.a", "other.c", "manual.only"}
    [problem] = snapshot.problems
    assert problem.code == "DLI-503" and "manual/team/" in problem.message


@pytest.mark.hostile(kind="files")
@pytest.mark.timeout(60)
def test_spec_validate_reports_a_fifo_and_a_sparse_giant_instead_of_hanging(
    make_store: MakeStore, dli_command: list[str]
) -> None:
    import subprocess

    from store_faults import GiB, fifo, sparse

    root = make_store({"code/ok.yaml": spec("ok.one"), "code/x.yaml": "name: s.x\nowner: me\nquery_file: x.sql\n"})
    fifo(root / "code" / "x.sql")
    fifo(root / "code" / "pipe.yaml")
    sparse(root / "code" / "big.yaml", 2 * GiB)
    for target in (root, root / "code" / "pipe.yaml"):
        result = subprocess.run([*dli_command, "spec", "validate", str(target)], capture_output=True, text=True,
                                timeout=50, check=False)
        assert result.returncode == 1, result.stderr
        assert "Traceback" not in result.stderr
        assert "a FIFO" in result.stderr
    assert "a spec may be at most 1024 KiB" in subprocess.run(
        [*dli_command, "spec", "validate", str(root)], capture_output=True, text=True, timeout=50, check=False
    ).stderr


# -- across specs: look-alike names and depends_on cycles (dli_airflow.storecheck, issue 13) -----------------

# (id, files, the active names, the DLI codes of the problems, fragments of the problems, overridden names)
LOOK_ALIKES = [
    ("case-in-code", {"code/a.yaml": spec("Sales.Daily"), "code/b.yaml": spec("sales.daily")},
     set(), ["DLI-204"], ["'Sales.Daily', 'sales.daily' under code/", "neither is scheduled"], set()),
    ("dash-underscore-in-code", {"code/a.yaml": spec("sales-daily"), "code/b.yaml": spec("sales_daily")},
     set(), ["DLI-204"], ["differ only by case or '-'/'_'"], set()),
    ("three-in-manual", {"manual/a.yaml": spec("m.x-y"), "manual/b.yaml": spec("M.X_Y"), "manual/c.yaml": spec("m.x_y")},
     set(), ["DLI-204"], ["'M.X_Y', 'm.x-y', 'm.x_y' under manual/"], set()),
    ("manual-case-of-code", {"code/a.yaml": spec("good.ds2"), "manual/b.yaml": spec("Good.DS2")},
     {"good.ds2"}, ["DLI-204"], ["'Good.DS2' differs from the code dataset 'good.ds2'", "the code dataset wins"],
     {"Good.DS2"}),
    ("manual-dash-of-code", {"code/a.yaml": spec("sales_daily"), "manual/b.yaml": spec("sales-daily")},
     {"sales_daily"}, ["DLI-204"], ["the code dataset's exact name 'sales_daily'"], {"sales-daily"}),
    ("manual-look-alike-of-broken-code", {"code/a.yaml": spec("sales.daily", extra="schedule: {cron: x}\n"),
                                          "manual/b.yaml": spec("Sales.Daily")},
     set(), ["DLI-201", "DLI-204"], ["'Sales.Daily' differs from the code dataset 'sales.daily'"], {"Sales.Daily"}),
    ("code-look-alikes-keep-manual-twin-out", {"code/a.yaml": spec("s.A"), "code/b.yaml": spec("s.a"),
                                                "manual/c.yaml": spec("s.a")},
     set(), ["DLI-204"], ["under code/"], {"s.a"}),
    ("dot-is-not-underscore", {"code/a.yaml": spec("sales.daily"), "code/b.yaml": spec("sales_daily")},
     {"sales.daily", "sales_daily"}, [], [], set()),
]


@pytest.mark.hostile(kind="names")
@pytest.mark.parametrize(("files", "active", "codes", "fragments", "overridden"), [c[1:] for c in LOOK_ALIKES],
                         ids=[c[0] for c in LOOK_ALIKES])
def test_look_alike_names_are_a_conflict_and_code_still_wins(
    make_store: MakeStore, files: dict[str, str], active: set[str], codes: list[str], fragments: list[str],
    overridden: set[str],
) -> None:
    root = make_store({**files, "code/ok.yaml": spec("ok.one"), "manual/ok.yaml": spec("ok.two")})
    snapshot = scan(LocalStore(root))
    assert {e.name for e in snapshot.active} == active | {"ok.one", "ok.two"}  # the others still load
    assert sorted(p.code for p in snapshot.problems) == codes
    rendered = "\n".join(p.render() for p in snapshot.problems)
    for fragment in fragments:
        assert fragment in rendered
    conflicts = [p for p in snapshot.problems if p.code == "DLI-204"]
    assert all(p.problems and all(q.field == "name" and q.file for q in p.problems) for p in conflicts)
    assert {e.name for e in snapshot.entries if e.status is DatasetStatus.OVERRIDDEN} == overridden


def _dep(name: str, *upstream: str, paused: bool = False) -> str:
    schedule = "schedule: {enabled: false, cron: '0 9 * * *'}\n" if paused else ""
    return spec(name, extra=f"depends_on: [{', '.join(upstream)}]\n{schedule}")


# (id, files, the active names, the cycles the problems must name, fragment)
CYCLES = [
    ("two-in-code", {"code/a.yaml": _dep("s.a", "s.b"), "code/b.yaml": _dep("s.b", "s.a")},
     set(), ["'s.a' -> 's.b' -> 's.a'"], "none of them is scheduled"),
    ("three-in-code", {"code/a.yaml": _dep("s.a", "s.b"), "code/b.yaml": _dep("s.b", "s.c"),
                       "code/c.yaml": _dep("s.c", "s.a")},
     set(), ["'s.a' -> 's.b' -> 's.c' -> 's.a'"], "none of them is scheduled"),
    ("manual-closes-a-code-chain", {"code/a.yaml": _dep("s.a", "s.ext"), "manual/x.yaml": _dep("s.ext", "s.a")},
     {"s.a"}, ["'s.a' -> 's.ext' -> 's.a'"], "the manual ones ('s.ext') are not scheduled; the code ones keep running"),
    ("two-manual", {"manual/a.yaml": _dep("m.a", "m.b"), "manual/b.yaml": _dep("m.b", "m.a")},
     set(), ["'m.a' -> 'm.b' -> 'm.a'"], "none of them is scheduled"),
    ("a-tail-keeps-running", {"code/a.yaml": _dep("s.a", "s.b"), "code/b.yaml": _dep("s.b", "s.a"),
                              "code/d.yaml": _dep("s.d", "s.a"), "code/e.yaml": _dep("s.e", "s.d")},
     {"s.d", "s.e"}, ["'s.a' -> 's.b' -> 's.a'"], ""),
    ("paused-members-count", {"code/a.yaml": _dep("s.a", "s.b", paused=True), "code/b.yaml": _dep("s.b", "s.a")},
     set(), ["'s.a' -> 's.b' -> 's.a'"], ""),
    ("two-disjoint-cycles", {"code/a.yaml": _dep("s.a", "s.b"), "code/b.yaml": _dep("s.b", "s.a"),
                             "manual/c.yaml": _dep("m.c", "m.d"), "manual/d.yaml": _dep("m.d", "m.c")},
     set(), ["'s.a' -> 's.b' -> 's.a'", "'m.c' -> 'm.d' -> 'm.c'"], ""),
    ("overridden-twin-is-no-edge", {"code/a.yaml": _dep("s.a", "s.b"), "code/b.yaml": spec("s.b"),
                                    "manual/b.yaml": _dep("s.b", "s.a")},
     {"s.a", "s.b"}, [], ""),
    ("diamond-is-no-cycle", {"code/a.yaml": _dep("s.a", "s.b", "s.c"), "code/b.yaml": _dep("s.b", "s.d"),
                             "code/c.yaml": _dep("s.c", "s.d"), "code/d.yaml": spec("s.d")},
     {"s.a", "s.b", "s.c", "s.d"}, [], ""),
]


@pytest.mark.hostile(kind="yaml")
@pytest.mark.parametrize(("files", "active", "cycles", "fragment"), [c[1:] for c in CYCLES], ids=[c[0] for c in CYCLES])
def test_a_depends_on_cycle_of_any_length_is_named_and_not_scheduled(
    make_store: MakeStore, files: dict[str, str], active: set[str], cycles: list[str], fragment: str
) -> None:
    root = make_store({**files, "code/ok.yaml": spec("ok.one")})
    snapshot = scan(LocalStore(root))
    assert {e.name for e in snapshot.active} == active | {"ok.one"}
    assert [p.code for p in snapshot.problems] == ["DLI-201"] * len(cycles)
    for problem, cycle in zip(sorted(snapshot.problems, key=lambda p: p.message), sorted(cycles)):
        assert cycle in problem.message and "form a cycle" in problem.message and fragment in problem.message
        assert all(q.field == "depends_on" and q.file.startswith(str(root)) for q in problem.problems)
        assert "remove one depends_on entry" in problem.render()


@pytest.mark.hostile(kind="yaml")
def test_a_long_depends_on_chain_and_a_long_cycle_are_checked_without_recursion(make_store: MakeStore) -> None:
    n = 3000  # deeper than Python's recursion limit
    files = {f"code/c{i}.yaml": _dep(f"c.{i}", f"c.{i + 1}") for i in range(n)}
    files.update({f"code/r{i}.yaml": _dep(f"r.{i}", f"r.{(i + 1) % 50}") for i in range(50)})
    snapshot = scan(LocalStore(make_store(files)))
    assert {e.name for e in snapshot.active} == {f"c.{i}" for i in range(n)}
    [problem] = snapshot.problems
    assert "'r.0' -> 'r.1' -> " in problem.message and len(problem.problems) == 50


def test_strong_components_match_reachability() -> None:
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from dli_airflow.storecheck import strong_components

    nodes = [f"n{i}" for i in range(7)]

    @settings(max_examples=300, derandomize=True, deadline=None)
    @given(st.lists(st.tuples(st.sampled_from(nodes), st.sampled_from(nodes)), max_size=20))
    def check(edges: list[tuple[str, str]]) -> None:
        graph = {n: sorted({b for a, b in edges if a == n and b != n}) for n in nodes}

        def reach(start: str) -> set[str]:
            seen, todo = set(), [start]
            while todo:
                for child in graph[todo.pop()]:
                    if child not in seen:
                        seen.add(child)
                        todo.append(child)
            return seen

        reaches = {n: reach(n) for n in nodes}
        expected = {frozenset(m for m in nodes if m == n or (m in reaches[n] and n in reaches[m])) for n in nodes}
        assert {frozenset(c) for c in strong_components(graph)} == {c for c in expected if len(c) > 1}

    check()
