"""The BigQuery engine over the wire: the real ``google-cloud-bigquery`` client, the Google provider's
``BigQueryHook`` and the real ``DatasetQueryOperator`` against the BigQuery REST stand-in (no real
BigQuery runs in tests)."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from datetime import date, datetime, timezone
from decimal import Decimal

import pytest
from airflow.sdk.exceptions import AirflowException, AirflowFailException

from dli_airflow.bind import BoundStatement, BoundValue
from dli_airflow.engines.bigquery import BigQueryEngine
from dli_airflow.errors import ConfigError, DliError
from dli_airflow.spec import load_spec

pytestmark = pytest.mark.integration

SPEC = """\
name: sales.daily_orders
owner: engineer@example.com
engine: bigquery
conn_id: bigquery_standin
project: spec-project
location: EU
query_file: dataset.sql
parameters:
  - {name: execution_date, type: date, required: true}
  - {name: customer, type: string, required: true}
  - {name: amount, type: integer, default: 1}
  - {name: vip, type: boolean, default: false}
"""

MULTI_STATEMENT_SQL = """\
CREATE TABLE IF NOT EXISTS sales.orders (customer STRING, order_date DATE, amount INT64, vip BOOL);
DELETE FROM sales.orders WHERE order_date = {{ execution_date }} AND customer = {{ customer }};
INSERT INTO sales.orders (customer, order_date, amount, vip)
VALUES ({{ customer }}, {{ execution_date }}, {{ amount }}, {{ vip }});
SELECT customer, order_date, amount, vip, amount / 4 AS quarter
FROM `spec-project.sales.orders`
WHERE order_date = {{ execution_date }} AND customer = {{ customer }}
"""

SIMPLE_SPEC = "name: s.bq\nowner: me\nengine: bigquery\nconn_id: bigquery_standin\nquery_file: dataset.sql\n"


def test_the_real_client_runs_jobs_on_the_standin(bigquery_standin):
    from google.api_core.client_options import ClientOptions
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import bigquery

    client = bigquery.Client(
        project="standin-project",
        credentials=AnonymousCredentials(),
        client_options=ClientOptions(api_endpoint=bigquery_standin.url),
    )
    rows = list(
        client.query(
            "SELECT x, CAST(x AS STRING) AS s, DATE '2024-01-15' AS d, TIMESTAMP '2024-01-15 10:00:00+00' AS ts, "
            "CAST('1.25' AS NUMERIC) AS n, [x, x] AS pair, STRUCT(x AS a) AS st FROM UNNEST([1, 2, 3]) AS x ORDER BY x"
        ).result(page_size=2)
    )
    assert [r["x"] for r in rows] == [1, 2, 3]  # three rows over two pages
    first = rows[0]
    assert first["s"] == "1" and first["d"] == date(2024, 1, 15)
    assert first["ts"] == datetime(2024, 1, 15, 10, tzinfo=timezone.utc) and first["n"] == Decimal("1.25")
    assert first["pair"] == [1, 1] and first["st"] == {"a": 1}
    assert [tuple(r.values()) for r in client.query_and_wait("SELECT 6 * 7 AS answer")] == [(42,)]  # jobs.query
    paths = {(m, p.split("?")[0].split("/")[5] if p.count("/") >= 5 else p) for m, p in bigquery_standin.requests}
    assert ("POST", "jobs") in paths and ("GET", "queries") in paths and ("POST", "queries") in paths


def test_the_provider_hook_gives_a_client_for_the_standin(bigquery_conn, bigquery_standin):
    engine = BigQueryEngine(conn_id=bigquery_conn)
    hook = engine.hook()
    assert hook.project_id == "standin-project" and hook.location == "US" and hook.use_legacy_sql is False
    client = engine.client()
    assert client.project == "standin-project" and client.location == "US"
    assert [tuple(r.values()) for r in client.query("SELECT 6 * 7").result()] == [(42,)]


def test_operator_runs_a_multi_statement_dataset_with_typed_parameters(
    bigquery_conn, bigquery_standin, make_task, run_context
):
    task = make_task(SPEC, MULTI_STATEMENT_SQL)
    params = {"execution_date": "2024-01-15", "customer": "o'brien\\x", "amount": 42, "vip": True}
    ctx = run_context(params=params)
    task.render_template_fields(ctx)
    # BigQuery string literals escape quotes and backslashes with a backslash
    assert "'o\\'brien\\\\x'" in task.sql and "DATE '2024-01-15'" in task.sql and "42, TRUE)" in task.sql
    summary = task.execute(ctx)
    assert summary["statements"] == 4
    assert summary["rows_affected"] == [None, 0, 1, 1]
    assert len(summary["query_ids"]) == 4 and all(q.startswith("dli_") for q in summary["query_ids"])
    assert summary["columns"] == ["customer", "order_date", "amount", "vip", "quarter"]
    assert summary["rows"] == [["o'brien\\x", "2024-01-15", 42, True, 10.5]]
    jobs = list(bigquery_standin.jobs.values())
    # the spec's project and location won over the connection's
    assert {(j.project, j.location) for j in jobs} == {("spec-project", "EU")}
    assert all(j.configuration["query"]["useLegacySql"] is False for j in jobs)
    assert jobs[-1].configuration["labels"] == {"dli_dataset": "sales_daily_orders"}
    assert bigquery_standin.execute("SELECT count(*) FROM sales.orders") == [(1,)]


HOSTILE_VALUES = [
    "'); CREATE TABLE pwned AS SELECT 42 AS x; --",
    "\\'; DROP TABLE sales.orders; --",
    " || 42 || ",
    " OR TRUE OR ",
    "# it's a comment",
]


@pytest.mark.hostile(kind="injection")
@pytest.mark.parametrize("value", HOSTILE_VALUES)
def test_values_travel_as_named_query_parameters_never_in_the_sql(
    bigquery_conn, bigquery_standin, make_task, run_context, value
):
    task = make_task(SPEC, MULTI_STATEMENT_SQL)
    ctx = run_context(params={"execution_date": "2024-01-15", "customer": value, "amount": 3, "vip": False})
    task.render_template_fields(ctx)
    summary = task.execute(ctx)
    assert summary["rows"][0][0] == value
    create, delete, insert, select = bigquery_standin.jobs.values()
    assert "queryParameters" not in create.configuration["query"]  # no values, no parameters
    for job in (delete, insert, select):
        query = job.configuration["query"]
        assert query["parameterMode"] == "NAMED" and "@dli_1" in job.sql and value not in job.sql
    assert insert.configuration["query"]["queryParameters"] == [
        {"parameterType": {"type": "STRING"}, "parameterValue": {"value": value}, "name": "dli_1"},
        {"parameterType": {"type": "DATE"}, "parameterValue": {"value": "2024-01-15"}, "name": "dli_2"},
        {"parameterType": {"type": "INT64"}, "parameterValue": {"value": "3"}, "name": "dli_3"},
        {"parameterType": {"type": "BOOL"}, "parameterValue": {"value": "false"}, "name": "dli_4"},
    ]
    assert insert.parameters == {"dli_1": value, "dli_2": date(2024, 1, 15), "dli_3": 3, "dli_4": False}
    assert bigquery_standin.execute("SELECT table_name FROM information_schema.tables WHERE table_name = 'pwned'") == []
    assert bigquery_standin.execute("SELECT customer FROM sales.orders") == [(value,)]


def test_a_parameter_the_sql_uses_and_the_job_lacks_is_a_sql_error(bigquery_conn, bigquery_standin):
    statement = BoundStatement("SELECT @dli_1, @dli_2", (BoundValue("dli_1", 1),), dialect="bigquery")
    with pytest.raises(DliError) as info:
        BigQueryEngine(conn_id=bigquery_conn).run([statement])
    assert info.value.code == "DLI-405" and "Query parameter 'dli_2' not found" in info.value.message


def test_dry_run_sends_the_parameters_too(bigquery_conn, bigquery_standin):
    bigquery_standin.execute("CREATE SCHEMA ds")
    bigquery_standin.execute("CREATE TABLE ds.small AS SELECT range AS x FROM range(10)")
    statement = BoundStatement("SELECT x FROM ds.small WHERE x < @dli_1 AND x IN UNNEST(@dli_2)",
                               (BoundValue("dli_1", 5), BoundValue("dli_2", [1, 2])), dialect="bigquery")
    assert BigQueryEngine(conn_id=bigquery_conn).dry_run([statement]) == [80]  # EXPLAIN bound them
    assert BigQueryEngine(conn_id=bigquery_conn).run([statement]).records() == [{"x": 1}, {"x": 2}]
    [job] = bigquery_standin.jobs.values()  # the run (a dry run is answered at once and not kept)
    assert job.parameters == {"dli_1": 5, "dli_2": [1, 2]} and job.parameter_mode == "NAMED"


def test_engine_records_job_ids_bytes_and_dml_rows(bigquery_conn, bigquery_standin):
    engine = BigQueryEngine(conn_id=bigquery_conn)
    result = engine.run(
        [
            "CREATE TABLE ds.numbers AS SELECT x FROM UNNEST(GENERATE_ARRAY(1, 7)) AS x",
            "UPDATE ds.numbers SET x = x + 10 WHERE x > 5",
            "SELECT x FROM ds.numbers ORDER BY x",
        ],
        max_rows=3,
    )
    create, update, select = result.statements
    assert create.query_id.startswith("dli_") and create.rows_affected is None
    assert update.rows_affected == 2 and update.bytes_processed == 8 * 7
    assert select.rows == ((1,), (2,), (3,)) and select.truncated and select.bytes_processed == 8 * 7


def test_dry_run_reports_the_bytes_each_statement_would_scan(bigquery_conn, bigquery_standin):
    bigquery_standin.execute("CREATE SCHEMA ds")
    bigquery_standin.execute("CREATE TABLE ds.small AS SELECT range AS x FROM range(10)")
    bigquery_standin.execute("CREATE TABLE ds.wide AS SELECT range AS x, range AS y FROM range(1000)")
    engine = BigQueryEngine(conn_id=bigquery_conn)
    assert engine.dry_run(["SELECT 1", "SELECT x FROM ds.small", "SELECT * FROM ds.wide"]) == [0, 80, 16000]
    assert all(j.dry_run for j in bigquery_standin.jobs.values()) or not bigquery_standin.jobs
    with pytest.raises(DliError) as info:
        engine.dry_run(["SELECT x FROM ds.missing"])
    assert info.value.code == "DLI-405" and "missing" in info.value.message


def test_sql_error_fails_the_task_with_dli_405_and_the_position(
    bigquery_conn, bigquery_standin, make_task, run_context
):
    task = make_task(SIMPLE_SPEC, "SELECT 1;\nSELECT amount\nFROM ds.no_such_table")
    ctx = run_context()
    task.render_template_fields(ctx)
    with pytest.raises(AirflowException, match="DLI-405") as info:
        task.execute(ctx)
    assert not isinstance(info.value, AirflowFailException)
    message = str(info.value)
    assert "statement 2 of 2" in message and "no_such_table" in message and "line 2, column" in message


def test_syntax_error_is_dli_405_with_the_position(bigquery_conn, bigquery_standin):
    with pytest.raises(DliError) as info:
        BigQueryEngine(conn_id=bigquery_conn).run(["SELECT 1,\nFROM"])
    assert info.value.code == "DLI-405"
    assert "Syntax error" in info.value.message and "line 2, column" in info.value.message


def test_permission_error_fails_the_task_with_dli_404_without_retry(
    bigquery_conn, bigquery_standin, make_task, run_context
):
    task = make_task(SIMPLE_SPEC, "SELECT * FROM hr.secret_salaries")
    ctx = run_context()
    task.render_template_fields(ctx)
    denied = r"DLI-404.*Access Denied: Table standin-project:hr\.secret_salaries"
    with pytest.raises(AirflowFailException, match=denied):
        task.execute(ctx)


def test_backend_error_is_dli_504(bigquery_conn, bigquery_standin):
    bigquery_standin.forced_errors["exploding_table"] = {"reason": "backendError", "message": "Backend error."}
    started = time.monotonic()
    with pytest.raises(DliError) as info:
        BigQueryEngine(conn_id=bigquery_conn).run(["SELECT * FROM ds.exploding_table"])
    assert info.value.code == "DLI-504" and "Backend error." in info.value.message
    assert time.monotonic() - started < 10  # no silent job retries: Airflow's retries apply


def test_on_kill_cancels_the_job(bigquery_conn, bigquery_standin, make_task, run_context):
    task = make_task(SIMPLE_SPEC, "SELECT 1;\nSELECT COUNT(*) FROM slow_numbers")
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
    job = bigquery_standin.wait_running("slow_numbers")
    time.sleep(0.3)  # the client is polling getQueryResults by now
    task.on_kill()
    worker.join(15)
    assert not worker.is_alive(), "execute() did not return after on_kill"
    assert job.job_id in bigquery_standin.cancelled
    assert job.error["reason"] == "stopped" and job.seconds < 5
    assert isinstance(outcome.get("error"), AirflowException) and "DLI-401" in str(outcome["error"])


def test_missing_connection_is_a_config_error(airflow_env):
    engine = BigQueryEngine(spec=load_spec(SIMPLE_SPEC.replace("bigquery_standin", "bq_nowhere").replace(
        "query_file: dataset.sql", "query: SELECT 1"), "s.yaml"))
    with pytest.raises(ConfigError, match="bq_nowhere"):
        engine.run(["SELECT 1"])


def test_importing_dli_airflow_does_not_import_google():
    # (the bare google and google.cloud namespace packages come with the interpreter, from a .pth file)
    code = (
        "import sys\n"
        "before = set(sys.modules)\n"
        "import dli_airflow, dli_airflow.engines, dli_airflow.engines.bigquery, dli_airflow.local\n"
        "new = set(sys.modules) - before\n"
        "loaded = sorted(m for m in new if m.startswith(('google', 'airflow.providers.google')))\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_cli_dry_run_reports_the_bytes_bigquery_would_scan(bigquery_conn, bigquery_standin, tmp_path):
    import json

    from typer.testing import CliRunner

    from dli_airflow.cli import app

    store = tmp_path / "store"
    (store / "code").mkdir(parents=True)
    (store / "code" / "orders.yaml").write_text(
        f"name: sales.orders\nowner: o@example.com\nengine: bigquery\nconn_id: {bigquery_conn}\n"
        "query: SELECT x FROM UNNEST([1, 2, 3]) AS x WHERE x > {{ n }}\n"
        "parameters: [{name: n, type: integer, default: 1}]\n"
    )
    result = CliRunner().invoke(app, ["dataset", "run", "sales.orders", "--store", str(store), "--dry-run",
                                      "--format", "json"])
    assert result.exit_code == 0, result.output
    estimate = json.loads(result.stdout)["bigquery_estimate"]
    assert estimate["available"] is True and estimate["bytes_per_statement"] == [estimate["total_bytes"]]
    assert estimate["total_bytes"] >= 0
    # the estimate came from the server: a job request reached the stand-in
    assert any("/jobs" in path or "/queries" in path for _, path in bigquery_standin.requests)
