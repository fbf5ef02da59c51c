"""The S3 spec store: ``code/`` and ``manual/`` under ``s3://bucket/prefix``.

A listing is one paginated ``ListObjectsV2`` per prefix (each object's ETag is its version); a file is
read with one ``GetObject``, bounded: an object the listing shows over its size limit is not fetched,
and every GET asks for at most the limit plus one byte (``Range``). A manual spec is written with one
conditional ``PutObject`` per object (``If-None-Match: *`` to create, ``If-Match: <etag>`` to replace)
and removed with ``DeleteObject`` (``If-Match`` where the server honours it). A probe, once per process
and store, checks that the server honours those headers; where it does not, writes are refused. Writes go
through :class:`SpecStore`'s ``*_manual`` methods, whose guard refuses anything outside ``manual/``.

The client comes from the amazon provider's AWS hook (``AwsBaseHook``, the S3Hook's base) with ``[dli] aws_conn_id`` when Airflow is
importable and that connection exists (an ``endpoint_url`` in its extra points it at any S3-compatible
server), else from plain boto3 and the standard AWS environment (``AWS_ACCESS_KEY_ID``,
``AWS_ENDPOINT_URL``, profiles...), which is what the CLI uses on a laptop.

Every request has short connect/read timeouts and few retries, and a scan can be given a deadline,
so a parse of the DAG file never outlives the dag-processor's import timeout. Every failure becomes a
:class:`~dli_airflow.errors.StoreUnavailableError` that names the store and the cause (never a
credential).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import secrets
import sys
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from typing import TYPE_CHECKING, Any, NamedTuple

from dli_airflow.errors import ConfigError, DliError, StoreUnavailableError, WorkflowRegistrationError
from dli_airflow.spec import SourceType
from dli_airflow.store import (
    RELEASE_DIR,
    UNCHANGED,
    ManualFile,
    SpecStore,
    StoreFile,
    conflict,
    file_error,
    read_limit,
    too_large,
)

if TYPE_CHECKING:
    from botocore.config import Config

log = logging.getLogger(__name__)

#: Seconds to open a TCP connection to the S3 endpoint.
CONNECT_TIMEOUT = 3.0
#: Seconds to wait for a response once connected.
READ_TIMEOUT = 5.0
#: Attempts per request, the first included (botocore "standard" mode retries 5xx, throttling, timeouts).
MAX_ATTEMPTS = 2
#: Parallel GETs when several objects changed (botocore clients are thread-safe). A first load of a
#: big store is latency-bound on S3 (tens of ms a GET): 32 in flight read 10,000 objects in ~10 s.
MAX_CONCURRENCY = 32

_THROTTLING = {"SlowDown", "Throttling", "ThrottlingException", "RequestLimitExceeded", "TooManyRequestsException"}
_DENIED = {"AccessDenied", "AllAccessDisabled", "AccountProblem", "InvalidAccessKeyId", "SignatureDoesNotMatch",
           "ExpiredToken", "InvalidToken", "403"}
_USERINFO = re.compile(r"//[^/@\s]+@")
#: An ETag no object has: what the probe sends to see a condition refused.
_NO_SUCH_ETAG = '"dli-probe-no-such-etag"'


class Conditional(NamedTuple):
    """Which conditional requests an S3 server honours (found by :meth:`S3Store.conditional_writes`)."""

    create: bool  #: ``PutObject`` with ``If-None-Match: *`` fails when the key exists
    replace: bool  #: ``PutObject`` with ``If-Match: <etag>`` fails when the ETag differs
    delete: bool  #: ``DeleteObject`` with ``If-Match: <etag>`` fails when the ETag differs


#: Probe results per (endpoint, store): a server does not change its mind within one process.
_PROBED: dict[tuple[str, str], Conditional] = {}
_PROBE_LOCK = threading.Lock()


def parse_url(url: str) -> tuple[str, str]:
    """``s3://bucket/a/b`` → ``("bucket", "a/b/")``; the key prefix is empty or ends with ``/``."""
    if not url.startswith("s3://"):
        raise ConfigError(f"{url!r} is not an s3:// URL", hint="write the store as s3://bucket or s3://bucket/prefix")
    bucket, _, prefix = url[len("s3://"):].partition("/")
    prefix = prefix.strip("/")
    if not bucket or "@" in bucket or any(part in ("", ".", "..") for part in prefix.split("/") if prefix):
        raise ConfigError(
            f"{_scrub(url)!r} is not a valid S3 store URL",
            hint="write the store as s3://bucket or s3://bucket/prefix (no credentials, no '..')",
        )
    return bucket, f"{prefix}/" if prefix else ""


def client_config() -> Config:
    """Bounded timeouts and retries: a dead or slow server costs seconds, not the dag-processor's 30 s."""
    from botocore.config import Config

    return Config(
        connect_timeout=CONNECT_TIMEOUT,
        read_timeout=READ_TIMEOUT,
        retries={"total_max_attempts": MAX_ATTEMPTS, "mode": "standard"},
        max_pool_connections=MAX_CONCURRENCY * 2,
    )


def _airflow_connection(conn_id: str) -> Any | None:
    """The Airflow connection ``conn_id`` if this process can read it, else ``None``.

    In a process that has not imported Airflow (the CLI), only an ``AIRFLOW_CONN_<ID>`` variable counts:
    importing Airflow costs seconds, and without a task or dag-processor around it could only look there.
    """
    imported_here = "airflow.sdk" not in sys.modules
    if imported_here and f"AIRFLOW_CONN_{conn_id.upper()}" not in os.environ:
        return None
    try:
        from airflow.sdk import BaseHook
    except ImportError:
        return None
    if imported_here:
        _airflow_logs_to_stderr()
    try:
        return BaseHook.get_connection(conn_id)
    except Exception as exc:  # not found, or no secrets backend reachable from here
        log.debug("dli: no Airflow connection %r here (%s); using the AWS environment", conn_id, type(exc).__name__)
        return None


#: The extra keys of an ``aws`` connection that dli reads itself; a connection with any other (``role_arn``,
#: ``profile_name``, ``assume_role_*``, ``service_config``, ``session_kwargs``, keys in the extra, …) or with
#: a host or schema is made into a client by Airflow's AWS hook.
PLAIN_EXTRA_KEYS = frozenset({"endpoint_url", "region_name", "aws_session_token", "verify", "config_kwargs"})


def plain_connection(conn: Any) -> dict[str, Any] | None:
    """A plain ``aws`` connection as a botocore session needs it (keys or none, token, region, endpoint,
    ``verify``, ``config_kwargs``: what the hook's connection wrapper reads from those fields), or ``None`` when
    it needs the AWS hook. A plain one spares a task's cold start the hook's import (~0.15 s)."""
    if (conn.conn_type or "aws") != "aws" or conn.host or conn.schema:
        return None
    try:
        extra = conn.extra_dejson
    except Exception:  # noqa: BLE001 - the hook reports a malformed extra in its own words
        return None
    if not isinstance(extra, dict) or set(extra) - PLAIN_EXTRA_KEYS:
        return None
    config_kwargs = extra.get("config_kwargs")
    if config_kwargs is not None and not isinstance(config_kwargs, dict):
        return None
    if bool(conn.login) != bool(conn.password):
        return None  # half a key pair: the hook says what is wrong with it
    return {
        "access_key": conn.login or None, "secret_key": conn.password or None,
        "token": extra.get("aws_session_token") or None, "region": extra.get("region_name") or None,
        "endpoint_url": extra.get("endpoint_url") or None, "verify": extra.get("verify"),
        "config_kwargs": config_kwargs or {},
    }


def _airflow_logs_to_stderr() -> None:
    """Airflow, imported by the CLI only to read a connection, logs to stdout: move that to stderr, so
    ``--format json`` output stays parseable."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.StreamHandler) and getattr(handler, "stream", None) is sys.stdout:
            handler.setStream(sys.stderr)
    try:  # Airflow's structlog loggers write through their factory's stream (None: stdout)
        import structlog

        factory = structlog.get_config().get("logger_factory")
        if getattr(factory, "io", sys.stderr) in (None, sys.stdout):
            factory.io = sys.stderr  # type: ignore[union-attr]
    except Exception:  # pragma: no cover - another logging setup: nothing to move
        pass


def make_client(conn_id: str | None = None) -> Any:
    """An S3 client: for an existing Airflow connection, a botocore session of its keys, region and endpoint
    when it is a plain one (:func:`plain_connection`), else the AWS hook's session; without a connection,
    boto3's default chain.

    The connection's own ``config_kwargs`` win over the bounded defaults of :func:`client_config`. The
    hook's session carries the connection's credentials, role, region and ``endpoint_url``; the client is
    made from it directly rather than with the hook's ``get_client_type``, whose user-agent "caller" lookup
    walks ``inspect.stack()`` with source lines (~0.15 s inside a DAG file import, for a header). The
    session parses timestamps as plain strings: a listing's ``LastModified`` is never used, and botocore's
    dateutil parse is a fifth of the time of listing 1,000 keys.
    """
    from dli_airflow import config

    conn_id = conn_id or config.aws_conn_id()
    defaults = client_config()
    conn = _airflow_connection(conn_id)
    plain = plain_connection(conn) if conn is not None else None
    if plain is not None:
        # keys, region and endpoint straight into botocore: no AWS hook import, no boto3
        import botocore.session
        from botocore.config import Config

        session = botocore.session.Session()
        if plain["access_key"]:
            session.set_credentials(plain["access_key"], plain["secret_key"], plain["token"])
        if plain["region"]:
            session.set_config_variable("region", plain["region"])
        _fast_timestamps(session)
        return session.create_client(
            "s3", endpoint_url=plain["endpoint_url"], config=defaults.merge(Config(**plain["config_kwargs"])),
            verify=plain["verify"],
        )
    if conn is not None:
        # the base hook: the S3Hook's own module adds boto3's transfer manager, which reads never use
        from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

        hook = AwsBaseHook(aws_conn_id=conn_id, client_type="s3")
        session = hook.get_session()
        _fast_timestamps(session._session)
        return session.client(
            "s3",
            endpoint_url=hook.conn_config.get_service_endpoint_url(service_name="s3"),
            config=defaults.merge(hook.config),
            verify=hook.verify,
        )
    import boto3

    session = boto3.session.Session()
    _fast_timestamps(session._session)
    return session.client("s3", config=defaults)


def _fast_timestamps(botocore_session: Any) -> None:
    """Responses of clients made from this (private, per-client) session keep timestamps as strings."""
    botocore_session.get_component("response_parser_factory").set_parser_defaults(timestamp_parser=str)


def _scrub(text: str) -> str:
    return _USERINFO.sub("//***@", text)


def _endpoint(url: str) -> str:
    """Scheme, host and port of a request URL: no path, query or user info."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if not parts.hostname:
        return "the endpoint"
    return f"{parts.scheme}://{parts.hostname}{f':{parts.port}' if parts.port else ''}"


def describe_failure(exc: BaseException, *, bucket: str, conn_id: str | None = None) -> str:
    """A short, credential-free cause for a failed S3 request."""
    from botocore import exceptions as bx

    if isinstance(exc, bx.ClientError):
        error = exc.response.get("Error", {}) or {}
        code = str(error.get("Code") or "")
        status = (exc.response.get("ResponseMetadata", {}) or {}).get("HTTPStatusCode")
        operation = getattr(exc, "operation_name", "") or "request"
        if code == "NoSuchBucket":
            return f"the bucket {bucket!r} does not exist (NoSuchBucket)"
        if code in _DENIED or status == 403:
            return f"access denied ({code or 'HTTP 403'} on {operation}): the credentials may not read this bucket"
        if code in _THROTTLING or status in (429, 503):
            return f"the server is throttling requests ({code or status}) on {operation}; retries ran out"
        if isinstance(status, int) and status >= 500:
            return f"the server failed with HTTP {status} ({code or 'no error code'}) on {operation}"
        return f"{code or 'error'} (HTTP {status}) on {operation}"
    if isinstance(exc, (bx.NoCredentialsError, bx.PartialCredentialsError)):
        where = f"the Airflow connection {conn_id!r} or " if conn_id else ""
        return f"no AWS credentials found; set {where}the standard AWS environment (AWS_ACCESS_KEY_ID, ...)"
    if isinstance(exc, bx.ConnectTimeoutError):
        return f"connecting timed out after {CONNECT_TIMEOUT:g} s"
    if isinstance(exc, bx.ReadTimeoutError):
        return f"the server did not answer within {READ_TIMEOUT:g} s"
    if isinstance(exc, bx.EndpointConnectionError):
        return f"cannot connect to {_endpoint(str(exc.kwargs.get('endpoint_url', '')))}"
    if isinstance(exc, (bx.ConnectionClosedError, bx.ConnectionError, bx.HTTPClientError)):
        return f"the connection failed ({type(exc).__name__})"
    if isinstance(exc, bx.BotoCoreError):
        return f"{type(exc).__name__}: {_scrub(str(exc))}"
    return f"{type(exc).__name__}"


class S3Store(SpecStore):
    """A spec store under ``s3://bucket/prefix`` holding ``code/`` and ``manual/``.

    :param url: ``s3://bucket`` or ``s3://bucket/prefix``
    :param client: a boto3 S3 client to use (default: :func:`make_client`, created on first use)
    :param conn_id: the Airflow AWS connection (default ``[dli] aws_conn_id``)
    """

    #: Reads cost a round trip: the catalog reads changed objects ahead, the cache keeps them by ETag.
    remote = True
    max_concurrency = MAX_CONCURRENCY

    def __init__(self, url: str, *, client: Any = None, conn_id: str | None = None) -> None:
        self.bucket, self.prefix = parse_url(url)
        self.url = f"s3://{self.bucket}/{self.prefix}".rstrip("/")
        self.conn_id = conn_id
        self._client = client
        self._deadline: float | None = None
        #: object sizes from the last listing: an object over its limit is refused without a GET
        self._sizes: dict[str, int] = {}

    def __repr__(self) -> str:
        return f"S3Store({self.url!r})"

    # -- plumbing ---------------------------------------------------------------------------------------
    @property
    def client(self) -> Any:
        if self._client is None:
            try:
                self._client = make_client(self.conn_id)
            except StoreUnavailableError:
                raise
            except Exception as exc:
                raise self._unavailable("connect to", exc) from exc
        return self._client

    def set_deadline(self, seconds: float | None) -> None:
        """Refuse to start requests ``seconds`` from now (None: no deadline): bounds a whole scan."""
        self._deadline = None if seconds is None else time.monotonic() + seconds

    def _check_deadline(self) -> None:
        if self._deadline is not None and time.monotonic() > self._deadline:
            raise StoreUnavailableError(
                f"Cannot read the spec store {self.url}: reading it took too long (the server is too slow)"
            )

    def _unavailable(self, action: str, exc: BaseException) -> StoreUnavailableError:
        cause = describe_failure(exc, bucket=self.bucket, conn_id=self.conn_id)
        return StoreUnavailableError(f"Cannot {action} the spec store {self.url}: {cause}")

    def key(self, path: str) -> str:
        """The object key of a store path (``code/a.yaml``)."""
        return self.prefix + path

    # -- reads ------------------------------------------------------------------------------------------
    def list_files(self, prefix: SourceType) -> list[StoreFile]:
        """One paginated ``ListObjectsV2`` of ``<prefix>/``: every object with its ETag as version."""
        self._check_deadline()
        files: list[StoreFile] = []
        index = f"{RELEASE_DIR}release.json"
        if prefix is SourceType.CODE:
            self.release_listed = False
        try:
            paginator = self.client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self.key(f"{prefix.value}/")):
                for obj in page.get("Contents", ()):
                    path = obj["Key"][len(self.prefix):]
                    if path == index:
                        self.release_listed = True
                    parts = path.split("/")
                    # folder markers, hidden files and keys that would not be plain paths are not files
                    if path.endswith("/") or any(p in ("", ".", "..") or p.startswith(".") for p in parts):
                        continue
                    files.append(StoreFile(path, str(obj.get("ETag", "")).strip('"')))
                    self._sizes[path] = int(obj.get("Size") or 0)
                self._check_deadline()
        except StoreUnavailableError:
            raise
        except Exception as exc:
            raise self._unavailable("list", exc) from exc
        return sorted(files, key=lambda f: f.path)

    def read_bytes(self, path: str) -> bytes:
        """One bounded ``GetObject``. A missing or too large object is a problem of that file (DLI-202 for a
        spec, DLI-201 for SQL); anything else, the store being unavailable."""
        got = self._get(path)
        if got is None:  # pragma: no cover - only with missing_ok
            raise file_error(path, self.display(path), "does not exist")
        return got.data

    def read_if_changed(self, path: str, version: str | None) -> ManualFile | None:
        """One ``GetObject`` with ``If-None-Match: <version>``: an unchanged object is a 304, no transfer."""
        return self._get(path, missing_ok=True, unless=version)

    def _get(self, path: str, *, missing_ok: bool = False, unless: str | None = None) -> ManualFile | None:
        """The object's bytes and ETag; at most :func:`~dli_airflow.store.read_limit` + 1 bytes are transferred.

        :param unless: an ETag: if the object still has it, :data:`~dli_airflow.store.UNCHANGED` (HTTP 304)
        """
        self._check_deadline()
        limit = read_limit(path)
        shown = self.display(path)
        size = self._sizes.get(path)
        if size is not None and size > limit:
            raise too_large(path, shown, size)  # the listing said so: not even a GET
        try:
            try:
                # an empty object has no byte 0 (416 InvalidRange): asked for without a range
                ranged: dict[str, str] = {"Range": f"bytes=0-{limit}"} if size != 0 else {}
                if unless:
                    ranged["IfNoneMatch"] = f'"{unless}"'
                response = self.client.get_object(Bucket=self.bucket, Key=self.key(path), **ranged)
            except Exception as exc:
                if unless and _refused(exc, (304,)):
                    return UNCHANGED
                if _error_code(exc) != "InvalidRange":
                    raise
                response = self.client.get_object(Bucket=self.bucket, Key=self.key(path))
            body = response["Body"]
            try:
                total = _object_size(response)
                if total is not None and total > limit:
                    raise too_large(path, shown, total)
                data = body.read(limit + 1)
            finally:
                body.close()
        except DliError:
            raise
        except Exception as exc:
            if _error_code(exc) in ("NoSuchKey", "404"):
                if missing_ok:
                    return None
                raise file_error(path, shown, "does not exist") from None
            raise self._unavailable("read", exc) from exc
        if len(data) > limit:
            raise too_large(path, shown, len(data))
        return ManualFile(data, str(response.get("ETag", "")).strip('"'))

    def read_many(self, paths: Iterable[str], out: dict[str, bytes] | None = None) -> dict[str, bytes]:
        """Read several objects in parallel; missing ones are left out (reading them again says why).

        :param out: filled as reads complete, so what was read before a failure is kept by the caller
        :raises StoreUnavailableError: at the first failure of the store; the other reads are abandoned.
        """
        paths = list(dict.fromkeys(paths))
        out = {} if out is None else out
        if not paths:
            return out

        def one(path: str) -> None:
            try:
                out[path] = self.read_bytes(path)
            except StoreUnavailableError:
                raise
            except DliError:  # this file's own problem: reading it again says why
                pass

        if len(paths) == 1:
            one(paths[0])
            return out
        with ThreadPoolExecutor(max_workers=min(self.max_concurrency, len(paths)), thread_name_prefix="dli-s3") as pool:
            futures = [pool.submit(one, p) for p in paths]
            done, pending = wait(futures, return_when=FIRST_EXCEPTION)
            for future in pending:
                future.cancel()
            for future in done:
                if future.exception() is not None:
                    raise future.exception()  # type: ignore[misc]
        return out

    # -- writes (only through SpecStore's *_manual methods: the manual/ guard) -------------------------
    def conditional_writes(self, where: str = f"{SourceType.MANUAL.value}/") -> Conditional:
        """Which conditional requests this server honours, probed once per process and store.

        :param where: the folder the probe writes in (``manual/``; ``dli spec publish``, whose credentials
            may write only ``code/*``, probes in ``code/.dli/``)

        The probe writes a hidden object ``<where>.dli-probe-<random>`` (listings skip it), tries to create
        it again (``If-None-Match: *``), to overwrite it with an ETag it does not have (``If-Match``) and to
        delete it with that ETag, then removes it. A server that accepts any of those ignores the header.
        """
        probed_key = (str(getattr(getattr(self.client, "meta", None), "endpoint_url", "")), self.url)
        with _PROBE_LOCK:
            known = _PROBED.get(probed_key)
            if known is None:
                known = _PROBED[probed_key] = self._probe(where)
        return known

    def _probe(self, where: str) -> Conditional:
        key = self.key(f"{where}.dli-probe-{secrets.token_hex(8)}")
        put = self.client.put_object
        try:
            etag = put(Bucket=self.bucket, Key=key, Body=b"dli probe", IfNoneMatch="*")["ETag"]
        except Exception as exc:
            if _refused(exc, (400, 501)):  # the header itself is refused: not honoured
                return Conditional(False, False, False)
            raise self._unavailable("probe conditional writes on", exc) from exc
        gone = False
        try:
            create = self._refuses(lambda: put(Bucket=self.bucket, Key=key, Body=b"dli probe", IfNoneMatch="*"))
            replaced: list[str] = []
            replace = self._refuses(
                lambda: replaced.append(put(Bucket=self.bucket, Key=key, Body=b"x", IfMatch=_NO_SUCH_ETAG)["ETag"])
            )
            etag = replaced[-1] if replaced else etag
            delete = self._refuses(lambda: self.client.delete_object(Bucket=self.bucket, Key=key, IfMatch=_NO_SUCH_ETAG))
            gone = not delete
        finally:
            if not gone:  # conditional too, so a bucket policy that enforces conditional deletes allows it
                with contextlib.suppress(Exception):
                    self.client.delete_object(Bucket=self.bucket, Key=key, IfMatch=etag)
        log.debug("dli: %s honours conditional create=%s replace=%s delete=%s", self.url, create, replace, delete)
        return Conditional(create, replace, delete)

    def _refuses(self, call: Callable[[], object]) -> bool:
        """Whether the server refuses ``call`` as a failed precondition (412, or 409 for a conflict)."""
        try:
            call()
        except Exception as exc:
            if _refused(exc, (412, 409)):
                return True
            if _refused(exc, (400, 501)):
                return False
            raise self._unavailable("probe conditional writes on", exc) from exc
        return False

    def _require(self, what: str, honoured: bool) -> None:
        if not honoured:
            raise WorkflowRegistrationError(
                f"The S3 server of {self.url} ignores conditional writes ({what}), so two registrations at once "
                "could overwrite each other; dli refuses to write here",
                hint="use a server that honours If-None-Match and If-Match on PutObject (AWS S3, MinIO, "
                "Cloudflare R2, moto 5.2, ...), or deploy the spec through code/ instead",
            )

    def _write(self, action: str, path: str, call: Callable[[], object], lost: str) -> None:
        try:
            call()
        except DliError:
            raise
        except Exception as exc:
            if _refused(exc, (412, 409)) or _error_code(exc) in ("NoSuchKey", "404"):
                raise conflict(self.display(path), lost) from None
            raise self._unavailable(f"{action} {path} {'from' if action == 'delete' else 'to'}", exc) from exc

    def _read_current(self, path: str) -> ManualFile | None:
        return self._get(path, missing_ok=True)

    def _create(self, path: str, data: bytes) -> None:
        self._require("If-None-Match: * on PutObject", self.conditional_writes().create)
        self._write("write", path, lambda: self.client.put_object(
            Bucket=self.bucket, Key=self.key(path), Body=data, ContentType=_content_type(path), IfNoneMatch="*",
        ), "already exists")

    def _replace(self, path: str, data: bytes, version: str) -> None:
        self._require("If-Match on PutObject", self.conditional_writes().replace)
        self._write("write", path, lambda: self.client.put_object(
            Bucket=self.bucket, Key=self.key(path), Body=data, ContentType=_content_type(path), IfMatch=f'"{version}"',
        ), "changed or was removed since it was read")

    def _delete(self, path: str, version: str | None) -> None:
        key = self.key(path)
        if version is not None and self.conditional_writes().delete:
            try:
                self._write("delete", path, lambda: self.client.delete_object(
                    Bucket=self.bucket, Key=key, IfMatch=f'"{version}"'
                ), "changed since it was read")
            except WorkflowRegistrationError:
                if self._get(path, missing_ok=True) is None:
                    return  # already gone (404 on a conditional delete): what was asked for
                raise
            return
        if version is not None:
            # no conditional delete on this server: check the version, then delete (a narrow race)
            current = self._get(path, missing_ok=True)
            if current is None:
                return
            if current.version != version:
                raise conflict(self.display(path), "changed since it was read")
        self._write("delete", path, lambda: self.client.delete_object(Bucket=self.bucket, Key=key), "was removed")


def _content_type(path: str) -> str:
    return "application/yaml" if path.endswith((".yaml", ".yml")) else "text/plain; charset=utf-8"


def _error_code(exc: BaseException) -> str:
    response = getattr(exc, "response", None)
    return str(((response or {}).get("Error") or {}).get("Code") or "") if isinstance(response, dict) else ""


def _refused(exc: BaseException, statuses: tuple[int, ...]) -> bool:
    """Whether ``exc`` is an S3 error answer with one of ``statuses``."""
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return False
    status = (response.get("ResponseMetadata") or {}).get("HTTPStatusCode")
    return status in statuses


def _object_size(response: dict[str, Any]) -> int | None:
    """The whole object's size from a (ranged) GET: ``Content-Range: bytes 0-N/TOTAL``, else ``Content-Length``."""
    content_range = str(response.get("ContentRange") or "")
    if "/" in content_range:
        total = content_range.rsplit("/", 1)[1]
        return int(total) if total.isdigit() else None
    length = response.get("ContentLength")
    return int(length) if isinstance(length, int) else None


__all__ = [
    "PLAIN_EXTRA_KEYS", "Conditional", "S3Store", "client_config", "describe_failure", "make_client", "parse_url",
    "plain_connection",
]
