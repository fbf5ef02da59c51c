"""The on-disk snapshot cache of a store: re-parses cost a listing, not a load, when nothing changed.

The dag-processor parses the DAG file in a fresh process every few seconds, so an in-memory cache
would not survive; the resolved :class:`~dli_airflow.catalog.StoreSnapshot` is pickled under
``[dli] cache_dir``, keyed by the store's listing (path and version of every file):

- unchanged store: one listing per prefix (one paginated LIST each on S3), no read, no parse;
- changed store: only the objects whose version changed are read (a remote store's raw bytes are kept
  by version, e.g. the S3 ETag, in ``objects-<key>.pickle``), then the whole store is resolved again;
- unreadable store (server down, timeout, 5xx, access denied, throttling, folder gone): the last good
  snapshot is served and one warning names the store and the cause; with no last good copy yet the
  error propagates, and the factory shows it in the ``dli_spec_errors`` DAG instead of dataset DAGs;
- one unreadable file or folder (permissions, a FIFO, a dangling link, too large): the store is resolved
  with the last good snapshot at hand, and the datasets it had there keep running from it
  (:func:`dli_airflow.catalog.resolve`'s ``last_good``).

A store published by ``dli spec publish`` has a release index (:mod:`dli_airflow.release`): ``code/`` is then
not listed but read from the index, kept in ``release-<key>.pickle`` and asked for again conditionally
(unchanged: HTTP 304), and a cold reader gets the release's files from its bundle in one GET. A worker
building one DAG (``only``) reads the index and that dataset's files, and caches its own snapshot.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import logging
import os
import pickle
import tempfile
import time
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, NamedTuple

from dli_airflow import __version__
from dli_airflow.catalog import (
    Objects,
    StoreSnapshot,
    list_store,
    open_store,
    resolve_fetching,
    reusable,
    shard_snapshot,
)
from dli_airflow.errors import StoreNotFoundError, StoreUnavailableError
from dli_airflow.release import ABSENT, Release, ReleaseStore, open_release
from dli_airflow.spec import SourceType
from dli_airflow.store import SpecStore, StoreFile

log = logging.getLogger(__name__)

_FORMAT = 3
#: Seconds a parse may spend reading a remote store before it gives up and serves the last good copy
#: (the dag-processor kills a parse after 30 s, ``[core] dagbag_import_timeout``).
READ_BUDGET_SECONDS = 20.0


def _key(store_url: str) -> str:
    return hashlib.sha256(store_url.encode()).hexdigest()[:20]


def cache_path(store_url: str, cache_dir: Path | None = None) -> Path:
    """The file holding the last good snapshot of ``store_url``."""
    from dli_airflow import config

    return (cache_dir or config.cache_dir()) / f"snapshot-{_key(store_url)}.pickle"


def objects_path(store_url: str, cache_dir: Path | None = None) -> Path:
    """The file holding the raw objects of a remote store, by version."""
    from dli_airflow import config

    return (cache_dir or config.cache_dir()) / f"objects-{_key(store_url)}.pickle"


def release_path(store_url: str, cache_dir: Path | None = None) -> Path:
    """The file holding the last release index read of ``store_url``."""
    from dli_airflow import config

    return (cache_dir or config.cache_dir()) / f"release-{_key(store_url)}.pickle"


def dataset_path(store_url: str, name: str, cache_dir: Path | None = None) -> Path:
    """The snapshot a worker building only dataset ``name`` keeps (its entry and nothing else)."""
    return cache_path(store_url, cache_dir).with_name(
        f"snapshot-{_key(store_url)}-dag-{hashlib.sha256(name.encode()).hexdigest()[:16]}.pickle"
    )


def _read_release(path: Path) -> Release | str | None:
    """The last release index read, :data:`~dli_airflow.release.ABSENT` (the store had none), or ``None``."""
    loaded = _load(path)
    return loaded if isinstance(loaded, Release) or loaded == ABSENT else None


class _Signature(NamedTuple):
    """What a cached snapshot was made from: the cache format, the package version and the listing."""

    format: int
    version: str
    listing: tuple[tuple[str, tuple[tuple[str, str], ...]], ...]

    def files(self) -> dict[SourceType, list[StoreFile]]:
        """The listing this signature was made from."""
        return {SourceType(prefix): [StoreFile(p, v) for p, v in files] for prefix, files in self.listing}


def _signature(listed: Mapping[SourceType, list[StoreFile]]) -> _Signature:
    return _Signature(
        _FORMAT,
        __version__,
        tuple((prefix.value, tuple(sorted((f.path, f.version) for f in files))) for prefix, files in listed.items()),
    )


def _load(path: Path) -> Any:
    try:
        with path.open("rb") as fh:
            return pickle.load(fh)
    except FileNotFoundError:
        return None
    except Exception as exc:  # a torn or foreign file: rebuild it
        log.warning("dli: ignoring the unreadable cache file %s: %s", path, exc)
        return None


class _Cached(NamedTuple):
    """One cache file: the listing signature it was made from and the snapshot."""

    signature: _Signature
    snapshot: StoreSnapshot


def _read(path: Path) -> _Cached | None:
    loaded = _load(path)
    if not (isinstance(loaded, tuple) and len(loaded) == 2 and isinstance(loaded[1], StoreSnapshot)):
        return None
    signature, snapshot = loaded
    return _Cached(_Signature(*signature), snapshot) if len(signature) == 3 else None


def _read_objects(path: Path) -> Objects:
    loaded = _load(path)
    return loaded if isinstance(loaded, dict) else {}


def _dump(path: Path, value: Any) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                pickle.dump(value, fh, protocol=pickle.HIGHEST_PROTOCOL)
            # atomic: parses running at the same time read the old or the new file, never half of one
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
    except OSError as exc:
        log.warning("dli: cannot write the cache file %s: %s", path, exc)


def _write(path: Path, signature: _Signature, snapshot: StoreSnapshot) -> None:
    _dump(path, _Cached(signature, snapshot))


def _when(path: Path) -> str:
    try:
        mtime = path.stat().st_mtime
    except OSError:
        return "at an unknown time"
    age = max(0, int(time.time() - mtime))
    stamp = datetime.fromtimestamp(mtime, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    return f"{stamp}, {age // 60} min {age % 60} s ago"


def _last_good(
    url: str,
    exc: StoreNotFoundError | StoreUnavailableError,
    cache_dir: Path | None,
    fallback: bool,
    first: Path | None = None,
) -> StoreSnapshot:
    """The last good snapshot of ``url`` after ``exc``, with one warning; or ``exc`` when there is none.

    :param first: a cache file to try before the whole store's (a worker's own, for one dataset)
    """
    if not fallback:
        raise exc
    path = cache_path(url, cache_dir)
    cached = _read(first) if first is not None else None
    if cached is not None and first is not None:
        path = first
    else:
        cached = _read(path)
    if cached is None:
        if isinstance(exc, StoreUnavailableError):
            raise StoreUnavailableError(
                f"{exc.message}. There is no last good copy of this store in {path.parent} yet (first start), "
                "so no dataset DAGs are emitted until the store can be read",
                hint=exc.hint,
            ) from exc
        raise exc
    snapshot = cached.snapshot
    note = (
        f"[{exc.code}] {exc.message}; serving the last good copy of the store "
        f"({len(snapshot.active)} dataset DAG(s), read {_when(path)}) until it can be read again"
    )
    log.warning("dli: %s", note)
    return dataclasses.replace(snapshot, warnings=(*snapshot.warnings, note))


def load_snapshot(
    store: str | SpecStore | None = None,
    *,
    cache_dir: Path | None = None,
    fallback: bool = True,
    shard: tuple[int, int] | None = None,
    only: str | None = None,
) -> StoreSnapshot:
    """The store's resolved snapshot: from the cache when the listing is unchanged, else a fresh resolve.

    :param store: a folder, an ``s3://`` URL or a store; default ``[dli] spec_store``
    :param cache_dir: default ``[dli] cache_dir``
    :param fallback: serve the last good snapshot (with a warning, and the cause in its ``warnings``)
        when the store cannot be read; False raises instead (``dli_sync`` must not act on an old copy)
    :param shard: ``(i, K)``: the caller builds only shard ``i`` of ``K`` (a sharded DAG file). An unchanged
        store is then served from that shard's own cache file (its entries only), so each of K parses
        unpickles a K-th of the store; the result may still hold other shards' entries (filter by name).
    :param only: the caller builds only this dataset's DAG (a worker: Airflow's parsing context names it).
        With a release index the result holds that dataset and no other (what it costs: the index, the
        dataset's files; ``manual/`` only when the release does not hold it); without one, the whole store.
    :raises StoreUnavailableError: the store cannot be read and there is no last good copy (or no fallback)
    """
    if isinstance(store, SpecStore):
        spec_store = store
    else:
        from dli_airflow import config

        target = str(store) if store is not None else config.spec_store()
        try:
            spec_store = open_store(target)
        except (StoreNotFoundError, StoreUnavailableError) as exc:
            return _last_good(target, exc, cache_dir, fallback)
    remote = spec_store.remote
    spec_store.set_deadline(READ_BUDGET_SECONDS)
    known: Objects | None = None
    own: Path | None = None  # a worker's own cache file, for one dataset
    try:
        release_file = release_path(spec_store.url, cache_dir)
        state = _read_release(release_file)
        opened = open_release(spec_store, state, only=only)
        listed = None
        if opened.release is None:
            listed = list_store(spec_store)
            if spec_store.release_listed:  # a first publish since the last parse: read its index
                opened = open_release(spec_store, None, only=only)
                listed = None
        if opened.release is None:
            if state != ABSENT:
                _dump(release_file, ABSENT)
        elif opened.release is not state:
            _dump(release_file, opened.release)
        if isinstance(opened.store, ReleaseStore) and only is not None:
            own = dataset_path(spec_store.url, only, cache_dir)
            return _load_one(opened.store, own, cache_dir)
        spec_store = opened.store
        listed = listed if listed is not None else list_store(spec_store)
        signature = _signature(listed)
        path = cache_path(spec_store.url, cache_dir)
        objects_file = objects_path(spec_store.url, cache_dir)
        part_path = path.with_name(f"{path.stem}-shard{shard[0]}of{shard[1]}{path.suffix}") if shard else None
        if part_path is not None:
            part = _read(part_path)
            if part is not None and part.signature == signature:
                for touched in (part_path, path):
                    with contextlib.suppress(OSError):
                        os.utime(touched)
                return part.snapshot
        cached = _read(path)
        if cached is not None and cached.signature == signature:
            with contextlib.suppress(OSError):
                os.utime(path)  # its age, shown during an outage, is the time of the last good read
            if shard is not None and part_path is not None:
                _write(part_path, signature, shard_snapshot(cached.snapshot, *shard))
            return cached.snapshot
        known = _read_objects(objects_file) if remote else {}
        # the specs whose files did not change since the last good scan are not validated again
        reuse = reusable(cached.snapshot, cached.signature.files()) if cached is not None else None
        snapshot, objects = resolve_fetching(
            spec_store, listed, known, reuse, lambda done: _dump(objects_file, done),
            # a file or folder that cannot be read keeps what the last good snapshot had there
            last_good=cached.snapshot if cached is not None else None,
        )
    except StoreUnavailableError as exc:
        if remote and known:
            # a first load of a big store may not fit in one parse's budget: keep what was read
            _dump(objects_file, known)
        return _last_good(spec_store.url, exc, cache_dir, fallback, own)
    finally:
        spec_store.set_deadline(None)
    if remote:
        _dump(objects_file, objects)
    _write(path, signature, snapshot)
    if shard is not None and part_path is not None:
        _write(part_path, signature, shard_snapshot(snapshot, *shard))
    return snapshot


def _load_one(store: ReleaseStore, path: Path, cache_dir: Path | None) -> StoreSnapshot:
    """The snapshot of one dataset of a release (a worker's): its own cache file, else its files read."""
    listed = list_store(store)
    signature = _signature(listed)
    cached = _read(path)
    if cached is not None and cached.signature == signature:
        return cached.snapshot
    # a worker: its task's render checks the template before any SQL runs (no sqlglot to build the DAG)
    snapshot, _ = resolve_fetching(store, listed, {}, last_good=cached.snapshot if cached is not None else None,
                                   check_sql=False)
    _write(path, signature, snapshot)
    return snapshot


__all__ = ["cache_path", "dataset_path", "load_snapshot", "objects_path", "release_path"]
