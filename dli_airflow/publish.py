"""``dli spec publish``: the one writer of ``code/``, run by CI from the Git checkout.

:func:`plan` validates every spec and SQL file of the source folder (nothing is written if one is
invalid) and compares the release it makes with what ``code/`` holds now: files added, changed and
removed; datasets added, changed and removed; manual copies that become overridden or are restored.
:func:`apply` then uploads the SQL files, then the specs, then the release's bundle, switches the release
index in one conditional write (another publish that switched first makes this one fail, DLI-804, with
nothing switched), and only then deletes the removed files and old bundles. Readers see the old release
or the new one, never half of one (:mod:`dli_airflow.release`).

The writers here refuse any path outside ``code/`` — the mirror image of :func:`~dli_airflow.store.manual_path`,
the guard every other write of the package goes through. Nothing else in the package imports them.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from dli_airflow.catalog import resolve, resolve_fetching
from dli_airflow.errors import (
    DliError,
    Problem,
    ReleaseConflictError,
    SpecFileNotFoundError,
    SpecValidationError,
    StoreUnavailableError,
    WorkflowPermissionError,
)
from dli_airflow.release import (
    BUNDLE_DIR,
    INDEX_PATH,
    FileRef,
    Release,
    ReleaseIndex,
    bundle_path,
    encode_bundle,
    is_bundle_path,
    read_index,
    release_path,
    sha256,
)
from dli_airflow.spec import SourceType
from dli_airflow.store import (
    FILE_MODE,
    RELEASE_DIR,
    SPEC_SUFFIXES,
    LocalStore,
    SpecStore,
    StoreFile,
    is_store_root,
)

log = logging.getLogger(__name__)

CODE = SourceType.CODE
MANUAL = SourceType.MANUAL
#: Bundles of earlier releases kept besides the current one (a reader on an older index can finish).
KEEP_BUNDLES = 5
#: A bundle that no kept release names is removed only once it is older than this (seconds): another
#: publish may have uploaded it a moment ago and not switched yet.
BUNDLE_GRACE_SECONDS = 3600.0


class SourceTree(LocalStore):
    """A folder of the Git checkout seen as the ``code/`` of a store: ``SRC/a/b.yaml`` is ``code/a/b.yaml``.

    A store folder (holding ``code/``) may be given too: its ``code/`` is the source. Reads are the local
    store's, bounded the same way (regular files only, size limits, no symlink out of the folder).
    """

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        path = Path(folder).expanduser()
        if not path.is_dir():
            raise SpecFileNotFoundError(
                f"{path} is not a folder", hint="pass the folder of the Git checkout that holds the specs"
            )
        if is_store_root(path):
            path = path / CODE.value
            if not path.is_dir():
                raise SpecFileNotFoundError(
                    f"{path.parent} is a store folder without code/", hint="pass the folder that holds the specs"
                )
        self.root = path
        self.url = str(path)
        self._real_root = path.resolve()

    def list_files(self, prefix: SourceType) -> list[StoreFile]:
        return super().list_files(prefix) if prefix is CODE else []

    def _folder(self, prefix: SourceType) -> Path:
        return self.root

    def _store_path(self, full: str) -> str:
        return f"{CODE.value}/{Path(full).relative_to(self.root).as_posix()}"

    def _file(self, path: str) -> Path:
        return self.root / path.removeprefix(f"{CODE.value}/")

    def display(self, path: str) -> str:
        return str(self._file(path))


@dataclass(frozen=True)
class Plan:
    """What one publish changes; :attr:`problems` non-empty means nothing may be written."""

    store: str
    source: str
    files: dict[str, bytes]
    index: ReleaseIndex | None
    current: Release | None
    added: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    unchanged: int = 0
    datasets_added: tuple[str, ...] = ()
    datasets_changed: tuple[str, ...] = ()
    datasets_removed: tuple[str, ...] = ()
    overridden: tuple[str, ...] = ()
    restored: tuple[str, ...] = ()
    #: files of the source folder that are not part of the release (no spec, and no spec names them)
    ignored: tuple[str, ...] = ()
    problems: tuple[DliError, ...] = ()
    warnings: tuple[str, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def up_to_date(self) -> bool:
        """Nothing to write: ``code/`` already is this release, index included."""
        return (
            self.ok and not (self.added or self.changed or self.removed)
            and self.current is not None and self.index is not None and self.current.id == self.index.release
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "store": self.store,
            "source": self.source,
            "release": self.index.release if self.index else None,
            "current_release": self.current.id if self.current else None,
            "up_to_date": self.up_to_date,
            "files": {"added": list(self.added), "changed": list(self.changed), "removed": list(self.removed),
                      "unchanged": self.unchanged},
            "datasets": {"added": list(self.datasets_added), "changed": list(self.datasets_changed),
                         "removed": list(self.datasets_removed), "total": len(self.index.datasets) if self.index else 0},
            "manual": {"overridden": list(self.overridden), "restored": list(self.restored)},
            "ignored": list(self.ignored),
            "warnings": list(self.warnings),
            "errors": [p.to_dict() for p in self.problems],
        }


def plan(
    src: str | os.PathLike[str],
    store: SpecStore,
    *,
    label: str | None = None,
    allow_empty: bool = False,
) -> Plan:
    """Validate the source folder and compare its release with what ``code/`` of ``store`` holds.

    :param label: what is published, as CI names it (default: ``GITHUB_SHA`` / ``CI_COMMIT_SHA`` if set)
    :param allow_empty: publish a release without datasets (removes every code dataset); refused otherwise
    :raises StoreUnavailableError: the store cannot be read
    """
    tree = SourceTree(src)
    listing = tree.list_files(CODE)
    snapshot = resolve(tree, {CODE: listing, MANUAL: []})
    problems: list[DliError] = list(snapshot.problems)
    files: dict[str, bytes] = {}
    datasets: dict[str, list[str]] = {}
    for entry in snapshot.entries:
        paths = [entry.path, *([entry.sql_path] if entry.sql_path else [])]
        datasets[entry.name] = paths
        for path in paths:
            files[path] = data = tree.read_bytes(path)
            try:
                data.decode("utf-8")
            except UnicodeDecodeError as exc:
                problems.append(SpecValidationError(
                    f"{tree.display(path)}: is not UTF-8 (offset {exc.start})", hint="save the file as UTF-8",
                    problems=[Problem("not UTF-8", file=tree.display(path))],
                ))
    if not datasets and not problems and not allow_empty:
        problems.append(SpecValidationError(
            f"{tree.url} holds no Dataset Spec: publishing it would remove every dataset of code/",
            hint="check the folder passed to `dli spec publish`; pass --allow-empty to publish an empty release",
        ))
    ignored = tuple(f.path for f in listing if f.path not in files and f.unreadable is None)
    source = label or os.environ.get("GITHUB_SHA") or os.environ.get("CI_COMMIT_SHA") or None
    warnings: list[str] = []
    if problems:
        return Plan(store.url, tree.url, files, None, None, ignored=ignored, problems=tuple(problems))

    current = read_index(store)
    current_files, current_names = _current(store, current)
    manual_names: set[str] = set()
    try:
        manual = resolve_fetching(store, {CODE: [], MANUAL: store.list_files(MANUAL)})[0]
        manual_names = {e.name for e in manual.entries}
    except StoreUnavailableError as exc:
        warnings.append(f"manual/ cannot be read ({exc.message}): the plan does not say which manual copies "
                        "become overridden or are restored")

    refs = {p: FileRef(sha256=sha256(data), size=len(data)) for p, data in files.items()}
    bundle = encode_bundle(files)
    kept = [b for b in ([current.bundle, *current.kept] if current else []) if b != bundle_path(sha256(bundle))]
    index = ReleaseIndex(
        release=ReleaseIndex.release_id(refs),
        published_at=datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        source=source,
        files=refs,
        datasets=datasets,
        bundle=bundle_path(sha256(bundle)),
        kept=list(dict.fromkeys(kept))[: KEEP_BUNDLES],
    )
    added = tuple(sorted(p for p in files if p not in current_files))
    changed = tuple(sorted(p for p in files if p in current_files and current_files[p] != refs[p].sha256))
    removed = tuple(sorted(p for p in current_files if p not in files))
    touched = set(changed) | set(added)
    new_names, old_names = set(datasets), set(current_names)
    return Plan(
        store=store.url,
        source=tree.url,
        files=files,
        index=index,
        current=current,
        added=added,
        changed=changed,
        removed=removed,
        unchanged=len(files) - len(added) - len(changed),
        datasets_added=tuple(sorted(new_names - old_names)),
        datasets_changed=tuple(sorted(
            n for n in new_names & old_names
            if set(datasets[n]) & touched or tuple(datasets[n]) != tuple(current_names[n])
        )),
        datasets_removed=tuple(sorted(old_names - new_names)),
        overridden=tuple(sorted(manual_names & (new_names - old_names))),
        restored=tuple(sorted(manual_names & (old_names - new_names))),
        ignored=ignored,
        warnings=tuple(warnings),
    )


def _current(store: SpecStore, current: Release | None) -> tuple[dict[str, str | None], dict[str, tuple[str, ...]]]:
    """What ``code/`` holds now: file → SHA-256 (``None``: not read, so compared as changed), dataset → files.

    With an index, it says; without one (a store written by hand, before its first publish), ``code/`` is
    listed and its specs are read once.
    """
    if current is not None:
        return {p: sha for p, (sha, _) in current.files.items()}, dict(current.datasets)
    listed = [f for f in store.list_files(CODE) if f.unreadable is None]
    snapshot, objects = resolve_fetching(store, {CODE: listed, MANUAL: []})
    read = {p: data for p, (_, data) in objects.items()}
    files: dict[str, str | None] = {f.path: (sha256(read[f.path]) if f.path in read else None) for f in listed}
    names = {e.name: (e.path, *([e.sql_path] if e.sql_path else [])) for e in snapshot.entries}
    return files, names


@dataclass(frozen=True)
class Published:
    """What :func:`apply` did."""

    release: str
    uploaded: tuple[str, ...]
    deleted: tuple[str, ...]
    bundles_removed: tuple[str, ...]
    seconds: float


def apply(plan: Plan, store: SpecStore, writer: ReleaseWriter | None = None) -> Published:
    """Write the release of ``plan``: SQL, then specs, then the bundle, then the index (the switch), then
    the deletions.

    :raises SpecValidationError: the plan has problems (nothing is written)
    :raises ReleaseConflictError: another publish switched the release first (nothing was switched)
    """
    if not plan.ok or plan.index is None:
        raise SpecValidationError(f"{len(plan.problems)} problem(s) in {plan.source}: nothing was published",
                                  hint="`dli spec validate` shows them")
    started = time.monotonic()
    writer = writer or writer_for(store)
    index = plan.index
    if plan.up_to_date:
        return Published(index.release, (), (), (), time.monotonic() - started)
    upload = sorted([*plan.added, *plan.changed])
    # all SQL before any spec naming it; a reader still on the old index checks every file's hash anyway
    sql = [p for p in upload if not p.endswith(SPEC_SUFFIXES)]
    specs = [p for p in upload if p.endswith(SPEC_SUFFIXES)]
    for batch in (sql, specs):
        writer.put_many([(path, plan.files[path]) for path in batch])
    writer.put(index.bundle, encode_bundle(plan.files), create=True)
    writer.switch(index.to_bytes(), plan.current.version if plan.current else None)
    writer.delete_many(plan.removed)
    keep = {index.bundle, *index.kept}
    stale = [key for key, age in writer.bundles() if key not in keep and age > BUNDLE_GRACE_SECONDS]
    writer.delete_many(stale)
    return Published(index.release, (*sql, *specs), plan.removed, tuple(stale), time.monotonic() - started)


def code_path(path: str) -> str:
    """The guard of every publish write: a plain file of a release, a bundle, or the index; all under ``code/``."""
    if release_path(path) or path == INDEX_PATH or is_bundle_path(path):
        return path
    raise WorkflowPermissionError(
        f"refusing to publish {path!r}: dli spec publish writes only plain files under code/",
        hint="manual/ is written by registration (`dli workflow register`), never by a publish",
    )


class ReleaseWriter(ABC):
    """Writes one store's ``code/``. Every method goes through :func:`code_path`."""

    @abstractmethod
    def put(self, path: str, data: bytes, *, create: bool = False) -> None:
        """Write one file; ``create``: only if absent (a bundle: the same name is the same content)."""

    @abstractmethod
    def switch(self, data: bytes, expected: str | None) -> None:
        """Write the index, only if it is still at ``expected`` (``None``: only if there is none).

        :raises ReleaseConflictError: it is not
        """

    @abstractmethod
    def delete(self, path: str) -> None:
        """Remove one file (a missing one is fine)."""

    @abstractmethod
    def bundles(self) -> list[tuple[str, float]]:
        """Every bundle of the store with its age in seconds."""

    #: parallel writes of :meth:`put_many` / :meth:`delete_many` (1: one after the other)
    concurrency = 1

    def put_many(self, files: list[tuple[str, bytes]]) -> None:
        """Write several files (all of them before returning; the first failure is raised)."""
        self._each(lambda item: self.put(*item), files)

    def delete_many(self, paths: Iterable[str]) -> None:
        self._each(self.delete, list(paths))

    def _each(self, call: Callable[[Any], None], items: list[Any]) -> None:
        if self.concurrency <= 1 or len(items) <= 1:
            for item in items:
                call(item)
            return
        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(items)), thread_name_prefix="dli-publish") as pool:
            for future in [pool.submit(call, item) for item in items]:
                future.result()


def writer_for(store: SpecStore) -> ReleaseWriter:
    """The writer of a store's ``code/``: a local folder or S3."""
    from dli_airflow.s3store import S3Store

    if isinstance(store, S3Store):
        return S3ReleaseWriter(store)
    if type(store) is LocalStore:
        return LocalReleaseWriter(store)
    raise WorkflowPermissionError(f"cannot publish to {store.url}: not a folder or S3 store")


def _lost(store: str, expected: str | None) -> ReleaseConflictError:
    what = "a release index appeared" if expected is None else "the release index changed"
    return ReleaseConflictError(f"Cannot switch the release of {store}: {what} since this publish planned")


class LocalReleaseWriter(ReleaseWriter):
    """A local folder store: each file replaced atomically (a rename); the switch under a lock."""

    def __init__(self, store: LocalStore) -> None:
        self.store = store
        self.code = store.root / CODE.value

    def _target(self, path: str) -> Path:
        """The file of ``path``; symlinks must not lead a write out of ``code/`` (into ``manual/``, or out of
        the store)."""
        target = self.store.root / code_path(path)
        root = self.store.root.resolve()
        self.code.mkdir(exist_ok=True)
        real_code = self.code.resolve()
        if not real_code.is_relative_to(root) or real_code.is_relative_to((root / MANUAL.value).resolve()):
            raise WorkflowPermissionError(f"refusing to publish to {self.code}: it resolves outside the store")
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.parent.resolve().is_relative_to(real_code):
            raise WorkflowPermissionError(f"refusing to publish {path!r}: it resolves outside code/ (a symlink?)")
        return target

    def put(self, path: str, data: bytes, *, create: bool = False) -> None:
        target = self._target(path)
        if create and target.exists():
            return
        tmp = target.parent / f".dli-{secrets.token_hex(8)}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), FILE_MODE)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        import fcntl

        lock = self._target(INDEX_PATH).with_name(".lock")
        fd = os.open(lock, os.O_RDONLY | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), FILE_MODE)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def switch(self, data: bytes, expected: str | None) -> None:
        target = self._target(INDEX_PATH)
        with self._locked():
            try:
                current: str | None = sha256(target.read_bytes())
            except FileNotFoundError:
                current = None
            if current != expected:
                raise _lost(self.store.url, expected)
            self.put(INDEX_PATH, data)

    def delete(self, path: str) -> None:
        target = self._target(path)
        with contextlib.suppress(FileNotFoundError):
            target.unlink()
        folder = target.parent
        while folder != self.code and folder.is_relative_to(self.code):  # tidy the folders it leaves empty
            try:
                folder.rmdir()
            except OSError:
                break
            folder = folder.parent

    def bundles(self) -> list[tuple[str, float]]:
        folder = self.store.root / BUNDLE_DIR
        now = time.time()
        with contextlib.suppress(FileNotFoundError):
            return [(f"{BUNDLE_DIR}{p.name}", now - p.stat().st_mtime) for p in sorted(folder.iterdir())
                    if p.is_file() and not p.name.startswith(".")]
        return []


class S3ReleaseWriter(ReleaseWriter):
    """An S3 store: ``PutObject`` per file, 32 at a time; the switch is ``PutObject`` with ``If-Match`` (or
    ``If-None-Match: *`` for a first release), probed once like registration's writes, in ``code/.dli/``."""

    def __init__(self, store: Any) -> None:
        from dli_airflow.s3store import MAX_CONCURRENCY

        self.store = store
        self.concurrency = MAX_CONCURRENCY

    def _call(self, action: str, path: str, call: Any) -> Any:
        try:
            return call()
        except DliError:
            raise
        except Exception as exc:
            raise self.store._unavailable(f"{action} {path} {'from' if action == 'delete' else 'to'}", exc) from exc

    def put(self, path: str, data: bytes, *, create: bool = False) -> None:
        from dli_airflow.s3store import _content_type, _refused

        key = self.store.key(code_path(path))
        extra = {"IfNoneMatch": "*"} if create and self.store.conditional_writes(RELEASE_DIR).create else {}
        try:
            self.store.client.put_object(
                Bucket=self.store.bucket, Key=key, Body=data, ContentType=_content_type(path), **extra
            )
        except Exception as exc:
            if create and _refused(exc, (412, 409)):
                return  # the bundle is there already: its name is its content
            raise self.store._unavailable(f"write {path} to", exc) from exc

    def switch(self, data: bytes, expected: str | None) -> None:
        from dli_airflow.s3store import _refused

        key = self.store.key(code_path(INDEX_PATH))
        honoured = self.store.conditional_writes(RELEASE_DIR)
        condition: dict[str, str] = {}
        if expected is None and honoured.create:
            condition = {"IfNoneMatch": "*"}
        elif expected is not None and honoured.replace:
            condition = {"IfMatch": f'"{expected}"'}
        else:
            log.warning("dli: the S3 server of %s ignores conditional writes: two publishes at once could "
                        "switch over each other; run one at a time", self.store.url)
        try:
            self.store.client.put_object(
                Bucket=self.store.bucket, Key=key, Body=data, ContentType="application/json", **condition
            )
        except Exception as exc:
            if _refused(exc, (412, 409)):
                raise _lost(self.store.url, expected) from None
            raise self.store._unavailable(f"write {INDEX_PATH} to", exc) from exc

    def delete(self, path: str) -> None:
        key = self.store.key(code_path(path))
        self._call("delete", path, lambda: self.store.client.delete_object(Bucket=self.store.bucket, Key=key))

    def bundles(self) -> list[tuple[str, float]]:
        out: list[tuple[str, float]] = []
        now = datetime.now(timezone.utc)

        def listing() -> None:
            paginator = self.store.client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.store.bucket, Prefix=self.store.key(BUNDLE_DIR)):
                for obj in page.get("Contents", ()):
                    out.append((obj["Key"][len(self.store.prefix):], (now - _when(obj.get("LastModified"))).total_seconds()))

        self._call("list", BUNDLE_DIR, listing)
        return out


def _when(value: Any) -> datetime:
    """A listing's ``LastModified`` (a datetime, or the string the store's fast parser leaves)."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return datetime.now(timezone.utc)  # unknown: as new as can be, so it is not removed
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


__all__ = [
    "KEEP_BUNDLES",
    "LocalReleaseWriter",
    "Plan",
    "Published",
    "ReleaseWriter",
    "S3ReleaseWriter",
    "SourceTree",
    "apply",
    "code_path",
    "plan",
    "writer_for",
]
