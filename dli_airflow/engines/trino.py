"""The Trino engine: the Trino provider's ``TrinoHook``, statement by statement on one connection.

The connection is the spec's ``conn_id`` (default ``trino_default``); the spec's ``catalog`` and
``schema`` override the connection's. A statement's values are bound: it is sent with ``?`` placeholders
and the values go through the client (``cursor.execute(sql, values)``), which sends
``EXECUTE IMMEDIATE '<statement>' USING <values>`` — the values formatted as literals there, never inside
the statement (servers without ``EXECUTE IMMEDIATE`` get ``PREPARE``/``EXECUTE … USING`` from the client). Each statement's query id and rows affected land in its
:class:`~dli_airflow.engines.StatementResult`; :meth:`TrinoEngine.cancel` cancels the running query on
the server (``DELETE nextUri``). Trino's errors become DLI errors: PERMISSION_DENIED → DLI-404, user
errors (syntax, missing table...) → DLI-405 with the line and column, internal/external/resource
errors → DLI-504. No credential ever reaches a message.
"""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING, Any

from dli_airflow.engines._base import BaseEngine, StatementResult
from dli_airflow.errors import (
    ConfigError,
    DliError,
    ExecutionError,
    ExecutionPermissionError,
    ServerExecutionError,
    SqlExecutionError,
    add_secret,
)

if TYPE_CHECKING:
    from trino.dbapi import Cursor

    from dli_airflow.bind import BoundStatement
    from dli_airflow.hooks.trino import DliTrinoHook
    from dli_airflow.spec import DatasetSpec

log = logging.getLogger(__name__)

#: The Airflow connection used when the spec names none.
DEFAULT_CONN_ID = "trino_default"
#: Trino error names that mean "not allowed".
PERMISSION_ERRORS = frozenset({"PERMISSION_DENIED", "ACCESS_DENIED"})


class TrinoEngine(BaseEngine["Cursor"]):
    """Runs SQL on Trino through the provider's ``TrinoHook``, on one cursor per run.

    :param spec: the dataset's spec (``conn_id``, ``catalog``, ``schema``).
    :param conn_id: the Airflow connection; default the spec's, else ``trino_default``.
    """

    name = "trino"
    dialect = "trino"
    title = "Trino"

    def __init__(self, spec: DatasetSpec | None = None, conn_id: str | None = None) -> None:
        super().__init__()
        self.spec = spec
        self.conn_id = conn_id or (spec.conn_id if spec is not None else None) or DEFAULT_CONN_ID
        self.catalog = spec.catalog if spec is not None else None
        self.schema = spec.db_schema if spec is not None else None
        self._secrets: tuple[str, ...] = ()

    def hook(self) -> DliTrinoHook:
        """The provider hook, with the spec's catalog and schema over the connection's."""
        from dli_airflow.hooks.trino import DliTrinoHook

        return DliTrinoHook(trino_conn_id=self.conn_id, catalog=self.catalog, db_schema=self.schema)

    # -- BaseEngine --------------------------------------------------------------------------------------
    def _open(self) -> Cursor:
        conn = self._connect()
        try:
            try:
                cursor = conn.cursor(stats_callback=self._on_stats)
            except TypeError:  # trino clients before 0.331 have no stats callback: cancel() alone then
                cursor = conn.cursor()
        except BaseException:
            conn.close()
            raise
        self._track(cursor)
        return cursor

    def _close(self, session: Cursor) -> None:
        session.connection.close()

    def _cancel_handle(self, handle: Cursor) -> None:
        handle.cancel()  # DELETE nextUri: the server stops the query

    def _run_statement(
        self, session: Cursor, statement: BoundStatement, *, index: int, total: int, max_rows: int
    ) -> StatementResult:
        import requests
        from trino.exceptions import Error as TrinoError
        from trino.exceptions import HttpError, TrinoQueryError

        cursor = session
        sql = statement.sql
        try:
            cursor.execute(sql, statement.positional() or None)
            log.info("Trino query %s: statement %d of %d", cursor.query_id, index, total)
            rows: list[Any] = []
            if cursor.description:
                rows = cursor.fetchmany(max_rows + 1)
            truncated = len(rows) > max_rows
            if truncated:
                cursor.cancel()  # the rest is not needed: free the server
        except TrinoQueryError as exc:
            if self.cancelled:
                raise self._cancelled_error(index, total, _query_ref(exc.query_id)) from exc
            raise self._query_error(exc, index, total) from exc
        except (HttpError, TrinoError, requests.RequestException) as exc:
            if self.cancelled:
                raise self._cancelled_error(index, total, _query_ref(cursor.query_id)) from exc
            raise self._transport_error(exc, index, total) from exc
        if self.cancelled:  # the client stops quietly once its query is cancelled
            raise self._cancelled_error(index, total, _query_ref(cursor.query_id))
        rows = rows[:max_rows]
        columns = tuple(d[0] for d in cursor.description or ())
        if cursor.update_type:
            affected = cursor.rowcount if cursor.rowcount >= 0 else None
        else:
            affected = None if truncated else len(rows)
        stats = cursor.stats or {}
        log.info(
            "Trino query %s: %s, %s row(s) affected",
            cursor.query_id,
            cursor.update_type or "query",
            "?" if affected is None else affected,
        )
        return StatementResult(
            sql=sql,
            rows_affected=affected,
            columns=columns,
            rows=tuple(tuple(r) for r in rows),
            truncated=truncated,
            query_id=cursor.query_id,
            bytes_processed=stats.get("processedBytes"),
        )

    def _redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    # -- internals -----------------------------------------------------------------------------------------
    def _connect(self) -> Any:
        from airflow.sdk.exceptions import AirflowException, AirflowNotFoundException
        from trino.exceptions import Error as TrinoError

        hook = self.hook()
        try:
            connection = hook.get_connection(self.conn_id)
            extra = connection.extra_dejson
            self._secrets = tuple(
                s for s in (connection.password, extra.get("jwt__token"), extra.get("password")) if s
            )
            for secret in self._secrets:
                add_secret(secret)  # also out of the CLI's messages and -v tracebacks
            return hook.get_conn()
        except AirflowNotFoundException as exc:
            raise ConfigError(
                f"the Airflow connection {self.conn_id!r} for Trino is not defined",
                hint=f"create it (UI, `airflow connections add`, or AIRFLOW_CONN_{self.conn_id.upper()}) "
                "or set conn_id in the spec",
            ) from exc
        except (TrinoError, ValueError, OSError, AirflowException) as exc:
            raise ExecutionError(
                f"cannot open a Trino connection with {self.conn_id!r}: {self._redact(str(exc))}",
                hint="check the connection's host, port, protocol and authentication settings",
            ) from exc

    def _on_stats(self, stats: dict[str, Any]) -> None:
        # called on every page the client receives: a cancel that came before the query had a nextUri
        # (so the client could not send the DELETE yet) is carried out here
        if not self.cancelled:
            return
        cursor = self._current()
        if cursor is not None and stats.get("state") not in {"FINISHED", "FAILED"}:
            cursor.cancel()

    def _query_error(self, exc: Any, index: int, total: int) -> DliError:
        where = f"statement {index} of {total}"
        qid = f" (query {exc.query_id})" if exc.query_id else ""
        name = exc.error_name or "UNKNOWN"
        message = self._redact(_strip_location(exc.message))
        if name in PERMISSION_ERRORS:
            return ExecutionPermissionError(f"{where} was refused by Trino{qid}: {message}")
        if name == "USER_CANCELED":
            return ExecutionError(
                f"{where} was cancelled on the Trino server{qid}: {message}",
                hint="someone cancelled the query on the server; run it again",
            )
        if exc.error_type == "USER_ERROR":
            location = exc.error_location
            at = f" at line {location[0]}, column {location[1]}" if location else ""
            return SqlExecutionError(f"{where} failed on Trino{qid}{at}: {name}: {message}")
        return ServerExecutionError(
            f"{where} failed inside Trino{qid}: {exc.error_type or 'ERROR'} {name}: {message}",
            hint="a server-side failure, not the SQL: the task retries; if it persists, give the query id "
            "to the Trino operators",
        )

    def _transport_error(self, exc: Exception, index: int, total: int) -> DliError:
        from trino.exceptions import HttpError, TrinoAuthError

        where = f"statement {index} of {total}"
        text = self._redact(str(exc))[:500]
        refused = isinstance(exc, HttpError) and text.startswith(("error 401", "error 403"))
        if refused or isinstance(exc, TrinoAuthError):
            return ExecutionPermissionError(
                f"{where}: Trino refused the credentials of connection {self.conn_id!r}: {text}",
                hint="check the connection's login and authentication settings",
            )
        if isinstance(exc, HttpError) and text.startswith("error 5"):
            return ServerExecutionError(f"{where}: Trino answered {text}", hint="the server failed; the task retries")
        return ExecutionError(
            f"{where}: cannot talk to Trino through connection {self.conn_id!r}: {text}",
            hint="check that Trino is up and the connection's host, port and protocol",
        )


def _query_ref(query_id: str | None) -> str | None:
    return f"query {query_id}" if query_id else None


def _strip_location(message: str) -> str:
    """Trino prefixes user errors with ``line 1:8: ``; the DLI message says the position itself."""
    return re.sub(r"^line \d+:\d+: ", "", (message or "").strip())
