"""Parameters (coercion, unknown and missing ones) and safe SQL rendering (typed literals, no injection)."""

from __future__ import annotations

from datetime import date, datetime

import duckdb
import pytest
import sqlglot
from sqlglot import exp

from dli_airflow.errors import ParameterError, TemplateError
from dli_airflow.local import transpile
from dli_airflow.spec import DatasetSpec, load_spec
from dli_airflow.sql import (
    check_template,
    coerce_value,
    describe_parameters,
    render_sql,
    resolve_parameters,
    split_statements,
    sql_identifier,
    sql_literal,
)

DIALECTS = ["duckdb", "trino", "bigquery"]


def _spec(parameters: str, schedule: str = "") -> DatasetSpec:
    return load_spec(
        f"name: sales.daily\nowner: me@example.com\nquery: SELECT 1\nparameters:\n{parameters}{schedule}", "s.yaml"
    )


@pytest.fixture
def spec() -> DatasetSpec:
    return _spec(
        "  - {name: execution_date, type: date, required: true}\n"
        "  - {name: limit, type: integer, default: 100}\n"
        "  - {name: customer, type: string}\n"
        "  - {name: ratio, type: number}\n"
        "  - {name: flag, type: boolean}\n"
    )


# -- coercion -----------------------------------------------------------------------------------------------

GOOD_VALUES = [
    # strings as they come from `-p key=value`
    ("string", "o'brien", "o'brien"),
    ("string", "", ""),
    ("string", "  spaced  ", "  spaced  "),
    ("date", "2024-01-15", date(2024, 1, 15)),
    ("date", " 2024-02-29 ", date(2024, 2, 29)),
    ("integer", "42", 42),
    ("integer", "-7", -7),
    ("integer", " +3 ", 3),
    ("number", "0.5", 0.5),
    ("number", "1e3", 1000.0),
    ("number", "3", 3),
    ("number", "-2.25", -2.25),
    ("boolean", "true", True),
    ("boolean", "FALSE", False),
    ("boolean", "yes", True),
    ("boolean", "no", False),
    ("boolean", "1", True),
    ("boolean", "0", False),
    ("boolean", "On", True),
    # JSON values from the API or a DAG run's conf
    ("string", 5, "5"),
    ("string", True, "true"),
    ("string", date(2024, 1, 15), "2024-01-15"),
    ("date", date(2024, 1, 15), date(2024, 1, 15)),
    ("date", datetime(2024, 1, 15, 23, 59), date(2024, 1, 15)),
    ("integer", 42, 42),
    ("integer", 5.0, 5),
    ("number", 2, 2),
    ("number", 0.25, 0.25),
    ("boolean", True, True),
    ("boolean", 0, False),
    ("boolean", 1, True),
]


@pytest.mark.parametrize(("param_type", "raw", "expected"), GOOD_VALUES)
def test_coerce_good_values(param_type: str, raw: object, expected: object) -> None:
    value = coerce_value(param_type, raw)
    assert value == expected
    assert type(value) is type(expected)


BAD_VALUES = [
    ("date", "15/01/2024"),
    ("date", "2024-02-30"),
    ("date", "yesterday"),
    ("date", ""),
    ("date", 20240115),
    ("integer", "1.5"),
    ("integer", "ten"),
    ("integer", ""),
    ("integer", "1e3"),
    ("integer", True),
    ("integer", 1.5),
    ("number", "abc"),
    ("number", "nan"),
    ("number", "inf"),
    ("number", ""),
    ("number", False),
    ("boolean", "maybe"),
    ("boolean", ""),
    ("boolean", 2),
    ("boolean", "2"),
    ("string", ["a"]),
    ("string", {"a": 1}),
]


@pytest.mark.parametrize(("param_type", "raw"), BAD_VALUES)
def test_coerce_bad_values(param_type: str, raw: object) -> None:
    with pytest.raises(ValueError):
        coerce_value(param_type, raw)


@pytest.mark.parametrize(
    ("name", "raw"),
    [("execution_date", "2024-13-01"), ("limit", "many"), ("ratio", "half"), ("flag", "perhaps")],
)
def test_bad_value_is_dli_203_naming_the_parameter(spec: DatasetSpec, name: str, raw: str) -> None:
    given = {"execution_date": "2024-01-15", name: raw}
    with pytest.raises(ParameterError) as info:
        resolve_parameters(spec, given)
    error = info.value
    assert error.code == "DLI-203"
    assert f"Parameter {name!r}" in error.message and repr(raw) in error.message
    assert f"-p {name}=" in error.render()


def test_resolve_coerces_and_fills_defaults(spec: DatasetSpec) -> None:
    values = resolve_parameters(spec, {"execution_date": "2024-01-15", "flag": "yes", "ratio": "0.5"})
    assert values == {
        "execution_date": date(2024, 1, 15),
        "limit": 100,
        "customer": None,
        "ratio": 0.5,
        "flag": True,
    }


def test_unknown_parameter_lists_the_allowed_ones() -> None:
    spec = _spec("  - {name: execution_date, type: date, required: true}\n  - {name: limit, type: integer}\n")
    with pytest.raises(ParameterError) as info:
        resolve_parameters(spec, {"execution_date": "2024-01-15", "limt": "5"})
    error = info.value
    assert error.code == "DLI-203"
    assert "Unknown parameter 'limt'" in error.message
    assert "did you mean 'limit'?" in error.message
    assert "Allowed parameters: execution_date (required), limit (optional)" in error.message


def test_several_unknown_parameters_are_all_named(spec: DatasetSpec) -> None:
    with pytest.raises(ParameterError) as info:
        resolve_parameters(spec, {"zeta": 1, "alpha": 2})
    assert "Unknown parameters 'alpha', 'zeta'" in info.value.message


def test_unknown_parameter_on_a_dataset_without_parameters() -> None:
    spec = load_spec("name: a\nowner: b\nquery: SELECT 1\n", "a.yaml")
    with pytest.raises(ParameterError) as info:
        resolve_parameters(spec, {"x": "1"})
    assert "declares no parameters" in info.value.message


def test_missing_required_parameters_are_listed() -> None:
    spec = _spec(
        "  - {name: execution_date, type: date, required: true}\n"
        "  - {name: customer, required: true}\n"
        "  - {name: limit, type: integer}\n"
    )
    with pytest.raises(ParameterError) as info:
        resolve_parameters(spec, {})
    error = info.value
    assert error.code == "DLI-203"
    assert "Missing required parameters: execution_date, customer" in error.message
    assert "Allowed parameters: execution_date (required), customer (required), limit (optional)" in error.message
    assert "-p execution_date=<value> -p customer=<value>" in error.render()


def test_none_counts_as_not_given(spec: DatasetSpec) -> None:
    with pytest.raises(ParameterError, match="Missing required parameter: execution_date"):
        resolve_parameters(spec, {"execution_date": None})
    assert resolve_parameters(spec, {"execution_date": "2024-01-15", "limit": None})["limit"] == 100


def test_execution_date_is_filled_when_not_given(spec: DatasetSpec) -> None:
    values = resolve_parameters(spec, {}, execution_date=date(2024, 1, 16))
    assert values["execution_date"] == date(2024, 1, 16)
    # a value given explicitly wins over the filled one
    values = resolve_parameters(spec, {"execution_date": "2024-01-01"}, execution_date=date(2024, 1, 16))
    assert values["execution_date"] == date(2024, 1, 1)


def test_fill_required_false_allows_missing(spec: DatasetSpec) -> None:
    assert resolve_parameters(spec, {}, fill_required=False)["execution_date"] is None


def test_describe_parameters(spec: DatasetSpec) -> None:
    assert describe_parameters(spec) == (
        "execution_date (required), limit (optional), customer (optional), ratio (optional), flag (optional)"
    )


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
    return _spec("  - {name: execution_date, type: date, required: true}\n  - {name: customer}\n  - {name: suffix}\n")


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
