"""``dli_sync``: transitions between syncs, the two-sync confirmation, paused state and notifications.

Stores are local folders; the API client and the notification sender are injected fakes.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from dli_airflow.catalog import scan
from dli_airflow.store import LocalStore
from dli_airflow.sync import SYNC_DAG_ID, act, build_sync_dag, plan

HOOK = "{type: webhook, conn_id: ops_hook}"


def spec(name: str, *, enabled: bool = True, notify: str | None = HOOK) -> str:
    notifications = f"\n  notifications:\n    on_source_change: [{notify}]" if notify else ""
    return textwrap.dedent(f"""\
        name: {name}
        owner: a@example.com
        query: SELECT 1
        schedule:
          enabled: {str(enabled).lower()}
          cron: "0 9 * * *\"""") + notifications + "\n"


class FakeApi:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    def __enter__(self) -> FakeApi:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def pause(self, name: str) -> None:
        self.calls.append(("pause", name))

    def unpause(self, name: str) -> None:
        self.calls.append(("unpause", name))


class Harness:
    """A local store, the recorded state, and what the syncs did."""

    def __init__(self, root: Path) -> None:
        self.root = root
        for prefix in ("code", "manual"):
            (root / prefix).mkdir(parents=True, exist_ok=True)
        self.state: dict | None = None
        self.api = FakeApi()
        self.sent: list[tuple[str, str, str]] = []  # (dataset, transition, target conn)

    def write(self, path: str, text: str) -> None:
        (self.root / path).parent.mkdir(parents=True, exist_ok=True)
        (self.root / path).write_text(text)

    def remove(self, path: str) -> None:
        (self.root / path).unlink()

    def _send(self, target, message) -> bool:
        self.sent.append((message.dataset, message.details["transition"], target.conn_id or target.type))
        return True

    def sync(self) -> dict:
        result = plan(scan(LocalStore(self.root)), self.state)
        self.state = result.state
        return act(result, client_factory=lambda: self.api, sender=self._send)

    def kinds(self, report: dict) -> list[tuple[str, str]]:
        return [(t["dataset"], t["kind"]) for t in report["transitions"]]


@pytest.fixture
def h(tmp_path: Path) -> Harness:
    harness = Harness(tmp_path / "store")
    harness.write("manual/orders.yaml", spec("sales.orders"))
    harness.write("code/returns.yaml", spec("sales.returns"))
    return harness


def test_first_sync_is_a_baseline(h):
    report = h.sync()
    assert report["baseline"] is True and report["transitions"] == [] and report["datasets"] == 2
    assert h.sync()["transitions"] == [] and h.sent == []


def test_code_over_manual_then_removed_restores_it(h):
    h.sync()
    h.write("code/orders.yaml", spec("sales.orders", notify="{type: slack, channel: '#code'}"))
    first = h.sync()
    assert first["transitions"] == [] and first["pending"] == ["sales.orders"]
    second = h.sync()
    (transition,) = second["transitions"]
    assert (transition["dataset"], transition["kind"]) == ("sales.orders", "overridden")
    assert transition["source"] == "code" and transition["previous_source"] == "manual"
    assert "overrides the manual one" in transition["message"]
    # the targets of both specs hear about it, once each
    assert sorted(h.sent) == [("sales.orders", "overridden", "ops_hook"), ("sales.orders", "overridden", "slack")]
    assert transition["notified"] == 2
    assert h.sync()["transitions"] == []

    h.sent.clear()
    h.remove("code/orders.yaml")
    assert h.sync()["transitions"] == []
    assert h.kinds(h.sync()) == [("sales.orders", "restored")]
    assert len(h.sent) == 2


def test_a_code_spec_missing_for_one_sync_flips_nothing(h):
    h.write("code/orders.yaml", spec("sales.orders"))
    h.sync()
    h.remove("code/orders.yaml")  # CI deletes, then uploads again
    assert h.sync()["pending"] == ["sales.orders"]
    h.write("code/orders.yaml", spec("sales.orders"))
    report = h.sync()
    assert report["transitions"] == [] and report["pending"] == []
    assert h.sync()["transitions"] == [] and h.sent == []


def test_added_removed_paused_unpaused(h):
    h.sync()
    h.write("manual/new.yaml", spec("reports.new"))
    h.sync()
    assert h.kinds(h.sync()) == [("reports.new", "added")]

    h.write("code/returns.yaml", spec("sales.returns", enabled=False))
    h.sync()
    report = h.sync()
    assert h.kinds(report) == [("sales.returns", "paused")] and report["transitions"][0]["applied"] is True
    h.write("code/returns.yaml", spec("sales.returns", enabled=True))
    h.sync()
    h.sync()
    assert h.api.calls == [("pause", "sales.returns"), ("unpause", "sales.returns")]

    h.remove("manual/new.yaml")
    h.sync()
    removed = h.sync()
    assert h.kinds(removed) == [("reports.new", "removed")]
    # a removed dataset is notified through the targets it had
    assert ("reports.new", "removed", "ops_hook") in h.sent
    assert [s[:2] for s in h.sent] == [
        ("reports.new", "added"), ("sales.returns", "paused"), ("sales.returns", "unpaused"), ("reports.new", "removed")
    ]


def test_override_by_a_disabled_code_spec_is_two_transitions(h):
    h.sync()
    h.write("code/orders.yaml", spec("sales.orders", enabled=False))
    h.sync()
    assert h.kinds(h.sync()) == [("sales.orders", "overridden"), ("sales.orders", "paused")]
    assert h.api.calls == [("pause", "sales.orders")]


def test_a_broken_code_spec_holds_the_recorded_state(h):
    h.write("code/orders.yaml", spec("sales.orders"))
    h.sync()
    h.write("code/orders.yaml", "name: sales.orders\nowner: a\nquery: SELECT 1\nschedule: {cron: '0 9 * *'}\n")
    for _ in range(3):
        report = h.sync()
        assert report["transitions"] == [] and report["held"] == ["sales.orders"]


def test_no_notification_targets_means_no_message(h):
    h.sync()
    h.write("manual/quiet.yaml", spec("reports.quiet", notify=None))
    h.sync()
    report = h.sync()
    assert h.kinds(report) == [("reports.quiet", "added")] and report["transitions"][0]["notified"] == 0
    assert h.sent == []


def test_without_api_credentials_the_pause_is_recorded_unapplied(h, caplog):
    h.sync()
    h.write("code/returns.yaml", spec("sales.returns", enabled=False))
    h.sync()
    result = plan(scan(LocalStore(h.root)), h.state)
    report = act(result, client_factory=lambda: None, sender=lambda t, m: True)
    assert report["transitions"][0]["applied"] is False
    assert "dli_airflow_api" in caplog.text


def test_api_client_comes_from_the_dli_airflow_api_connection(dli_isolated, monkeypatch):
    import json

    from dli_airflow.sync import api_client

    for key in ("DLI_AIRFLOW_URL", "DLI_AIRFLOW_TOKEN", "AIRFLOW_CONN_DLI_AIRFLOW_API"):
        monkeypatch.delenv(key, raising=False)
    assert api_client() is None  # nothing configured: pauses are recorded as not applied
    # what `dli dev up` sets: an http connection whose host is the URL
    monkeypatch.setenv("AIRFLOW_CONN_DLI_AIRFLOW_API", json.dumps(
        {"conn_type": "http", "host": "http://127.0.0.1:28080", "login": "admin", "password": "pw"}))
    client = api_client()
    assert client is not None and client.url == "http://127.0.0.1:28080"


def test_the_sync_dag(monkeypatch):
    monkeypatch.setenv("AIRFLOW__DLI__SYNC_INTERVAL", "120")
    dag = build_sync_dag()
    assert dag.dag_id == SYNC_DAG_ID == "dli_sync"
    assert dag.tags == {"dli:maintenance"} and "dli" not in dag.tags
    assert dag.timetable.delta.total_seconds() == 120
    assert dag.is_paused_upon_creation is False and dag.max_active_runs == 1 and dag.catchup is False
    assert list(dag.task_dict) == ["sync"]


def test_the_factory_emits_dli_sync_for_the_configured_store_only(tmp_path, monkeypatch):
    from dli_airflow.factory import build_dags

    store = tmp_path / "store"
    (store / "code").mkdir(parents=True)
    (store / "code" / "a.yaml").write_text(spec("a.b", notify=None))
    monkeypatch.setenv("AIRFLOW__DLI__SPEC_STORE", str(store))
    monkeypatch.setenv("AIRFLOW__DLI__CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("_AIRFLOW_PARSING_CONTEXT_DAG_ID", raising=False)
    assert set(build_dags()) == {"a.b", SYNC_DAG_ID}
    assert set(build_dags(str(store))) == {"a.b"}
    monkeypatch.setenv("_AIRFLOW_PARSING_CONTEXT_DAG_ID", SYNC_DAG_ID)  # a worker running dli_sync
    assert list(build_dags()) == [SYNC_DAG_ID]
