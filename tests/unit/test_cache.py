"""The snapshot cache on a local store: a change re-validates only what changed, and never serves stale SQL."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import store_faults
from store_faults import deny  # noqa: F401  (a fixture)

import dli_airflow.catalog as catalog_module
from dli_airflow.cache import load_snapshot
from dli_airflow.spec import SourceType

pytestmark = pytest.mark.usefixtures("dli_isolated")


def _write(path: Path, text: str, bump: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    # a new mtime even on filesystems with coarse timestamps: the listing's version is mtime + size
    stamp = path.stat().st_mtime_ns + bump * 1_000_000_000
    os.utime(path, ns=(stamp, stamp))


@pytest.fixture
def store(tmp_path: Path) -> Path:
    root = tmp_path / "store"
    for i in range(5):
        _write(root / "code" / f"d{i}.yaml", f"name: team.d{i}\nowner: me@example.com\nquery_file: d{i}.sql\n"
               "parameters: [{name: day, type: date, required: true}]\n")
        _write(root / "code" / f"d{i}.sql", f"SELECT {i} AS n WHERE d = {{{{ day }}}}\n")
    return root


@pytest.fixture
def loads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The spec files the store loads and validates (the cache's job is to keep this short)."""
    seen: list[str] = []
    real = catalog_module.load_entry

    def spy(store, path, all_paths=None, **kwargs):
        seen.append(path)
        return real(store, path, all_paths, **kwargs)

    monkeypatch.setattr(catalog_module, "load_entry", spy)
    return seen


def test_one_changed_sql_file_revalidates_one_spec_and_shows_the_new_sql(store: Path, loads: list[str], tmp_path: Path):
    cache = tmp_path / "cache"
    load_snapshot(str(store), cache_dir=cache)
    assert len(loads) == 5
    loads.clear()
    assert load_snapshot(str(store), cache_dir=cache).get("team.d1").sql.startswith("SELECT 1")
    assert loads == []  # unchanged: nothing loaded

    _write(store / "code" / "d1.sql", "SELECT 100 AS n WHERE d = {{ day }}\n", bump=5)
    snapshot = load_snapshot(str(store), cache_dir=cache)
    assert snapshot.get("team.d1").sql == "SELECT 100 AS n WHERE d = {{ day }}\n"
    assert loads == ["code/d1.yaml"]
    assert {e.name for e in snapshot.active} == {f"team.d{i}" for i in range(5)}


def test_a_changed_spec_is_loaded_again(store: Path, loads: list[str], tmp_path: Path):
    cache = tmp_path / "cache"
    load_snapshot(str(store), cache_dir=cache)
    loads.clear()
    _write(store / "code" / "d2.yaml", "name: team.d2\nowner: someone@example.com\nquery_file: d2.sql\n"
           "parameters: [{name: day, type: date, required: true}]\n", bump=5)
    snapshot = load_snapshot(str(store), cache_dir=cache)
    assert snapshot.get("team.d2").spec.owner == "someone@example.com"
    assert loads == ["code/d2.yaml"]


def test_sql_problems_appear_although_the_spec_did_not_change(store: Path, tmp_path: Path):
    cache = tmp_path / "cache"
    load_snapshot(str(store), cache_dir=cache)
    # a hand-quoted placeholder in d3's SQL, and d4's SQL file deleted
    _write(store / "code" / "d3.sql", "SELECT 3 WHERE d = '{{ day }}'\n", bump=5)
    (store / "code" / "d4.sql").unlink()
    snapshot = load_snapshot(str(store), cache_dir=cache)
    messages = " | ".join(p.message for p in snapshot.problems)
    assert "d3.sql" in messages and "quoted" in messages
    assert "d4.sql" in messages and "does not exist" in messages
    assert {e.name for e in snapshot.active} == {"team.d0", "team.d1", "team.d2"}

    # fixed again: both come back
    _write(store / "code" / "d3.sql", "SELECT 3 WHERE d = {{ day }}\n", bump=10)
    _write(store / "code" / "d4.sql", "SELECT 4 WHERE d = {{ day }}\n", bump=10)
    snapshot = load_snapshot(str(store), cache_dir=cache)
    assert snapshot.problems == ()
    assert len(snapshot.active) == 5


def test_a_spec_moved_to_another_file_is_not_reused_from_the_old_path(store: Path, loads: list[str], tmp_path: Path):
    cache = tmp_path / "cache"
    load_snapshot(str(store), cache_dir=cache)
    loads.clear()
    (store / "code" / "d0.yaml").rename(store / "code" / "renamed.yaml")
    snapshot = load_snapshot(str(store), cache_dir=cache)
    assert snapshot.get("team.d0").path == "code/renamed.yaml"
    assert loads == ["code/renamed.yaml"]


def test_a_shard_reads_its_own_cache_file_when_nothing_changed(store: Path, loads: list[str], tmp_path: Path):
    from dli_airflow.cache import cache_path
    from dli_airflow.catalog import shard_of

    cache = tmp_path / "cache"
    full = load_snapshot(str(store), cache_dir=cache, shard=(1, 2))
    assert len(full.entries) == 5  # the first parse resolves the whole store
    loads.clear()
    cache_path(str(store), cache).unlink()  # only the shard's own file is left
    part = load_snapshot(str(store), cache_dir=cache, shard=(1, 2))
    assert loads == []
    assert {e.name for e in part.entries} == {f"team.d{i}" for i in range(5) if shard_of(f"team.d{i}", 2) == 1}
    # a change makes the shard file stale: the store is resolved again (all of it: the full cache is gone)
    _write(store / "code" / "d0.sql", "SELECT 0 WHERE d = {{ day }} -- v2\n", bump=5)
    again = load_snapshot(str(store), cache_dir=cache, shard=(1, 2))
    assert loads == ["code/d0.yaml", "code/d1.yaml", "code/d2.yaml", "code/d3.yaml", "code/d4.yaml"]
    assert "team.d0" in {e.name for e in again.entries}


# -- an unreadable file or folder is an outage for the names it may hold, never a silent swap ---------------
# The store: team.a (code/team/a.yaml + a.sql) and team.b (code/team/b.yaml), each with a manual twin on an
# every-minute schedule, plus other.c (code) and manual.only. After a good parse one path breaks (and a new
# code spec arrives at the same time): the last good code copies keep running, the manual twins stay
# overridden, the problem names the path, and the rest of the store is read as usual.

MINUTELY = "schedule: {cron: '* * * * *'}\n"


@pytest.fixture
def twins(tmp_path: Path) -> Path:
    root = tmp_path / "twins"
    _write(root / "code/team/a.yaml", "name: team.a\nowner: me@example.com\nquery_file: a.sql\n")
    _write(root / "code/team/a.sql", "SELECT 'code a' AS v\n")
    _write(root / "code/team/b.yaml", "name: team.b\nowner: me@example.com\nquery: SELECT 'code b' AS v\n")
    _write(root / "code/c.yaml", "name: other.c\nowner: me@example.com\nquery: SELECT 3 AS v\n")
    for name in ("team.a", "team.b"):
        _write(root / f"manual/{name}.yaml", f"name: {name}\nowner: m@example.com\nquery: SELECT 'manual' AS v\n"
               + MINUTELY)
    _write(root / "manual/only.yaml", "name: manual.only\nowner: m@example.com\nquery: SELECT 4 AS v\n")
    return root


def _winners(snapshot) -> dict[str, str]:
    return {e.name: e.source.value for e in snapshot.active}


def _replace(path: Path, make) -> None:
    path.unlink()
    make(path)


def _redeployed_unreadable(deny, path: Path) -> None:
    """A deploy rewrites the file with a mode dli cannot read (a CI umask of 077, say). An unchanged file that
    becomes unreadable needs no read at all: its version is the one the last good copy was made from."""
    _write(path, path.read_text() + "# redeployed\n", bump=5)
    deny(path)


OUTAGES = [
    # (id, break the store, code, the path named, the datasets whose last good code copy keeps running)
    ("denied-code-folder", lambda r, d: d(r / "code/team"), "DLI-503", "code/team/", {"team.a", "team.b"}),
    ("denied-code-prefix", lambda r, d: d(r / "code"), "DLI-503", "code/", {"team.a", "team.b", "other.c"}),
    ("folder-became-a-link", lambda r, d: ((r / "code/team").rename(r.parent / "moved"),
                                           (r / "code/team").symlink_to(r.parent / "moved")),
     "DLI-503", "code/team/", {"team.a", "team.b"}),
    ("denied-spec", lambda r, d: _redeployed_unreadable(d, r / "code/team/a.yaml"), "DLI-202", "code/team/a.yaml",
     {"team.a"}),
    ("spec-became-a-fifo", lambda r, d: _replace(r / "code/team/a.yaml", store_faults.fifo), "DLI-202",
     "code/team/a.yaml", {"team.a"}),
    ("spec-became-a-socket", lambda r, d: _replace(r / "code/team/a.yaml", store_faults.unix_socket), "DLI-202",
     "code/team/a.yaml", {"team.a"}),
    ("spec-became-a-dangling-link", lambda r, d: _replace(r / "code/team/a.yaml", store_faults.dangling), "DLI-202",
     "code/team/a.yaml", {"team.a"}),
    ("spec-became-2GiB", lambda r, d: _replace(r / "code/team/a.yaml", lambda p: store_faults.sparse(
        p, 2 * store_faults.GiB)), "DLI-202", "code/team/a.yaml", {"team.a"}),
    ("denied-sql", lambda r, d: _redeployed_unreadable(d, r / "code/team/a.sql"), "DLI-201", "code/team/a.sql",
     {"team.a"}),
    ("sql-became-a-fifo", lambda r, d: _replace(r / "code/team/a.sql", store_faults.fifo), "DLI-201",
     "code/team/a.sql", {"team.a"}),
    ("sql-became-11MiB", lambda r, d: _replace(r / "code/team/a.sql", lambda p: store_faults.sparse(
        p, 11 * 1024 * 1024, b"SELECT 1 --")), "DLI-201", "code/team/a.sql", {"team.a"}),
]


@pytest.mark.timeout(60)
@pytest.mark.parametrize(("breaks", "code", "where", "kept"), [o[1:] for o in OUTAGES], ids=[o[0] for o in OUTAGES])
def test_an_unreadable_code_path_keeps_its_last_good_copy_and_the_manual_twins_overridden(
    twins: Path, tmp_path: Path, deny, breaks, code: str, where: str, kept: set[str]
) -> None:
    cache = tmp_path / "cache"
    good = load_snapshot(str(twins), cache_dir=cache)
    assert _winners(good) == {"team.a": "code", "team.b": "code", "other.c": "code", "manual.only": "manual"}
    breaks(twins, deny)
    if "other.c" not in kept:  # the rest of the store is still read: a new spec arrives with the outage
        _write(twins / "code/new.yaml", "name: other.new\nowner: me@example.com\nquery: SELECT 5 AS v\n")
    snapshot = load_snapshot(str(twins), cache_dir=cache)
    winners = _winners(snapshot)
    assert {n for n, source in winners.items() if n.startswith("team.")} == {"team.a", "team.b"} & (
        kept | {"team.a", "team.b"})
    assert all(winners[n] == "code" for n in kept)  # the last good code copy keeps running
    for name in kept:
        assert snapshot.get(name).spec == good.get(name).spec and snapshot.get(name).sql == good.get(name).sql
        if name.startswith("team."):
            assert snapshot.get(name, SourceType.MANUAL).status.value == "overridden"  # never a silent swap
    assert winners.get("manual.only") == "manual"
    if "other.c" not in kept:
        assert winners["other.new"] == "code" and winners["other.c"] == "code"
    [problem] = snapshot.problems
    assert problem.code == code and f"{twins}/{where}" in problem.message, problem.message
    assert "keep" in problem.message and "running from the last good copy" in problem.message
    # an unchanged outage is a cache hit, and serves the same
    assert _winners(load_snapshot(str(twins), cache_dir=cache)) == winners


def test_a_code_spec_broken_beyond_its_name_keeps_the_manual_twin_overridden(twins: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    load_snapshot(str(twins), cache_dir=cache)
    _write(twins / "code/team/a.yaml", "name: [team.a\n\towner: oops\n", bump=5)  # no name can be read from it
    snapshot = load_snapshot(str(twins), cache_dir=cache)
    assert "team.a" not in _winners(snapshot)  # a content error: the code DAG stops, the error says why
    assert snapshot.get("team.a", SourceType.MANUAL).status.value == "overridden"
    [problem] = snapshot.problems
    assert problem.code == "DLI-202" and "code/team/a.yaml" in problem.message


def test_a_code_spec_broken_then_unreadable_keeps_the_manual_twin_overridden(
    twins: Path, tmp_path: Path, deny
) -> None:
    cache = tmp_path / "cache"
    load_snapshot(str(twins), cache_dir=cache)
    _write(twins / "code/team/a.yaml", "name: team.a\nowner: me@example.com\nengine: nope\nquery: SELECT 1\n", bump=5)
    broken = load_snapshot(str(twins), cache_dir=cache)
    assert broken.get("team.a", SourceType.MANUAL).status.value == "overridden"
    deny(twins / "code/team/a.yaml")
    snapshot = load_snapshot(str(twins), cache_dir=cache)
    assert snapshot.get("team.a", SourceType.MANUAL).status.value == "overridden"
    assert "team.a" not in _winners(snapshot)


def test_an_outage_lasts_across_parses_and_ends_when_the_path_is_readable_again(
    twins: Path, tmp_path: Path, deny
) -> None:
    cache = tmp_path / "cache"
    load_snapshot(str(twins), cache_dir=cache)
    deny(twins / "code/team")
    assert _winners(load_snapshot(str(twins), cache_dir=cache))["team.a"] == "code"
    _write(twins / "code/d.yaml", "name: other.d\nowner: me@example.com\nquery: SELECT 6 AS v\n")  # another change
    during = load_snapshot(str(twins), cache_dir=cache)
    assert _winners(during)["team.a"] == _winners(during)["team.b"] == "code" and "other.d" in _winners(during)
    # while it could not be read, team.b's spec was removed and team.a's SQL changed (a deploy went on)
    deny.allow(twins / "code/team")
    (twins / "code/team/b.yaml").unlink()
    _write(twins / "code/team/a.sql", "SELECT 'code a v2' AS v\n", bump=5)
    after = load_snapshot(str(twins), cache_dir=cache)
    assert after.problems == ()
    assert after.get("team.a").sql == "SELECT 'code a v2' AS v\n"
    assert after.get("team.b").source is SourceType.MANUAL  # its code spec is really gone: restored
    assert after.get("team.a", SourceType.MANUAL).status.value == "overridden"


def test_an_unreadable_manual_folder_keeps_its_last_good_manual_specs(tmp_path: Path, deny) -> None:
    root = tmp_path / "store"
    _write(root / "manual/team/m.yaml", "name: team.m\nowner: m@example.com\nquery: SELECT 1 AS v\n")
    _write(root / "code/c.yaml", "name: other.c\nowner: me@example.com\nquery: SELECT 3 AS v\n")
    cache = tmp_path / "cache"
    load_snapshot(str(root), cache_dir=cache)
    deny(root / "manual/team")
    snapshot = load_snapshot(str(root), cache_dir=cache)
    assert _winners(snapshot) == {"team.m": "manual", "other.c": "code"}
    [problem] = snapshot.problems
    assert problem.code == "DLI-503" and "manual/team/" in problem.message and "team.m keeps running" in problem.message


def test_an_unreadable_file_is_never_taken_for_read_and_is_read_again_once_readable(
    twins: Path, tmp_path: Path, deny
) -> None:
    """The last good copy stands in for the file while it cannot be read, but is never reused as the file:
    the outage is reported at every parse, and a chmod that fixes it (same content, same mtime) is a change."""
    cache = tmp_path / "cache"
    load_snapshot(str(twins), cache_dir=cache)
    _write(twins / "code/team/a.sql", "SELECT 'code a v2' AS v\n", bump=5)
    deny(twins / "code/team/a.sql")  # the new SQL was deployed unreadable
    first = load_snapshot(str(twins), cache_dir=cache)
    assert first.get("team.a").sql == "SELECT 'code a' AS v\n" and len(first.problems) == 1
    _write(twins / "code/c.yaml", "name: other.c\nowner: me@example.com\nquery: SELECT 33 AS v\n", bump=5)
    second = load_snapshot(str(twins), cache_dir=cache)  # resolved again because other.c changed
    assert second.get("team.a").sql == "SELECT 'code a' AS v\n" and len(second.problems) == 1
    deny.allow(twins / "code/team/a.sql")
    fixed = load_snapshot(str(twins), cache_dir=cache)
    assert fixed.problems == () and fixed.get("team.a").sql == "SELECT 'code a v2' AS v\n"
