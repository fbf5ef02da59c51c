"""Local runs: ``dli dataset run NAME --local`` renders a dataset's SQL and runs it on this machine.

DuckDB datasets run as they are. Trino and BigQuery datasets run on DuckDB after sqlglot transpiles
the rendered SQL; what cannot be transpiled fails with a DLI-3xx error, never with wrong results.
No Airflow here.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from dli_airflow.engines import DEFAULT_MAX_ROWS, RunResult, run_cancellable
from dli_airflow.engines.duckdb import DuckDBEngine
from dli_airflow.errors import ParameterError
from dli_airflow.params import local_execution_date
from dli_airflow.render import RenderedRun, parse_sql, render_entry
from dli_airflow.spec import DatasetSpec
from dli_airflow.transpile import SOURCE_SETTINGS

if TYPE_CHECKING:
    from dli_airflow.catalog import SpecEntry

#: The longest date range a local run accepts (a typo such as 2042 instead of 2024 should not start 6,000 runs).
MAX_LOCAL_DATES = 3660


@dataclass(frozen=True)
class LocalRunResult:
    """One local run: what was rendered, what the engine did (``None`` for a dry run), how long it took."""

    rendered: RenderedRun
    result: RunResult | None
    seconds: float

    @property
    def execution_date(self) -> Any:
        return self.rendered.parameters.get("execution_date")


def run_dates(spec: DatasetSpec, start: date, end: date) -> list[date]:
    """The dates a range run covers: one per scheduled time whose local date is in [start, end].

    A dataset without a cron gets every calendar day. (DESIGN.md: the backfill rule.)
    """
    if end < start:
        raise ParameterError(f"--end {end} is before --start {start}", hint="swap them")
    if (end - start).days + 1 > MAX_LOCAL_DATES:
        raise ParameterError(
            f"the range {start}..{end} has {(end - start).days + 1} days; the limit is {MAX_LOCAL_DATES}",
            hint="split the range",
        )
    cron = spec.schedule.cron if spec.schedule else None
    if not cron:
        return [start + timedelta(days=i) for i in range((end - start).days + 1)]
    from croniter import croniter

    tz = ZoneInfo(spec.schedule.timezone if spec.schedule else "UTC")
    begin = datetime.combine(start, datetime.min.time(), tzinfo=tz) - timedelta(seconds=1)
    stop = datetime.combine(end + timedelta(days=1), datetime.min.time(), tzinfo=tz)
    dates: list[date] = []
    for moment in croniter(cron, begin).all_next(datetime):
        if moment >= stop:
            break
        local = moment.astimezone(tz).date()
        if not dates or dates[-1] != local:
            dates.append(local)
    return dates


def run_entry(
    entry: SpecEntry,
    given: Mapping[str, Any] | None = None,
    *,
    execution_date: date | None = None,
    dry_run: bool = False,
    duckdb_path: str | None = None,
    max_rows: int = DEFAULT_MAX_ROWS,
) -> LocalRunResult:
    """Run one dataset on this machine's DuckDB (or, with ``dry_run``, render and parse only).

    Trino and BigQuery SQL is parsed in its own dialect, transpiled to DuckDB (:func:`transpile`) and run
    with :data:`SOURCE_SETTINGS`.
    """
    started = time.monotonic()
    if execution_date is None:
        execution_date = local_execution_date(entry.spec)
    path = entry.sql_path or entry.path
    if dry_run and entry.spec.resolved_engine != "duckdb":
        # parse in the engine's own dialect first (placeholders and all), so that errors point at the line
        # and column of the file
        own = render_entry(entry, given, execution_date=execution_date)
        for statement in own.statements:
            parse_sql("\n" * (statement.line - 1) + " " * (statement.column - 1) + statement.sql, own.dialect, path)
    # Trino/BigQuery SQL is transpiled with its values' placeholders in place; they bind as DuckDB parameters
    rendered = render_entry(entry, given, execution_date=execution_date, target_dialect="duckdb")
    if dry_run:
        for statement in rendered.statements:
            parse_sql(statement.sql, "duckdb", path)
        return LocalRunResult(rendered, None, time.monotonic() - started)
    settings = SOURCE_SETTINGS.get(rendered.transpiled_from, {}) if rendered.transpiled_from else None
    engine = DuckDBEngine(duckdb_path, settings=settings)
    # in a worker thread, so that Ctrl-C cancels the query on DuckDB instead of waiting for it
    result = run_cancellable(engine, rendered.statements, max_rows=max_rows)
    return LocalRunResult(rendered, result, time.monotonic() - started)


def run_range(
    entry: SpecEntry,
    given: Mapping[str, Any] | None,
    start: date,
    end: date,
    *,
    dry_run: bool = False,
    duckdb_path: str | None = None,
    on_date: Callable[[date, int, int], None] | None = None,
) -> list[LocalRunResult]:
    """Run each date of [start, end] in order as ``execution_date``; stop at the first failure."""
    if entry.spec.parameter("execution_date") is None:
        raise ParameterError(
            f"dataset {entry.name!r} declares no execution_date parameter, so a date range means nothing for it",
            hint="drop --start/--end, or declare an execution_date parameter of type date",
        )
    if given and given.get("execution_date") is not None:
        raise ParameterError(
            "give either -p execution_date=… or --start/--end, not both", hint="drop -p execution_date"
        )
    dates = run_dates(entry.spec, start, end)
    results: list[LocalRunResult] = []
    for index, day in enumerate(dates):
        if on_date is not None:
            on_date(day, index, len(dates))
        results.append(run_entry(entry, given, execution_date=day, dry_run=dry_run, duckdb_path=duckdb_path))
    return results
