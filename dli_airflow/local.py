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
from dli_airflow.engines.duckdb import DuckDBEngine
from dli_airflow.errors import ParameterError, TranspileError
from dli_airflow.spec import DatasetSpec
from dli_airflow.sql import parse_sql, render_sql, resolve_parameters, split_statements, sql_literal
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
    #: (line, column) where each statement starts in the rendered SQL of the engine's dialect
    positions: tuple[tuple[int, int], ...] = ()


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
    positions = statement_positions(sql, statements)
    transpiled_from = None
    if target_dialect and target_dialect != engine:
        statements = [
            transpile(s, engine, target_dialect, path, line=line, column=column)
            for s, (line, column) in zip(statements, positions)
        ]
        transpiled_from = engine
    return RenderedRun(
        dataset=spec.name,
        engine=engine,
        dialect=target_dialect or engine,
        parameters=values,
        statements=tuple(statements),
        transpiled_from=transpiled_from,
        positions=tuple(positions),
    )


def statement_positions(sql: str, statements: list[str]) -> list[tuple[int, int]]:
    """The (line, column) where each statement of :func:`split_statements` starts in ``sql`` (1-based)."""
    positions: list[tuple[int, int]] = []
    cursor = 0
    for statement in statements:
        found = sql.find(statement, cursor)
        if found < 0:  # pragma: no cover - split_statements returns substrings
            positions.append((1, 1))
            continue
        cursor = found + len(statement)
        line = sql.count("\n", 0, found) + 1
        positions.append((line, found - (sql.rfind("\n", 0, found) + 1) + 1))
    return positions


def transpile(sql: str, read: str, write: str, path: str = "<sql>", *, line: int = 1, column: int = 1) -> str:
    """Transpile SQL between dialects; refuse what sqlglot cannot translate faithfully.

    For Trino and BigQuery SQL on DuckDB, constructs whose DuckDB translation would compute something
    else are refused (or rewritten to a faithful form) by :func:`_faithful_for_duckdb`; the rest is
    generated with ``unsupported_level=RAISE``. A refusal is a :class:`TranspileError` (DLI-301) naming
    the construct and its line.

    :param line: the line of ``path`` where ``sql`` starts, so that errors point into the file.
    :param column: the column of ``path`` where ``sql`` starts.
    """
    import sqlglot
    from sqlglot.errors import ErrorLevel, ParseError, TokenError, UnsupportedError

    # pad so that sqlglot's positions are the file's (the output never keeps the padding)
    padded = "\n" * max(line - 1, 0) + " " * max(column - 1, 0) + sql
    try:
        expressions = [e for e in sqlglot.parse(padded, read=read) if e is not None]
    except ParseError as exc:
        first = exc.errors[0] if exc.errors else {}
        where = f":{first.get('line')}:{first.get('col')}" if first.get("line") else ""
        # name the construct: the word before the unexpected token too (QUALIFY in `QUALIFY row_number()`)
        before = (first.get("start_context") or "").split()
        token = " ".join(([before[-1]] if before else []) + ([first["highlight"]] if first.get("highlight") else []))
        near = f" near {token!r}" if token else ""
        raise TranspileError(
            f"{path}{where}: the SQL does not parse as {read}{near}: {first.get('description') or exc}",
            hint=f"fix the SQL near the position shown (is it valid {read} SQL?)",
        ) from None
    except TokenError as exc:
        raise TranspileError(f"{path}: the SQL does not tokenize as {read}: {exc}") from None
    out: list[str] = []
    for expression in expressions:
        if write == "duckdb" and read in _SOURCE_RULES:
            expression = _faithful_for_duckdb(expression, read, path, padded)
        try:
            out.append(expression.sql(dialect=write, unsupported_level=ErrorLevel.RAISE))
        except UnsupportedError as exc:
            node = _unsupported_node(expression, write)
            raise TranspileError(
                f"{_where(path, node, padded)}: {_construct(node, read)} cannot run on {write}: {exc}"
            ) from None
    return ";\n".join(out)


#: DuckDB settings under which transpiled SQL computes like its source engine.
SOURCE_SETTINGS: dict[str, dict[str, Any]] = {
    # Trino divides integers as integers (7 / 2 = 3, -7 / 2 = -3): so does DuckDB with this setting,
    # whatever the operands' types turn out to be at run time
    "trino": {"integer_division": True},
    "bigquery": {},
}

#: What sqlglot translates to DuckDB SQL that computes something else, per source dialect:
#: expression class name -> why it is refused. (Checked on the source SQL, before any rewrite.)
_SOURCE_RULES: dict[str, dict[str, str]] = {
    "trino": {
        "ArrayDistinct": "Trino's array_distinct keeps the first occurrences in order and one NULL; "
        "DuckDB's list_distinct neither keeps the order nor NULLs",
        "ArrayPosition": "Trino's array_position returns 0 for a missing element; DuckDB's returns NULL",
        "Format": "Trino's format() takes Java format patterns (%s, %d); DuckDB's format() takes {} and "
        "would return the pattern unchanged",
    },
    "bigquery": {
        "Format": "BigQuery's FORMAT() takes printf patterns (%s, %d); DuckDB's format() takes {} and "
        "would return the pattern unchanged",
        "SafeFunc": "the SAFE. prefix (NULL instead of an error) has no DuckDB translation",
    },
}

_DATE_UNITS = {"DAY", "WEEK", "MONTH", "QUARTER", "YEAR"}
#: Trino EXTRACT fields and the DuckDB field that means the same.
_TRINO_EXTRACT = {"DOW": "ISODOW", "DAY_OF_WEEK": "ISODOW", "DOY": "DOY", "DAY_OF_YEAR": "DOY",
                  "YOW": "ISOYEAR", "YEAR_OF_WEEK": "ISOYEAR", "DAY_OF_MONTH": "DAY"}


def _faithful_for_duckdb(expression: Any, read: str, path: str, source: str = "") -> Any:
    """Refuse what would compute differently on DuckDB, and rewrite what has a faithful DuckDB form.

    Rewrites (each checked by the transpile table in tests/unit/test_transpile.py):
    Trino ``date_diff`` and BigQuery ``TIMESTAMP_DIFF`` count whole units elapsed (DuckDB ``date_sub``),
    not unit boundaries crossed (DuckDB ``date_diff``); date arithmetic on a DATE stays a DATE (DuckDB
    widens it to a TIMESTAMP); a bare DECIMAL/NUMERIC keeps its source precision (DuckDB's is (18,3));
    BigQuery's ``1.5`` is a FLOAT64, not a DECIMAL;
    day-of-week numbering; a DOUBLE cast to an integer rounds halves away from zero; Trino ``slice`` takes
    a length; Trino ``array_max``/``array_min`` are NULL when an element is NULL.
    """
    from sqlglot import exp
    from sqlglot.optimizer.annotate_types import annotate_types

    refused = _SOURCE_RULES[read]
    for node in expression.walk():
        reason = refused.get(type(node).__name__)
        if reason is None:
            reason = _refusal(node, read)
        if reason:
            raise TranspileError(
                f"{_where(path, node, source)}: {_construct(node, read)} cannot run faithfully on DuckDB: {reason}"
            )
    try:
        expression = annotate_types(expression, dialect=read)
    except Exception:  # noqa: BLE001 - types only refine the rewrites below; without them nothing changes type
        pass

    def is_date(node: Any) -> bool:
        return node is not None and getattr(node, "type", None) is not None and node.is_type(exp.DataType.Type.DATE)

    def unit_of(node: Any) -> str:
        return (node.text("unit") or "DAY").upper()

    def whole_units(node: Any, start: Any, end: Any) -> Any:
        return exp.Anonymous(this="DATE_SUB", expressions=[exp.Literal.string(unit_of(node).lower()), start, end])

    def rewrite(node: Any) -> Any:
        if read == "trino" and isinstance(node, exp.DateDiff):
            return whole_units(node, node.expression, node.this)
        if read == "bigquery" and isinstance(node, exp.TimestampDiff):
            return whole_units(node, node.expression, node.this)
        if isinstance(node, exp.Extract):
            field = node.this.name.upper() if isinstance(node.this, (exp.Var, exp.Identifier)) else ""
            if read == "trino" and field in _TRINO_EXTRACT:
                return exp.Extract(this=exp.var(_TRINO_EXTRACT[field]), expression=node.expression)
            if read == "bigquery" and field == "DAYOFWEEK":  # BigQuery: Sunday = 1 .. Saturday = 7
                return exp.paren(exp.Add(this=node, expression=exp.Literal.number(1)), copy=False)
            if read == "bigquery" and field == "ISOWEEK":
                return exp.Extract(this=exp.var("WEEK"), expression=node.expression)
        if read == "bigquery" and isinstance(node, exp.Literal) and not node.is_string and "." in node.this:
            # BigQuery's 1.5 is a FLOAT64; DuckDB's is a DECIMAL: 1.5e0 is DuckDB's DOUBLE
            double = node if "e" in node.this.lower() else exp.Literal.number(node.this + "e0")
            double.type = exp.DataType.build("DOUBLE")
            return double
        if isinstance(node, exp.DataType) and node.this == exp.DataType.Type.DECIMAL and not node.expressions:
            return exp.DataType.build("DECIMAL(38, 0)" if read == "trino" else "DECIMAL(38, 9)")
        if isinstance(node, (exp.Cast, exp.TryCast)) and node.to.is_type(*exp.DataType.INTEGER_TYPES):
            if getattr(node.this, "type", None) is not None and node.this.is_type(*exp.DataType.REAL_TYPES):
                node.set("this", exp.Round(this=node.this))
            return node
        if read == "trino" and isinstance(node, exp.ArraySlice):
            start, length = node.args.get("start"), node.args.get("end")
            end = int(start.name) + int(length.name) - 1  # checked by _refusal: positive integer literals
            node.set("end", exp.Literal.number(end))
            return node
        if read == "trino" and isinstance(node, (exp.ArrayMax, exp.ArrayMin)):
            items = node.this
            has_null = exp.LT(
                this=exp.Anonymous(this="LIST_COUNT", expressions=[items.copy()]),
                expression=exp.Anonymous(this="LEN", expressions=[items.copy()]),
            )
            return exp.Case(ifs=[exp.If(this=has_null, true=exp.null())], default=node)
        if read == "bigquery" and isinstance(node, (exp.DateAdd, exp.DateSub, exp.DateTrunc)):
            # BigQuery's DATE_ADD/DATE_SUB/DATE_TRUNC return a DATE; DuckDB's return a TIMESTAMP
            return _as_date(node)
        if read == "trino" and is_date(node):
            date_function = (exp.DateAdd, exp.DateSub, exp.DateTrunc, exp.TimestampTrunc)
            if isinstance(node, date_function) and unit_of(node) in _DATE_UNITS:
                return _as_date(node)
            if isinstance(node, (exp.Add, exp.Sub)) and any(
                isinstance(side, exp.Interval) and side.text("unit").upper() in _DATE_UNITS
                for side in (node.this, node.expression)
            ):
                return _as_date(node)
        return node

    # children first, so a rewrite sees its arguments already rewritten (Expression.transform would not
    # visit the inside of a node it replaced)
    root = expression
    for node in reversed(list(expression.walk(bfs=False))):
        parent, key, index = node.parent, node.arg_key, node.index
        new = rewrite(node)
        if new is node:
            continue
        if parent is None:
            root = new
        else:
            parent.set(key, new, index)
    return root


def _as_date(node: Any) -> Any:
    from sqlglot import exp

    return exp.Cast(this=node, to=exp.DataType.build("DATE"))


def _refusal(node: Any, read: str) -> str | None:
    """Why one node of the source SQL cannot be translated faithfully (None: it can)."""
    from sqlglot import exp

    if isinstance(node, exp.Anonymous):
        name = node.name.upper()
        hint = " (use IF(condition, a, b))" if name == "IFF" else ""
        return (
            f"{name} is not a {read} function the transpiler (sqlglot) knows, so nothing guarantees DuckDB "
            f"computes the same{hint}"
        )
    if read == "trino" and isinstance(node, exp.ArraySlice):
        start, length = node.args.get("start"), node.args.get("end")
        literal = all(
            isinstance(v, exp.Literal) and not v.is_string and v.name.isdigit() for v in (start, length)
        )
        if not literal or int(start.name) < 1:
            return (
                "Trino's slice(array, start, length) takes a length where DuckDB's array_slice takes an end; "
                "only positive literal start and length are translated"
            )
    if read == "trino" and isinstance(node, exp.Div):
        sides = (node.this, node.expression)
        decimal = any(
            (isinstance(side, exp.Literal) and not side.is_string and "." in side.name and "e" not in side.name.lower())
            or (isinstance(side, exp.Cast) and side.to.is_type(exp.DataType.Type.DECIMAL))
            for side in sides
        )
        double = any(
            (isinstance(side, exp.Literal) and not side.is_string and "e" in side.name.lower())
            or (isinstance(side, exp.Cast) and side.to.is_type(exp.DataType.Type.DOUBLE, exp.DataType.Type.FLOAT))
            for side in sides
        )
        if decimal and not double:
            return (
                "Trino rounds a DECIMAL quotient to the larger scale of its operands (1.0 / 3 = 0.3); DuckDB "
                "returns a DOUBLE (0.333...); cast one side to DOUBLE to say which you mean"
            )
    if read == "bigquery" and isinstance(node, exp.Unnest) and node.args.get("offset"):
        return "BigQuery's WITH OFFSET counts from 0; DuckDB's WITH ORDINALITY counts from 1"
    if read == "bigquery" and isinstance(node, exp.Extract):
        field = node.this.sql(dialect="bigquery").upper() if node.this is not None else ""
        if field.startswith("WEEK"):
            return (
                "BigQuery's WEEK counts weeks starting on Sunday (or the day given); DuckDB's WEEK is the ISO "
                "week; use ISOWEEK if that is what you mean"
            )
    if read == "bigquery" and isinstance(node, exp.DataType) and node.this == exp.DataType.Type.BIGDECIMAL:
        return "BIGNUMERIC has up to 76 digits; DuckDB's DECIMAL stops at 38"
    return None


def _unsupported_node(expression: Any, write: str) -> Any:
    """The smallest part of ``expression`` that sqlglot cannot generate in ``write`` (to name it)."""
    from sqlglot import exp
    from sqlglot.errors import ErrorLevel, UnsupportedError

    culprit = expression
    for node in expression.walk():
        if node is expression or isinstance(node, (exp.Identifier, exp.Literal, exp.Column, exp.Var)):
            continue
        if culprit is not expression and not _within(node, culprit):
            continue
        try:
            node.sql(dialect=write, unsupported_level=ErrorLevel.RAISE)
        except UnsupportedError:
            culprit = node
    return culprit


def _within(node: Any, ancestor: Any) -> bool:
    parent = node.parent
    while parent is not None:
        if parent is ancestor:
            return True
        parent = parent.parent
    return False


def _where(path: str, node: Any, source: str = "") -> str:
    """``path:line`` of a node of the source SQL: its own position, else that of a part of it or of an
    enclosing node, else the first line of ``source`` holding its first word."""
    import re

    scope = node
    while scope is not None:
        for part in scope.walk():
            line = part.meta.get("line") if part.meta else None
            if line:
                return f"{path}:{line}"
        if scope.parent is not None and len(list(scope.parent.walk())) > 200:
            break  # do not point at some other part of a long statement
        scope = scope.parent
    word = re.match(r"\W*(\w+)", node.sql())
    found = re.search(rf"\b{re.escape(word.group(1))}\b", source, re.I) if word else None
    if found:
        return f"{path}:{source.count(chr(10), 0, found.start()) + 1}"
    return path


def _construct(node: Any, read: str) -> str:
    text = " ".join(node.sql(dialect=read).split())
    return f"`{text if len(text) <= 80 else text[:77] + '...'}`"


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


class TranspiledDuckDBEngine(DuckDBEngine):
    """The DuckDB engine with the session settings under which transpiled SQL computes like its source.

    :param settings: DuckDB settings (``SET name = value``), e.g. :data:`SOURCE_SETTINGS` ``["trino"]``.
    """

    def __init__(self, path: str | None = None, *, settings: Mapping[str, Any]) -> None:
        super().__init__(path)
        self.settings = dict(settings)

    def connect(self) -> Any:
        import duckdb

        conn = super().connect()
        for name, value in self.settings.items():
            conn.execute(f"SET {name} = {sql_literal(value)}")
        try:
            # Trino sessions here and BigQuery compute dates of timestamps in UTC
            conn.execute("SET TimeZone = 'UTC'")
        except duckdb.Error:  # no ICU extension: then DuckDB computes TIMESTAMP WITH TIME ZONE in UTC anyway
            pass
        return conn


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
    if execution_date is None and entry.spec.parameter("execution_date") is not None:
        execution_date = today_in(entry.spec)
    path = entry.sql_path or entry.path
    if dry_run and entry.spec.resolved_engine != "duckdb":
        # parse in the engine's own dialect first, so that errors point at the line and column of the file
        own = render_entry(entry, given, execution_date=execution_date)
        for statement, (line, column) in zip(own.statements, own.positions):
            parse_sql("\n" * (line - 1) + " " * (column - 1) + statement, own.dialect, path)
    rendered = render_entry(entry, given, execution_date=execution_date, target_dialect="duckdb")
    if dry_run:
        for statement in rendered.statements:
            parse_sql(statement, "duckdb", path)
        return LocalRunResult(rendered, None, time.monotonic() - started)
    engine = DuckDBEngine(duckdb_path)
    if rendered.transpiled_from:
        engine = TranspiledDuckDBEngine(duckdb_path, settings=SOURCE_SETTINGS.get(rendered.transpiled_from, {}))
    result = engine.run(list(rendered.statements), max_rows=max_rows)
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
