"""The hostile corpus of "a parameter value can never change a statement", and "rendering is bounded".

Each row is a template × a value × a dialect, with what must happen:

- ``refused``: ``check_template`` (what ``dli spec validate``, the DAG parse and registration call) raises a
  DLI-205 naming the file and line; the run refuses it too, before any SQL runs;
- ``refused-at-run``: it validates, and every run refuses it (DLI-205) before any SQL runs;
- ``bound``: it runs, the value bound as a parameter (or, where no engine binds one, a checked literal), and
  the value comes back as data;

and, on a real DuckDB file where it runs (Trino and BigQuery SQL through the local transpiled run): no extra
statement ran, no table was created, the seeded table is intact. The property test at the end drives
payloads × templates × the three dialects and asserts the statements' token structure never changes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import duckdb
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dli_airflow.catalog import SpecEntry, scan
from dli_airflow.errors import DliError, TemplateError
from dli_airflow.local import run_entry
from dli_airflow.render import check_template, render_bound
from dli_airflow.sentinels import tokenize
from dli_airflow.spec import DatasetStatus, SourceType, load_spec
from dli_airflow.store import LocalStore

PWN = "$$); CREATE TABLE pwned AS SELECT 42 AS x; SELECT ($$"
PARAMETERS = """\
parameters:
  - {name: v, type: string}
  - {name: host, type: string}
  - {name: a, type: string}
  - {name: b, type: string}
  - {name: n, type: integer}
  - {name: d, type: date}
  - {name: flag, type: boolean}
"""


@dataclass(frozen=True)
class Case:
    """One hostile row (see the module docstring for ``expect``)."""

    id: str
    dialect: str
    sql: str
    values: dict[str, Any]
    expect: str
    match: str = ""
    #: what the run's refusal says, where its branch differs from validation's (default ``match``)
    run_match: str | None = None
    #: for ``bound``: the last statement's rows, the statements that run, the tables that then exist
    rows: list[tuple[Any, ...]] | None = None
    statements: int = 1
    tables: frozenset[str] = field(default_factory=frozenset)
    #: a render time limit for this row ([dli] render_timeout_seconds)
    timeout: float | None = None
    #: the code of a refusal at run (a value bound where the engine takes none is the engine's SQL error)
    code: str = "DLI-205"

    @property
    def kind(self) -> str:
        """The corpus class of the row: "rendering" for the bounds and the sandbox, else "injection"."""
        return "rendering" if self.id in RENDERING_CASES else "injection"


#: the rows of the "rendering is bounded" class (the rest are injection rows)
RENDERING_CASES = frozenset({
    "include", "import", "from-import", "extends", "filter-block-splices-a-value", "padding-filter", "lipsum",
    "range-too-long", "nested-loops", "huge-text", "recursive-macro", "exponential-macro", "doubling-text",
    "list-of-huge-texts", "replace-blowup", "huge-power", "str-format", "percent-format", "str-padding",
    "python-internals",
})

CASES = [
    # -- a placeholder inside a string, a quoted name or a comment of the dialect: refused at validation --
    Case("dollar-quoted", "duckdb", "SELECT regexp_matches(url, $$^https://{{ host }}/$$) FROM pages", {"host": PWN},
         "refused", "{{ host }} is inside a quoted SQL string"),
    Case("dollar-tagged", "duckdb", "SELECT $q$ {{ host }} $q$ FROM pages", {"host": PWN},
         "refused", "inside a quoted SQL string"),
    Case("escape-string", "duckdb", "SELECT E'it\\'s {{ v }}' FROM pages", {"v": "' || 42::VARCHAR || '"},
         "refused", "inside a quoted SQL string"),
    Case("escape-string-lower", "duckdb", "SELECT e'\\'' || '{{ v }}'", {"v": " || 42::VARCHAR || "},
         "refused", "inside a quoted SQL string"),
    Case("plain-string", "duckdb", "SELECT * FROM pages WHERE name = '{{ v }}'", {"v": "x' OR '1'='1"},
         "refused", "inside a quoted SQL string"),
    Case("string-after-doubled-quote", "duckdb", "SELECT 'it''s', '{{ v }}'", {"v": " OR TRUE OR "},
         "refused", "inside a quoted SQL string"),
    Case("nested-comment", "duckdb", "SELECT 1 /* outer /* inner */ it's {{ v }} */, 2", {"v": "*/ 42 /*"},
         "refused", "inside a SQL comment"),
    Case("nested-comment-hides-quote", "duckdb", "SELECT /* /* ' */ */ '{{ v }}'", {"v": " OR TRUE OR "},
         "refused", "inside a quoted SQL string"),
    Case("line-comment", "duckdb", "SELECT 1 -- {{ v }}\n", {"v": "\nCREATE TABLE pwned AS SELECT 1"},
         "refused", "inside a SQL comment"),
    Case("quoted-identifier", "duckdb", 'SELECT "{{ v }}" FROM pages', {"v": 'x" FROM pages; CREATE TABLE pwned(a INT); --'},
         "refused", "inside a quoted identifier"),
    Case("quote-in-if-false", "duckdb", "SELECT {% if false %}'{% endif %} regexp_matches(url, '^{{ host }}') FROM pages",
         {"host": " OR TRUE OR "}, "refused", "cannot be read as duckdb SQL", "{{ host }} is inside a quoted SQL string"),
    Case("quote-in-if-flag", "duckdb", "SELECT {% if flag %}'{% endif %}{{ v }}{% if flag %}'{% endif %} FROM pages",
         {"v": " OR TRUE OR ", "flag": True}, "refused", "inside a quoted SQL string"),
    Case("joined-name", "duckdb", "SELECT * FROM pages_{{ v }}", {"v": "x; CREATE TABLE pwned(a INT)"},
         "refused", "joined to other text"),
    Case("joined-values", "duckdb", "SELECT {{ a }}{{ b }}", {"a": "1", "b": "2"}, "refused", "joined to other text"),
    Case("joined-identifier", "duckdb", "SELECT * FROM events_{{ v | identifier }}", {"v": "eu"},
         "refused", "joined to other text"),
    Case("backtick-duckdb", "duckdb", "SELECT * FROM `{{ v }}`", {"v": "pages"}, "refused", "the character '`'"),
    Case("bigquery-hash-comment-quote", "bigquery", "SELECT name FROM pages # don't\nWHERE name = '{{ v }}'",
         {"v": " OR TRUE OR "}, "refused", "inside a quoted SQL string"),
    Case("bigquery-hash-comment-quote-concat", "bigquery", "SELECT name FROM pages # it's\nWHERE name = '{{ v }}'",
         {"v": " || 42 || "}, "refused", "inside a quoted SQL string"),
    Case("bigquery-hash-comment", "bigquery", "SELECT 1 # {{ v }}\n", {"v": "\nSELECT 2"}, "refused",
         "inside a SQL comment"),
    Case("bigquery-raw-string", "bigquery", "SELECT r'\\d+{{ v }}'", {"v": "' OR TRUE OR '"}, "refused",
         "inside a quoted SQL string"),
    Case("bigquery-raw-bytes", "bigquery", "SELECT rb'\\x00', {{ v }}", {"v": "x"}, "refused",
         "string prefix 'rb'"),
    Case("bigquery-bytes-raw", "bigquery", "SELECT BR'\\'', {{ v }}", {"v": "x"}, "refused", "string prefix 'BR'"),
    Case("bigquery-triple-quoted", "bigquery", "SELECT '''it's {{ v }}'''", {"v": "' OR TRUE OR '"}, "refused",
         "inside a quoted SQL string"),
    Case("bigquery-double-quoted-string", "bigquery", 'SELECT "{{ v }}"', {"v": '" OR TRUE OR "'}, "refused",
         "inside a quoted SQL string"),
    Case("bigquery-backtick", "bigquery", "SELECT * FROM `p.d.{{ v }}`", {"v": "t` WHERE TRUE --"}, "refused",
         "inside a quoted identifier"),
    Case("trino-unicode-string", "trino", "SELECT U&'{{ v }}'", {"v": "' OR TRUE OR '"}, "refused",
         "inside a quoted SQL string"),
    Case("trino-doubled-quote", "trino", "SELECT 'it''s {{ v }}'", {"v": "' OR TRUE OR '"}, "refused",
         "inside a quoted SQL string"),
    Case("trino-quoted-identifier", "trino", 'SELECT "{{ v }}" FROM pages', {"v": "url"}, "refused",
         "inside a quoted identifier"),
    # -- tags and names a dataset's SQL cannot use ----------------------------------------------------------
    Case("include", "duckdb", "{% include 'other.sql' %}", {}, "refused", "{% include %} is not supported"),
    Case("import", "duckdb", "{% import 'macros.sql' as m %}SELECT 1", {}, "refused", "{% import %} is not supported"),
    Case("from-import", "duckdb", "{% from 'm.sql' import x %}SELECT 1", {}, "refused", "import %} is not supported"),
    Case("extends", "duckdb", "{% extends 'base.sql' %}", {}, "refused", "{% extends %} is not supported"),
    Case("filter-block-splices-a-value", "duckdb", "{% filter replace('X', v) %}SELECT 'X'{% endfilter %}",
         {"v": "'; CREATE TABLE pwned AS SELECT 1; --"}, "refused", "a {% filter %} block is not supported"),
    Case("reserved-name", "duckdb", "SELECT {{ _dli_concat([v]) }}", {"v": "x"}, "refused", "reserved by dli"),
    Case("padding-filter", "duckdb", "SELECT {{ v | center(1000000000) }}", {"v": "x"}, "refused",
         "the filter 'center' is not available", "No filter named 'center'"),
    Case("lipsum", "duckdb", "SELECT {{ lipsum(100000) }}", {}, "refused", "'lipsum', which the spec does not declare",
         "'lipsum' is undefined"),
    # -- it validates, and every run refuses it before any SQL runs --------------------------------------
    Case("value-as-table", "duckdb", "SELECT * FROM {{ v }}", {"v": "pages; CREATE TABLE pwned(a INT)"},
         "refused-at-run", "{{ v }} stands where a table name goes"),
    Case("value-as-alias", "duckdb", "SELECT 1 AS {{ v }}", {"v": "x"}, "refused-at-run", "stands where an alias goes"),
    Case("value-in-dotted-name", "duckdb", "SELECT pages.{{ v }} FROM pages", {"v": "url"}, "refused-at-run",
         "part of a dotted name"),
    Case("dollar-before-value", "duckdb", "SELECT ${{ v }}, 'x$$'", {"v": "'x'); CREATE TABLE pwned(a INT); --"},
         "refused-at-run", 'syntax error at or near "?"', code="DLI-405"),
    Case("at-before-value", "bigquery", "SELECT @{{ v }}", {"v": "x; CREATE TABLE pwned(a INT)"}, "refused-at-run",
         'syntax error at or near "?"', code="DLI-405"),
    Case("set-block-as-value", "duckdb", "{% set s %}{{ v }}{% endset %}SELECT {{ s }}", {"v": "x"}, "refused-at-run",
         "output of a {% set %} block"),
    # -- bound: the value is data, whatever it holds --------------------------------------------------------
    Case("bound-pwn", "duckdb", "SELECT {{ host }} AS h", {"host": PWN}, "bound", rows=[(PWN,)]),
    Case("bound-where", "duckdb", "SELECT name FROM pages WHERE name = {{ v }}", {"v": "'; DROP TABLE pages; --"},
         "bound", rows=[]),
    Case("bound-regexp", "duckdb", "SELECT count(*) FROM pages WHERE regexp_matches(url, {{ host }})",
         {"host": "^https://a/$|$$; CREATE TABLE pwned AS SELECT 1; SELECT $$"}, "bound", rows=[(1,)]),
    Case("bound-quote-free-concat", "duckdb", "SELECT name FROM pages WHERE name = {{ v }}",
         {"v": " || 42::VARCHAR || "}, "bound", rows=[]),
    Case("bound-quote-free-or", "duckdb", "SELECT name FROM pages WHERE name = {{ v }}", {"v": " OR TRUE OR "},
         "bound", rows=[]),
    Case("bound-limit-offset", "duckdb", "SELECT name FROM pages ORDER BY name LIMIT {{ n }} OFFSET {{ n }}",
         {"n": 1}, "bound", rows=[("bob",)]),
    Case("bound-date-interval", "duckdb", "SELECT CAST({{ d }} - INTERVAL 1 DAY AS DATE) AS y", {"d": "2024-01-15"},
         "bound", rows=[(date(2024, 1, 14),)]),
    Case("bound-in-list", "duckdb", "SELECT name FROM pages WHERE name IN ({{ a }}, {{ b }}) ORDER BY 1",
         {"a": "alice", "b": "x' OR '1'='1"}, "bound", rows=[("alice",)]),
    Case("bound-cte", "duckdb", "WITH x AS (SELECT {{ v }} AS v) SELECT v FROM x", {"v": PWN}, "bound", rows=[(PWN,)]),
    Case("bound-ctas-and-insert", "duckdb",
         "CREATE TABLE out AS SELECT {{ v }} AS v;\nINSERT INTO out SELECT {{ a }};\nSELECT v FROM out ORDER BY v",
         {"v": PWN, "a": "'); DROP TABLE pages; --"}, "bound", rows=[(PWN,), ("'); DROP TABLE pages; --",)],
         statements=3, tables=frozenset({"out"})),
    Case("bound-in-jinja-if", "duckdb", "SELECT name FROM pages WHERE TRUE {% if flag %}AND name = {{ v }}{% endif %}",
         {"flag": True, "v": "x' OR '1'='1"}, "bound", rows=[]),
    Case("bound-jinja-concat", "duckdb", "SELECT {{ 'prefix_' ~ v }} AS p", {"v": "'; --"}, "bound",
         rows=[("prefix_'; --",)]),
    Case("bound-not-rendered-again", "duckdb", "SELECT {{ v }} AS v", {"v": "{{ 7 * 7 }}{% include 'x' %}"},
         "bound", rows=[("{{ 7 * 7 }}{% include 'x' %}",)]),
    Case("inline-order-by", "duckdb", "SELECT name FROM pages ORDER BY {{ n }} DESC", {"n": 1}, "bound",
         rows=[("carol",), ("bob",), ("alice",)]),
    Case("inline-order-by-text", "duckdb", "SELECT count(*) FROM pages ORDER BY {{ v }}", {"v": "1; DROP TABLE pages"},
         "refused-at-run", "ORDER BY non-integer literal", code="DLI-405"),
    Case("inline-using-sample", "duckdb", "SELECT count(*) FROM (SELECT * FROM pages USING SAMPLE {{ n }})", {"n": 2},
         "bound", rows=[(2,)]),
    Case("inline-interval", "duckdb", "SELECT CAST(DATE '2024-01-15' + INTERVAL {{ n }} DAY AS DATE) AS d", {"n": 3},
         "bound", rows=[(date(2024, 1, 18),)]),
    Case("inline-create-view", "duckdb", "CREATE VIEW pv AS SELECT {{ v }} AS x;\nSELECT x FROM pv",
         {"v": "x' AS x; CREATE TABLE pwned AS SELECT 1; --"}, "bound",
         rows=[("x' AS x; CREATE TABLE pwned AS SELECT 1; --",)], statements=2, tables=frozenset({"pv"})),
    Case("identifier-quoted", "duckdb", "SELECT 1 AS {{ v | identifier }}", {"v": 'x"; CREATE TABLE pwned(a INT); --'},
         "bound", rows=[(1,)]),
    Case("trino-bound", "trino", "SELECT name FROM pages WHERE name = {{ v }}", {"v": "' OR '1'='1"}, "bound", rows=[]),
    Case("trino-bound-backslash", "trino", "SELECT {{ v }} AS v", {"v": "\\'; DROP TABLE pages; --"}, "bound",
         rows=[("\\'; DROP TABLE pages; --",)]),
    Case("trino-bound-date", "trino", "SELECT date_add('day', {{ n }}, {{ d }}) AS d", {"n": 2, "d": "2024-01-15"},
         "bound", rows=[(date(2024, 1, 17),)]),
    Case("bigquery-bound-backslash", "bigquery", "SELECT {{ v }} AS v", {"v": "\\' OR 1=1 --"}, "bound",
         rows=[("\\' OR 1=1 --",)]),
    Case("bigquery-bound-after-hash-comment", "bigquery", "SELECT name FROM pages # don't\nWHERE name = {{ v }}",
         {"v": " OR TRUE OR "}, "bound", rows=[]),
    Case("bigquery-bound-concat", "bigquery", "SELECT name FROM pages WHERE name = {{ v }}", {"v": " || 42 || "},
         "bound", rows=[]),
    # -- rendering is bounded: each a DLI-205 naming the line, never a traceback or unbounded memory -------------
    Case("range-too-long", "duckdb", "SELECT 1;\n{% for i in range(10**9) %}SELECT {{ i }};{% endfor %}", {},
         "refused-at-run", "code/case.sql:2: range(1000000000) has 1,000,000,000 items"),
    Case("nested-loops", "duckdb",
         "SELECT 1\n{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}", {},
         "refused-at-run", "took longer than 0.5 s", timeout=0.5),
    Case("huge-text", "duckdb", "SELECT\n{{ 'x' * n }}", {"n": 1_000_000_000}, "refused-at-run",
         "code/case.sql:2: the text 'x' * 1000000000 would be 1,000,000,000 characters"),
    Case("recursive-macro", "duckdb", "{% macro m(n) %}{{ m(n) }}{% endmacro %}\nSELECT {{ m(1) }}", {},
         "refused-at-run", "recurses without end"),
    Case("exponential-macro", "duckdb",
         "{% macro m(n) %}{% if n %}{{ m(n - 1) }}{{ m(n - 1) }}{% endif %}{% endmacro %}SELECT 1 {{ m(40) }}", {},
         "refused-at-run", "took longer than 0.5 s", timeout=0.5),
    Case("doubling-text", "duckdb",
         "{% set ns = namespace(s='xx') %}{% for i in range(60) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}SELECT 1",
         {}, "refused-at-run", "the text built with ~ would be"),
    Case("list-of-huge-texts", "duckdb", "SELECT 2 IN {{ ['x' * 1000000] * 1000 }}", {}, "refused-at-run",
         "the rendered SQL with its values would be"),
    Case("replace-blowup", "duckdb", "SELECT {{ ('x' * 100000) | replace('x', 'x' * 1000) }}", {}, "refused-at-run",
         "the replaced text would be 100,000,000 characters"),
    Case("huge-power", "duckdb", "SELECT {{ 10 ** 100000 }}", {}, "refused-at-run", "has more than 4,096 bits"),
    Case("str-format", "duckdb", "SELECT {{ '{:>1000000000}'.format(v) }}", {"v": "x"}, "refused-at-run",
         "str.format is not available"),
    Case("percent-format", "duckdb", "SELECT {{ '%1000000000s' % v }}", {"v": "x"}, "refused-at-run",
         "text formatting with % is not available"),
    Case("str-padding", "duckdb", "SELECT {{ v.ljust(1000000000) }}", {"v": "x"}, "refused-at-run",
         "ljust() to more than"),
    Case("python-internals", "duckdb", "SELECT {{ v.__class__.__mro__[1].__subclasses__() }}", {"v": "x"},
         "refused-at-run", "not allowed in a SQL template"),
]


def _entry(case: Case) -> SpecEntry:
    spec = load_spec(f"name: t.case\nowner: me\nengine: {case.dialect}\nquery: SELECT 1\n{PARAMETERS}", "code/case.yaml")
    return SpecEntry(spec=spec, source=SourceType.CODE, status=DatasetStatus.ACTIVE, path="code/case.yaml",
                     sql=case.sql, sql_path="code/case.sql")


def _seeded(tmp_path: Path) -> Path:
    path = tmp_path / "w.duckdb"
    with duckdb.connect(str(path)) as conn:
        conn.execute("CREATE TABLE pages (name VARCHAR, url VARCHAR)")
        conn.execute("INSERT INTO pages VALUES ('alice', 'https://a/'), ('bob', 'https://b/'), ('carol', 'https://c/')")
    return path


def _state(path: Path) -> tuple[set[str], list[tuple[Any, ...]]]:
    with duckdb.connect(str(path), read_only=True) as conn:
        tables = {r[0] for r in conn.execute("SELECT table_name FROM information_schema.tables").fetchall()}
        return tables, conn.execute("SELECT * FROM pages ORDER BY name").fetchall()


def test_the_corpus_is_large_enough() -> None:
    assert len(CASES) >= 40 and len({c.id for c in CASES}) == len(CASES)
    assert RENDERING_CASES <= {c.id for c in CASES}
    assert {c.dialect for c in CASES} == {"duckdb", "trino", "bigquery"}


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id, marks=pytest.mark.hostile(kind=c.kind)) for c in CASES])
def test_hostile_case(case: Case, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if case.timeout is not None:
        monkeypatch.setenv("AIRFLOW__DLI__RENDER_TIMEOUT_SECONDS", str(case.timeout))
    entry = _entry(case)
    if case.expect == "refused":
        with pytest.raises(TemplateError) as info:
            check_template(case.sql, entry.spec, "code/case.sql")
        assert info.value.code == "DLI-205" and case.match in info.value.message, info.value.message
        assert info.value.message.startswith("code/case.sql")
    else:
        check_template(case.sql, entry.spec, "code/case.sql")
    db = _seeded(tmp_path)
    before = _state(db)
    started = time.monotonic()
    if case.expect in ("refused", "refused-at-run"):
        with pytest.raises(DliError) as info:
            run_entry(entry, case.values, duckdb_path=str(db))
        expected = case.run_match or case.match
        assert info.value.code == case.code and expected in info.value.message, info.value.message
        assert info.value.message.startswith("code/case.sql" if case.code == "DLI-205" else "statement 1 of 1")
        assert _state(db) == before  # nothing ran
        assert time.monotonic() - started < 10
        return
    result = run_entry(entry, case.values, duckdb_path=str(db))
    assert result.result is not None
    assert len(result.result.statements) == len(result.rendered.statements) == case.statements  # no extra statement
    if case.rows is not None:
        assert [tuple(r) for r in result.result.last.rows] == case.rows
    tables, pages = _state(db)
    assert tables == before[0] | case.tables and pages == before[1]  # no table created, nothing dropped
    for statement in result.rendered.statements:  # a bound value is never in the text that ran
        for value in statement.values:
            if isinstance(value.value, str) and len(value.value) > 2:
                assert value.value not in statement.sql


@pytest.mark.hostile(kind="injection")
def test_a_hostile_spec_in_the_store_is_reported_and_never_runs(tmp_path: Path) -> None:
    store = tmp_path / "store"
    (store / "code").mkdir(parents=True)
    (store / "code" / "bad.yaml").write_text(
        "name: s.bad\nowner: me\nquery_file: bad.sql\nparameters:\n  - {name: host, type: string}\n"
    )
    (store / "code" / "bad.sql").write_text("SELECT regexp_matches(url, $$^https://{{ host }}/$$)\n")
    snapshot = scan(LocalStore(store))
    [problem] = snapshot.problems
    assert problem.code == "DLI-205" and "code/bad.sql:1" in problem.message
    assert "{{ host }} is inside a quoted SQL string" in problem.message
    assert not [e for e in snapshot.entries if e.status is DatasetStatus.ACTIVE]


@pytest.mark.hostile(kind="injection")
def test_every_render_checks_the_branch_it_takes() -> None:
    """Validation follows one branch; a run that takes another is checked on its own render."""
    sql = "SELECT {% if flag %}{{ v }}{% else %}'{{ v }}'{% endif %}"
    entry = _entry(Case("x", "duckdb", sql, {}, "bound"))
    check_template(sql, entry.spec, "code/case.sql")  # the first branch is fine
    assert render_bound(sql, {"flag": True, "v": "x"}, path="code/case.sql").statements[0].sql == "SELECT ?"
    with pytest.raises(TemplateError, match="code/case.sql:1: the placeholder .* is inside a quoted SQL string"):
        render_bound(sql, {"flag": False, "v": " OR TRUE OR "}, path="code/case.sql")


# -- the property: a value never changes the statement's tokens ---------------------------------------------

#: Templates with a value in every kind of expression position, and whether every value binds (else some
#: stand where no engine binds one: ORDER BY, CREATE VIEW, a name through the identifier filter).
PROPERTY_TEMPLATES = [
    ("SELECT {{ v }} AS v", True),
    ("SELECT name FROM pages WHERE name = {{ v }} OR url LIKE {{ 'https://' ~ v ~ '%' }}", True),
    ("SELECT 1 /* a comment */ -- and another\n, {{ v }} {% if v is string %}, {{ v | upper }}{% endif %};\nSELECT {{ v }}", True),
    ("SELECT name FROM pages WHERE name IN ({{ v }}, {{ v | lower }}) ORDER BY {{ v }}", False),
    ("WITH x AS (SELECT {{ v }} AS v) SELECT v AS {{ ((v ~ '_') | replace('.', '_') | replace('\\x00', '')) | identifier }} FROM x", False),
    ("CREATE VIEW pv AS SELECT {{ v }} AS x", False),
]
PAYLOADS = st.text(
    alphabet=st.sampled_from(list("'\"`\\$#;-/*\n\r\t (){}%?@:eErRbB_xX0 aé☃𝄞")) | st.characters(), max_size=40
) | st.sampled_from([PWN, " OR TRUE OR ", " || 42::VARCHAR || ", "'; DROP TABLE pages; --", "*/", "$$", "{{ 7*7 }}"])


def _shape(statement: Any, dialect: str) -> list[tuple[str, str]]:
    """The statement's tokens: types, and texts but for literal tokens (where a value may be)."""
    literal = {"STRING", "NUMBER", "RAW_STRING", "NATIONAL_STRING", "BYTE_STRING", "UNICODE_STRING", "IDENTIFIER"}
    return [(t.token_type.name, "" if t.token_type.name in literal else t.text) for t in tokenize(statement, dialect, "x")]


@settings(max_examples=60, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(payload=PAYLOADS)
def test_no_payload_changes_the_token_structure(payload: str) -> None:
    for dialect in ("duckdb", "trino", "bigquery"):
        for template, all_bound in PROPERTY_TEMPLATES:
            neutral = render_bound(template, {"v": "x"}, dialect=dialect)
            bound = render_bound(template, {"v": payload}, dialect=dialect)
            assert len(bound.statements) == len(neutral.statements)
            for got, want in zip(bound.statements, neutral.statements):
                if all_bound:
                    assert got.sql == want.sql  # the text that runs is the same whatever the value
                    assert [v.value for v in got.values] != [] and payload in [v.value for v in got.values]
                assert _shape(got.sql, dialect) == _shape(want.sql, dialect)
                assert _shape(got.display, dialect) == _shape(want.display, dialect)  # the display reads the same


@settings(max_examples=40, derandomize=True, deadline=None)
@given(payload=PAYLOADS)
def test_any_payload_round_trips_through_duckdb(payload: str) -> None:
    conn = duckdb.connect()
    for dialect in ("duckdb", "trino", "bigquery"):
        bound = render_bound("SELECT {{ v }} AS v, {{ v | length }} AS n", {"v": payload}, dialect=dialect,
                             target="duckdb")
        [statement] = bound.statements
        assert conn.execute(statement.sql, statement.positional() or None).fetchall() == [(payload, len(payload))]
