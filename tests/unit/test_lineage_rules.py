"""``dli_airflow.lineage`` and the operator's OpenLineage methods, without a listener, a server or a database.

The events Airflow's listener really emits are in ``tests/integration/test_lineage.py``; here: the
namespaces and names per engine, what counts as an input, BigQuery's job statistics over the SQL parse,
and that the operator without the extra stays silent.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from airflow.providers.openlineage.extractors import OperatorLineage
from airflow.providers.openlineage.sqlparser import SQLParser
from google.cloud.bigquery import QueryJob
from openlineage.client.serde import Serde

from dli_airflow.lineage import (
    FACET_KEY,
    FACET_SCHEMA_URL,
    DliDatasetRunFacet,
    bigquery_lineage,
    duckdb_database_info,
    operator_lineage,
    sql_lineage,
)
from dli_airflow.operators import DatasetQueryOperator
from dli_airflow.spec import load_spec

CLICKS_SPEC = """\
name: analytics.daily_clicks
owner: me@example.com
query_file: clicks.sql
parameters:
  - {name: day, type: date, required: true}
"""
CLICKS_SQL = """\
CREATE SCHEMA IF NOT EXISTS analytics;
CREATE OR REPLACE TABLE analytics.daily_clicks AS
SELECT day, count(*) AS clicks FROM raw.clicks WHERE day = {{ day }} GROUP BY day;
SELECT * FROM analytics.daily_clicks
"""


def names(datasets: list[Any]) -> list[tuple[str, str]]:
    return sorted((d.namespace, d.name) for d in datasets)


def duckdb_lineage(*statements: str) -> OperatorLineage:
    parser = SQLParser(dialect="duckdb", default_schema="main")
    return sql_lineage(statements, parser=parser, database_info=duckdb_database_info(":memory:"))


# -- the operator's methods --------------------------------------------------------------------------------


@pytest.fixture
def duckdb_file(dli_isolated: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    import duckdb

    path = tmp_path / "dli.duckdb"
    monkeypatch.setenv("AIRFLOW__DLI__DUCKDB_PATH", str(path))
    with duckdb.connect(str(path)) as conn:
        conn.execute("CREATE SCHEMA raw; CREATE TABLE raw.clicks AS SELECT DATE '2024-01-15' AS day, 1 AS user_id")
    return path


def clicks_task(source: str = "code") -> DatasetQueryOperator:
    return DatasetQueryOperator(
        task_id="run", spec=load_spec(CLICKS_SPEC, "code/clicks.yaml"), sql_template=CLICKS_SQL, source=source
    )


def context(**params: Any) -> dict[str, Any]:
    return {"params": params, "dag_run": SimpleNamespace(run_type="manual", conf={}, run_after=None), "logical_date": None}


def test_the_operator_reports_what_its_run_read_and_wrote(duckdb_file: Path) -> None:
    task = clicks_task(source="manual")
    task.execute(context(day="2024-01-15"))
    lineage = task.get_openlineage_facets_on_complete(task_instance=None)
    assert isinstance(lineage, OperatorLineage)
    namespace = f"duckdb://{duckdb_file.resolve()}"
    assert names(lineage.inputs) == [(namespace, "raw.clicks")]
    assert names(lineage.outputs) == [(namespace, "analytics.daily_clicks")]
    facet = lineage.run_facets[FACET_KEY]
    assert (facet.name, facet.source, facet.engine, facet.queryIds) == ("analytics.daily_clicks", "manual", "duckdb", [])
    assert lineage.job_facets["sql"].dialect == "duckdb"
    assert "day = DATE '2024-01-15'" in lineage.job_facets["sql"].query  # the statements that ran, values inlined


def test_the_start_parses_the_rendered_sql(duckdb_file: Path) -> None:
    task = clicks_task()
    task.render_template_fields(context(day="2024-01-16"))
    lineage = task.get_openlineage_facets_on_start()
    assert [d.name for d in lineage.outputs] == ["analytics.daily_clicks"]
    assert "DATE '2024-01-16'" in lineage.job_facets["sql"].query
    assert task.get_openlineage_facets_on_failure(task_instance=None).outputs == lineage.outputs


def test_an_unrendered_task_reports_the_facet_and_no_datasets(dli_isolated: Path) -> None:
    """The template's Jinja is not SQL: a run that failed before rendering names no dataset."""
    lineage = clicks_task().get_openlineage_facets_on_failure(task_instance=None)
    assert lineage.inputs == [] and lineage.outputs == [] and lineage.job_facets == {}
    assert lineage.run_facets[FACET_KEY].name == "analytics.daily_clicks"


def test_without_the_extra_the_methods_return_nothing_and_say_nothing(
    dli_isolated: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setitem(sys.modules, "dli_airflow.lineage", None)  # the fault: `import` raises ImportError
    caplog.set_level(logging.DEBUG)
    task = clicks_task()
    assert task.get_openlineage_facets_on_start() is None
    assert task.get_openlineage_facets_on_complete(task_instance=None) is None
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


def test_importing_the_operator_does_not_import_openlineage() -> None:
    # Airflow's provider discovery reads every provider's get_provider_info: that one is not ours to avoid
    code = (
        "import sys, dli_airflow.operators, dli_airflow.factory\n"
        "print(sorted(m for m in sys.modules if m.startswith(('openlineage', 'airflow.providers.openlineage.',"
        " 'dli_airflow.lineage')) and not m.endswith('.get_provider_info'))[:5])"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


# -- the facet ----------------------------------------------------------------------------------------------


def test_the_facet_serializes_with_its_schema_url_and_fields() -> None:
    facet = DliDatasetRunFacet(name="analytics.daily_clicks", source="code", engine="trino", queryIds=["q1"])
    data = json.loads(Serde.to_json(facet))
    assert data["_schemaURL"] == FACET_SCHEMA_URL and data["_producer"]
    assert {k: data[k] for k in ("name", "source", "engine", "queryIds")} == {
        "name": "analytics.daily_clicks", "source": "code", "engine": "trino", "queryIds": ["q1"],
    }


# -- DuckDB --------------------------------------------------------------------------------------------------


def test_duckdb_namespaces_are_the_database_files_absolute_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    create = SQLParser.create_namespace
    assert create(duckdb_database_info("data/dli.duckdb")) == f"duckdb://{tmp_path.resolve()}/data/dli.duckdb"
    assert create(duckdb_database_info(":memory:")) == "duckdb://:memory:"


def test_a_table_written_then_read_back_is_an_output_only() -> None:
    lineage = duckdb_lineage("CREATE TABLE t AS SELECT * FROM src", "SELECT * FROM t")
    assert [d.name for d in lineage.inputs] == ["main.src"]
    assert [d.name for d in lineage.outputs] == ["main.t"]


def test_a_table_read_before_it_is_written_stays_an_input() -> None:
    lineage = duckdb_lineage("INSERT INTO t SELECT * FROM t WHERE x > 0", "SELECT count(*) FROM t")
    assert [d.name for d in lineage.inputs] == ["main.t"]
    assert [d.name for d in lineage.outputs] == ["main.t"]


def test_duckdb_table_functions_are_not_tables() -> None:
    lineage = duckdb_lineage(
        "INSERT INTO raw.events SELECT * FROM read_csv('events.csv') JOIN range(3) r(i) ON true JOIN main.users USING (id)"
    )
    assert [d.name for d in lineage.inputs] == ["main.users"]
    assert [d.name for d in lineage.outputs] == ["raw.events"]


# -- Trino ----------------------------------------------------------------------------------------------------


def test_trino_names_come_from_the_hook_with_the_specs_catalog_and_schema(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_TRINO_LINEAGE",
        json.dumps({"conn_type": "trino", "host": "trino.example", "port": 8443, "login": "dli", "schema": "main",
                    "extra": {"catalog": "memory"}}),
    )
    spec = load_spec(
        "name: lake.orders\nowner: me\nengine: trino\nconn_id: trino_lineage\ncatalog: lake\nschema: analytics\n"
        "query: SELECT 1\n",
        "code/orders.yaml",
    )
    statements = ["INSERT INTO orders SELECT * FROM raw.orders_src JOIN hive.ref.customers USING (customer)"]
    lineage = operator_lineage(spec, source="code", statements=statements, phase="start")  # start: no query
    namespace = "trino://trino.example:8443"
    assert names(lineage.inputs) == [(namespace, "hive.ref.customers"), (namespace, "lake.raw.orders_src")]
    assert names(lineage.outputs) == [(namespace, "lake.analytics.orders")]
    assert lineage.job_facets["sql"].dialect == "trino"


# -- BigQuery -------------------------------------------------------------------------------------------------


def job(job_id: str, *, read: list[str] = (), ddl_target: str | None = None, destination: str | None = None) -> QueryJob:
    """A ``QueryJob`` as ``client.get_job`` builds it from the REST resource (``p.dataset.table`` names)."""

    def ref(name: str) -> dict[str, str]:
        project, dataset, table = name.split(".")
        return {"projectId": project, "datasetId": dataset, "tableId": table}

    query: dict[str, Any] = {"query": "…"}
    if destination:
        query["destinationTable"] = ref(destination)
    stats: dict[str, Any] = {"referencedTables": [ref(n) for n in read]}
    if ddl_target:
        stats["ddlTargetTable"] = ref(ddl_target)
    resource = {
        "jobReference": {"projectId": "p", "jobId": job_id, "location": "US"},
        "configuration": {"query": query},
        "statistics": {"query": stats},
    }
    return QueryJob.from_api_repr(resource, client=SimpleNamespace(project="p"))


def test_bigquery_without_jobs_parses_the_sql_in_the_default_project() -> None:
    lineage = bigquery_lineage(["CREATE TABLE shop.revenue AS SELECT * FROM raw.orders_v"], [], project="p")
    assert names(lineage.inputs) == [("bigquery", "p.raw.orders_v")]
    assert names(lineage.outputs) == [("bigquery", "p.shop.revenue")]
    assert lineage.job_facets["sql"].dialect == "bigquery"


def test_bigquery_job_statistics_win_over_the_sql() -> None:
    statements = ["CREATE TABLE shop.revenue AS SELECT * FROM raw.orders_v", "SELECT * FROM shop.revenue"]
    jobs = [
        job("j1", read=["p.raw.orders", "p.raw.customers", "p.shop.revenue"], ddl_target="p.shop.revenue"),
        # a SELECT's results land in an anonymous table of a hidden dataset: not an output
        job("j2", read=["p.shop.revenue"], destination="p._0a1b.anon_results"),
    ]
    lineage = bigquery_lineage(statements, jobs, project="p")
    assert names(lineage.inputs) == [("bigquery", "p.raw.customers"), ("bigquery", "p.raw.orders")]
    assert names(lineage.outputs) == [("bigquery", "p.shop.revenue")]


def test_bigquery_takes_the_sql_for_what_a_job_does_not_say() -> None:
    statements = ["INSERT INTO shop.daily SELECT * FROM other.raw.events", "DELETE FROM shop.stale WHERE true"]
    # job 1 names what it read and not the table it changed; job 2 is unknown (its statistics could not be read)
    jobs = [job("j1", read=["other.raw.events"]), None]
    lineage = bigquery_lineage(statements, jobs, project="p")
    assert names(lineage.inputs) == [("bigquery", "other.raw.events")]
    assert names(lineage.outputs) == [("bigquery", "p.shop.daily"), ("bigquery", "p.shop.stale")]


def test_bigquery_with_an_unreachable_api_falls_back_to_the_sql(caplog: pytest.LogCaptureFixture) -> None:
    from dli_airflow.lineage import _fetch_jobs

    class Unreachable:
        def client(self) -> Any:
            raise OSError("no route to BigQuery")

    caplog.set_level(logging.WARNING, logger="dli_airflow.lineage")
    assert _fetch_jobs(Unreachable(), ["j1"]) == []
    assert "cannot reach BigQuery" in caplog.text
