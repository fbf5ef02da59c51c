"""Engines run a dataset's rendered SQL. One module per engine behind the small :class:`Engine` protocol.

The Airflow operator and ``dli dataset run --local`` share them. Engines are looked up by name
(``duckdb``, ``trino``, ``bigquery``) and imported lazily, so a DuckDB run never imports a Google SDK.
The run loop and the cancel machinery they share live in :mod:`dli_airflow.engines._base`.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING, cast

from dli_airflow.engines._base import (
    DEFAULT_MAX_ROWS,
    BaseEngine,
    Engine,
    RunResult,
    StatementResult,
    Statements,
    connection_defined,
    run_cancellable,
)

if TYPE_CHECKING:
    from dli_airflow.spec import DatasetSpec

#: Engine name → ``module:class``, imported on first use.
ENGINES: dict[str, str] = {
    "duckdb": "dli_airflow.engines.duckdb:DuckDBEngine",
    "trino": "dli_airflow.engines.trino:TrinoEngine",
    "bigquery": "dli_airflow.engines.bigquery:BigQueryEngine",
}


def engine_class(name: str) -> type:
    """The engine class for ``name`` (imported on first use).

    :param name: ``duckdb``, ``trino`` or ``bigquery``
    :raises ConfigError: an unknown name, or an engine whose extra is not installed
    """
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


def engine_for(spec: DatasetSpec, *, duckdb_path: str | Path | None = None) -> Engine:
    """The engine that runs ``spec``'s SQL: its ``engine``, else ``[dli] default_engine``.

    :param spec: the dataset's spec; Trino and BigQuery read their connection, catalog, project… from it
    :param duckdb_path: the DuckDB database file (default ``[dli] duckdb_path``); DuckDB only
    """
    name = spec.resolved_engine
    cls = engine_class(name)
    if name == "duckdb":
        return cast("Engine", cls(duckdb_path))
    return cast("Engine", cls(spec=spec))


__all__ = [
    "DEFAULT_MAX_ROWS",
    "ENGINES",
    "BaseEngine",
    "Engine",
    "RunResult",
    "StatementResult",
    "Statements",
    "connection_defined",
    "engine_class",
    "engine_for",
    "run_cancellable",
]
