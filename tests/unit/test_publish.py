"""``dli spec publish`` and the release index, on local folder stores (S3: tests/integration/test_publish_s3.py).

What a user relies on: nothing is written when any file is invalid; the plan names what changes (files,
datasets, manual copies overridden or restored); readers see the old release or the new one, never half
of one (a publish killed after uploading, a plain file overwritten by a later publish, a damaged index or
bundle); two publishes at once cannot both switch; the writer never leaves ``code/``.
"""

from __future__ import annotations

import gzip
import json
import os
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from dli_airflow import publish as releases
from dli_airflow.cache import load_snapshot
from dli_airflow.catalog import open_store, scan
from dli_airflow.cli import app
from dli_airflow.errors import ReleaseConflictError, StoreUnavailableError, WorkflowPermissionError
from dli_airflow.release import BUNDLE_DIR, INDEX_PATH, ReleaseStore, open_release, read_index
from dli_airflow.store import LocalStore

pytestmark = pytest.mark.usefixtures("dli_isolated")
MakeStore = Callable[..., Path]


def spec(name: str, *, sql_file: str | None = None, query: str = "SELECT 1 AS x", enabled: bool = True) -> str:
    body = f"query_file: {sql_file}" if sql_file else f"query: {query}"
    return textwrap.dedent(
        f"""\
        name: {name}
        owner: tests@example.com
        {body}
        schedule:
          cron: "0 9 * * *"
          enabled: {str(enabled).lower()}
        """
    )


def write_tree(root: Path, files: dict[str, str | bytes]) -> Path:
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return root


def tree_state(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


RELEASE_1 = {
    "sales/orders.yaml": spec("sales.orders", sql_file="orders.sql"),
    "sales/orders.sql": "SELECT 1 AS orders\n",
    "sales/returns.yaml": spec("sales.returns"),
    "README.md": "# specs\n",
}


@pytest.fixture
def src(tmp_path: Path) -> Path:
    return write_tree(tmp_path / "src", RELEASE_1)


@pytest.fixture
def store(make_store: MakeStore) -> Path:
    return make_store({"manual/sales.returns.yaml": spec("sales.returns"), "manual/adhoc.yaml": spec("reports.adhoc")})


def publish(src: Path, store: Path, **kwargs) -> releases.Plan:
    target = open_store(store)
    plan = releases.plan(src, target, **kwargs)
    assert plan.ok, [p.render() for p in plan.problems]
    releases.apply(plan, target)
    return plan


def statuses(store: Path) -> dict[tuple[str, str], str]:
    return {(e.name, e.source.value): e.status.value for e in scan(store).entries}


# -- the plan and what a publish writes ------------------------------------------------------------------


def test_first_publish_writes_the_release_and_readers_use_the_index(src: Path, store: Path) -> None:
    plan = publish(src, store)
    assert plan.datasets_added == ("sales.orders", "sales.returns")
    assert plan.overridden == ("sales.returns",)  # the manual copy of sales.returns is now overridden
    assert plan.ignored == ("code/README.md",)  # no spec names it: not published
    state = tree_state(store)
    assert state["code/sales/orders.sql"] == b"SELECT 1 AS orders\n"
    assert "code/README.md" not in state
    index = json.loads(state[INDEX_PATH])
    assert set(index["datasets"]) == {"sales.orders", "sales.returns"}
    assert index["datasets"]["sales.orders"] == ["code/sales/orders.yaml", "code/sales/orders.sql"]
    assert [k for k in state if k.startswith(BUNDLE_DIR)] == [index["bundle"]]
    assert statuses(store) == {
        ("sales.orders", "code"): "active",
        ("sales.returns", "code"): "active",
        ("sales.returns", "manual"): "overridden",
        ("reports.adhoc", "manual"): "active",
    }
    assert isinstance(open_release(open_store(store)).store, ReleaseStore)


def test_second_publish_plans_changes_removals_and_restores(src: Path, store: Path) -> None:
    publish(src, store)
    (src / "sales/orders.sql").write_text("SELECT 2 AS orders\n")
    (src / "sales/returns.yaml").unlink()
    write_tree(src, {"new/adhoc.yaml": spec("reports.adhoc")})
    plan = releases.plan(src, open_store(store))
    assert plan.changed == ("code/sales/orders.sql",)
    assert plan.removed == ("code/sales/returns.yaml",)
    assert plan.added == ("code/new/adhoc.yaml",)
    assert plan.datasets_changed == ("sales.orders",)
    assert plan.datasets_removed == ("sales.returns",)
    assert plan.datasets_added == ("reports.adhoc",)
    assert plan.restored == ("sales.returns",) and plan.overridden == ("reports.adhoc",)
    assert plan.unchanged == 1
    releases.apply(plan, open_store(store))
    assert not (store / "code/sales/returns.yaml").exists()
    assert statuses(store) == {
        ("sales.orders", "code"): "active",
        ("sales.returns", "manual"): "active",  # restored: code no longer holds it
        ("reports.adhoc", "code"): "active",
        ("reports.adhoc", "manual"): "overridden",
    }
    assert scan(store).get("sales.orders").sql == "SELECT 2 AS orders\n"
    again = releases.plan(src, open_store(store))
    assert again.up_to_date and not (again.added or again.changed or again.removed)


def test_first_publish_over_a_hand_written_code_folder_compares_contents(src: Path, store: Path) -> None:
    write_tree(store, {"code/sales/orders.yaml": spec("sales.orders", sql_file="orders.sql"),
                       "code/sales/orders.sql": "SELECT 1 AS orders\n", "code/old.yaml": spec("sales.old")})
    plan = releases.plan(src, open_store(store))
    assert plan.current is None
    assert plan.added == ("code/sales/returns.yaml",) and plan.changed == ()
    assert plan.removed == ("code/old.yaml",) and plan.datasets_removed == ("sales.old",)
    releases.apply(plan, open_store(store))
    assert statuses(store)[("sales.orders", "code")] == "active" and ("sales.old", "code") not in statuses(store)


def test_invalid_source_writes_nothing_and_reports_file_and_field(src: Path, store: Path) -> None:
    publish(src, store)
    before = tree_state(store)
    (src / "sales/orders.sql").write_text("SELECT 3\n")
    write_tree(src, {"bad.yaml": "name: sales.bad\nowner: x\nquery: SELECT 1\nschedule: {cron: '0 9 * *'}\n",
                     "twin.yaml": spec("sales.returns")})
    runner = CliRunner()
    result = runner.invoke(app, ["spec", "publish", str(src), "--store", str(store)])
    assert result.exit_code == 1
    assert "bad.yaml" in result.stderr and "schedule.cron" in result.stderr
    assert "DLI-204" in result.stderr  # two files declare sales.returns
    assert "Nothing was published" in result.stderr
    assert tree_state(store) == before
    as_json = runner.invoke(app, ["spec", "publish", str(src), "--store", str(store), "--format", "json"])
    report = json.loads(as_json.stdout)
    assert as_json.exit_code == 1 and report["ok"] is False and report["published"] is None
    assert {e["code"] for e in report["errors"]} == {"DLI-201", "DLI-204"}
    assert tree_state(store) == before


def test_empty_source_is_refused_unless_allowed(tmp_path: Path, src: Path, store: Path) -> None:
    publish(src, store)
    empty = tmp_path / "empty"
    empty.mkdir()
    plan = releases.plan(empty, open_store(store))
    assert not plan.ok and "holds no Dataset Spec" in plan.problems[0].message
    plan = releases.plan(empty, open_store(store), allow_empty=True)
    assert plan.ok and plan.datasets_removed == ("sales.orders", "sales.returns")
    releases.apply(plan, open_store(store))
    assert {k for k, v in statuses(store).items() if k[1] == "code"} == set()


def test_dry_run_writes_nothing_and_json_carries_the_plan(src: Path, store: Path) -> None:
    before = tree_state(store)
    result = CliRunner().invoke(app, ["spec", "publish", str(src), "--store", str(store), "--dry-run",
                                      "--format", "json", "--label", "abc123"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["dry_run"] is True and report["published"] is None
    assert report["datasets"]["added"] == ["sales.orders", "sales.returns"]
    assert report["manual"]["overridden"] == ["sales.returns"]
    assert tree_state(store) == before
    table = CliRunner().invoke(app, ["spec", "publish", str(src), "--store", str(store)])
    assert table.exit_code == 0 and "+ sales.orders" in table.stdout and "Published release" in table.stdout
    assert json.loads((store / INDEX_PATH).read_text())["source"] is None
    (src / "sales/orders.sql").write_text("SELECT 9\n")
    CliRunner().invoke(app, ["spec", "publish", str(src), "--store", str(store), "--label", "abc123"])
    assert json.loads((store / INDEX_PATH).read_text())["source"] == "abc123"


# -- a release is switched at once, or not at all -----------------------------------------------------------


class _Killed(Exception):
    pass


class _DiesBeforeSwitch(releases.LocalReleaseWriter):
    def switch(self, data: bytes, expected: str | None) -> None:
        raise _Killed


def test_a_publish_killed_before_the_switch_is_never_seen(src: Path, store: Path, tmp_path: Path) -> None:
    publish(src, store)
    first = statuses(store)
    warm = load_snapshot(str(store), cache_dir=tmp_path / "cache")
    (src / "sales/orders.sql").write_text("SELECT 2 AS orders\n")
    (src / "sales/returns.yaml").write_text(spec("sales.returns", query="SELECT 2 AS returns"))
    target = open_store(store)
    plan = releases.plan(src, target)
    with pytest.raises(_Killed):
        releases.apply(plan, target, _DiesBeforeSwitch(target))
    # the plain files are the new ones already; every reader still sees release 1, read from its bundle
    assert (store / "code/sales/orders.sql").read_text() == "SELECT 2 AS orders\n"
    assert statuses(store) == first
    assert scan(store).get("sales.orders").sql == "SELECT 1 AS orders\n"
    for cache in (tmp_path / "cache", tmp_path / "cold"):
        snapshot = load_snapshot(str(store), cache_dir=cache)
        assert snapshot.get("sales.returns").spec.query == "SELECT 1 AS x" and not snapshot.warnings
    one = load_snapshot(str(store), cache_dir=tmp_path / "worker", only="sales.orders")
    assert [e.name for e in one.entries] == ["sales.orders"] and one.entries[0].sql == "SELECT 1 AS orders\n"
    assert warm.get("sales.orders").sql == "SELECT 1 AS orders\n"
    releases.apply(releases.plan(src, open_store(store)), open_store(store))  # the next publish completes it
    assert load_snapshot(str(store), cache_dir=tmp_path / "cache").get("sales.orders").sql == "SELECT 2 AS orders\n"


def test_a_release_whose_files_and_bundle_are_gone_serves_the_last_good_copy(src: Path, store: Path,
                                                                              tmp_path: Path) -> None:
    publish(src, store)
    assert load_snapshot(str(store), cache_dir=tmp_path / "c").get("sales.orders").sql == "SELECT 1 AS orders\n"
    (src / "sales/orders.sql").write_text("SELECT 2 AS orders\n")
    publish(src, store)
    bundle = json.loads((store / INDEX_PATH).read_text())["bundle"]
    (store / bundle).unlink()
    (store / "code/sales/orders.sql").write_text("SELECT 666\n")  # not the version the index names
    snapshot = load_snapshot(str(store), cache_dir=tmp_path / "c")
    assert snapshot.get("sales.orders").sql == "SELECT 1 AS orders\n"  # the last good copy, never 666
    assert any("cannot be read" in w and "bundle" in w for w in snapshot.warnings), snapshot.warnings
    with pytest.raises(StoreUnavailableError, match="bundle"):
        load_snapshot(str(store), cache_dir=tmp_path / "fresh")


@pytest.mark.parametrize(
    "index",
    [
        b"{not json",
        b'{"format": 2, "release": "x", "published_at": "", "files": {}, "datasets": {}, "bundle": "b"}',
        json.dumps({"format": 1, "release": "x", "published_at": "", "bundle": f"{BUNDLE_DIR}{'0' * 64}.json.gz",
                    "files": {"manual/evil.yaml": {"sha256": "0" * 64, "size": 1}}, "datasets": {}}).encode(),
        json.dumps({"format": 1, "release": "x", "published_at": "", "bundle": f"{BUNDLE_DIR}{'0' * 64}.json.gz",
                    "files": {"code/../../etc/passwd": {"sha256": "0" * 64, "size": 1}}, "datasets": {}}).encode(),
        json.dumps({"format": 1, "release": "x", "published_at": "", "bundle": "../../x.json.gz",
                    "files": {}, "datasets": {}}).encode(),
        json.dumps({"format": 1, "release": "x", "published_at": "", "bundle": f"{BUNDLE_DIR}{'0' * 64}.json.gz",
                    "files": {}, "datasets": {"a": ["code/a.yaml"]}}).encode(),
    ],
    ids=["not-json", "unknown-format", "outside-code", "dot-dot", "bundle-key", "dataset-without-file"],
)
def test_an_invalid_index_is_an_outage_not_a_silent_reread(src: Path, store: Path, tmp_path: Path,
                                                           index: bytes) -> None:
    publish(src, store)
    good = load_snapshot(str(store), cache_dir=tmp_path / "c")
    (store / INDEX_PATH).write_bytes(index)
    with pytest.raises(StoreUnavailableError, match="release index .* is not valid"):
        read_index(open_store(store))
    snapshot = load_snapshot(str(store), cache_dir=tmp_path / "c")
    assert [e.name for e in snapshot.entries] == [e.name for e in good.entries]
    assert any("is not valid" in w for w in snapshot.warnings)


def test_a_bundle_that_inflates_beyond_the_release_is_refused(src: Path, store: Path, tmp_path: Path) -> None:
    publish(src, store)
    index = json.loads((store / INDEX_PATH).read_text())
    bomb = gzip.compress(b'{"format":1,"files":{' + b" " * 50_000_000 + b"}}", mtime=0)
    import hashlib

    name = f"{BUNDLE_DIR}{hashlib.sha256(bomb).hexdigest()}.json.gz"
    (store / name).write_bytes(bomb)
    index["bundle"] = name
    (store / INDEX_PATH).write_text(json.dumps(index))
    for rel in index["files"]:
        (store / rel).write_text("changed\n")  # every plain file wrong: only the bundle could serve them
    with pytest.raises(StoreUnavailableError, match="inflates to more"):
        load_snapshot(str(store), cache_dir=tmp_path / "fresh")


def test_two_publishes_at_once_cannot_both_switch(src: Path, store: Path, tmp_path: Path) -> None:
    publish(src, store)
    other = write_tree(tmp_path / "other", {**RELEASE_1, "sales/orders.sql": "SELECT 7\n"})
    (src / "sales/orders.sql").write_text("SELECT 8\n")
    target = open_store(store)
    mine, theirs = releases.plan(src, target), releases.plan(other, target)
    releases.apply(theirs, target)
    with pytest.raises(ReleaseConflictError) as caught:
        releases.apply(mine, target)
    assert caught.value.code == "DLI-804" and "publish" in caught.value.hint
    # the release that switched is intact, whatever the loser uploaded
    assert scan(store).get("sales.orders").sql == "SELECT 7\n"
    assert load_snapshot(str(store), cache_dir=tmp_path / "c").get("sales.orders").sql == "SELECT 7\n"


def test_old_bundles_are_removed_after_the_grace_period(src: Path, store: Path) -> None:
    for n in range(releases.KEEP_BUNDLES + 3):
        (src / "sales/orders.sql").write_text(f"SELECT {n}\n")
        publish(src, store)
        for bundle in (store / BUNDLE_DIR).iterdir():  # every bundle so far is old
            os.utime(bundle, (1, 1))
    kept = sorted(p.name for p in (store / BUNDLE_DIR).iterdir() if not p.name.startswith("."))
    index = json.loads((store / INDEX_PATH).read_text())
    assert len(kept) == releases.KEEP_BUNDLES + 1
    assert sorted(p.removeprefix(BUNDLE_DIR) for p in [index["bundle"], *index["kept"]]) == kept


# -- the guard: publish writes only code/, registration only manual/ ---------------------------------------


@pytest.mark.parametrize("path", [
    "manual/a.yaml", "code/../manual/a.yaml", "/code/a.yaml", "code/", "code/.hidden.yaml", "code//a.yaml",
    "code/.dli/other.json", "code/.dli/bundles/x.json.gz", "a.yaml", "code\\..\\manual\\a.yaml", "code/a/./b.yaml",
])
def test_publish_writes_nothing_outside_code(path: str) -> None:
    with pytest.raises(WorkflowPermissionError, match="writes only plain files under code/"):
        releases.code_path(path)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(["code", "manual", "..", ".", "", ".dli", "a", "b.yaml", "bundles", "\\", "x.sql"]),
                min_size=1, max_size=5))
def test_code_path_accepts_only_plain_code_paths(parts: list[str]) -> None:
    path = "/".join(parts)
    try:
        accepted = releases.code_path(path)
    except WorkflowPermissionError:
        return
    assert accepted == path and path.startswith("code/")
    assert os.path.normpath(path) == path and ".." not in path.split("/")
    assert not path.startswith("code/.dli/") or path in (INDEX_PATH,) or path.startswith(BUNDLE_DIR)


def test_a_symlinked_code_folder_cannot_lead_a_publish_into_manual(src: Path, store: Path) -> None:
    (store / "code").symlink_to(store / "manual")
    target = open_store(store)
    plan = releases.plan(src, target)
    with pytest.raises(WorkflowPermissionError, match="outside the store"):
        releases.apply(plan, target)
    assert sorted(p.name for p in (store / "manual").iterdir()) == ["adhoc.yaml", "sales.returns.yaml"]


def test_a_symlink_in_the_source_out_of_it_is_refused(tmp_path: Path, src: Path, store: Path) -> None:
    secret = tmp_path / "secret.sql"
    secret.write_text("SELECT 'secret'\n")
    (src / "sales/orders.sql").unlink()
    (src / "sales/orders.sql").symlink_to(secret)
    plan = releases.plan(src, open_store(store))
    assert not plan.ok and "outside the store" in plan.problems[0].render()


def test_worker_reads_only_its_dataset(src: Path, store: Path, tmp_path: Path) -> None:
    publish(src, store)
    reads: list[str] = []

    class Counting(LocalStore):
        def read_bytes(self, path: str) -> bytes:
            reads.append(path)
            return super().read_bytes(path)

        def list_files(self, prefix):
            reads.append(f"LIST {prefix.value}")
            return super().list_files(prefix)

    snapshot = load_snapshot(Counting(store), cache_dir=tmp_path / "w", only="sales.orders")
    assert [e.name for e in snapshot.entries] == ["sales.orders"]
    assert reads == [INDEX_PATH, "code/sales/orders.yaml", "code/sales/orders.sql"]
    reads.clear()
    again = load_snapshot(Counting(store), cache_dir=tmp_path / "w", only="sales.orders")
    assert again.entries == snapshot.entries and reads == [INDEX_PATH]
    reads.clear()
    manual = load_snapshot(Counting(store), cache_dir=tmp_path / "w", only="reports.adhoc")
    assert "reports.adhoc" in {e.name for e in manual.active} and "LIST manual" in reads
    assert not any(r.startswith("code/") for r in reads[1:])


def test_a_manual_prefix_ci_cannot_read_is_a_warning_not_a_failure(src: Path, store: Path) -> None:
    from unittest import mock

    target = open_store(store)
    real = target.list_files

    def denied(prefix):  # a fault: CI's credentials without read access to manual/
        if prefix.value == "manual":
            raise StoreUnavailableError(f"Cannot list the spec store {target.url}: access denied (AccessDenied)")
        return real(prefix)

    with mock.patch.object(target, "list_files", side_effect=denied):
        plan = releases.plan(src, target)
    assert plan.ok and plan.overridden == () and "manual/ cannot be read" in plan.warnings[0]
    releases.apply(plan, target)
    result = CliRunner().invoke(app, ["spec", "publish", str(src), "--store", str(store)])
    assert result.exit_code == 0 and "already the release" in result.stdout


def _release_path_by_parts(path: str) -> bool:
    """The definition ``release_path`` had before it became one regex (kept as the property's oracle)."""
    parts = path.split("/")
    return (
        len(parts) >= 2 and parts[0] == "code" and not path.startswith("code/.dli/")
        and all(p not in ("", ".", "..") and not p.startswith(".") and "\\" not in p for p in parts)
    )


@given(st.lists(st.sampled_from(["code", "/", ".", "..", "\\", "a", ".dli", "x.yaml", "", " ", "\n", "é"]),
                max_size=8).map("".join))
@settings(max_examples=2000, deadline=None)
def test_a_release_path_is_what_it_was_segment_by_segment(path):
    from dli_airflow.release import release_path

    assert release_path(path) is _release_path_by_parts(path), path
