"""Engines run a dataset's rendered SQL. One module per engine behind the small :class:`Engine` protocol.

The Airflow operator and ``dli dataset run --local`` share them. Engines are looked up by name
(``duckdb``, ``trino``, ``bigquery``) and imported lazily, so a DuckDB run never imports a Google SDK.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Protocol

#: Rows kept per statement in a result (what the CLI prints and the operator pushes to XCom).
DEFAULT_MAX_ROWS = 1000


@dataclass(frozen=True)
class StatementResult:
    """What one statement did: its SQL, the rows it affected, and (for queries) the first rows."""

    sql: str
    rows_affected: int | None = None
    columns: tuple[str, ...] = ()
    rows: tuple[tuple[Any, ...], ...] = ()
    truncated: bool = False
    query_id: str | None = None
    bytes_processed: int | None = None
    seconds: float = 0.0


@dataclass(frozen=True)
class RunResult:
    statements: tuple[StatementResult, ...] = field(default_factory=tuple)

    @property
    def last(self) -> StatementResult | None:
        return self.statements[-1] if self.statements else None

    def records(self) -> list[dict[str, Any]]:
        """The last statement's rows as objects keyed by column name."""
        last = self.last
        if last is None:
            return []
        return [dict(zip(last.columns, row)) for row in last.rows]

    def summary(self, max_rows: int = 20) -> dict[str, Any]:
        """A small, JSON-safe summary (for XCom): per statement rows affected, the last rows, bounded."""
        last = self.last
        rows = [[_json_safe(v) for v in row] for row in (last.rows[:max_rows] if last else ())]
        return {
            "statements": len(self.statements),
            "rows_affected": [s.rows_affected for s in self.statements],
            "query_ids": [s.query_id for s in self.statements if s.query_id],
            "columns": list(last.columns) if last else [],
            "rows": rows,
            "rows_truncated": bool(last and (last.truncated or len(last.rows) > max_rows)),
        }


def _json_safe(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


class Engine(Protocol):
    """Runs rendered SQL. Implementations live in ``dli_airflow.engines.<name>``."""

    name: str
    dialect: str

    def run(self, statements: list[str], *, max_rows: int = DEFAULT_MAX_ROWS) -> RunResult:
        """Run statements in order; stop at the first error (raise an ``ExecutionError``)."""

    def cancel(self) -> None:
        """Cancel what is running (from ``on_kill`` or a timeout); safe to call at any time."""


ENGINES: dict[str, str] = {
    "duckdb": "dli_airflow.engines.duckdb:DuckDBEngine",
    "trino": "dli_airflow.engines.trino:TrinoEngine",
    "bigquery": "dli_airflow.engines.bigquery:BigQueryEngine",
}


def engine_class(name: str) -> type:
    """The engine class for ``name`` (imported on first use)."""
    from dli_airflow.errors import ConfigError

    target = ENGINES.get(name)
    if target is None:
        raise ConfigError(f"unknown engine {name!r}", hint=f"use one of: {', '.join(ENGINES)}")
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        extra = {"bigquery": "bigquery"}.get(name)
        raise ConfigError(
            f"the {name} engine is not available: {exc}",
            hint=f"pip install 'dli-airflow[{extra}]'" if extra else "reinstall dli-airflow",
        ) from exc
    return getattr(module, attr)
