"""The spec store: ``code/`` and ``manual/`` prefixes, resolution, and per-file fault isolation.

A store holds Dataset Spec files (``*.yaml`` / ``*.yml``, any depth) and their SQL under two prefixes:
``code/`` (deployed from Git by CI) and ``manual/`` (registered through the client). For each dataset
name, code wins: the manual spec is kept untouched and reported ``overridden``; when the code spec goes
away the manual one is active again. Two files of one prefix that declare the same name are a
conflict: neither is scheduled until it is fixed. One broken file never hides the others.

``scan()`` returns a :class:`StoreSnapshot`: every valid entry with its source and status, and one
:class:`~dli_airflow.errors.DliError` per broken file or conflict.
"""

from __future__ import annotations

import logging
import contextlib
import dataclasses
import os
import posixpath
import tempfile
import zlib
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dli_airflow.errors import (
    WorkflowPermissionError,
    WorkflowRegistrationError,
    DatasetNotFoundError,
    DliError,
    Problem,
    SpecConflictError,
    SpecValidationError,
    StoreNotFoundError,
)
from dli_airflow.spec import DatasetSpec, DatasetStatus, SourceType, load_spec, load_yaml, validate_spec

log = logging.getLogger(__name__)

PREFIXES = (SourceType.CODE, SourceType.MANUAL)
SPEC_SUFFIXES = (".yaml", ".yml")
#: SQL files larger than this are refused (a runaway generated file, not a query).
MAX_SQL_BYTES = 10 * 1024 * 1024


@dataclass(frozen=True)
class StoreFile:
    """One object of the store: its path relative to the store root (``code/a/b.yaml``) and a version tag."""

    path: str
    version: str


@dataclass(frozen=True)
class SpecEntry:
    """A valid spec of the store, with its SQL, source and resolved status."""

    spec: DatasetSpec
    source: SourceType
    status: DatasetStatus
    path: str
    sql: str
    sql_path: str | None = None
    overridden_by: SourceType | None = None

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def schedules(self) -> bool:
        """Whether this entry becomes a DAG (it is the winning copy of its dataset)."""
        return self.status is not DatasetStatus.OVERRIDDEN


@dataclass(frozen=True)
class StoreSnapshot:
    """Everything one scan of a store found."""

    store: str
    entries: tuple[SpecEntry, ...]
    problems: tuple[DliError, ...] = ()
    warnings: tuple[str, ...] = field(default=())

    @property
    def active(self) -> list[SpecEntry]:
        """The winning entry of each dataset (status ``active`` or ``paused``): what becomes a DAG."""
        return [e for e in self.entries if e.schedules]

    def get(self, name: str, source: SourceType | None = None) -> SpecEntry:
        """The entry for a dataset: the winning one, or the one of ``source``.

        :raises DatasetNotFoundError: naming close matches.
        """
        matches = [e for e in self.entries if e.name == name and (source is None or e.source is source)]
        if source is None:
            matches = sorted(matches, key=lambda e: (not e.schedules, e.source is not SourceType.CODE))
        if matches:
            return matches[0]
        for problem in self.problems:
            if f"'{name}'" in problem.message:
                raise DatasetNotFoundError(
                    f"Dataset {name!r} is in the store {self.store} but its spec has a problem: {problem.message}",
                    hint="fix the spec (`dli spec validate` shows every problem)",
                )
        import difflib

        close = difflib.get_close_matches(name, sorted({e.name for e in self.entries}), n=3)
        suggestion = f" Did you mean: {', '.join(close)}?" if close else ""
        raise DatasetNotFoundError(f"Dataset {name!r} is not in the store {self.store}.{suggestion}")


def shard_of(name: str, shards: int) -> int:
    """Which of ``shards`` DAG files builds the DAG of dataset ``name``: a hash of the name that is the
    same in every process and release (``zlib.crc32``; Python's ``hash`` of a str changes per process)."""
    return zlib.crc32(name.encode("utf-8")) % shards if shards > 1 else 0


def shard_snapshot(snapshot: StoreSnapshot, shard: int, shards: int) -> StoreSnapshot:
    """The part of ``snapshot`` that shard ``shard`` of ``shards`` builds; the store's problems go to shard 0."""
    return dataclasses.replace(
        snapshot,
        entries=tuple(e for e in snapshot.entries if shard_of(e.name, shards) == shard),
        problems=snapshot.problems if shard == 0 else (),
    )


class SpecStore(ABC):
    """A place that holds ``code/`` and ``manual/`` spec files. Subclasses list and read files."""

    #: How the store is named to users (a path or an ``s3://`` URL).
    url: str

    @abstractmethod
    def list_files(self, prefix: SourceType) -> list[StoreFile]:
        """Every file under ``prefix/`` (paths relative to the store root, posix style)."""

    @abstractmethod
    def read_bytes(self, path: str) -> bytes:
        """The content of one file (path relative to the store root)."""

    def display(self, path: str) -> str:
        """A file's name as users see it in messages."""
        return f"{self.url.rstrip('/')}/{path}"

    def scan(self) -> StoreSnapshot:
        """Load, validate and resolve every spec of the store, isolating each file's faults."""
        listed: dict[SourceType, list[StoreFile]] = {prefix: self.list_files(prefix) for prefix in PREFIXES}
        return resolve(self, listed)

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


#: A spec loaded earlier, by its path: (spec version, SQL path or None, SQL version, what it loaded).
Reusable = Mapping[str, tuple[str, "str | None", "str | None", tuple[DatasetSpec, str, "str | None"]]]


def reusable(snapshot: StoreSnapshot, listed: Mapping[SourceType, Iterable[StoreFile]]) -> dict[str, Any]:
    """What :func:`resolve` may take from ``snapshot`` (scanned from ``listed``) instead of loading again."""
    versions = {f.path: f.version for files in listed.values() for f in files}
    return {
        e.path: (versions[e.path], e.sql_path, versions.get(e.sql_path) if e.sql_path else None, (e.spec, e.sql, e.sql_path))
        for e in snapshot.entries
        if e.path in versions
    }


def resolve(
    store: SpecStore, listed: dict[SourceType, list[StoreFile]], reuse: Reusable | None = None
) -> StoreSnapshot:
    """Load every spec of ``listed`` from ``store`` and resolve code over manual.

    :param reuse: specs loaded by an earlier scan (:func:`reusable`): one whose spec file and SQL file
        have the same versions now is taken as it is, so a change to one file re-validates one spec.
    """
    problems: list[DliError] = []
    loaded: dict[SourceType, list[tuple[DatasetSpec, StoreFile, str, str | None]]] = {p: [] for p in PREFIXES}
    # names that a broken code file still declares: its manual twin stays overridden, so a bad deploy
    # never silently swaps in an old manual copy
    claimed_by_broken_code: set[str] = set()
    versions = {f.path: f.version for files in listed.values() for f in files}
    all_paths = set(versions)
    for prefix in PREFIXES:
        for file in sorted(listed[prefix], key=lambda f: f.path):
            if not file.path.endswith(SPEC_SUFFIXES):
                continue
            earlier = reuse.get(file.path) if reuse else None
            if earlier is not None and earlier[0] == file.version and (
                earlier[1] is None or versions.get(earlier[1]) == earlier[2]
            ):
                loaded[prefix].append((earlier[3][0], file, earlier[3][1], earlier[3][2]))
                continue
            try:
                spec, sql, sql_path = load_entry(store, file.path, all_paths)
            except Exception as exc:  # isolation point: one spec file never hides the others
                if isinstance(exc, DliError):
                    error = exc
                else:
                    log.exception("unexpected error loading spec %s", store.display(file.path))
                    error = SpecValidationError(
                        f"{store.display(file.path)}: cannot be loaded ({type(exc).__name__}: {exc})",
                        hint="fix the file; if it looks right, report this as a dli-airflow bug",
                    )
                log.debug("spec %s: [%s] %s", store.display(file.path), error.code, error.message)
                problems.append(error)
                if prefix is SourceType.CODE:
                    name = _declared_name(store, file.path)
                    if name:
                        claimed_by_broken_code.add(name)
                continue
            loaded[prefix].append((spec, file, sql, sql_path))

    entries: list[SpecEntry] = []
    code_names: set[str] = set(claimed_by_broken_code)
    for prefix in PREFIXES:
        by_name: dict[str, list[tuple[DatasetSpec, StoreFile, str, str | None]]] = {}
        for item in loaded[prefix]:
            by_name.setdefault(item[0].name, []).append(item)
        for name, items in sorted(by_name.items()):
            if prefix is SourceType.CODE:
                code_names.add(name)
            if len(items) > 1:
                files = [store.display(i[1].path) for i in items]
                problems.append(
                    SpecConflictError(
                        f"Dataset {name!r} is declared by {len(files)} files under {prefix.value}/: "
                        + " and ".join(files),
                        problems=[Problem(f"declares dataset {name!r}", file=f, field="name") for f in files],
                    )
                )
                continue
            spec, file, sql, sql_path = items[0]
            if prefix is SourceType.MANUAL and name in code_names:
                status, overridden_by = DatasetStatus.OVERRIDDEN, SourceType.CODE
            else:
                enabled = spec.schedule.enabled if spec.schedule else True
                status, overridden_by = (DatasetStatus.ACTIVE if enabled else DatasetStatus.PAUSED), None
            entries.append(
                SpecEntry(
                    spec=spec,
                    source=prefix,
                    status=status,
                    path=file.path,
                    sql=sql,
                    sql_path=sql_path,
                    overridden_by=overridden_by,
                )
            )
    entries.sort(key=lambda e: (e.name, e.source.value))
    return StoreSnapshot(store=store.url, entries=tuple(entries), problems=tuple(problems))


def load_entry(store: SpecStore, path: str, all_paths: set[str] | None = None) -> tuple[DatasetSpec, str, str | None]:
    """Load one spec file and its SQL; check the SQL template.

    :returns: the spec, the SQL template text, and the SQL file's store path (``None`` for inline SQL).
    """
    from dli_airflow.sql import check_template

    shown = store.display(path)
    spec = load_spec(store.read_bytes(path), shown)
    if spec.query is not None:
        sql, sql_path = spec.query, None
    else:
        sql_path = sql_location(spec.query_file or "", path, shown)
        if all_paths is not None and sql_path not in all_paths:
            raise SpecValidationError(
                f"{shown}: query_file: {spec.query_file!r} does not exist (looked for {store.display(sql_path)})",
                hint="put the SQL file beside the spec, or fix the name",
                problems=[Problem("file not found", file=shown, field="query_file")],
            )
        try:
            raw = store.read_bytes(sql_path)
        except SpecValidationError as exc:  # e.g. a symlink that leads out of the store
            raise SpecValidationError(
                f"{shown}: query_file: {exc.message}",
                hint=exc.hint,
                problems=[Problem(exc.message, file=shown, field="query_file")],
            ) from exc
        if len(raw) > MAX_SQL_BYTES:
            raise SpecValidationError(
                f"{store.display(sql_path)}: the SQL file is {len(raw) / 1e6:.1f} MB; the limit is "
                f"{MAX_SQL_BYTES // (1024 * 1024)} MB"
            )
        try:
            sql = raw.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise SpecValidationError(
                f"{store.display(sql_path)}: the SQL file is not UTF-8 (offset {exc.start})",
                hint="save the SQL file as UTF-8",
            ) from None
        if not sql.strip():
            raise SpecValidationError(f"{store.display(sql_path)}: the SQL file is empty", hint="write the query")
    check_template(sql, spec, store.display(sql_path) if sql_path else shown)
    return spec, sql, sql_path


def sql_location(query_file: str, spec_path: str, shown: str) -> str:
    """The store path of a spec's ``query_file``, refusing anything that leaves the store."""
    if not query_file.strip():
        raise SpecValidationError(f"{shown}: query_file: is empty", hint="name the SQL file beside the spec")
    if query_file.startswith(("/", "\\")) or (len(query_file) > 1 and query_file[1] == ":"):
        raise SpecValidationError(
            f"{shown}: query_file: {query_file!r} is an absolute path",
            hint="give a path relative to the spec file, e.g. 'daily_clicks.sql'",
            problems=[Problem("absolute path", file=shown, field="query_file")],
        )
    joined = posixpath.normpath(posixpath.join(posixpath.dirname(spec_path), query_file.replace("\\", "/")))
    if joined.startswith("../") or joined == ".." or ".." in query_file.replace("\\", "/").split("/"):
        raise SpecValidationError(
            f"{shown}: query_file: {query_file!r} uses '..'",
            hint="keep the SQL file beside the spec (or below it) inside the store",
            problems=[Problem("path escapes", file=shown, field="query_file")],
        )
    return joined


def _declared_name(store: SpecStore, path: str) -> str | None:
    try:
        document = load_yaml(store.read_bytes(path), path)
    except (DliError, OSError):
        return None
    name = document.get("name") if isinstance(document, dict) else None
    return name if isinstance(name, str) else None


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


def open_store(url: str | os.PathLike[str] | None = None) -> SpecStore:
    """The store named by ``url`` or by ``[dli] spec_store``."""
    from dli_airflow import config

    target = str(url) if url is not None else config.spec_store()
    if target.startswith("s3://"):
        from dli_airflow.s3store import S3Store  # type: ignore[import-not-found]

        return S3Store(target)  # pragma: no cover - issue 5
    return LocalStore(target)


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
    "LocalStore",
    "SpecEntry",
    "SpecStore",
    "StoreFile",
    "StoreSnapshot",
    "open_store",
    "resolve",
    "validate_spec",
]
