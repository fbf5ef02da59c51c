"""Local runs of Trino and BigQuery SQL on DuckDB: the table of daily constructs and what they return.

Each case is (name, source SQL, the rows Trino/BigQuery return). The expected rows are the source
engine's answer (from its documentation), not whatever DuckDB happens to print: a case passes only when
the transpiled SQL computes the same thing on DuckDB. What cannot be translated faithfully is refused with
DLI-301 naming the construct and the line (second table). Everything runs through ``run_entry`` (render,
split, transpile, DuckDB with the source's session settings).
"""

from __future__ import annotations

from datetime import date, datetime, timezone
from decimal import Decimal
from typing import Any

import pytest

from dli_airflow.catalog import SpecEntry
from dli_airflow.errors import SqlExecutionError, TranspileError
from dli_airflow.local import run_entry
from dli_airflow.render import render_entry
from dli_airflow.spec import DatasetStatus, SourceType, load_spec
from dli_airflow.transpile import SOURCE_SETTINGS, transpile

UTC = timezone.utc

TRINO_CASES: list[tuple[str, str, list[tuple[Any, ...]]]] = [
    # date arithmetic
    ("date_add day", "SELECT date_add('day', 7, DATE '2024-01-31')", [(date(2024, 2, 7),)]),
    ("date_add month clamps to month end", "SELECT date_add('month', 1, DATE '2024-01-31')", [(date(2024, 2, 29),)]),
    ("date_add negative", "SELECT date_add('day', -1, DATE '2024-03-01')", [(date(2024, 2, 29),)]),
    ("date_add hour on timestamp", "SELECT date_add('hour', 5, TIMESTAMP '2024-01-31 22:00:00')",
     [(datetime(2024, 2, 1, 3, 0),)]),
    ("date + interval stays a date", "SELECT DATE '2024-01-15' + INTERVAL '1' DAY", [(date(2024, 1, 16),)]),
    ("date - interval month", "SELECT DATE '2024-03-31' - INTERVAL '1' MONTH", [(date(2024, 2, 29),)]),
    ("date_diff day", "SELECT date_diff('day', DATE '2024-01-01', DATE '2024-03-01')", [(60,)]),
    ("date_diff counts whole months",
     "SELECT date_diff('month', DATE '2024-01-15', DATE '2024-02-14'), "
     "date_diff('month', DATE '2024-01-31', DATE '2024-02-29'), "
     "date_diff('month', DATE '2024-02-15', DATE '2024-01-16')",
     [(0, 1, 0)]),
    ("date_diff counts whole years", "SELECT date_diff('year', DATE '2023-12-31', DATE '2024-01-01')", [(0,)]),
    ("date_diff counts whole hours",
     "SELECT date_diff('hour', TIMESTAMP '2024-01-01 10:59:00', TIMESTAMP '2024-01-01 11:00:00')", [(0,)]),
    ("date_diff days between timestamps",
     "SELECT date_diff('day', TIMESTAMP '2024-01-01 10:00:00', TIMESTAMP '2024-01-02 09:00:00')", [(0,)]),
    # date_trunc
    ("date_trunc month", "SELECT date_trunc('month', DATE '2024-02-15')", [(date(2024, 2, 1),)]),
    ("date_trunc week starts Monday", "SELECT date_trunc('week', DATE '2024-02-15')", [(date(2024, 2, 12),)]),
    ("date_trunc quarter", "SELECT date_trunc('quarter', DATE '2024-02-15')", [(date(2024, 1, 1),)]),
    ("date_trunc hour", "SELECT date_trunc('hour', TIMESTAMP '2024-01-15 10:30:00')", [(datetime(2024, 1, 15, 10),)]),
    # calendar fields and formats
    ("day_of_week is ISO (Sunday = 7)", "SELECT day_of_week(DATE '2024-01-14'), EXTRACT(DOW FROM DATE '2024-01-14')",
     [(7, 7)]),
    ("ISO week and year", "SELECT week(DATE '2024-12-30'), year_of_week(DATE '2024-12-30'), quarter(DATE '2024-05-01')",
     [(1, 2025, 2)]),
    ("last_day_of_month", "SELECT last_day_of_month(DATE '2024-02-10')", [(date(2024, 2, 29),)]),
    ("date_format", "SELECT date_format(TIMESTAMP '2024-01-15 10:30:00', '%Y-%m-%d %H:%i')", [("2024-01-15 10:30",)]),
    ("date_parse", "SELECT date_parse('2024-01-15 10:30', '%Y-%m-%d %H:%i')", [(datetime(2024, 1, 15, 10, 30),)]),
    ("from_iso8601_date", "SELECT from_iso8601_date('2024-01-15')", [(date(2024, 1, 15),)]),
    # aggregates
    ("approx_distinct", "SELECT approx_distinct(x) FROM (VALUES 1, 2, 2, 3, NULL) AS t(x)", [(3,)]),
    ("count_if and max_by", "SELECT count_if(x > 1), max_by(x, y) FROM (VALUES (1, 10), (2, 5), (3, 1)) AS t(x, y)",
     [(2, 1)]),
    # conditionals and casts
    ("IF", "SELECT IF(1 > 0, 'yes', 'no'), IF(1 < 0, 'yes')", [("yes", None)]),
    ("try_cast", "SELECT try_cast('x' AS integer), try_cast('12' AS integer)", [(None, 12)]),
    ("casts to integer round halves away from zero",
     "SELECT CAST(2.5e0 AS bigint), CAST(-2.5 AS integer), CAST(3.7 AS integer)", [(3, -3, 4)]),
    ("a bare DECIMAL is decimal(38, 0)", "SELECT CAST('1.5' AS decimal)", [(Decimal("2"),)]),
    ("integers divide as integers", "SELECT 7 / 2, -7 / 2, 7 % 3, 7 / 2.0e0", [(3, -3, 1, 3.5)]),
    ("greatest is NULL when an argument is", "SELECT greatest(1, 5, 3), greatest(1, NULL)", [(5, None)]),
    ("round halves away from zero", "SELECT round(2.5), round(-2.5), round(1.2345, 2)",
     [(Decimal("3"), Decimal("-3"), Decimal("1.23"))]),
    # arrays
    ("cardinality, contains, element_at",
     "SELECT cardinality(ARRAY[1, 2, 3]), contains(ARRAY[1, 2], 2), element_at(ARRAY[10, 20, 30], 2), "
     "element_at(ARRAY[10, 20, 30], -1), element_at(ARRAY[10, 20, 30], 5)", [(3, True, 20, 30, None)]),
    ("subscripts start at 1", "SELECT ARRAY[10, 20, 30][1]", [(10,)]),
    ("array_join skips NULLs", "SELECT array_join(ARRAY['a', NULL, 'b'], ',')", [("a,b",)]),
    ("slice takes start and length", "SELECT slice(ARRAY[1, 2, 3, 4], 2, 2)", [([2, 3],)]),
    ("array_max/array_min are NULL with a NULL element",
     "SELECT array_max(ARRAY[1, 5, 2]), array_min(ARRAY[1, NULL, 2])", [(5, None)]),
    ("filter and transform", "SELECT filter(ARRAY[1, 2, 3], x -> x > 1), transform(ARRAY[1, 2, 3], x -> x * 2)",
     [([2, 3], [2, 4, 6])]),
    ("sequence", "SELECT sequence(1, 3)", [([1, 2, 3],)]),
    ("array_agg with ORDER BY", "SELECT array_agg(x ORDER BY x) FROM (VALUES 3, 1, 2) AS t(x)", [([1, 2, 3],)]),
    ("array_sort", "SELECT array_sort(ARRAY[3, 1, 2])", [([1, 2, 3],)]),
    ("UNNEST", "SELECT x FROM UNNEST(ARRAY[1, 2, 3]) AS t(x)", [(1,), (2,), (3,)]),
    ("UNNEST WITH ORDINALITY counts from 1",
     "SELECT x, n FROM UNNEST(ARRAY['a', 'b']) WITH ORDINALITY AS t(x, n)", [("a", 1), ("b", 2)]),
    ("split and split_part", "SELECT split('a,b,c', ','), split_part('a,b,c', ',', 2)", [(["a", "b", "c"], "b")]),
    # strings, JSON, windows, order
    ("regexp functions", "SELECT regexp_like('abc', '^a'), regexp_extract('abc123', '[0-9]+'), "
     "regexp_replace('a1b2', '[0-9]', '')", [(True, "123", "ab")]),
    ("json_extract_scalar", """SELECT json_extract_scalar('{"a": 1}', '$.a')""", [("1",)]),
    ("concat and ||", "SELECT concat('a', 'b', 'c'), 'a' || NULL", [("abc", None)]),
    ("top row per group (Trino has no QUALIFY)",
     "SELECT k, v FROM (SELECT k, v, row_number() OVER (PARTITION BY k ORDER BY v DESC) AS rn "
     "FROM (VALUES ('a', 1), ('a', 2), ('b', 3)) AS t(k, v)) WHERE rn = 1 ORDER BY k", [("a", 2), ("b", 3)]),
    ("NULLs sort last", "SELECT x FROM (VALUES 2, NULL, 1) AS t(x) ORDER BY x", [(1,), (2,), (None,)]),
]

BIGQUERY_CASES: list[tuple[str, str, list[tuple[Any, ...]]]] = [
    # date arithmetic
    ("DATE_ADD month clamps, stays a DATE", "SELECT DATE_ADD(DATE '2024-01-31', INTERVAL 1 MONTH)",
     [(date(2024, 2, 29),)]),
    ("DATE_SUB", "SELECT DATE_SUB(DATE '2024-01-31', INTERVAL 7 DAY)", [(date(2024, 1, 24),)]),
    ("DATE_ADD quarter", "SELECT DATE_ADD(DATE '2024-01-31', INTERVAL 1 QUARTER)", [(date(2024, 4, 30),)]),
    ("DATE_DIFF day", "SELECT DATE_DIFF(DATE '2024-03-01', DATE '2024-01-01', DAY)", [(60,)]),
    ("DATE_DIFF counts month and year boundaries",
     "SELECT DATE_DIFF(DATE '2024-02-01', DATE '2024-01-31', MONTH), "
     "DATE_DIFF(DATE '2024-01-01', DATE '2023-12-31', YEAR)",
     [(1, 1)]),
    ("DATE_DIFF WEEK counts Sundays", "SELECT DATE_DIFF(DATE '2024-01-07', DATE '2024-01-06', WEEK)", [(1,)]),
    ("TIMESTAMP_DIFF counts whole units",
     "SELECT TIMESTAMP_DIFF(TIMESTAMP '2024-01-01 11:00:00+00', TIMESTAMP '2024-01-01 10:59:00+00', HOUR), "
     "TIMESTAMP_DIFF(TIMESTAMP '2010-07-07 10:20:00+00', TIMESTAMP '2008-12-25 15:30:00+00', HOUR)", [(0, 13410)]),
    ("DATETIME_DIFF counts boundaries",
     "SELECT DATETIME_DIFF(DATETIME '2010-07-07 10:20:00', DATETIME '2008-12-25 15:30:00', DAY)", [(559,)]),
    ("TIMESTAMP_ADD", "SELECT TIMESTAMP_ADD(TIMESTAMP '2024-01-15 10:00:00+00', INTERVAL 90 MINUTE)",
     [(datetime(2024, 1, 15, 11, 30, tzinfo=UTC),)]),
    # DATE_TRUNC
    ("DATE_TRUNC month", "SELECT DATE_TRUNC(DATE '2024-02-15', MONTH)", [(date(2024, 2, 1),)]),
    ("DATE_TRUNC WEEK starts Sunday", "SELECT DATE_TRUNC(DATE '2024-02-15', WEEK)", [(date(2024, 2, 11),)]),
    ("DATE_TRUNC ISOWEEK starts Monday", "SELECT DATE_TRUNC(DATE '2024-02-15', ISOWEEK)", [(date(2024, 2, 12),)]),
    ("DATE_TRUNC year", "SELECT DATE_TRUNC(DATE '2024-02-15', YEAR)", [(date(2024, 1, 1),)]),
    ("TIMESTAMP_TRUNC hour", "SELECT TIMESTAMP_TRUNC(TIMESTAMP '2024-01-15 10:30:00+00', HOUR)",
     [(datetime(2024, 1, 15, 10, tzinfo=UTC),)]),
    # calendar fields and formats
    ("EXTRACT DAYOFWEEK (Sunday = 1)", "SELECT EXTRACT(DAYOFWEEK FROM DATE '2024-01-14'), "
     "EXTRACT(DAYOFWEEK FROM DATE '2024-01-13'), EXTRACT(DAYOFYEAR FROM DATE '2024-02-01')", [(1, 7, 32)]),
    ("EXTRACT ISOWEEK", "SELECT EXTRACT(ISOWEEK FROM DATE '2024-12-30')", [(1,)]),
    ("FORMAT_DATE and PARSE_DATE", "SELECT FORMAT_DATE('%Y-%m', DATE '2024-01-15'), PARSE_DATE('%Y%m%d', '20240115')",
     [("2024-01", date(2024, 1, 15))]),
    ("DATE of a TIMESTAMP is UTC", "SELECT DATE(TIMESTAMP '2024-01-15 23:30:00-05')", [(date(2024, 1, 16),)]),
    # aggregates, conditionals, casts
    ("APPROX_COUNT_DISTINCT", "SELECT APPROX_COUNT_DISTINCT(x) FROM UNNEST([1, 2, 2, 3]) AS x", [(3,)]),
    ("COUNTIF, LOGICAL_AND, STRING_AGG",
     "SELECT COUNTIF(x > 1), LOGICAL_AND(x > 0), STRING_AGG(CAST(x AS STRING), ',' ORDER BY x DESC) "
     "FROM UNNEST([1, 2, 3]) AS x",
     [(2, True, "3,2,1")]),
    ("IF", "SELECT IF(1 > 0, 'yes', 'no')", [("yes",)]),
    ("SAFE_CAST", "SELECT SAFE_CAST('x' AS INT64), SAFE_CAST('12' AS INT64)", [(None, 12)]),
    ("1.5 is a FLOAT64", "SELECT 0.1 + 0.2", [(0.30000000000000004,)]),
    ("FLOAT64 to INT64 rounds halves away from zero", "SELECT CAST(2.5 AS INT64), CAST(-2.5 AS INT64)", [(3, -3)]),
    ("NUMERIC keeps nine decimals", "SELECT CAST('1.23456789' AS NUMERIC)", [(Decimal("1.234567890"),)]),
    ("division", "SELECT 7 / 2, DIV(7, 2), SAFE_DIVIDE(1, 0), MOD(7, 3)", [(3.5, 3, None, 1)]),
    ("LEAST is NULL when an argument is", "SELECT GREATEST(1, 5, 3), LEAST(1, 5, NULL)", [(5, None)]),
    # arrays
    ("ARRAY_LENGTH and subscripts",
     "SELECT ARRAY_LENGTH([1, 2, 3]), [10, 20, 30][OFFSET(0)], [10, 20, 30][ORDINAL(1)], "
     "[10, 20, 30][SAFE_OFFSET(5)]", [(3, 10, 10, None)]),
    ("ARRAY_TO_STRING", "SELECT ARRAY_TO_STRING(['a', 'b'], ',')", [("a,b",)]),
    ("GENERATE_ARRAY", "SELECT GENERATE_ARRAY(1, 5, 2)", [([1, 3, 5],)]),
    ("GENERATE_DATE_ARRAY", "SELECT GENERATE_DATE_ARRAY(DATE '2024-01-01', DATE '2024-01-03')",
     [([date(2024, 1, 1), date(2024, 1, 2), date(2024, 1, 3)],)]),
    ("UNNEST", "SELECT x FROM UNNEST([1, 2, 3]) AS x", [(1,), (2,), (3,)]),
    ("ARRAY_AGG ORDER BY", "SELECT ARRAY_AGG(x ORDER BY x DESC) FROM UNNEST([3, 1, 2]) AS x", [([3, 2, 1],)]),
    ("ARRAY_AGG IGNORE NULLS", "SELECT ARRAY_AGG(x IGNORE NULLS ORDER BY x) FROM UNNEST([3, NULL, 1]) AS x",
     [([1, 3],)]),
    ("ARRAY subquery and ARRAY_CONCAT",
     "SELECT ARRAY(SELECT x * 2 FROM UNNEST([1, 2]) AS x), ARRAY_CONCAT([1], [2, 3])", [([2, 4], [1, 2, 3])]),
    ("IN UNNEST", "SELECT 2 IN UNNEST([1, 2]), 5 IN UNNEST([1, 2])", [(True, False)]),
    ("ARRAY_REVERSE and SPLIT", "SELECT ARRAY_REVERSE([1, 2, 3]), SPLIT('a,b', ',')", [([3, 2, 1], ["a", "b"])]),
    # QUALIFY, strings, order
    ("QUALIFY",
     "SELECT k, v FROM UNNEST([STRUCT('a' AS k, 1 AS v), STRUCT('a' AS k, 2 AS v), STRUCT('b' AS k, 3 AS v)]) "
     "QUALIFY ROW_NUMBER() OVER (PARTITION BY k ORDER BY v DESC) = 1 ORDER BY k", [("a", 2), ("b", 3)]),
    ("REGEXP_EXTRACT returns the group", "SELECT REGEXP_CONTAINS('abc', r'^a'), REGEXP_EXTRACT('abc123', r'c([0-9]+)')",
     [(True, "123")]),
    ("JSON_VALUE", """SELECT JSON_VALUE('{"a": 1}', '$.a')""", [("1",)]),
    ("STRUCT field", "SELECT STRUCT(1 AS x, 'a' AS y).y", [("a",)]),
    ("NULLs sort first", "SELECT x FROM UNNEST([2, NULL, 1]) AS x ORDER BY x", [(None,), (1,), (2,)]),
]

#: (dialect, name, SQL, the construct the error names, the line it names)
REFUSED: list[tuple[str, str, str, str, int]] = [
    ("trino", "IFF is not Trino", "SELECT 1,\n  IFF(1 > 0, 'a', 'b')", "IFF", 2),
    ("trino", "QUALIFY is not Trino", "SELECT k\nFROM t\nQUALIFY row_number() OVER (ORDER BY k) = 1", "QUALIFY", 3),
    ("trino", "array_distinct", "SELECT array_distinct(ARRAY[1, 1, 2])", "ARRAY_DISTINCT", 1),
    ("trino", "array_position", "SELECT array_position(ARRAY[10, 20], 30)", "ARRAY_POSITION", 1),
    ("trino", "format", "SELECT format('%s-%s', 'a', 'b')", "FORMAT", 1),
    ("trino", "format_datetime (unknown to sqlglot)",
     "SELECT\n  format_datetime(TIMESTAMP '2024-01-15 10:30:00', 'yyyy-MM-dd')", "FORMAT_DATETIME", 2),
    ("trino", "reduce with an output function", "SELECT reduce(ARRAY[1, 2], 0, (s, x) -> s + x, s -> s)", "REDUCE", 1),
    ("trino", "slice from a column", "SELECT slice(ARRAY[1, 2, 3], n, 2) FROM (VALUES 1) AS t(n)", "SLICE", 1),
    ("trino", "decimal division", "SELECT\n  1.0 / 3", "1.0 / 3", 2),
    ("bigquery", "IFF is not BigQuery", "SELECT IFF(1 > 0, 'a', 'b')", "IFF", 1),
    ("bigquery", "FORMAT", "SELECT FORMAT('%d items', 3)", "FORMAT", 1),
    ("bigquery", "EXTRACT(WEEK) counts Sunday weeks", "SELECT EXTRACT(WEEK FROM DATE '2024-01-14')", "WEEK", 1),
    ("bigquery", "BIGNUMERIC", "SELECT 1,\n  CAST('1.5' AS BIGNUMERIC)", "BIGNUMERIC", 2),
    ("bigquery", "SAFE. prefix", "SELECT SAFE.PARSE_DATE('%Y-%m-%d', 'nope')", "SAFE.PARSE_DATE", 1),
    ("bigquery", "WITH OFFSET counts from 0", "SELECT x, i FROM UNNEST(['a', 'b']) AS x WITH OFFSET AS i",
     "WITH OFFSET", 1),
    ("bigquery", "EXTRACT(DATE FROM timestamp) (sqlglot refuses)",
     "SELECT 1;\nSELECT EXTRACT(DATE FROM TIMESTAMP '2024-01-15 10:00:00')", "EXTRACT(DATE", 2),
    ("bigquery", "IEEE_DIVIDE (unknown to sqlglot)", "SELECT IEEE_DIVIDE(1, 0)", "IEEE_DIVIDE", 1),
]


def _entry(dialect: str, sql: str, parameters: str = "") -> SpecEntry:
    spec = load_spec(f"name: t.case\nowner: me\nengine: {dialect}\nquery: SELECT 1\n{parameters}", "code/case.yaml")
    return SpecEntry(
        spec=spec,
        source=SourceType.CODE,
        status=DatasetStatus.ACTIVE,
        path="code/case.yaml",
        sql=sql,
        sql_path="code/case.sql",
    )


def _rows(dialect: str, sql: str) -> list[tuple[Any, ...]]:
    result = run_entry(_entry(dialect, sql), duckdb_path=":memory:")
    assert result.rendered.transpiled_from == dialect
    return [tuple(row) for row in result.result.last.rows]


def _same(got: list[tuple[Any, ...]], expected: list[tuple[Any, ...]]) -> bool:
    """Equal values of the same kind (a DATE is not a TIMESTAMP at midnight; a float not a Decimal)."""
    if got != expected:
        return False
    kinds = (date, datetime, float, Decimal, list)
    for got_row, expected_row in zip(got, expected):
        for g, e in zip(got_row, expected_row):
            for kind in kinds:
                if isinstance(e, kind) != isinstance(g, kind) and e is not None:
                    return False
    return True


@pytest.mark.parametrize(("name", "sql", "expected"), TRINO_CASES, ids=[c[0] for c in TRINO_CASES])
def test_trino_sql_runs_on_duckdb_with_trino_results(name: str, sql: str, expected: list[tuple[Any, ...]]) -> None:
    got = _rows("trino", sql)
    assert _same(got, expected), f"{name}: {sql}\n  DuckDB: {transpile(sql, 'trino', 'duckdb')}\n  got {got!r}"


@pytest.mark.parametrize(("name", "sql", "expected"), BIGQUERY_CASES, ids=[c[0] for c in BIGQUERY_CASES])
def test_bigquery_sql_runs_on_duckdb_with_bigquery_results(
    name: str, sql: str, expected: list[tuple[Any, ...]]
) -> None:
    got = _rows("bigquery", sql)
    assert _same(got, expected), f"{name}: {sql}\n  DuckDB: {transpile(sql, 'bigquery', 'duckdb')}\n  got {got!r}"


@pytest.mark.parametrize(
    ("dialect", "name", "sql", "construct", "line"), REFUSED, ids=[f"{c[0]}-{c[1]}" for c in REFUSED]
)
def test_what_cannot_be_transpiled_faithfully_is_refused(
    dialect: str, name: str, sql: str, construct: str, line: int
) -> None:
    with pytest.raises(TranspileError) as info:
        run_entry(_entry(dialect, sql), duckdb_path=":memory:")
    assert info.value.code == "DLI-301"
    assert f"code/case.sql:{line}" in info.value.message, info.value.message
    assert construct.lower() in info.value.message.lower(), info.value.message


# -- the rewrites, as (source, DuckDB) pairs ------------------------------------------------------------------

REWRITES = [
    ("trino", "SELECT date_diff('month', a, b) FROM t", "SELECT DATE_SUB('month', a, b) FROM t"),
    ("trino", "SELECT date_add('day', 1, DATE '2024-01-01')",
     "SELECT CAST(CAST('2024-01-01' AS DATE) + INTERVAL 1 DAY AS DATE)"),
    ("trino", "SELECT EXTRACT(DOW FROM d) FROM t", "SELECT EXTRACT(ISODOW FROM d) FROM t"),
    ("trino", "SELECT CAST(x AS DECIMAL) FROM t", "SELECT CAST(x AS DECIMAL(38, 0)) FROM t"),
    ("bigquery", "SELECT TIMESTAMP_DIFF(a, b, HOUR) FROM t", "SELECT DATE_SUB('hour', b, a) FROM t"),
    ("bigquery", "SELECT EXTRACT(DAYOFWEEK FROM d) FROM t", "SELECT (EXTRACT(DAYOFWEEK FROM d) + 1) FROM t"),
    ("bigquery", "SELECT CAST(x AS NUMERIC) FROM t", "SELECT CAST(x AS DECIMAL(38, 9)) FROM t"),
    ("bigquery", "SELECT DATE_TRUNC(d, MONTH) FROM t", "SELECT CAST(DATE_TRUNC('MONTH', d) AS DATE) FROM t"),
]


@pytest.mark.parametrize(("dialect", "source", "duckdb_sql"), REWRITES, ids=[r[1] for r in REWRITES])
def test_rewrites(dialect: str, source: str, duckdb_sql: str) -> None:
    assert transpile(source, dialect, "duckdb") == duckdb_sql


def test_trino_runs_with_integer_division() -> None:
    assert SOURCE_SETTINGS["trino"] == {"integer_division": True}
    # a column's type is known only at run time: the session setting divides like Trino there too
    assert _rows("trino", "SELECT a / b FROM (VALUES (7, 2), (-7, 2)) AS t(a, b)") == [(3,), (-3,)]
    assert _rows("bigquery", "SELECT a / b FROM UNNEST([STRUCT(7 AS a, 2 AS b)])") == [(3.5,)]


# -- typed literals in each dialect --------------------------------------------------------------------------

TRICKY_STRINGS = ["o'brien", "back\\slash", "a\\'b", "line\nbreak\ttab\r", "quote \" and `tick`", "é ☃ 𝄞", "''", "%s {}"]


@pytest.mark.parametrize("dialect", ["trino", "bigquery"])
@pytest.mark.parametrize("value", TRICKY_STRINGS)
def test_string_literals_read_back_as_the_same_text(dialect: str, value: str) -> None:
    import sqlglot

    from dli_airflow.render import sql_literal

    literal = sql_literal(value, dialect)
    parsed = sqlglot.parse_one(f"SELECT {literal}", read=dialect).expressions[0]
    assert parsed.is_string and parsed.this == value, literal
    # and the same text arrives on DuckDB after rendering and transpiling
    entry = _entry(dialect, "SELECT {{ v }}", "parameters:\n  - {name: v, type: string}\n")
    assert run_entry(entry, {"v": value}, duckdb_path=":memory:").result.last.rows == ((value,),)


@pytest.mark.parametrize("dialect", ["trino", "bigquery"])
def test_typed_literals_keep_their_types(dialect: str) -> None:
    from dli_airflow.render import sql_literal

    values = [date(2024, 1, 15), 42, -7, True, False, None, 0.25]
    sql = "SELECT " + ", ".join(sql_literal(v, dialect) for v in values)
    assert sql.startswith("SELECT DATE '2024-01-15', 42, -7, TRUE, FALSE, NULL, 0.25")
    # Trino reads 0.25 as a DECIMAL, BigQuery as a FLOAT64
    expected = tuple(values[:-1]) + ((Decimal("0.25") if dialect == "trino" else 0.25),)
    assert _same(_rows(dialect, sql), [expected])


# -- positions, parameters, dry runs --------------------------------------------------------------------------


def test_errors_point_at_the_line_of_the_file_in_multi_statement_sql() -> None:
    sql = "SELECT 1;\n\n{% if true %}\nSELECT 2,\n       array_distinct(ARRAY[1]);\n{% endif %}\n"
    with pytest.raises(TranspileError, match=r"code/case\.sql:5: `ARRAY_DISTINCT"):
        render_entry(_entry("trino", sql), {}, target_dialect="duckdb")


def test_typed_parameters_run_locally_in_each_dialect() -> None:
    parameters = (
        "parameters:\n  - {name: execution_date, type: date}\n  - {name: who, type: string}\n"
        "  - {name: n, type: integer}\n  - {name: flag, type: boolean}\n"
    )
    given = {"execution_date": "2024-01-15", "who": "o'brien \\ co", "n": 7, "flag": True}
    for dialect, add in (("trino", "date_add('day', {{ n }}, {{ execution_date }})"),
                         ("bigquery", "DATE_ADD({{ execution_date }}, INTERVAL {{ n }} DAY)")):
        sql = f"CREATE TABLE t AS SELECT {{{{ who }}}} AS who;\nSELECT who, {add} AS d, {{{{ flag }}}} AS f FROM t"
        result = run_entry(_entry(dialect, sql, parameters), given, duckdb_path=":memory:")
        assert result.result.last.rows == (("o'brien \\ co", date(2024, 1, 22), True),), dialect


def test_dry_run_parses_in_the_engines_dialect_first() -> None:
    # valid DuckDB would not help: Trino has no QUALIFY, and the error points at the file's line and column
    sql = "SELECT 1;\nSELECT k\nFROM t\nQUALIFY row_number() OVER (ORDER BY k) = 1"
    with pytest.raises(SqlExecutionError) as info:
        run_entry(_entry("trino", sql), dry_run=True)
    assert info.value.code == "DLI-405"
    assert "code/case.sql:4:" in info.value.message and "does not parse as trino" in info.value.message


def test_dry_run_of_good_sql_transpiles_and_runs_nothing(tmp_path) -> None:
    db = tmp_path / "never.duckdb"
    entry = _entry("bigquery", "SELECT DATE_TRUNC(DATE '2024-02-15', MONTH)")
    result = run_entry(entry, dry_run=True, duckdb_path=str(db))
    assert result.result is None and [s.sql for s in result.rendered.statements] == [
        "SELECT CAST(DATE_TRUNC('MONTH', CAST('2024-02-15' AS DATE)) AS DATE)",
    ]
    assert not db.exists()
