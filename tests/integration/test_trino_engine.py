"""The Trino engine over the wire: the unmodified ``trino`` client, the real ``TrinoHook`` and the real
``DatasetQueryOperator`` against the Trino protocol stand-in (no real Trino server runs in tests)."""

from __future__ import annotations

import json
import threading
import time
from datetime import date
from decimal import Decimal

import pytest
from airflow.sdk.exceptions import AirflowException, AirflowFailException
from trino_standin import trino_error

from dli_airflow.bind import BoundStatement, BoundValue
from dli_airflow.engines.trino import TrinoEngine
from dli_airflow.errors import ConfigError, ExecutionError
from dli_airflow.spec import load_spec

pytestmark = pytest.mark.integration

SPEC = """\
name: lake.analytics.orders
owner: engineer@example.com
engine: trino
conn_id: trino_standin
catalog: lake
schema: analytics
query_file: dataset.sql
parameters:
  - {name: execution_date, type: date, required: true}
  - {name: customer, type: string, required: true}
  - {name: amount, type: integer, default: 1}
  - {name: vip, type: boolean, default: false}
"""

MULTI_STATEMENT_SQL = """\
CREATE TABLE IF NOT EXISTS orders (customer varchar, order_date date, amount bigint, vip boolean);
DELETE FROM orders WHERE order_date = {{ execution_date }} AND customer = {{ customer }};
INSERT INTO orders VALUES ({{ customer }}, {{ execution_date }}, {{ amount }}, {{ vip }});
-- the rows of the day
SELECT customer, order_date, amount, vip, amount / 2 AS half
FROM orders
WHERE order_date = {{ execution_date }} AND customer = {{ customer }}
"""

SIMPLE_SPEC = "name: s.trino\nowner: me\nengine: trino\nconn_id: trino_standin\nquery_file: dataset.sql\n"


def test_the_unmodified_trino_client_pages_and_types(trino_standin):
    import trino

    conn = trino.dbapi.connect(host="127.0.0.1", port=trino_standin.port, user="dli", catalog="memory", schema="main")
    cursor = conn.cursor()
    cursor.execute(
        "SELECT x, sum(x) OVER () AS total, 'v' || CAST(x AS varchar) AS label, DATE '2024-01-15' AS d, "
        "CAST(1.25 AS decimal(10, 2)) AS price, ARRAY[x, x] AS pair, "
        "CAST(ROW(x, 'a') AS ROW(n bigint, s varchar)) AS r "
        "FROM UNNEST(sequence(1, 5)) AS t(x) ORDER BY x"
    )
    rows = cursor.fetchall()
    assert len(rows) == 5  # five rows over three pages of two
    assert rows[0][:5] == [1, 15, "v1", date(2024, 1, 15), Decimal("1.25")]
    assert rows[0][5] == [1, 1] and tuple(rows[0][6]) == (1, "a")
    types = {d.name: d.type_code for d in cursor.description}
    assert types["total"] == "bigint"  # DuckDB's HUGEINT sum is Trino's bigint, not a string
    assert types["label"] == "varchar" and types["price"] == "decimal(10,2)" and types["pair"] == "array(bigint)"
    assert cursor.query_id and cursor.stats["state"] == "FINISHED"
    assert sum(1 for method, path in trino_standin.requests if method == "GET" and "/executing/" in path) >= 3


def test_the_provider_hook_reads_the_airflow_connection(trino_conn, trino_standin):
    from airflow.providers.trino.hooks.trino import TrinoHook

    hook = TrinoHook(trino_conn_id=trino_conn)
    assert hook.get_records("SELECT 6 * 7") == [[42]]
    query = trino_standin.last_query("6 * 7")
    assert (query.user, query.catalog, query.schema) == ("dli", "memory", "main")


def test_operator_runs_a_multi_statement_dataset_with_typed_parameters(
    trino_conn, trino_standin, make_task, run_context
):
    task = make_task(SPEC, MULTI_STATEMENT_SQL)
    params = {"execution_date": "2024-01-15", "customer": "o'brien; DROP TABLE orders --", "amount": 42, "vip": True}
    ctx = run_context(params=params)
    task.render_template_fields(ctx)
    assert "'o''brien; DROP TABLE orders --'" in task.sql
    assert "DATE '2024-01-15'" in task.sql and "42, TRUE)" in task.sql
    summary = task.execute(ctx)
    assert summary["statements"] == 4
    assert summary["rows_affected"] == [None, 0, 1, 1]
    assert len(summary["query_ids"]) == 4 and all(q.endswith("_standin") for q in summary["query_ids"])
    assert summary["columns"] == ["customer", "order_date", "amount", "vip", "half"]
    # Trino divides integers as integers: the stand-in does too (DuckDB with integer_division)
    assert summary["rows"] == [["o'brien; DROP TABLE orders --", "2024-01-15", 42, True, 21]]
    # the spec's catalog and schema won over the connection's: the table is lake.analytics.orders
    assert {(q.catalog, q.schema) for q in trino_standin.queries.values()} == {("lake", "analytics")}
    assert trino_standin.execute("SELECT count(*) FROM lake.analytics.orders") == [(1,)]

    # a second run of the same day replaces its row
    task.render_template_fields(ctx)
    assert task.execute(ctx)["rows_affected"] == [None, 1, 1, 1]
    assert trino_standin.execute("SELECT count(*) FROM lake.analytics.orders") == [(1,)]


HOSTILE_VALUES = [
    "$$); CREATE TABLE pwned AS SELECT 42 AS x; SELECT ($$",
    "'); CREATE TABLE pwned AS SELECT 42 AS x; --",
    " || 42 || ",
    " OR TRUE OR ",
    "\\'; DROP TABLE orders; --",
]


@pytest.mark.hostile(kind="injection")
@pytest.mark.parametrize("value", HOSTILE_VALUES)
def test_values_travel_in_execute_immediate_using_never_in_the_statement(
    trino_conn, trino_standin, make_task, run_context, value
):
    task = make_task(SPEC, MULTI_STATEMENT_SQL)
    ctx = run_context(params={"execution_date": "2024-01-15", "customer": value, "amount": 7, "vip": True})
    task.render_template_fields(ctx)
    summary = task.execute(ctx)
    assert summary["statements"] == 4 and summary["rows"][0][0] == value
    sent = [q for q in trino_standin.queries.values() if q.statement != "SELECT 1"]  # not the client's probe
    assert len(sent) == 4
    create, delete, insert, select = sent
    assert not create.sql.startswith("EXECUTE") and create.parameters == []  # no values: sent as it is
    for query in (delete, insert, select):
        # what the client sends: EXECUTE IMMEDIATE '<statement with ?>' USING <the values as literals>
        assert query.sql.startswith("EXECUTE IMMEDIATE '") and " USING " in query.sql
        assert "?" in query.statement and value not in query.statement
    assert insert.parameters == [
        "'" + value.replace("'", "''") + "'", "CAST('2024-01-15' AS DATE)", "7", "TRUE"
    ]
    # no extra statement ran, no table was created
    assert trino_standin.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_name = 'pwned'"
    ) == []
    assert trino_standin.execute("SELECT customer FROM lake.analytics.orders") == [(value,)]


def test_the_client_probes_for_execute_immediate_and_the_standin_answers(trino_conn, trino_standin):
    from trino.dbapi import must_use_legacy_prepared_statements

    must_use_legacy_prepared_statements.put(("127.0.0.1", trino_standin.port), None)
    engine = TrinoEngine(conn_id=trino_conn)
    statement = BoundStatement("SELECT ? AS d, ? AS who", (BoundValue("dli_1", date(2024, 1, 15)),
                                                          BoundValue("dli_2", "o'brien")), dialect="trino")
    assert engine.run([statement]).records() == [{"d": date(2024, 1, 15), "who": "o'brien"}]
    probe = trino_standin.last_query("EXECUTE IMMEDIATE 'SELECT 1'")
    assert probe.state == "FINISHED" and probe.statement == "SELECT 1"
    assert must_use_legacy_prepared_statements.get(("127.0.0.1", trino_standin.port)) is False


def test_a_parameter_count_that_does_not_match_is_a_sql_error(trino_conn, trino_standin):
    statement = BoundStatement("SELECT ?, ?", (BoundValue("dli_1", 1),), dialect="trino")
    with pytest.raises(ExecutionError) as info:
        TrinoEngine(conn_id=trino_conn).run([statement])
    assert info.value.code == "DLI-405" and "INVALID_PARAMETER_USAGE" in info.value.message
    assert "expected 2 but found 1" in info.value.message


def test_engine_records_query_ids_rows_and_truncation(trino_conn, trino_standin):
    engine = TrinoEngine(spec=load_spec(SIMPLE_SPEC.replace("query_file: dataset.sql", "query: SELECT 1"), "s.yaml"))
    result = engine.run(
        ["CREATE TABLE numbers AS SELECT x FROM UNNEST(sequence(1, 7)) AS t(x)", "SELECT x FROM numbers ORDER BY x"],
        max_rows=3,
    )
    create, select = result.statements
    assert create.rows_affected == 7 and create.query_id
    assert select.rows == ((1,), (2,), (3,)) and select.truncated and select.rows_affected is None
    assert select.bytes_processed is not None


def test_sql_error_fails_the_task_with_dli_405_and_the_position(trino_conn, trino_standin, make_task, run_context):
    task = make_task(SIMPLE_SPEC, "SELECT 1;\nSELECT amount\nFROM no_such_table")
    ctx = run_context()
    task.render_template_fields(ctx)
    with pytest.raises(AirflowException, match="DLI-405") as info:
        task.execute(ctx)
    assert not isinstance(info.value, AirflowFailException)  # a SQL error may be a moment's state: retries apply
    message = str(info.value)
    assert "statement 2 of 2" in message and "TABLE_NOT_FOUND" in message and "no_such_table" in message
    assert "line 2, column 6" in message


def test_syntax_error_points_at_line_and_column(trino_conn, trino_standin):
    with pytest.raises(ExecutionError) as info:
        TrinoEngine(conn_id=trino_conn).run(["SELECT 1 +"])
    assert info.value.code == "DLI-405"
    assert "SYNTAX_ERROR" in info.value.message and "line 1, column" in info.value.message


def test_permission_error_fails_the_task_with_dli_404_without_retry(trino_conn, trino_standin, make_task, run_context):
    task = make_task(SIMPLE_SPEC, "SELECT * FROM secret_salaries")
    ctx = run_context()
    task.render_template_fields(ctx)
    denied = r"DLI-404.*Access Denied: Cannot select from table memory\.main\.secret_salaries"
    with pytest.raises(AirflowFailException, match=denied):
        task.execute(ctx)


def test_server_side_failure_is_dli_504(trino_conn, trino_standin):
    trino_standin.forced_errors["exploding_table"] = trino_error(
        "Worker node crashed", "REMOTE_TASK_ERROR", error_type="INTERNAL_ERROR"
    )
    with pytest.raises(Exception) as info:
        TrinoEngine(conn_id=trino_conn).run(["SELECT * FROM exploding_table"])
    assert info.value.code == "DLI-504" and "Worker node crashed" in info.value.message


def test_on_kill_cancels_the_query_on_the_server(trino_conn, trino_standin, make_task, run_context):
    task = make_task(SIMPLE_SPEC, "SELECT 1;\nSELECT count(*) FROM memory.main.slow_numbers")
    ctx = run_context()
    task.render_template_fields(ctx)
    outcome: dict[str, BaseException] = {}

    def execute() -> None:
        try:
            task.execute(ctx)
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            outcome["error"] = exc

    worker = threading.Thread(target=execute)
    worker.start()
    query = trino_standin.wait_running("slow_numbers")
    time.sleep(0.2)  # the client is polling nextUri by now
    killed_at = time.monotonic()
    task.on_kill()
    worker.join(15)
    assert not worker.is_alive(), "execute() did not return after on_kill"
    assert time.monotonic() - killed_at < 5
    assert query.id in trino_standin.cancelled  # the stand-in got DELETE nextUri
    assert query.state == "FAILED" and query.error["errorName"] == "USER_CANCELED"
    assert query.seconds < 5  # DuckDB was interrupted; counting the view takes minutes
    assert isinstance(outcome.get("error"), AirflowException)
    assert "DLI-401" in str(outcome["error"]) and "cancelled" in str(outcome["error"])


def test_cancel_before_the_query_has_a_next_uri_still_cancels(trino_conn, trino_standin):
    engine = TrinoEngine(conn_id=trino_conn)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            engine.run(["SELECT count(*) FROM memory.main.slow_numbers"])
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    worker = threading.Thread(target=run)
    worker.start()
    trino_standin.wait_running("slow_numbers")
    engine.cancel()  # possibly before the client has the first page: the stats callback finishes the job
    worker.join(15)
    assert not worker.is_alive() and errors and errors[0].code == "DLI-401"
    assert trino_standin.last_query("slow_numbers").error["errorName"] == "USER_CANCELED"


@pytest.mark.hostile(kind="cli-and-secrets")
def test_credentials_never_reach_messages(trino_standin, airflow_env, monkeypatch):
    password = "Sup3r-Secret-Passw0rd"
    monkeypatch.setenv(
        "AIRFLOW_CONN_TRINO_SECRET",
        json.dumps({"conn_type": "trino", "host": "127.0.0.1", "port": trino_standin.port, "login": "dli",
                    "password": password, "extra": {"protocol": "https", "verify": False}}),
    )
    with pytest.raises(ExecutionError) as info:  # TLS to a plain-HTTP server fails
        TrinoEngine(conn_id="trino_secret").run(["SELECT 1"])
    assert password not in str(info.value) and password not in info.value.render()
    monkeypatch.setenv(
        "AIRFLOW_CONN_TRINO_SECRET",
        json.dumps({"conn_type": "trino", "host": "127.0.0.1", "port": trino_standin.port, "login": "dli",
                    "password": password}),
    )
    with pytest.raises(ExecutionError) as info:  # the client refuses a password over plain HTTP
        TrinoEngine(conn_id="trino_secret").run(["SELECT 1"])
    assert info.value.code == "DLI-401" and password not in info.value.render()


def test_missing_connection_is_a_config_error(airflow_env):
    with pytest.raises(ConfigError, match="trino_nowhere"):
        TrinoEngine(conn_id="trino_nowhere").run(["SELECT 1"])
