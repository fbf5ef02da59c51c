"""Notifications: the messages, where a webhook goes, isolation of failures, wiring into the DAG.

HTTP goes through an injected ``httpx.MockTransport``; connections are ``AIRFLOW_CONN_*`` variables.
The real Slack and SMTP providers against local receivers are in tests/integration/test_notifications.py.
"""

from __future__ import annotations

import json
import logging
from types import SimpleNamespace

import httpx
import pytest

from dli_airflow.catalog import SpecEntry  # noqa: E402
from dli_airflow.notifiers import (  # noqa: E402
    DatasetNotifier,
    Message,
    run_message,
    send,
    task_callbacks,
    webhook_url,
)
from dli_airflow.spec import DatasetStatus, NotificationSpec, SourceType, load_spec  # noqa: E402

SPEC = """
name: sales.orders
owner: a@example.com
query: SELECT 1
schedule:
  cron: "0 9 * * *"
  notifications:
    on_failure:
      - {type: webhook, conn_id: ops_hook}
      - {type: slack, channel: "#data-alerts"}
    on_success:
      - {type: email, to: [team@example.com]}
    on_source_change:
      - {type: webhook, conn_id: ops_hook}
"""


def _conn(**fields) -> SimpleNamespace:
    base = {"conn_id": "c", "conn_type": "http", "host": None, "schema": None, "port": None, "login": None,
            "password": None, "extra_dejson": {}}
    base.update(fields)
    return SimpleNamespace(**base)


@pytest.mark.parametrize(
    ("conn", "url"),
    [
        (_conn(host="https://hooks.example.com/services/x"), "https://hooks.example.com/services/x"),
        (_conn(host="hooks.example.com", schema="https"), "https://hooks.example.com"),
        (_conn(host="127.0.0.1", port=9000, schema="http"), "http://127.0.0.1:9000"),
        # what the URI http://127.0.0.1:9000/hooks/dli becomes: the path lands in `schema`
        (_conn(host="127.0.0.1", port=9000, schema="hooks/dli"), "http://127.0.0.1:9000/hooks/dli"),
        (_conn(host="127.0.0.1", port=9000, extra_dejson={"endpoint": "/in"}), "http://127.0.0.1:9000/in"),
        (_conn(host="http://127.0.0.1/base", port=81, extra_dejson={"endpoint": "x"}), "http://127.0.0.1:81/base/x"),
    ],
)
def test_webhook_url_reads_the_connection_like_httphook(conn, url):
    assert webhook_url(conn) == url


def test_webhook_url_needs_a_host():
    with pytest.raises(ValueError, match="no host"):
        webhook_url(_conn(host=""))


def _recording_client(status: int = 200) -> tuple[httpx.Client, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(status, text="ok")

    return httpx.Client(transport=httpx.MockTransport(handler)), seen


@pytest.fixture
def ops_hook(monkeypatch) -> str:
    monkeypatch.setenv(
        "AIRFLOW_CONN_OPS_HOOK",
        json.dumps({"conn_type": "http", "host": "https://hooks.example.com/dli", "login": "bot",
                    "password": "s3cret-token", "extra": {"headers": {"X-Team": "data"}}}),
    )
    return "ops_hook"


def test_webhook_posts_the_json_message(ops_hook):
    client, seen = _recording_client()
    message = Message("source_change", "sales.orders", "dli: dataset sales.orders added", {"transition": "added"})
    assert send(NotificationSpec(type="webhook", conn_id=ops_hook), message, http=client) is True
    (request,) = seen
    assert request.method == "POST" and str(request.url) == "https://hooks.example.com/dli"
    assert request.headers["content-type"] == "application/json" and request.headers["x-team"] == "data"
    assert request.headers["authorization"].startswith("Basic ")
    assert json.loads(request.content) == {
        "source": "dli", "event": "source_change", "dataset": "sales.orders",
        "text": "dli: dataset sales.orders added", "transition": "added",
    }


@pytest.mark.parametrize("failure", ["http-500", "unreachable", "missing-connection"])
def test_a_failing_notification_is_logged_never_raised(ops_hook, caplog, failure):
    if failure == "http-500":
        client, _ = _recording_client(500)
    else:
        def refuse(request: httpx.Request) -> httpx.Response:
            raise httpx.ConnectError("connection refused", request=request)

        client = httpx.Client(transport=httpx.MockTransport(refuse))
    target = NotificationSpec(type="webhook", conn_id="nope" if failure == "missing-connection" else ops_hook)
    with caplog.at_level(logging.ERROR, logger="dli_airflow.notifiers"):
        assert send(target, Message("failure", "sales.orders", "failed"), http=client) is False
    (record,) = [r for r in caplog.records if r.name == "dli_airflow.notifiers"]
    assert "sales.orders" in record.getMessage() and "webhook" in record.getMessage()
    assert "s3cret-token" not in caplog.text


def test_slack_without_the_provider_connection_fails_softly(monkeypatch, caplog):
    monkeypatch.delenv("AIRFLOW_CONN_SLACK_API_DEFAULT", raising=False)
    with caplog.at_level(logging.ERROR, logger="dli_airflow.notifiers"):
        assert send(NotificationSpec(type="slack", channel="#x"), Message("success", "d", "ok")) is False
    assert "slack (#x)" in caplog.text


def _context(error: BaseException | None = None) -> dict:
    ti = SimpleNamespace(run_id="scheduled__2024-01-15T09:00:00+00:00", try_number=2, log_url="http://af/log")
    return {"ti": ti, "dag_run": SimpleNamespace(run_id=ti.run_id), "exception": error}


def test_run_messages_say_what_happened():
    failed = run_message("failure", "sales.orders", _context(RuntimeError("table x not found")))
    assert failed.text.startswith("dli dataset sales.orders failed (run scheduled__2024-01-15T09:00:00+00:00, try 2)")
    assert "RuntimeError: table x not found" in failed.text and failed.details["log_url"] == "http://af/log"
    ok = run_message("success", "sales.orders", _context())
    assert "succeeded" in ok.text and ok.payload()["event"] == "success"
    assert failed.slack_text.startswith(":red_circle:")


def test_dataset_notifier_never_fails_the_task(monkeypatch, caplog):
    # a webhook nobody listens on (port 9 on loopback refuses at once)
    monkeypatch.setenv("AIRFLOW_CONN_DEAD_HOOK", json.dumps({"conn_type": "http", "host": "http://127.0.0.1:9/x"}))
    notifier = DatasetNotifier(dataset="sales.orders", event="failure",
                               target=NotificationSpec(type="webhook", conn_id="dead_hook"))
    with caplog.at_level(logging.ERROR, logger="dli_airflow.notifiers"):
        notifier(_context(ValueError("boom")))  # as Airflow calls it: render (nothing to render), then notify()
        notifier({"ti": object()})  # a context without the usual keys: still no exception
    assert len([r for r in caplog.records if "failure notification of dataset sales.orders" in r.getMessage()]) == 2


def test_task_callbacks_follow_the_spec():
    spec = load_spec(SPEC, "code/orders.yaml")
    callbacks = task_callbacks(spec)
    assert set(callbacks) == {"on_failure_callback", "on_success_callback"}
    assert [(n.event, n.target.type) for n in callbacks["on_failure_callback"]] == [
        ("failure", "webhook"), ("failure", "slack")
    ]
    assert [(n.event, n.target.to) for n in callbacks["on_success_callback"]] == [("success", ["team@example.com"])]
    plain = load_spec("name: a\nowner: b\nquery: SELECT 1\nschedule: {cron: '0 9 * * *'}\n", "code/a.yaml")
    assert task_callbacks(plain) == {}


def test_build_dag_wires_the_callbacks_and_survives_serialization(tmp_path, monkeypatch):
    from airflow.serialization.serialized_objects import DagSerialization

    from dli_airflow.factory import build_dag

    spec = load_spec(SPEC, "code/orders.yaml")
    entry = SpecEntry(spec=spec, source=SourceType.CODE, status=DatasetStatus.ACTIVE, path="code/orders.yaml",
                      sql="SELECT 1")
    task = build_dag(entry).get_task("run")
    assert [type(c).__name__ for c in task.on_failure_callback] == ["DatasetNotifier", "DatasetNotifier"]
    assert len(task.on_success_callback) == 1
    back = DagSerialization.from_dict(DagSerialization.to_dict(build_dag(entry)))
    assert back.task_dict["run"].has_on_failure_callback and back.task_dict["run"].has_on_success_callback
