"""The S3 spec store: ``code/`` and ``manual/`` under ``s3://bucket/prefix``.

A listing is one paginated ``ListObjectsV2`` per prefix (each object's ETag is its version); a file is
read with one ``GetObject``; a manual spec is written with one ``PutObject`` per object and removed
with ``DeleteObject``. Writes go through :meth:`SpecStore.put_manual` / :meth:`SpecStore.delete_manual`,
whose guard refuses anything outside ``manual/``.

The client comes from the amazon provider's ``S3Hook`` with ``[dli] aws_conn_id`` when Airflow is
importable and that connection exists (an ``endpoint_url`` in its extra points it at any S3-compatible
server), else from plain boto3 and the standard AWS environment (``AWS_ACCESS_KEY_ID``,
``AWS_ENDPOINT_URL``, profiles...), which is what the CLI uses on a laptop.

Every request has short connect/read timeouts and few retries, and a scan can be given a deadline,
so a parse of the DAG file never outlives the dag-processor's import timeout. Every failure becomes a
:class:`~dli_airflow.errors.StoreUnavailableError` that names the store and the cause (never a
credential).
"""

from __future__ import annotations

import logging
import os
import re
import sys
import time
from collections.abc import Iterable
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from typing import TYPE_CHECKING, Any

from dli_airflow.errors import ConfigError, SpecValidationError, StoreUnavailableError
from dli_airflow.spec import SourceType
from dli_airflow.store import SpecStore, StoreFile

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


def _airflow_connection_exists(conn_id: str) -> bool:
    """Whether ``conn_id`` is an Airflow connection that this process can read.

    In a process that has not imported Airflow (the CLI), only an ``AIRFLOW_CONN_<ID>`` variable counts:
    importing Airflow costs seconds, and without a task or dag-processor around it could only look there.
    """
    imported_here = "airflow.sdk" not in sys.modules
    if imported_here and f"AIRFLOW_CONN_{conn_id.upper()}" not in os.environ:
        return False
    try:
        from airflow.sdk import BaseHook
    except ImportError:
        return False
    if imported_here:
        _airflow_logs_to_stderr()
    try:
        BaseHook.get_connection(conn_id)
    except Exception as exc:  # not found, or no secrets backend reachable from here
        log.debug("dli: no Airflow connection %r here (%s); using the AWS environment", conn_id, type(exc).__name__)
        return False
    return True


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
    """An S3 client: from the ``S3Hook``'s session for an existing Airflow connection, else boto3's default chain.

    The connection's own ``config_kwargs`` win over the bounded defaults of :func:`client_config`. The
    hook's session carries the connection's credentials, role, region and ``endpoint_url``; the client is
    made from it directly rather than with ``S3Hook.get_client_type``, whose user-agent "caller" lookup
    walks ``inspect.stack()`` with source lines (~0.15 s inside a DAG file import, for a header). The
    session parses timestamps as plain strings: a listing's ``LastModified`` is never used, and botocore's
    dateutil parse is a fifth of the time of listing 1,000 keys.
    """
    from dli_airflow import config

    conn_id = conn_id or config.aws_conn_id()
    defaults = client_config()
    if _airflow_connection_exists(conn_id):
        from airflow.providers.amazon.aws.hooks.s3 import S3Hook

        hook = S3Hook(aws_conn_id=conn_id)
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
        try:
            paginator = self.client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self.key(f"{prefix.value}/")):
                for obj in page.get("Contents", ()):
                    path = obj["Key"][len(self.prefix):]
                    parts = path.split("/")
                    # folder markers, hidden files and keys that would not be plain paths are not files
                    if path.endswith("/") or any(p in ("", ".", "..") or p.startswith(".") for p in parts):
                        continue
                    files.append(StoreFile(path, str(obj.get("ETag", "")).strip('"')))
                self._check_deadline()
        except StoreUnavailableError:
            raise
        except Exception as exc:
            raise self._unavailable("list", exc) from exc
        return sorted(files, key=lambda f: f.path)

    def read_bytes(self, path: str) -> bytes:
        """One ``GetObject``. A missing object is a spec problem; anything else, the store being unavailable."""
        self._check_deadline()
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=self.key(path))
            return response["Body"].read()
        except StoreUnavailableError:
            raise
        except Exception as exc:
            from botocore.exceptions import ClientError

            if isinstance(exc, ClientError) and exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                raise SpecValidationError(f"{self.display(path)} does not exist") from None
            raise self._unavailable("read", exc) from exc

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
            except SpecValidationError:
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

    # -- writes (only through put_manual / delete_manual) ----------------------------------------------
    def _put(self, path: str, data: bytes) -> None:
        content_type = "application/yaml" if path.endswith((".yaml", ".yml")) else "text/plain; charset=utf-8"
        try:
            self.client.put_object(Bucket=self.bucket, Key=self.key(path), Body=data, ContentType=content_type)
        except StoreUnavailableError:
            raise
        except Exception as exc:
            raise self._unavailable(f"write {path} to", exc) from exc

    def _delete(self, path: str) -> None:
        try:
            self.client.delete_object(Bucket=self.bucket, Key=self.key(path))
        except StoreUnavailableError:
            raise
        except Exception as exc:
            raise self._unavailable(f"delete {path} from", exc) from exc


__all__ = ["S3Store", "client_config", "describe_failure", "make_client", "parse_url"]
