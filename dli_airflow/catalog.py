"""The catalog: every spec of a store loaded, validated and resolved into one :class:`StoreSnapshot`.

A store holds Dataset Spec files (``*.yaml`` / ``*.yml``, any depth) and their SQL under two prefixes:
``code/`` (deployed from Git by CI) and ``manual/`` (registered through the client). For each dataset
name, code wins: the manual spec is kept untouched and reported ``overridden``; when the code spec goes
away the manual one is active again. Two files of one prefix that declare the same name are a
conflict: neither is scheduled until it is fixed. One broken file never hides the others.

:func:`scan` returns a :class:`StoreSnapshot`: every valid entry with its source and status, and one
:class:`~dli_airflow.errors.DliError` per broken file or conflict. :func:`resolve_fetching` does the same
from a listing, reading only what changed; :mod:`dli_airflow.cache` keeps its result between parses.
The storage itself (list, read, write) is :mod:`dli_airflow.store`. Nothing here touches Airflow.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import logging
import os
import posixpath
import zlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

from dli_airflow._yaml import load_yaml
from dli_airflow.errors import (
    DatasetNotFoundError,
    DliError,
    Problem,
    SpecConflictError,
    SpecSyntaxError,
    SpecValidationError,
    StoreUnavailableError,
)
from dli_airflow.spec import DatasetSpec, DatasetStatus, SourceType, load_spec
from dli_airflow.store import MAX_SQL_BYTES, PREFIXES, SPEC_SUFFIXES, LocalStore, SpecStore, StoreFile
from dli_airflow.storecheck import check_store

log = logging.getLogger(__name__)

#: Files fetched ahead, in parallel, when their version changed (specs and their SQL).
PREFETCH_SUFFIXES = (".yaml", ".yml", ".sql")
#: Raw objects of a store by path: (version, bytes).
Objects = dict[str, tuple[str, bytes]]


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
    #: store paths (spec files, folders ending in ``/``) this scan could not read: the entries there are the
    #: last good copy, not what the files hold now, so they are never reused as if read (:func:`reusable`)
    unread: tuple[str, ...] = ()

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

class LoadedSpec(NamedTuple):
    """One spec file loaded and checked: the spec, its SQL template and the SQL file's store path."""

    spec: DatasetSpec
    sql: str
    sql_path: str | None


class Validated(NamedTuple):
    """A spec an earlier scan loaded, with the versions of the files it was loaded from."""

    spec_version: str
    sql_version: str | None
    loaded: LoadedSpec

    def still_valid(self, spec_version: str, versions: Mapping[str, str]) -> bool:
        """Whether the spec file and its SQL file still have the versions this was loaded from."""
        sql_path = self.loaded.sql_path
        return self.spec_version == spec_version and (sql_path is None or versions.get(sql_path) == self.sql_version)


class _Found(NamedTuple):
    file: StoreFile
    loaded: LoadedSpec


#: Specs loaded by an earlier scan, by spec path (what :func:`resolve` may reuse).
Reusable = Mapping[str, Validated]


def reusable(snapshot: StoreSnapshot, listed: Mapping[SourceType, Iterable[StoreFile]]) -> dict[str, Validated]:
    """What :func:`resolve` may take from ``snapshot`` (scanned from ``listed``) instead of loading again."""
    versions = {f.path: f.version for files in listed.values() for f in files}
    unread = snapshot.unread
    return {
        e.path: Validated(
            versions[e.path], versions.get(e.sql_path) if e.sql_path else None, LoadedSpec(e.spec, e.sql, e.sql_path)
        )
        for e in snapshot.entries
        if e.path in versions and not any(e.path == u or (u.endswith("/") and e.path.startswith(u)) for u in unread)
    }


def resolve(
    store: SpecStore,
    listed: Mapping[SourceType, list[StoreFile]],
    reuse: Reusable | None = None,
    *,
    last_good: StoreSnapshot | None = None,
    check_sql: bool = True,
) -> StoreSnapshot:
    """Load every spec of ``listed`` from ``store`` and resolve code over manual.

    :param reuse: specs loaded by an earlier scan (:func:`reusable`): one whose spec file and SQL file
        have the same versions now is taken as it is, so a change to one file re-validates one spec.
    :param last_good: the last good snapshot of this store (the cache's; ``None``: there is none): a file
        or folder that cannot be read keeps what it held there (:func:`_carry_outages`)
    :param check_sql: check each SQL template (:func:`load_entry`); ``False`` only for a task's worker
    """
    problems: list[DliError] = []
    found: dict[SourceType, list[_Found]] = {p: [] for p in PREFIXES}
    # names that a broken code file still declares, or declared in the last good snapshot: its manual twin
    # stays overridden, so a bad deploy never silently swaps in an old manual copy
    claimed_by_broken_code: set[str] = set()
    versions = {f.path: f.version for files in listed.values() for f in files}
    all_paths = set(versions)
    last_code = {e.path: e.name for e in (last_good.entries if last_good else ()) if e.source is SourceType.CODE}
    reads = _FailedReads(store)
    outages: list[_Outage] = []
    for prefix in PREFIXES:
        for file in sorted(listed.get(prefix, ()), key=lambda f: f.path):
            if file.unreadable is not None:  # a folder the listing could not read: its files are unknown
                outages.append(_Outage(prefix, file.path, _unreadable_folder(store, file), names_known=False))
                continue
            if not file.path.endswith(SPEC_SUFFIXES):
                continue
            earlier = reuse.get(file.path) if reuse else None
            if earlier is not None and earlier.still_valid(file.version, versions):
                found[prefix].append(_Found(file, earlier.loaded))
                continue
            reads.failed.clear()
            try:
                loaded = load_entry(reads, file.path, all_paths, check_sql=check_sql)
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
                unread = file.path in reads.failed  # the spec itself: the names it holds are unknown
                if reads.failed:  # a file of this spec could not be read: an outage, not a broken spec
                    outages.append(_Outage(prefix, file.path, error, names_known=not unread))
                else:
                    problems.append(error)
                if prefix is SourceType.CODE and not unread:
                    name = _declared_name(reads, file.path)
                    claimed_by_broken_code.update(n for n in (name, last_code.get(file.path)) if n)
                continue
            found[prefix].append(_Found(file, loaded))
    claimed_by_broken_code |= _carry_outages(outages, last_good, found, problems)

    entries: list[SpecEntry] = []
    code_names: set[str] = set(claimed_by_broken_code)
    for prefix in PREFIXES:
        by_name: dict[str, list[_Found]] = {}
        for item in found[prefix]:
            by_name.setdefault(item.loaded.spec.name, []).append(item)
        for name, items in sorted(by_name.items()):
            if prefix is SourceType.CODE:
                code_names.add(name)
            if len(items) > 1:
                files = [store.display(i.file.path) for i in items]
                problems.append(
                    SpecConflictError(
                        f"Dataset {name!r} is declared by {len(files)} files under {prefix.value}/: "
                        + " and ".join(files),
                        problems=[Problem(f"declares dataset {name!r}", file=f, field="name") for f in files],
                    )
                )
                continue
            (item,) = items
            spec = item.loaded.spec
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
                    path=item.file.path,
                    sql=item.loaded.sql,
                    sql_path=item.loaded.sql_path,
                    overridden_by=overridden_by,
                )
            )
    entries = check_store(store, entries, problems, code_names)  # look-alike names, depends_on cycles
    entries.sort(key=lambda e: (e.name, e.source.value))
    return StoreSnapshot(
        store=store.url, entries=tuple(entries), problems=tuple(problems), unread=tuple(o.path for o in outages)
    )


def load_entry(
    store: SpecStore, path: str, all_paths: set[str] | None = None, *, check_sql: bool = True
) -> LoadedSpec:
    """Load one spec file and its SQL; check the SQL template.

    :param check_sql: ``False`` leaves the template check (:func:`~dli_airflow.render.check_template`) to
        the run's render, which checks the same before any SQL is sent: a task's worker, whose DAG file
        builds the one DAG of its task from a release the dag-processor already checked, need not import
        sqlglot to build it (the render imports it when the task runs). A broken template then fails the
        task with the render's DLI-205 instead of leaving the DAG out; every other reader checks.

    :returns: the spec, the SQL template text, and the SQL file's store path (``None`` for inline SQL).
    """
    from dli_airflow.render import check_template

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
        except (SpecValidationError, SpecSyntaxError) as exc:  # e.g. a FIFO, or a symlink out of the store
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
    if check_sql:
        check_template(sql, spec, store.display(sql_path) if sql_path else shown)
    return LoadedSpec(spec, sql, sql_path)


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


class _Outage(NamedTuple):
    """A spec file (or a folder: the path ends in ``/``) of one prefix that could not be read, and why.
    ``names_known``: the spec itself was read (its SQL was not), so the name it holds is known."""

    prefix: SourceType
    path: str
    error: DliError
    names_known: bool


class _FailedReads(SpecStore):
    """The store as one :func:`resolve` reads it, remembering the files that could not be read: a spec
    whose file cannot be read is an outage for the names it may hold, not a broken spec. A failure of the
    whole store propagates as it is."""

    def __init__(self, store: SpecStore) -> None:
        self.url = store.url
        self._store = store
        self.failed: list[str] = []

    def list_files(self, prefix: SourceType) -> list[StoreFile]:
        return self._store.list_files(prefix)

    def display(self, path: str) -> str:
        return self._store.display(path)

    def read_bytes(self, path: str) -> bytes:
        try:
            return self._store.read_bytes(path)
        except StoreUnavailableError:
            raise
        except DliError:
            self.failed.append(path)
            raise


def _unreadable_folder(store: SpecStore, file: StoreFile) -> StoreUnavailableError:
    return StoreUnavailableError(
        f"Cannot read the folder {store.display(file.path)}: {file.unreadable}",
        hint="make the folder listable by the user dli runs as (the dag-processor's), e.g. chmod -R a+rX; "
        "dli does not follow symlinks to folders",
    )


def _carry_outages(
    outages: list[_Outage],
    last_good: StoreSnapshot | None,
    found: dict[SourceType, list[_Found]],
    problems: list[DliError],
) -> set[str]:
    """A file or folder that cannot be read is an outage for the names it may hold, never a silent swap.

    The entries the last good snapshot had at that path (or under that folder) are kept as they were, so
    their DAGs keep running. Under ``code/`` their manual twins stay overridden. Where the names are not
    known (a folder, or a spec file that cannot be read), so do the manual specs the last good snapshot
    kept overridden without a code entry (a code file broken then); with no last good snapshot (a first
    start, ``dli spec validate``) every manual spec stays overridden. Each outage is one problem naming the
    path and what keeps running.

    :returns: the names held by code while the outages last
    """
    if not outages:
        return set()
    present = {item.file.path for items in found.values() for item in items}
    for outage in outages:
        carried = [
            e for e in (last_good.entries if last_good else ())
            if e.source is outage.prefix and e.path not in present
            and (e.path == outage.path or (outage.path.endswith("/") and e.path.startswith(outage.path)))
        ]
        for e in carried:
            found[outage.prefix].append(_Found(StoreFile(e.path, ""), LoadedSpec(e.spec, e.sql, e.sql_path)))
            present.add(e.path)
        problems.append(_outage_problem(outage, sorted({e.name for e in carried}), last_good is not None))
    if not any(o.prefix is SourceType.CODE and not o.names_known for o in outages):
        return set()
    if last_good is None:
        return {item.loaded.spec.name for item in found[SourceType.MANUAL]}
    code = {e.name for e in last_good.entries if e.source is SourceType.CODE}
    return {e.name for e in last_good.entries if e.overridden_by is SourceType.CODE and e.name not in code}


def _outage_problem(outage: _Outage, names: list[str], has_last_good: bool) -> DliError:
    code = outage.prefix is SourceType.CODE
    if names:
        shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
        then = f"{shown} keep{'s' if len(names) == 1 else ''} running from the last good copy"
        then += " and their manual copies stay overridden" if code else ""
    elif code and outage.names_known:
        then = "no last good copy of it to run; the manual copy of the dataset it declares stays overridden"
    elif code and not has_last_good:
        then = ("the datasets it holds are unknown (no last good copy of this store yet), so every manual spec "
                "stays overridden until it can be read")
    else:
        then = "the last good copy had no dataset there" + ("; no manual spec takes over" if code else "")
    problem = copy.copy(outage.error)
    problem.message = f"{outage.error.message}; {then}"
    problem.args = (problem.message,)
    return problem


class _Reader(SpecStore):
    """The store as :func:`resolve` sees it: bytes known at the listed version first,
    the real store for the rest. A store failure is remembered, because ``resolve`` isolates every file's
    errors and would otherwise report an outage as broken specs."""

    def __init__(self, store: SpecStore, versions: Mapping[str, str], known: Objects) -> None:
        self.url = store.url
        self._store = store
        self._versions = versions
        self._known = known
        self.used: Objects = {}
        self.failure: StoreUnavailableError | None = None

    def list_files(self, prefix: SourceType) -> list[StoreFile]:
        return self._store.list_files(prefix)

    def display(self, path: str) -> str:
        return self._store.display(path)

    def read_bytes(self, path: str) -> bytes:
        version = self._versions.get(path)
        hit = self._known.get(path)
        if hit is not None and version is not None and hit[0] == version:
            self.used[path] = hit
            return hit[1]
        try:
            data = self._store.read_bytes(path)
        except StoreUnavailableError as exc:
            self.failure = self.failure or exc
            raise
        if version is not None:
            self.used[path] = (version, data)
        return data


def resolve_fetching(
    store: SpecStore,
    listed: Mapping[SourceType, list[StoreFile]],
    known: Objects | None = None,
    reuse: Reusable | None = None,
    save: Callable[[Objects], None] | None = None,
    *,
    last_good: StoreSnapshot | None = None,
    check_sql: bool = True,
) -> tuple[StoreSnapshot, Objects]:
    """Resolve a listing, reading only the files whose version is not in ``known``.

    A remote store (``SpecStore.remote``) gets the changed specs and SQL files in one parallel batch first.

    :param known: raw objects from earlier reads; updated in place with what this call fetched
    :param reuse: specs validated by the last scan (see :func:`resolve`)
    :param save: called with ``known`` once the changed objects are fetched, before the (long, for a big
        store) validation: a parse killed by the dag-processor's timeout meanwhile loses no download
    :param last_good: the last good snapshot (see :func:`resolve`)
    :returns: the snapshot, and the raw objects at their listed versions (for the next call's ``known``).
    :raises StoreUnavailableError: the store failed while being read (never reported as a broken spec).
    """
    known = {} if known is None else known
    versions = {f.path: f.version for files in listed.values() for f in files}
    stale = [p for p, v in versions.items() if p.endswith(PREFETCH_SUFFIXES) and known.get(p, ("",))[0] != v]
    if store.remote and stale:
        fetched: dict[str, bytes] = {}
        try:
            store.read_many(stale, out=fetched)
        finally:
            # kept even when the store fails half-way: the next parse goes on from here
            for path, data in list(fetched.items()):
                known[path] = (versions[path], data)
        if save is not None and fetched:
            save(known)
    reader = _Reader(store, versions, known)
    snapshot = resolve(reader, listed, reuse, last_good=last_good, check_sql=check_sql)
    known.update(reader.used)
    if reader.failure is not None:
        raise reader.failure
    objects = {p: kv for p, kv in {**known, **reader.used}.items() if versions.get(p) == kv[0]}
    return snapshot, objects


def list_store(store: SpecStore) -> dict[SourceType, list[StoreFile]]:
    """The listing of both prefixes of ``store``."""
    return {prefix: store.list_files(prefix) for prefix in PREFIXES}


def scan(store: SpecStore | str | os.PathLike[str] | None = None) -> StoreSnapshot:
    """Load, validate and resolve every spec of a store, isolating each file's faults.

    :param store: a store, a folder, an ``s3://`` URL, or ``None`` for ``[dli] spec_store``
    """
    from dli_airflow.release import open_release

    if not isinstance(store, SpecStore):
        store = open_store(store)
    store = open_release(store).store  # a published store: code/ as its release index names it
    return resolve_fetching(store, list_store(store))[0]


def open_store(url: str | os.PathLike[str] | None = None) -> SpecStore:
    """The store named by ``url`` or by ``[dli] spec_store``: an :class:`~dli_airflow.s3store.S3Store` for
    ``s3://bucket/prefix``, else a :class:`~dli_airflow.store.LocalStore` folder."""
    from dli_airflow import config

    target = str(url) if url is not None else config.spec_store()
    if target.startswith("s3://"):
        from dli_airflow.s3store import S3Store

        return S3Store(target)
    return LocalStore(target)


__all__ = [
    "LoadedSpec",
    "MAX_SQL_BYTES",
    "Objects",
    "Reusable",
    "SpecEntry",
    "StoreSnapshot",
    "Validated",
    "list_store",
    "load_entry",
    "open_store",
    "resolve",
    "resolve_fetching",
    "reusable",
    "scan",
    "shard_of",
    "shard_snapshot",
    "sql_location",
]
