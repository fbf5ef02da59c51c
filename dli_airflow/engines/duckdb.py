"""The embedded DuckDB engine (the default): one database file, statements run in order, values bound.

Each statement runs as a prepared statement with its values as parameters (``?``, in order): DuckDB binds
parameters only in the last statement of a string, so statements run one at a time with exactly their own
values.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dli_airflow.engines._base import BaseEngine, StatementResult
from dli_airflow.errors import ExecutionError, ExecutionPermissionError, SqlExecutionError

if TYPE_CHECKING:
    import duckdb

    from dli_airflow.bind import BoundStatement


class DuckDBEngine(BaseEngine["duckdb.DuckDBPyConnection"]):
    """Runs SQL on a DuckDB database file (``[dli] duckdb_path`` unless ``path`` is given).

    :param path: the database file; ``":memory:"`` for a throw-away database.
    :param read_only: open the file read-only (dry runs, inspection).
    :param lock_timeout: seconds to wait while another process holds the file for writing.
    :param settings: DuckDB settings applied to each connection (``SET name = value``), then the session
        time zone is set to UTC; what a local run of transpiled Trino/BigQuery SQL needs to compute like
        its source. ``None`` (the default) leaves the connection as DuckDB opens it.
    """

    name = "duckdb"
    dialect = "duckdb"
    title = "DuckDB"

    def __init__(
        self,
        path: str | Path | None = None,
        *,
        read_only: bool = False,
        lock_timeout: float = 300.0,
        settings: Mapping[str, Any] | None = None,
    ) -> None:
        from dli_airflow import config

        super().__init__()
        self.path = str(path) if path is not None else str(config.duckdb_path())
        self.read_only = read_only
        self.lock_timeout = lock_timeout
        self.settings = dict(settings) if settings is not None else None

    def connect(self) -> duckdb.DuckDBPyConnection:
        """A connection to the database file, with :attr:`settings` applied.

        :raises ExecutionError: the file stays locked by another process for ``lock_timeout`` seconds
        """
        conn = self._connect_waiting()
        if self.settings is not None:
            try:
                self._apply_settings(conn, self.settings)
            except BaseException:
                conn.close()
                raise
        return conn

    # -- BaseEngine --------------------------------------------------------------------------------------
    def _open(self) -> duckdb.DuckDBPyConnection:
        conn = self.connect()
        self._track(conn)  # DuckDB interrupts the statement running on a connection
        return conn

    def _run_statement(
        self, session: duckdb.DuckDBPyConnection, statement: BoundStatement, *, index: int, total: int, max_rows: int
    ) -> StatementResult:
        import duckdb

        sql = statement.sql
        try:
            cursor = session.execute(sql, statement.positional() or None)
            columns, rows, truncated, affected = _fetch(cursor, max_rows)
        except duckdb.InterruptException as exc:
            raise self._cancelled_error(index, total) from exc
        except duckdb.PermissionException as exc:
            raise ExecutionPermissionError(f"statement {index}: {exc}") from exc
        except duckdb.Error as exc:
            raise SqlExecutionError(
                f"statement {index} of {total} failed on DuckDB: {_first_line(exc)}",
                hint="fix the SQL; `dli dataset run NAME --local --dry-run` shows the rendered statements",
            ) from exc
        return StatementResult(sql=sql, rows_affected=affected, columns=columns, rows=rows, truncated=truncated)

    def _cancel_handle(self, handle: duckdb.DuckDBPyConnection) -> None:
        handle.interrupt()

    def _cancelled_error(self, index: int, total: int, ref: str | None = None) -> ExecutionError:
        return ExecutionError(f"statement {index} was cancelled", hint="run it again")

    # -- internals ---------------------------------------------------------------------------------------
    def _connect_waiting(self) -> duckdb.DuckDBPyConnection:
        import duckdb

        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        # DuckDB lets one process write a file at a time: parallel tasks (LocalExecutor) and a local run
        # wait their turn instead of failing at once
        deadline = time.monotonic() + self.lock_timeout
        delay = 0.05
        while True:
            try:
                return duckdb.connect(self.path, read_only=self.read_only)
            except duckdb.IOException as exc:
                if "lock" not in str(exc).lower() or time.monotonic() >= deadline:
                    raise ExecutionError(
                        f"cannot open the DuckDB database {self.path}: {exc}",
                        hint="another process holds it open for writing; wait for it or set [dli] duckdb_path",
                    ) from exc
                time.sleep(delay)
                delay = min(delay * 2, 1.0)

    @staticmethod
    def _apply_settings(conn: duckdb.DuckDBPyConnection, settings: Mapping[str, Any]) -> None:
        import duckdb

        from dli_airflow.bind import sql_literal

        for name, value in settings.items():
            conn.execute(f"SET {name} = {sql_literal(value)}")
        try:
            # Trino sessions here and BigQuery compute dates of timestamps in UTC
            conn.execute("SET TimeZone = 'UTC'")
        except duckdb.Error:  # no ICU extension: then DuckDB computes TIMESTAMP WITH TIME ZONE in UTC anyway
            pass


def _fetch(cursor: Any, max_rows: int) -> tuple[tuple[str, ...], tuple[tuple[Any, ...], ...], bool, int | None]:
    description = cursor.description
    if not description:
        return (), (), False, None
    columns = tuple(d[0] for d in description)
    rows = cursor.fetchmany(max_rows + 1)
    truncated = len(rows) > max_rows
    rows = rows[:max_rows]
    # DuckDB answers INSERT/UPDATE/DELETE/CREATE TABLE AS with a single 'Count' column
    if columns == ("Count",) and len(rows) == 1:
        return columns, tuple(tuple(r) for r in rows), False, int(rows[0][0])
    return columns, tuple(tuple(r) for r in rows), truncated, (None if truncated else len(rows))


def _first_line(exc: Exception) -> str:
    return str(exc).strip()
