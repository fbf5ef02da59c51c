"""Safe SQL rendering: a dataset's SQL template with validated parameters → statements with bound values.

A dataset's SQL is a Jinja template, rendered in a bounded sandbox (:mod:`dli_airflow.sandbox`: a time
and a size limit, bounded ``range``, no ``include``/``import``/``extends``). Every ``{{ expression }}``
becomes a sentinel and its value is kept apart; the engine then gets the statement with its own
placeholders and the values bound (:mod:`dli_airflow.bind`) — DuckDB named parameters, Trino
``EXECUTE IMMEDIATE … USING``, BigQuery query parameters — so a parameter value can never change a
statement. Identifiers come only through the explicit ``identifier`` filter. A placeholder inside a
string, a quoted identifier or a comment is refused (DLI-205) on sqlglot's tokens of the template rendered
with sentinels: once at validation (:func:`check_template`, one branch of the control flow) and again on
every render at run time (:func:`render_bound`, the run's own branch). The text with values inlined as
literals (:attr:`~dli_airflow.bind.BoundSql.display`) is for reading only. Nothing here touches Airflow.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING, Any

from dli_airflow.bind import BoundSql, BoundStatement, bind_sql, split_statements, sql_identifier, sql_literal
from dli_airflow.errors import ParameterError, TemplateError
from dli_airflow.sandbox import RenderLimits, SqlFragment, parse, refusal, render_with_sentinels
from dli_airflow.sentinels import DIALECTS, Slot, find_placeholders, sentinel, tokenize

if TYPE_CHECKING:
    from jinja2 import nodes

    from dli_airflow.catalog import SpecEntry
    from dli_airflow.spec import DatasetSpec

#: Names a template may read besides its parameters.
_BUILTIN_NAMES = frozenset({"params", "range", "dict", "cycler", "joiner", "namespace"})
#: How deep validation's sentinel render follows macro calls, and how much text it writes at most.
_STATIC_DEPTH = 8
_STATIC_MAX_CHARS = 4 * 1024 * 1024


# -- validation -----------------------------------------------------------------------------------------------


def check_template(sql: str, spec: DatasetSpec, path: str) -> None:
    """Check a dataset's SQL template without running it: syntax, refused tags, unknown names, placeholders.

    The template is rendered once with a sentinel for every ``{{ … }}`` along one branch of its control
    flow (the first branch of each ``{% if %}``, one pass of each ``{% for %}``, macros expanded where they
    are called) and read with sqlglot's tokenizer in the engine's dialect: a placeholder inside a string,
    a quoted identifier or a comment, or joined to other text, is a DLI-205. Every render at run time
    checks the same on the branch it takes.

    :raises TemplateError: naming the file, the line and the fix.
    """
    tree = parse(sql, path)
    read, macros = _scan(tree, path)
    names = {p.name for p in spec.parameters}
    unknown = sorted(read - names - _BUILTIN_NAMES)
    if unknown:
        import difflib

        close = difflib.get_close_matches(unknown[0], sorted(names), n=1)
        suggestion = f"did you mean {close[0]!r}? " if close else ""
        raise TemplateError(
            f"{path}: the SQL uses {', '.join(repr(n) for n in unknown)}, which the spec does not declare",
            hint=f"{suggestion}declare it under parameters, or fix the name (declared: {', '.join(sorted(names)) or 'none'})",
        )
    nonce = _nonce(sql)
    text, slots = _sentinel_render(tree, macros, nonce)
    if slots:
        dialect = spec.resolved_engine
        find_placeholders(text, tokenize(text, dialect, path), slots, nonce, dialect=dialect, path=path, source=sql)


#: This process's sentinel nonce, drawn once: the sentinel pattern is compiled once per process, not per
#: template (a cold parse checks every template). Values never enter the text, so only the template must
#: not contain it; a template that does gets a nonce of its own.
_PROCESS_NONCE = secrets.token_hex(4)


def _nonce(sql: str) -> str:
    nonce = _PROCESS_NONCE
    while nonce in sql:
        nonce = secrets.token_hex(4)
    return nonce


def _scan(tree: nodes.Template, path: str) -> tuple[set[str], dict[str, nodes.Macro]]:
    """One pass over the template: refused tags and names, the names it reads but does not set, its macros.

    Coarser than ``jinja2.meta.find_undeclared_variables`` about scopes (a name set anywhere counts as set
    everywhere) and a fraction of its cost, which runs once per spec on every cold parse; rendering stays
    strict (``StrictUndefined``) whatever this misses.
    """
    from jinja2 import nodes

    from dli_airflow.sandbox import environment

    filters = environment().filters
    read: set[str] = set()
    bound: set[str] = set()
    macros: dict[str, nodes.Macro] = {}
    for node in tree.find_all(nodes.Node):
        error = refusal(node, path)
        if error is not None:
            raise error
        if isinstance(node, nodes.Name):
            (read if node.ctx == "load" else bound).add(node.name)
        elif isinstance(node, nodes.Filter) and node.name not in filters:
            raise TemplateError(
                f"{path}:{node.lineno}: the filter {node.name!r} is not available in a dataset's SQL",
                hint=f"use one of: {', '.join(sorted(filters))}",
            )
        elif isinstance(node, nodes.For):
            bound.add("loop")
        elif isinstance(node, nodes.Macro):
            macros[node.name] = node
            bound.update((node.name, "varargs", "kwargs", "caller"))
        elif isinstance(node, nodes.CallBlock):
            bound.update(("varargs", "kwargs", "caller"))
    return read - bound, macros


def _sentinel_render(tree: nodes.Template, macros: Mapping[str, nodes.Macro], nonce: str) -> tuple[str, list[Slot]]:
    """The template's text along one branch of its control flow, a sentinel for every ``{{ … }}``."""
    from jinja2 import nodes

    out: list[str] = []
    slots: list[Slot] = []
    size = [0]

    def write(text: str) -> None:
        size[0] += len(text)
        if size[0] > _STATIC_MAX_CHARS:
            raise TemplateError(
                f"the SQL template expands to more than {_STATIC_MAX_CHARS:,} characters",
                hint="call fewer macros from macros",
            )
        out.append(text)

    def expression(node: nodes.Expr, depth: int, caller: list[nodes.Node] | None) -> None:
        if isinstance(node, nodes.Call) and isinstance(node.node, nodes.Name):
            # a macro's output is SQL text of the template: expanded where it is called (deeper than
            # _STATIC_DEPTH it is left out here; every run checks its own render)
            if node.node.name in macros:
                if depth < _STATIC_DEPTH:
                    body(macros[node.node.name].body, depth + 1, None)
                return
            if node.node.name == "caller" and caller is not None:
                if depth < _STATIC_DEPTH:
                    body(caller, depth + 1, None)
                return
        kind = node.name if isinstance(node, nodes.Filter) and node.name in ("identifier", "literal") else "value"
        slots.append(Slot(kind, None, node.lineno))  # type: ignore[arg-type]
        write(sentinel(nonce, len(slots) - 1))

    def body(items: list[nodes.Node], depth: int, caller: list[nodes.Node] | None) -> None:
        for node in items:
            if isinstance(node, nodes.Output):
                for child in node.nodes:
                    if isinstance(child, nodes.TemplateData):
                        write(child.data)
                    else:
                        expression(child, depth, caller)
            elif isinstance(node, (nodes.If, nodes.For, nodes.With, nodes.Scope, nodes.ScopedEvalContextModifier,
                                   nodes.Block)):
                body(node.body, depth, caller)
            elif isinstance(node, nodes.CallBlock):
                target = node.call.node
                if isinstance(target, nodes.Name) and target.name in macros:
                    if depth < _STATIC_DEPTH:
                        body(macros[target.name].body, depth + 1, node.body)
                else:
                    expression(node.call, depth, caller)

    body(tree.body, 0, None)
    return "".join(out), slots


# -- rendering ------------------------------------------------------------------------------------------------


def render_bound(
    sql: str,
    values: Mapping[str, Any],
    *,
    dialect: str = "duckdb",
    path: str = "<sql>",
    target: str | None = None,
    limits: RenderLimits | None = None,
) -> BoundSql:
    """Render a SQL template within its limits and bind its values for the engine.

    :param values: the run's validated parameters (in the context by name and as ``params``)
    :param dialect: the engine's dialect (``duckdb``, ``trino``, ``bigquery``)
    :param target: transpile each statement to this dialect and bind there (local runs on DuckDB)
    :param limits: default ``[dli] render_timeout_seconds`` and ``[dli] max_rendered_bytes``
    :raises TemplateError: any template failure or misplaced placeholder (DLI-205, with file and line)
    """
    text, state = render_with_sentinels(sql, values, path=path, limits=limits)
    return bind_sql(text, state.slots, state.nonce, dialect=dialect, path=path, source=sql,
                    target=target if target != dialect else None)


def render_sql(sql: str, values: Mapping[str, Any], *, dialect: str = "duckdb", path: str = "<sql>") -> str:
    """The rendered SQL with every value inlined as a typed literal — for reading (the UI, ``--dry-run``).

    What runs is :func:`render_bound`'s statements, with the values bound.
    """
    return render_bound(sql, values, dialect=dialect, path=path).display


def parse_sql(sql: str, dialect: str = "duckdb", path: str = "<sql>") -> list[Any]:
    """Parse rendered SQL with sqlglot; errors point at the line and column.

    :raises SqlExecutionError: with the position of the first error.
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
    """A dataset's SQL rendered for one run: the validated parameters and the bound statements."""

    dataset: str
    engine: str
    dialect: str
    parameters: dict[str, Any]
    statements: tuple[BoundStatement, ...]
    transpiled_from: str | None = None
    #: the whole rendered SQL with the values inlined, for reading
    display: str = ""

    @property
    def positions(self) -> tuple[tuple[int, int], ...]:
        """(line, column) where each statement starts in the rendered SQL of the engine's dialect."""
        return tuple((s.line, s.column) for s in self.statements)


def render_entry(
    entry: SpecEntry,
    given: Mapping[str, Any] | None = None,
    *,
    execution_date: date | None = None,
    target_dialect: str | None = None,
    limits: RenderLimits | None = None,
) -> RenderedRun:
    """Validate parameters, render the dataset's SQL and bind its values.

    :param execution_date: the date filled into ``execution_date`` when it is declared and not given.
    :param target_dialect: render for the engine's own dialect, then transpile to this one (local runs of
        Trino/BigQuery SQL on DuckDB), the values bound as parameters of the transpiled statements
    :param limits: the render's limits (default from ``[dli]``)
    """
    from dli_airflow.params import resolve_parameters

    spec = entry.spec
    values = resolve_parameters(spec, given, execution_date=execution_date)
    engine = spec.resolved_engine
    path = entry.sql_path or entry.path
    target = target_dialect if target_dialect and target_dialect != engine else None
    bound = render_bound(entry.sql, values, dialect=engine, path=path, target=target, limits=limits)
    if not bound.statements:
        raise ParameterError(f"{path}: the rendered SQL has no statement", hint="check the {% if %} blocks of the SQL")
    return RenderedRun(
        dataset=spec.name,
        engine=engine,
        dialect=target or engine,
        parameters=values,
        statements=bound.statements,
        transpiled_from=engine if target else None,
        display=bound.display,
    )


__all__ = [
    "DIALECTS",
    "BoundSql",
    "BoundStatement",
    "RenderLimits",
    "RenderedRun",
    "SqlFragment",
    "check_template",
    "parse_sql",
    "render_bound",
    "render_entry",
    "render_sql",
    "split_statements",
    "sql_identifier",
    "sql_literal",
]
