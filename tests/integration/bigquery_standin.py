"""A BigQuery stand-in for tests: the REST calls the real ``google-cloud-bigquery`` client makes, over DuckDB.

No real BigQuery runs in tests (and the ``local-bigquery`` emulator cannot run offline here). The real
client — and through it the Google provider's ``BigQueryHook`` — is pointed at this server with
``client_options={"api_endpoint": url}`` and anonymous credentials. It serves, under ``/bigquery/v2``:

- ``POST projects/{p}/jobs`` (jobs.insert): a query job runs on DuckDB in a thread of its own (the SQL is
  transpiled from BigQuery to DuckDB with sqlglot; the project part of table names is dropped, datasets
  are DuckDB schemas); a dry-run job answers at once with ``totalBytesProcessed``, or a 400/403/404 error;
- ``GET projects/{p}/jobs/{id}`` (jobs.get) with ``status`` (``errorResult``) and ``statistics``;
- ``GET projects/{p}/queries/{id}`` (jobs.getQueryResults): waits up to ``timeoutMs`` (at most
  ``poll_seconds``), then pages rows with ``pageToken``;
- ``POST projects/{p}/queries`` (jobs.query) and ``POST projects/{p}/jobs/{id}/cancel`` (interrupts
  the DuckDB query at once); ``GET /health`` for health checks.

Query parameters (``configuration.query.queryParameters`` with ``parameterMode``, as the client sends a
``QueryJobConfig(query_parameters=…)``): ``NAMED`` ones stand as ``@name`` in the SQL, ``POSITIONAL`` ones
as ``?``; each value is converted from its ``parameterType`` (``STRING``, ``INT64``, ``FLOAT64``, ``BOOL``,
``NUMERIC``, ``DATE``, ``DATETIME``, ``TIMESTAMP``, ``ARRAY``) and bound as a DuckDB parameter of the
transpiled SQL, never put into its text; a name the SQL uses and no parameter gives is BigQuery's
``Query parameter 'x' not found`` error. This proves the wire protocol, not BigQuery's own rules for where
a parameter may stand: DuckDB runs the query.

With ``auth=GoogleAuth()`` (:mod:`standin_auth`) it also plays Google's token endpoint (``POST /token``:
service-account JWT assertions, authorized users' refresh tokens; ``auth.token_uri`` is its URL, for key
files to point at) and refuses an API request without an access token it issued with Google's 401
(``UNAUTHENTICATED``); each job keeps who sent it (``principal``).

Bytes processed are 8 per row and column of every table a query reads. Tables listed in
``denied_tables`` answer ``accessDenied``; SQL containing a key of ``forced_errors`` fails with that
``errorResult``; ``slow_numbers`` is a view that takes minutes to count, for cancellation tests.
"""

from __future__ import annotations

import base64
import itertools
import json
import re
import threading
import time
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from datetime import time as dtime
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

import duckdb
import sqlglot
from sqlglot import exp
from standin_auth import GoogleAuth

SLOW_VIEW_ROWS = 100_000_000_000


@dataclass
class StandinJob:
    """One job the stand-in received (tests read these)."""

    project: str
    job_id: str
    location: str
    sql: str
    configuration: dict[str, Any]
    dry_run: bool = False
    #: the query parameters as sent (``name`` → value, converted from its ``parameterType``; POSITIONAL:
    #: ``"1"``, ``"2"``…) and the mode
    parameters: dict[str, Any] = field(default_factory=dict)
    parameter_mode: str | None = None
    state: str = "PENDING"
    schema: list[dict[str, Any]] | None = None
    rows: list[dict[str, Any]] = field(default_factory=list)
    types: list[Any] = field(default_factory=list)
    statement_type: str = "SELECT"
    dml_rows: int | None = None
    bytes_processed: int = 0
    error: dict[str, Any] | None = None
    cancelled: bool = False
    created: float = field(default_factory=time.time)
    started: float = field(default_factory=time.monotonic)
    ended: float | None = None
    done: threading.Event = field(default_factory=threading.Event)
    cursor: Any = None
    #: who inserted it (the account of the access token), with authentication on
    principal: str | None = None

    @property
    def seconds(self) -> float:
        return (self.ended or time.monotonic()) - self.started


class BigQueryStandin:
    """A threaded HTTP server on ``host:port`` (0: a free port) serving BigQuery's v2 REST job API.

    :param denied_tables: table names (last part, lower case) whose use answers ``accessDenied``.
    :param poll_seconds: the longest a ``getQueryResults`` waits before answering ``jobComplete: false``.
    :param auth: the token endpoint and the credentials it takes; ``None``: every request is let in
        (anonymous credentials)
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        denied_tables: tuple[str, ...] = ("secret_salaries",),
        poll_seconds: float = 0.2,
        auth: GoogleAuth | None = None,
    ) -> None:
        self.db = duckdb.connect()
        self.db.execute("SET enable_progress_bar = false")
        self.db.execute(
            f"CREATE VIEW main.slow_numbers AS SELECT i FROM range({SLOW_VIEW_ROWS}) t(i) WHERE i % 7 <> 3"
        )
        self.denied_tables = {t.lower() for t in denied_tables}
        self.forced_errors: dict[str, dict[str, Any]] = {}
        self.poll_seconds = poll_seconds
        self.jobs: dict[str, StandinJob] = {}
        self.cancelled: list[str] = []
        self.requests: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._server = ThreadingHTTPServer((host, port), _handler(self))
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None
        self.auth = auth
        if auth is not None:
            auth.token_uri = f"{self.url}/token"

    # -- lifecycle ---------------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> BigQueryStandin:
        self._thread = threading.Thread(target=self._server.serve_forever, name="bigquery-standin", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        for job in list(self.jobs.values()):
            if not job.done.is_set():
                self._interrupt(job)
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(5)
        self.db.close()

    def __enter__(self) -> BigQueryStandin:
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

    def last_job(self, containing: str = "") -> StandinJob:
        matching = [j for j in self.jobs.values() if containing in j.sql]
        if not matching:
            raise AssertionError(f"no job containing {containing!r}; got {[j.sql for j in self.jobs.values()]}")
        return matching[-1]

    def wait_running(self, containing: str, timeout: float = 10.0) -> StandinJob:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for job in list(self.jobs.values()):
                if containing in job.sql and job.state == "RUNNING":
                    return job
            time.sleep(0.02)
        raise AssertionError(f"no running job containing {containing!r} within {timeout}s")

    # -- the API -----------------------------------------------------------------------------------------
    def insert(self, project: str, body: dict[str, Any], principal: str | None = None) -> tuple[int, dict[str, Any]]:
        reference = body.get("jobReference") or {}
        configuration = body.get("configuration") or {}
        query = configuration.get("query") or {}
        if "query" not in query:
            return 400, _error_body(400, "invalid", "only query jobs are supported by the stand-in")
        if query.get("useLegacySql", True) is not False and "useLegacySql" in query:
            return 400, _error_body(400, "invalid", "legacy SQL is not supported by the stand-in")
        try:
            parameters = {
                p.get("name") or str(i): parameter_value(p["parameterType"], p.get("parameterValue") or {})
                for i, p in enumerate(query.get("queryParameters") or [], start=1)
            }
        except (KeyError, TypeError, ValueError) as exc:
            return 400, _error_body(400, "invalid", f"Invalid query parameter: {exc}")
        mode = query.get("parameterMode")
        if parameters and mode not in ("NAMED", "POSITIONAL"):
            return 400, _error_body(400, "invalid", "Query parameters need parameterMode NAMED or POSITIONAL")
        job = StandinJob(
            project=reference.get("projectId") or project,
            job_id=reference.get("jobId") or f"standin_job_{next(self._ids)}",
            location=reference.get("location") or "US",
            sql=query["query"],
            configuration=configuration,
            dry_run=bool(configuration.get("dryRun")),
            parameters=parameters,
            parameter_mode=mode,
            principal=principal,
        )
        if job.dry_run:
            return self._dry_run(job)
        self.jobs[job.job_id] = job
        job.state = "RUNNING"
        threading.Thread(target=self._run, args=(job,), name=f"bq-standin-{job.job_id}", daemon=True).start()
        return 200, self.resource(job)

    def query(self, project: str, body: dict[str, Any], principal: str | None = None) -> tuple[int, dict[str, Any]]:
        """jobs.query: insert a job and wait (up to ``timeoutMs``) for its first page."""
        job_body = {
            "jobReference": {"projectId": project, "jobId": f"standin_query_{next(self._ids)}",
                             "location": body.get("location") or "US"},
            "configuration": {"query": {"query": body.get("query", ""), "useLegacySql": body.get("useLegacySql", True),
                                        **{k: body[k] for k in ("queryParameters", "parameterMode") if k in body}},
                              "dryRun": body.get("dryRun", False)},
        }
        status, answer = self.insert(project, job_body, principal)
        if status != 200 or job_body["configuration"]["dryRun"]:
            return status, answer
        job = self.jobs[job_body["jobReference"]["jobId"]]
        job.done.wait(min(float(body.get("timeoutMs", 10000)) / 1000, 10))
        if job.done.is_set() and job.error is not None:
            return _status_of(job.error), _error_body(_status_of(job.error), job.error["reason"], job.error["message"])
        params = {"maxResults": [str(body.get("maxResults", 1000))]}
        return 200, self.results(job, params, wait=False)

    def get(self, job_id: str) -> tuple[int, dict[str, Any]]:
        job = self.jobs.get(job_id)
        if job is None:
            return 404, _error_body(404, "notFound", f"Not found: Job {job_id}")
        return 200, self.resource(job)

    def cancel(self, job_id: str) -> tuple[int, dict[str, Any]]:
        job = self.jobs.get(job_id)
        if job is None:
            return 404, _error_body(404, "notFound", f"Not found: Job {job_id}")
        self.cancelled.append(job_id)
        self._interrupt(job)
        return 200, {"kind": "bigquery#jobCancelResponse", "job": self.resource(job)}

    def results(self, job: StandinJob, params: dict[str, list[str]], *, wait: bool = True) -> dict[str, Any]:
        if wait:
            timeout_ms = float((params.get("timeoutMs") or ["10000"])[0])
            job.done.wait(min(timeout_ms / 1000, self.poll_seconds))
        answer: dict[str, Any] = {
            "kind": "bigquery#getQueryResultsResponse",
            "etag": "standin",
            "jobReference": {"projectId": job.project, "jobId": job.job_id, "location": job.location},
            "jobComplete": job.done.is_set(),
        }
        # a failed job: the client learns the error from jobs.get (status.errorResult)
        if not job.done.is_set() or job.error is not None:
            return answer
        answer["totalBytesProcessed"] = str(job.bytes_processed)
        answer["cacheHit"] = False
        if job.dml_rows is not None:
            answer["numDmlAffectedRows"] = str(job.dml_rows)
        if job.schema is None:
            return answer
        answer["schema"] = {"fields": job.schema}
        answer["totalRows"] = str(len(job.rows))
        start = int((params.get("pageToken") or params.get("startIndex") or ["0"])[0])
        size = int((params.get("maxResults") or [str(len(job.rows))])[0])
        page = job.rows[start : start + size] if size > 0 else []
        if page:
            answer["rows"] = page
        if size > 0 and start + size < len(job.rows):
            answer["pageToken"] = str(start + size)
        return answer

    def resource(self, job: StandinJob) -> dict[str, Any]:
        """The job as jobs.get returns it."""
        status: dict[str, Any] = {"state": "DONE" if job.done.is_set() or job.dry_run else "RUNNING"}
        if job.error is not None and (job.done.is_set() or job.dry_run):
            status["errorResult"] = job.error
            status["errors"] = [job.error]
        query_stats: dict[str, Any] = {
            "totalBytesProcessed": str(job.bytes_processed),
            "totalBytesBilled": "0" if job.dry_run else str(job.bytes_processed),
            "statementType": job.statement_type,
            "cacheHit": False,
        }
        if job.dml_rows is not None:
            query_stats["numDmlAffectedRows"] = str(job.dml_rows)
        statistics: dict[str, Any] = {
            "creationTime": str(int(job.created * 1000)),
            "startTime": str(int(job.created * 1000)),
            "totalBytesProcessed": str(job.bytes_processed),
            "query": query_stats,
        }
        if status["state"] == "DONE" and not job.dry_run:
            statistics["endTime"] = str(int((job.created + job.seconds) * 1000))
        return {
            "kind": "bigquery#job",
            "etag": "standin",
            "id": f"{job.project}:{job.location}.{job.job_id}",
            "selfLink": f"{self.url}/bigquery/v2/projects/{job.project}/jobs/{job.job_id}?location={job.location}",
            "user_email": "anonymous@standin",
            "configuration": job.configuration,
            "jobReference": {"projectId": job.project, "jobId": job.job_id, "location": job.location},
            "statistics": statistics,
            "status": status,
        }

    # -- execution on DuckDB -----------------------------------------------------------------------------
    def _prepare(self, job: StandinJob) -> tuple[Any, str, Any] | None:
        """Parse, check and transpile; on a problem set ``job.error`` and return None.

        :returns: the statement, its DuckDB SQL and the DuckDB parameters (a dict for NAMED, a list for
            POSITIONAL, ``None`` without parameters)
        """
        for needle, error in self.forced_errors.items():
            if needle in job.sql:
                job.error = error
                return None
        try:
            statement = sqlglot.parse_one(job.sql, read="bigquery")
        except sqlglot.errors.ParseError as exc:
            first = exc.errors[0] if exc.errors else {}
            near = first.get("highlight") or ""
            job.error = _error_result(
                "invalidQuery",
                f"Syntax error: Unexpected {near!r} at [{first.get('line', 1)}:{first.get('col', 1)}]",
            )
            return None
        for table in statement.find_all(exp.Table):
            if table.name.lower() in self.denied_tables:
                full = f"{table.catalog or job.project}:{table.db or '_'}.{table.name}"
                job.error = _error_result(
                    "accessDenied",
                    f"Access Denied: Table {full}: User does not have permission to query table {full}, "
                    "or perhaps it does not exist.",
                )
                return None
            table.set("catalog", None)  # the project: DuckDB has the datasets as schemas of one database
        job.statement_type = _statement_type(statement)
        bound = self._bind(job, statement)
        if job.error is not None:
            return None
        return statement, statement.sql(dialect="duckdb"), bound

    def _bind(self, job: StandinJob, statement: Any) -> Any:
        """The DuckDB parameters for the statement: only the names it uses (``@name`` becomes ``$name``)."""
        if job.parameter_mode == "POSITIONAL":
            holes = list(statement.find_all(exp.Placeholder))
            if len(holes) != len(job.parameters):
                job.error = _error_result(
                    "invalidQuery", f"Query has {len(holes)} positional parameters but {len(job.parameters)} were given"
                )
            return list(job.parameters.values())
        used = [
            p.this.name for p in statement.find_all(exp.Parameter)
            if isinstance(p.this, exp.Var) and not isinstance(p.parent, exp.Parameter)  # @@system variables
        ]
        for name in used:
            if name not in job.parameters:
                found = re.search(rf"@{re.escape(name)}\b", job.sql)
                at = f" at [{job.sql.count(chr(10), 0, found.start()) + 1}:{found.start() + 1}]" if found else ""
                job.error = _error_result("invalidQuery", f"Query parameter '{name}' not found{at}")
                return None
        return {name: job.parameters[name] for name in dict.fromkeys(used)} or None

    def _bytes(self, cursor: Any, statement: Any) -> int:
        total = 0
        for table in statement.find_all(exp.Table):
            found = cursor.execute(
                "SELECT estimated_size, column_count FROM duckdb_tables() WHERE table_name = ? AND schema_name = ?",
                [table.name, table.db or "main"],
            ).fetchone()
            if found:
                total += 8 * int(found[0]) * int(found[1])
        return total

    def _dry_run(self, job: StandinJob) -> tuple[int, dict[str, Any]]:
        prepared = self._prepare(job)
        if prepared is not None:
            statement, duck_sql, bound = prepared
            with self._lock:
                cursor = self.db.cursor()
            try:
                if not isinstance(statement, (exp.Create, exp.Drop)):
                    cursor.execute("EXPLAIN " + duck_sql, bound)  # binds: missing tables and columns fail here
                job.bytes_processed = self._bytes(cursor, statement)
            except duckdb.Error as exc:
                job.error = _duckdb_error(exc, job.sql)
            finally:
                cursor.close()
        job.done.set()
        if job.error is not None:
            status = _status_of(job.error)
            return status, _error_body(status, job.error["reason"], job.error["message"])
        return 200, self.resource(job)

    def _run(self, job: StandinJob) -> None:
        with self._lock:
            cursor = self.db.cursor()
        job.cursor = cursor
        try:
            prepared = self._prepare(job)
            if prepared is None:
                return
            statement, duck_sql, bound = prepared
            for schema in {t.db for t in statement.find_all(exp.Table) if t.db}:
                cursor.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
            job.bytes_processed = self._bytes(cursor, statement)
            if job.cancelled:
                raise duckdb.InterruptException("cancelled before it started")
            result = cursor.execute(duck_sql, bound)
            description = result.description
            rows = result.fetchall() if description else []
            if job.statement_type in {"INSERT", "UPDATE", "DELETE", "MERGE"}:
                job.dml_rows = int(rows[0][0]) if rows else 0
            elif job.statement_type == "SELECT" and description:
                job.schema = [_field(name, kind) for name, kind, *_ in description]
                job.rows = [{"f": [{"v": _value(v, d[1])} for v, d in zip(row, description)]} for row in rows]
        except duckdb.InterruptException:
            job.error = _error_result("stopped", "Job execution was cancelled: User requested cancellation")
        except duckdb.Error as exc:
            job.error = _duckdb_error(exc, job.sql)
        finally:
            job.ended = time.monotonic()
            job.cursor = None
            cursor.close()
            job.state = "DONE"
            job.done.set()

    def _interrupt(self, job: StandinJob) -> None:
        job.cancelled = True
        deadline = time.monotonic() + 10
        while not job.done.wait(0.05) and time.monotonic() < deadline:
            cursor = job.cursor
            if cursor is not None:
                cursor.interrupt()


def parameter_value(kind: dict[str, Any], value: dict[str, Any]) -> Any:
    """A query parameter's value as Python, from its ``parameterType`` and ``parameterValue`` (REST form)."""
    name = kind["type"]
    if name == "ARRAY":
        return [parameter_value(kind["arrayType"], item) for item in value.get("arrayValues") or []]
    raw = value.get("value")
    if raw is None:
        return None
    if name in ("INT64", "INTEGER"):
        return int(raw)
    if name in ("FLOAT64", "FLOAT"):
        return float(raw)
    if name in ("BOOL", "BOOLEAN"):
        return str(raw).lower() == "true"
    if name in ("NUMERIC", "BIGNUMERIC"):
        return Decimal(str(raw))
    if name == "DATE":
        return date.fromisoformat(raw)
    if name == "DATETIME":
        return datetime.fromisoformat(raw)
    if name == "TIMESTAMP":
        moment = datetime.fromisoformat(raw)
        return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)
    if name == "STRING":
        return str(raw)
    raise ValueError(f"the stand-in does not know the parameter type {name}")


def _statement_type(statement: Any) -> str:
    if isinstance(statement, exp.Insert):
        return "INSERT"
    if isinstance(statement, exp.Update):
        return "UPDATE"
    if isinstance(statement, exp.Delete):
        return "DELETE"
    if isinstance(statement, exp.Merge):
        return "MERGE"
    if isinstance(statement, exp.Create):
        kind = (statement.kind or "TABLE").upper()
        return f"CREATE_{kind}_AS_SELECT" if statement.expression is not None and kind == "TABLE" else f"CREATE_{kind}"
    if isinstance(statement, exp.Drop):
        return f"DROP_{(statement.kind or 'TABLE').upper()}"
    return "SELECT" if isinstance(statement, exp.Query) else "SCRIPT"


def _error_result(reason: str, message: str) -> dict[str, Any]:
    return {"reason": reason, "message": message, "location": "query" if reason == "invalidQuery" else ""}


_STATUS = {"invalidQuery": 400, "invalid": 400, "notFound": 404, "accessDenied": 403, "stopped": 200,
           "backendError": 500, "internalError": 500, "quotaExceeded": 403, "rateLimitExceeded": 429}


def _status_of(error: dict[str, Any]) -> int:
    return _STATUS.get(error.get("reason", ""), 500)


def _error_body(code: int, reason: str, message: str) -> dict[str, Any]:
    status = {400: "INVALID_ARGUMENT", 403: "PERMISSION_DENIED", 404: "NOT_FOUND", 409: "ALREADY_EXISTS"}.get(
        code, "INTERNAL"
    )
    return {"error": {"code": code, "message": message, "status": status,
                      "errors": [{"message": message, "domain": "global", "reason": reason}]}}


def _duckdb_error(exc: Exception, sql: str) -> dict[str, Any]:
    text = str(exc).strip()
    first = re.sub(r"^[A-Za-z ]+ Error: ", "", text.splitlines()[0] if text else type(exc).__name__)
    # DuckDB ran the transpiled SQL: find the name it complains about in the SQL as sent
    at = ""
    name = re.search(r'(?:name|column|Column|function|Function) "?([A-Za-z_]\w*)"?', first)
    found = re.search(rf"(?<![\w]){re.escape(name.group(1))}(?![\w])", sql, re.I) if name else None
    if found:
        line = sql.count("\n", 0, found.start()) + 1
        at = f" at [{line}:{found.start() - (sql.rfind(chr(10), 0, found.start()) + 1) + 1}]"
    if isinstance(exc, duckdb.CatalogException) and "does not exist" in first:
        return _error_result("notFound", f"Not found: {first}{at}")
    if isinstance(exc, (duckdb.ParserException, duckdb.BinderException, duckdb.CatalogException,
                        duckdb.ConversionException, duckdb.InvalidInputException, duckdb.OutOfRangeException)):
        return _error_result("invalidQuery", f"{first}{at}")
    return _error_result("internalError", f"An internal error occurred: {first}")


# -- types and values --------------------------------------------------------------------------------------


def _field(name: str, duck_type: Any) -> dict[str, Any]:
    kind = duck_type.id
    if kind in {"list", "array"}:
        inner = _field(name, duck_type.children[0][1])
        inner["mode"] = "REPEATED"
        return inner
    if kind == "struct":
        return {"name": name, "type": "RECORD", "mode": "NULLABLE",
                "fields": [_field(n, t) for n, t in duck_type.children]}
    simple = {
        "boolean": "BOOLEAN", "tinyint": "INTEGER", "smallint": "INTEGER", "integer": "INTEGER",
        "bigint": "INTEGER", "hugeint": "INTEGER", "utinyint": "INTEGER", "usmallint": "INTEGER",
        "uinteger": "INTEGER", "ubigint": "INTEGER", "float": "FLOAT", "double": "FLOAT",
        "varchar": "STRING", "blob": "BYTES", "date": "DATE", "timestamp": "DATETIME",
        "timestamp_s": "DATETIME", "timestamp_ms": "DATETIME", "timestamp_ns": "DATETIME",
        "timestamp with time zone": "TIMESTAMP", "time": "TIME", "uuid": "STRING",
    }
    if kind == "decimal":
        precision, scale = (v for _, v in duck_type.children)
        big = scale > 9 or precision - scale > 29
        return {"name": name, "type": "BIGNUMERIC" if big else "NUMERIC", "mode": "NULLABLE"}
    return {"name": name, "type": simple.get(kind, "STRING"), "mode": "NULLABLE"}


def _value(value: Any, duck_type: Any) -> Any:
    """A DuckDB value as BigQuery's JSON rows encode it (timestamps as int64 microseconds)."""
    if value is None:
        return None
    kind = duck_type.id if duck_type is not None else ""
    if kind in {"list", "array"}:
        child = duck_type.children[0][1]
        return [{"v": _value(v, child)} for v in value]
    if kind == "struct":
        types = dict(duck_type.children)
        return {"f": [{"v": _value(v, types.get(k))} for k, v in value.items()]}
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if value != value:
            return "NaN"
        if value in (float("inf"), float("-inf")):
            return "Infinity" if value > 0 else "-Infinity"
        return repr(value)
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            epoch = datetime(1970, 1, 1, tzinfo=timezone.utc)
            delta = value - epoch
            return str(delta.days * 86_400_000_000 + delta.seconds * 1_000_000 + delta.microseconds)
        return value.strftime("%Y-%m-%dT%H:%M:%S.%f")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, dtime):
        return value.strftime("%H:%M:%S.%f")
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode()
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, dict):
        return json.dumps(value, default=str)
    return str(value)


# -- HTTP ----------------------------------------------------------------------------------------------------

_ROUTES = [
    ("POST", re.compile(r"^/bigquery/v2/projects/([^/]+)/jobs$"), "insert"),
    ("POST", re.compile(r"^/bigquery/v2/projects/([^/]+)/queries$"), "query"),
    ("POST", re.compile(r"^/bigquery/v2/projects/([^/]+)/jobs/([^/]+)/cancel$"), "cancel"),
    ("GET", re.compile(r"^/bigquery/v2/projects/([^/]+)/jobs/([^/]+)$"), "get"),
    ("GET", re.compile(r"^/bigquery/v2/projects/([^/]+)/queries/([^/]+)$"), "results"),
]


def _handler(standin: BigQueryStandin) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
            pass

        def _send(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=UTF-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _dispatch(self, method: str) -> None:
            standin.requests.append((method, self.path))
            url = urlparse(self.path)
            params = parse_qs(url.query)
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if standin.auth is not None and method == "POST" and url.path == "/token":
                form = {k: v[0] for k, v in parse_qs(raw.decode()).items()}
                self._send(*standin.auth.token(form))
                return
            principal = None
            if standin.auth is not None:
                principal = standin.auth.principal(self.headers.get("Authorization"))
                if principal is None:
                    message = ("Request is missing required authentication credential. Expected OAuth 2 access "
                               "token, login cookie or other valid authentication credential.")
                    answer = _error_body(401, "required", message)
                    answer["error"]["status"] = "UNAUTHENTICATED"
                    self._send(401, answer)
                    return
            body: dict[str, Any] = json.loads(raw or b"{}") if raw else {}
            for route_method, pattern, name in _ROUTES:
                match = pattern.match(url.path)
                if route_method != method or not match:
                    continue
                if name == "insert":
                    self._send(*standin.insert(match.group(1), body, principal))
                elif name == "query":
                    self._send(*standin.query(match.group(1), body, principal))
                elif name == "cancel":
                    self._send(*standin.cancel(match.group(2)))
                elif name == "get":
                    self._send(*standin.get(match.group(2)))
                else:
                    job = standin.jobs.get(match.group(2))
                    if job is None:
                        self._send(404, _error_body(404, "notFound", f"Not found: Job {match.group(2)}"))
                    else:
                        self._send(200, standin.results(job, params))
                return
            self._send(404, _error_body(404, "notFound", f"the stand-in does not serve {method} {url.path}"))

        def do_GET(self) -> None:  # noqa: N802 - stdlib name
            if self.path == "/health":
                self._send(200, {"status": "ok"})
                return
            self._dispatch("GET")

        def do_POST(self) -> None:  # noqa: N802 - stdlib name
            self._dispatch("POST")

    return Handler


if __name__ == "__main__":  # python tests/integration/bigquery_standin.py: serve on a free port until Ctrl-C
    with BigQueryStandin() as server:
        print(f"BigQuery stand-in on {server.url}", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
