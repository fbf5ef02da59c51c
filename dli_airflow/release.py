"""Releases of ``code/``: the index ``dli spec publish`` writes, and how every reader uses it.

A publish leaves ``code/`` holding the release's plain files (what users browse, what a reader without
this module lists) and, under the hidden ``code/.dli/``:

- ``release.json``, the **index**: every file of the release with its SHA-256 and size, each dataset's
  files (spec, SQL), and the bundle's key. Written last, in one ``PutObject`` (or one rename): it is the
  switch from one release to the next.
- ``bundles/<sha256>.json.gz``, the **bundle**: every file of the release in one content-addressed
  object (its name is the hash of its bytes, so it never changes once written). Publish keeps the
  bundles of the last few releases and removes older ones.

Readers prefer the index (:func:`open_release`). An unchanged store costs one conditional GET of it
(HTTP 304) plus the ``manual/`` listing; a reader with a cold cache gets the whole release from the
bundle in one GET; a worker building one DAG reads the index and that dataset's files. Every file is
checked against the hash the index names: a plain file already overwritten by the next publish (which
uploads before it switches) is read from the bundle instead, so a half-uploaded publish is never seen.
A store without an index (written by hand) is read by listing, exactly as before.

Nothing here writes: :mod:`dli_airflow.publish` is the one writer of ``code/``.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import re
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from dli_airflow.errors import DliError, StoreUnavailableError
from dli_airflow.spec import SourceType
from dli_airflow.store import RELEASE_DIR, UNCHANGED, ManualFile, SpecStore, StoreFile, file_error

log = logging.getLogger(__name__)

#: The release index of a store (relative to the store root).
INDEX_PATH = f"{RELEASE_DIR}release.json"
#: Where bundles live: ``code/.dli/bundles/<sha256 of the bundle>.json.gz``.
BUNDLE_DIR = f"{RELEASE_DIR}bundles/"
#: The index format this version writes and reads.
FORMAT = 1
#: A reader needing more than this many files of a release reads the bundle (one GET) instead.
BUNDLE_THRESHOLD = 4
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_BUNDLE = re.compile(rf"^{re.escape(BUNDLE_DIR)}([0-9a-f]{{64}})\.json\.gz$")


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


#: a plain path under ``code/``: segments that are not empty, do not start with ``.`` (so no ``.``, ``..``
#: or ``code/.dli/``) and hold no backslash. One regex, not a split per path: an index of 10,000 datasets
#: names ~15,000 paths, and every reader of it checks them all.
_RELEASE_PATH = re.compile(r"code(?:/[^/\\.][^/\\]*)+")


def release_path(path: str) -> bool:
    """Whether ``path`` may be a file of a release: a plain path under ``code/``, outside ``code/.dli/``."""
    return _RELEASE_PATH.fullmatch(path) is not None and not path.startswith(RELEASE_DIR)


def bundle_path(digest: str) -> str:
    return f"{BUNDLE_DIR}{digest}.json.gz"


def is_bundle_path(path: str) -> bool:
    return _BUNDLE.match(path) is not None


class FileRef(BaseModel):
    """One file of a release: its content hash and size."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    sha256: str = Field(pattern=_SHA256.pattern)
    size: int = Field(ge=0)


class ReleaseIndex(BaseModel):
    """The index of one release of ``code/`` (``code/.dli/release.json``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    format: int = FORMAT
    #: the release's id: a hash of its files and their hashes (the same files make the same id)
    release: str
    published_at: str
    #: what was published, as CI names it (a commit, a pipeline); free text
    source: str | None = None
    files: dict[str, FileRef]
    #: dataset name → its files in the release (the spec first, then its SQL file if it has one)
    datasets: dict[str, list[str]]
    bundle: str
    #: bundles of earlier releases that publish keeps (a reader still on one of them can finish)
    kept: list[str] = Field(default_factory=list)

    @field_validator("format")
    @classmethod
    def _known_format(cls, value: int) -> int:
        if value != FORMAT:
            raise ValueError(f"format {value} is not one this dli-airflow reads ({FORMAT}); upgrade dli-airflow")
        return value

    @field_validator("files")
    @classmethod
    def _plain_paths(cls, value: dict[str, FileRef]) -> dict[str, FileRef]:
        bad = [p for p in value if not release_path(p)]
        if bad:
            raise ValueError(f"{bad[0]!r} is not a plain path under code/")
        return value

    @field_validator("bundle")
    @classmethod
    def _bundle_key(cls, value: str) -> str:
        if not _BUNDLE.match(value):
            raise ValueError(f"{value!r} is not a bundle key ({BUNDLE_DIR}<sha256>.json.gz)")
        return value

    def model_post_init(self, context: Any) -> None:
        for name, paths in self.datasets.items():
            missing = [p for p in paths if p not in self.files]
            if not paths or missing:
                raise ValueError(f"dataset {name!r} names files the release does not hold: {missing or '(none)'}")

    @staticmethod
    def release_id(files: Mapping[str, FileRef]) -> str:
        """The id of a release holding ``files``: the same files and contents give the same id."""
        canonical = json.dumps({p: files[p].sha256 for p in sorted(files)}, separators=(",", ":"))
        return sha256(canonical.encode())[:16]

    def to_bytes(self) -> bytes:
        return (self.model_dump_json(indent=1) + "\n").encode()


@dataclass(frozen=True)
class Release:
    """A release index as a reader keeps it (plain dicts: unpickled on every parse)."""

    id: str
    version: str  #: the index object's version (ETag, or SHA-256 locally): what the next GET sends
    files: dict[str, tuple[str, int]]  #: path → (sha256, size)
    datasets: dict[str, tuple[str, ...]]
    bundle: str
    published_at: str = ""
    source: str | None = None
    kept: tuple[str, ...] = ()

    @classmethod
    def parse(cls, data: bytes, version: str, shown: str) -> Release:
        """Validate the raw index.

        :raises StoreUnavailableError: the index is not a valid one (the reader serves its last good copy)
        """
        try:
            index = ReleaseIndex.model_validate_json(data)
        except ValidationError as exc:
            first = exc.errors(include_url=False)[0]
            where = ".".join(str(p) for p in first.get("loc", ())) or "(the document)"
            raise StoreUnavailableError(
                f"The release index {shown} is not valid: {where}: {first.get('msg')}",
                hint="publish the release again with `dli spec publish` (or remove the index to read the "
                "store by listing)",
            ) from None
        return cls(
            id=index.release,
            version=version,
            files={p: (ref.sha256, ref.size) for p, ref in index.files.items()},
            datasets={n: tuple(paths) for n, paths in index.datasets.items()},
            bundle=index.bundle,
            published_at=index.published_at,
            source=index.source,
            kept=tuple(index.kept),
        )

    def version_of(self, path: str) -> str:
        """A file's version in listings: its hash (so a reader's cache keys do not depend on the store)."""
        return f"sha256:{self.files[path][0]}"


def encode_bundle(files: Mapping[str, bytes]) -> bytes:
    """One gzip'd JSON document holding every file (all are UTF-8: publish validated them), reproducibly."""
    document = {"format": FORMAT, "files": {p: files[p].decode("utf-8") for p in sorted(files)}}
    return gzip.compress(json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode(), mtime=0)


def decode_bundle(data: bytes, release: Release, shown: str) -> dict[str, bytes]:
    """The files of a bundle, each checked against the index; never more than the index's total size.

    :raises StoreUnavailableError: the bundle is not the one the index names, or is damaged
    """
    digest = _BUNDLE.match(release.bundle)
    if digest is None or sha256(data) != digest.group(1):
        raise _incomplete(release, shown, f"the bundle {release.bundle} does not have the content its name says")
    budget = sum(size for _, size in release.files.values()) * 2 + 1024 * 1024  # JSON escaping at most doubles
    try:
        inflater = zlib.decompressobj(wbits=31)
        raw = inflater.decompress(data, budget)
        if inflater.unconsumed_tail:
            raise ValueError("it inflates to more than the release's files")
        document = json.loads(raw)
        texts = document["files"]
        if not isinstance(texts, dict):
            raise ValueError("no files")
    except (ValueError, KeyError, TypeError, zlib.error) as exc:
        raise _incomplete(release, shown, f"the bundle {release.bundle} is damaged ({exc})") from None
    out: dict[str, bytes] = {}
    for path, (digest_hex, _) in release.files.items():
        text = texts.get(path)
        data_i = text.encode("utf-8") if isinstance(text, str) else None
        if data_i is None or sha256(data_i) != digest_hex:
            raise _incomplete(release, shown, f"the bundle {release.bundle} does not hold {path} as the index names it")
        out[path] = data_i
    return out


def _incomplete(release: Release, shown: str, why: str) -> StoreUnavailableError:
    return StoreUnavailableError(
        f"The release {release.id} of {shown} cannot be read: {why}",
        hint="publish again with `dli spec publish`; until then the last good copy of the store is served",
    )


def read_index(store: SpecStore, cached: Release | None = None) -> Release | None:
    """The store's release index: one (conditional, when ``cached``) read.

    :returns: the release (``cached`` itself when unchanged), or ``None`` when the store has no index
    :raises StoreUnavailableError: the store cannot be read, or the index is not valid
    """
    try:
        got = store.read_if_changed(INDEX_PATH, cached.version if cached else None)
    except StoreUnavailableError:
        raise
    except DliError as exc:  # e.g. not a regular file
        raise StoreUnavailableError(f"The release index {store.display(INDEX_PATH)} cannot be read: {exc.message}") from exc
    if got is None:
        return None
    if got is UNCHANGED and cached is not None:
        return cached
    return Release.parse(got.data, got.version, store.display(INDEX_PATH))


class ReleaseStore(SpecStore):
    """A store as its release index describes it: ``code/`` is the release's files, ``manual/`` is listed.

    Files are read from the plain objects when few are needed (each checked against the index's hash),
    from the bundle when many are or when a plain object is not the release's version any more.

    :param only: a dataset name: ``code/`` holds only that dataset's files (a worker building one DAG);
        when the release holds it, ``manual/`` is not even listed (code wins)
    """

    def __init__(self, store: SpecStore, release: Release, *, only: str | None = None) -> None:
        self.url = store.url
        self.store = store
        self.release = release
        self.remote = store.remote  # type: ignore[misc]  # the wrapped store's capability
        self._bundle: dict[str, bytes] | None = None
        self.only = only
        self._paths = set(release.datasets.get(only, ())) if only is not None else set(release.files)
        #: requests this reader made of the bundle (0 or 1): for tests and benchmarks
        self.bundle_reads = 0

    def __repr__(self) -> str:
        return f"ReleaseStore({self.store!r}, release={self.release.id})"

    @property
    def covers_only(self) -> bool:
        """Whether the release holds the one dataset asked for (then nothing else need be read)."""
        return self.only is not None and self.only in self.release.datasets

    def list_files(self, prefix: SourceType) -> list[StoreFile]:
        if prefix is SourceType.CODE:
            return [StoreFile(p, self.release.version_of(p)) for p in sorted(self._paths)]
        if self.covers_only:
            return []
        return self.store.list_files(prefix)

    def display(self, path: str) -> str:
        return self.store.display(path)

    def set_deadline(self, seconds: float | None) -> None:
        self.store.set_deadline(seconds)

    def _from_bundle(self) -> dict[str, bytes]:
        if self._bundle is None:
            shown = self.store.display(self.release.bundle)
            try:
                raw = self.store.read_bytes(self.release.bundle)
            except StoreUnavailableError:
                raise
            except DliError as exc:
                raise _incomplete(self.release, self.url, f"the bundle {shown}: {exc.message}") from exc
            finally:
                self.bundle_reads += 1
            self._bundle = decode_bundle(raw, self.release, self.url)
        return self._bundle

    def _checked(self, path: str, data: bytes) -> bytes:
        """``data`` if it is the release's version of ``path``, else the bundle's copy."""
        if sha256(data) == self.release.files[path][0]:
            return data
        log.info("dli: %s is not the version release %s names (a publish in progress?): using the bundle",
                 self.display(path), self.release.id)
        return self._from_bundle()[path]

    def read_bytes(self, path: str) -> bytes:
        if path in self.release.files:
            if self._bundle is not None:
                return self._bundle[path]
            try:
                data = self.store.read_bytes(path)
            except StoreUnavailableError:
                raise
            except DliError:  # removed by a newer publish: the bundle still has it
                return self._from_bundle()[path]
            return self._checked(path, data)
        if path.startswith(f"{SourceType.CODE.value}/"):
            raise file_error(path, self.display(path), f"does not exist in release {self.release.id}")
        return self.store.read_bytes(path)

    def read_many(self, paths: Iterable[str], out: dict[str, bytes] | None = None) -> dict[str, bytes]:
        out = {} if out is None else out
        wanted = list(dict.fromkeys(paths))
        code = [p for p in wanted if p in self.release.files]
        rest = [p for p in wanted if p not in self.release.files]
        if len(code) > BUNDLE_THRESHOLD or self._bundle is not None:
            bundle = self._from_bundle()
            out.update({p: bundle[p] for p in code})
        elif code:
            got: dict[str, bytes] = {}
            self.store.read_many(code, out=got)
            for path in code:
                out[path] = self._checked(path, got[path]) if path in got else self._from_bundle()[path]
        if rest:
            self.store.read_many(rest, out=out)
        return out

    def read_if_changed(self, path: str, version: str | None) -> ManualFile | None:
        return self.store.read_if_changed(path, version)


@dataclass
class Opened:
    """What :func:`open_release` found: the store to read (a :class:`ReleaseStore` when there is an index)."""

    store: SpecStore
    release: Release | None


#: What a reader keeps when the store had no index last time it looked (see :func:`open_release`).
ABSENT = "absent"


def open_release(
    store: SpecStore, cached: Release | str | None = None, *, only: str | None = None
) -> Opened:
    """The store as readers should see it: through its release index when it has one.

    :param cached: the index this reader read last time (sent as ``If-None-Match``); :data:`ABSENT` when the
        store had none then: nothing is asked (a store without an index costs what it did before releases),
        and the caller's listing of ``code/`` tells whether one appeared (:attr:`SpecStore.release_listed`)
    :param only: build one dataset (see :class:`ReleaseStore`)
    """
    if isinstance(store, ReleaseStore):
        return Opened(store, store.release)
    if cached == ABSENT:
        return Opened(store, None)
    release = read_index(store, cached if isinstance(cached, Release) else None)
    if release is None:
        return Opened(store, None)
    return Opened(ReleaseStore(store, release, only=only), release)


__all__ = [
    "ABSENT",
    "BUNDLE_DIR",
    "FORMAT",
    "INDEX_PATH",
    "FileRef",
    "Opened",
    "Release",
    "ReleaseIndex",
    "ReleaseStore",
    "bundle_path",
    "decode_bundle",
    "is_bundle_path",
    "encode_bundle",
    "open_release",
    "read_index",
    "release_path",
    "sha256",
]
