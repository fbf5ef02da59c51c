"""The embedded DuckDB engine (the default): one database file, statements run in order."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dli_airflow.engines import DEFAULT_MAX_ROWS, RunResult, StatementResult
from dli_airflow.errors import ExecutionError, ExecutionPermissionError, SqlExecutionError

if TYPE_CHECKING:
    import duckdb


class DuckDBEngine:
    """Runs SQL on a DuckDB database file (``[dli] duckdb_path`` unless ``path`` is given).

    :param path: the database file; ``":memory:"`` for a throw-away database.
    :param read_only: open the file read-only (dry runs, inspection).
    :param lock_timeout: seconds to wait while another process holds the file for writing.
    """

    name = "duckdb"
    dialect = "duckdb"

    def __init__(
        self, path: str | Path | None = None, *, read_only: bool = False, lock_timeout: float = 300.0
    ) -> None:
        from dli_airflow import config

        self.path = str(path) if path is not None else str(config.duckdb_path())
        self.read_only = read_only
        self.lock_timeout = lock_timeout
        self._conn: duckdb.DuckDBPyConnection | None = None
        self._lock = threading.Lock()

    def connect(self) -> duckdb.DuckDBPyConnection:
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

    def run(self, statements: list[str], *, max_rows: int = DEFAULT_MAX_ROWS) -> RunResult:
        import duckdb

        results: list[StatementResult] = []
        conn = self.connect()
        with self._lock:
            self._conn = conn
        try:
            for index, sql in enumerate(statements, start=1):
                started = time.monotonic()
                try:
                    cursor = conn.execute(sql)
                    columns, rows, truncated, affected = _fetch(cursor, max_rows)
                except duckdb.InterruptException as exc:
                    raise ExecutionError(f"statement {index} was cancelled", hint="run it again") from exc
                except duckdb.PermissionException as exc:
                    raise ExecutionPermissionError(f"statement {index}: {exc}") from exc
                except duckdb.Error as exc:
                    raise SqlExecutionError(
                        f"statement {index} of {len(statements)} failed on DuckDB: {_first_line(exc)}",
                        hint="fix the SQL; `dli dataset run NAME --local --dry-run` shows the rendered statements",
                    ) from exc
                results.append(
                    StatementResult(
                        sql=sql,
                        rows_affected=affected,
                        columns=columns,
                        rows=rows,
                        truncated=truncated,
                        seconds=time.monotonic() - started,
                    )
                )
        finally:
            with self._lock:
                self._conn = None
            conn.close()
        return RunResult(tuple(results))

    def cancel(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.interrupt()


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
