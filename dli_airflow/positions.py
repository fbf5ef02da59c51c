"""Where a value stands in a statement, from sqlglot's syntax tree: bound, inlined, or refused.

Engines bind parameters where SQL takes an expression, with exceptions — checked on DuckDB 2.0, which
refuses ``ORDER BY $1`` and ``GROUP BY $1`` (a position, not a value), ``INTERVAL $1 DAY``,
``USING SAMPLE $1``, parameters in ``CREATE VIEW``/``CREATE MACRO``, column defaults and types; Trino and
BigQuery have no parameters in DDL or a sample size either. These positions are found statically on the
tree of the statement (:func:`classify`), never by trying the engine and catching its error. A value that
stands where SQL takes a *name* (a table, an alias, a dotted part) is a DLI-205. Nothing here touches
Airflow.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

from dli_airflow.errors import TemplateError
from dli_airflow.sentinels import Mark, Slot, dialect_of, placeholder_text

if TYPE_CHECKING:
    from sqlglot import exp

#: How a value gets into its statement: as the engine's parameter, or as its typed literal.
Verdict = Literal["bind", "inline"]

#: ``CREATE <kind>`` whose body no engine binds a parameter in.
_UNBINDABLE_OBJECTS = frozenset({"VIEW", "MATERIALIZED VIEW", "MACRO", "TABLE MACRO", "FUNCTION", "PROCEDURE"})


def classify(
    text: str, marks: Sequence[Mark], slots: Sequence[Slot], literals: Sequence[str], *, dialect: str, path: str,
    source: str | None = None,
) -> list[Verdict]:
    """``bind`` or ``inline`` for each mark of one statement (``identifier``/``literal`` slots: ``inline``).

    First the statement is parsed with each sentinel in place — a column name to sqlglot. A sentinel that
    parses as a lone column stands where an expression goes: bound, unless :func:`literal_only`. One that
    parses as another name (a table, an alias, a dotted part) is a DLI-205. One that sqlglot's grammar does
    not take as an expression (``USING SAMPLE n``, ``TABLESAMPLE BERNOULLI (n)``: the sentinel vanishes or
    the parse fails) is tried again as its literal: a position that takes a literal and no expression takes
    no parameter either (inlined). A statement sqlglot cannot parse either way binds its values: a value is
    then never in the text, and the engine itself says where it cannot bind one.

    :param literals: each mark's value as a literal of ``dialect`` (for the second try)
    :param source: the template (to show the placeholder in a message)
    :raises TemplateError: a value where a name goes
    """
    from sqlglot import exp

    verdicts: list[Verdict | None] = ["inline" if slots[m.slot].kind != "value" else None for m in marks]
    pending = [i for i, v in enumerate(verdicts) if v is None]
    if not pending:
        return [v or "inline" for v in verdicts]
    tree = _parse(text, dialect)
    if tree is not None:
        at = {marks[i].start: i for i in pending}
        for ident in tree.find_all(exp.Identifier):
            index = at.get(ident.meta.get("start", -1))
            if index is None or ident.this != text[marks[index].start : marks[index].end]:
                continue
            verdict = _verdict(ident)
            if verdict.startswith("error:"):
                line = slots[marks[index].slot].line
                bare = placeholder_text(source, line)
                subject = f"the placeholder {bare}" if bare else "a placeholder"
                raise TemplateError(
                    f"{path}:{line or '?'}: {subject} {verdict[6:]}",
                    hint="a value stands only where SQL takes an expression; for a name write "
                    "{{ name | identifier }}",
                )
            verdicts[index] = "bind" if verdict == "bind" else "inline" if verdict == "inline" else None
    unresolved = [i for i in pending if verdicts[i] is None]
    if unresolved:
        _retry_as_literals(text, marks, literals, unresolved, verdicts, dialect)
    return [v or "bind" for v in verdicts]


def _retry_as_literals(
    text: str, marks: Sequence[Mark], literals: Sequence[str], unresolved: list[int],
    verdicts: list[Verdict | None], dialect: str,
) -> None:
    """Parse again with the unresolved marks as literals; decide each from where its literal lands."""
    from sqlglot import exp

    out, spans, cursor, size = [], {}, 0, 0
    for i, mark in enumerate(marks):
        piece = literals[i] if i in unresolved else text[mark.start : mark.end]
        out.append(text[cursor : mark.start])
        size += mark.start - cursor
        spans[i] = (size, size + len(piece))
        out.append(piece)
        size += len(piece)
        cursor = mark.end
    out.append(text[cursor:])
    retry = _parse("".join(out), dialect)
    for i in unresolved:
        if retry is None:
            verdicts[i] = "bind"
            continue
        start, end = spans[i]
        found = [n for n in retry.find_all(exp.Literal) if start <= n.meta.get("start", -1) < end]
        # not found: sqlglot kept the literal as text (a type's length, a command's argument)
        verdicts[i] = "inline" if not found or literal_only(_outermost(found[0])) else "bind"


def _parse(text: str, dialect: str) -> exp.Expression | None:
    from sqlglot.errors import ParseError, TokenError

    try:
        parsed = [p for p in dialect_of(dialect).parse(text) if p is not None]
    except (ParseError, TokenError, RecursionError):
        return None
    return parsed[0] if len(parsed) == 1 else None


def _verdict(ident: exp.Identifier) -> str:
    """What a sentinel parsed as an identifier is: ``bind``/``inline``, ``""`` (try as a literal), or an error."""
    from sqlglot import exp

    parent = ident.parent
    if isinstance(parent, exp.Column):
        if ident.arg_key != "this" or any(parent.args.get(k) for k in ("table", "db", "catalog")):
            return "error:is part of a dotted name"
        return "inline" if literal_only(parent) else "bind"
    if isinstance(parent, exp.Copy):
        return ""  # a file name: tried again as a literal
    if isinstance(parent, exp.Table):
        return "error:stands where a table name goes"
    if isinstance(parent, (exp.Alias, exp.TableAlias)):
        return "error:stands where an alias goes"
    return "error:stands where a name goes"


def _outermost(node: exp.Expression) -> exp.Expression:
    """A literal with its sign or its type keyword (``-5``, ``DATE '…'``): the node the value is."""
    from sqlglot import exp

    while isinstance(node.parent, (exp.Neg, exp.Cast)) and node.parent.parent is not None:
        node = node.parent
    return node


def literal_only(node: exp.Expression) -> bool:
    """Whether an expression stands where engines take a literal but no parameter (see the module doc)."""
    from sqlglot import exp

    parent = node.parent
    if isinstance(parent, exp.Ordered) and parent.this is node:
        return True
    if isinstance(parent, exp.Group) or (isinstance(parent, exp.Interval) and parent.this is node):
        return True
    ancestor: exp.Expression | None = parent
    while ancestor is not None:
        if isinstance(
            ancestor, (exp.TableSample, exp.DataType, exp.ColumnDef, exp.ColumnConstraint, exp.Pragma, exp.Command)
        ):
            return True
        if isinstance(ancestor, exp.Create) and str(ancestor.args.get("kind") or "").upper() in _UNBINDABLE_OBJECTS:
            return True
        ancestor = ancestor.parent
    return False


__all__ = ["Verdict", "classify", "literal_only"]
