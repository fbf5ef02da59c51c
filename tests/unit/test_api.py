"""The REST API transport (``dli_airflow._api``) against ``httpx.MockTransport``: the JWT is fetched once and
refreshed once on expiry, idempotent requests are retried with bounded backoff, every failure maps to one
DLI error that keeps its cause, and no credential reaches a message."""

from __future__ import annotations

import json

import httpx
import pytest

from dli_airflow import _api
from dli_airflow._api import ApiTransport
from dli_airflow.errors import ServerAuthError, ServerExecutionError, ServerUnreachableError, WorkflowExecutionError

URL = "http://airflow.test"
PASSWORD = "pw-very-secret"


class Server:
    """A scripted API server: answers from a queue per path and records every request."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []
        self.tokens = 0
        self.answers: dict[str, list[httpx.Response]] = {}
        self.valid_tokens: set[str] = set()

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.url.path == "/auth/token":
            body = json.loads(request.content)
            if body["password"] != PASSWORD:
                return httpx.Response(401, json={"detail": "Invalid credentials"})
            self.tokens += 1
            token = f"jwt-{self.tokens}"
            self.valid_tokens.add(token)
            return httpx.Response(201, json={"access_token": token})
        queue = self.answers.get(request.url.path)
        if queue:
            answer = queue.pop(0)
            if isinstance(answer, Exception):
                raise answer
            return answer
        auth = request.headers.get("Authorization", "")
        if auth.removeprefix("Bearer ") not in self.valid_tokens:
            return httpx.Response(403, json={"detail": "Invalid JWT token"})
        return httpx.Response(200, json={"ok": True, "auth": auth})

    def transport(self, **kwargs) -> ApiTransport:  # noqa: ANN003
        kwargs.setdefault("username", "ana")
        kwargs.setdefault("password", PASSWORD)
        return ApiTransport(URL, transport=httpx.MockTransport(self.handler), **kwargs)


@pytest.fixture
def server(monkeypatch) -> Server:
    monkeypatch.setattr(_api.time, "sleep", lambda seconds: None)
    return Server()


def test_the_token_is_fetched_once_and_sent_on_every_request(server):
    api = server.transport()
    assert api.get("/dags")["auth"] == "Bearer jwt-1"
    assert api.get("/dags")["auth"] == "Bearer jwt-1"
    assert server.tokens == 1 and api.requests_made == 3


def test_an_expired_token_is_fetched_again_once(server):
    api = server.transport()
    api.get("/dags")
    server.valid_tokens.clear()  # Airflow answers 403 "Invalid JWT token" to an expired token
    assert api.get("/dags")["auth"] == "Bearer jwt-2"
    assert server.tokens == 2


def test_a_token_refused_after_a_fresh_login_is_an_auth_error_not_a_loop(server):
    api = server.transport()
    server.answers["/api/v2/dags"] = [httpx.Response(401, json={"detail": "nope"})] * 2
    with pytest.raises(ServerAuthError, match="refused the credentials"):
        api.get("/dags")
    assert server.tokens == 2  # the first login and one refresh, no more


def test_a_static_token_is_never_refreshed(server):
    api = server.transport(token="static", username=None, password=None)
    with pytest.raises(ServerAuthError, match="refused the credentials") as caught:
        api.get("/dags")
    assert server.tokens == 0 and "DLI_AIRFLOW_TOKEN" in (caught.value.hint or "")


def test_a_wrong_password_names_the_user_never_the_password(server):
    api = server.transport(password="wrong-" + PASSWORD)
    with pytest.raises(ServerAuthError) as caught:
        api.get("/dags")
    assert "'ana'" in caught.value.message and PASSWORD not in caught.value.render()


def test_without_credentials_only_unauthenticated_requests_go_out(server):
    api = ApiTransport(URL, transport=httpx.MockTransport(server.handler))
    server.answers["/api/v2/monitor/health"] = [httpx.Response(200, json={"metadatabase": {}})]
    assert api.request("GET", "/monitor/health", authenticated=False).status_code == 200
    with pytest.raises(ServerAuthError, match="DLI_AIRFLOW_USERNAME"):
        api.get("/dags")
    with pytest.raises(ServerAuthError, match="DLI_AIRFLOW_TOKEN"):
        api.token()
    assert [r.url.path for r in server.requests] == ["/api/v2/monitor/health"]


def test_an_idempotent_request_is_retried_on_5xx_with_backoff(server, monkeypatch):
    slept: list[float] = []
    monkeypatch.setattr(_api.time, "sleep", slept.append)
    api = server.transport(retries=3)
    server.answers["/api/v2/dags"] = [httpx.Response(503), httpx.Response(502)]
    assert api.get("/dags")["ok"] is True
    assert slept == [0.25, 0.5]


def test_retries_are_bounded(server):
    api = server.transport(retries=3)
    server.answers["/api/v2/dags"] = [httpx.Response(500, json={"detail": "db down"})] * 5
    with pytest.raises(ServerExecutionError, match="failed \\(500\\) on /dags: db down"):
        api.get("/dags")
    assert len([r for r in server.requests if r.url.path == "/api/v2/dags"]) == 3


def test_a_write_is_not_retried_unless_the_server_says_it_did_nothing(server):
    api = server.transport(retries=3)
    server.answers["/api/v2/dags/x/dagRuns"] = [httpx.Response(500)]
    with pytest.raises(ServerExecutionError):
        api.request("POST", "/dags/x/dagRuns", json={})
    assert len([r for r in server.requests if r.method == "POST" and "dagRuns" in r.url.path]) == 1
    server.answers["/api/v2/backfills"] = [httpx.Response(503), httpx.Response(200, json={"id": 1})]
    assert api.request("POST", "/backfills", json={}, retry_statuses=(503,)).json() == {"id": 1}


def test_a_connection_failure_is_unreachable_and_keeps_its_cause(server):
    api = server.transport(retries=2)
    server.answers["/api/v2/dags"] = [httpx.ConnectError("refused")] * 2
    with pytest.raises(ServerUnreachableError, match="Cannot connect to Airflow at http://airflow.test") as caught:
        api.get("/dags")
    assert isinstance(caught.value.__cause__, httpx.ConnectError)


@pytest.mark.parametrize(
    ("status", "error", "text"),
    [
        (403, ServerAuthError, "does not allow this"),
        (404, WorkflowExecutionError, "refused /dags (404): DAG not found"),
        (409, WorkflowExecutionError, "(409)"),
        (500, ServerExecutionError, "failed (500)"),
    ],
)
def test_http_errors_map_to_one_dli_error_each(server, status, error, text):
    api = server.transport(retries=1)
    server.answers["/api/v2/dags"] = [httpx.Response(status, json={"detail": "DAG not found"})]
    with pytest.raises(error) as caught:
        api.get("/dags")
    assert text in caught.value.message


def test_ok_statuses_are_handed_back(server):
    api = server.transport()
    server.answers["/api/v2/dags/x"] = [httpx.Response(404, json={"detail": "no"})]
    assert api.request("GET", "/dags/x", ok=(200, 404)).status_code == 404


def test_an_unauthenticated_request_sends_no_token(server):
    api = server.transport()
    server.answers["/api/v2/monitor/health"] = [httpx.Response(200, json={})]
    api.request("GET", "/monitor/health", authenticated=False)
    assert server.tokens == 0 and "Authorization" not in server.requests[-1].headers


def test_paginate_reads_every_page(server):
    api = server.transport()
    pages = [{"dags": [{"dag_id": f"d{i}"} for i in range(start, min(start + 100, 250))], "total_entries": 250}
             for start in (0, 100, 200)]
    server.answers["/api/v2/dags"] = [httpx.Response(200, json=p) for p in pages]
    dags = api.paginate("/dags", "dags", tags="dli")
    assert [d["dag_id"] for d in dags] == [f"d{i}" for i in range(250)]
    offsets = [r.url.params["offset"] for r in server.requests if r.url.path == "/api/v2/dags"]
    assert offsets == ["0", "100", "200"]


def test_a_run_is_retried_through_a_database_lock_and_a_409_of_its_own_write_is_the_run(server):
    """The client's run: Airflow on SQLite answers 500 when a lock made the write fail; the retry may find
    the run the first attempt did create (409): that is the run, not an error."""
    from dli_airflow.client import WorkflowClient

    posted: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/v2/dags/d":
            return httpx.Response(200, json={"dag_id": "d", "is_paused": False, "tags": [{"name": "dli"}]})
        if request.url.path == "/api/v2/dags/d/details":
            return httpx.Response(200, json={"params": {}})
        if request.method == "POST" and request.url.path == "/api/v2/dags/d/dagRuns":
            posted.append(json.loads(request.content)["dag_run_id"])
            if len(posted) == 1:
                return httpx.Response(500, json={"reason": "Database error"})
            return httpx.Response(409, json={"detail": "already exists"})
        if request.url.path.startswith("/api/v2/dags/d/dagRuns/"):
            return httpx.Response(200, json={"dag_run_id": posted[0], "dag_id": "d", "state": "queued"})
        return server.handler(request)

    # an Airflow without dli's control plane (the mock answers 404 there): the DAG's params are the check
    client = WorkflowClient(URL, username="ana", password=PASSWORD, transport=httpx.MockTransport(handler))
    result = client.run("d")
    assert result.run_id == posted[0] == posted[1] and result.run_status.value == "PENDING"


def test_a_control_plane_error_is_raised_as_its_own_dli_error(server):
    from dli_airflow.errors import ParameterError, WorkflowPermissionError

    body = {"code": "DLI-203", "message": "Unknown parameter 'm'. Allowed parameters: n (optional)", "hint": None,
            "problems": [{"file": "manual/x.yaml", "field": "parameters", "line": 3, "message": "m", "hint": None}]}
    server.answers["/dli/api/v1/workflows/x/runs"] = [httpx.Response(422, json=body)]
    server.answers["/dli/api/v1/workflows/x/pause"] = [
        httpx.Response(403, json={"code": "DLI-803", "message": "viewer may not pause", "hint": "ask", "problems": []})
    ]
    api = server.transport()
    with pytest.raises(ParameterError) as info:
        api.request("POST", "/workflows/x/runs", prefix="/dli/api/v1", json={})
    assert info.value.message == body["message"] and info.value.problems[0].line == 3
    with pytest.raises(WorkflowPermissionError, match="viewer may not pause"):
        api.request("POST", "/workflows/x/pause", prefix="/dli/api/v1")


def test_the_client_lists_through_the_control_plane_page_by_page_when_airflow_has_it(server):
    from dli_airflow.client import WorkflowClient

    workflows = [{"dataset_name": f"w{i:04d}", "source_type": "code", "status": "active"} for i in range(2500)]

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/dli/api/v1/health":
            return httpx.Response(200, json={"status": "ok", "version": "x"})
        if request.url.path == "/dli/api/v1/workflows":
            server.requests.append(request)
            offset, limit = int(request.url.params["offset"]), int(request.url.params["limit"])
            return httpx.Response(200, json={"workflows": workflows[offset:offset + limit], "total_entries": 2500})
        return server.handler(request)

    client = WorkflowClient(URL, username="ana", password=PASSWORD, transport=httpx.MockTransport(handler))
    listed = client.list_workflows(source_type="code")  # no limit: every page
    assert [w.dataset_name for w in listed.workflows] == [w["dataset_name"] for w in workflows]
    assert listed.total_count == 2500
    pages = [(r.url.params["offset"], r.url.params["limit"], r.url.params["source"]) for r in server.requests
             if r.url.path == "/dli/api/v1/workflows"]
    assert pages == [("0", "1000", "code"), ("1000", "1000", "code"), ("2000", "1000", "code")]
    assert len(client.list_workflows(limit=3).workflows) == 3


def test_a_list_asks_the_control_plane_directly_and_falls_back_on_airflows_own_404(server):
    """No ``/health`` round trip before a list: the first page is the probe. Airflow's own 404 (no plugin)
    means the REST API alone; a 404 carrying a DLI error is that error, not a missing plane."""
    from dli_airflow.client import WorkflowClient

    seen: list[str] = []
    dags = [{"dag_id": "ds_a", "is_paused": False, "tags": [{"name": "dli"}, {"name": "dli:code"}],
             "timetable_summary": None, "next_dagrun_logical_date": None, "owners": ["o"], "is_stale": False}]

    def without_plane(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.path)
        if request.url.path.startswith("/dli/"):
            return httpx.Response(404, json={"detail": "Not Found"})
        if request.url.path == "/api/v2/dags":
            return httpx.Response(200, json={"dags": dags, "total_entries": 1})
        return httpx.Response(200, json={"dag_runs": [], "total_entries": 0})

    client = WorkflowClient(URL, token="t", transport=httpx.MockTransport(without_plane))
    listed = client.list_workflows()
    assert [w.dataset_name for w in listed.workflows] == ["ds_a"]
    assert seen[0] == "/dli/api/v1/workflows" and "/dli/api/v1/health" not in seen
    seen.clear()
    client.list_workflows()
    assert not any(p.startswith("/dli/") for p in seen)  # asked once per client

    def plane_error(request: httpx.Request) -> httpx.Response:
        return httpx.Response(404, json={"code": "DLI-800", "message": "no such thing", "hint": "h"})

    from dli_airflow.errors import WorkflowNotFoundError

    with pytest.raises(WorkflowNotFoundError, match="no such thing"):
        WorkflowClient(URL, token="t", transport=httpx.MockTransport(plane_error)).list_workflows()


@pytest.mark.parametrize(
    ("url", "verify", "env", "kind"),
    [
        ("http://airflow.test", True, {}, "empty-context"),
        ("HTTP://airflow.test", True, {}, "empty-context"),
        ("https://airflow.test", True, {}, True),
        ("http://airflow.test", False, {}, False),
        ("http://airflow.test", "/etc/ca.pem", {}, "/etc/ca.pem"),
        ("http://airflow.test", True, {"HTTP_PROXY": "https://proxy:3128"}, True),
        ("http://airflow.test", True, {"all_proxy": "http://proxy:3128"}, True),
    ],
)
def test_a_plain_http_client_loads_no_ca_and_still_refuses_unverified_tls(monkeypatch, url, verify, env, kind):
    import ssl

    for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    chosen = _api.tls_verify(url, verify)
    if kind != "empty-context":
        assert chosen == kind
        return
    assert isinstance(chosen, ssl.SSLContext)
    # verifying, with no CA: any TLS it were asked to make would be refused, never made unverified
    assert chosen.verify_mode == ssl.CERT_REQUIRED and chosen.check_hostname
    assert chosen.cert_store_stats()["x509_ca"] == 0


def test_dli_workflow_list_warns_of_broken_specs_the_control_plane_counts(server, monkeypatch):
    """The control plane counts the store's broken specs on every page; `dli workflow list` says so after
    the table (on stderr, so the table stays clean), and `--format json` carries the count."""
    import json as _json

    from typer.testing import CliRunner

    from dli_airflow.cli import app

    info = {"dataset_name": "team.ok", "source_type": "code", "status": "active"}

    def plane(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"workflows": [info], "total_entries": 1, "problems": 2})

    monkeypatch.setattr("dli_airflow.cli.workflow._transport",
                        lambda: _api.ApiTransport(URL, token="t", transport=httpx.MockTransport(plane)))
    runner = CliRunner()
    table = runner.invoke(app, ["workflow", "list"])
    assert table.exit_code == 0, table.output
    assert "team.ok" in table.stdout and "2 spec file(s) in the store are broken" in table.stderr
    assert "dli_spec_errors" in table.stderr and "broken" not in table.stdout
    as_json = runner.invoke(app, ["workflow", "list", "--format", "json"])
    assert _json.loads(as_json.stdout)["problems"] == 2


def test_dli_workflow_list_reads_the_plane_as_plain_json_and_falls_back_without_it(monkeypatch):
    """`dli workflow list` pages the control plane with the bare transport (the client's pydantic models
    are not imported on that path: it is the CLI's most used read); against an Airflow without the plugin
    it falls back to the client, which lists Airflow's dli DAGs. Both print the same shapes."""
    import json as _json
    import subprocess
    import sys

    from typer.testing import CliRunner

    from dli_airflow.cli import app
    from dli_airflow.client import WorkflowClient

    info = {"dataset_name": "team.ok", "source_type": "manual", "status": "overridden", "overridden_by": "code",
            "cron": "0 9 * * *", "timezone": "Asia/Seoul", "next_run": None, "in_airflow": False}
    pages: list[dict[str, str]] = []

    def plane(request: httpx.Request) -> httpx.Response:
        pages.append(dict(request.url.params))
        offset = int(request.url.params["offset"])
        return httpx.Response(200, json={"workflows": [{**info, "dataset_name": f"team.d{offset}"}],
                                         "total_entries": 2, "problems": 0})

    monkeypatch.setattr("dli_airflow.cli.workflow._transport",
                        lambda: _api.ApiTransport(URL, token="t", transport=httpx.MockTransport(plane)))
    runner = CliRunner()
    table = runner.invoke(app, ["workflow", "list", "--source", "manual", "-d", "team"])
    assert table.exit_code == 0, table.output
    assert "team.d0" in table.stdout and "team.d1" in table.stdout and "(overridden by code)" in table.stdout
    assert [p["offset"] for p in pages] == ["0", "1"] and pages[0]["source"] == "manual" and pages[0]["filter"] == "team"
    listed = _json.loads(runner.invoke(app, ["workflow", "list", "--format", "json", "-n", "1"]).stdout)
    assert listed["total_count"] == 2 and [w["dataset_name"] for w in listed["workflows"]] == ["team.d0"]

    dags = [{"dag_id": "ds_a", "is_paused": True, "tags": [{"name": "dli"}, {"name": "dli:code"}],
             "timetable_summary": None, "next_dagrun_logical_date": None, "owners": ["o"], "is_stale": False}]

    def without_plane(request: httpx.Request) -> httpx.Response:
        if request.url.path.startswith("/dli/"):
            return httpx.Response(404, json={"detail": "Not Found"})
        if request.url.path == "/api/v2/dags":
            return httpx.Response(200, json={"dags": dags, "total_entries": 1})
        return httpx.Response(200, json={"dag_runs": [], "total_entries": 0})

    monkeypatch.setattr("dli_airflow.cli.workflow._transport",
                        lambda: _api.ApiTransport(URL, token="t", transport=httpx.MockTransport(without_plane)))
    monkeypatch.setattr("dli_airflow.cli.workflow._client",
                        lambda: WorkflowClient(URL, token="t", transport=httpx.MockTransport(without_plane)))
    fallback = _json.loads(runner.invoke(app, ["workflow", "list", "--format", "json"]).stdout)
    assert [(w["dataset_name"], w["status"]) for w in fallback["workflows"]] == [("ds_a", "paused")]

    # the plane's path imports no pydantic (a fresh interpreter: this one has it already)
    probe = ("import sys; from dli_airflow.cli import workflow as w; import dli_airflow._api; "
             "print(sorted(m for m in ('pydantic', 'dli_airflow.client', 'dli_airflow.workflow') if m in sys.modules))")
    shown = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert shown.stdout.strip() == "[]", shown.stdout


@pytest.mark.parametrize("made", [True, False])
def test_a_stop_whose_answer_timed_out_is_looked_at_before_it_is_sent_again(server, made):
    """A fault that cannot be caused on demand: the control plane's stop answers too late (SQLite's write lock
    held it past the client's timeout). The client reads the run: stopped meanwhile → done, one stop sent;
    still running → one more stop. Never a second stop of a stopped run, never a stop reported that was not made."""
    from dli_airflow.client import WorkflowClient

    stops: list[str] = []
    state = {"value": "running", "note": None}

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/dli/api/v1/health":
            return httpx.Response(200, json={"status": "ok", "version": "x"})
        if request.url.path == "/dli/api/v1/workflows/d/runs/r1/stop":
            stops.append(request.method)
            if len(stops) == 1:
                if made:
                    state.update(value="failed", note="dli: stopped by ana through dli")
                raise httpx.ReadTimeout("timed out", request=request)
            state.update(value="failed", note="dli: stopped by ana through dli")
            return httpx.Response(200, json={"dataset_name": "d", "action": "stop", "run_id": "r1"})
        if request.url.path == "/api/v2/dags/d/dagRuns/r1":
            return httpx.Response(200, json={"dag_run_id": "r1", "dag_id": "d", "state": state["value"],
                                             "note": state["note"], "run_type": "manual"})
        if request.url.path == "/api/v2/dags/d/dagRuns/r1/taskInstances":
            return httpx.Response(200, json={"task_instances": []})
        return server.handler(request)

    client = WorkflowClient(URL, username="ana", password=PASSWORD, transport=httpx.MockTransport(handler))
    stopped = client.stop("r1", dataset="d")
    assert stopped.status.value == "KILLED"
    assert len(stops) == (1 if made else 2)
