"""The storage layer of a spec store: list, read and write files under ``code/`` and ``manual/``.

A store is a folder (:class:`LocalStore`) or ``s3://bucket/prefix`` (:class:`~dli_airflow.s3store.S3Store`)
holding two prefixes: ``code/`` (deployed from Git by CI) and ``manual/`` (registered through the client).
Writes go through one guard, :func:`manual_path`: nothing here writes or deletes under ``code/``.
Loading and resolving the specs of a store is :mod:`dli_airflow.catalog`. Nothing here touches Airflow.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from dli_airflow.errors import (
    SpecValidationError,
    StoreNotFoundError,
    WorkflowPermissionError,
    WorkflowRegistrationError,
)
from dli_airflow.spec import SourceType

PREFIXES = (SourceType.CODE, SourceType.MANUAL)
SPEC_SUFFIXES = (".yaml", ".yml")


@dataclass(frozen=True)
class StoreFile:
    """One object of the store: its path relative to the store root (``code/a/b.yaml``) and a version tag."""

    path: str
    version: str


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

    @abstractmethod
    def list_files(self, prefix: SourceType) -> list[StoreFile]:
        """Every file under ``prefix/`` (paths relative to the store root, posix style)."""

    @abstractmethod
    def read_bytes(self, path: str) -> bytes:
        """The content of one file (path relative to the store root)."""

    def read_many(self, paths: Iterable[str], out: dict[str, bytes] | None = None) -> dict[str, bytes]:
        """Read several files; missing ones are left out (reading them again says why).

        :param out: filled as reads complete, so what was read before a failure is kept by the caller
        """
        out = {} if out is None else out
        for path in dict.fromkeys(paths):
            try:
                out[path] = self.read_bytes(path)
            except SpecValidationError:
                pass
        return out

    def set_deadline(self, seconds: float | None) -> None:
        """Refuse to start requests ``seconds`` from now (None: no deadline). A local store needs none."""

    def display(self, path: str) -> str:
        """A file's name as users see it in messages."""
        return f"{self.url.rstrip('/')}/{path}"

    # -- writes: only ever under manual/ -------------------------------------------------------------------
    def put_manual(self, path: str, data: bytes) -> None:
        """Write one file under ``manual/`` (atomically where the backend allows)."""
        self._put(manual_path(path), data)

    def delete_manual(self, path: str) -> None:
        """Delete one file under ``manual/``."""
        self._delete(manual_path(path))

    def _put(self, path: str, data: bytes) -> None:
        raise WorkflowRegistrationError(f"the store {self.url} is read-only here")

    def _delete(self, path: str) -> None:
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


class LocalStore(SpecStore):
    """A folder holding ``code/`` and ``manual/`` (either may be missing)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).expanduser()
        self.url = str(root)
        if not self.root.is_dir():
            raise StoreNotFoundError(f"The spec store {self.url} is not a folder (it should hold code/ and manual/)")
        self._real_root = self.root.resolve()

    def list_files(self, prefix: SourceType) -> list[StoreFile]:
        base = self.root / prefix.value
        if not base.is_dir():
            return []
        files: list[StoreFile] = []
        for dirpath, dirnames, filenames in os.walk(base, followlinks=False):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for filename in sorted(filenames):
                if filename.startswith("."):
                    continue
                full = os.path.join(dirpath, filename)
                try:
                    st = os.stat(full)
                except OSError:
                    continue  # a dangling link: reported when a spec names it
                rel = Path(full).relative_to(self.root).as_posix()
                files.append(StoreFile(rel, f"{st.st_mtime_ns}-{st.st_size}"))
        return files

    def read_bytes(self, path: str) -> bytes:
        full = (self.root / path).resolve()
        if not full.is_relative_to(self._real_root):
            raise SpecValidationError(
                f"{self.display(path)} points outside the store (a symlink to {full})",
                hint="copy the file into the store instead of linking to it",
            )
        try:
            return full.read_bytes()
        except FileNotFoundError:
            raise SpecValidationError(f"{self.display(path)} does not exist") from None
        except OSError as exc:
            raise SpecValidationError(f"{self.display(path)} cannot be read: {exc.strerror}") from None

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

    def _put(self, path: str, data: bytes) -> None:
        target = self.root / path
        self._check_inside_manual(path, target.parent)
        target.parent.mkdir(parents=True, exist_ok=True)
        self._check_inside_manual(path, target.parent)
        # write a temporary file beside the target, then rename: a reader never sees half a file
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def _delete(self, path: str) -> None:
        target = self.root / path
        self._check_inside_manual(path, target.parent)
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

    def display(self, path: str) -> str:
        return path if str(self.root) in {"", "."} else str(self.root / path)


__all__ = [
    "PREFIXES",
    "SPEC_SUFFIXES",
    "LocalStore",
    "SingleFileStore",
    "SpecStore",
    "StoreFile",
    "is_store_root",
    "iter_spec_files",
    "manual_path",
]
