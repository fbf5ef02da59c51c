"""Transpiling a dataset's SQL from Trino or BigQuery to DuckDB, faithfully or not at all.

sqlglot parses the source dialect and generates DuckDB SQL with ``unsupported_level=RAISE``; before that,
the rules below refuse what sqlglot would translate into DuckDB SQL that computes something else
(DLI-301, naming the construct and its line) and rewrite what has a faithful DuckDB form. Each rule is
checked by the (source, DuckDB) table in tests/unit/test_transpile.py. Nothing here touches Airflow.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlglot import exp

from dli_airflow.errors import TranspileError


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


# -- rewrites: one small named rule per construct, in the order they are tried ----------------------------
#: A rewrite rule: the node's faithful DuckDB form (possibly the node itself, changed in place), or None
#: when the rule does not apply to the node.
Rule = Callable[[exp.Expression], "exp.Expression | None"]


def _is_date(node: exp.Expression | None) -> bool:
    return node is not None and getattr(node, "type", None) is not None and node.is_type(exp.DataType.Type.DATE)


def _unit_of(node: exp.Expression) -> str:
    return (node.text("unit") or "DAY").upper()


def _whole_units(node: exp.Expression, start: exp.Expression, end: exp.Expression) -> exp.Expression:
    return exp.Anonymous(this="DATE_SUB", expressions=[exp.Literal.string(_unit_of(node).lower()), start, end])


def _as_date(node: exp.Expression) -> exp.Expression:
    return exp.Cast(this=node, to=exp.DataType.build("DATE"))


def _extract_field(node: exp.Extract) -> str:
    return node.this.name.upper() if isinstance(node.this, (exp.Var, exp.Identifier)) else ""


def trino_date_diff_counts_whole_units(node: exp.Expression) -> exp.Expression | None:
    """Trino ``date_diff`` counts whole units elapsed (DuckDB ``date_sub``), not boundaries crossed."""
    return _whole_units(node, node.expression, node.this) if isinstance(node, exp.DateDiff) else None


def bigquery_timestamp_diff_counts_whole_units(node: exp.Expression) -> exp.Expression | None:
    """BigQuery ``TIMESTAMP_DIFF`` counts whole units elapsed, like DuckDB's ``date_sub``."""
    return _whole_units(node, node.expression, node.this) if isinstance(node, exp.TimestampDiff) else None


def trino_extract_fields(node: exp.Expression) -> exp.Expression | None:
    """Trino's day-of-week (Monday = 1), day-of-year and year-of-week fields under DuckDB's names."""
    if isinstance(node, exp.Extract) and _extract_field(node) in _TRINO_EXTRACT:
        return exp.Extract(this=exp.var(_TRINO_EXTRACT[_extract_field(node)]), expression=node.expression)
    return None


def bigquery_extract_fields(node: exp.Expression) -> exp.Expression | None:
    """BigQuery's DAYOFWEEK counts Sunday = 1 .. Saturday = 7; its ISOWEEK is DuckDB's WEEK."""
    if not isinstance(node, exp.Extract):
        return None
    field = _extract_field(node)
    if field == "DAYOFWEEK":
        return exp.paren(exp.Add(this=node, expression=exp.Literal.number(1)), copy=False)
    if field == "ISOWEEK":
        return exp.Extract(this=exp.var("WEEK"), expression=node.expression)
    return None


def bigquery_decimal_literal_is_a_double(node: exp.Expression) -> exp.Expression | None:
    """BigQuery's ``1.5`` is a FLOAT64; DuckDB's is a DECIMAL: ``1.5e0`` is DuckDB's DOUBLE."""
    if not (isinstance(node, exp.Literal) and not node.is_string and "." in node.this):
        return None
    double = node if "e" in node.this.lower() else exp.Literal.number(node.this + "e0")
    double.type = exp.DataType.build("DOUBLE")
    return double


def _bare_decimal(precision: str) -> Rule:
    def bare_decimal_keeps_its_source_precision(node: exp.Expression) -> exp.Expression | None:
        """A bare DECIMAL/NUMERIC keeps its source precision (DuckDB's own default is (18, 3))."""
        if isinstance(node, exp.DataType) and node.this == exp.DataType.Type.DECIMAL and not node.expressions:
            return exp.DataType.build(precision)
        return None

    return bare_decimal_keeps_its_source_precision


def real_to_integer_rounds_half_away_from_zero(node: exp.Expression) -> exp.Expression | None:
    """A DOUBLE cast to an integer rounds halves away from zero on the source engines."""
    if not (isinstance(node, (exp.Cast, exp.TryCast)) and node.to.is_type(*exp.DataType.INTEGER_TYPES)):
        return None
    if getattr(node.this, "type", None) is not None and node.this.is_type(*exp.DataType.REAL_TYPES):
        node.set("this", exp.Round(this=node.this))
    return node


def trino_slice_takes_a_length(node: exp.Expression) -> exp.Expression | None:
    """Trino ``slice(array, start, length)``; DuckDB's ``array_slice`` takes an end."""
    if not isinstance(node, exp.ArraySlice):
        return None
    start, length = node.args.get("start"), node.args.get("end")
    end = int(start.name) + int(length.name) - 1  # checked by _refusal: positive integer literals
    node.set("end", exp.Literal.number(end))
    return node


def trino_array_extremes_are_null_with_a_null(node: exp.Expression) -> exp.Expression | None:
    """Trino ``array_max``/``array_min`` are NULL when an element is NULL (DuckDB skips NULLs)."""
    if not isinstance(node, (exp.ArrayMax, exp.ArrayMin)):
        return None
    items = node.this
    has_null = exp.LT(
        this=exp.Anonymous(this="LIST_COUNT", expressions=[items.copy()]),
        expression=exp.Anonymous(this="LEN", expressions=[items.copy()]),
    )
    return exp.Case(ifs=[exp.If(this=has_null, true=exp.null())], default=node)


def bigquery_date_functions_return_a_date(node: exp.Expression) -> exp.Expression | None:
    """BigQuery's DATE_ADD/DATE_SUB/DATE_TRUNC return a DATE; DuckDB's return a TIMESTAMP."""
    return _as_date(node) if isinstance(node, (exp.DateAdd, exp.DateSub, exp.DateTrunc)) else None


def trino_date_arithmetic_stays_a_date(node: exp.Expression) -> exp.Expression | None:
    """Date arithmetic in whole days or more on a DATE stays a DATE on Trino (DuckDB widens it)."""
    if not _is_date(node):
        return None
    date_function = (exp.DateAdd, exp.DateSub, exp.DateTrunc, exp.TimestampTrunc)
    if isinstance(node, date_function) and _unit_of(node) in _DATE_UNITS:
        return _as_date(node)
    if isinstance(node, (exp.Add, exp.Sub)) and any(
        isinstance(side, exp.Interval) and side.text("unit").upper() in _DATE_UNITS
        for side in (node.this, node.expression)
    ):
        return _as_date(node)
    return None


#: The rewrite rules per source dialect, in the order they are tried on each node.
_REWRITES: dict[str, tuple[Rule, ...]] = {
    "trino": (
        trino_date_diff_counts_whole_units,
        trino_extract_fields,
        _bare_decimal("DECIMAL(38, 0)"),
        real_to_integer_rounds_half_away_from_zero,
        trino_slice_takes_a_length,
        trino_array_extremes_are_null_with_a_null,
        trino_date_arithmetic_stays_a_date,
    ),
    "bigquery": (
        bigquery_timestamp_diff_counts_whole_units,
        bigquery_extract_fields,
        bigquery_decimal_literal_is_a_double,
        _bare_decimal("DECIMAL(38, 9)"),
        real_to_integer_rounds_half_away_from_zero,
        bigquery_date_functions_return_a_date,
    ),
}


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
    rules = _REWRITES[read]

    def rewrite(node: exp.Expression) -> exp.Expression:
        for rule in rules:
            new = rule(node)
            if new is not None:
                return new
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


__all__ = ["SOURCE_SETTINGS", "transpile"]
