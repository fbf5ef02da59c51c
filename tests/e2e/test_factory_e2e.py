"""The DAG factory on a real Airflow 3: the DAG list, typed params, a real run on DuckDB, assets, broken specs."""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path

import httpx
import pytest
from e2e_support import query_duckdb, wait_until

from dli_airflow.catalog import scan
from dli_airflow.store import LocalStore


def _dli_dags(api: httpx.Client) -> dict[str, dict]:
    response = api.get("/dags", params={"tags": "dli", "limit": 1000})
    response.raise_for_status()
    return {d["dag_id"]: d for d in response.json()["dags"]}


def _wait_run(api: httpx.Client, dag_id: str, run_id: str, timeout: float = 180) -> dict:
    def done():
        run = api.get(f"/dags/{dag_id}/dagRuns/{run_id}").json()
        return run if run.get("state") in {"success", "failed"} else None

    return wait_until(done, timeout, what=f"run {run_id} of {dag_id} to finish")


def test_dag_list_equals_the_active_datasets_of_the_store(airflow, e2e_store):
    snapshot = scan(LocalStore(e2e_store))
    expected = {e.name for e in snapshot.active}
    with airflow.api() as api:
        # a dataset another test unregistered stays listed until the dag-processor deactivates its DAG
        # ([dag_processor] stale_dag_threshold): the list converges to the store's active datasets
        def datasets() -> dict[str, dict]:  # the dataset DAGs (dli_spec_errors is tested on its own)
            return {k: d for k, d in _dli_dags(api).items() if "dli:errors" not in {t["name"] for t in d["tags"]}}

        dags = wait_until(lambda: (found := datasets()) and set(found) == expected and found, 240, interval=5,
                          what="Airflow's DAG list to equal the store's active datasets")
    # the manual copy overridden by code is not a DAG of its own: the one DAG is the code one
    assert "source:code" in {t["name"] for t in dags["analytics.user_metrics"]["tags"]}
    assert dags["reports.ad_hoc_summary"]["is_paused"] is True
    assert dags["analytics.daily_clicks"]["is_paused"] is False


def test_params_show_in_the_trigger_form(airflow):
    with airflow.api() as api:
        details = api.get("/dags/analytics.daily_clicks/details").json()
    params = details["params"]
    assert params["min_clicks"]["value"] == 1
    assert params["min_clicks"]["schema"]["type"] == ["null", "integer"]
    assert params["execution_date"]["schema"]["format"] == "date"
    assert "required" in params["execution_date"]["description"]
    # the schedule's time zone is said where the UI shows the DAG's docs (its details show the server's zone)
    assert "At 09:00, Asia/Seoul time (0 9 * * *)" in details["doc_md"]


def test_triggered_run_with_parameters_writes_the_expected_rows(airflow):
    run_id = f"e2e_params_{int(time.time())}"
    with airflow.api() as api:
        response = api.post(
            "/dags/analytics.daily_clicks/dagRuns",
            json={"logical_date": None, "dag_run_id": run_id, "conf": {"execution_date": "2024-01-15", "min_clicks": 20}},
        )
        assert response.status_code == 200, response.text
        run = _wait_run(api, "analytics.daily_clicks", run_id)
        assert run["state"] == "success", run
        xcom = api.get(
            f"/dags/analytics.daily_clicks/dagRuns/{run_id}/taskInstances/run/xcomEntries/return_value"
        ).json()
        rendered = api.get(f"/dags/analytics.daily_clicks/dagRuns/{run_id}/taskInstances/run").json()
    summary = xcom["value"]
    assert summary["parameters"]["execution_date"] == "2024-01-15"
    assert [r[1] for r in summary["rows"]] == ["campaign_0", "campaign_1", "campaign_2"]
    assert "DATE '2024-01-15'" in rendered["rendered_fields"]["sql"]
    database = Path(airflow.home) / "dli.duckdb"
    rows = query_duckdb(
        database, "SELECT campaign, clicks FROM daily_clicks WHERE click_date = DATE '2024-01-15' ORDER BY campaign"
    )
    assert rows == [("campaign_0", 20), ("campaign_1", 20), ("campaign_2", 20)]


def test_bad_parameter_value_is_rejected_by_airflow(airflow):
    with airflow.api() as api:
        response = api.post(
            "/dags/analytics.daily_clicks/dagRuns",
            json={"logical_date": None, "conf": {"execution_date": "2024-01-15", "min_clicks": "many"}},
        )
    assert response.status_code == 400, response.text
    assert "min_clicks" in response.text


def test_depends_on_triggers_the_downstream_dataset(airflow):
    with airflow.api() as api:
        started = datetime.now().astimezone()
        run_id = f"e2e_assets_{int(time.time())}"
        response = api.post(
            "/dags/analytics.daily_clicks/dagRuns",
            json={"logical_date": None, "dag_run_id": run_id, "conf": {"execution_date": "2024-01-16"}},
        )
        assert response.status_code == 200, response.text
        assert _wait_run(api, "analytics.daily_clicks", run_id)["state"] == "success"

        def downstream_done():
            runs = api.get(
                "/dags/analytics.campaign_report/dagRuns",
                params={"run_type": "asset_triggered", "order_by": "-run_after", "limit": 20},
            ).json()["dag_runs"]
            fresh = [r for r in runs if datetime.fromisoformat(r["run_after"]) >= started]
            return [r for r in fresh if r["state"] == "success"]

        # the scheduler queues it at its next loop after the asset event; on a loaded 2-core machine that
        # (and the run itself) once took more than 180 s
        runs = wait_until(downstream_done, 360, what="an asset-triggered run of analytics.campaign_report")
    assert runs[0]["run_type"] == "asset_triggered"


def test_broken_spec_is_shown_and_hides_nothing(airflow, e2e_store):
    broken = e2e_store / "code" / "zz_broken.yaml"
    broken.write_text("name: analytics.zz_broken\nowner: me\nquery: SELECT 1\nschedule:\n  cron: '0 9 * *'\n")
    try:
        with airflow.api() as api:

            def errors_dag():
                # the DAG may be there already for an earlier broken spec: wait for the one naming this file
                response = api.get("/dags/dli_spec_errors/details")
                ok = response.status_code == 200 and "zz_broken.yaml" in (response.json().get("doc_md") or "")
                return response.json() if ok else None

            details = wait_until(errors_dag, 120, what="the dli_spec_errors DAG")
            dags = _dli_dags(api)
        assert "zz_broken.yaml" in details["doc_md"] and "schedule.cron" in details["doc_md"]
        assert "DLI-201" in details["doc_md"]
        assert {"analytics.daily_clicks", "analytics.campaign_report", "reports.ad_hoc_summary"} <= set(dags)
        assert "analytics.zz_broken" not in dags
    finally:
        broken.unlink()


@pytest.mark.hostile(kind="required")
def test_a_run_triggered_like_the_form_with_a_required_field_empty_fails_with_dli_203(airflow):
    """The UI form sends the logical date (now) and the empty field as null: the run must not fill
    execution_date from the logical date; it fails before any SQL runs, without retrying."""
    run_id = f"e2e_required_empty_{int(time.time())}"
    now = datetime.now().astimezone().isoformat()
    with airflow.api() as api:
        response = api.post(
            "/dags/analytics.daily_clicks/dagRuns",
            json={"logical_date": now, "dag_run_id": run_id, "conf": {"execution_date": None, "min_clicks": 1}},
        )
        assert response.status_code == 200, response.text
        run = _wait_run(api, "analytics.daily_clicks", run_id)
        task = api.get(f"/dags/analytics.daily_clicks/dagRuns/{run_id}/taskInstances/run").json()
        log = api.get(
            f"/dags/analytics.daily_clicks/dagRuns/{run_id}/taskInstances/run/logs/{task['try_number']}",
            params={"full_content": "true"},
        ).json()
    assert run["state"] == "failed", run
    assert task["try_number"] == 1  # a missing parameter is not retried
    text = str(log)
    assert "DLI-203" in text and "Missing required parameter: execution_date" in text
    assert "Allowed parameters: execution_date (required)" in text
