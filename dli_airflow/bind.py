"""Statements with bound values: how each value of a rendered template reaches its engine.

The renderer (:mod:`dli_airflow.render`) writes a sentinel for every ``{{ … }}`` and keeps the value apart
(:mod:`dli_airflow.sentinels`). :func:`bind_sql` checks that every sentinel is a token of its own, splits
the text into statements on the tokenizer's semicolons, and builds each :class:`BoundStatement`:

- a value binds as the engine's parameter — DuckDB and Trino ``?`` (DuckDB's prepared statement; the
  Trino client sends the values in ``EXECUTE IMMEDIATE … USING``), BigQuery ``@dli_1`` (a named query
  parameter; never for a name) — and each statement binds only the values it uses (DuckDB binds only in
  the last statement of a string, and refuses a name a statement does not use);
- where sqlglot's tree shows a position no engine binds (:mod:`dli_airflow.positions`: ``ORDER BY n``,
  ``INTERVAL n DAY``, ``USING SAMPLE n``, ``CREATE VIEW``…), and for the ``identifier``/``literal``
  filters, the value's typed literal or quoted identifier is spliced in instead, and the statement's tokens
  must equal those with a neutral value of the same type except for that literal's own tokens;
- the *display* text (every value inlined as a literal) is for reading only — the UI's rendered-SQL
  field, ``--dry-run``, the task log. Nothing runs it.

A local run of Trino or BigQuery SQL on DuckDB transpiles each statement with its sentinels in place and
binds the values as DuckDB parameters of the result. With :mod:`dli_airflow.render`, the only place SQL
text is built. Nothing here touches Airflow.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

from dli_airflow.errors import TemplateError
from dli_airflow.positions import classify
from dli_airflow.sentinels import DIALECTS, Mark, Slot, dialect_of, find_placeholders, pattern, sentinel, tokenize

if TYPE_CHECKING:
    from sqlglot.tokens import Token


# -- literals and identifiers ---------------------------------------------------------------------------------


def sql_literal(value: Any, dialect: str = "duckdb") -> str:
    """One Python value as a SQL literal of its type in ``dialect`` (strings quoted by sqlglot's generator)."""
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
        return "(" + ", ".join(sql_literal(v, dialect) for v in value) + ")"
    if isinstance(value, str):
        return exp.Literal.string(value).sql(dialect=DIALECTS.get(dialect, dialect))
    raise TemplateError(
        f"cannot render a {type(value).__name__} as a SQL literal",
        hint="render text, numbers, dates, booleans or lists of them",
    )


def sql_identifier(value: Any, dialect: str = "duckdb") -> str:
    """A value as a quoted SQL identifier (``{{ suffix | identifier }}``); dotted names quote each part."""
    from sqlglot import exp

    text = str(value)
    if not text or "\x00" in text:
        raise TemplateError(f"{value!r} cannot be used as an identifier", hint="pass a non-empty name")
    return ".".join(
        exp.to_identifier(part, quoted=True).sql(dialect=DIALECTS.get(dialect, dialect)) for part in text.split(".")
    )


def _neutral(value: Any) -> Any:
    """A value of the same type and shape as ``value`` that no one chose (for the token comparison)."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return -1 if value < 0 else 0
    if isinstance(value, float):
        return -0.5 if value < 0 else 0.5
    if isinstance(value, datetime):
        return datetime(2000, 1, 1)
    if isinstance(value, date):
        return date(2000, 1, 1)
    if isinstance(value, (list, tuple)):
        return [_neutral(v) for v in value]
    return "x"


def check_value(value: Any) -> None:
    """Refuse a value that has no SQL form (so a template fails at the line that produced it).

    :raises TemplateError: a dict, an object, a non-finite number, a nested list
    """
    scalar = (type(None), bool, int, float, str, date)
    items = value if isinstance(value, (list, tuple)) else [value]
    for item in items:
        if not isinstance(item, scalar):
            kind = "nested list" if isinstance(item, (list, tuple)) else type(item).__name__
            raise TemplateError(
                f"cannot use a {kind} as a SQL value",
                hint="a {{ }} gives one value: text, a number, a date, a boolean or a list of them",
            )
        if isinstance(item, float) and not math.isfinite(item):
            raise TemplateError(f"cannot use {item!r} as a SQL value", hint="pass a finite number")


def bigquery_type(value: Any) -> str:
    """The BigQuery query-parameter type of a value (lists: ``ARRAY<element type>``)."""
    if isinstance(value, (list, tuple)):
        inner = next((v for v in value if v is not None), "")
        return f"ARRAY<{bigquery_type(inner)}>"
    if isinstance(value, bool):
        return "BOOL"
    if isinstance(value, int):
        return "INT64"
    if isinstance(value, float):
        return "FLOAT64"
    if isinstance(value, datetime):
        return "TIMESTAMP" if value.tzinfo is not None else "DATETIME"
    if isinstance(value, date):
        return "DATE"
    return "STRING"


# -- what the renderer hands over, what the engines get -------------------------------------------------------


@dataclass(frozen=True)
class BoundValue:
    """One bound parameter: its name (``@dli_1`` in BigQuery SQL; ``?`` placeholders are positional) and value."""

    name: str
    value: Any


@dataclass(frozen=True)
class BoundStatement:
    """One statement as an engine gets it: the text with placeholders, and the values apart.

    :param sql: the statement as sent — placeholders where values bind, typed literals where they cannot
    :param values: the bound values, in the order of their placeholders in ``sql``
    :param display: the statement with every value inlined as a literal, for reading only (never run)
    :param dialect: the SQL dialect of ``sql``
    :param line: where the statement starts in the rendered SQL (1-based; the template's lines)
    :param column: the column of that start
    """

    sql: str
    values: tuple[BoundValue, ...] = ()
    display: str = ""
    dialect: str = "duckdb"
    line: int = 1
    column: int = 1

    @classmethod
    def of(cls, statement: BoundStatement | str, dialect: str) -> BoundStatement:
        """A statement as it is, or plain SQL without values (tests and the engines' own statements)."""
        if isinstance(statement, BoundStatement):
            return statement
        return cls(sql=statement, display=statement, dialect=dialect)

    def named(self) -> dict[str, Any]:
        """The values by placeholder name (BigQuery ``@name``)."""
        return {v.name: v.value for v in self.values}

    def positional(self) -> list[Any]:
        """The values in placeholder order (DuckDB and Trino ``?``)."""
        return [v.value for v in self.values]

    def __str__(self) -> str:
        return self.display or self.sql


@dataclass(frozen=True)
class BoundSql:
    """A rendered template bound for one engine: its statements, and the whole text for reading."""

    statements: tuple[BoundStatement, ...]
    #: the rendered SQL with every value inlined as a literal (the UI's rendered-SQL field)
    display: str


# -- sentinels on the token stream ----------------------------------------------------------------------------


# -- binding --------------------------------------------------------------------------------------------------


def placeholder(dialect: str, name: str) -> str:
    """The engine's placeholder for a bound value: DuckDB and Trino ``?`` (positional), BigQuery ``@name``.

    DuckDB's own ``$name`` would do as well, but sqlglot's DuckDB tokenizer misreads ``$name`` followed by an
    empty string ``''`` (a ``$`` string start), and every statement as sent is read back by it.
    """
    if dialect == "bigquery":
        return f"@{name}"
    return "?"


def bind_sql(
    text: str, slots: Sequence[Slot], nonce: str, *, dialect: str, path: str, source: str | None = None,
    target: str | None = None,
) -> BoundSql:
    """Split a render's text into statements and bind each one's values for ``dialect`` (or ``target``).

    :param text: the rendered template, a sentinel for every ``{{ … }}``
    :param slots: the values, by sentinel number
    :param source: the template (for messages)
    :param target: transpile each statement to this dialect (a local run of Trino/BigQuery SQL on DuckDB):
        the values bind as DuckDB parameters of the transpiled statement
    :raises TemplateError: a misplaced placeholder (DLI-205)
    :raises TranspileError: a statement that cannot run faithfully on ``target`` (DLI-301)
    """
    if f"__dli{nonce}_" not in text:
        statements = [_plain(stmt, dialect, text, start) for stmt, start in _plain_statements(text, dialect)]
        if target and target != dialect:
            statements = [_transpiled(s, s.sql, [], [], slots, nonce, dialect, target, path) for s in statements]
        return BoundSql(tuple(statements), text)
    tokens = tokenize(text, dialect, path)
    marks = find_placeholders(text, tokens, slots, nonce, dialect=dialect, path=path, source=source)
    statements: list[BoundStatement] = []
    for start, end in _statement_spans(text, tokens):
        inside = [Mark(m.slot, m.start - start, m.end - start) for m in marks if start <= m.start < end]
        line, column = _line_col(text, start)
        statement, pieces = _bind(text[start:end], inside, slots, dialect, path, line, column, source)
        if target and target != dialect:
            statement = _transpiled(statement, text[start:end], inside, pieces, slots, nonce, dialect, target, path)
        statements.append(statement)
    display = _splice(text, marks, [_display_piece(slots[m.slot], dialect) for m in marks])
    return BoundSql(tuple(statements), display)


def split_statements(sql: str, dialect: str = "duckdb") -> list[str]:
    """Split SQL into statements on the tokenizer's semicolons (comment-only and empty statements dropped)."""
    return [statement for statement, _ in _plain_statements(sql, dialect)]


def _plain_statements(sql: str, dialect: str) -> list[tuple[str, int]]:
    from sqlglot.errors import TokenError

    try:
        tokens = dialect_of(dialect).tokenize(sql)
    except TokenError:  # SQL sqlglot cannot read and that holds no value: the engine reads it as written
        out, offset = [], 0
        for part in sql.split(";"):
            if part.strip():
                out.append((part.strip(), offset + len(part) - len(part.lstrip())))
            offset += len(part) + 1
        return out
    return [(sql[a:b], a) for a, b in _statement_spans(sql, tokens)]


def _statement_spans(text: str, tokens: Sequence[Token]) -> list[tuple[int, int]]:
    """Where each statement of ``text`` is: between semicolon tokens, trimmed, with at least one token."""
    spans: list[tuple[int, int]] = []
    start, has_code = 0, False
    for token in [*tokens, None]:
        if token is None or token.token_type.name == "SEMICOLON":
            stop = len(text) if token is None else token.start
            chunk = text[start:stop]
            if has_code and chunk.strip():
                a = start + len(chunk) - len(chunk.lstrip())
                spans.append((a, start + len(chunk.rstrip())))
            start, has_code = (stop + 1 if token is not None else stop), False
        else:
            has_code = True
    return spans


def _line_col(text: str, offset: int) -> tuple[int, int]:
    return text.count("\n", 0, offset) + 1, offset - (text.rfind("\n", 0, offset) + 1) + 1


def _plain(statement: str, dialect: str, text: str, start: int) -> BoundStatement:
    line, column = _line_col(text, start)
    return BoundStatement(statement, (), statement, dialect, line, column)


def _splice(text: str, marks: Sequence[Mark], pieces: Sequence[str]) -> str:
    out, cursor = [], 0
    for mark, piece in zip(marks, pieces):
        out.append(text[cursor : mark.start])
        out.append(piece)
        cursor = mark.end
    out.append(text[cursor:])
    return "".join(out)


def _display_piece(slot: Slot, dialect: str) -> str:
    if slot.kind == "identifier":
        return sql_identifier(slot.value, dialect)
    return sql_literal(slot.value, dialect)


def _bind(
    text: str, marks: Sequence[Mark], slots: Sequence[Slot], dialect: str, path: str, line: int, column: int,
    source: str | None,
) -> tuple[BoundStatement, list[str | None]]:
    """One statement: placeholders where values bind, checked literals and identifiers where they cannot.

    :returns: the statement, and what each mark became (``None``: a placeholder; else the inlined text)
    """
    if not marks:
        return BoundStatement(text, (), text, dialect, line, column), []
    literals = [sql_literal(slots[m.slot].value, dialect) if slots[m.slot].kind == "value" else "" for m in marks]
    verdicts = classify(text, marks, slots, literals, dialect=dialect, path=path, source=source)
    real: list[str] = []
    neutral: list[str] = []
    inline: list[bool] = []
    values: list[BoundValue] = []
    for mark, verdict in zip(marks, verdicts):
        slot = slots[mark.slot]
        if slot.kind == "identifier":
            piece = sql_identifier(slot.value, dialect)
            real.append(piece)
            neutral.append(sql_identifier(".".join("x" for _ in str(slot.value).split(".")), dialect))
            inline.append(True)
        elif slot.kind == "literal" or verdict == "inline" or (dialect == "bigquery" and slot.value is None):
            # BigQuery types every parameter and an untyped NULL has no type: NULL stays the keyword
            real.append(sql_literal(slot.value, dialect))
            neutral.append(sql_literal(_neutral(slot.value), dialect))
            inline.append(True)
        else:
            name = f"dli_{len(values) + 1}"
            values.append(BoundValue(name, slot.value))
            real.append(placeholder(dialect, name))
            neutral.append(real[-1])
            inline.append(False)
    sql = _splice(text, marks, real)
    _check_structure(text, marks, real, neutral, inline, dialect, path, slots)
    display = _splice(text, marks, [_display_piece(slots[m.slot], dialect) for m in marks])
    pieces = [piece if is_inline else None for piece, is_inline in zip(real, inline)]
    return BoundStatement(sql, tuple(values), display, dialect, line, column), pieces


def _check_structure(
    text: str, marks: Sequence[Mark], real: Sequence[str], neutral: Sequence[str], inline: Sequence[bool],
    dialect: str, path: str, slots: Sequence[Slot],
) -> None:
    """The statement as sent reads as the template did, and a literal changes nothing but its own tokens.

    1. the tokens of the statement as sent are those of the rendered statement with each sentinel replaced
       by the tokens of its piece read alone (a placeholder or a literal cannot merge with what is around it);
    2. the tokens with each literal are those with a neutral value of the same type (``'x'``, ``0``,
       ``DATE '2000-01-01'``), except for the literal's own tokens.
    """
    def shape(tokens: Sequence[Token]) -> list[tuple[str, str, tuple[str, ...]]]:
        return [(t.token_type.name, t.text, tuple(t.comments)) for t in tokens]

    sent = _splice(text, marks, real)
    template_tokens = tokenize(text, dialect, path)
    expected: list[tuple[str, str, tuple[str, ...]]] = []
    by_start = {m.start: i for i, m in enumerate(marks)}
    for token in template_tokens:
        index = by_start.get(token.start)
        if index is None:
            expected.append((token.token_type.name, token.text, tuple(token.comments)))
            continue
        piece = shape(tokenize(real[index], dialect, path))
        if token.comments and piece:
            name, piece_text, comments = piece[-1]
            piece[-1] = (name, piece_text, comments + tuple(token.comments))
        expected.extend(piece)
    try:
        got = shape(tokenize(sent, dialect, path))
    except TemplateError:  # e.g. a `$` before a value's placeholder
        raise _structure_error(marks, slots, path, "reads differently once its values are in place") from None
    if got != expected:
        raise _structure_error(marks, slots, path, "reads differently once its values are in place")
    if not any(inline):
        return
    with_neutral = tokenize(_splice(text, marks, neutral), dialect, path)
    with_value = tokenize(sent, dialect, path)
    spans, offset, cursor = [], 0, 0
    for mark, piece, is_inline in zip(marks, real, inline):
        offset += mark.start - cursor
        if is_inline:
            spans.append((offset, offset + len(piece)))
        offset += len(piece)
        cursor = mark.end
    same = len(with_neutral) == len(with_value) and all(
        a.token_type == b.token_type
        and (a.text == b.text and a.comments == b.comments or any(s <= b.start < e for s, e in spans))
        for a, b in zip(with_neutral, with_value)
    )
    if not same:
        raise _structure_error(marks, slots, path, "would change the statement's tokens beyond its own literal")


def _structure_error(marks: Sequence[Mark], slots: Sequence[Slot], path: str, what: str) -> TemplateError:
    lines = sorted({slots[m.slot].line for m in marks if slots[m.slot].line})
    at = f"{path}:{lines[0]}" if lines else path
    return TemplateError(
        f"{at}: a value of this statement {what}",
        hint="write each {{ }} apart from other text, where SQL takes a value (and not right after $, @ or :)",
    )


# -- where a value may bind: sqlglot's tree ------------------------------------------------------------------


# -- local runs: bound values after transpiling ---------------------------------------------------------------


def _transpiled(
    statement: BoundStatement, text: str, marks: Sequence[Mark], pieces: Sequence[str | None],
    slots: Sequence[Slot], nonce: str, source: str, target: str, path: str,
) -> BoundStatement:
    """The statement transpiled to ``target``, its values bound as ``target`` parameters.

    The statement is transpiled with each bound value's sentinel in place (a date as ``CAST(… AS DATE)``, so
    the transpiler's type rules see a date); then the sentinels of the result become DuckDB parameters,
    checked like any other statement (:func:`_check_structure`).

    :param pieces: what each mark became in ``statement``: ``None`` where its value binds, else the literal
    """
    from dli_airflow.transpile import transpile

    spliced = []
    for mark, piece in zip(marks, pieces):
        value = slots[mark.slot].value
        name = sentinel(nonce, mark.slot)
        if piece is not None:
            spliced.append(piece)
        elif isinstance(value, date) and not isinstance(value, datetime):
            spliced.append(f"CAST({name} AS DATE)")
        else:
            spliced.append(name)
    out = transpile(_splice(text, marks, spliced), source, target, path, line=statement.line, column=statement.column)
    if not any(piece is None for piece in pieces):
        return BoundStatement(out, (), out, target, statement.line, statement.column)
    sentinels = pattern(nonce)
    found: list[Mark] = []
    for token in tokenize(out, target, path):
        hit = sentinels.fullmatch(token.text)
        if hit and token.token_type.name in ("VAR", "IDENTIFIER"):
            found.append(Mark(int(hit.group(1)), token.start, token.end + 1))
        elif sentinels.search(token.text) or any(sentinels.search(c) for c in token.comments):
            raise TemplateError(f"{path}:{statement.line}: transpiling to {target} moved a value into other text")
    # a value per placeholder, in order: a transpiler that repeats an expression repeats its parameter
    real = [placeholder(target, f"dli_{n}") for n, _ in enumerate(found, start=1)]
    values = tuple(BoundValue(f"dli_{n}", slots[m.slot].value) for n, m in enumerate(found, start=1))
    _check_structure(out, found, real, real, [False] * len(found), target, path, slots)
    display = _splice(out, found, [sql_literal(slots[m.slot].value, target) for m in found])
    return BoundStatement(_splice(out, found, real), values, display, target, statement.line, statement.column)


__all__ = [
    "BoundSql",
    "BoundStatement",
    "BoundValue",
    "bigquery_type",
    "bind_sql",
    "check_value",
    "placeholder",
    "split_statements",
    "sql_identifier",
    "sql_literal",
]
