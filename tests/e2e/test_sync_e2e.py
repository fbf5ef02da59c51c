"""``dli_sync`` and notifications on a real Airflow 3: each source transition, confirmed by two syncs,
in the run's XCom and task log, with exactly one notification per transition at a local receiver;
``schedule.enabled`` applied to the DAG's paused state; ``on_failure``/``on_success`` notifications.

The store is shared with the other end-to-end tests: only datasets named ``sync.*`` are added here, and
they are removed at the end. ``dli_sync`` is triggered through the REST API; its scheduled runs
(every ``[dli] sync_interval``) may interleave, so transitions are gathered from every run that
started after a change, and a scenario that a scheduled run disturbed is played again.
"""

from __future__ import annotations

import json
import sys
import time
from collections import Counter
from collections.abc import Collection, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))

from e2e_support import wait_until  # noqa: E402
from s3_support import HookReceiver  # noqa: E402

SYNC = "dli_sync"
HOOK_PATH = "/sync-hook"
SLACK_PATH = "/services/T0/B0/sync"
RUN_TIMEOUT = 240
PARSE_TIMEOUT = 180


def spec(name: str, *, enabled: bool = True, notify: str = "{type: webhook, conn_id: sync_hook}",
         on_failure: str = "", on_success: str = "", query: str = "SELECT 1 AS x") -> str:
    lines = [
        f"name: {name}",
        "owner: tests@example.com",
        f"query: {query}",
        "schedule:",
        f"  enabled: {str(enabled).lower()}",
        '  cron: "0 3 * * *"',
        "  retry: {max_attempts: 0}",
        "  notifications:",
        f"    on_source_change: [{notify}]",
    ]
    if on_failure:
        lines.append(f"    on_failure: [{on_failure}]")
    if on_success:
        lines.append(f"    on_success: [{on_success}]")
    return "\n".join(lines) + "\n"


def _ts(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None


class SyncDriver:
    """Triggers ``dli_sync`` runs and reads what they recorded."""

    def __init__(self, airflow: Any, store: Path) -> None:
        self.airflow = airflow
        self.store = store
        self.triggered = 0

    def api(self) -> httpx.Client:
        return self.airflow.api(timeout=60)

    def runs(self, since: datetime) -> list[dict[str, Any]]:
        """Every dli_sync run that started at or after ``since``, oldest first, finished or not."""
        with self.api() as api:
            response = _call(api, "GET", f"/dags/{SYNC}/dagRuns", params={"order_by": "-start_date", "limit": 50})
            response.raise_for_status()
            runs = response.json()["dag_runs"]
        fresh = [r for r in runs if (_ts(r.get("start_date")) or datetime.max.replace(tzinfo=timezone.utc)) >= since]
        return sorted(fresh, key=lambda r: _ts(r.get("start_date")) or datetime.max.replace(tzinfo=timezone.utc))

    def idle(self) -> None:
        """Wait until no dli_sync run is queued or running (changes are made between runs only)."""
        def no_active() -> bool:
            with self.api() as api:
                params = {"state": ["queued", "running"], "limit": 10}
                response = _call(api, "GET", f"/dags/{SYNC}/dagRuns", params=params)
                response.raise_for_status()
                return response.json()["total_entries"] == 0

        wait_until(no_active, RUN_TIMEOUT, what="dli_sync to be idle")

    def sync(self) -> dict[str, Any]:
        """Trigger one run, wait for it, return its XCom report."""
        self.triggered += 1
        run_id = f"e2e_sync_{int(time.time() * 1000)}_{self.triggered}"
        with self.api() as api:
            response = _call(api, "POST", f"/dags/{SYNC}/dagRuns", json={"logical_date": None, "dag_run_id": run_id})
            assert response.status_code == 200, response.text

            def finished() -> dict[str, Any] | None:
                run = _call(api, "GET", f"/dags/{SYNC}/dagRuns/{run_id}").json()
                return run if run.get("state") in ("success", "failed") else None

            run = wait_until(finished, RUN_TIMEOUT, what=f"the dli_sync run {run_id}")
            assert run["state"] == "success", self.log(run_id)
        self.idle()
        return self.report(run_id)

    def report(self, run_id: str) -> dict[str, Any]:
        with self.api() as api:
            response = _call(api, "GET", f"/dags/{SYNC}/dagRuns/{run_id}/taskInstances/sync/xcomEntries/return_value")
            response.raise_for_status()
        value = response.json()["value"]
        return json.loads(value) if isinstance(value, str) else value

    def log(self, run_id: str) -> str:
        with self.api() as api:
            response = _call(api, "GET", f"/dags/{SYNC}/dagRuns/{run_id}/taskInstances/sync/logs/1")
        if response.status_code != 200:
            return f"(no log: HTTP {response.status_code})"
        items = response.json().get("content") or []
        return "\n".join(i.get("event", "") if isinstance(i, dict) else str(i) for i in items)

    def transitions(self, since: datetime) -> list[tuple[str, str, str]]:
        """``(run_id, dataset, kind)`` of every ``sync.*`` transition recorded by runs started since ``since``."""
        found = []
        for run in self.runs(since):
            if run["state"] != "success":
                continue
            for t in self.report(run["dag_run_id"])["transitions"]:
                if t["dataset"].startswith("sync."):
                    found.append((run["dag_run_id"], t["dataset"], t["kind"]))
        return found

    def settle(self, since: datetime, expected: Counter[tuple[str, str]]) -> list[tuple[str, str, str]]:
        """Sync (at most 4 times) until the transitions since ``since`` are ``expected``; returns them."""
        for _ in range(4):
            self.sync()
            found = self.transitions(since)
            if Counter((d, k) for _, d, k in found) == expected:
                return found
        raise AssertionError(f"expected transitions {dict(expected)}, got {self.transitions(since)}")

    def dag(self, dag_id: str) -> dict[str, Any] | None:
        with self.api() as api:
            response = _call(api, "GET", f"/dags/{dag_id}")
        return response.json() if response.status_code == 200 else None

    def wait_dags(self, present: Collection[str] = (), absent: Collection[str] = ()) -> None:
        def ok() -> bool:
            with self.api() as api:
                response = _call(api, "GET", "/dags", params={"tags": "dli", "dag_id_pattern": "sync.", "limit": 100})
                response.raise_for_status()
                ids = {d["dag_id"] for d in response.json()["dags"]}
            return set(present) <= ids and not (set(absent) & ids)

        wait_until(ok, PARSE_TIMEOUT, what=f"Airflow to parse the store (present {present}, absent {absent})", interval=2)


def _call(api: httpx.Client, method: str, url: str, **kwargs: Any) -> httpx.Response:
    """A request that retries the api-server's transient 5xx (SQLite busy while a task writes)."""
    for _ in range(6):
        response = api.request(method, url, **kwargs)
        if response.status_code < 500:
            return response
        time.sleep(2)
    return response


def _put_connection(api: httpx.Client, body: dict[str, Any]) -> None:
    response = _call(api, "POST", "/connections", json=body)
    if response.status_code == 409:
        response = _call(api, "PATCH", f"/connections/{body['connection_id']}", json=body)
    assert response.status_code in (200, 201), response.text


@pytest.fixture
def receiver() -> Iterator[HookReceiver]:
    server = HookReceiver().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def connections(airflow: Any, receiver: HookReceiver) -> Iterator[None]:
    """The webhook, the Slack webhook and the REST API connection dli_sync pauses DAGs through."""
    ids = ["sync_hook", "sync_slack", "dli_airflow_api"]
    with airflow.api() as api:
        _put_connection(api, {"connection_id": "sync_hook", "conn_type": "http", "host": receiver.url + HOOK_PATH})
        _put_connection(api, {"connection_id": "sync_slack", "conn_type": "slackwebhook",
                              "password": receiver.url + SLACK_PATH})
        _put_connection(api, {"connection_id": "dli_airflow_api", "conn_type": "http", "host": airflow.url,
                              "login": airflow.username, "password": airflow.password})
    try:
        yield
    finally:
        # no other test's dataset gets paused by a later scheduled sync through these credentials
        with airflow.api() as api:
            for conn_id in ids:
                _call(api, "DELETE", f"/connections/{conn_id}")


def _messages(receiver: HookReceiver) -> Counter[tuple[str, str]]:
    seen: Counter[tuple[str, str]] = Counter()
    for item in receiver.on(HOOK_PATH):
        body = item.json()
        if body.get("event") == "source_change":
            seen[(body["dataset"], body["transition"])] += 1
    for item in receiver.on(SLACK_PATH):
        text = item.json()["text"]
        for kind in ("added", "removed", "overridden", "restored", "paused", "unpaused"):
            if text.split("dli: dataset ", 1)[-1].split(" ")[0].rstrip(":") == "sync.flags" and f" {kind}" in text:
                seen[("sync.flags", kind)] += 1
                break
    return seen


def test_source_transitions_end_to_end(airflow, e2e_store: Path, connections, receiver: HookReceiver):
    driver = SyncDriver(airflow, e2e_store)
    code_orders = e2e_store / "code" / "sync" / "orders.yaml"
    manual_orders = e2e_store / "manual" / "sync.orders.yaml"
    code_flags = e2e_store / "code" / "sync" / "flags.yaml"
    slack = "{type: slack, conn_id: sync_slack}"
    created = [code_orders, manual_orders, code_flags]
    try:
        driver.idle()
        driver.sync()  # a baseline if this is the first sync of the session

        # -- dataset added (one manual, one code spec): confirmed by the second sync after the change
        since = datetime.now(timezone.utc)
        manual_orders.write_text(spec("sync.orders"))
        code_flags.parent.mkdir(parents=True, exist_ok=True)
        code_flags.write_text(spec("sync.flags", notify=slack))
        driver.sync()
        first = driver.report(driver.runs(since)[0]["dag_run_id"])  # whoever ran first after the change
        assert {"sync.orders", "sync.flags"} <= set(first["pending"]), first
        assert not [t for t in first["transitions"] if t["dataset"].startswith("sync.")], first
        found = driver.settle(since, Counter({("sync.orders", "added"): 1, ("sync.flags", "added"): 1}))
        assert found[0][0] != driver.runs(since)[0]["dag_run_id"], "confirmed by the first sync after the change"
        driver.wait_dags(present={"sync.orders", "sync.flags"})
        expected = Counter({("sync.orders", "added"): 1, ("sync.flags", "added"): 1})
        assert _messages(receiver) == expected

        # -- a code spec over the manual one: manual → overridden; in the XCom and the task log
        since = datetime.now(timezone.utc)
        code_orders.write_text(spec("sync.orders"))
        (run_id, _, _), = driver.settle(since, Counter({("sync.orders", "overridden"): 1}))
        (transition,) = [t for t in driver.report(run_id)["transitions"] if t["dataset"] == "sync.orders"]
        assert transition["source"] == "code" and transition["previous_source"] == "manual"
        assert transition["notified"] == 1 and transition["path"] == "code/sync/orders.yaml"
        assert "now overrides the manual one" in driver.log(run_id)
        expected[("sync.orders", "overridden")] += 1
        assert _messages(receiver) == expected

        # -- a code spec gone for one sync only (a CI upload in progress) flips nothing
        for _attempt in range(3):
            since = datetime.now(timezone.utc)
            code_orders.unlink()
            gone = driver.sync()
            code_orders.write_text(spec("sync.orders"))
            back = driver.sync()
            if len(driver.runs(since)) == 2:
                assert driver.transitions(since) == []
                assert "sync.orders" in gone["pending"] and "sync.orders" not in back["pending"]
                break
            # a scheduled run also saw the gap (two syncs did: a real transition); get back and retry
            extra = Counter((d, k) for _, d, k in driver.transitions(since))
            if extra:
                extra += Counter((d, k) for _, d, k in driver.settle(
                    datetime.now(timezone.utc), Counter({("sync.orders", "overridden"): 1})))
            expected += extra
        else:
            pytest.fail("scheduled dli_sync runs disturbed the flicker scenario three times")
        assert _messages(receiver) == expected

        # -- the code spec removed for good: the manual one is restored
        since = datetime.now(timezone.utc)
        code_orders.unlink()
        driver.settle(since, Counter({("sync.orders", "restored"): 1}))
        expected[("sync.orders", "restored")] += 1
        assert _messages(receiver) == expected

        # -- schedule.enabled false / true at the source: the DAG is paused / unpaused by dli_sync
        assert driver.dag("sync.flags")["is_paused"] is False
        since = datetime.now(timezone.utc)
        code_flags.write_text(spec("sync.flags", enabled=False, notify=slack))
        (run_id, _, _), = driver.settle(since, Counter({("sync.flags", "paused"): 1}))
        (transition,) = [t for t in driver.report(run_id)["transitions"] if t["dataset"] == "sync.flags"]
        assert transition["applied"] is True, driver.log(run_id)
        assert driver.dag("sync.flags")["is_paused"] is True
        since = datetime.now(timezone.utc)
        code_flags.write_text(spec("sync.flags", enabled=True, notify=slack))
        driver.settle(since, Counter({("sync.flags", "unpaused"): 1}))
        assert driver.dag("sync.flags")["is_paused"] is False

        # -- datasets removed
        since = datetime.now(timezone.utc)
        manual_orders.unlink()
        code_flags.unlink()
        driver.settle(since, Counter({("sync.orders", "removed"): 1, ("sync.flags", "removed"): 1}))

        # exactly one notification per transition, on the dataset's own target
        expected.update({("sync.flags", "paused"): 1, ("sync.flags", "unpaused"): 1,
                         ("sync.orders", "removed"): 1, ("sync.flags", "removed"): 1})
        assert _messages(receiver) == expected
        assert len(receiver.on(SLACK_PATH)) == 4  # sync.flags: added, paused, unpaused, removed
    finally:
        for path in created:
            path.unlink(missing_ok=True)
        (e2e_store / "code" / "sync").rmdir() if (e2e_store / "code" / "sync").is_dir() else None
        driver.wait_dags(absent={"sync.orders", "sync.flags"})


def test_failure_and_success_notifications_end_to_end(airflow, e2e_store: Path, connections, receiver):
    hook = "{type: webhook, conn_id: sync_hook}"
    failing = e2e_store / "manual" / "sync.fails.yaml"
    passing = e2e_store / "manual" / "sync.passes.yaml"
    failing.write_text(spec("sync.fails", query="SELECT * FROM no_such_table_anywhere", on_failure=hook,
                            on_success=hook))
    passing.write_text(spec("sync.passes", on_failure=hook, on_success=hook))
    driver = SyncDriver(airflow, e2e_store)
    try:
        driver.wait_dags(present={"sync.fails", "sync.passes"})
        outcome = {}
        with airflow.api() as api:
            for dag_id in ("sync.fails", "sync.passes"):
                run_id = f"e2e_notify_{int(time.time() * 1000)}"
                response = _call(api, "POST", f"/dags/{dag_id}/dagRuns",
                                 json={"logical_date": None, "dag_run_id": run_id})
                assert response.status_code == 200, response.text

                def finished(dag_id: str = dag_id, run_id: str = run_id) -> str | None:
                    state = _call(api, "GET", f"/dags/{dag_id}/dagRuns/{run_id}").json().get("state")
                    return state if state in ("success", "failed") else None

                outcome[dag_id] = (wait_until(finished, RUN_TIMEOUT, what=f"a run of {dag_id}"), run_id)
        assert outcome["sync.fails"][0] == "failed" and outcome["sync.passes"][0] == "success"

        # (the new DAGs also get a scheduled run at once, catchup off: it notifies too; count ours only)
        ours = {run_id for _, run_id in outcome.values()}

        def events() -> list[dict[str, Any]]:
            return [r.json() for r in receiver.on(HOOK_PATH) if r.json().get("run_id") in ours]

        # the callbacks run right after the task; give them a moment
        wait_until(lambda: len(events()) >= 2, 60, what="the failure and success notifications")
        time.sleep(2)
        got = {(e["dataset"], e["event"]): e for e in events()}
        assert len(events()) == 2 and set(got) == {("sync.fails", "failure"), ("sync.passes", "success")}
        failure = got[("sync.fails", "failure")]
        assert failure["run_id"] == outcome["sync.fails"][1] and "no_such_table_anywhere" in (failure["error"] or "")
    finally:
        failing.unlink(missing_ok=True)
        passing.unlink(missing_ok=True)
        driver.wait_dags(absent={"sync.fails", "sync.passes"})


def test_a_changed_set_of_broken_specs_shows_as_a_failed_run_of_dli_spec_errors(airflow, e2e_store: Path):
    """Broken specs are impossible to miss: when their set changes, dli_sync starts a run of dli_spec_errors,
    which fails with the list (the home page counts a failed DAG); an unchanged set starts nothing more."""
    driver = SyncDriver(airflow, e2e_store)
    errors = "dli_spec_errors"
    broken = e2e_store / "code" / "sync_broken.yaml"

    def reported_runs(since: datetime) -> list[dict[str, Any]]:
        with driver.api() as api:
            runs = _call(api, "GET", f"/dags/{errors}/dagRuns", params={"limit": 50}).json().get("dag_runs", [])
        return [r for r in runs if (r.get("note") or "").startswith("dli_sync") and _ts(r["run_after"]) >= since]

    driver.idle()
    since = datetime.now(timezone.utc)
    broken.write_text("name: sync.broken\nowner: tests@example.com\nengine: oracle\nquery: SELECT 1\n")
    try:
        wait_until(lambda: driver.dag(errors), PARSE_TIMEOUT, what=f"{errors} to be parsed", interval=2)
        for _ in range(4):  # a scheduled sync may be the one that starts it
            driver.sync()
            if reported_runs(since):
                break
        (run,) = reported_runs(since)
        assert "problems changed (1 now)" in run["note"]

        def ended() -> dict[str, Any] | None:
            with driver.api() as api:
                got = _call(api, "GET", f"/dags/{errors}/dagRuns/{run['dag_run_id']}").json()
            return got if got["state"] in ("success", "failed") else None

        assert wait_until(ended, RUN_TIMEOUT, what=f"the run of {errors}")["state"] == "failed"

        def listed() -> dict[str, Any] | None:  # [dli] import_errors = True on this Airflow (conftest)
            with driver.api() as api:
                found = _call(api, "GET", "/importErrors", params={"limit": 100}).json()["import_errors"]
            return next((e for e in found if e["filename"] == str(broken)), None)

        entry = wait_until(listed, PARSE_TIMEOUT, what="the spec in Airflow's import errors", interval=2)
        assert "DLI-201" in entry["stack_trace"] and "engine" in entry["stack_trace"]
        assert driver.sync()["problems"] == {"count": 1, "run_id": None}  # unchanged: no second run
        assert len(reported_runs(since)) == 1
    finally:
        broken.unlink()
    wait_until(lambda: driver.dag(errors) is None or driver.dag(errors).get("is_stale"), PARSE_TIMEOUT,
               what=f"{errors} to go with the last problem", interval=2)
