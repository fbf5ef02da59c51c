"""A Trino stand-in for tests: the Trino client protocol over DuckDB (no real Trino server runs in tests).

It speaks what the unmodified ``trino`` client (and so the provider's ``TrinoHook``) uses:

- ``POST /v1/statement`` with the SQL as body and the ``X-Trino-User``/``-Catalog``/``-Schema`` headers
  answers at once with the query id, ``state: QUEUED`` and a ``nextUri``; the query runs on DuckDB in a
  thread of its own (Trino SQL is transpiled to DuckDB with sqlglot);
- ``GET nextUri`` waits up to ``poll_seconds`` for the query, then answers ``RUNNING`` with the next
  ``nextUri``, or the result in pages of ``page_size`` rows (``columns`` with Trino ``typeSignature``,
  ``data``, ``updateType``/``updateCount``), or an ``error`` object (``errorName``, ``errorType``,
  ``errorCode``, ``errorLocation``) — the last page has no ``nextUri`` and ``state: FINISHED|FAILED``;
- ``DELETE nextUri`` cancels: it interrupts the DuckDB query at once and answers 204;
- ``EXECUTE IMMEDIATE '<statement>' [USING <expression>, …]``, what the client sends for
  ``cursor.execute(sql, params)`` (and, without ``USING``, as its probe of whether the server has
  ``EXECUTE IMMEDIATE``): the ``?`` placeholders of the statement take the ``USING`` expressions in order, on
  the syntax tree, as Trino binds parameters — never as text; a count that does not match fails with
  ``INVALID_PARAMETER_USAGE``. The query keeps the statement and the parameters apart (``statement``,
  ``parameters``) for tests;
- ``GET /v1/info`` for health checks.

It proves the wire protocol, not Trino's own rules for where a parameter may stand: DuckDB runs the query.

With ``tls=(certificate, key)`` it serves HTTPS (the client refuses any authentication over plain HTTP), and
with ``auth=TrinoAuth(...)`` (:mod:`standin_auth`) it authenticates every request but ``/v1/info`` as a
coordinator with ``http-server.authentication.type`` set does, in the order certificate, password, OAuth 2.0, JWT:

- ``CERTIFICATE``: a client certificate signed by ``client_ca`` (asked for in the TLS handshake); the user
  is its subject's common name;
- ``PASSWORD``: ``Authorization: Basic`` checked against ``passwords``;
- ``JWT``: ``Authorization: Bearer <jwt>`` whose RS256 signature verifies with ``jwt_public_key`` (and
  ``exp``); the user is its ``sub``;
- ``OAUTH2``: a request without credentials gets Trino's challenge, ``401`` with ``WWW-Authenticate: Bearer
  x_redirect_server="…/oauth2/token/initiate/<id>", x_token_server="…/oauth2/token/<id>"``; ``GET`` of the
  token server waits up to ``oauth2_wait`` seconds and answers ``{"nextUri": …}`` until the login is done,
  then ``{"token": …}``; ``GET`` of the redirect server is the browser's visit that completes the login as
  ``oauth2_user`` (the identity provider's pages are not played). A bearer token it issued is accepted.

Anything else is ``401`` with the challenges of the configured kinds (``Basic realm="Trino"``, ``Bearer
realm="Trino", token_type="JWT"``, the OAuth 2.0 one). ``X-Trino-User`` defaults to the authenticated user;
another user is ``Access Denied: User a cannot impersonate user b`` (403). Each query keeps how it was
authenticated (``authentication``, ``principal``).

The catalog is a DuckDB database (``memory`` is the default one; others are attached in memory on first
use) and the schema a DuckDB schema, created on first use. Tables listed in ``denied_tables`` answer
``PERMISSION_DENIED``; SQL containing a key of ``forced_errors`` fails with that error object (server-side
failures); ``memory.main.slow_numbers`` is a view that takes minutes to count, for cancellation tests.
"""

from __future__ import annotations

import base64
import itertools
import json
import re
import threading
import time
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from datetime import time as dtime
from decimal import Decimal
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import duckdb
import sqlglot
from sqlglot import exp
from standin_auth import TlsHTTPServer, TrinoAuth

#: Rows of a view that takes minutes to count on DuckDB (and stops at once when interrupted).
SLOW_VIEW_ROWS = 100_000_000_000

_ERROR_CODES = {
    "SYNTAX_ERROR": 1,
    "PERMISSION_DENIED": 4,
    "USER_CANCELED": 3,
    "NOT_SUPPORTED": 13,
    "DIVISION_BY_ZERO": 8,
    "INVALID_CAST_ARGUMENT": 9,
    "FUNCTION_NOT_FOUND": 44,
    "TABLE_NOT_FOUND": 46,
    "COLUMN_NOT_FOUND": 47,
    "SCHEMA_NOT_FOUND": 48,
    "TABLE_ALREADY_EXISTS": 50,
    "TYPE_MISMATCH": 58,
    "INVALID_PARAMETER_USAGE": 86,
    "GENERIC_USER_ERROR": 0,
    "GENERIC_INTERNAL_ERROR": 65536,
}


def trino_error(message: str, name: str, error_type: str = "USER_ERROR", line: int | None = None,
                column: int | None = None) -> dict[str, Any]:
    """A Trino ``QueryError`` object."""
    error: dict[str, Any] = {
        "message": message,
        "errorCode": _ERROR_CODES.get(name, 65536),
        "errorName": name,
        "errorType": error_type,
        "failureInfo": {"type": "io.trino.spi.TrinoException", "message": message, "suppressed": [], "stack": []},
    }
    if line is not None and column is not None:
        error["errorLocation"] = {"lineNumber": line, "columnNumber": column}
        error["failureInfo"]["errorLocation"] = error["errorLocation"]
    return error


@dataclass
class StandinQuery:
    """One query the stand-in received, with what happened to it (tests read these)."""

    id: str
    sql: str
    user: str | None
    catalog: str | None
    schema: str | None
    state: str = "QUEUED"
    columns: list[dict[str, Any]] | None = None
    rows: list[list[Any]] = field(default_factory=list)
    update_type: str | None = None
    update_count: int | None = None
    error: dict[str, Any] | None = None
    cancelled: bool = False
    started: float = field(default_factory=time.monotonic)
    ended: float | None = None
    done: threading.Event = field(default_factory=threading.Event)
    cursor: Any = None
    pages: dict[int, dict[str, Any]] = field(default_factory=dict)
    offset: int = 0
    #: the statement as written (inside ``EXECUTE IMMEDIATE``, else the SQL sent) and its ``USING`` values
    statement: str = ""
    parameters: list[str] = field(default_factory=list)
    #: how the request that submitted it was authenticated (``certificate``, ``password``, ``oauth2``,
    #: ``jwt``; ``None`` without authentication) and as whom
    authentication: str | None = None
    principal: str | None = None

    @property
    def seconds(self) -> float:
        return (self.ended or time.monotonic()) - self.started


class ParameterUsageError(Exception):
    """The ``USING`` values do not match the statement's ``?`` placeholders."""


def execute_immediate(sql: str) -> tuple[str, list[Any]] | None:
    """``(statement, [USING expressions])`` of ``EXECUTE IMMEDIATE '<statement>' [USING a, b, …]``, else None.

    The statement is the string literal as Trino reads it (``''`` is one quote); the expressions are
    sqlglot trees of the literals the client formatted (``'o''brien'``, ``DATE '2024-01-15'``,
    ``DOUBLE '0.5'``, ``true``, ``NULL``, ``ARRAY[…]``).
    """
    dialect = sqlglot.Dialect.get_or_raise("trino")
    head = dialect.tokenize(sql)
    if not head or head[0].text.upper() != "EXECUTE":
        return None
    rest = sql[head[0].end + 1 :]  # sqlglot reads what follows EXECUTE as one command string: read it again
    tokens = dialect.tokenize(rest)
    if len(tokens) < 2 or tokens[0].text.upper() != "IMMEDIATE" or tokens[1].token_type.name != "STRING":
        return None
    statement = tokens[1].text
    if len(tokens) == 2:
        return statement, []
    if tokens[2].text.upper() != "USING":
        raise sqlglot.errors.ParseError(f"mismatched input '{tokens[2].text}'. Expecting: 'USING', <EOF>")
    values = sqlglot.parse_one("SELECT " + rest[tokens[2].end + 1 :], read="trino")
    return statement, list(values.expressions)


def bind_parameters(statement: str, values: list[Any]) -> Any:
    """The statement's tree with each ``?`` replaced by its value, in the order the ``?`` are written."""
    holes = [t for t in sqlglot.Dialect.get_or_raise("trino").tokenize(statement) if t.token_type.name == "PLACEHOLDER"]
    if len(holes) != len(values):
        raise ParameterUsageError(
            f"Incorrect number of parameters: expected {len(holes)} but found {len(values)}"
        )
    marked, cursor = [], 0
    for index, hole in enumerate(holes):
        marked.append(statement[cursor : hole.start])
        marked.append(f"__standin_parameter_{index}__")
        cursor = hole.end + 1
    marked.append(statement[cursor:])
    tree = sqlglot.parse_one("".join(marked), read="trino")
    for column in list(tree.find_all(exp.Column)):
        if column.name.startswith("__standin_parameter_"):
            column.replace(values[int(column.name.split("_")[-3])].copy())
    return tree


class TrinoStandin:
    """A threaded HTTP server on ``host:port`` (0: a free port) speaking the Trino client protocol.

    :param denied_tables: table names (last part, lower case) whose use answers PERMISSION_DENIED.
    :param page_size: rows per ``data`` page.
    :param poll_seconds: how long a ``GET nextUri`` waits for the query before answering RUNNING.
    :param tls: ``(certificate, key)`` PEM files: serve HTTPS.
    :param auth: what credentials it accepts (see the module docstring); needs ``tls``.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        denied_tables: tuple[str, ...] = ("secret_salaries",),
        page_size: int = 100,
        poll_seconds: float = 0.2,
        tls: tuple[str | Path, str | Path] | None = None,
        auth: TrinoAuth | None = None,
    ) -> None:
        if auth is not None and auth.enabled and tls is None:
            raise ValueError("a coordinator with authentication serves it over TLS: give tls=(cert, key)")
        self.db = duckdb.connect()
        self.db.execute("SET enable_progress_bar = false")
        # a filter DuckDB cannot skip: counting the view scans every row
        self.db.execute(
            f"CREATE VIEW memory.main.slow_numbers AS SELECT i FROM range({SLOW_VIEW_ROWS}) t(i) WHERE i % 7 <> 3"
        )
        self.denied_tables = {t.lower() for t in denied_tables}
        self.forced_errors: dict[str, dict[str, Any]] = {}
        self.page_size = page_size
        self.poll_seconds = poll_seconds
        self.queries: dict[str, StandinQuery] = {}
        self.cancelled: list[str] = []
        self.requests: list[tuple[str, str]] = []
        self._catalogs = {"memory"}
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self.auth = auth or TrinoAuth()
        #: (authentication kind or None, principal or None, status) of every request that needs credentials
        self.authentications: list[tuple[str | None, str | None, int]] = []
        self._server = TlsHTTPServer((host, port), _handler(self))
        if tls is not None:
            self._server.use_tls(tls[0], tls[1], client_ca=self.auth.client_ca)
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------------------
    @property
    def host(self) -> str:
        return str(self._server.server_address[0])

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def scheme(self) -> str:
        return "https" if self._server.ssl_context is not None else "http"

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"

    @property
    def handshake_errors(self) -> list[str]:
        return self._server.handshake_errors

    def start(self) -> TrinoStandin:
        self._thread = threading.Thread(target=self._server.serve_forever, name="trino-standin", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        for query in list(self.queries.values()):
            if not query.done.is_set():
                self._cancel(query)
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(5)
        self.db.close()

    def __enter__(self) -> TrinoStandin:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- for tests ---------------------------------------------------------------------------------------
    def execute(self, sql: str, parameters: Any = None) -> list[tuple[Any, ...]]:
        """Run DuckDB SQL directly (seed data, check results)."""
        with self._lock:
            cursor = self.db.cursor()
        try:
            cursor.execute(sql, parameters)
            return cursor.fetchall() if cursor.description else []
        finally:
            cursor.close()

    def last_query(self, containing: str = "") -> StandinQuery:
        matching = [q for q in self.queries.values() if containing in q.sql or containing in q.statement]
        if not matching:
            raise AssertionError(f"no query containing {containing!r}; got {[q.sql for q in self.queries.values()]}")
        return matching[-1]

    def wait_running(self, containing: str, timeout: float = 10.0) -> StandinQuery:
        """The query containing ``containing`` once it runs on DuckDB."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for query in list(self.queries.values()):
                if (containing in query.sql or containing in query.statement) and query.state == "RUNNING":
                    return query
            time.sleep(0.02)
        raise AssertionError(f"no running query containing {containing!r} within {timeout}s")

    # -- protocol ----------------------------------------------------------------------------------------
    def submit(self, sql: str, headers: dict[str, str], authenticated: tuple[str | None, str | None] = (None, None),
               ) -> StandinQuery:
        query_id = f"{datetime.now():%Y%m%d_%H%M%S}_{next(self._ids):05d}_standin"
        query = StandinQuery(
            id=query_id,
            sql=sql,
            user=headers.get("x-trino-user") or authenticated[1],
            catalog=headers.get("x-trino-catalog"),
            schema=headers.get("x-trino-schema"),
            authentication=authenticated[0],
            principal=authenticated[1],
        )
        try:
            unwrapped = execute_immediate(sql)
        except sqlglot.errors.SqlglotError:
            unwrapped = None  # the run reports the syntax error
        if unwrapped is not None:
            query.statement, query.parameters = unwrapped[0], [v.sql(dialect="trino") for v in unwrapped[1]]
        else:
            query.statement = sql
        self.queries[query_id] = query
        threading.Thread(target=self._run, args=(query,), name=f"trino-standin-{query_id}", daemon=True).start()
        return query

    def first_page(self, query: StandinQuery) -> dict[str, Any]:
        return self._page(query, "QUEUED", next_token=1)

    def next_page(self, query: StandinQuery, token: int) -> dict[str, Any]:
        with self._lock:
            cached = query.pages.get(token)
        if cached is not None:  # a retried GET gets the same page
            return cached
        query.done.wait(self.poll_seconds)
        if not query.done.is_set():
            page = self._page(query, "RUNNING", next_token=token + 1)
        elif query.error is not None:
            page = self._page(query, "FAILED")
            page["error"] = query.error
        else:
            rows = query.rows[query.offset : query.offset + self.page_size]
            query.offset += len(rows)
            more = query.offset < len(query.rows)
            page = self._page(query, "RUNNING" if more else "FINISHED", next_token=token + 1 if more else None)
            if query.columns is not None:
                page["columns"] = query.columns
            if rows:
                page["data"] = rows
            if query.update_type:
                page["updateType"] = query.update_type
                if query.update_count is not None:
                    page["updateCount"] = query.update_count
        with self._lock:
            query.pages[token] = page
        return page

    def cancel(self, query: StandinQuery) -> None:
        self.cancelled.append(query.id)
        self._cancel(query)

    def _cancel(self, query: StandinQuery) -> None:
        query.cancelled = True
        deadline = time.monotonic() + 10
        # interrupt until it stops: an interrupt that lands just before DuckDB starts the statement is lost
        while not query.done.wait(0.05) and time.monotonic() < deadline:
            cursor = query.cursor
            if cursor is not None:
                cursor.interrupt()

    def _page(self, query: StandinQuery, state: str, next_token: int | None = None) -> dict[str, Any]:
        page: dict[str, Any] = {
            "id": query.id,
            "infoUri": f"{self.url}/ui/query.html?{query.id}",
            "stats": {
                "state": state,
                "queued": state == "QUEUED",
                "scheduled": state != "QUEUED",
                "nodes": 1,
                "totalSplits": 1,
                "queuedSplits": 0,
                "runningSplits": 0 if query.done.is_set() else 1,
                "completedSplits": 1 if query.done.is_set() else 0,
                "cpuTimeMillis": 0,
                "wallTimeMillis": int(query.seconds * 1000),
                "queuedTimeMillis": 0,
                "elapsedTimeMillis": int(query.seconds * 1000),
                "processedRows": len(query.rows),
                "processedBytes": 8 * len(query.rows) * len(query.columns or []),
                "physicalInputBytes": 0,
                "peakMemoryBytes": 0,
                "spilledBytes": 0,
            },
            "warnings": [],
        }
        if next_token is not None:
            page["nextUri"] = f"{self.url}/v1/statement/executing/{query.id}/y{query.id[-6:]}/{next_token}"
        return page

    # -- execution on DuckDB -----------------------------------------------------------------------------
    def _run(self, query: StandinQuery) -> None:
        with self._lock:
            cursor = self.db.cursor()
        query.cursor = cursor
        try:
            query.state = "RUNNING"
            if query.cancelled:
                raise duckdb.InterruptException("cancelled before it started")
            self._use(cursor, query.catalog or "memory", query.schema or "main")
            for needle, error in self.forced_errors.items():
                if needle in query.sql:
                    query.error = error
                    return
            try:
                unwrapped = execute_immediate(query.sql)
                values = unwrapped[1] if unwrapped is not None else []
                statement = bind_parameters(query.statement, values)
            except ParameterUsageError as exc:
                query.error = trino_error(str(exc), "INVALID_PARAMETER_USAGE")
                return
            except sqlglot.errors.ParseError as exc:
                first = exc.errors[0] if exc.errors else {}
                line, col = first.get("line") or 1, first.get("col") or 1
                near = first.get("highlight") or ""
                query.error = trino_error(
                    f"line {line}:{col}: mismatched input '{near}'. {first.get('description', '')}".strip(),
                    "SYNTAX_ERROR", line=line, column=col,
                )
                return
            denied = self._denied(statement, query)
            if denied:
                query.error = trino_error(f"Access Denied: Cannot {denied}", "PERMISSION_DENIED")
                return
            duck_sql = statement.sql(dialect="duckdb")
            if query.cancelled:
                raise duckdb.InterruptException("cancelled before it started")
            result = cursor.execute(duck_sql)
            self._collect(query, statement, result)
        except duckdb.InterruptException:
            query.error = trino_error("Query was canceled", "USER_CANCELED")
        except duckdb.Error as exc:
            query.error = _duckdb_error(exc, query.statement or query.sql)
        finally:
            query.state = "FAILED" if query.error is not None else "FINISHED"
            query.ended = time.monotonic()
            query.cursor = None
            cursor.close()
            query.done.set()

    def _use(self, cursor: Any, catalog: str, schema: str) -> None:
        quote = _quote
        with self._lock:
            if catalog not in self._catalogs:
                self.db.execute(f"ATTACH ':memory:' AS {quote(catalog)}")
                self._catalogs.add(catalog)
            self.db.execute(f"CREATE SCHEMA IF NOT EXISTS {quote(catalog)}.{quote(schema)}")
        cursor.execute(f"USE {quote(catalog)}.{quote(schema)}")
        cursor.execute("SET integer_division = true")  # Trino: 7 / 2 = 3, 1 / 0 fails

    def _denied(self, statement: Any, query: StandinQuery) -> str | None:
        for table in statement.find_all(exp.Table):
            if table.name.lower() in self.denied_tables:
                full = ".".join(p for p in (table.catalog or query.catalog, table.db or query.schema, table.name) if p)
                verb = "insert into" if isinstance(statement, exp.Insert) and table is statement.this else "select from"
                return f"{verb} table {full}"
        return None

    def _collect(self, query: StandinQuery, statement: Any, result: Any) -> None:
        description = result.description
        rows = result.fetchall() if description else []
        kind = _update_type(statement)
        if kind is None:
            query.columns = [_column(name, kind_) for name, kind_, *_ in description] if description else []
            types = [d[1] for d in description] if description else []
            query.rows = [[_value(v, t) for v, t in zip(row, types)] for row in rows]
            return
        query.update_type = kind
        count = int(rows[0][0]) if rows and description and description[0][0] == "Count" else None
        if kind in {"INSERT", "UPDATE", "DELETE", "MERGE"} or (kind == "CREATE TABLE" and statement.expression):
            query.update_count = count or 0
            query.columns = [_column("rows", "BIGINT")]
            query.rows = [[query.update_count]]


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _update_type(statement: Any) -> str | None:
    if isinstance(statement, exp.Insert):
        return "INSERT"
    if isinstance(statement, exp.Update):
        return "UPDATE"
    if isinstance(statement, exp.Delete):
        return "DELETE"
    if isinstance(statement, exp.Merge):
        return "MERGE"
    if isinstance(statement, exp.Create):
        return f"CREATE {statement.kind}".strip()
    if isinstance(statement, exp.Drop):
        return f"DROP {statement.kind}".strip()
    if isinstance(statement, (exp.Alter, exp.Command, exp.Use, exp.Set)):
        return "SET SESSION" if isinstance(statement, exp.Set) else statement.key.upper()
    return None


def _duckdb_error(exc: Exception, sql: str) -> dict[str, Any]:
    """DuckDB's error as the Trino error the same mistake would give."""
    text = str(exc).strip()
    first = text.splitlines()[0] if text else type(exc).__name__
    message = re.sub(r"^[A-Za-z ]+ Error: ", "", first)
    line, column = _position(text, sql)
    if isinstance(exc, duckdb.ParserException):
        return trino_error(f"line {line}:{column}: {message}", "SYNTAX_ERROR", line=line, column=column)
    if isinstance(exc, duckdb.CatalogException):
        name = "FUNCTION_NOT_FOUND"
        if "Table" in first or "Schema" in first:
            name = "TABLE_NOT_FOUND" if "Table" in first else "SCHEMA_NOT_FOUND"
        if "already exists" in first:
            name = "TABLE_ALREADY_EXISTS"
        return trino_error(f"line {line}:{column}: {message}", name, line=line, column=column)
    if isinstance(exc, duckdb.BinderException):
        name = "COLUMN_NOT_FOUND" if "column" in first.lower() else "TYPE_MISMATCH"
        return trino_error(f"line {line}:{column}: {message}", name, line=line, column=column)
    if isinstance(exc, duckdb.ConversionException):
        return trino_error(message, "INVALID_CAST_ARGUMENT")
    if isinstance(exc, (duckdb.InvalidInputException, duckdb.OutOfRangeException, duckdb.ConstraintException)):
        return trino_error(message, "DIVISION_BY_ZERO" if "zero" in first.lower() else "GENERIC_USER_ERROR")
    return trino_error(message, "GENERIC_INTERNAL_ERROR", "INTERNAL_ERROR")


def _position(text: str, sql: str) -> tuple[int, int]:
    """Line and column, in the SQL as sent, of the name DuckDB's message is about.

    DuckDB ran the transpiled SQL, so its own ``LINE n:`` caret points into another text: find the
    name it complains about (``Table with name x``, ``column "x"``) in the original instead.
    """
    name = re.search(r'(?:name|column|Column|function|Function) "?([A-Za-z_][\w.]*)"?', text)
    if name:
        found = re.search(rf"(?<![\w.]){re.escape(name.group(1))}(?![\w])", sql, re.I)
        if found:
            line = sql.count("\n", 0, found.start()) + 1
            return line, found.start() - (sql.rfind("\n", 0, found.start()) + 1) + 1
    return 1, 1


# -- types and values --------------------------------------------------------------------------------------


def _signature(duck_type: Any) -> tuple[str, dict[str, Any]]:
    """The Trino type name and ``typeSignature`` of a DuckDB type."""
    kind = duck_type.id if hasattr(duck_type, "id") else str(duck_type).lower()
    simple = {
        "boolean": "boolean",
        "tinyint": "tinyint",
        "smallint": "smallint",
        "integer": "integer",
        "bigint": "bigint",
        "hugeint": "bigint",  # DuckDB sums BIGINTs into HUGEINTs; Trino's sum(bigint) is a bigint
        "utinyint": "smallint",
        "usmallint": "integer",
        "uinteger": "bigint",
        "ubigint": "bigint",
        "float": "real",
        "double": "double",
        "date": "date",
        "uuid": "uuid",
        "blob": "varbinary",
        "null": "unknown",
    }
    if kind in simple:
        name = simple[kind]
        return name, {"rawType": name, "arguments": []}
    if kind == "varchar":
        return "varchar", {"rawType": "varchar", "arguments": [{"kind": "LONG", "value": 2147483647}]}
    if kind == "decimal":
        precision, scale = (v for _, v in duck_type.children)
        return f"decimal({precision},{scale})", {
            "rawType": "decimal",
            "arguments": [{"kind": "LONG", "value": precision}, {"kind": "LONG", "value": scale}],
        }
    if kind.startswith("timestamp") or kind in {"time", "time with time zone"}:
        base = "timestamp" if kind.startswith("timestamp") else "time"
        zoned = "with time zone" in kind
        precision = 3 if kind == "timestamp_ms" else 0 if kind == "timestamp_s" else 6
        name = f"{base}({precision})" + (" with time zone" if zoned else "")
        raw = base + (" with time zone" if zoned else "")
        return name, {"rawType": raw, "arguments": [{"kind": "LONG", "value": precision}]}
    if kind == "interval":
        return "interval day to second", {"rawType": "interval day to second", "arguments": []}
    if kind in {"list", "array"}:
        child_name, child_sig = _signature(duck_type.children[0][1])
        return f"array({child_name})", {"rawType": "array", "arguments": [{"kind": "TYPE", "value": child_sig}]}
    if kind == "map":
        (_, key), (_, value) = duck_type.children
        key_name, key_sig = _signature(key)
        value_name, value_sig = _signature(value)
        return f"map({key_name}, {value_name})", {
            "rawType": "map",
            "arguments": [{"kind": "TYPE", "value": key_sig}, {"kind": "TYPE", "value": value_sig}],
        }
    if kind == "struct":
        names, arguments = [], []
        for field_name, field_type in duck_type.children:
            type_name, sig = _signature(field_type)
            names.append(f'"{field_name}" {type_name}')
            arguments.append(
                {"kind": "NAMED_TYPE", "value": {"fieldName": {"name": field_name}, "typeSignature": sig}}
            )
        return f"row({', '.join(names)})", {"rawType": "row", "arguments": arguments}
    return "varchar", {"rawType": "varchar", "arguments": [{"kind": "LONG", "value": 2147483647}]}


def _column(name: str, duck_type: Any) -> dict[str, Any]:
    if isinstance(duck_type, str):
        duck_type = duckdb.sqltype(duck_type)
    type_name, signature = _signature(duck_type)
    return {"name": name, "type": type_name, "typeSignature": signature}


def _value(value: Any, duck_type: Any) -> Any:
    """A DuckDB value as Trino's JSON encodes it for the type of :func:`_signature`."""
    if value is None:
        return None
    kind = duck_type.id if hasattr(duck_type, "id") else ""
    if isinstance(value, bool) or isinstance(value, int) or isinstance(value, str):
        return value
    if isinstance(value, float):
        if value != value:
            return "NaN"
        if value in (float("inf"), float("-inf")):
            return "Infinity" if value > 0 else "-Infinity"
        return value
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        text = value.strftime("%Y-%m-%d %H:%M:%S.%f")
        if kind == "timestamp_ms":
            text = text[:-3]
        if value.tzinfo is not None:
            offset = value.utcoffset() or timedelta(0)
            zone = value.strftime("%z")
            text += " UTC" if offset == timedelta(0) else f" {zone[:3]}:{zone[3:]}"
        return text
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, dtime):
        return value.strftime("%H:%M:%S.%f")
    if isinstance(value, timedelta):
        total = value.total_seconds()
        days, rest = divmod(abs(total), 86400)
        hours, rest = divmod(rest, 3600)
        minutes, seconds = divmod(rest, 60)
        sign = "-" if total < 0 else ""
        return f"{sign}{int(days)} {int(hours):02d}:{int(minutes):02d}:{seconds:06.3f}"
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode()
    if isinstance(value, list):
        child = duck_type.children[0][1] if kind in {"list", "array"} else None
        return [_value(v, child) for v in value]
    if isinstance(value, dict) and kind == "map":
        (_, key_type), (_, value_type) = duck_type.children
        return {str(_value(k, key_type)): _value(v, value_type) for k, v in value.items()}
    if isinstance(value, dict):
        types = dict(duck_type.children) if kind == "struct" else {}
        return [_value(v, types.get(k)) for k, v in value.items()]
    return str(value)


# -- HTTP ----------------------------------------------------------------------------------------------------


def _handler(standin: TrinoStandin) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
            pass

        def _reply(self, status: int, data: bytes, content_type: str | None,
                   headers: tuple[tuple[str, str], ...] = ()) -> None:
            self.send_response(status)
            if content_type:
                self.send_header("Content-Type", content_type)
            for name, value in headers:
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _send(self, status: int, body: dict[str, Any] | None = None) -> None:
            data = json.dumps(body).encode() if body is not None else b""
            self._reply(status, data, "application/json" if body is not None else None)

        def _authenticated(self) -> tuple[str | None, str | None] | None:
            """Who sent the request, or None after answering 401 with the challenges, as Trino does."""
            headers = {k.lower(): v for k, v in self.headers.items()}
            peer = self.connection.getpeercert() if hasattr(self.connection, "getpeercert") else None
            who = standin.auth.authenticate(headers, peer)
            if who is None:
                standin.authentications.append((None, None, 401))
                challenges = tuple(("WWW-Authenticate", value) for value in standin.auth.challenges(standin.url))
                self._reply(401, b"Unauthorized", "text/plain", challenges)
                return None
            standin.authentications.append((who[0], who[1], 200))
            return who

        def _oauth2(self) -> bool:
            """The OAuth 2.0 endpoints (no credentials: the browser and the token polling)."""
            parts = urlparse(self.path).path.strip("/").split("/")
            if len(parts) == 4 and parts[:3] == ["oauth2", "token", "initiate"]:
                if standin.auth.oauth2_visit(parts[3]):
                    page = b"<html><body>Logged in to the Trino stand-in; you may close this window.</body></html>"
                    self._reply(200, page, "text/html")
                else:
                    self._send(404, {"message": "no such login"})
                return True
            if len(parts) == 3 and parts[:2] == ["oauth2", "token"]:
                answer = standin.auth.oauth2_token(parts[2], standin.url)
                if answer is None:
                    self._send(404, {"message": "no such login"})
                else:
                    self._send(200, answer)
                return True
            return False

        def _query(self) -> tuple[StandinQuery | None, int]:
            parts = urlparse(self.path).path.strip("/").split("/")
            # v1/statement/{queued|executing}/{id}/{slug}/{token}
            if len(parts) == 6 and parts[:2] == ["v1", "statement"]:
                return standin.queries.get(parts[3]), int(parts[5])
            return None, 0

        def do_POST(self) -> None:  # noqa: N802 - stdlib name
            standin.requests.append(("POST", self.path))
            length = int(self.headers.get("Content-Length") or 0)
            sql = self.rfile.read(length).decode("utf-8")
            if urlparse(self.path).path.rstrip("/") != "/v1/statement":
                self._send(404, {"message": "not found"})
                return
            headers = {k.lower(): v for k, v in self.headers.items()}
            who = self._authenticated()
            if who is None:
                return
            user = headers.get("x-trino-user") or who[1]
            if not user:
                self._send(400, {"message": "User must be set"})
                return
            if who[1] is not None and user != who[1]:
                self._reply(403, f"Access Denied: User {who[1]} cannot impersonate user {user}".encode(), "text/plain")
                return
            query = standin.submit(sql, headers, who)
            self._send(200, standin.first_page(query))

        def do_GET(self) -> None:  # noqa: N802 - stdlib name
            standin.requests.append(("GET", self.path))
            if urlparse(self.path).path.rstrip("/") == "/v1/info":
                self._send(200, {"nodeVersion": {"version": "dli-standin"}, "starting": False, "uptime": "1s"})
                return
            if self._oauth2():
                return
            if self._authenticated() is None:
                return
            query, token = self._query()
            if query is None:
                self._send(404, {"message": "query not found"})
                return
            self._send(200, standin.next_page(query, token))

        def do_DELETE(self) -> None:  # noqa: N802 - stdlib name
            standin.requests.append(("DELETE", self.path))
            if self._authenticated() is None:
                return
            query, _ = self._query()
            if query is None:
                self._send(404, {"message": "query not found"})
                return
            standin.cancel(query)
            self._send(204)

    return Handler


if __name__ == "__main__":  # python tests/integration/trino_standin.py: serve on a free port until Ctrl-C
    with TrinoStandin() as server:
        print(f"Trino stand-in on {server.url}", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
