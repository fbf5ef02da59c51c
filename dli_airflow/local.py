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
from typing import Any
from zoneinfo import ZoneInfo

from dli_airflow.engines import DEFAULT_MAX_ROWS, RunResult
from dli_airflow.errors import ParameterError, TranspileError
from dli_airflow.spec import DatasetSpec
from dli_airflow.sql import parse_sql, render_sql, resolve_parameters, split_statements
from dli_airflow.store import SpecEntry

#: The longest date range a local run accepts (a typo such as 2042 instead of 2024 should not start 6,000 runs).
MAX_LOCAL_DATES = 3660


@dataclass(frozen=True)
class RenderedRun:
    """A dataset's SQL rendered for one run: the validated parameters and the statements."""

    dataset: str
    engine: str
    dialect: str
    parameters: dict[str, Any]
    statements: tuple[str, ...]
    transpiled_from: str | None = None


@dataclass(frozen=True)
class LocalRunResult:
    rendered: RenderedRun
    result: RunResult | None
    seconds: float

    @property
    def execution_date(self) -> Any:
        return self.rendered.parameters.get("execution_date")


def today_in(spec: DatasetSpec) -> date:
    """Today's date in the spec's schedule time zone (UTC when it has no schedule)."""
    tz = ZoneInfo(spec.schedule.timezone if spec.schedule else "UTC")
    return datetime.now(tz).date()


def render_entry(
    entry: SpecEntry,
    given: Mapping[str, Any] | None = None,
    *,
    execution_date: date | None = None,
    target_dialect: str | None = None,
) -> RenderedRun:
    """Validate parameters and render the dataset's SQL.

    :param execution_date: the date filled into ``execution_date`` when it is declared and not given.
    :param target_dialect: render for the engine's own dialect, then transpile to this one (local runs of
        Trino/BigQuery SQL on DuckDB).
    """
    spec = entry.spec
    values = resolve_parameters(spec, given, execution_date=execution_date)
    engine = spec.resolved_engine
    path = entry.sql_path or entry.path
    sql = render_sql(entry.sql, values, dialect=engine, path=path)
    statements = split_statements(sql, engine)
    if not statements:
        raise ParameterError(f"{path}: the rendered SQL has no statement", hint="check the {% if %} blocks of the SQL")
    transpiled_from = None
    if target_dialect and target_dialect != engine:
        statements = [transpile(s, engine, target_dialect, path) for s in statements]
        transpiled_from = engine
    return RenderedRun(
        dataset=spec.name,
        engine=engine,
        dialect=target_dialect or engine,
        parameters=values,
        statements=tuple(statements),
        transpiled_from=transpiled_from,
    )


def transpile(sql: str, read: str, write: str, path: str = "<sql>") -> str:
    """Transpile one statement between dialects; refuse what sqlglot cannot translate faithfully."""
    import sqlglot
    from sqlglot.errors import ErrorLevel, ParseError, UnsupportedError

    try:
        out = sqlglot.transpile(sql, read=read, write=write, unsupported_level=ErrorLevel.RAISE)
    except UnsupportedError as exc:
        raise TranspileError(f"{path}: cannot run this {read} SQL on {write}: {exc}") from None
    except ParseError as exc:
        first = exc.errors[0] if exc.errors else {}
        where = f":{first.get('line')}:{first.get('col')}" if first.get("line") else ""
        raise TranspileError(
            f"{path}{where}: the SQL does not parse as {read}: {first.get('description') or exc}",
            hint="fix the SQL near the position shown",
        ) from None
    return ";\n".join(out)


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
    """Run one dataset on this machine's DuckDB (or, with ``dry_run``, render and parse only)."""
    from dli_airflow.engines.duckdb import DuckDBEngine

    started = time.monotonic()
    if execution_date is None and entry.spec.parameter("execution_date") is not None:
        execution_date = today_in(entry.spec)
    rendered = render_entry(entry, given, execution_date=execution_date, target_dialect="duckdb")
    if dry_run:
        path = entry.sql_path or entry.path
        for statement in rendered.statements:
            parse_sql(statement, "duckdb", path)
        return LocalRunResult(rendered, None, time.monotonic() - started)
    result = DuckDBEngine(duckdb_path).run(list(rendered.statements), max_rows=max_rows)
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
