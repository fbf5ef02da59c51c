"""Sentinels: what a rendered template holds in place of its values, and the one check that they stand apart.

The renderer writes, for every ``{{ … }}`` output, a *sentinel* — ``__dli<nonce>_<n>__``, a name with a
random nonce per render, so that no template or value contains it — and keeps the value in a
:class:`Slot`. :func:`find_placeholders` reads the rendered text with sqlglot's tokenizer in the engine's
dialect (never a scanner of its own): every sentinel must be a token of its own, a bare name. One inside
a string of any kind of the dialect (``'…'``, ``$$…$$``, ``E'…'``, ``r'…'``, triple-quoted), a quoted
identifier, or a comment (sqlglot keeps comments on ``token.comments``: DuckDB's nested ``/* /* */ */``,
BigQuery's ``#``), or joined to other text, is a DLI-205 naming the line. The same check runs on the one
sentinel render of validation and on every render at run time (with the run's control-flow values).
Nothing here touches Airflow.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Literal

from dli_airflow.errors import TemplateError

if TYPE_CHECKING:
    import sqlglot
    from sqlglot.tokens import Token

#: sqlglot dialect names per engine.
DIALECTS = {"duckdb": "duckdb", "trino": "trino", "bigquery": "bigquery"}

#: The kinds of value a template output can be: a value (bound where the engine can bind it), an explicit
#: ``| literal`` (always a typed literal) or an ``| identifier`` (always a quoted identifier).
SlotKind = Literal["value", "literal", "identifier"]

#: Token types that are quoted text (a sentinel must never be inside one).
STRING_TOKENS = frozenset(
    {"STRING", "NATIONAL_STRING", "RAW_STRING", "HEREDOC_STRING", "UNICODE_STRING", "BYTE_STRING", "HEX_STRING",
     "BIT_STRING"}
)


@dataclass(frozen=True)
class Slot:
    """One ``{{ … }}`` output of a render: its kind, its value and the template line that produced it."""

    kind: SlotKind
    value: Any = None
    line: int | None = None




def sentinel(nonce: str, index: int) -> str:
    """The name that stands for slot ``index`` in a render with ``nonce``."""
    return f"__dli{nonce}_{index}__"


@lru_cache(maxsize=8)
def pattern(nonce: str) -> re.Pattern[str]:
    return re.compile(rf"__dli{re.escape(nonce)}_(\d+)__")


@lru_cache(maxsize=8)
def dialect_of(name: str) -> sqlglot.Dialect:
    import sqlglot

    return sqlglot.Dialect.get_or_raise(DIALECTS.get(name, name))


def tokenize(text: str, dialect: str, path: str) -> list[Token]:
    """sqlglot's tokens of ``text`` in ``dialect``.

    :raises TemplateError: the text cannot be tokenized (an unterminated string or comment)
    """
    from sqlglot.errors import TokenError

    try:
        return dialect_of(dialect).tokenize(text)
    except TokenError as exc:
        raise TemplateError(
            f"{path}: the SQL cannot be read as {dialect} SQL: {str(exc).splitlines()[0]}",
            hint="with {{ }} placeholders dli must read where each one stands: close every string and comment "
            "(is a quote opened in one {% if %} branch and closed in another?)",
        ) from None


@dataclass(frozen=True)
class Mark:
    """One sentinel token: the slot it stands for and where it is in the text (``end`` exclusive)."""

    slot: int
    start: int
    end: int


def find_placeholders(
    text: str, tokens: Sequence[Token], slots: Sequence[Slot], nonce: str, *, dialect: str, path: str,
    source: str | None = None,
) -> list[Mark]:
    """Every sentinel of ``text``, each one token of its own; anything else is a DLI-205.

    :param source: the template (to show the placeholder's text in a message)
    :raises TemplateError: a sentinel inside a string, a quoted identifier or a comment, joined to other
        text, or in SQL sqlglot reads differently from the engine (``rb'…'``, a character it cannot read)
    """
    from sqlglot.tokens import TokenType

    sentinels = pattern(nonce)
    marker = f"__dli{nonce}_"
    strings = _string_types()
    marks: list[Mark] = []
    for token in tokens:
        for comment in token.comments:
            if marker in comment:
                raise _misplaced(sentinels.search(comment), "inside a SQL comment", slots, path, source)
        if marker not in token.text:  # a plain substring test first: this loop runs on every cold parse
            continue
        found = sentinels.search(token.text)
        kind = token.token_type
        if kind is TokenType.VAR and found is not None and found.group(0) == token.text:
            marks.append(Mark(int(found.group(1)), token.start, token.end + 1))
        elif kind in strings:
            raise _misplaced(found, "inside a quoted SQL string", slots, path, source)
        elif kind is TokenType.IDENTIFIER:
            raise _misplaced(found, "inside a quoted identifier", slots, path, source)
        else:
            raise _misplaced(found, "joined to other text", slots, path, source)
    if len(marks) != text.count(marker):
        raise TemplateError(
            f"{path}: a placeholder stands where sqlglot does not read it as a token of its own",
            hint="write each {{ }} where SQL takes a value, apart from quotes, comments and other names",
        )
    if marks:
        _refuse_misreads(tokens, dialect, path)
    return marks


@lru_cache(maxsize=1)
def _string_types() -> frozenset[Any]:
    from sqlglot.tokens import TokenType

    return frozenset(TokenType[name] for name in STRING_TOKENS)


def _refuse_misreads(tokens: Sequence[Token], dialect: str, path: str) -> None:
    """Refuse SQL that sqlglot's tokenizer reads differently from the engine, once it holds a placeholder.

    A string prefix sqlglot does not know reads as a name followed by a string (BigQuery ``rb'…'`` and
    ``br'…'`` come out as ``rb`` and an escaped string, where BigQuery reads a raw one), and a character it
    cannot place reads as ``UNKNOWN``: in both, where a string ends is unsure, so where a placeholder
    stands is too.
    """
    from sqlglot.tokens import TokenType

    strings = _string_types()
    for before, after in itertools.pairwise(tokens):
        if before.token_type is TokenType.VAR and after.token_type in strings and after.start == before.end + 1:
            raise TemplateError(
                f"{path}:{before.line}: the string prefix {before.text!r} of {before.text}'…' is not one sqlglot "
                f"reads as {dialect} does",
                hint="write the string without that prefix (a plain '…' or r'…'), or keep {{ }} out of this SQL",
            )
    for token in tokens:
        if token.token_type is TokenType.UNKNOWN:
            raise TemplateError(
                f"{path}:{token.line}: the character {token.text!r} is not {dialect} SQL as sqlglot reads it",
                hint="remove it (backticks quote names in BigQuery only), or keep {{ }} out of this SQL",
            )


def _misplaced(
    found: re.Match[str] | None, where: str, slots: Sequence[Slot], path: str, source: str | None
) -> TemplateError:
    index = int(found.group(1)) if found is not None else len(slots)
    slot = slots[index] if index < len(slots) else Slot("value")
    bare = placeholder_text(source, slot.line) if source is not None else None
    subject = f"the placeholder {bare}" if bare else "a placeholder"
    at = f"{path}:{slot.line}" if slot.line else path
    if where == "inside a quoted SQL string":
        shown = bare or "{{ name }}"
        hint = (
            f"write {shown} without the quotes (WHERE col = {shown}): dli passes each value as a parameter of "
            "its own type (a string as a string, a date as a DATE), never as text spliced into the SQL; to "
            "build text, concatenate in Jinja, {{ 'prefix_' ~ name }}, or in SQL, 'prefix_' || {{ name }}"
        )
    elif where == "inside a quoted identifier":
        hint = "for a name use the identifier filter without quotes: {{ name | identifier }}"
    elif where == "inside a SQL comment":
        hint = "take the placeholder out of the comment (or the comment out of the SQL)"
    else:
        hint = "a value stands apart: for a name built from a value write {{ ('prefix_' ~ name) | identifier }}"
    return TemplateError(f"{at}: {subject} is {where}", hint=hint)


def placeholder_text(source: str | None, line: int | None) -> str | None:
    """The text of the ``{{ … }}`` on ``line`` of the template, normalised (``None``: not one alone there)."""
    if not source or not line:
        return None
    from jinja2 import Environment

    found: list[str] = []
    current: list[str] | None = None
    try:
        for lineno, kind, value in Environment().lex(source):
            if kind == "variable_begin" and lineno == line:
                current = []
            elif kind == "variable_end" and current is not None:
                found.append("{{ " + " ".join("".join(current).split()) + " }}")
                current = None
            elif current is not None:
                current.append(str(value))
    except Exception:  # noqa: BLE001 - only for a message
        return None
    return found[0] if len(set(found)) == 1 else None


__all__ = [
    "DIALECTS",
    "STRING_TOKENS",
    "Mark",
    "Slot",
    "SlotKind",
    "dialect_of",
    "find_placeholders",
    "pattern",
    "placeholder_text",
    "sentinel",
    "tokenize",
]
