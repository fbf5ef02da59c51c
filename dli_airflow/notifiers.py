"""Notifications of a Dataset Spec (``schedule.notifications``) as Airflow notifiers.

One :class:`NotificationSpec` is one target:

- ``type: slack`` goes through the Slack provider (``dli-airflow[slack]``): ``SlackNotifier`` when the
  connection is a Slack API one (``conn_type: slack``, a bot token; ``channel`` says where), or
  ``SlackWebhookNotifier`` when it is an incoming webhook (``conn_type: slackwebhook``; the webhook's own
  channel). Without ``conn_id``: ``slack_api_default`` when a ``channel`` is given, else ``slack_default``.
- ``type: webhook`` POSTs a JSON body to the URL of an Airflow HTTP connection (``conn_id``).
- ``type: email`` sends through the SMTP provider and its connection (``conn_id``, default ``smtp_default``).

``on_failure`` and ``on_success`` become the dataset task's callbacks (:func:`task_callbacks`); the
``dli_sync`` DAG sends ``on_source_change`` with :func:`send`. A notification that fails is logged and
never fails the task that sent it: :func:`send` does not raise.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit, urlunsplit

from airflow.sdk import BaseNotifier

if TYPE_CHECKING:
    import httpx

    from dli_airflow.spec import DatasetSpec, NotificationSpec

log = logging.getLogger(__name__)

Event = Literal["failure", "success", "source_change"]

#: Default connections when a spec names none.
SLACK_API_DEFAULT = "slack_api_default"
SLACK_WEBHOOK_DEFAULT = "slack_default"
SMTP_DEFAULT = "smtp_default"
#: Seconds a webhook or Slack call may take: a notification never holds a worker for long.
TIMEOUT_SECONDS = 10

_EMOJI = {"failure": ":red_circle:", "success": ":large_green_circle:", "source_change": ":arrows_counterclockwise:"}


@dataclass(frozen=True)
class Message:
    """One notification: a line for people (Slack text, e-mail subject) and fields for machines."""

    event: Event
    dataset: str
    text: str
    details: Mapping[str, Any] = field(default_factory=dict)

    def payload(self) -> dict[str, Any]:
        """The JSON body of a webhook."""
        return {"source": "dli", "event": self.event, "dataset": self.dataset, "text": self.text, **self.details}

    @property
    def slack_text(self) -> str:
        return f"{_EMOJI.get(self.event, '')} {self.text}".strip()


def run_message(event: Event, dataset: str, context: Mapping[str, Any]) -> Message:
    """The message about one run of a dataset's task, from the Airflow context of a task callback."""
    ti = context.get("ti") or context.get("task_instance")
    dag_run = context.get("dag_run")
    run_id = getattr(dag_run, "run_id", None) or getattr(ti, "run_id", None) or context.get("run_id")
    try_number = getattr(ti, "try_number", None)
    log_url = None
    try:
        log_url = getattr(ti, "log_url", None)
    except Exception:  # the URL needs [api] base_url; a message without it is still a message
        log_url = None
    details: dict[str, Any] = {"run_id": run_id, "try_number": try_number, "log_url": log_url}
    if event == "failure":
        error = context.get("exception")
        if isinstance(error, BaseException):
            reason = f"{type(error).__name__}: {error}"
        else:
            reason = str(error) if error else ""
        details["error"] = reason[:2000] or None
        text = f"dli dataset {dataset} failed (run {run_id}, try {try_number})"
        if reason:
            text += f": {reason[:300]}"
    else:
        text = f"dli dataset {dataset} succeeded (run {run_id})"
    if log_url:
        text += f" — log: {log_url}"
    return Message(event=event, dataset=dataset, text=text, details=details)


# --------------------------------------------------------------------------- senders


def _connection(conn_id: str) -> Any:
    from airflow.sdk import BaseHook

    return BaseHook.get_connection(conn_id)


def webhook_url(conn: Any) -> str:
    """The URL of an HTTP connection, read the way the http provider's ``HttpHook`` reads it.

    ``host`` may be a whole URL (``https://hooks.example.com/x``); else ``schema`` is the scheme (http or
    https), ``host`` and ``port`` the server. A ``schema`` that is not a scheme is the path (what a
    connection URI such as ``http://127.0.0.1:9000/hooks`` turns into). An ``endpoint`` in the extra is
    appended.
    """
    host = (conn.host or "").strip()
    schema = (conn.schema or "").strip()
    if not host:
        raise ValueError(f"the connection {conn.conn_id!r} has no host (the webhook URL)")
    if "://" in host:
        parts = urlsplit(host)
    else:
        scheme = schema if schema in ("http", "https") else ("https" if conn.conn_type == "https" else "http")
        path = "" if schema in ("", "http", "https") else "/" + schema.lstrip("/")
        parts = urlsplit(f"{scheme}://{host}{path}")
    netloc = parts.netloc
    if conn.port and parts.port is None:
        netloc = f"{netloc}:{conn.port}"
    endpoint = (conn.extra_dejson.get("endpoint") or "").strip()
    path = parts.path
    if endpoint:
        path = path.rstrip("/") + "/" + endpoint.lstrip("/")
    return urlunsplit((parts.scheme, netloc, path, parts.query, ""))


def _send_webhook(target: NotificationSpec, message: Message, *, http: httpx.Client | None = None) -> None:
    import httpx

    conn = _connection(target.conn_id or "")
    headers = {"Content-Type": "application/json", "User-Agent": "dli-airflow"}
    extra_headers = conn.extra_dejson.get("headers")
    if isinstance(extra_headers, dict):
        headers.update({str(k): str(v) for k, v in extra_headers.items()})
    auth = (conn.login, conn.password or "") if conn.login else None
    url = webhook_url(conn)
    client = http or httpx.Client(timeout=TIMEOUT_SECONDS, follow_redirects=False)
    try:
        response = client.post(url, json=message.payload(), headers=headers, auth=auth)
    finally:
        if http is None:
            client.close()
    if response.status_code >= 300:
        raise RuntimeError(f"the webhook answered HTTP {response.status_code}")


def _send_slack(target: NotificationSpec, message: Message) -> None:
    conn_id = target.conn_id or (SLACK_API_DEFAULT if target.channel else SLACK_WEBHOOK_DEFAULT)
    conn_type = (_connection(conn_id).conn_type or "").lower()
    try:
        if conn_type == "slack":
            from airflow.providers.slack.notifications.slack import SlackNotifier
        else:
            from airflow.providers.slack.notifications.slack_webhook import SlackWebhookNotifier
    except ImportError as exc:
        raise RuntimeError("the Slack provider is not installed: pip install 'dli-airflow[slack]'") from exc
    if conn_type == "slack":
        if not target.channel:
            raise ValueError(f"the Slack API connection {conn_id!r} needs a channel in the spec (e.g. '#data-alerts')")
        SlackNotifier(
            slack_conn_id=conn_id, channel=target.channel, text=message.slack_text, timeout=TIMEOUT_SECONDS
        ).notify({})
    else:
        SlackWebhookNotifier(
            slack_webhook_conn_id=conn_id, text=message.slack_text, timeout=TIMEOUT_SECONDS
        ).notify({})


def _send_email(target: NotificationSpec, message: Message) -> None:
    try:
        from airflow.providers.smtp.notifications.smtp import SmtpNotifier
    except ImportError as exc:
        raise RuntimeError("the SMTP provider is not installed: pip install apache-airflow-providers-smtp") from exc
    from html import escape

    rows = "".join(
        f"<tr><th align='left'>{escape(str(k))}</th><td>{escape(str(v))}</td></tr>"
        for k, v in message.payload().items()
        if v is not None and k != "text"
    )
    SmtpNotifier(
        to=list(target.to or []),
        subject=message.text[:200],
        html_content=f"<p>{escape(message.text)}</p><table>{rows}</table>",
        smtp_conn_id=target.conn_id or SMTP_DEFAULT,
    ).notify({})


_SENDERS: dict[str, Callable[..., None]] = {"slack": _send_slack, "webhook": _send_webhook, "email": _send_email}


def describe(target: NotificationSpec) -> str:
    """A target as logs show it: type and where (never a secret: connection ids only)."""
    where = target.channel or target.conn_id or ", ".join(target.to or []) or "default connection"
    return f"{target.type} ({where})"


def send(target: NotificationSpec, message: Message, *, http: httpx.Client | None = None) -> bool:
    """Send one message to one target. Never raises: a failure is logged and returns False.

    :param http: the httpx client for webhooks (tests inject a ``MockTransport`` one)
    """
    try:
        if target.type == "webhook":
            _send_webhook(target, message, http=http)
        else:
            _SENDERS[target.type](target, message)
    except Exception as exc:  # isolation point: a notification never fails the task that sends it
        log.error(
            "dli: the %s notification of dataset %s to %s failed: %s: %s",
            message.event, message.dataset, describe(target), type(exc).__name__, exc,
        )
        return False
    log.info("dli: sent the %s notification of dataset %s to %s", message.event, message.dataset, describe(target))
    return True


class DatasetNotifier(BaseNotifier):
    """A task callback that tells one target how a dataset's run ended.

    :param dataset: the dataset name
    :param event: ``failure`` or ``success``
    :param target: where to send it
    """

    # the message is built from the context, never through Jinja (SQL and errors are full of braces)
    template_fields: Sequence[str] = ()

    def __init__(self, *, dataset: str, event: Event, target: NotificationSpec) -> None:
        super().__init__()
        self.dataset = dataset
        self.event = event
        self.target = target

    def notify(self, context: Any) -> None:
        try:
            message = run_message(self.event, self.dataset, context)
        except Exception as exc:  # isolation point: a bad context never fails the task
            log.error("dli: cannot build the %s notification of %s: %s", self.event, self.dataset, exc)
            return
        send(self.target, message)

    def __repr__(self) -> str:
        return f"DatasetNotifier({self.dataset!r}, {self.event!r}, {describe(self.target)!r})"


def task_callbacks(spec: DatasetSpec) -> dict[str, list[DatasetNotifier]]:
    """``on_failure_callback`` / ``on_success_callback`` for a dataset's task (only those it has)."""
    notifications = spec.schedule.notifications if spec.schedule else None
    if notifications is None:
        return {}
    callbacks: dict[str, list[DatasetNotifier]] = {}
    for event, targets, kwarg in (
        ("failure", notifications.on_failure, "on_failure_callback"),
        ("success", notifications.on_success, "on_success_callback"),
    ):
        if targets:
            callbacks[kwarg] = [DatasetNotifier(dataset=spec.name, event=event, target=t) for t in targets]
    return callbacks


__all__ = ["DatasetNotifier", "Message", "describe", "run_message", "send", "task_callbacks", "webhook_url"]
