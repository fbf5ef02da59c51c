"""Servers for the S3 store and notification tests, all on 127.0.0.1 and free ports.

- :class:`MotoServer`: moto's standalone S3 server (``moto_server``, from ``moto[server]``) in a subprocess;
- :class:`S3Proxy`: a recording, fault-injecting HTTP proxy in front of it. Requests are counted here, at
  the server side of the client, never with a botocore stub (with their conditional and ``Range`` headers
  and the bytes answered); on demand it answers an HTTP error (500, 403, 503 SlowDown...), closes the
  connection without answering, holds the request past the client's read timeout, or plays a server that
  ignores conditional writes (drops ``If-None-Match`` / ``If-Match`` before forwarding);
- :class:`HookReceiver`: records webhook, Slack webhook and Slack API calls (``POST``) and answers what
  each expects.

Fixtures (import them into a test module: ``from s3_support import moto_server, s3_proxy, ...``):
``moto_server`` (module), ``s3_proxy`` (a fresh proxy per test, in front of ``moto_server``),
``s3_bucket`` (a new bucket per test), ``hook_receiver``, ``s3_env`` (AWS environment and
``AIRFLOW_CONN_AWS_DEFAULT`` pointing at the proxy, a fresh ``[dli] cache_dir``).
"""

from __future__ import annotations

import http.client
import itertools
import json
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

HOST = "127.0.0.1"
HEALTH_DEADLINE = 20.0
ACCESS_KEY = "testing"
SECRET_KEY = "testing-secret"
REGION = "us-east-1"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _wait_port(port: int, deadline: float, what: str, proc: subprocess.Popen[bytes] | None = None) -> None:
    last: Exception | None = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"{what} exited with {proc.returncode}")
        try:
            conn = http.client.HTTPConnection(HOST, port, timeout=1)
            conn.request("GET", "/")
            conn.getresponse().read()
            conn.close()
            return
        except OSError as exc:
            last = exc
            time.sleep(0.05)
    raise AssertionError(f"{what} on port {port} did not answer within {HEALTH_DEADLINE:.0f}s: {last}")


# --------------------------------------------------------------------------- moto


class MotoServer:
    """``moto_server -H 127.0.0.1 -p PORT`` in its own process group; its state lives as long as it runs."""

    def __init__(self, log_dir: Path) -> None:
        self.port = free_port()
        self.log = log_dir / f"moto-{self.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def start(self) -> MotoServer:
        exe = Path(sys.executable).with_name("moto_server")
        cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "moto.server"]
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [*cmd, "-H", HOST, "-p", str(self.port)],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
            )
        try:
            _wait_port(self.port, time.monotonic() + HEALTH_DEADLINE, "moto_server", self.proc)
        except AssertionError:
            self.stop()
            raise AssertionError(f"moto_server did not start; its log:\n{self.tail()}") from None
        return self

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.proc = None

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def client(self) -> Any:
        """A plain boto3 client straight to moto (test set-up: no proxy, no counting)."""
        import boto3

        return boto3.client(
            "s3", endpoint_url=self.url, aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY,
            region_name=REGION,
        )


# --------------------------------------------------------------------------- the proxy


#: Request headers the proxy records (lower case).
RECORDED_HEADERS = ("range", "if-none-match", "if-match")


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def is_list(self) -> bool:
        return self.method == "GET" and "list-type" in self.query

    @property
    def is_get_object(self) -> bool:
        return self.method == "GET" and not self.query and self.path.count("/") >= 2

    @property
    def key(self) -> str:
        """The object key of a path-style request (``/bucket/key``)."""
        return self.path.split("/", 2)[2] if self.path.count("/") >= 2 else ""

    @property
    def prefix(self) -> str | None:
        return (self.query.get("prefix") or [None])[0]


@dataclass
class Fault:
    """What the proxy does instead of forwarding: ``status`` (an HTTP error with an S3 error body),
    ``close`` (drop the connection without answering) or ``hang`` (hold the request ``seconds``)."""

    kind: str
    status: int = 500
    code: str = "InternalError"
    seconds: float = 0.0
    remaining: int | None = None  # None: every request
    match: str | None = None  # only requests whose path contains this


class S3Proxy:
    """A recording, fault-injecting HTTP/1.1 proxy in front of an S3 server."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.requests: list[Request] = []
        self.faulted: list[Request] = []
        #: (request, bytes of the response body) of every forwarded request
        self.answered: list[tuple[Request, int]] = []
        #: methods whose conditional headers are dropped: a server that ignores them
        self.ignoring: set[str] = set()
        self._fault: Fault | None = None
        self._lock = threading.Lock()
        self._conditional = threading.Lock()
        self._release = threading.Event()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                parts = urlsplit(self.path)
                recorded = {k: v for k, v in ((h, self.headers.get(h)) for h in RECORDED_HEADERS) if v is not None}
                request = Request(self.command, parts.path, parse_qs(parts.query, keep_blank_values=True), recorded)
                fault = proxy._take_fault(request)
                if fault is None:
                    with proxy._lock:
                        proxy.requests.append(request)
                    if self.command in ("PUT", "POST", "DELETE") and (
                        self.headers.get("If-None-Match") or self.headers.get("If-Match")
                    ):
                        # S3 checks a conditional write's precondition and stores the object atomically;
                        # moto checks, then stores, so two racing writers can both pass under load. The proxy
                        # makes the stand-in as atomic as S3 (one conditional write at a time).
                        with proxy._conditional:
                            self._forward(body, request)
                        return
                    self._forward(body, request)
                    return
                with proxy._lock:
                    proxy.faulted.append(request)
                if fault.kind == "close":
                    self.close_connection = True
                    try:
                        self.connection.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
                    return
                if fault.kind == "hang":
                    proxy._release.wait(fault.seconds)
                    self.close_connection = True
                    return
                payload = (
                    f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{fault.code}</Code>'
                    f"<Message>injected by the test proxy</Message><RequestId>{uuid.uuid4()}</RequestId></Error>"
                ).encode()
                self.send_response(fault.status)
                self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(payload)

            def _forward(self, body: bytes, request: Request) -> None:
                # one upstream connection per client connection (keep-alive on both sides)
                upstream = getattr(self, "_upstream", None)
                if upstream is None:
                    upstream = self._upstream = http.client.HTTPConnection(HOST, proxy.upstream_port, timeout=30)
                dropped = {"connection", "keep-alive"}
                if self.command in proxy.ignoring:
                    dropped |= {"if-none-match", "if-match"}
                headers = {k: v for k, v in self.headers.items() if k.lower() not in dropped}
                try:
                    upstream.request(self.command, self.path, body=body or None, headers=headers)
                    response = upstream.getresponse()
                    data = response.read()
                except (OSError, http.client.HTTPException):
                    upstream.close()
                    self._upstream = None
                    self.close_connection = True
                    return
                self.send_response(response.status, response.reason)
                for key, value in response.getheaders():
                    if key.lower() not in ("transfer-encoding", "connection", "content-length", "date", "server"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                with proxy._lock:
                    proxy.answered.append((request, len(data)))
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle

            def finish(self) -> None:
                upstream = getattr(self, "_upstream", None)
                if upstream is not None:
                    upstream.close()
                super().finish()

        self.server = ThreadingHTTPServer((HOST, 0), Handler)
        self.server.daemon_threads = True
        self.port = int(self.server.server_address[1])
        self._thread = threading.Thread(target=self.server.serve_forever, name="s3-proxy", daemon=True)

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def start(self) -> S3Proxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._release.set()
        self.server.shutdown()
        self.server.server_close()

    # -- faults -----------------------------------------------------------------------------------------
    def fail(self, status: int = 500, code: str | None = None, *, times: int | None = None,
             match: str | None = None) -> None:
        """Answer ``status`` with an S3 error body (``code``) to every request, or the next ``times`` ones."""
        default = {403: "AccessDenied", 503: "SlowDown", 404: "NoSuchBucket"}.get(status, "InternalError")
        self._set(Fault("status", status=status, code=code or default, remaining=times, match=match))

    def close_connections(self, *, times: int | None = None, match: str | None = None) -> None:
        """Close the connection without answering."""
        self._set(Fault("close", remaining=times, match=match))

    def hang(self, seconds: float = 60.0, *, times: int | None = None) -> None:
        """Hold requests without answering for ``seconds`` (past the client's read timeout)."""
        self._release.clear()
        self._set(Fault("hang", seconds=seconds, remaining=times))

    def heal(self) -> None:
        """Forward everything again."""
        self._release.set()
        self._set(None)
        self.ignoring.clear()

    def ignore_conditions(self, *methods: str) -> None:
        """Play a server that ignores ``If-None-Match`` / ``If-Match`` on these methods (default PUT and DELETE)."""
        self.ignoring = set(methods or ("PUT", "DELETE"))

    def _set(self, fault: Fault | None) -> None:
        with self._lock:
            self._fault = fault

    def _take_fault(self, request: Request) -> Fault | None:
        with self._lock:
            fault = self._fault
            if fault is None or (fault.match is not None and fault.match not in request.path):
                return None
            if fault.remaining is not None:
                fault.remaining -= 1
                if fault.remaining <= 0:
                    self._fault = None
            return fault

    # -- counting ---------------------------------------------------------------------------------------
    def reset(self) -> None:
        with self._lock:
            self.requests.clear()
            self.faulted.clear()
            self.answered.clear()

    def bytes_answered(self, key_part: str) -> int:
        """Bytes of the response bodies to requests whose path contains ``key_part``."""
        with self._lock:
            return sum(n for r, n in self.answered if key_part in r.path)

    def lists(self) -> list[Request]:
        return [r for r in self.requests if r.is_list]

    def gets(self) -> list[Request]:
        return [r for r in self.requests if r.is_get_object]

    def writes(self) -> list[Request]:
        return [r for r in self.requests if r.method in ("PUT", "POST", "DELETE")]

    def summary(self) -> str:
        return "\n".join(f"  {r.method} {r.path} {r.query}" for r in self.requests[-60:])


# --------------------------------------------------------------------------- notifications


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float = field(default_factory=time.time)

    def json(self) -> Any:
        if self.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
            return {k: v[0] for k, v in parse_qs(self.body.decode()).items()}
        return json.loads(self.body or b"null")


class HookReceiver:
    """Records every ``POST``; answers as a webhook (``ok``), a Slack webhook (``ok``) or the Slack Web API
    (``{"ok": true}`` for a path ending in ``chat.postMessage``). ``status`` makes it fail on purpose."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self.status = 200
        self._cond = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                item = Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                with receiver._cond:
                    receiver.received.append(item)
                    receiver._cond.notify_all()
                if self.path.endswith("chat.postMessage"):
                    payload, ctype = json.dumps({"ok": True, "channel": "C1", "ts": "1.0"}).encode(), "application/json"
                else:
                    payload, ctype = b"ok", "text/plain"
                self.send_response(receiver.status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

        self.server = ThreadingHTTPServer((HOST, 0), Handler)
        self.server.daemon_threads = True
        self.port = int(self.server.server_address[1])
        self._thread = threading.Thread(target=self.server.serve_forever, name="hook-receiver", daemon=True)

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def start(self) -> HookReceiver:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def on(self, path: str) -> list[Received]:
        with self._cond:
            return [r for r in self.received if r.path == path]

    def wait_for(self, path: str, count: int, timeout: float = 30.0) -> list[Received]:
        """Wait until ``count`` requests reached ``path``; returns them (maybe fewer, at the deadline)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while len([r for r in self.received if r.path == path]) < count and time.monotonic() < deadline:
                self._cond.wait(0.2)
            return [r for r in self.received if r.path == path]


class SmtpReceiver:
    """The few SMTP verbs ``smtplib`` uses (no TLS, no auth): every message's envelope and data is kept."""

    def __init__(self) -> None:
        import socketserver

        self.messages: list[dict[str, Any]] = []
        receiver = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                def say(line: str) -> None:
                    self.wfile.write(line.encode() + b"\r\n")
                    self.wfile.flush()

                say("220 dli-test ESMTP")
                envelope: dict[str, Any] = {"to": []}
                while True:
                    raw = self.rfile.readline()
                    if not raw:
                        return
                    verb = raw.decode(errors="replace").strip()
                    upper = verb.upper()
                    if upper.startswith(("EHLO", "HELO")):
                        say("250-dli-test")
                        say("250 8BITMIME")
                    elif upper.startswith("MAIL FROM"):
                        envelope = {"from": verb.split(":", 1)[1].strip(" <>"), "to": []}
                        say("250 OK")
                    elif upper.startswith("RCPT TO"):
                        envelope["to"].append(verb.split(":", 1)[1].strip(" <>"))
                        say("250 OK")
                    elif upper == "DATA":
                        say("354 end with .")
                        lines = []
                        while True:
                            line = self.rfile.readline()
                            if not line or line in (b".\r\n", b".\n"):
                                break
                            lines.append(line)
                        envelope["data"] = b"".join(lines).decode(errors="replace")
                        receiver.messages.append(envelope)
                        say("250 OK queued")
                    elif upper == "QUIT":
                        say("221 bye")
                        return
                    else:
                        say("250 OK")

        self.server = socketserver.ThreadingTCPServer((HOST, 0), Handler)
        self.server.daemon_threads = True
        self.port = int(self.server.server_address[1])
        self._thread = threading.Thread(target=self.server.serve_forever, name="smtp-receiver", daemon=True)

    def start(self) -> SmtpReceiver:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# --------------------------------------------------------------------------- fixtures

_BUCKETS = itertools.count(1)


@pytest.fixture(scope="module")
def moto_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    """moto's standalone S3 server on a free port, for the tests of one module."""
    server = MotoServer(tmp_path_factory.mktemp("moto")).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def s3_proxy(moto_server: MotoServer, request: pytest.FixtureRequest) -> Iterator[S3Proxy]:
    """A fresh recording proxy in front of ``moto_server``; prints what it saw when the test fails."""
    proxy = S3Proxy(moto_server.port).start()
    try:
        yield proxy
    finally:
        report = getattr(request.node, "rep_call", None)
        if report is not None and report.failed:
            print(f"\n--- the S3 proxy saw {len(proxy.requests)} request(s); the last ones:\n{proxy.summary()}",
                  file=sys.stderr)
        proxy.stop()


@pytest.fixture
def s3_bucket(moto_server: MotoServer) -> str:
    """A new, empty bucket on ``moto_server``."""
    name = f"dli-test-{os.getpid()}-{next(_BUCKETS)}"
    moto_server.client().create_bucket(Bucket=name)
    return name


def aws_connection(endpoint: str) -> str:
    """``AIRFLOW_CONN_AWS_DEFAULT``: the test credentials and ``endpoint_url`` in the extra."""
    return json.dumps(
        {"conn_type": "aws", "login": ACCESS_KEY, "password": SECRET_KEY,
         "extra": {"endpoint_url": endpoint, "region_name": REGION}}
    )


@pytest.fixture
def s3_env(s3_proxy: S3Proxy, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The Airflow connection ``aws_default`` pointing at the proxy, no ``[dli]`` settings from the machine,
    no AWS credentials from the machine, a fresh ``[dli] cache_dir``. Returns the cache folder."""
    for key in list(os.environ):
        if key.startswith(("AIRFLOW__DLI__", "AWS_")):
            monkeypatch.delenv(key)
    monkeypatch.delenv("_AIRFLOW_PARSING_CONTEXT_DAG_ID", raising=False)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path / "airflow_home"))
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", aws_connection(s3_proxy.url))
    cache = tmp_path / "cache"
    monkeypatch.setenv("AIRFLOW__DLI__CACHE_DIR", str(cache))
    return cache


@pytest.fixture
def hook_receiver() -> Iterator[HookReceiver]:
    """A webhook / Slack receiver on a free port of 127.0.0.1."""
    receiver = HookReceiver().start()
    try:
        yield receiver
    finally:
        receiver.stop()


@pytest.fixture
def smtp_receiver() -> Iterator[SmtpReceiver]:
    """An SMTP receiver on a free port of 127.0.0.1."""
    receiver = SmtpReceiver().start()
    try:
        yield receiver
    finally:
        receiver.stop()


def upload(client: Any, bucket: str, files: dict[str, str | bytes], prefix: str = "") -> None:
    """Put ``{"code/a.yaml": text}`` objects (text is dedented) under ``prefix``."""
    import textwrap

    for path, content in files.items():
        data = content if isinstance(content, bytes) else textwrap.dedent(content).lstrip("\n").encode()
        client.put_object(Bucket=bucket, Key=f"{prefix}{path}", Body=data)


__all__ = [
    "HookReceiver",
    "MotoServer",
    "S3Proxy",
    "SmtpReceiver",
    "aws_connection",
    "free_port",
    "hook_receiver",
    "moto_server",
    "s3_bucket",
    "s3_env",
    "s3_proxy",
    "smtp_receiver",
    "upload",
]
