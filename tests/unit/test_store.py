"""The storage layer (`dli_airflow.store`): only regular files are read, bounded; unreadable folders are listed,
not skipped; the one write guard; conditional writes (create-if-absent, replace/delete only the version read)."""

from __future__ import annotations

import multiprocessing
import os
import resource
import stat
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from race_support import race
from store_faults import Deny, GiB, dangling, deny, fifo, sparse, unix_socket  # noqa: F401  (deny: a fixture)

import dli_airflow.store as store_module
from dli_airflow.catalog import scan
from dli_airflow.errors import (
    DliError,
    SpecValidationError,
    WorkflowPermissionError,
    WorkflowRegistrationError,
)
from dli_airflow.spec import SourceType
from dli_airflow.store import (
    MAX_SPEC_BYTES,
    MAX_SQL_BYTES,
    LocalStore,
    SpecStore,
    StoreFile,
    manual_path,
    read_regular,
)

pytestmark = pytest.mark.usefixtures("dli_isolated")

KEEP = "name: ok.keep\nowner: me@example.com\nquery: SELECT 1 AS one\n"
WITH_SQL = "name: s.x\nowner: me@example.com\nquery_file: x.sql\n"


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# -- reads: the hostile corpus ------------------------------------------------------------------------------
# each case builds one hostile file next to a good spec (code/keep.yaml); the scan must finish at once, report
# one problem with the code and the file named, and keep ok.keep active


def _write(root: Path, rel: str, text: str | bytes) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


def _with_sql(make: Callable[[Path], None]) -> Callable[[Path, Deny], None]:
    def build(root: Path, denied: Deny) -> None:
        _write(root, "code/x.yaml", WITH_SQL)
        make(root / "code" / "x.sql")

    return build


READ_CASES: list[tuple[str, Callable[[Path, Deny], None], str, str, str]] = [
    ("fifo-spec", lambda r, d: fifo(r / "code/x.yaml"), "DLI-202", "code/x.yaml", "is a FIFO (named pipe), not a regular"),
    ("fifo-query-file", _with_sql(fifo), "DLI-201", "code/x.yaml: query_file", "a FIFO"),
    ("fifo-manual-spec", lambda r, d: fifo(r / "manual/x.yaml"), "DLI-202", "manual/x.yaml", "a FIFO"),
    ("socket-spec", lambda r, d: unix_socket(r / "code/x.yaml"), "DLI-202", "code/x.yaml", "is a socket"),
    ("socket-query-file", _with_sql(unix_socket), "DLI-201", "code/x.sql", "is a socket"),
    ("sparse-2GiB-spec", lambda r, d: sparse(r / "code/x.yaml", 2 * GiB), "DLI-202", "code/x.yaml",
     "2147.5 MB; a spec may be at most 1024 KiB"),
    ("sparse-2GiB-sql", _with_sql(lambda p: sparse(p, 2 * GiB, b"SELECT 1")), "DLI-201", "code/x.sql",
     "the limit is 10 MB"),
    ("spec-1MiB-plus-1", lambda r, d: sparse(r / "code/x.yaml", MAX_SPEC_BYTES + 1), "DLI-202", "code/x.yaml",
     "may be at most 1024 KiB"),
    ("sql-10MiB-plus-1", _with_sql(lambda p: sparse(p, MAX_SQL_BYTES + 1, b"SELECT 1 --")), "DLI-201",
     "code/x.sql", "the limit is 10 MB"),
    ("dangling-spec", lambda r, d: dangling(r / "code/x.yaml"), "DLI-202", "code/x.yaml",
     "is a symlink to nowhere.yaml, which does not exist"),
    ("dangling-query-file", _with_sql(lambda p: dangling(p, "gone.sql")), "DLI-201", "code/x.yaml: query_file",
     "symlink to gone.sql, which does not exist"),
    ("dangling-manual-spec", lambda r, d: dangling(r / "manual/x.yaml"), "DLI-202", "manual/x.yaml", "symlink"),
    ("link-out-spec", lambda r, d: dangling(r / "code/x.yaml", "/etc/hostname"), "DLI-201", "code/x.yaml",
     "points outside the store"),
    ("device-as-query-file", _with_sql(lambda p: dangling(p, "/dev/zero")), "DLI-201", "code/x.sql",
     "points outside the store"),
    ("denied-spec", lambda r, d: d(_write(r, "code/x.yaml", KEEP.replace("ok.keep", "s.x"))), "DLI-202",
     "code/x.yaml", "cannot be read: Permission denied"),
    ("denied-query-file", lambda r, d: (_write(r, "code/x.yaml", WITH_SQL), d(_write(r, "code/x.sql", "SELECT 1"))),
     "DLI-201", "code/x.sql", "Permission denied"),
    ("denied-code-folder", lambda r, d: d(_write(r, "code/team/x.yaml", KEEP.replace("ok.keep", "s.x")).parent),
     "DLI-503", "code/team/", "Cannot read the folder"),
    ("denied-manual-folder", lambda r, d: d(_write(r, "manual/team/x.yaml", KEEP.replace("ok.keep", "s.x")).parent),
     "DLI-503", "manual/team/", "Permission denied"),
    ("folder-symlink", lambda r, d: (_write(r.parent, "elsewhere/x.yaml", KEEP.replace("ok.keep", "s.x")),
                                     (r / "code/linked").symlink_to(r.parent / "elsewhere")),
     "DLI-503", "code/linked/", "symlink to a folder"),
    ("folder-as-query-file", lambda r, d: (_write(r, "code/x.yaml", WITH_SQL), (r / "code/x.sql").mkdir()),
     "DLI-201", "code/x.yaml: query_file", "does not exist"),
]


@pytest.mark.hostile(kind="files")
@pytest.mark.timeout(30)
@pytest.mark.parametrize(("build", "code", "where", "fragment"), [c[1:] for c in READ_CASES],
                         ids=[c[0] for c in READ_CASES])
def test_a_hostile_file_is_one_problem_and_the_rest_keeps_running(
    tmp_path: Path, deny: Deny, build: Callable[[Path, Deny], None], code: str, where: str, fragment: str
) -> None:
    root = tmp_path / "store"
    _write(root, "code/keep.yaml", KEEP)
    scan(LocalStore(root))  # warm: the imports a scan needs are loaded before memory is measured
    build(root, deny)
    before = _peak_rss_mb()
    started = time.monotonic()
    snapshot = scan(LocalStore(root))
    assert time.monotonic() - started < 5, "a hostile file must never block a scan"
    assert _peak_rss_mb() - before < 64, "nothing large was read"
    assert [e.name for e in snapshot.active] == ["ok.keep"]
    [problem] = snapshot.problems
    assert (problem.code, fragment in problem.message) == (code, True), problem.message
    assert f"{root}/{where}" in problem.message


@pytest.mark.hostile(kind="files")
def test_read_regular_refuses_devices_without_reading_them(tmp_path: Path) -> None:
    for device in ("/dev/zero", "/dev/null", "/dev/urandom"):
        with pytest.raises(SpecValidationError, match="is a character device, not a regular file"):
            read_regular(device, "code/x.sql", "code/x.sql")


@pytest.mark.hostile(kind="files")
@pytest.mark.timeout(30)
def test_a_fifo_with_a_writer_waiting_is_refused_at_once(tmp_path: Path) -> None:
    """O_NONBLOCK: opening a FIFO never waits for a writer; fstat on the descriptor refuses it."""
    path = tmp_path / "code" / "x.sql"
    fifo(path)
    started = time.monotonic()
    with pytest.raises(SpecValidationError, match="a FIFO"):
        read_regular(str(path), "code/x.sql", "code/x.sql")
    assert time.monotonic() - started < 1


@pytest.mark.hostile(kind="files")
def test_the_check_that_counts_is_fstat_on_the_open_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A regular file swapped for a FIFO between the stat and the open is still refused (no TOCTOU)."""
    path = tmp_path / "x.yaml"
    path.write_text("name: x\n")
    real_open = os.open

    def swap_then_open(target: str, flags: int, *args: int) -> int:
        os.unlink(target)
        os.mkfifo(target)
        return real_open(target, flags, *args)

    monkeypatch.setattr(store_module.os, "open", swap_then_open)
    with pytest.raises(DliError, match="a FIFO"):
        read_regular(str(path), "code/x.yaml", "code/x.yaml")


@pytest.mark.hostile(kind="files")
def test_a_file_that_grows_past_the_limit_while_read_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "x.sql"
    path.write_bytes(b"SELECT 1")
    real_read = os.read
    reads: list[int] = []

    def growing(fd: int, n: int) -> bytes:
        reads.append(n)
        return b"x" * n if len(reads) < 50 else real_read(fd, n)

    monkeypatch.setattr(store_module.os, "read", growing)
    with pytest.raises(SpecValidationError, match="the limit is 10 MB"):
        read_regular(str(path), "code/x.sql", "code/x.sql")
    assert sum(reads) == MAX_SQL_BYTES + 1  # never more than the limit plus one byte


def test_limits_are_inclusive(tmp_path: Path) -> None:
    sparse(tmp_path / "spec.yaml", MAX_SPEC_BYTES)
    sparse(tmp_path / "q.sql", MAX_SQL_BYTES)
    assert len(read_regular(str(tmp_path / "spec.yaml"), "code/spec.yaml", "x")[0]) == MAX_SPEC_BYTES
    assert len(read_regular(str(tmp_path / "q.sql"), "code/q.sql", "x")[0]) == MAX_SQL_BYTES


# -- listing ------------------------------------------------------------------------------------------------


@pytest.mark.hostile(kind="files")
def test_listing_reports_what_it_cannot_read_instead_of_skipping_it(tmp_path: Path, deny: Deny) -> None:
    root = tmp_path / "store"
    _write(root, "code/ok.yaml", KEEP)
    deny(_write(root, "code/team/a.yaml", KEEP).parent)
    dangling(root / "code/link.yaml")
    (root / "code/folder-link").symlink_to(root / "code/team")
    listed = {f.path: f for f in LocalStore(root).list_files(SourceType.CODE)}
    assert set(listed) == {"code/ok.yaml", "code/team/", "code/link.yaml", "code/folder-link/"}
    assert listed["code/team/"].unreadable == "Permission denied"
    assert listed["code/folder-link/"].unreadable == "it is a symlink to a folder"
    assert listed["code/link.yaml"].unreadable is None  # a file: reading it says what is wrong


@pytest.mark.hostile(kind="files")
def test_an_unreadable_prefix_is_listed_as_one_unreadable_folder(tmp_path: Path, deny: Deny) -> None:
    root = tmp_path / "store"
    deny(_write(root, "code/a.yaml", KEEP).parent)
    assert LocalStore(root).list_files(SourceType.CODE) == [StoreFile("code/", "unreadable")]


def test_listing_skips_hidden_files_and_versions_change_with_the_content(tmp_path: Path) -> None:
    (tmp_path / "manual" / ".git").mkdir(parents=True)
    (tmp_path / "manual" / ".git" / "x.yaml").write_bytes(b"hidden")
    (tmp_path / "manual" / ".x.yaml").write_bytes(b"hidden")
    (tmp_path / "manual" / "a.yaml").write_bytes(b"one")
    store = LocalStore(tmp_path)
    (before,) = store.list_files(SourceType.MANUAL)
    (tmp_path / "manual" / "a.yaml").write_bytes(b"three")
    (after,) = store.list_files(SourceType.MANUAL)
    assert before.path == after.path == "manual/a.yaml" and before.version != after.version
    assert store.list_files(SourceType.CODE) == []


def test_a_local_store_declares_itself_local_and_reads_many_files_one_by_one(tmp_path: Path) -> None:
    (tmp_path / "code").mkdir()
    (tmp_path / "code" / "a.yaml").write_bytes(b"a")
    (tmp_path / "code" / "b.sql").write_bytes(b"b")
    fifo(tmp_path / "code" / "c.sql")
    store = LocalStore(tmp_path)
    assert store.remote is False
    got = store.read_many(["code/a.yaml", "code/missing.sql", "code/c.sql", "code/b.sql", "code/a.yaml"])
    assert got == {"code/a.yaml": b"a", "code/b.sql": b"b"}  # what cannot be read is left out, not an error
    store.set_deadline(0.0)  # a local store has no deadline to keep
    assert store.read_bytes("code/a.yaml") == b"a"


# -- the write guard ----------------------------------------------------------------------------------------


@pytest.mark.hostile(kind="writes")
@pytest.mark.parametrize(
    "path",
    ["code/x.yaml", "manual/../code/x.yaml", "/manual/x.yaml", "manual", "manual/./x.yaml", "manual//x.yaml",
     "x.yaml", "../manual/x.yaml", "manual/a/../../code/x.yaml"],
)
def test_every_write_outside_manual_is_refused(path: str) -> None:
    with pytest.raises(WorkflowPermissionError, match="only plain files under manual/"):
        manual_path(path)


@pytest.mark.hostile(kind="writes")
def test_store_writes_never_touch_code(tmp_path: Path) -> None:
    (tmp_path / "code").mkdir()
    (tmp_path / "code" / "a.yaml").write_text("name: a\nowner: o\nquery: SELECT 1\n")
    store = LocalStore(tmp_path)
    calls = [
        lambda: store.create_manual("code/a.yaml", b"x"),
        lambda: store.replace_manual("code/a.yaml", b"x", "v"),
        lambda: store.delete_manual("code/a.yaml"),
        lambda: store.read_manual("code/a.yaml"),
    ]
    for call in calls:
        with pytest.raises(WorkflowPermissionError):
            call()
    assert (tmp_path / "code" / "a.yaml").read_text().startswith("name: a")


@pytest.mark.hostile(kind="writes")
def test_symlinked_manual_folder_pointing_into_code_is_refused(tmp_path: Path) -> None:
    (tmp_path / "code").mkdir()
    (tmp_path / "manual").symlink_to(tmp_path / "code")
    with pytest.raises(WorkflowPermissionError, match="outside manual/"):
        LocalStore(tmp_path).create_manual("manual/x.yaml", b"name: x\n")
    assert not (tmp_path / "code" / "x.yaml").exists()


def test_a_read_only_store_refuses_writes_by_default() -> None:
    class ReadOnly(SpecStore):
        url = "mem://x"

        def list_files(self, prefix: SourceType) -> list[StoreFile]:
            return []

        def read_bytes(self, path: str) -> bytes:
            raise SpecValidationError(f"{path} does not exist")

    for call in (lambda s: s.create_manual("manual/a.yaml", b"x"), lambda s: s.replace_manual("manual/a.yaml", b"x", "v"),
                 lambda s: s.delete_manual("manual/a.yaml"), lambda s: s.read_manual("manual/a.yaml")):
        with pytest.raises(WorkflowRegistrationError, match="read-only here"):
            call(ReadOnly())
    assert ReadOnly().read_many(["manual/a.yaml"]) == {}


# -- conditional writes: the hostile corpus -----------------------------------------------------------------


def _store(tmp_path: Path) -> LocalStore:
    root = tmp_path / "store"
    root.mkdir(exist_ok=True)
    return LocalStore(root)


def _hidden(store: LocalStore) -> list[str]:
    """Temporary files left in manual/ (the write lock is the only hidden file allowed)."""
    return sorted(p.name for p in (store.root / "manual").rglob(".*") if p.name != ".dli-write.lock")


def _stale(store: LocalStore) -> str:
    """The version of manual/a.yaml as a writer read it, after which another writer replaced it."""
    store.create_manual("manual/a.yaml", b"one")
    stale = store.read_manual("manual/a.yaml")
    assert stale is not None
    store.replace_manual("manual/a.yaml", b"two", stale.version)
    return stale.version


WRITE_CASES: list[tuple[str, Callable[[LocalStore], object], str, bytes | None]] = [
    ("create-over-existing", lambda s: (s.create_manual("manual/a.yaml", b"one"), s.create_manual("manual/a.yaml", b"x")),
     "manual/a.yaml already exists", b"one"),
    ("replace-stale-version", lambda s: s.replace_manual("manual/a.yaml", b"x", _stale(s)),
     "changed since it was read", b"two"),
    ("replace-removed", lambda s: (s.create_manual("manual/a.yaml", b"one"), (v := s.read_manual("manual/a.yaml")),
                                   s.delete_manual("manual/a.yaml"), s.replace_manual("manual/a.yaml", b"x", v.version)),
     "was removed", None),
    ("replace-invented-version", lambda s: (s.create_manual("manual/a.yaml", b"one"),
                                            s.replace_manual("manual/a.yaml", b"x", "1-2-3-100644")),
     "changed since it was read", b"one"),
    ("delete-stale-version", lambda s: s.delete_manual("manual/a.yaml", _stale(s)), "changed since it was read", b"two"),
]


@pytest.mark.hostile(kind="writes")
@pytest.mark.parametrize(("act", "fragment", "left"), [c[1:] for c in WRITE_CASES], ids=[c[0] for c in WRITE_CASES])
def test_a_write_that_lost_to_another_writer_is_dli_801_and_changes_nothing(
    tmp_path: Path, act: Callable[[LocalStore], object], fragment: str, left: bytes | None
) -> None:
    store = _store(tmp_path)
    with pytest.raises(WorkflowRegistrationError, match=fragment) as info:
        act(store)
    assert info.value.code == "DLI-801" and "another registration" in info.value.message
    target = store.root / "manual" / "a.yaml"
    assert (target.read_bytes() if target.exists() else None) == left
    assert _hidden(store) == []


def test_replace_and_delete_of_the_version_read_succeed(tmp_path: Path) -> None:
    store = _store(tmp_path)
    store.create_manual("manual/team/a.yaml", b"one")
    current = store.read_manual("manual/team/a.yaml")
    assert current is not None and current.data == b"one"
    store.replace_manual("manual/team/a.yaml", b"two", current.version)
    again = store.read_manual("manual/team/a.yaml")
    assert again is not None and again.data == b"two" and again.version != current.version
    store.delete_manual("manual/team/a.yaml", again.version)
    assert store.read_manual("manual/team/a.yaml") is None
    store.delete_manual("manual/team/a.yaml")  # already gone: fine
    assert _hidden(store) == []


@pytest.mark.hostile(kind="writes")
@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o077, 0o600), (0o027, 0o640), (0o002, 0o644)])
def test_files_are_written_0644_less_the_umask(tmp_path: Path, umask: int, mode: int) -> None:
    store = _store(tmp_path)
    previous = os.umask(umask)
    try:
        store.create_manual("manual/a.yaml", b"one")
        current = store.read_manual("manual/a.yaml")
        assert current is not None
        store.create_manual("manual/b.sql", b"SELECT 1")
        store.replace_manual("manual/a.yaml", b"two", current.version)
    finally:
        os.umask(previous)
    for name in ("a.yaml", "b.sql"):
        assert stat.S_IMODE((store.root / "manual" / name).stat().st_mode) == mode


@pytest.mark.hostile(kind="writes")
def test_a_filesystem_without_hard_links_still_creates_exclusively(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_links(src: object, dst: object) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(store_module.os, "link", no_links)
    store = _store(tmp_path)
    store.create_manual("manual/a.yaml", b"one")
    with pytest.raises(WorkflowRegistrationError, match="already exists"):
        store.create_manual("manual/a.yaml", b"two")
    assert (store.root / "manual" / "a.yaml").read_bytes() == b"one"
    assert _hidden(store) == []


@pytest.mark.hostile(kind="writes")
def test_a_busy_write_lock_is_dli_801_after_its_wait(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import fcntl

    monkeypatch.setattr(store_module, "WRITE_LOCK_SECONDS", 0.2)
    store = _store(tmp_path)
    store.create_manual("manual/a.yaml", b"one")
    current = store.read_manual("manual/a.yaml")
    assert current is not None
    fd = os.open(store.root / "manual" / ".dli-write.lock", os.O_RDONLY | os.O_CREAT, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX)  # another process holds it (flock locks are per open file)
    try:
        with pytest.raises(WorkflowRegistrationError, match="another registration has been writing"):
            store.replace_manual("manual/a.yaml", b"two", current.version)
    finally:
        os.close(fd)
    store.replace_manual("manual/a.yaml", b"two", current.version)  # released: it goes through


ROUNDS = 20




@pytest.mark.hostile(kind="writes")
def test_two_threads_creating_one_file_exactly_one_wins_every_round(tmp_path: Path) -> None:
    store = _store(tmp_path)
    for n in range(ROUNDS):
        path = f"manual/r{n}.yaml"
        results = race([lambda p=path: store.create_manual(p, b"A"), lambda p=path: store.create_manual(p, b"B")])
        assert sorted(results) == ["DLI-801", "ok"], results
        assert (store.root / path).read_bytes() == (b"A" if results[0] == "ok" else b"B")


@pytest.mark.hostile(kind="writes")
def test_two_threads_replacing_one_version_exactly_one_wins_every_round(tmp_path: Path) -> None:
    store = _store(tmp_path)
    store.create_manual("manual/a.yaml", b"start")
    for n in range(ROUNDS):
        current = store.read_manual("manual/a.yaml")
        assert current is not None
        mine, theirs = f"A{n}".encode(), f"B{n}".encode()
        version = current.version
        results = race([lambda d=mine, v=version: store.replace_manual("manual/a.yaml", d, v),
                         lambda d=theirs, v=version: store.replace_manual("manual/a.yaml", d, v)])
        assert sorted(results) == ["DLI-801", "ok"], results
        assert (store.root / "manual/a.yaml").read_bytes() == (mine if results[0] == "ok" else theirs)


def _create_in_a_process(root: str, barrier: object, queue: object, tag: bytes) -> None:
    store = LocalStore(root)
    for n in range(ROUNDS):
        barrier.wait()  # type: ignore[attr-defined]
        try:
            store.create_manual(f"manual/p{n}.yaml", tag)
            queue.put((n, tag, "ok"))  # type: ignore[attr-defined]
        except DliError as exc:
            queue.put((n, tag, exc.code))  # type: ignore[attr-defined]


@pytest.mark.hostile(kind="writes")
@pytest.mark.timeout(120)
def test_two_processes_creating_one_file_exactly_one_wins_every_round(tmp_path: Path) -> None:
    store = _store(tmp_path)
    context = multiprocessing.get_context("spawn")
    barrier, queue = context.Barrier(2), context.Queue()
    workers = [context.Process(target=_create_in_a_process, args=(str(store.root), barrier, queue, tag))
               for tag in (b"A", b"B")]
    for worker in workers:
        worker.start()
    results = [queue.get(timeout=60) for _ in range(2 * ROUNDS)]
    for worker in workers:
        worker.join(timeout=30)
    for n in range(ROUNDS):
        outcome = {tag: code for m, tag, code in results if m == n}
        assert sorted(outcome.values()) == ["DLI-801", "ok"], outcome
        winner = next(tag for tag, code in outcome.items() if code == "ok")
        assert (store.root / f"manual/p{n}.yaml").read_bytes() == winner
    assert _hidden(store) == []
