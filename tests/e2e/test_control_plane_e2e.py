"""The control plane (``/dli/api/v1``) in the real api-server of the session's Airflow: mounted by the plugin
from the package's ``airflow.plugins`` entry point, authenticated and authorized by Airflow's own auth
manager (the simple auth manager's role users that ``dli dev up`` creates)."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from dli_airflow import dev
from dli_airflow.catalog import scan
from dli_airflow.spec import DatasetStatus

pytestmark = pytest.mark.e2e


def _password(airflow, user: str) -> str:
    return json.loads((airflow.home / "passwords.json").read_text())[user]


def _dli(airflow, user: str = "admin") -> httpx.Client:
    token = dev.get_token(airflow.url, user, _password(airflow, user))
    return httpx.Client(base_url=f"{airflow.url}/dli/api/v1", headers={"Authorization": f"Bearer {token}"}, timeout=60)


def _dag_paused(airflow, name: str) -> bool:
    with airflow.api() as api:
        return api.get(f"/dags/{name}").json()["is_paused"]


def test_the_plugin_is_loaded_from_the_entry_point_and_serves_its_openapi(airflow) -> None:
    with airflow.api() as api:
        plugins = api.get("/plugins").json()["plugins"]
    [plugin] = [p for p in plugins if p["name"] == "dli"]
    assert plugin["fastapi_apps"][0]["url_prefix"] == "/dli"
    schema = httpx.get(f"{airflow.url}/dli/api/v1/openapi.json", timeout=30).json()
    assert {"/api/v1/workflows", "/api/v1/workflows/{name}", "/api/v1/workflows/{name}/pause"} <= set(schema["paths"])


def test_health_answers_without_credentials_and_shows_no_store_details(airflow) -> None:
    body = httpx.get(f"{airflow.url}/dli/api/v1/health", timeout=30).json()
    assert body["status"] == "ok" and body["store"]["readable"] is True
    assert body["store"]["datasets"] == len(scan(airflow.store).entries)
    assert airflow.store not in json.dumps(body)


def test_reads_need_a_token(airflow) -> None:
    response = httpx.get(f"{airflow.url}/dli/api/v1/workflows", timeout=30)
    assert response.status_code == 401
    bad = httpx.get(f"{airflow.url}/dli/api/v1/workflows", headers={"Authorization": "Bearer nope"}, timeout=30)
    assert bad.status_code in (401, 403)


def test_the_list_is_the_store_joined_with_airflow_overridden_copies_included(airflow) -> None:
    expected = {(e.name, e.source.value, e.status.value) for e in scan(airflow.store).entries}
    with _dli(airflow) as dli:
        body = dli.get("/workflows", params={"limit": 1000}).json()
        first = dli.get("/workflows", params={"limit": 3, "offset": 0}).json()
        rest = dli.get("/workflows", params={"limit": 1000, "offset": 3}).json()
    got = {(w["dataset_name"], w["source_type"], w["status"]) for w in body["workflows"]}
    # a dataset's state in Airflow may differ from the spec's (paused in the UI): compare names and sources
    assert {g[:2] for g in got} >= {e[:2] for e in expected}
    assert ("analytics.user_metrics", "manual", DatasetStatus.OVERRIDDEN.value) in got
    assert body["total_entries"] == len(body["workflows"])
    assert first["workflows"] + rest["workflows"] == body["workflows"] and first["total_entries"] == body["total_entries"]
    assert body["problems"] == len(scan(airflow.store).problems)  # the broken specs' count, on every page


def test_next_run_is_shown_in_the_specs_time_zone(airflow) -> None:
    with _dli(airflow) as dli:
        body = dli.get("/workflows/analytics.daily_clicks").json()
    workflow = body["workflow"]
    assert workflow["timezone"] == "Asia/Seoul" and workflow["cron"] == "0 9 * * *"
    if workflow["status"] == "active":
        assert workflow["next_run"].endswith("+09:00") and "T09:00:00" in workflow["next_run"]


def test_get_shows_the_overridden_copy_beside_the_active_one(airflow) -> None:
    with _dli(airflow) as dli:
        body = dli.get("/workflows/analytics.user_metrics").json()
    assert body["workflow"]["source_type"] == "code"
    assert [(c["source_type"], c["status"], c["overridden_by"]) for c in body["copies"]] == [("manual", "overridden", "code")]


def test_an_unknown_workflow_is_a_json_dli_800(airflow) -> None:
    with _dli(airflow) as dli:
        response = dli.get("/workflows/no.such.dataset")
    assert response.status_code == 404
    assert response.json()["code"] == "DLI-800" and "no.such.dataset" in response.json()["message"]


def test_a_bad_filter_value_is_a_json_error_naming_the_choices(airflow) -> None:
    with _dli(airflow) as dli:
        response = dli.get("/workflows", params={"status": "sleeping"})
    assert response.status_code == 422 and response.json()["code"].startswith("DLI-2")
    assert "active" in response.json()["message"] + (response.json()["hint"] or "")


def test_a_viewer_reads_but_may_not_pause(airflow) -> None:
    with _dli(airflow, "viewer") as dli:
        assert dli.get("/workflows").status_code == 200
        response = dli.post("/workflows/analytics.campaign_report/pause")
    assert response.status_code == 403 and response.json()["code"] == "DLI-803"
    assert "viewer" in response.json()["message"]
    assert _dag_paused(airflow, "analytics.campaign_report") is False


@pytest.mark.parametrize("user", ["user", "op", "admin"])
def test_a_user_op_or_admin_pauses_and_unpauses_through_airflow(airflow, user: str) -> None:
    name = "analytics.campaign_report"
    with _dli(airflow, user) as dli:
        paused = dli.post(f"/workflows/{name}/pause")
        assert paused.status_code == 200, paused.text
        assert paused.json()["action"] == "pause" and _dag_paused(airflow, name) is True
        assert dli.get(f"/workflows/{name}").json()["workflow"]["status"] == "paused"
        unpaused = dli.post(f"/workflows/{name}/unpause")
        assert unpaused.status_code == 200 and _dag_paused(airflow, name) is False
    # Airflow's own audit log has the change, under the caller's name, once per write
    with airflow.api() as api:
        logs = api.get("/eventLogs", params={"dag_id": name, "owner": user, "order_by": "-when", "limit": 10}).json()
    events = [e["event"] for e in logs["event_logs"]]
    assert events.count("patch_dag") >= 2, events


def test_an_overridden_manual_copy_cannot_be_unpaused_on_its_own(airflow) -> None:
    with _dli(airflow) as dli:
        response = dli.post("/workflows/analytics.user_metrics/unpause", params={"source": "manual"})
    assert response.status_code == 403 and response.json()["code"] == "DLI-803"
    assert "removing the code spec" in response.json()["hint"]


def test_a_write_with_the_ui_cookie_needs_the_csrf_header(airflow) -> None:
    token = dev.get_token(airflow.url, "admin", _password(airflow, "admin"))
    url = f"{airflow.url}/dli/api/v1/workflows/analytics.campaign_report/pause"
    response = httpx.post(url, cookies={"_token": token}, timeout=30)
    assert response.status_code == 403 and "CSRF" in response.json()["message"]
    assert _dag_paused(airflow, "analytics.campaign_report") is False


def test_a_run_is_validated_and_coerced_on_the_server_before_airflow_is_called(airflow) -> None:
    with _dli(airflow, "user") as dli:
        unknown = dli.post("/workflows/e2e.adhoc/runs", json={"parameters": {"m": 1}})
        started = dli.post("/workflows/e2e.adhoc/runs", json={"parameters": {"n": "21"}})
    assert unknown.status_code == 422 and unknown.json()["code"] == "DLI-203"
    assert "Allowed parameters: n (" in unknown.json()["message"]
    assert started.status_code == 200, started.text
    run_id = started.json()["run_id"]
    assert run_id.startswith("e2e.adhoc__adhoc__")
    with airflow.api() as api:
        run = api.get(f"/dags/e2e.adhoc/dagRuns/{run_id}").json()
    assert run["conf"] == {"n": 21}  # the text "21" became the integer the DAG's params expect
    assert run["note"] == "triggered by user through dli"


def test_a_viewer_may_not_start_a_run(airflow) -> None:
    with _dli(airflow, "viewer") as dli:
        response = dli.post("/workflows/e2e.adhoc/runs", json={"parameters": {"n": 1}})
    assert response.status_code == 403 and response.json()["code"] == "DLI-803"


PROBE = """\
name: e2e.cp_registered
owner: cp@example.com
query_file: cp.sql
parameters:
  - {name: n, type: integer, default: 1}
"""


def test_register_and_unregister_through_the_control_plane_are_authorized_validated_and_audited(airflow) -> None:
    import time
    from pathlib import Path

    from e2e_support import wait_until

    body = {"spec": PROBE, "sql": "SELECT {{ n }} AS n\n"}
    with _dli(airflow, "viewer") as viewer:
        refused = viewer.post("/workflows", json=body)
    assert refused.status_code == 403 and refused.json()["code"] == "DLI-803"
    assert not (Path(airflow.store) / "manual" / "e2e.cp_registered.yaml").exists()
    with _dli(airflow, "user") as dli:
        bad = dli.post("/workflows", json={"spec": PROBE.replace("integer", "intger"), "sql": "SELECT 1"})
        assert bad.status_code == 422 and bad.json()["code"] == "DLI-201", bad.text
        assert "parameters" in json.dumps(bad.json())
        start = time.monotonic()
        created = dli.post("/workflows", json=body)
        assert created.status_code == 200, created.text
        assert created.json()["spec_path"] == "manual/e2e.cp_registered.yaml"
        assert (Path(airflow.store) / created.json()["sql_path"]).read_text() == "SELECT {{ n }} AS n\n"
        again = dli.post("/workflows", json=body)
        assert again.status_code == 409 and again.json()["code"] == "DLI-801" and "force" in again.json()["hint"]
        # Airflow is asked to parse the DAG file at once: the DAG is runnable long before a parse interval
        wait_until(lambda: dli.get("/workflows/e2e.cp_registered").json()["workflow"]["in_airflow"], 120,
                   interval=1, what="the registered DAG")
        print(f"register -> DAG visible in {time.monotonic() - start:.1f} s")
        gone = dli.delete("/workflows/e2e.cp_registered")
        assert gone.status_code == 200 and "Unregistered" in gone.json()["message"]
        assert not (Path(airflow.store) / "manual" / "e2e.cp_registered.yaml").exists()
        wait_until(lambda: dli.get("/workflows/e2e.cp_registered").status_code == 404, 120, interval=2,
                   what="the DAG to go")
    with airflow.api() as api:
        rows = api.get("/eventLogs", params={"owner": "user", "order_by": "-when", "limit": 50}).json()["event_logs"]
    events = {(row["event"], "e2e.cp_registered" in (row.get("extra") or "")) for row in rows}
    assert {("dli.register", True), ("dli.unregister", True)} <= events, rows


def test_a_code_workflow_is_never_changed_or_deleted_through_the_control_plane(airflow) -> None:
    from pathlib import Path

    code = sorted(p.read_bytes() for p in (Path(airflow.store) / "code").rglob("*") if p.is_file())
    with _dli(airflow, "admin") as dli:
        deleted = dli.delete("/workflows/analytics.daily_clicks")
        clash = dli.post("/workflows", json={"spec": "name: analytics.daily_clicks\nowner: a@b.c\nquery: SELECT 1\n"})
    assert deleted.status_code == 403 and deleted.json()["code"] == "DLI-803" and "managed by code" in deleted.json()["message"]
    assert clash.status_code == 409 and "already exists in code/" in clash.json()["message"]
    assert sorted(p.read_bytes() for p in (Path(airflow.store) / "code").rglob("*") if p.is_file()) == code


SCHEDULED = """\
name: e2e.cp_scheduled
owner: cp@example.com
query: SELECT 1 AS one
schedule: {cron: "0 5 * * *", timezone: UTC, enabled: false}
"""


def test_a_manual_workflows_schedule_is_updated_by_name_and_shows_who_changed_it(airflow) -> None:
    from pathlib import Path

    spec_file = Path(airflow.store) / "manual" / "e2e.cp_scheduled.yaml"
    with _dli(airflow, "user") as dli:
        created = dli.post("/workflows", json={"spec": SCHEDULED})
        assert created.status_code == 200, created.text
        try:
            with _dli(airflow, "viewer") as viewer:
                refused = viewer.patch("/workflows/e2e.cp_scheduled", json={"cron": "0 6 * * *"})
            assert refused.status_code == 403 and refused.json()["code"] == "DLI-803"
            empty = dli.patch("/workflows/e2e.cp_scheduled", json={})
            assert empty.status_code == 422 and empty.json()["code"] == "DLI-203" and "cron" in empty.json()["hint"]
            bad = dli.patch("/workflows/e2e.cp_scheduled", json={"cron": "every day"})
            assert bad.status_code == 422 and bad.json()["code"].startswith("DLI-2"), bad.text
            assert "retry" not in spec_file.read_text()
            with _dli(airflow, "op") as op:
                updated = op.patch("/workflows/e2e.cp_scheduled",
                                   json={"cron": "30 7 * * 1", "timezone": "Asia/Seoul", "retry_max_attempts": 3})
            assert updated.status_code == 200, updated.text
            info = updated.json()["workflow_info"]
            assert (info["cron"], info["timezone"], info["status"]) == ("30 7 * * 1", "Asia/Seoul", "paused")
            text = spec_file.read_text()
            assert "30 7 * * 1" in text and "max_attempts: 3" in text and "SELECT 1 AS one" in text
            got = dli.get("/workflows/e2e.cp_scheduled").json()["workflow"]
            assert (got["changed_by"], got["last_change"]) == ("op", "update")
            assert got["changed_at"] is not None
        finally:
            dli.delete("/workflows/e2e.cp_scheduled")
    with airflow.api() as api:
        rows = api.get("/eventLogs", params={"event": "dli.update", "order_by": "-when", "limit": 10}).json()["event_logs"]
    assert any(row["owner"] == "op" and "30 7 * * 1" in (row.get("extra") or "") for row in rows), rows


def test_a_code_workflows_schedule_cannot_be_updated_whoever_asks(airflow) -> None:
    from pathlib import Path

    code = sorted(p.read_bytes() for p in (Path(airflow.store) / "code").rglob("*") if p.is_file())
    with _dli(airflow, "admin") as dli:
        response = dli.patch("/workflows/analytics.daily_clicks", json={"cron": "0 1 * * *"})
        missing = dli.patch("/workflows/no.such.dataset", json={"cron": "0 1 * * *"})
    assert response.status_code == 403 and response.json()["code"] == "DLI-803"
    assert "Git" in response.json()["hint"]
    assert missing.status_code == 404 and missing.json()["code"] == "DLI-800"
    assert sorted(p.read_bytes() for p in (Path(airflow.store) / "code").rglob("*") if p.is_file()) == code


def test_a_backfill_is_validated_on_the_server_and_a_dry_run_lists_its_dates(airflow) -> None:
    with _dli(airflow, "viewer") as viewer:
        refused = viewer.post("/workflows/e2e.daily/backfills", json={"start": "2024-01-01", "end": "2024-01-03"})
    assert refused.status_code == 403 and refused.json()["code"] == "DLI-803"
    with _dli(airflow, "user") as dli:
        unknown = dli.post("/workflows/e2e.daily/backfills",
                           json={"start": "2024-01-01", "end": "2024-01-03", "parameters": {"nope": 1}})
        backwards = dli.post("/workflows/e2e.daily/backfills", json={"start": "2024-01-03", "end": "2024-01-01"})
        dry = dli.post("/workflows/e2e.daily/backfills",
                       json={"start": "2024-01-01", "end": "2024-01-03", "dry_run": True})
    assert unknown.status_code == 422 and unknown.json()["code"] == "DLI-203" and "nope" in unknown.json()["message"]
    assert backwards.status_code == 422 and "before start date" in backwards.json()["message"]
    assert dry.status_code == 200, dry.text
    assert [d[:10] for d in dry.json()["logical_dates"]] == ["2024-01-01", "2024-01-02", "2024-01-03"]
    assert dry.json()["dry_run"] is True and dry.json().get("backfill_id") is None


def test_the_sync_transitions_are_served(airflow) -> None:
    with _dli(airflow, "viewer") as dli:
        response = dli.get("/transitions", params={"limit": 5})
        too_many = dli.get("/transitions", params={"limit": 1000})
    assert response.status_code == 200, response.text
    runs = response.json()["runs"]
    assert len(runs) <= 5
    for run in runs:
        assert run["run_id"] and run["at"] and isinstance(run["transitions"], list)
    assert too_many.status_code == 422 and too_many.json()["code"] == "DLI-203"


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/workflows/analytics.campaign_report/pause", None),
        ("POST", "/workflows/analytics.campaign_report/unpause", None),
        ("POST", "/workflows", {"spec": "name: e2e.viewer_made\nowner: v@example.com\nquery: SELECT 1\n"}),
        ("PATCH", "/workflows/e2e.adhoc", {"cron": "0 1 * * *"}),
        ("DELETE", "/workflows/e2e.adhoc", None),
        ("POST", "/workflows/e2e.adhoc/runs", {"parameters": {"n": 1}}),
        ("POST", "/workflows/e2e.daily/backfills", {"start": "2024-01-01", "end": "2024-01-02"}),
        ("POST", "/workflows/e2e.adhoc/runs/e2e.adhoc__adhoc__20240101T000000000Z/stop", None),
    ],
)
def test_a_viewer_may_read_but_no_write_goes_through(airflow, method, path, body) -> None:
    store = Path(airflow.store)
    files = {p: p.read_bytes() for p in store.rglob("*") if p.is_file()}
    with _dli(airflow, "viewer") as dli:
        response = dli.request(method, path, json=body)
    assert response.status_code == 403, response.text
    assert response.json()["code"] == "DLI-803" and "viewer may not" in response.json()["message"]
    assert "role table" in response.json()["hint"]
    assert {p: p.read_bytes() for p in store.rglob("*") if p.is_file()} == files


@pytest.mark.hostile(kind="http-bodies")
@pytest.mark.parametrize(
    ("method", "path", "body", "field"),
    [
        ("POST", "/workflows", {"spec": 42}, "spec"),
        ("POST", "/workflows", {"spec": "S" * (1024 * 1024 + 1)}, "spec"),
        ("POST", "/workflows", {"spec": "name: x\n", "surprise": True}, "surprise"),
        ("POST", "/workflows", {"spec": "name: x\n", "overrides": {"cron": "* * * * *", "owner": "me"}}, "overrides.owner"),
        ("POST", "/workflows", [1, 2], None),
        ("POST", "/workflows/e2e.adhoc/runs", {"parameters": "n=1"}, "parameters"),
        ("POST", "/workflows/e2e.adhoc/runs", {"note": "x" * 5000}, "note"),
        ("POST", "/workflows/e2e.adhoc/runs", {"dry_run": "perhaps"}, "dry_run"),
        ("POST", "/workflows/e2e.daily/backfills", {"start": "2024-01-01"}, "end"),
        ("POST", "/workflows/e2e.daily/backfills", {"start": "2024-01-01", "end": "x" * 100}, "end"),
        ("PATCH", "/workflows/e2e.adhoc", {"cron": 5}, "cron"),
        ("PATCH", "/workflows/e2e.adhoc", {"query": "DROP TABLE x"}, "query"),
        ("GET", "/workflows?limit=0", None, "limit"),
        ("GET", "/workflows?offset=-1", None, "offset"),
        ("GET", "/workflows?running=maybe", None, "running"),
    ],
)
def test_a_request_the_api_cannot_read_is_a_json_dli_203_naming_the_field(airflow, method, path, body, field) -> None:
    with _dli(airflow, "admin") as dli:
        response = dli.request(method, path, json=body)
    assert response.status_code == 422, response.text
    error = response.json()
    assert error["code"] == "DLI-203" and error["message"].startswith("Invalid request")
    assert "/dli/api/v1/docs" in error["hint"]
    if field is not None:
        assert field in [p["field"] for p in error["problems"]], error
    assert "DROP TABLE" not in response.text and "SSSS" not in response.text  # the values sent are never echoed


def test_a_body_that_is_not_json_is_a_json_dli_203(airflow) -> None:
    with _dli(airflow, "admin") as dli:
        response = dli.post("/workflows/e2e.adhoc/runs", content=b"\xff{not json", headers={"content-type": "application/json"})
    assert response.status_code in (400, 422) and response.json()["code"] == "DLI-203", response.text
    assert "not json" not in response.text


def test_an_api_server_restart_the_client_rides_through_and_the_cache_survives(airflow) -> None:
    """A deploy restarts the api-server: a client that was talking to it keeps its session (the JWT stays
    valid: same secret), a read during the outage is a DLI error naming the URL (never a raw exception), and
    the first list after the restart is served from the snapshot cache on disk (read, not rewritten)."""
    import threading
    import time

    from dli_airflow.cache import cache_path
    from dli_airflow.client import WorkflowClient
    from dli_airflow.errors import DliError

    cached = cache_path(airflow.store, Path(airflow.home) / "dli" / "cache")
    assert cached.exists(), list((Path(airflow.home) / "dli").rglob("*"))
    outcomes: list[str] = []
    stop = threading.Event()
    with WorkflowClient(url=airflow.url, username="op", password=_password(airflow, "op"), retries=2,
                        timeout=10) as client:
        before = {(w.dataset_name, w.source_type) for w in client.list_workflows().workflows}
        inode = cached.stat().st_ino

        def poll() -> None:
            with WorkflowClient(url=airflow.url, username="op", password=_password(airflow, "op"), retries=2,
                                timeout=10) as reader:
                while not stop.is_set():
                    try:
                        reader.get("analytics.daily_clicks")
                        outcomes.append("ok")
                    except DliError as exc:
                        outcomes.append(exc.code)
                    except Exception as exc:  # noqa: BLE001 - what the test looks for
                        outcomes.append(f"raw {type(exc).__name__}")
                    time.sleep(0.3)

        reader = threading.Thread(target=poll)
        reader.start()
        try:
            time.sleep(1)
            dev.restart_api_server(airflow.home, timeout=180)
            time.sleep(1)
        finally:
            stop.set()
            reader.join(60)
        after = {(w.dataset_name, w.source_type) for w in client.list_workflows().workflows}
    assert after == before
    assert cached.stat().st_ino == inode  # the api-server's cold start read the cache the dag-processor keeps
    assert not [o for o in outcomes if o.startswith("raw")], outcomes
    assert outcomes[0] == "ok" and outcomes[-1] == "ok", outcomes
    print(f"reads during the restart: {outcomes}")
