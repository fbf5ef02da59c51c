"""WorkflowClient and `dli workflow` end to end against the real Airflow of the session fixture."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from e2e_support import query_duckdb, wait_until

from dli_airflow.client import WorkflowClient
from dli_airflow.errors import (
    ParameterError,
    ServerUnreachableError,
    WorkflowExecutionError,
    WorkflowPermissionError,
    WorkflowRegistrationError,
)
from dli_airflow.spec import DatasetStatus, SourceType
from dli_airflow.workflow import RunStatus


@pytest.fixture
def client(airflow):
    """Only the URL and credentials: the client never sees the store (the control plane reads it)."""
    with WorkflowClient(url=airflow.url, username=airflow.username, password=airflow.password) as c:
        assert c._plane()  # the dli plugin answers in this api-server
        yield c


def _final(client: WorkflowClient, run_id: str, timeout: float = 180):
    statuses = list(client.watch(run_id, poll=1.0, timeout=timeout))
    return statuses[-1]


def _db(airflow) -> Path:
    return Path(airflow.home) / "dli.duckdb"


def test_run_with_parameters_completes(client, airflow):
    result = client.run("e2e.daily", {"execution_date": "2023-06-01", "label": "it's"})
    assert result.run_id.startswith("e2e.daily__adhoc__")
    assert result.message == f"Run started: {result.run_id}"
    final = _final(client, result.run_id)
    assert final.status is RunStatus.COMPLETED and final.is_terminal and not final.is_running
    assert final.duration_seconds and final.duration_seconds > 0
    (task,) = final.tasks
    assert task.task_id == "run" and task.state == "success" and task.try_number == 1
    assert final.run.parameters == {"execution_date": "2023-06-01", "label": "it's"}
    assert "through dli" in (final.run.note or "")
    assert ("it's",) in query_duckdb(_db(airflow), "SELECT label FROM e2e_daily_log WHERE d = DATE '2023-06-01'")
    log = client.logs(result.run_id)
    assert any("DATE '2023-06-01'" in line for line in log.lines)


def test_parameters_are_validated_before_anything_is_sent(client):
    before = client.history(dataset_name="e2e.daily", limit=100).total_count
    with pytest.raises(ParameterError, match=r"Allowed parameters: execution_date \(required\), label \(optional\)"):
        client.run("e2e.daily", {"execution_date": "2023-06-01", "lable": "x"})
    with pytest.raises(ParameterError, match="Missing required parameter: execution_date"):
        client.run("e2e.daily", {})
    with pytest.raises(ParameterError, match="not a valid date"):
        client.run("e2e.daily", {"execution_date": "yesterday"})
    assert client.history(dataset_name="e2e.daily", limit=100).total_count == before


def test_dry_run_renders_and_parses_and_triggers_nothing(client):
    before = client.history(dataset_name="e2e.daily", limit=100).total_count
    result = client.run("e2e.daily", {"execution_date": "2023-07-01", "label": "x' OR '1'='1"}, dry_run=True)
    assert result.dry_run and result.run_id is None
    assert "VALUES (DATE '2023-07-01', 'x'' OR ''1''=''1', now())" in result.rendered_sql[1]
    assert client.history(dataset_name="e2e.daily", limit=100).total_count == before


def test_failing_dataset_reports_the_sql_error(client):
    result = client.run("e2e.failing")
    final = _final(client, result.run_id)
    assert final.status is RunStatus.FAILED
    assert final.error_message and "DLI-405" in final.error_message and "e2e_no_such_table" in final.error_message


def test_stop_kills_the_task_process(client):
    result = client.run("e2e.slow")
    try:

        def running_pid():
            status = client.get_status(result.run_id)
            task = status.tasks[0] if status.tasks else None
            return task.pid if task is not None and task.state == "running" and task.pid else None

        pid = wait_until(running_pid, 120, interval=0.5, what="the slow task to run")
        assert Path(f"/proc/{pid}").exists()
        stopped = client.stop(result.run_id, wait=15)
        assert stopped.run_status is RunStatus.KILLED
        wait_until(lambda: not Path(f"/proc/{pid}").exists(), 30, interval=0.5, what=f"task process {pid} to be gone")
        assert client.get_status(result.run_id).status is RunStatus.KILLED
        killed = client.history(dataset_name="e2e.slow", run_status="KILLED").runs
        assert result.run_id in {r.run_id for r in killed}
    finally:
        # never leave the slow query holding the DuckDB file for the other tests
        if not client.get_status(result.run_id).is_terminal:
            client.stop(result.run_id, wait=15)


def test_backfill_runs_three_dates_in_order(client, airflow):
    dry = client.backfill("e2e.daily", "2024-03-01", "2024-03-03", {"label": "bf"}, dry_run=True)
    assert [d.date().isoformat() for d in dry.logical_dates] == ["2024-03-01", "2024-03-02", "2024-03-03"]
    result = client.backfill("e2e.daily", "2024-03-01", "2024-03-03", {"label": "bf"})
    # no invented run id: the backfill as one id, and the ids of the runs Airflow made, which status and stop take
    assert result.run_id == f"backfill:{result.backfill_id}" and len(result.run_ids) == 3
    assert client.get_status(result.run_ids[0], dataset="e2e.daily").run.run_type == "backfill"
    runs = client.wait_backfill(result, poll=1.0, timeout=240)
    assert [r.status for r in runs] == [RunStatus.COMPLETED] * 3
    assert set(result.run_ids) == {r.run_id for r in runs}
    assert all(r.run_type == "backfill" for r in runs)
    days = query_duckdb(_db(airflow), "SELECT d FROM e2e_daily_log WHERE label = 'bf' ORDER BY ts")
    assert [d[0].isoformat() for d in days] == ["2024-03-01", "2024-03-02", "2024-03-03"]


def test_backfill_with_wait_stops_at_the_first_failure(client, airflow):
    result = client.backfill("e2e.flaky", "2024-01-01", "2024-01-03")
    runs = client.wait_backfill(result, poll=1.0, timeout=240)
    by_day = {r.logical_date.date().isoformat(): r.status for r in runs}
    assert by_day["2024-01-01"] is RunStatus.COMPLETED
    assert by_day["2024-01-02"] is RunStatus.FAILED
    assert by_day.get("2024-01-03") is not RunStatus.COMPLETED
    time.sleep(5)  # nothing runs after the cancel
    done = [r[0].isoformat() for r in query_duckdb(_db(airflow), "SELECT d FROM e2e_flaky_log ORDER BY d")]
    assert "2024-01-03" not in done and "2024-01-01" in done


def test_a_backfill_started_outside_dli_stops_at_its_first_failed_date_too(client, airflow):
    """The UI's Backfill form posts to /api/v2/backfills: no dli key in the runs' conf, and nobody waiting to
    cancel. The operator asks Airflow for the run's backfill, and the date after the failed one does not run."""
    body = {"dag_id": "e2e.flaky", "from_date": "2024-01-01T00:00:00Z", "to_date": "2024-01-03T23:59:59Z",
            "run_backwards": False, "dag_run_conf": {}, "reprocess_behavior": "failed", "max_active_runs": 1}
    with airflow.api() as api:
        created = api.post("/backfills", json=body)
        assert created.status_code == 200, created.text
        backfill_id = created.json()["id"]
        wait_until(lambda: api.get(f"/backfills/{backfill_id}").json()["completed_at"] is not None, timeout=240)
        runs = api.get("/dags/e2e.flaky/dagRuns", params={"run_type": "backfill", "limit": 100}).json()["dag_runs"]
    by_day = {r["logical_date"][:10]: r for r in runs}
    assert by_day["2024-01-02"]["state"] == "failed" and by_day["2024-01-03"]["state"] == "failed"
    assert all(not k.startswith("__dli") for r in runs for k in (r.get("conf") or {}))
    done = [r[0].isoformat() for r in query_duckdb(_db(airflow), "SELECT d FROM e2e_flaky_log ORDER BY d")]
    assert "2024-01-03" not in done
    log = client.logs(by_day["2024-01-03"]["dag_run_id"], dataset="e2e.flaky")
    assert any("earlier date of this backfill failed" in line for line in log.lines)


def test_pause_and_unpause_show_in_airflow_and_a_paused_run_is_refused(client, airflow):
    client.pause("e2e.daily")
    try:
        with httpx.Client(base_url=f"{airflow.url}/api/v2", headers={"Authorization": f"Bearer {airflow.token()}"}) as api:
            assert api.get("/dags/e2e.daily").json()["is_paused"] is True
        with pytest.raises(WorkflowExecutionError, match="paused") as info:
            client.run("e2e.daily", {"execution_date": "2024-01-01"})
        assert "dli workflow unpause e2e.daily" in info.value.hint
        assert client.get("e2e.daily").status is DatasetStatus.PAUSED
    finally:
        client.unpause("e2e.daily")
    assert client.get("e2e.daily").status is DatasetStatus.ACTIVE


def test_list_merges_the_store_and_airflow(client):
    result = client.list_workflows()
    pairs = {(w.dataset_name, w.source_type) for w in result.workflows}
    assert ("analytics.user_metrics", SourceType.CODE) in pairs
    assert ("analytics.user_metrics", SourceType.MANUAL) in pairs
    manual = next(
        w for w in result.workflows if w.dataset_name == "analytics.user_metrics" and w.source_type is SourceType.MANUAL
    )
    assert manual.status is DatasetStatus.OVERRIDDEN and manual.overridden_by is SourceType.CODE
    assert manual.next_run is None
    code = next(w for w in result.workflows if w.dataset_name == "analytics.daily_clicks")
    assert code.next_run is not None and code.cron == "0 9 * * *"
    only_manual = client.list_workflows(source_type="manual").workflows
    assert {w.source_type for w in only_manual} == {SourceType.MANUAL}
    assert all(w.status is not DatasetStatus.PAUSED for w in client.list_workflows(enabled_only=True).workflows)


def test_register_and_unregister_a_manual_workflow(client, airflow, e2e_store, tmp_path):
    spec = tmp_path / "mine.yaml"
    spec.write_text("name: e2e.registered\nowner: me@example.com\nquery_file: mine.sql\nschedule: {cron: '0 5 * * *'}\n")
    (tmp_path / "mine.sql").write_text("SELECT 1 AS one\n")
    result = client.register(spec, timezone="Europe/Paris")
    assert result.spec_path == "manual/e2e.registered.yaml"
    assert result.sql_path and result.sql_path.startswith("manual/e2e.registered.")
    assert (e2e_store / result.sql_path).read_text() == "SELECT 1 AS one\n"
    wait_until(lambda: client.get("e2e.registered") and client.get("e2e.registered").in_airflow, 120, interval=2, what="the DAG")
    registered = client.get("e2e.registered")
    assert registered.timezone == "Europe/Paris"
    assert (registered.changed_by, registered.last_change) == (airflow.username, "register")
    with pytest.raises(WorkflowRegistrationError, match="already registered"):
        client.register(spec)
    # the schedule changes by name, the SQL stays; `dli workflow update` and `get` show who changed it
    updated = _cli(airflow, e2e_store, "update", "e2e.registered", "--cron", "15 4 * * *", "--timezone", "Asia/Seoul")
    assert updated.returncode == 0, updated.stderr
    assert "Updated e2e.registered (manual, active): 15 4 * * * Asia/Seoul" in updated.stdout
    assert (e2e_store / "manual" / "e2e.registered.yaml").read_text().count("15 4 * * *") == 1
    shown = _cli(airflow, e2e_store, "get", "e2e.registered")
    assert shown.returncode == 0 and "last_change    update" in shown.stdout and f"changed_by     {airflow.username}" in shown.stdout
    code = _cli(airflow, e2e_store, "update", "analytics.daily_clicks", "--cron", "0 1 * * *")
    assert code.returncode == 1 and "DLI-803" in code.stderr and "Git" in code.stderr
    nothing = _cli(airflow, e2e_store, "update", "e2e.registered")
    assert nothing.returncode == 1 and "DLI-203" in nothing.stderr
    client.unregister("e2e.registered")
    assert not (e2e_store / "manual" / "e2e.registered.yaml").exists()
    # unregistered through the control plane: Airflow's audit log has it, with the dataset and the caller
    with airflow.api() as api:
        rows = api.get("/eventLogs", params={"event": "dli.unregister", "order_by": "-when", "limit": 5}).json()
    assert any("e2e.registered" in (row.get("extra") or "") and row["owner"] == airflow.username
               for row in rows["event_logs"]), rows

    def gone():
        info = client.get("e2e.registered")
        return info is None
    wait_until(gone, 120, interval=2, what="the DAG to go")


def test_code_workflows_cannot_be_changed_here(client, e2e_store, tmp_path):
    code_files = sorted(p.read_bytes() for p in (e2e_store / "code").rglob("*") if p.is_file())
    with pytest.raises(WorkflowPermissionError, match="managed by code") as info:
        client.unregister("analytics.daily_clicks")
    assert "modify the YAML in Git and deploy it through CI" in info.value.hint
    with pytest.raises(WorkflowPermissionError, match="overridden") as info:
        client.unpause("analytics.user_metrics", source_type="manual")
    assert "removing the code spec" in info.value.hint
    spec = tmp_path / "clash.yaml"
    spec.write_text("name: analytics.daily_clicks\nowner: me@example.com\nquery: SELECT 1\n")
    with pytest.raises(WorkflowRegistrationError, match="already exists in code/"):
        client.register(spec)
    stored = client.register(spec, force=True)
    try:
        assert stored.workflow_info.status is DatasetStatus.OVERRIDDEN
    finally:
        client.unregister("analytics.daily_clicks")  # removes only the manual copy
    assert sorted(p.read_bytes() for p in (e2e_store / "code").rglob("*") if p.is_file()) == code_files
    with pytest.raises(WorkflowExecutionError, match="overridden by code"):
        client.run("analytics.user_metrics", {"execution_date": "2024-01-01"}, source_type="manual")


def test_dead_server_gives_the_connect_message():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with WorkflowClient(url=f"http://127.0.0.1:{port}", token="t", retries=2) as dead:
        with pytest.raises(ServerUnreachableError, match=f"Cannot connect to Airflow at http://127.0.0.1:{port}") as info:
            dead.list_workflows()
    assert "DLI_AIRFLOW_URL" in info.value.hint


def test_expired_token_is_refreshed(client):
    client._token = "expired.garbage.token"
    assert client.get("e2e.daily") is not None


def test_reads_retry_through_a_503_burst(airflow, e2e_store):
    class Burst(httpx.HTTPTransport):
        """Answers 503 to the first two reads, then lets requests through to the real server."""

        def __init__(self):
            super().__init__()
            self.faults = 2

        def handle_request(self, request):
            if request.method == "GET" and self.faults:  # Airflow's API and the control plane alike
                self.faults -= 1
                return httpx.Response(503, json={"detail": "busy"})
            return super().handle_request(request)

    transport = Burst()
    with WorkflowClient(url=airflow.url, username=airflow.username, password=airflow.password,
                        transport=transport) as c:
        assert c.get("e2e.daily") is not None
    assert transport.faults == 0


#: what the CLI's environment keeps of the test run's: nothing that could point it at the store or at Airflow
_KEPT = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "VIRTUAL_ENV", "PYTHONPATH")


def _cli(airflow, e2e_store, *args: str) -> subprocess.CompletedProcess:
    """`dli workflow …` as a user runs it: the Airflow URL and credentials, no store, no Airflow config."""
    env = {k: v for k, v in os.environ.items() if k in _KEPT}
    env.update({"DLI_AIRFLOW_URL": airflow.url, "DLI_AIRFLOW_USERNAME": airflow.username,
                "DLI_AIRFLOW_PASSWORD": airflow.password, "DLI_DEV_HOME": str(e2e_store / "no-dev-home")})
    return subprocess.run([sys.executable, "-m", "dli_airflow.cli", "workflow", *args], env=env,
                          capture_output=True, text=True, timeout=300)


def test_cli_run_wait_list_and_errors(airflow, e2e_store):
    done = _cli(airflow, e2e_store, "run", "e2e.adhoc", "-p", "n=5", "--wait")
    assert done.returncode == 0, done.stderr
    assert "Run started: e2e.adhoc__adhoc__" in done.stdout and "COMPLETED" in done.stdout
    listing = _cli(airflow, e2e_store, "list")
    assert listing.returncode == 0, listing.stderr
    assert "(overridden by code)" in listing.stdout and "NEXT RUN" in listing.stdout
    assert " Asia/Seoul" in listing.stdout  # the next run of a Seoul schedule, in its zone, labelled
    bad = _cli(airflow, e2e_store, "run", "e2e.adhoc", "-p", "m=1")
    assert bad.returncode == 1 and "Error [DLI-203]" in bad.stderr and "Traceback" not in bad.stderr
    denied = _cli(airflow, e2e_store, "unregister", "analytics.daily_clicks")
    assert denied.returncode == 1 and "DLI-803" in denied.stderr
    history = _cli(airflow, e2e_store, "history", "-d", "e2e.adhoc", "--format", "json")
    assert history.returncode == 0 and '"status": "COMPLETED"' in history.stdout
