"""Safe SQL rendering (``dli_airflow.render``): typed literals, no injection, hand-quoted placeholders,
identifiers, statement splitting."""

from __future__ import annotations

from datetime import date

import duckdb
import pytest
import sqlglot
from spec_support import spec_with
from sqlglot import exp

from dli_airflow.errors import TemplateError
from dli_airflow.params import resolve_parameters
from dli_airflow.render import check_template, render_sql, split_statements, sql_identifier, sql_literal
from dli_airflow.spec import DatasetSpec
from dli_airflow.transpile import transpile

DIALECTS = ["duckdb", "trino", "bigquery"]


# -- injection safety ---------------------------------------------------------------------------------------

HOSTILE = [
    "x' OR '1'='1",
    "'; DROP TABLE customers; --",
    "\\' OR 1=1 --",
    "x\\",
    "\u2019 OR \u20181\u2019=\u20181",  # typographic quotes
    "ʼ OR 1=1 --",  # modifier letter apostrophe
    "a\nb'; DELETE FROM customers; --\n",
    "line1\r\nline2",
    "$$ OR 1=1 $$",
    "/* ' */ OR 1=1",
    "{{ 7 * 7 }}",
    "o'brien",
    "",
]
TEMPLATE = "SELECT name FROM customers WHERE name = {{ customer }}"


@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize("value", HOSTILE, ids=[repr(v) for v in HOSTILE])
def test_string_value_cannot_change_the_statement(dialect: str, value: str) -> None:
    rendered = render_sql(TEMPLATE, {"customer": value}, dialect=dialect)
    statements = sqlglot.parse(rendered, read=dialect)
    assert len(statements) == 1, rendered
    where = statements[0].args["where"].this
    assert isinstance(where, exp.EQ), rendered
    assert isinstance(where.left, exp.Column) and where.left.name == "name"
    assert isinstance(where.right, exp.Literal) and where.right.is_string, rendered
    assert where.right.this == value


@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize("value", HOSTILE, ids=[repr(v) for v in HOSTILE])
def test_string_value_returns_only_its_own_row_on_duckdb(dialect: str, value: str) -> None:
    conn = duckdb.connect(":memory:")
    conn.execute("CREATE TABLE customers (name VARCHAR)")
    conn.executemany("INSERT INTO customers VALUES (?)", [["alice"], ["bob"], ["1"], [value]])
    rendered = render_sql(TEMPLATE, {"customer": value}, dialect=dialect)
    sql = rendered if dialect == "duckdb" else transpile(rendered, dialect, "duckdb")
    rows = conn.execute(sql).fetchall()
    assert rows == [(value,)]
    assert conn.execute("SELECT count(*) FROM customers").fetchone() == (4,)  # nothing dropped or deleted


@pytest.mark.parametrize("dialect", DIALECTS)
def test_params_namespace_renders_the_same_literal(dialect: str) -> None:
    value = "x' OR '1'='1"
    by_name = render_sql(TEMPLATE, {"customer": value}, dialect=dialect)
    by_params = render_sql(TEMPLATE.replace("customer }}", "params.customer }}"), {"customer": value}, dialect=dialect)
    assert by_name == by_params


def test_rendered_value_is_not_rendered_again() -> None:
    assert render_sql("SELECT {{ x }}", {"x": "{{ 7 * 7 }}"}) == "SELECT '{{ 7 * 7 }}'"


# -- hand-quoted placeholders -------------------------------------------------------------------------------


def _template_spec() -> DatasetSpec:
    return spec_with("  - {name: execution_date, type: date, required: true}\n  - {name: customer}\n  - {name: suffix}\n")


@pytest.mark.parametrize(
    ("sql", "line", "bare"),
    [
        ("SELECT * FROM t WHERE d = '{{ execution_date }}'", 1, "{{ execution_date }}"),
        ('SELECT * FROM t WHERE c = "{{ customer }}"', 1, "{{ customer }}"),
        ("SELECT * FROM t\nWHERE c LIKE 'prefix_{{ customer }}%'", 2, "{{ customer }}"),
        ("SELECT *\nFROM t\nWHERE d = '{{params.execution_date}}'", 3, "{{ params.execution_date }}"),
        ("SELECT * FROM `tbl_{{ suffix }}`", 1, "{{ suffix }}"),
        ("-- don't\nSELECT '{{   customer   |   upper }}'", 2, "{{ customer | upper }}"),
    ],
    ids=["single", "double", "prefix", "params", "backtick", "filter"],
)
def test_hand_quoted_placeholder_is_205_with_the_fix(sql: str, line: int, bare: str) -> None:
    with pytest.raises(TemplateError) as info:
        check_template(sql, _template_spec(), "code/q.sql")
    error = info.value
    assert error.code == "DLI-205"
    assert error.message.startswith(f"code/q.sql:{line}:"), error.message
    assert "inside a quoted SQL string" in error.message
    assert error.hint.startswith(f"write {bare} without the quotes"), error.hint
    assert f"'{bare}'" not in error.hint


@pytest.mark.parametrize(
    "sql",
    [
        "-- don't quote this\nSELECT * FROM t WHERE d = {{ execution_date }}",
        "/* it's fine */ SELECT * FROM t WHERE d = {{ execution_date }}",
        "/* multi\n   line's\n*/ SELECT {{ customer }}",
        "SELECT 'it''s', {{ customer }}",
        "SELECT '--', {{ customer }}",
        "SELECT 'a' || {{ customer }} || 'b'",
        'SELECT "col", {{ customer }} FROM t',
        "-- note {{ customer }} don't\nSELECT {{ execution_date }}",
        "{# it's a jinja comment #} SELECT {{ customer }}",
        "SELECT {{ 'prefix_' ~ customer }}",
        "SELECT * FROM {{ suffix | identifier }}",
        "SELECT 1 {% if customer %}WHERE c = {{ customer }}{% endif %}",
        # names the template binds itself are not parameters
        "{% set cutoff = execution_date %}SELECT {{ cutoff }}",
        "SELECT {% for c in [customer, 'x'] %}{{ c }}{{ ',' if not loop.last }}{% endfor %}",
        "{% macro col(name) %}{{ name | identifier }}{% endmacro %}SELECT {{ col(suffix) }}",
    ],
)
def test_no_false_positives(sql: str) -> None:
    check_template(sql, _template_spec(), "code/q.sql")


def test_undeclared_variable_suggests_the_declared_one() -> None:
    with pytest.raises(TemplateError) as info:
        check_template("SELECT * FROM t WHERE d = {{ execution_dte }}", _template_spec(), "code/q.sql")
    error = info.value
    assert error.code == "DLI-205"
    assert "code/q.sql" in error.message and "'execution_dte'" in error.message
    assert "did you mean 'execution_date'?" in error.hint


def test_undeclared_variable_inside_a_loop_is_found() -> None:
    with pytest.raises(TemplateError) as info:
        check_template("{% for c in [1, 2] %}SELECT {{ c }}, {{ custmer }};{% endfor %}", _template_spec(), "code/q.sql")
    assert "'custmer'" in info.value.message and "did you mean 'customer'?" in info.value.hint


def test_template_syntax_error_names_the_line() -> None:
    with pytest.raises(TemplateError) as info:
        check_template("SELECT 1\nWHERE {% if customer %} x", _template_spec(), "code/q.sql")
    assert info.value.code == "DLI-205"
    assert info.value.message.startswith("code/q.sql:2:")


def test_sandbox_refuses_python_internals() -> None:
    with pytest.raises(TemplateError) as info:
        render_sql("SELECT {{ customer.__class__.__mro__[1].__subclasses__() }}", {"customer": "x"})
    assert info.value.code == "DLI-205"


def test_undefined_name_at_render_time() -> None:
    with pytest.raises(TemplateError) as info:
        render_sql("SELECT {{ nope }}", {}, path="code/q.sql")
    assert info.value.code == "DLI-205" and "code/q.sql" in info.value.message


# -- identifiers and literals -------------------------------------------------------------------------------


@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize("value", ['we"ird', "we`ird", "x; DROP TABLE t", "o'brien", "space name"])
def test_identifier_filter_quotes_one_identifier(dialect: str, value: str) -> None:
    rendered = render_sql("SELECT * FROM {{ suffix | identifier }}", {"suffix": value}, dialect=dialect)
    statements = sqlglot.parse(rendered, read=dialect)
    assert len(statements) == 1, rendered
    tables = list(statements[0].find_all(exp.Table))
    assert len(tables) == 1 and tables[0].name == value, rendered
    assert tables[0].this.quoted


def test_identifier_with_quote_runs_on_duckdb() -> None:
    conn = duckdb.connect(":memory:")
    conn.execute('CREATE TABLE "we""ird" AS SELECT 1 AS x')
    conn.execute("CREATE TABLE t AS SELECT 2 AS x")
    sql = render_sql("SELECT x FROM {{ suffix | identifier }}", {"suffix": 'we"ird'})
    assert conn.execute(sql).fetchall() == [(1,)]


def test_dotted_identifier_quotes_each_part() -> None:
    assert sql_identifier("analytics.daily", "duckdb") == '"analytics"."daily"'
    assert sql_identifier("p.d.t", "bigquery") == "`p`.`d`.`t`"


def test_empty_identifier_is_refused() -> None:
    with pytest.raises(TemplateError):
        render_sql("SELECT * FROM {{ suffix | identifier }}", {"suffix": ""})


def test_typed_literals(spec: DatasetSpec) -> None:
    values = resolve_parameters(spec, {"execution_date": "2024-01-15", "flag": "false", "ratio": "0.5"})
    sql = (
        "SELECT {{ execution_date }}, {{ limit }}, {{ customer }}, {{ ratio }}, {{ flag }}, {{ params.execution_date }}"
    )
    assert render_sql(sql, values) == "SELECT DATE '2024-01-15', 100, NULL, 0.5, FALSE, DATE '2024-01-15'"


def test_literals_round_trip_through_duckdb(spec: DatasetSpec) -> None:
    values = resolve_parameters(
        spec, {"execution_date": "2024-01-15", "flag": "true", "ratio": "-1.25", "customer": "é'"}
    )
    sql = render_sql("SELECT {{ execution_date }}, {{ limit }}, {{ customer }}, {{ ratio }}, {{ flag }}", values)
    assert duckdb.connect().execute(sql).fetchone() == (date(2024, 1, 15), 100, "é'", -1.25, True)


@pytest.mark.parametrize(
    ("value", "dialect", "expected"),
    [
        (None, "duckdb", "NULL"),
        (True, "trino", "TRUE"),
        (False, "bigquery", "FALSE"),
        (7, "duckdb", "7"),
        (-0.5, "duckdb", "-0.5"),
        (date(2024, 1, 15), "trino", "DATE '2024-01-15'"),
        (date(2024, 1, 15), "bigquery", "DATE '2024-01-15'"),
        ("o'brien", "duckdb", "'o''brien'"),
        ("o'brien", "trino", "'o''brien'"),
        ("o'brien", "bigquery", "'o\\'brien'"),
        (["a", 1], "duckdb", "('a', 1)"),
    ],
)
def test_sql_literal(value: object, dialect: str, expected: str) -> None:
    assert sql_literal(value, dialect) == expected


def test_non_finite_number_is_refused() -> None:
    with pytest.raises(TemplateError):
        sql_literal(float("nan"))


def test_unsupported_value_is_refused() -> None:
    with pytest.raises(TemplateError):
        sql_literal(object())


# -- statements ---------------------------------------------------------------------------------------------


def test_split_statements_respects_strings_and_drops_comment_only_chunks() -> None:
    sql = "SELECT ';' AS semi;\n-- just a comment\n;\nSELECT 2 /* ; */;\n\n"
    assert split_statements(sql) == ["SELECT ';' AS semi", "SELECT 2 /* ; */"]


def test_split_statements_single_without_semicolon() -> None:
    assert split_statements("SELECT 1") == ["SELECT 1"]
