"""The storage layer of a spec store: list, read and write files under ``code/`` and ``manual/``.

A store is a folder (:class:`LocalStore`) or ``s3://bucket/prefix`` (:class:`~dli_airflow.s3store.S3Store`)
holding two prefixes: ``code/`` (deployed from Git by CI) and ``manual/`` (registered through the client).
Loading and resolving the specs of a store is :mod:`dli_airflow.catalog`. Nothing here touches Airflow.

Reads are bounded by construction: only regular files are read (a FIFO, a device, a socket or a folder is
refused without blocking: opened with ``O_NONBLOCK`` and checked with ``fstat`` on the open descriptor),
the size limit (:func:`read_limit`) is checked before reading, and no read takes more than the limit plus
one byte. A folder that cannot be listed is reported in the listing (:attr:`StoreFile.unreadable`), so the
catalog treats it as an outage for the names it may hold instead of silently skipping it.

Writes go through one guard, :func:`manual_path` (nothing here writes or deletes under ``code/``), and
are conditional: :meth:`SpecStore.create_manual` creates only if absent (locally an exclusive publish of a
temporary file with ``link``; on S3 ``If-None-Match: *``), :meth:`SpecStore.replace_manual` replaces only
the version that was read, and :meth:`SpecStore.delete_manual` deletes only that version.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import posixpath
import secrets
import stat
import time
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, NamedTuple

from dli_airflow._yaml import MAX_SPEC_BYTES
from dli_airflow.errors import (
    DliError,
    Problem,
    SpecSyntaxError,
    SpecValidationError,
    StoreNotFoundError,
    StoreUnavailableError,
    WorkflowPermissionError,
    WorkflowRegistrationError,
)
from dli_airflow.spec import SourceType

PREFIXES = (SourceType.CODE, SourceType.MANUAL)
SPEC_SUFFIXES = (".yaml", ".yml")
#: SQL files (and any file that is not a spec) larger than this are refused (a runaway generated file).
MAX_SQL_BYTES = 10 * 1024 * 1024
#: Seconds a local write waits for another registration writing to the same store.
WRITE_LOCK_SECONDS = 10.0
#: The lock file of local writes, in ``manual/`` (hidden: the listing skips it).
WRITE_LOCK = ".dli-write.lock"
#: Mode of the files dli writes (the process umask still applies): readable by a dag-processor of another user.
FILE_MODE = 0o644
#: Where ``dli spec publish`` keeps a release's index and bundles (hidden: listings skip it).
RELEASE_DIR = "code/.dli/"
#: A release index or bundle larger than this is refused (10,000 specs with their SQL bundle to ~10 MB).
MAX_RELEASE_BYTES = 256 * 1024 * 1024

_KINDS = {
    stat.S_IFIFO: "a FIFO (named pipe)",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
    stat.S_IFDIR: "a folder",
    stat.S_IFLNK: "a symlink",
}


@dataclass(frozen=True)
class StoreFile:
    """One object of the store: its path relative to the store root (``code/a/b.yaml``) and a version tag.

    A folder the listing could not read is listed too, with a path ending in ``/`` and the reason in
    :attr:`unreadable`: the files it may hold are unknown, not absent.
    """

    path: str
    version: str
    unreadable: str | None = field(default=None, compare=False)


class ManualFile(NamedTuple):
    """A manual file as read for a conditional write: its bytes and the version they are."""

    data: bytes
    version: str


#: What :meth:`SpecStore.read_if_changed` answers for a file still at the version the caller has.
UNCHANGED = ManualFile(b"", "")


def read_limit(path: str) -> int:
    """The most bytes read of ``path``: :data:`MAX_SPEC_BYTES` for a spec file, :data:`MAX_RELEASE_BYTES` for a
    release's index or bundle, :data:`MAX_SQL_BYTES` for others."""
    if path.startswith(RELEASE_DIR):
        return MAX_RELEASE_BYTES
    return MAX_SPEC_BYTES if path.endswith(SPEC_SUFFIXES) else MAX_SQL_BYTES


def file_error(path: str, shown: str, message: str, *, hint: str | None = None) -> DliError:
    """The error of a file that cannot be read as a spec or SQL file: DLI-202 for a spec file, else DLI-201."""
    cls = SpecSyntaxError if path.endswith(SPEC_SUFFIXES) else SpecValidationError
    return cls(f"{shown}: {message}", hint=hint, problems=[Problem(message, file=shown)])


def too_large(path: str, shown: str, size: int) -> DliError:
    """A file over its :func:`read_limit`, refused before it is read."""
    limit = read_limit(path)
    if path.endswith(SPEC_SUFFIXES):
        return file_error(
            path, shown, f"the file is {size / 1e6:.1f} MB; a spec may be at most {limit // 1024} KiB",
            hint="put large SQL in a query_file and keep the spec small",
        )
    return file_error(
        path, shown, f"the SQL file is {size / 1e6:.1f} MB; the limit is {limit // (1024 * 1024)} MB",
        hint="split the query, or load generated data from a table instead of inlining it",
    )


class SpecStore(ABC):
    """A place that holds ``code/`` and ``manual/`` spec files. Subclasses list and read files.

    Capabilities are declared, not guessed: a ``remote`` store pays a round trip per read, so the catalog
    fetches changed files ahead with :meth:`read_many` and the cache keeps their raw bytes by version; a
    deadline (:meth:`set_deadline`) bounds a whole scan of a store that may hang.
    """

    #: How the store is named to users (a path or an ``s3://`` URL).
    url: str
    #: Reads cost a round trip (the snapshot cache keeps the raw bytes of objects by version).
    remote: ClassVar[bool] = False
    #: Whether the last listing of ``code/`` saw a release index (``code/.dli/release.json``, hidden from it).
    release_listed: bool = False

    @abstractmethod
    def list_files(self, prefix: SourceType) -> list[StoreFile]:
        """Every file under ``prefix/`` (paths relative to the store root, posix style), and every folder
        that could not be listed (a path ending in ``/``, with :attr:`StoreFile.unreadable`)."""

    @abstractmethod
    def read_bytes(self, path: str) -> bytes:
        """The content of one regular file (path relative to the store root), at most :func:`read_limit` bytes.

        :raises DliError: DLI-202 (spec) / DLI-201 (other) for a file that is missing, not a regular file,
            too large or unreadable; :class:`~dli_airflow.errors.StoreUnavailableError` when the whole store is.
        """

    def read_many(self, paths: Iterable[str], out: dict[str, bytes] | None = None) -> dict[str, bytes]:
        """Read several files; a file that cannot be read is left out (reading it again says why).

        :param out: filled as reads complete, so what was read before a failure is kept by the caller
        :raises StoreUnavailableError: the store itself failed
        """
        out = {} if out is None else out
        for path in dict.fromkeys(paths):
            try:
                out[path] = self.read_bytes(path)
            except StoreUnavailableError:
                raise
            except DliError:
                pass
        return out

    def set_deadline(self, seconds: float | None) -> None:
        """Refuse to start requests ``seconds`` from now (None: no deadline). A local store needs none."""

    def read_if_changed(self, path: str, version: str | None) -> ManualFile | None:
        """One file with its version, unless it is still at ``version``: then :data:`UNCHANGED` (a remote
        store asks conditionally, so an unchanged file costs a round trip and no transfer).

        :returns: the file, :data:`UNCHANGED`, or ``None`` when it does not exist
        """
        data = self.read_bytes(path)
        current = hashlib.sha256(data).hexdigest()
        return UNCHANGED if current == version else ManualFile(data, current)

    def display(self, path: str) -> str:
        """A file's name as users see it in messages."""
        return f"{self.url.rstrip('/')}/{path}"

    # -- writes: only ever under manual/, and only conditionally -----------------------------------------
    def read_manual(self, path: str) -> ManualFile | None:
        """One file under ``manual/`` with its version (for :meth:`replace_manual`); ``None`` if absent."""
        return self._read_current(manual_path(path))

    def create_manual(self, path: str, data: bytes) -> None:
        """Create one file under ``manual/``, only if it does not exist (atomically: all or nothing).

        :raises WorkflowRegistrationError: DLI-801, the file exists (another registration wrote it)
        """
        self._create(manual_path(path), data)

    def replace_manual(self, path: str, data: bytes, version: str) -> None:
        """Replace one file under ``manual/``, only if it is still at ``version`` (from :meth:`read_manual`).

        :raises WorkflowRegistrationError: DLI-801, the file changed or went away since it was read
        """
        self._replace(manual_path(path), data, version)

    def delete_manual(self, path: str, version: str | None = None) -> None:
        """Delete one file under ``manual/`` (a missing one is fine); with ``version``, only that version.

        :raises WorkflowRegistrationError: DLI-801, the file changed since it was read
        """
        self._delete(manual_path(path), version)

    def _read_current(self, path: str) -> ManualFile | None:
        raise WorkflowRegistrationError(f"the store {self.url} is read-only here")

    def _create(self, path: str, data: bytes) -> None:
        raise WorkflowRegistrationError(f"the store {self.url} is read-only here")

    def _replace(self, path: str, data: bytes, version: str) -> None:
        raise WorkflowRegistrationError(f"the store {self.url} is read-only here")

    def _delete(self, path: str, version: str | None) -> None:
        raise WorkflowRegistrationError(f"the store {self.url} is read-only here")


def manual_path(path: str) -> str:
    """The one guard of every write: ``path`` must be a plain file path under ``manual/``.

    Nothing in this package writes or deletes under ``code/``, which CI owns.
    """
    normalized = posixpath.normpath(path.replace("\\", "/"))
    parts = normalized.split("/")
    if (
        path.startswith("/")
        or normalized.startswith("/")
        or len(parts) < 2
        or parts[0] != SourceType.MANUAL.value
        or any(part in ("", ".", "..") for part in parts)
        or normalized != path
    ):
        raise WorkflowPermissionError(
            f"refusing to write {path!r}: dli writes only plain files under manual/",
            hint="code/ is deployed from Git by CI; register the spec as a manual one instead",
        )
    return normalized


def conflict(shown: str, what: str) -> WorkflowRegistrationError:
    """DLI-801 for a conditional write that lost to another writer."""
    return WorkflowRegistrationError(
        f"{shown} {what}: another registration (or unregistration) of this dataset got there first; "
        "nothing was changed",
        hint="look at the dataset again (`dli workflow get NAME`) and retry; use --force to replace it",
    )


def _version(st: os.stat_result) -> str:
    """A local file's version. A file dli publishes is always a new inode, so a replaced one never matches;
    the mode is part of it, so a ``chmod`` that makes an unreadable file readable again is a change."""
    return f"{st.st_mtime_ns}-{st.st_size}-{st.st_ino}-{st.st_mode:o}"


def _kind(mode: int) -> str:
    return _KINDS.get(stat.S_IFMT(mode), "not a regular file")


def read_regular(full: str, path: str, shown: str) -> tuple[bytes, os.stat_result]:
    """Read the regular file ``full`` (the store path ``path``, shown as ``shown``), bounded by its limit.

    A pre-``stat`` keeps devices from even being opened; the ``fstat`` of the open descriptor is the check
    that counts (the path may change between the two).
    """
    limit = read_limit(path)
    try:
        st = os.stat(full)
    except FileNotFoundError:
        target = _dangling_target(full)
        if target is not None:
            raise file_error(
                path, shown, f"is a symlink to {target}, which does not exist",
                hint="fix or remove the link (copy the file into the store instead of linking to it)",
            ) from None
        raise file_error(path, shown, "does not exist") from None
    except OSError as exc:
        raise file_error(path, shown, f"cannot be read: {exc.strerror}", hint=_READABLE_HINT) from None
    if not stat.S_ISREG(st.st_mode):
        raise file_error(path, shown, f"is {_kind(st.st_mode)}, not a regular file", hint=_REGULAR_HINT)
    if st.st_size > limit:
        raise too_large(path, shown, st.st_size)
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(full, flags)
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            raise file_error(path, shown, "does not exist (it was removed while being read)") from None
        raise file_error(path, shown, f"cannot be read: {exc.strerror}", hint=_READABLE_HINT) from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise file_error(path, shown, f"is {_kind(st.st_mode)}, not a regular file", hint=_REGULAR_HINT)
        if st.st_size > limit:
            raise too_large(path, shown, st.st_size)
        os.set_blocking(fd, True)  # a regular file: O_NONBLOCK was only for the open (FUSE may honour it on reads)
        chunks: list[bytes] = []
        remaining = limit + 1
        while remaining > 0:
            chunk = os.read(fd, min(remaining, 1024 * 1024))
            if not chunk:
                break
            chunks.append(chunk)
            remaining -= len(chunk)
    except OSError as exc:
        raise file_error(path, shown, f"cannot be read: {exc.strerror}", hint=_READABLE_HINT) from None
    finally:
        os.close(fd)
    data = b"".join(chunks)
    if len(data) > limit:  # it grew while being read
        raise too_large(path, shown, len(data))
    return data, st


_READABLE_HINT = "make the file readable by the user dli runs as (the dag-processor's), e.g. chmod a+r"
_REGULAR_HINT = "dli reads only regular files: replace it with a plain file"


def _dangling_target(full: str) -> str | None:
    with contextlib.suppress(OSError):
        if stat.S_ISLNK(os.lstat(full).st_mode):
            return os.readlink(full)
    return None


class LocalStore(SpecStore):
    """A folder holding ``code/`` and ``manual/`` (either may be missing)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).expanduser()
        self.url = str(root)
        if not self.root.is_dir():
            raise StoreNotFoundError(f"The spec store {self.url} is not a folder (it should hold code/ and manual/)")
        self._real_root = self.root.resolve()

    def _folder(self, prefix: SourceType) -> Path:
        """The folder holding ``prefix/``."""
        return self.root / prefix.value

    def _store_path(self, full: str) -> str:
        """The store path (``code/a.yaml``) of a file under one of the prefix folders."""
        return Path(full).relative_to(self.root).as_posix()

    def _file(self, path: str) -> Path:
        """The file of a store path."""
        return self.root / path

    def list_files(self, prefix: SourceType) -> list[StoreFile]:
        base = str(self._folder(prefix))
        if prefix is SourceType.CODE:
            self.release_listed = os.path.lexists(self._file(f"{RELEASE_DIR}release.json"))
        try:
            if not stat.S_ISDIR(os.stat(base).st_mode):
                return []
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise StoreUnavailableError(f"Cannot list the spec store {self.url}: {prefix.value}/: {exc.strerror}") from None
        files: list[StoreFile] = []
        rel = self._store_path

        def unreadable(exc: OSError) -> None:
            # os.walk skips a folder it cannot list: report it, the files it may hold are unknown, not absent
            files.append(StoreFile(f"{rel(exc.filename)}/", "unreadable", unreadable=exc.strerror or str(exc)))

        for dirpath, dirnames, filenames in os.walk(base, onerror=unreadable, followlinks=False):
            keep = []
            for name in sorted(d for d in dirnames if not d.startswith(".")):
                full = os.path.join(dirpath, name)
                if os.path.islink(full):  # not followed: a link could lead out of the store or in a circle
                    files.append(StoreFile(f"{rel(full)}/", "link", unreadable="it is a symlink to a folder"))
                else:
                    keep.append(name)
            dirnames[:] = keep
            for filename in sorted(filenames):
                if filename.startswith("."):
                    continue
                full = os.path.join(dirpath, filename)
                try:
                    version = _version(os.stat(full))
                except FileNotFoundError:
                    try:  # a dangling link is listed: reading it says what it points to
                        version = f"dangling-{_version(os.lstat(full))}"
                    except OSError:
                        continue  # removed since the folder was read
                except OSError as exc:  # listed, so reading it reports why it cannot be read
                    version = f"error-{exc.errno}"
                files.append(StoreFile(rel(full), version))
        return files

    def read_bytes(self, path: str) -> bytes:
        full = self._file(path)
        resolved = full.resolve()
        if not resolved.is_relative_to(self._real_root):
            raise SpecValidationError(
                f"{self.display(path)} points outside the store (a symlink to {resolved})",
                hint="copy the file into the store instead of linking to it",
            )
        # opened by its own path (a link inside the store is fine), so a dangling link is reported as one
        return read_regular(str(full), path, self.display(path))[0]

    def read_if_changed(self, path: str, version: str | None) -> ManualFile | None:
        if not os.path.lexists(self._file(path)):
            return None
        return super().read_if_changed(path, version)

    # -- writes ----------------------------------------------------------------------------------------
    def _check_inside_manual(self, path: str, folder: Path) -> None:
        """Symlinks must not lead a manual/ write into code/ or out of the store."""
        manual = self.root / SourceType.MANUAL.value
        real_manual = manual.resolve()
        real_code = (self.root / SourceType.CODE.value).resolve()
        real_folder = folder.resolve()
        if (
            (manual.exists() and not real_manual.is_relative_to(self._real_root))
            or real_manual.is_relative_to(real_code)
            or (folder.exists() and not real_folder.is_relative_to(real_manual))
        ):
            raise WorkflowPermissionError(f"refusing to write {path!r}: it resolves outside manual/ (a symlink?)")

    def _target(self, path: str, *, create: bool = False) -> Path:
        target = self.root / path
        self._check_inside_manual(path, target.parent)
        if create:
            target.parent.mkdir(parents=True, exist_ok=True)
            self._check_inside_manual(path, target.parent)
        return target

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Serialize the check-then-act writes (replace, delete) of every dli process on this store.

        ``flock`` on ``manual/.dli-write.lock``: released when the process dies, so it never goes stale.
        Creates need no lock: the exclusive publish is atomic on its own.
        """
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not on Windows: replace/delete are then check-then-act
            yield
            return
        manual = self._target(f"{SourceType.MANUAL.value}/{WRITE_LOCK}", create=True).parent
        fd = os.open(manual / WRITE_LOCK, os.O_RDONLY | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), FILE_MODE)
        try:
            deadline = time.monotonic() + WRITE_LOCK_SECONDS
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise WorkflowRegistrationError(
                            f"another registration has been writing to the store {self.url} for "
                            f"{WRITE_LOCK_SECONDS:g} s", hint="try again in a moment",
                        ) from None
                    time.sleep(0.01)
            yield
        finally:
            os.close(fd)  # releases the lock

    @staticmethod
    def _temp(folder: Path, data: bytes) -> Path:
        """A complete, hidden temporary file beside the target (mode 0644 less the umask)."""
        tmp = folder / f".dli-{secrets.token_hex(8)}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), FILE_MODE)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        return tmp

    def _read_current(self, path: str) -> ManualFile | None:
        target = self._target(path)
        try:
            data, st = read_regular(str(target), path, self.display(path))
        except DliError:
            if not os.path.lexists(target):
                return None
            raise
        return ManualFile(data, _version(st))

    def _create(self, path: str, data: bytes) -> None:
        target = self._target(path, create=True)
        tmp = self._temp(target.parent, data)
        try:
            # link is the atomic, exclusive publish of a complete file: it fails if the target exists
            os.link(tmp, target)
        except FileExistsError:
            raise conflict(self.display(path), "already exists") from None
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK, errno.ENOSYS):
                raise
            self._create_without_links(target, data)  # a filesystem without hard links
        finally:
            with contextlib.suppress(OSError):
                os.unlink(tmp)

    def _create_without_links(self, target: Path, data: bytes) -> None:
        try:
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), FILE_MODE)
        except FileExistsError:
            raise conflict(str(target), "already exists") from None
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)

    def _replace(self, path: str, data: bytes, version: str) -> None:
        target = self._target(path, create=True)
        with self._locked():
            try:
                current = _version(os.stat(target))
            except FileNotFoundError:
                raise conflict(self.display(path), "was removed") from None
            if current != version:
                raise conflict(self.display(path), "changed since it was read")
            tmp = self._temp(target.parent, data)
            try:
                os.replace(tmp, target)  # readers see the old or the new file, never a gap or half a file
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise

    def _delete(self, path: str, version: str | None) -> None:
        target = self._target(path)
        with self._locked():
            try:
                current = _version(os.stat(target))
            except FileNotFoundError:
                return
            if version is not None and current != version:
                raise conflict(self.display(path), "changed since it was read")
            with contextlib.suppress(FileNotFoundError):
                target.unlink()


def iter_spec_files(paths: Iterable[str | os.PathLike[str]]) -> Iterator[Path]:
    """Expand CLI arguments: spec files as they are, folders to every ``*.yaml``/``*.yml`` below them."""
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            for dirpath, dirnames, filenames in os.walk(path):
                dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
                for filename in sorted(filenames):
                    if filename.endswith(SPEC_SUFFIXES):
                        yield Path(dirpath) / filename
        else:
            yield path


def is_store_root(path: Path) -> bool:
    return path.is_dir() and any((path / p.value).is_dir() for p in PREFIXES)


class SingleFileStore(SpecStore):
    """Spec files checked one by one (``dli spec validate x.yaml``): the root is the enclosing store, if the file
    sits under one's ``code/`` or ``manual/``, else the file's own folder."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.url = str(root)
        self._real_root = root.resolve()

    @classmethod
    def for_file(cls, spec_file: Path) -> SingleFileStore:
        for parent in spec_file.resolve().parents:
            if parent.name in {p.value for p in PREFIXES} and is_store_root(parent.parent):
                return cls(parent.parent)
        return cls(spec_file.parent)

    def list_files(self, prefix: SourceType) -> list[StoreFile]:  # pragma: no cover - never scanned
        return []

    read_bytes = LocalStore.read_bytes
    _file = LocalStore._file

    def display(self, path: str) -> str:
        return path if str(self.root) in {"", "."} else str(self.root / path)


__all__ = [
    "FILE_MODE", "MAX_RELEASE_BYTES", "MAX_SPEC_BYTES", "MAX_SQL_BYTES", "RELEASE_DIR", "PREFIXES",
    "SPEC_SUFFIXES", "LocalStore", "ManualFile", "SingleFileStore", "SpecStore", "StoreFile", "UNCHANGED",
    "conflict", "file_error", "is_store_root", "iter_spec_files", "manual_path", "read_limit", "read_regular",
    "too_large",
]
