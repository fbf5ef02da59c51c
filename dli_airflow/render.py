"""Safe SQL rendering: a dataset's SQL template with validated parameters → statements of the engine's dialect.

A dataset's SQL is a Jinja template. Every ``{{ expression }}`` is rendered as a SQL *literal* of the
value's type in the engine's dialect (``'o''brien'``, ``DATE '2024-01-15'``, ``42``, ``TRUE``), so a
parameter value can never change the statement's structure. Identifiers come only through the
explicit ``identifier`` filter. A placeholder written inside a quoted SQL string is refused with the fix.
This is the only module that builds SQL text. Nothing here touches Airflow.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from dli_airflow.errors import ParameterError, TemplateError

if TYPE_CHECKING:
    import jinja2

    from dli_airflow.catalog import SpecEntry
    from dli_airflow.spec import DatasetSpec

#: sqlglot dialect names per engine.
DIALECTS = {"duckdb": "duckdb", "trino": "trino", "bigquery": "bigquery"}


# -- literals ---------------------------------------------------------------------------------------------


class SqlFragment(str):
    """Text that goes into SQL as it is: only produced by the ``identifier`` filter and the renderer."""


def sql_literal(value: Any, dialect: str = "duckdb") -> str:
    """Render one Python value as a SQL literal of its type in ``dialect``."""
    from sqlglot import exp

    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise TemplateError(f"cannot render {value!r} as a SQL literal", hint="pass a finite number")
        return repr(value)
    if isinstance(value, datetime):
        return "TIMESTAMP " + exp.Literal.string(value.isoformat(sep=" ")).sql(dialect=DIALECTS.get(dialect, dialect))
    if isinstance(value, date):
        return f"DATE '{value.isoformat()}'"
    if isinstance(value, (list, tuple)):
        inner = ", ".join(sql_literal(v, dialect) for v in value)
        return f"({inner})"
    if isinstance(value, str):
        return exp.Literal.string(value).sql(dialect=DIALECTS.get(dialect, dialect))
    raise TemplateError(
        f"cannot render a {type(value).__name__} as a SQL literal",
        hint="render text, numbers, dates, booleans or lists of them",
    )


def sql_identifier(value: Any, dialect: str = "duckdb") -> SqlFragment:
    """Quote a value as a SQL identifier (``{{ suffix | identifier }}``); dotted names quote each part."""
    from sqlglot import exp

    text = str(value)
    if not text or "\x00" in text:
        raise TemplateError(f"{value!r} cannot be used as an identifier", hint="pass a non-empty name")
    parts = text.split(".")
    quoted = ".".join(exp.to_identifier(part, quoted=True).sql(dialect=DIALECTS.get(dialect, dialect)) for part in parts)
    return SqlFragment(quoted)


# -- templates --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Placeholder:
    line: int
    text: str


#: What ends each state of the SQL scanner: the next token that matters in plain SQL, the end of a
#: ``--`` comment, of a ``/* */`` comment, of each kind of quoted text.
_NEXT_IN_SQL = re.compile(r"--|/\*|['\"`]")
_END_OF = {
    "--": re.compile(r"\n"),
    "/*": re.compile(r"\*/"),
    "'": re.compile("'"),
    '"': re.compile('"'),
    "`": re.compile("`"),
}


def find_quoted_placeholders(source: str) -> list[_Placeholder]:
    """Placeholders written inside a quoted SQL string (``'{{ x }}'``), which the renderer would break.

    Jinja's lexer splits the template into SQL text and placeholders; the SQL text is scanned from one
    token that changes state to the next (a quote, a comment start or end), so the cost is per token,
    not per character. A doubled quote (``'it''s'``) leaves and re-enters the string, as SQL reads it.
    """
    from jinja2.exceptions import TemplateSyntaxError

    found: list[_Placeholder] = []
    state: str | None = None  # None: plain SQL; "--", "/*": in a comment; a quote: in quoted text
    current: list[str] = []
    start_line = 1
    try:
        tokens = list(_lexer().lex(source))
    except TemplateSyntaxError:
        return []  # reported by the syntax check
    for lineno, kind, value in tokens:
        if kind == "data":
            i = 0
            while True:
                match = (_NEXT_IN_SQL if state is None else _END_OF[state]).search(value, i)
                if match is None:
                    break
                state = match.group() if state is None else None
                i = match.end()
        elif kind == "variable_begin":
            current = []
            start_line = lineno
        elif kind == "variable_end":
            if state in ("'", '"', "`"):
                found.append(_Placeholder(start_line, "{{ " + " ".join("".join(current).split()) + " }}"))
        else:
            current.append(str(value))
    return found


@lru_cache(maxsize=1)
def _lexer() -> jinja2.Environment:
    from jinja2 import Environment

    return Environment()


@lru_cache(maxsize=8)
def _environment(dialect: str) -> jinja2.Environment:
    from jinja2 import StrictUndefined, Undefined
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def finalize(value: Any) -> str:
        if isinstance(value, SqlFragment):
            return str(value)
        if isinstance(value, Undefined):
            return str(value)  # StrictUndefined raises UndefinedError, naming the missing variable
        return sql_literal(value, dialect)

    env = ImmutableSandboxedEnvironment(
        undefined=StrictUndefined, finalize=finalize, autoescape=False, keep_trailing_newline=True
    )
    env.filters["identifier"] = lambda v: sql_identifier(v, dialect)
    env.filters["literal"] = lambda v: SqlFragment(sql_literal(v, dialect))
    return env


def check_template(sql: str, spec: DatasetSpec, path: str) -> None:
    """Check a dataset's SQL template without rendering it: syntax, hand-quoted placeholders, unknown names.

    :raises TemplateError: naming the file, the line and the fix.
    """
    from jinja2.exceptions import TemplateSyntaxError

    env = _environment("duckdb")
    try:
        ast = env.parse(sql)
    except TemplateSyntaxError as exc:
        raise TemplateError(
            f"{path}:{exc.lineno}: SQL template syntax error: {exc.message}",
            hint="check the {{ }} and {% %} pairs",
        ) from None
    quoted = find_quoted_placeholders(sql)
    if quoted:
        first = quoted[0]
        bare = first.text
        raise TemplateError(
            f"{path}:{first.line}: the placeholder {bare} is inside a quoted SQL string",
            hint=(
                f"write {bare} without the quotes: dli renders parameters as typed SQL literals "
                f"(e.g. WHERE d = {bare} becomes WHERE d = DATE '2024-01-15'); to build text, "
                "concatenate in Jinja: {{ 'prefix_' ~ name }}"
            ),
        )
    names = {p.name for p in spec.parameters}
    unknown = sorted(_free_names(ast) - names - {"params", "range", "dict", "lipsum", "cycler", "joiner", "namespace"})
    if unknown:
        import difflib

        close = difflib.get_close_matches(unknown[0], sorted(names), n=1)
        suggestion = f"did you mean {close[0]!r}? " if close else ""
        raise TemplateError(
            f"{path}: the SQL uses {', '.join(repr(n) for n in unknown)}, which the spec does not declare",
            hint=f"{suggestion}declare it under parameters, or fix the name (declared: {', '.join(sorted(names)) or 'none'})",
        )


def _free_names(ast: jinja2.nodes.Template) -> set[str]:
    """Names a template reads that it does not set itself (``{% set %}``, loop and macro variables).

    Coarser than ``jinja2.meta.find_undeclared_variables`` about scopes (a name set anywhere counts as
    set everywhere) and a third of its cost, which runs once per spec on every cold parse; rendering
    stays strict (``StrictUndefined``) whatever this misses.
    """
    from jinja2 import nodes

    read: set[str] = set()
    bound: set[str] = set()
    for node in ast.find_all(nodes.Name):
        (read if node.ctx == "load" else bound).add(node.name)
    if ast.find(nodes.For) is not None:
        bound.add("loop")
    for macro in ast.find_all(nodes.Macro):
        bound.add(macro.name)
    if ast.find(nodes.Macro) is not None or ast.find(nodes.CallBlock) is not None:
        bound.update(("varargs", "kwargs", "caller"))
    return read - bound


def render_sql(sql: str, values: Mapping[str, Any], *, dialect: str = "duckdb", path: str = "<sql>") -> str:
    """Render a SQL template with validated parameter values as typed literals."""
    from jinja2.exceptions import SecurityError, UndefinedError
    from jinja2.exceptions import TemplateError as JinjaTemplateError

    env = _environment(dialect)
    context = dict(values)
    context["params"] = dict(values)
    try:
        return env.from_string(sql).render(context)
    except UndefinedError as exc:
        raise TemplateError(f"{path}: {exc.message}", hint="declare the name under parameters") from None
    except TemplateError as exc:  # a value that has no SQL literal
        raise TemplateError(f"{path}: {exc.message}", hint=exc.hint) from None
    except SecurityError as exc:
        raise TemplateError(f"{path}: not allowed in a SQL template: {exc}") from None
    except JinjaTemplateError as exc:
        raise TemplateError(f"{path}: cannot render the SQL: {exc}") from None


def split_statements(sql: str, dialect: str = "duckdb") -> list[str]:
    """Split rendered SQL into statements (comments and empty statements dropped)."""
    import sqlglot
    from sqlglot.errors import ParseError, TokenError

    try:
        tokens = sqlglot.Dialect.get_or_raise(DIALECTS.get(dialect, dialect)).tokenize(sql)
    except TokenError:
        return [s for s in (part.strip() for part in sql.split(";")) if s]
    del ParseError
    statements: list[str] = []
    start = 0
    for token in tokens:
        if token.token_type.name == "SEMICOLON":
            chunk = sql[start : token.start].strip()
            if chunk and _has_code(chunk):
                statements.append(chunk)
            start = token.end + 1
    tail = sql[start:].strip()
    if tail and _has_code(tail):
        statements.append(tail)
    return statements


def _has_code(chunk: str) -> bool:
    without = re.sub(r"--[^\n]*|/\*.*?\*/", "", chunk, flags=re.S)
    return bool(without.strip())


def parse_sql(sql: str, dialect: str = "duckdb", path: str = "<sql>") -> list[Any]:
    """Parse rendered SQL with sqlglot; errors point at the line and column.

    :raises SqlParseError: with the position of the first error.
    """
    import sqlglot
    from sqlglot.errors import ParseError, TokenError

    from dli_airflow.errors import SqlExecutionError

    try:
        return [e for e in sqlglot.parse(sql, read=DIALECTS.get(dialect, dialect)) if e is not None]
    except ParseError as exc:
        first = exc.errors[0] if exc.errors else {}
        line, col = first.get("line"), first.get("col")
        where = f":{line}:{col}" if line else ""
        desc = first.get("description") or str(exc)
        raise SqlExecutionError(
            f"{path}{where}: the SQL does not parse as {dialect}: {desc}",
            hint="fix the SQL near the position shown",
        ) from None
    except TokenError as exc:
        raise SqlExecutionError(f"{path}: the SQL does not tokenize as {dialect}: {exc}") from None


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
    from dli_airflow.params import resolve_parameters

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
        from dli_airflow.transpile import transpile

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


__all__ = [
    "DIALECTS",
    "RenderedRun",
    "SqlFragment",
    "check_template",
    "find_quoted_placeholders",
    "parse_sql",
    "render_entry",
    "render_sql",
    "split_statements",
    "sql_identifier",
    "sql_literal",
    "statement_positions",
]
