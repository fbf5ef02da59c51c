"""The snapshot cache on a local store: a change re-validates only what changed, and never serves stale SQL."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import dli_airflow.catalog as catalog_module
from dli_airflow.cache import load_snapshot

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

    def spy(store, path, all_paths=None):
        seen.append(path)
        return real(store, path, all_paths)

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
