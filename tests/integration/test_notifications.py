"""Notifications through the real providers (Slack webhook, Slack Web API, SMTP) and a real HTTP POST,
against receivers on 127.0.0.1; connections come from ``AIRFLOW_CONN_*`` variables."""

from __future__ import annotations

import json
import logging

import pytest
from s3_support import HookReceiver, SmtpReceiver, hook_receiver, smtp_receiver  # noqa: F401  (fixtures)

pytestmark = pytest.mark.integration


from dli_airflow.notifiers import DatasetNotifier, Message, send  # noqa: E402
from dli_airflow.spec import NotificationSpec  # noqa: E402

MESSAGE = Message("source_change", "sales.orders", "dli: dataset sales.orders added", {"transition": "added"})


def _set_conn(monkeypatch: pytest.MonkeyPatch, conn_id: str, conn: dict) -> str:
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn))
    return conn_id


def test_webhook_reaches_the_receiver(hook_receiver: HookReceiver, monkeypatch):
    # the URI form of an HTTP connection: the path ends up in `schema`, and is still the path
    monkeypatch.setenv("AIRFLOW_CONN_OPS_HOOK", f"http://127.0.0.1:{hook_receiver.port}/hooks%2Fdli")
    assert send(NotificationSpec(type="webhook", conn_id="ops_hook"), MESSAGE) is True
    (got,) = hook_receiver.on("/hooks/dli")
    assert got.json()["dataset"] == "sales.orders" and got.json()["transition"] == "added"


def test_slack_webhook_connection_uses_the_webhook_notifier(hook_receiver: HookReceiver, monkeypatch):
    conn = _set_conn(monkeypatch, "alerts_webhook",
                     {"conn_type": "slackwebhook", "password": f"{hook_receiver.url}/services/T0/B0/X"})
    assert send(NotificationSpec(type="slack", conn_id=conn), MESSAGE) is True
    (got,) = hook_receiver.on("/services/T0/B0/X")
    assert got.json()["text"].endswith("dli: dataset sales.orders added")


def test_slack_api_connection_posts_to_the_channel(hook_receiver: HookReceiver, monkeypatch):
    conn = _set_conn(monkeypatch, "slack_api_default",
                     {"conn_type": "slack", "password": "xoxb-test-token",
                      "extra": {"base_url": f"{hook_receiver.url}/api/"}})
    assert send(NotificationSpec(type="slack", channel="#data-alerts"), MESSAGE) is True  # the default connection
    (got,) = hook_receiver.on("/api/chat.postMessage")
    body = got.json()
    assert body["channel"] == "#data-alerts" and "sales.orders added" in body["text"]
    assert got.headers["authorization"] == "Bearer xoxb-test-token"
    assert conn == "slack_api_default"


def test_email_goes_through_the_smtp_connection(smtp_receiver: SmtpReceiver, monkeypatch):
    _set_conn(monkeypatch, "smtp_default",
              {"conn_type": "smtp", "host": "127.0.0.1", "port": smtp_receiver.port,
               "extra": {"disable_ssl": True, "disable_tls": True, "from_email": "dli@example.com"}})
    assert send(NotificationSpec(type="email", to=["team@example.com"]), MESSAGE) is True
    (mail,) = smtp_receiver.messages
    assert mail["to"] == ["team@example.com"] and mail["from"] == "dli@example.com"
    assert "sales.orders added" in mail["data"]


def test_a_failing_receiver_never_fails_the_task(hook_receiver: HookReceiver, monkeypatch, caplog):
    hook_receiver.status = 500
    conn = _set_conn(monkeypatch, "alerts_webhook",
                     {"conn_type": "slackwebhook", "password": f"{hook_receiver.url}/services/T0/B0/X"})
    notifier = DatasetNotifier(dataset="sales.orders", event="failure",
                               target=NotificationSpec(type="slack", conn_id=conn))
    with caplog.at_level(logging.ERROR, logger="dli_airflow.notifiers"):
        notifier({"ti": None, "exception": RuntimeError("boom")})
    assert len(hook_receiver.on("/services/T0/B0/X")) >= 1
    assert "failure notification of dataset sales.orders" in caplog.text
