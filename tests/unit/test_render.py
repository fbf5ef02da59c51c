"""Safe SQL rendering (``dli_airflow.render``, ``bind``, ``sandbox``): values bound, never in the SQL;
misplaced placeholders; identifiers; the display text; the render's limits; statement splitting.

The hostile corpus of the class (template × value × dialect) and the property test are in test_injection.py.
"""

from __future__ import annotations

from datetime import date

import duckdb
import pytest
import sqlglot
from spec_support import spec_with
from sqlglot import exp

from dli_airflow.errors import TemplateError
from dli_airflow.params import resolve_parameters
from dli_airflow.render import (
    check_template,
    render_bound,
    render_sql,
    split_statements,
    sql_identifier,
    sql_literal,
)
from dli_airflow.sandbox import RenderLimits
from dli_airflow.spec import DatasetSpec

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


@pytest.mark.hostile(kind="injection")
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


@pytest.mark.hostile(kind="injection")
@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize("value", HOSTILE, ids=[repr(v) for v in HOSTILE])
def test_string_value_is_bound_and_returns_only_its_own_row_on_duckdb(dialect: str, value: str) -> None:
    conn = duckdb.connect(":memory:")
    conn.execute("CREATE TABLE customers (name VARCHAR)")
    conn.executemany("INSERT INTO customers VALUES (?)", [["alice"], ["bob"], ["1"], [value]])
    [statement] = render_bound(TEMPLATE, {"customer": value}, dialect=dialect, target="duckdb").statements
    assert statement.sql == "SELECT name FROM customers WHERE name = ?"  # the value is not in the text
    assert conn.execute(statement.sql, statement.positional()).fetchall() == [(value,)]
    assert conn.execute("SELECT count(*) FROM customers").fetchone() == (4,)  # nothing dropped or deleted


@pytest.mark.parametrize(
    ("dialect", "sent"),
    [
        ("duckdb", "SELECT name FROM customers WHERE name = ?"),
        ("trino", "SELECT name FROM customers WHERE name = ?"),
        ("bigquery", "SELECT name FROM customers WHERE name = @dli_1"),
    ],
)
def test_each_engine_gets_its_own_placeholders_and_the_values_apart(dialect: str, sent: str) -> None:
    bound = render_bound(TEMPLATE, {"customer": "x' OR '1'='1"}, dialect=dialect)
    [statement] = bound.statements
    assert statement.sql == sent and statement.positional() == ["x' OR '1'='1"]
    assert "OR" not in statement.sql
    assert bound.display == render_sql(TEMPLATE, {"customer": "x' OR '1'='1"}, dialect=dialect)


@pytest.mark.parametrize("dialect", DIALECTS)
def test_params_namespace_renders_the_same_literal(dialect: str) -> None:
    value = "x' OR '1'='1"
    by_name = render_sql(TEMPLATE, {"customer": value}, dialect=dialect)
    by_params = render_sql(TEMPLATE.replace("customer }}", "params.customer }}"), {"customer": value}, dialect=dialect)
    assert by_name == by_params


@pytest.mark.hostile(kind="injection")
def test_rendered_value_is_not_rendered_again() -> None:
    assert render_sql("SELECT {{ x }}", {"x": "{{ 7 * 7 }}"}) == "SELECT '{{ 7 * 7 }}'"


# -- hand-quoted placeholders -------------------------------------------------------------------------------


def _template_spec() -> DatasetSpec:
    return spec_with("  - {name: execution_date, type: date, required: true}\n  - {name: customer}\n  - {name: suffix}\n")


@pytest.mark.hostile(kind="injection")
@pytest.mark.parametrize(
    ("sql", "line", "bare"),
    [
        ("SELECT * FROM t WHERE d = '{{ execution_date }}'", 1, "{{ execution_date }}"),
        ("SELECT * FROM t\nWHERE c LIKE 'prefix_{{ customer }}%'", 2, "{{ customer }}"),
        ("SELECT *\nFROM t\nWHERE d = '{{params.execution_date}}'", 3, "{{ params.execution_date }}"),
        ("-- don't\nSELECT '{{   customer   |   upper }}'", 2, "{{ customer | upper }}"),
        ("SELECT regexp_matches(url, $$^https://{{ customer }}/$$)", 1, "{{ customer }}"),
        ("SELECT E'it\\'s {{ customer }}'", 1, "{{ customer }}"),
    ],
    ids=["single", "prefix", "params", "filter", "dollar", "escape-string"],
)
def test_hand_quoted_placeholder_is_205_with_the_fix(sql: str, line: int, bare: str) -> None:
    """Inside a string the renderer would have to splice text: refused, with the fix."""
    with pytest.raises(TemplateError) as info:
        check_template(sql, _template_spec(), "code/q.sql")
    error = info.value
    assert error.code == "DLI-205"
    assert error.message.startswith(f"code/q.sql:{line}:"), error.message
    assert "inside a quoted SQL string" in error.message
    assert error.hint.startswith(f"write {bare} without the quotes"), error.hint
    assert f"'{bare}'" not in error.hint


@pytest.mark.hostile(kind="injection")
@pytest.mark.parametrize(
    ("sql", "where"),
    [
        ('SELECT * FROM t WHERE c = "{{ customer }}"', "inside a quoted identifier"),
        ("SELECT * FROM `tbl_{{ suffix }}`", "joined to other text"),
        ("SELECT * FROM tbl_{{ suffix | identifier }}", "joined to other text"),
        ("-- note {{ customer }} don't\nSELECT {{ execution_date }}", "inside a SQL comment"),
        ("SELECT 1 /* outer /* inner */ {{ customer }} */", "inside a SQL comment"),
        ("SELECT {{ customer }}{{ suffix }}", "joined to other text"),
    ],
)
def test_placeholder_in_a_name_or_a_comment_is_205(sql: str, where: str) -> None:
    with pytest.raises(TemplateError, match=where) as info:
        check_template(sql, _template_spec(), "code/q.sql")
    assert info.value.message.startswith("code/q.sql:")


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
        "SELECT $$it's$$, {{ customer }}",
        "SELECT 1 /* a /* nested ' */ */, {{ customer }}",
        "{# it's a jinja comment #} SELECT {{ customer }}",
        "SELECT {{ 'prefix_' ~ customer }}",
        "SELECT * FROM {{ suffix | identifier }}",
        "SELECT 1 {% if customer %}WHERE c = {{ customer }}{% endif %}",
        # names the template binds itself are not parameters
        "{% set cutoff = execution_date %}SELECT {{ cutoff }}",
        "SELECT {% for c in [customer, 'x'] %}{{ c }}{% if not loop.last %}, {% endif %}{% endfor %}",
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


@pytest.mark.hostile(kind="rendering")
def test_template_syntax_error_names_the_line() -> None:
    with pytest.raises(TemplateError) as info:
        check_template("SELECT 1\nWHERE {% if customer %} x", _template_spec(), "code/q.sql")
    assert info.value.code == "DLI-205"
    assert info.value.message.startswith("code/q.sql:2:")


@pytest.mark.hostile(kind="rendering")
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


@pytest.mark.hostile(kind="injection")
def test_identifier_with_quote_runs_on_duckdb() -> None:
    conn = duckdb.connect(":memory:")
    conn.execute('CREATE TABLE "we""ird" AS SELECT 1 AS x')
    conn.execute("CREATE TABLE t AS SELECT 2 AS x")
    [statement] = render_bound("SELECT x FROM {{ suffix | identifier }}", {"suffix": 'we"ird'}).statements
    assert statement.sql == 'SELECT x FROM "we""ird"' and not statement.values  # a name is never a parameter
    assert conn.execute(statement.sql).fetchall() == [(1,)]


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


def test_typed_values_round_trip_through_duckdb_bound(spec: DatasetSpec) -> None:
    values = resolve_parameters(
        spec, {"execution_date": "2024-01-15", "flag": "true", "ratio": "-1.25", "customer": "é'"}
    )
    sql = "SELECT {{ execution_date }}, {{ limit }}, {{ customer }}, {{ ratio }}, {{ flag }}"
    [statement] = render_bound(sql, values).statements
    assert statement.sql == "SELECT ?, ?, ?, ?, ?"
    row = duckdb.connect().execute(statement.sql, statement.positional()).fetchone()
    assert row == (date(2024, 1, 15), 100, "é'", -1.25, True)
    # the display reads the same values back
    assert duckdb.connect().execute(render_sql(sql, values)).fetchone() == row


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


@pytest.mark.hostile(kind="rendering")
def test_non_finite_number_is_refused() -> None:
    with pytest.raises(TemplateError):
        sql_literal(float("nan"))


@pytest.mark.hostile(kind="rendering")
def test_unsupported_value_is_refused() -> None:
    with pytest.raises(TemplateError):
        sql_literal(object())


# -- statements ---------------------------------------------------------------------------------------------


def test_split_statements_respects_strings_and_drops_comment_only_chunks() -> None:
    sql = "SELECT ';' AS semi;\n-- just a comment\n;\nSELECT 2 /* ; */;\n\n"
    assert split_statements(sql) == ["SELECT ';' AS semi", "SELECT 2 /* ; */"]


def test_split_statements_single_without_semicolon() -> None:
    assert split_statements("SELECT 1") == ["SELECT 1"]


def test_split_statements_reads_dollar_quotes_and_nested_comments() -> None:
    sql = "SELECT $$a;b$$;\nSELECT 1 /* x /* ; */ ; */;\nSELECT E'\\';'"
    assert split_statements(sql) == ["SELECT $$a;b$$", "SELECT 1 /* x /* ; */ ; */", "SELECT E'\\';'"]


# -- binding ------------------------------------------------------------------------------------------------


def test_each_statement_binds_only_the_values_it_uses_and_runs_on_duckdb() -> None:
    sql = (
        "CREATE TABLE t AS SELECT {{ customer }} AS c;\n"
        "INSERT INTO t SELECT {{ customer ~ '!' }};\n"
        "SELECT count(*) FROM t WHERE c LIKE {{ customer ~ '%' }} LIMIT {{ limit }}"
    )
    bound = render_bound(sql, {"customer": "o'b", "limit": 5})
    assert [s.sql for s in bound.statements] == [
        "CREATE TABLE t AS SELECT ? AS c",
        "INSERT INTO t SELECT ?",
        "SELECT count(*) FROM t WHERE c LIKE ? LIMIT ?",
    ]
    assert [s.positional() for s in bound.statements] == [["o'b"], ["o'b!"], ["o'b%", 5]]
    assert [(s.line, s.column) for s in bound.statements] == [(1, 1), (2, 1), (3, 1)]
    conn = duckdb.connect()
    for statement in bound.statements:
        last = conn.execute(statement.sql, statement.positional() or None).fetchall()
    assert last == [(2,)]


@pytest.mark.hostile(kind="injection")
@pytest.mark.parametrize(
    ("sql", "sent"),
    [
        ("SELECT * FROM t ORDER BY {{ n }}", "SELECT * FROM t ORDER BY 2"),
        ("SELECT count(*) FROM t GROUP BY {{ n }}", "SELECT count(*) FROM t GROUP BY 2"),
        ("SELECT d + INTERVAL {{ n }} DAY", "SELECT d + INTERVAL 2 DAY"),
        ("SELECT * FROM t USING SAMPLE {{ n }}", "SELECT * FROM t USING SAMPLE 2"),
        ("CREATE VIEW v AS SELECT {{ n }} AS x", "CREATE VIEW v AS SELECT 2 AS x"),
        ("CREATE TABLE t (x INT DEFAULT {{ n }})", "CREATE TABLE t (x INT DEFAULT 2)"),
        ("SELECT * FROM t ORDER BY x + {{ n }} LIMIT {{ n }}", "SELECT * FROM t ORDER BY x + ? LIMIT ?"),
    ],
)
def test_a_value_where_no_engine_binds_one_is_a_checked_literal(sql: str, sent: str) -> None:
    [statement] = render_bound(sql, {"n": 2}).statements
    assert statement.sql == sent


def test_bigquery_gets_an_untyped_null_as_the_keyword() -> None:
    [statement] = render_bound("SELECT {{ a }}, {{ b }}", {"a": None, "b": "x"}, dialect="bigquery").statements
    assert statement.sql == "SELECT NULL, @dli_1" and statement.named() == {"dli_1": "x"}
    [statement] = render_bound("SELECT {{ a }}", {"a": None}, dialect="duckdb").statements
    assert statement.sql == "SELECT ?" and statement.positional() == [None]


def test_a_list_binds_as_one_array_value() -> None:
    [statement] = render_bound("SELECT 2 IN {{ [a, b] }}", {"a": 1, "b": 2}).statements
    assert statement.sql == "SELECT 2 IN ?" and statement.positional() == [[1, 2]]
    assert duckdb.connect().execute(statement.sql, statement.positional()).fetchall() == [(True,)]


def test_a_macro_writes_sql_text_with_its_own_values_bound() -> None:
    sql = (
        "{% macro filter_on(col, value) %}{{ col | identifier }} = {{ value }}{% endmacro %}"
        "{% macro wrap() %}({{ caller() }}){% endmacro %}"
        "SELECT 1 WHERE {{ filter_on('name', customer) }} AND {% call wrap() %}{{ customer }} <> ''{% endcall %}"
    )
    check_template(sql, _template_spec(), "code/q.sql")
    [statement] = render_bound(sql, {"customer": "o'b"}).statements
    assert statement.sql == "SELECT 1 WHERE \"name\" = ? AND (? <> '')"
    assert statement.positional() == ["o'b", "o'b"]


def test_the_output_of_a_set_block_is_not_a_value() -> None:
    with pytest.raises(TemplateError, match=r"code/q\.sql:1: the output of a \{% set %\} block"):
        render_bound("{% set s %}{{ x }}{% endset %}SELECT {{ s }}", {"x": 1}, path="code/q.sql")


def test_a_value_without_a_sql_form_is_refused_at_its_line() -> None:
    with pytest.raises(TemplateError, match=r"code/q\.sql:2: cannot use a dict as a SQL value"):
        render_bound("SELECT 1,\n{{ dict(a=1) }}", {}, path="code/q.sql")


@pytest.mark.hostile(kind="rendering")
def test_an_undefined_name_at_run_time_names_the_line() -> None:
    with pytest.raises(TemplateError, match=r"code/q\.sql:3: 'nope' is undefined"):
        render_bound("SELECT 1\n,2\n,{{ nope }}", {}, path="code/q.sql")


# -- the render's limits --------------------------------------------------------------------------------------


def test_the_limits_are_read_from_the_dli_section(monkeypatch: pytest.MonkeyPatch) -> None:
    from dli_airflow.errors import ConfigError

    assert RenderLimits.from_config() == RenderLimits(10.0, 2 * 1024 * 1024)
    monkeypatch.setenv("AIRFLOW__DLI__RENDER_TIMEOUT_SECONDS", "2.5")
    monkeypatch.setenv("AIRFLOW__DLI__MAX_RENDERED_BYTES", "4096")
    assert RenderLimits.from_config() == RenderLimits(2.5, 4096)
    with pytest.raises(TemplateError, match=r"code/q\.sql:1: the rendered SQL would be 4,104 characters; the limit is 4,096"):
        render_bound("{% for i in range(626) %}SELECT 1;{% endfor %}", {}, path="code/q.sql")
    monkeypatch.setenv("AIRFLOW__DLI__RENDER_TIMEOUT_SECONDS", "soon")
    with pytest.raises(ConfigError, match="render_timeout_seconds must be a number"):
        RenderLimits.from_config()
    monkeypatch.setenv("AIRFLOW__DLI__RENDER_TIMEOUT_SECONDS", "1")
    monkeypatch.setenv("AIRFLOW__DLI__MAX_RENDERED_BYTES", "10")
    with pytest.raises(ConfigError, match="max_rendered_bytes must be at least 1024"):
        RenderLimits.from_config()


def test_a_template_within_its_limits_renders_loops_and_ranges() -> None:
    sql = "SELECT {% for i in range(3) %}{{ i }}{% if not loop.last %} + {% endif %}{% endfor %} AS total"
    [statement] = render_bound(sql, {}, limits=RenderLimits(5, 10_000)).statements
    assert statement.sql == "SELECT ? + ? + ? AS total" and statement.positional() == [0, 1, 2]
