"""Registering manual specs (`dli_airflow.registry`): overrides, SQL beside the spec, the code/manual checks."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import store_faults
import yaml
from race_support import race

from dli_airflow.catalog import scan
from dli_airflow.errors import (
    DliError,
    SpecValidationError,
    StoreUnavailableError,
    WorkflowNotFoundError,
    WorkflowPermissionError,
    WorkflowRegistrationError,
)
from dli_airflow.registry import (
    delete_manual,
    manual_entry,
    prepare_registration,
    registration_warning,
    write_manual,
)
from dli_airflow.spec import DatasetStatus, SourceType
from dli_airflow.store import LocalStore


def _visible(root: Path) -> list[str]:
    """The files of manual/ a listing sees (no temporary files, no write lock)."""
    return sorted(p.name for p in (root / "manual").rglob("*") if p.is_file() and not p.name.startswith("."))


def test_register_writes_spec_and_sql_and_applies_overrides(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "report.yaml").write_text(
        "# my report\nname: team.report\nowner: me@example.com\nquery_file: q/report.sql\n"
        "parameters: [{name: d, type: date, default: 2024-01-01}]\nschedule: {cron: '0 9 * * *'}\n"
    )
    (src / "q").mkdir()
    (src / "q" / "report.sql").write_text("SELECT {{ d }} AS d\n")
    store_root = tmp_path / "store"
    store_root.mkdir()
    store = LocalStore(store_root)
    prepared = prepare_registration(spec_path=src / "report.yaml", cron="30 7 * * 1", timezone="Asia/Seoul",
                                    enabled=False, retry_max_attempts=4)
    written = write_manual(store, prepared)
    assert written.spec_path == "manual/team.report.yaml"
    assert re.fullmatch(r"manual/team\.report\.[0-9a-f]{16}\.sql", written.sql_path or "")
    doc = yaml.safe_load((store_root / written.spec_path).read_text())
    assert doc["query_file"] == written.sql_path.removeprefix("manual/")  # the spec names its own SQL
    assert doc["schedule"] == {"cron": "30 7 * * 1", "timezone": "Asia/Seoul", "enabled": False,
                               "retry": {"max_attempts": 4}}
    (entry,) = scan(store).entries
    assert entry.source is SourceType.MANUAL and entry.status is DatasetStatus.PAUSED
    assert entry.sql == "SELECT {{ d }} AS d\n" and entry.sql_path == written.sql_path
    assert _visible(store_root) == sorted(["team.report.yaml", written.sql_path.removeprefix("manual/")])
    delete_manual(store, entry)
    assert _visible(store_root) == []  # both gone (only the hidden write lock stays)


def test_register_refuses_an_invalid_override(tmp_path):
    spec = tmp_path / "x.yaml"
    spec.write_text("name: x\nowner: o\nquery: SELECT 1\nschedule: {cron: '0 9 * * *'}\n")
    with pytest.raises(SpecValidationError, match="schedule.cron"):
        prepare_registration(spec_path=spec, cron="0 9 * *")


def test_register_needs_one_source():
    with pytest.raises(WorkflowRegistrationError):
        prepare_registration()


def _two_sources(make_store):
    return scan(LocalStore(make_store({
        "code/a.yaml": "name: both\nowner: o\nquery: SELECT 1\n",
        "manual/a.yaml": "name: both\nowner: o\nquery: SELECT 2\n",
        "code/b.yaml": "name: code_only\nowner: o\nquery: SELECT 1\n",
        "manual/c.yaml": "name: manual_only\nowner: o\nquery: SELECT 1\n",
    })))


@pytest.mark.hostile(kind="writes")
def test_registering_over_code_or_an_existing_manual_spec_needs_force(make_store):
    snapshot = _two_sources(make_store)
    with pytest.raises(WorkflowRegistrationError, match="already exists in code/"):
        registration_warning(snapshot, "code_only", force=False)
    assert "overridden by code" in (registration_warning(snapshot, "code_only", force=True) or "")
    with pytest.raises(WorkflowRegistrationError, match="already registered"):
        registration_warning(snapshot, "manual_only", force=False)
    assert registration_warning(snapshot, "manual_only", force=True) is None
    assert registration_warning(snapshot, "new", force=False) is None
    assert registration_warning(None, "code_only", force=False) is None  # nothing to check against


def test_unregistering_takes_the_manual_copy_only(make_store):
    snapshot = _two_sources(make_store)
    entry, code_stays = manual_entry(snapshot, "both")
    assert entry.source is SourceType.MANUAL and code_stays
    assert manual_entry(snapshot, "manual_only")[1] is False
    with pytest.raises(WorkflowPermissionError, match="managed by code"):
        manual_entry(snapshot, "code_only")
    with pytest.raises(WorkflowNotFoundError):
        manual_entry(snapshot, "nope")


def test_an_unknown_override_keyword_is_refused(tmp_path):
    with pytest.raises(TypeError, match="allowed: cron, timezone, enabled, retry_max_attempts, retry_delay_seconds"):
        prepare_registration(spec={"name": "a", "owner": "o", "query": "SELECT 1"}, crn="0 9 * * *")


# -- writes: create-if-absent, force replaces only the version read, spec and SQL never pair across writers -----

ROUNDS = 20


def _prepared(name: str, sql: str, **overrides):
    return prepare_registration(
        spec={"name": name, "owner": "me@example.com", "query_file": "q.sql"}, sql=sql, **overrides
    )




def _pair(store: LocalStore, name: str) -> tuple[str, str]:
    """The manual entry of ``name`` as a reader resolves it: its SQL text and the SQL's key."""
    snapshot = scan(store)
    assert snapshot.problems == (), [p.message for p in snapshot.problems]
    entry = snapshot.get(name, SourceType.MANUAL)
    return entry.sql, entry.sql_path or ""


@pytest.mark.hostile(kind="writes")
def test_two_registrations_of_one_name_at_once_exactly_one_wins_and_keeps_its_own_sql(tmp_path):
    root = tmp_path / "store"
    root.mkdir()
    store = LocalStore(root)
    for n in range(ROUNDS):
        name = f"race.r{n}"
        a, b = _prepared(name, f"SELECT 'A{n}' AS w"), _prepared(name, f"SELECT 'B{n}' AS w")
        results = race([lambda p=a: write_manual(store, p), lambda p=b: write_manual(store, p)])
        assert sorted(results) == ["DLI-801", "ok"], results
        winner = a if results[0] == "ok" else b
        sql, key = _pair(store, name)
        assert sql == winner.sql  # the spec pairs with the SQL its own writer wrote
        assert [f for f in _visible(root) if f.startswith(f"{name}.")] == sorted([f"{name}.yaml", key[len("manual/"):]])


@pytest.mark.hostile(kind="writes")
def test_two_forced_replacements_at_once_never_lose_a_write_nor_leave_files_over(tmp_path):
    """Each forced write replaces only the version it read: two that overlap make one fail (DLI-801); two that
    happen one after the other both succeed (the second replaced the first knowingly)."""
    root = tmp_path / "store"
    root.mkdir()
    store = LocalStore(root)
    write_manual(store, _prepared("race.forced", "SELECT 0 AS w"))
    for n in range(ROUNDS):
        a, b = _prepared("race.forced", f"SELECT {n} AS a"), _prepared("race.forced", f"SELECT {n} AS b")
        results = race([lambda p=a: write_manual(store, p, force=True), lambda p=b: write_manual(store, p, force=True)])
        assert "ok" in results, results
        sql, key = _pair(store, "race.forced")
        assert sql in {w.sql for w, r in zip((a, b), results) if r == "ok"}
        # the replaced specs' SQL and a loser's SQL are gone: one spec, one SQL
        assert _visible(root) == sorted(["race.forced.yaml", key[len("manual/"):]])


@pytest.mark.hostile(kind="writes")
def test_a_forced_replacement_overtaken_after_its_read_fails_and_the_other_stands(tmp_path, monkeypatch):
    """The interleaving the race above may or may not hit, made certain: B registers between A's read and A's write."""
    root = tmp_path / "store"
    root.mkdir()
    store = LocalStore(root)
    write_manual(store, _prepared("team.one", "SELECT 0 AS v"))
    real_read = LocalStore.read_manual
    overtaken: list[str] = []

    def read_then_overtaken(self, path: str):
        current = real_read(self, path)
        if not overtaken:
            overtaken.append("B")
            write_manual(store, _prepared("team.one", "SELECT 'B' AS v"), force=True)
        return current

    monkeypatch.setattr(LocalStore, "read_manual", read_then_overtaken)
    with pytest.raises(WorkflowRegistrationError, match="changed since it was read") as info:
        write_manual(store, _prepared("team.one", "SELECT 'A' AS v"), force=True)
    assert info.value.code == "DLI-801"
    sql, key = _pair(store, "team.one")
    assert sql == "SELECT 'B' AS v" and _visible(root) == sorted(["team.one.yaml", key[len("manual/"):]])


@pytest.mark.hostile(kind="writes")
def test_a_registration_racing_an_unregistration_never_leaves_a_spec_without_its_sql(tmp_path):
    root = tmp_path / "store"
    root.mkdir()
    store = LocalStore(root)
    for n in range(ROUNDS):
        write_manual(store, _prepared("race.gone", f"SELECT {n} AS old"))
        entry = scan(store).get("race.gone")
        new = _prepared("race.gone", f"SELECT {n} AS new")
        results = race([lambda p=new: write_manual(store, p, force=True), lambda e=entry: delete_manual(store, e)])
        assert results.count("ok") >= 1, results
        snapshot = scan(store)
        assert snapshot.problems == (), [p.message for p in snapshot.problems]  # never a dangling query_file
        names = [e.name for e in snapshot.entries]
        if results == ["ok", "DLI-801"] or "race.gone" in names:  # replaced (the unregistration lost), or re-added
            assert snapshot.get("race.gone").sql == new.sql
            delete_manual(store, snapshot.get("race.gone"))
        assert _visible(root) == []


@pytest.mark.hostile(kind="writes")
def test_without_force_an_existing_manual_spec_is_never_replaced(tmp_path):
    """The store's exclusive create decides, even when the caller's view of the store said the name was free."""
    root = tmp_path / "store"
    root.mkdir()
    store = LocalStore(root)
    write_manual(store, _prepared("team.one", "SELECT 1 AS first"))
    assert registration_warning(None, "team.one", force=False) is None  # no snapshot to check against
    with pytest.raises(WorkflowRegistrationError, match="already exists") as info:
        write_manual(store, _prepared("team.one", "SELECT 2 AS second"))
    assert info.value.code == "DLI-801"
    assert _pair(store, "team.one")[0] == "SELECT 1 AS first"
    assert len(_visible(root)) == 2  # the refused registration's SQL was removed again


def test_force_replaces_the_spec_and_removes_the_sql_it_named(tmp_path):
    root = tmp_path / "store"
    root.mkdir()
    store = LocalStore(root)
    first = write_manual(store, _prepared("team.one", "SELECT 1 AS v"))
    second = write_manual(store, _prepared("team.one", "SELECT 1 AS v", cron="0 9 * * *"), force=True)
    assert second.sql_path != first.sql_path  # a key per registration, even for the same SQL
    assert _visible(root) == sorted(["team.one.yaml", second.sql_path.removeprefix("manual/")])
    entry = scan(store).get("team.one")
    assert entry.spec.schedule is not None and entry.spec.schedule.cron == "0 9 * * *"
    # a spec registered before SQL keys (manual/<name>.sql) is replaced the same way
    (root / "manual" / "team.old.sql").write_text("SELECT 2 AS v")
    (root / "manual" / "team.old.yaml").write_text("name: team.old\nowner: me@example.com\nquery_file: team.old.sql\n")
    write_manual(store, _prepared("team.old", "SELECT 3 AS v"), force=True)
    assert "team.old.sql" not in _visible(root) and scan(store).get("team.old").sql == "SELECT 3 AS v"
    # inline SQL: one object, nothing else
    write_manual(store, prepare_registration(spec={"name": "team.inline", "owner": "o@x.y", "query": "SELECT 4"}))
    assert [f for f in _visible(root) if f.startswith("team.inline")] == ["team.inline.yaml"]


@pytest.mark.hostile(kind="writes")
def test_a_failed_spec_write_removes_the_sql_written_for_it(tmp_path, monkeypatch):
    root = tmp_path / "store"
    root.mkdir()
    store = LocalStore(root)
    real = LocalStore._create

    def fail_on_spec(self, path: str, data: bytes) -> None:
        if path.endswith(".yaml"):
            raise StoreUnavailableError("the disk went away")
        real(self, path, data)

    monkeypatch.setattr(LocalStore, "_create", fail_on_spec)
    with pytest.raises(StoreUnavailableError):
        write_manual(store, _prepared("team.one", "SELECT 1 AS v"))
    assert _visible(root) == []


REGISTRATION_CASES = [
    ("fifo-spec", lambda src: store_faults.fifo(src / "s.yaml"), "DLI-202", "a FIFO"),
    ("fifo-query-file", lambda src: ((src / "s.yaml").write_text(SPEC_WITH_FILE), store_faults.fifo(src / "q.sql")),
     "DLI-201", "a FIFO"),
    ("sparse-2GiB-spec", lambda src: store_faults.sparse(src / "s.yaml", 2 * store_faults.GiB), "DLI-202",
     "a spec may be at most 1024 KiB"),
    ("sparse-2GiB-query-file", lambda src: ((src / "s.yaml").write_text(SPEC_WITH_FILE),
                                            store_faults.sparse(src / "q.sql", 2 * store_faults.GiB)),
     "DLI-201", "the limit is 10 MB"),
    ("dangling-spec", lambda src: store_faults.dangling(src / "s.yaml"), "DLI-103", "a symlink to nowhere.yaml"),
    ("folder-as-spec", lambda src: (src / "s.yaml").mkdir(), "DLI-202", "is a folder"),
]
SPEC_WITH_FILE = "name: team.q\nowner: me@example.com\nquery_file: q.sql\n"


@pytest.mark.hostile(kind="files")
@pytest.mark.timeout(30)
@pytest.mark.parametrize(("build", "code", "fragment"), [c[1:] for c in REGISTRATION_CASES],
                         ids=[c[0] for c in REGISTRATION_CASES])
def test_registering_a_hostile_file_is_refused_at_once(tmp_path, build, code, fragment):
    src = tmp_path / "src"
    src.mkdir()
    build(src)
    with pytest.raises(DliError) as info:
        prepare_registration(spec_path=src / "s.yaml")
    assert (info.value.code, fragment in info.value.message) == (code, True), info.value.message


@pytest.mark.hostile(kind="files")
def test_a_hostile_manual_file_in_the_way_of_force_is_a_clear_error(tmp_path):
    root = tmp_path / "store"
    store_faults.fifo(root / "manual" / "team.one.yaml")
    with pytest.raises(DliError, match="a FIFO"):
        write_manual(LocalStore(root), _prepared("team.one", "SELECT 1 AS v"), force=True)
    assert (root / "manual" / "team.one.yaml").is_fifo() and _visible(root) == []  # no SQL was left behind


@pytest.mark.hostile(kind="names")
@pytest.mark.parametrize("lookalike", ["Code_Only", "code-only", "CODE-ONLY", "Manual-Only", "BOTH"])
def test_a_look_alike_of_a_stored_name_is_refused_even_with_force(make_store, lookalike):
    snapshot = _two_sources(make_store)
    for force in (False, True):
        with pytest.raises(WorkflowRegistrationError, match="differ only by case"):
            registration_warning(snapshot, lookalike, force=force)
