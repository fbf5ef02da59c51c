"""OpenLineage end to end: Airflow's own listener, the HTTP transport, a stdlib receiver on 127.0.0.1.

One Airflow process (a fresh AIRFLOW_HOME on SQLite, the packaged DAG file on a store of four datasets)
runs ``dag.test()`` for each dataset — what ``airflow dags test`` does: the task runs in the Task SDK's
runner, the OpenLineage provider's listener (enabled by ``AIRFLOW__OPENLINEAGE__TRANSPORT`` alone, as a
user would) asks the operator for its lineage and posts the events. The engines are the real DuckDB and
the Trino and BigQuery protocol stand-ins. The tests read the events the receiver got.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import duckdb
import pytest
from bigquery_standin import BigQueryStandin, StandinJob
from trino_standin import TrinoStandin

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
DAG_FILE = ROOT / "dli_airflow" / "dag_files" / "dli_datasets.py"
AIRFLOW = Path(sys.executable).with_name("airflow")
BIGQUERY_PROJECT = "standin-project"
#: [openlineage] namespace: the jobs' namespace (the datasets have their engine's)
JOB_NAMESPACE = "dli-lineage-test"
RUN_TIMEOUT = 420

STORE = {
    "code/clicks.yaml": """\
        name: analytics.daily_clicks
        owner: analytics@example.com
        query_file: clicks.sql
        parameters:
          - {name: day, type: date, default: "2024-01-15"}
        """,
    "code/clicks.sql": """\
        CREATE SCHEMA IF NOT EXISTS analytics;
        CREATE OR REPLACE TABLE analytics.daily_clicks AS
        SELECT c.day, u.country, count(*) AS clicks
        FROM raw.clicks AS c JOIN raw.users AS u ON u.id = c.user_id
        WHERE c.day = {{ day }}
        GROUP BY c.day, u.country;
        SELECT * FROM analytics.daily_clicks ORDER BY country
        """,
    # manual: registered, not reviewed code; the spec's catalog and schema resolve the unqualified names
    "manual/orders.yaml": """\
        name: sales.orders_by_customer
        owner: sales@example.com
        engine: trino
        conn_id: trino_standin
        catalog: lake
        schema: analytics
        query: |
          CREATE TABLE IF NOT EXISTS orders_by_customer AS
          SELECT customer, sum(amount) AS total FROM raw.orders GROUP BY customer;
          SELECT * FROM orders_by_customer ORDER BY customer
        """,
    "code/revenue.yaml": """\
        name: shop.revenue
        owner: shop@example.com
        engine: bigquery
        conn_id: bigquery_standin
        query: |
          CREATE OR REPLACE TABLE shop.revenue AS
          SELECT region, SUM(amount) AS revenue FROM raw.orders_v GROUP BY region;
          SELECT * FROM shop.revenue ORDER BY region
        """,
    "code/broken.yaml": """\
        name: analytics.broken
        owner: analytics@example.com
        query: |
          CREATE OR REPLACE TABLE analytics.broken AS SELECT * FROM raw.no_such_table
        """,
}

#: What the driver runs in the Airflow process: what `airflow dags test DAG_ID` does, for several DAGs.
DRIVER = """\
import sys
from airflow.utils.cli import get_bagged_dag

for dag_id in sys.argv[1:]:
    dag = get_bagged_dag(bundle_names=None, dag_id=dag_id)
    run = dag.test()
    print(f"DLI-LINEAGE-RUN {dag_id} {run.state}", flush=True)
"""


class LineageReceiver:
    """An OpenLineage HTTP endpoint on a free port of 127.0.0.1 that keeps every event it is sent."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.paths: list[str] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # the stdlib names the method
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                receiver.paths.append(self.path)
                receiver.events.append(json.loads(body))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:  # quiet: the events are the record
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="lineage-receiver", daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> LineageReceiver:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


class StatsBigQueryStandin(BigQueryStandin):
    """The BigQuery stand-in whose jobs carry ``referencedTables`` and ``ddlTargetTable`` statistics.

    :param tables: per SQL fragment, the ``dataset.table`` names a job whose SQL contains it read, and the
        one it created (``None``: none)
    """

    def __init__(self, tables: dict[str, tuple[list[str], str | None]], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.tables = tables

    def resource(self, job: StandinJob) -> dict[str, Any]:
        answer = super().resource(job)
        for fragment, (read, created) in self.tables.items():
            if fragment in job.sql:
                stats = answer["statistics"]["query"]
                stats["referencedTables"] = [_table_ref(name) for name in read]
                if created:
                    stats["ddlTargetTable"] = _table_ref(created)
        return answer


def _table_ref(name: str) -> dict[str, str]:
    dataset, table = name.split(".")
    return {"projectId": BIGQUERY_PROJECT, "datasetId": dataset, "tableId": table}


def _seed_trino(standin: TrinoStandin) -> None:
    import trino

    conn = trino.dbapi.connect(host="127.0.0.1", port=standin.port, user="seed", catalog="lake", schema="raw")
    cursor = conn.cursor()
    cursor.execute("CREATE TABLE orders AS SELECT * FROM (VALUES ('ann', 3), ('bob', 4), ('ann', 5)) AS t(customer, amount)")
    cursor.fetchall()
    conn.close()


def _clean_env() -> dict[str, str]:
    """The machine's environment without Airflow, OpenLineage or dli settings (the test sets its own)."""
    prefixes = ("AIRFLOW", "OPENLINEAGE", "_AIRFLOW", "DLI_", "PYTEST_")
    return {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}


class LineageRun:
    """What the Airflow process did: the receiver's events, the run states, the process's output."""

    def __init__(self, receiver: LineageReceiver, states: dict[str, str], output: str, duckdb_path: Path,
                 trino: TrinoStandin, bigquery: BigQueryStandin) -> None:
        self.receiver = receiver
        self.states = states
        self.output = output
        self.duckdb_path = duckdb_path
        self.trino = trino
        self.bigquery = bigquery

    def task_event(self, dag_id: str, event_type: str) -> dict[str, Any]:
        """The one event of ``event_type`` of the dataset's ``run`` task."""
        found = [
            e for e in self.receiver.events
            if e["eventType"] == event_type and e["job"]["name"] == f"{dag_id}.run"
        ]
        kinds = sorted((e["job"]["name"], e["eventType"]) for e in self.receiver.events)
        assert len(found) == 1, f"{len(found)} {event_type} events for {dag_id}.run; the receiver got {kinds}"
        return found[0]


@pytest.fixture(scope="module")
def lineage_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LineageRun]:
    base = tmp_path_factory.mktemp("lineage")
    store, dags, home = base / "store", base / "dags", base / "airflow_home"
    for rel, text in STORE.items():
        (store / rel).parent.mkdir(parents=True, exist_ok=True)
        (store / rel).write_text(textwrap.dedent(text), encoding="utf-8")
    dags.mkdir()
    home.mkdir()
    (dags / DAG_FILE.name).write_text(DAG_FILE.read_text(encoding="utf-8"), encoding="utf-8")
    (base / "driver.py").write_text(DRIVER, encoding="utf-8")

    duckdb_path = base / "dli.duckdb"
    with duckdb.connect(str(duckdb_path)) as conn:
        conn.execute("CREATE SCHEMA raw")
        conn.execute("CREATE TABLE raw.users AS SELECT * FROM (VALUES (1, 'JP'), (2, 'FR')) AS t(id, country)")
        conn.execute(
            "CREATE TABLE raw.clicks AS SELECT * FROM (VALUES (DATE '2024-01-15', 1), (DATE '2024-01-15', 2), "
            "(DATE '2024-01-16', 1)) AS t(day, user_id)"
        )

    receiver = LineageReceiver().start()
    trino = TrinoStandin(page_size=100, poll_seconds=0.05).start()
    # what BigQuery's job statistics say and the SQL text does not: the view's base tables
    bigquery = StatsBigQueryStandin(
        {
            "CREATE OR REPLACE TABLE shop.revenue": (["raw.orders", "raw.customers", "shop.revenue"], "shop.revenue"),
            "SELECT * FROM shop.revenue": (["shop.revenue"], None),
        },
        poll_seconds=0.05,
    ).start()
    try:
        _seed_trino(trino)
        bigquery.execute(
            "CREATE SCHEMA raw; CREATE SCHEMA shop;"
            "CREATE TABLE raw.orders AS SELECT * FROM (VALUES (1, 10), (2, 5), (1, 7)) AS t(customer_id, amount);"
            "CREATE TABLE raw.customers AS SELECT * FROM (VALUES (1, 'EU'), (2, 'US')) AS t(id, region);"
            "CREATE VIEW raw.orders_v AS SELECT c.region, o.amount FROM raw.orders o JOIN raw.customers c "
            "ON c.id = o.customer_id"
        )
        env = {
            **_clean_env(),
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__DLI__SPEC_STORE": str(store),
            "AIRFLOW__DLI__DUCKDB_PATH": str(duckdb_path),
            "AIRFLOW__DLI__CACHE_DIR": str(base / "cache"),
            # all a user sets: where the events go (and, here, the jobs' namespace)
            "AIRFLOW__OPENLINEAGE__TRANSPORT": json.dumps({"type": "http", "url": receiver.url}),
            "AIRFLOW__OPENLINEAGE__NAMESPACE": JOB_NAMESPACE,
            "AIRFLOW_CONN_TRINO_STANDIN": json.dumps(
                {"conn_type": "trino", "host": "127.0.0.1", "port": trino.port, "login": "dli",
                 "schema": "main", "extra": {"catalog": "memory"}}
            ),
            "AIRFLOW_CONN_BIGQUERY_STANDIN": json.dumps(
                {"conn_type": "google_cloud_platform",
                 "extra": {"project": BIGQUERY_PROJECT, "location": "US", "is_anonymous": True,
                           "api_endpoint": bigquery.url}}
            ),
        }
        migrate = subprocess.run(
            [str(AIRFLOW), "db", "migrate"], env=env, cwd=base, capture_output=True, text=True,
            timeout=RUN_TIMEOUT, check=False,
        )
        assert migrate.returncode == 0, migrate.stdout[-3000:] + migrate.stderr[-3000:]
        dag_ids = ["analytics.daily_clicks", "sales.orders_by_customer", "shop.revenue", "analytics.broken"]
        result = subprocess.run(
            [sys.executable, str(base / "driver.py"), *dag_ids], env=env, cwd=base, capture_output=True,
            text=True, timeout=RUN_TIMEOUT, check=False,
        )
        output = result.stdout + result.stderr
        states = {
            line.split()[1]: line.split()[2] for line in result.stdout.splitlines()
            if line.startswith("DLI-LINEAGE-RUN ")
        }
        assert result.returncode == 0 and len(states) == len(dag_ids), output[-8000:]
        run = LineageRun(receiver, states, output, duckdb_path, trino, bigquery)
        yield run
    finally:
        receiver.stop()
        trino.stop()
        bigquery.stop()


@pytest.fixture
def lineage(lineage_run: LineageRun, request: pytest.FixtureRequest) -> Iterator[LineageRun]:
    """The module's run; a failed test prints the Airflow process's output and what the receiver got."""
    yield lineage_run
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        kinds = [(e["job"]["name"], e["eventType"]) for e in lineage_run.receiver.events]
        print(f"\n--- events: {kinds}\n--- the Airflow process:\n{lineage_run.output[-8000:]}", file=sys.stderr)


def _datasets(items: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return sorted((d["namespace"], d["name"]) for d in items)


def test_the_runs_ran_as_expected(lineage: LineageRun) -> None:
    assert lineage.states == {
        "analytics.daily_clicks": "success",
        "sales.orders_by_customer": "success",
        "shop.revenue": "success",
        "analytics.broken": "failed",
    }
    assert all(path == "/api/v1/lineage" for path in lineage.receiver.paths)


def test_a_duckdb_run_emits_the_tables_it_read_and_wrote(lineage: LineageRun) -> None:
    namespace = f"duckdb://{lineage.duckdb_path.resolve()}"
    event = lineage.task_event("analytics.daily_clicks", "COMPLETE")
    assert event["job"]["namespace"] == JOB_NAMESPACE
    # the last statement reads back the table the run wrote: an output, not also an input
    assert _datasets(event["inputs"]) == [(namespace, "raw.clicks"), (namespace, "raw.users")]
    assert _datasets(event["outputs"]) == [(namespace, "analytics.daily_clicks")]
    lineage_of = event["outputs"][0]["facets"]["columnLineage"]["fields"]
    assert {f["name"] for f in lineage_of["country"]["inputFields"]} == {"raw.users"}

    facet = event["run"]["facets"]["dli_dataset"]
    assert {k: facet[k] for k in ("name", "source", "engine", "queryIds")} == {
        "name": "analytics.daily_clicks", "source": "code", "engine": "duckdb", "queryIds": [],
    }
    assert facet["_schemaURL"] == "https://pypi.org/project/dli-airflow/#openlineage"
    sql = event["job"]["facets"]["sql"]
    assert sql["dialect"] == "duckdb"
    assert "WHERE c.day = DATE '2024-01-15'" in sql["query"]  # what ran: the parameter's value, rendered


def test_the_start_event_already_has_the_datasets_and_the_facet(lineage: LineageRun) -> None:
    namespace = f"duckdb://{lineage.duckdb_path.resolve()}"
    event = lineage.task_event("analytics.daily_clicks", "START")
    assert _datasets(event["inputs"]) == [(namespace, "raw.clicks"), (namespace, "raw.users")]
    assert _datasets(event["outputs"]) == [(namespace, "analytics.daily_clicks")]
    assert event["run"]["facets"]["dli_dataset"]["name"] == "analytics.daily_clicks"


def test_a_trino_run_names_its_tables_by_the_hooks_namespace_and_the_specs_catalog(lineage: LineageRun) -> None:
    namespace = f"trino://127.0.0.1:{lineage.trino.port}"
    event = lineage.task_event("sales.orders_by_customer", "COMPLETE")
    # the connection says catalog memory, schema main; the spec's lake.analytics wins, as it does for the run
    assert _datasets(event["inputs"]) == [(namespace, "lake.raw.orders")]
    assert _datasets(event["outputs"]) == [(namespace, "lake.analytics.orders_by_customer")]
    facet = event["run"]["facets"]["dli_dataset"]
    assert (facet["name"], facet["source"], facet["engine"]) == ("sales.orders_by_customer", "manual", "trino")
    ran = [q.id for q in lineage.trino.queries.values() if "orders_by_customer" in q.sql]
    assert facet["queryIds"] and set(facet["queryIds"]) <= set(ran)
    assert event["job"]["facets"]["sql"]["dialect"] == "trino"


def test_a_bigquery_run_takes_its_datasets_from_the_jobs_statistics(lineage: LineageRun) -> None:
    event = lineage.task_event("shop.revenue", "COMPLETE")
    # the SQL reads the view raw.orders_v; the jobs' statistics name other tables, and those are taken
    assert _datasets(event["inputs"]) == [
        ("bigquery", f"{BIGQUERY_PROJECT}.raw.customers"), ("bigquery", f"{BIGQUERY_PROJECT}.raw.orders"),
    ]
    assert _datasets(event["outputs"]) == [("bigquery", f"{BIGQUERY_PROJECT}.shop.revenue")]
    facet = event["run"]["facets"]["dli_dataset"]
    jobs = [j.job_id for j in lineage.bigquery.jobs.values() if "shop.revenue" in j.sql and not j.dry_run]
    assert (facet["engine"], facet["source"]) == ("bigquery", "code") and sorted(facet["queryIds"]) == sorted(jobs)
    # before it runs, there are no jobs: the START event has the SQL's own names
    start = lineage.task_event("shop.revenue", "START")
    assert _datasets(start["inputs"]) == [("bigquery", f"{BIGQUERY_PROJECT}.raw.orders_v")]
    assert _datasets(start["outputs"]) == [("bigquery", f"{BIGQUERY_PROJECT}.shop.revenue")]


def test_a_failed_run_emits_what_its_sql_would_have_read_and_written(lineage: LineageRun) -> None:
    namespace = f"duckdb://{lineage.duckdb_path.resolve()}"
    event = lineage.task_event("analytics.broken", "FAIL")
    assert _datasets(event["inputs"]) == [(namespace, "raw.no_such_table")]
    assert _datasets(event["outputs"]) == [(namespace, "analytics.broken")]
    assert event["run"]["facets"]["dli_dataset"]["name"] == "analytics.broken"
    assert "errorMessage" in event["run"]["facets"]

