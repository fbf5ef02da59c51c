"""The on-disk snapshot cache of a store: re-parses cost a listing, not a load, when nothing changed.

The dag-processor parses the DAG file in a fresh process every few seconds, so an in-memory cache
would not survive; the resolved :class:`~dli_airflow.store.StoreSnapshot` is pickled under
``[dli] cache_dir``, keyed by the store's listing (path and version of every file). The same file
is the last good copy served when the store cannot be read.
"""

from __future__ import annotations

import hashlib
import logging
import os
import pickle
import tempfile
from pathlib import Path

from dli_airflow import __version__
from dli_airflow.store import PREFIXES, SpecStore, StoreSnapshot, open_store, resolve

log = logging.getLogger(__name__)

_FORMAT = 1


def cache_path(store_url: str, cache_dir: Path | None = None) -> Path:
    from dli_airflow import config

    key = hashlib.sha256(store_url.encode()).hexdigest()[:20]
    return (cache_dir or config.cache_dir()) / f"snapshot-{key}.pickle"


def _signature(listed: dict) -> tuple:
    return (
        _FORMAT,
        __version__,
        tuple((prefix.value, tuple(sorted((f.path, f.version) for f in files))) for prefix, files in listed.items()),
    )


def _read(path: Path) -> tuple[tuple, StoreSnapshot] | None:
    try:
        with path.open("rb") as fh:
            signature, snapshot = pickle.load(fh)
    except FileNotFoundError:
        return None
    except Exception as exc:  # a torn or foreign file: rebuild it
        log.warning("dli: ignoring the unreadable snapshot cache %s: %s", path, exc)
        return None
    return signature, snapshot


def _write(path: Path, signature: tuple, snapshot: StoreSnapshot) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
        with os.fdopen(fd, "wb") as fh:
            pickle.dump((signature, snapshot), fh, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, path)
    except OSError as exc:
        log.warning("dli: cannot write the snapshot cache %s: %s", path, exc)


def load_snapshot(store: str | SpecStore | None = None, *, cache_dir: Path | None = None) -> StoreSnapshot:
    """The store's resolved snapshot: from the cache when the listing is unchanged, else a fresh scan."""
    spec_store = store if isinstance(store, SpecStore) else open_store(store)
    listed = {prefix: spec_store.list_files(prefix) for prefix in PREFIXES}
    signature = _signature(listed)
    path = cache_path(spec_store.url, cache_dir)
    cached = _read(path)
    if cached is not None and cached[0] == signature:
        return cached[1]
    snapshot = resolve(spec_store, listed)
    _write(path, signature, snapshot)
    return snapshot
