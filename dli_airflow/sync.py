"""``dli_sync``: the maintenance DAG that records source transitions of the store.

Every ``[dli] sync_interval`` seconds it resolves the store (``[dli] spec_store``) and compares each
dataset with the state it recorded last time, kept in the Airflow Variable ``dli_sync_state`` (never
in the store). The transitions it records:

==================  ==================================================================================
``added``           a new dataset (its DAG appears)
``removed``         a dataset's last spec is gone (its DAG is no longer scheduled)
``overridden``      a code spec arrived over a manual one: manual → ``overridden``
``restored``        the code spec went away: the manual one is ``active`` again
``source_changed``  the winning source changed otherwise (code ↔ manual, the other side new or gone)
``paused``          ``schedule.enabled`` became false: ``dli_sync`` pauses the DAG
``unpaused``        ``schedule.enabled`` became true: ``dli_sync`` unpauses the DAG
==================  ==================================================================================

A change counts once two consecutive syncs see it, so a code spec that vanishes for a moment (a CI
upload in progress) flips nothing. The first sync only records a baseline. A dataset whose code spec is
broken keeps its recorded state until the spec is fixed. Each transition goes to the task log and to the
run's XCom (``return_value``), and is sent to the ``notifications.on_source_change`` targets of the
dataset's specs (before and after), one notification per target.

Pausing needs the Airflow REST API (a task has no database access in Airflow 3): through the Airflow
connection ``dli_airflow_api`` (host = the API URL; login/password, or a token as password), else the
``DLI_AIRFLOW_URL`` / ``DLI_AIRFLOW_TOKEN`` or ``DLI_AIRFLOW_USERNAME`` / ``DLI_AIRFLOW_PASSWORD``
environment of the worker. Without either, the transition is recorded with ``applied: false`` and a
warning says what to configure.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Collection, Mapping
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from dli_airflow.hooks import AIRFLOW_API_CONN_ID

if TYPE_CHECKING:
    from airflow.sdk import DAG

    from dli_airflow.catalog import StoreSnapshot
    from dli_airflow.client import WorkflowClient

log = logging.getLogger(__name__)

SYNC_DAG_ID = "dli_sync"
#: The Airflow Variable holding what the last syncs saw.
STATE_VARIABLE = "dli_sync_state"
#: The Airflow connection to the REST API used to apply ``schedule.enabled`` to a DAG's paused state.
API_CONN_ID = AIRFLOW_API_CONN_ID
#: Not ``dli``: that tag marks the dataset DAGs, one per dataset of the store.
TAGS = ["dli:maintenance"]
START_DATE = datetime(2024, 1, 1, tzinfo=timezone.utc)

_STATE_FORMAT = 1

#: One dataset as one sync sees it (JSON-ready: it is stored in the Variable).
Record = dict[str, Any]


@dataclass(frozen=True)
class Transition:
    """One change of one dataset, confirmed by two consecutive syncs."""

    dataset: str
    kind: str
    source: str | None
    previous_source: str | None
    path: str | None
    message: str
    notified: int = 0
    failed_notifications: int = 0
    applied: bool | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# --------------------------------------------------------------------------- comparing states


def observe(snapshot: StoreSnapshot) -> tuple[dict[str, Record], set[str]]:
    """Each dataset of a snapshot as a record, and the names held back (a broken code spec).

    :returns: ``(records, held)``; a held name has only an overridden manual spec, because its code spec
        fails to load: its recorded state stands until the code spec is fixed.
    """
    by_name: dict[str, list[Any]] = {}
    for entry in snapshot.entries:
        by_name.setdefault(entry.name, []).append(entry)
    records: dict[str, Record] = {}
    held: set[str] = set()
    for name, entries in by_name.items():
        winner = next((e for e in entries if e.schedules), None)
        if winner is None:
            held.add(name)
            continue
        targets: list[dict[str, Any]] = []
        for entry in sorted(entries, key=lambda e: e.source.value):
            notifications = entry.spec.schedule.notifications if entry.spec.schedule else None
            for target in notifications.on_source_change if notifications else ():
                as_dict = target.model_dump(mode="json", exclude_none=True)
                if as_dict not in targets:
                    targets.append(as_dict)
        records[name] = {
            "winner": winner.source.value,
            "code": any(e.source.value == "code" for e in entries),
            "manual": any(e.source.value == "manual" for e in entries),
            "enabled": winner.spec.schedule.enabled if winner.spec.schedule else True,
            "path": winner.path,
            "notify": targets,
        }
    return records, held


def _key(record: Record | None) -> tuple[Any, ...] | None:
    if record is None:
        return None
    return (record["winner"], record["code"], record["manual"], record["enabled"])


def _changes(name: str, before: Record | None, now: Record | None) -> list[Transition]:
    if before is None and now is not None:
        return [
            Transition(name, "added", now["winner"], None, now["path"],
                       f"dataset {name} added ({now['winner']} spec {now['path']})")
        ]
    if now is None and before is not None:
        return [
            Transition(name, "removed", None, before["winner"], before["path"],
                       f"dataset {name} removed: its {before['winner']} spec {before['path']} is gone; "
                       "its DAG is no longer scheduled")
        ]
    assert before is not None and now is not None
    out: list[Transition] = []
    if before["winner"] != now["winner"]:
        if now["winner"] == "code" and now["manual"]:
            kind, text = "overridden", (
                f"dataset {name}: the code spec {now['path']} now overrides the manual one, "
                "which is kept but inactive (overridden)"
            )
        elif now["winner"] == "manual" and before["manual"]:
            kind, text = "restored", (
                f"dataset {name}: its code spec was removed; the manual spec {now['path']} is active again"
            )
        else:
            kind, text = "source_changed", (
                f"dataset {name} now comes from {now['winner']} ({now['path']}) instead of {before['winner']}"
            )
        out.append(Transition(name, kind, now["winner"], before["winner"], now["path"], text))
    if before["enabled"] != now["enabled"]:
        kind = "unpaused" if now["enabled"] else "paused"
        text = (
            f"dataset {name}: schedule.enabled is now {str(now['enabled']).lower()} in {now['path']}; "
            f"its DAG is {kind}"
        )
        out.append(Transition(name, kind, now["winner"], before["winner"], now["path"], text))
    return out


def advance(
    state: Mapping[str, Any] | None, observed: Mapping[str, Record], held: Collection[str] = ()
) -> tuple[dict[str, Any], list[Transition], list[str]]:
    """One sync step: the new state, the transitions confirmed now, and the names still pending.

    A dataset's change is confirmed when this sync and the previous one saw the same thing; until then
    it is pending and the recorded (confirmed) state stands.

    :param state: what :func:`advance` returned last time (None: first sync, which records a baseline)
    :param observed: the records of this sync (:func:`observe`)
    :param held: names whose recorded state must stand whatever this sync sees
    """
    observed = dict(observed)
    if not state or state.get("format") != _STATE_FORMAT:
        return {"format": _STATE_FORMAT, "confirmed": observed, "seen": observed}, [], []
    confirmed: dict[str, Record] = dict(state.get("confirmed") or {})
    seen: dict[str, Record] = dict(state.get("seen") or {})
    for name in held:
        if name in confirmed:
            observed[name] = confirmed[name]
    transitions: list[Transition] = []
    pending: list[str] = []
    for name in sorted(set(confirmed) | set(observed)):
        before, now = confirmed.get(name), observed.get(name)
        if _key(before) == _key(now):
            if now is not None:
                confirmed[name] = now  # path or notification targets may have changed: keep them current
            continue
        if _key(seen.get(name)) != _key(now):
            pending.append(name)
            continue
        transitions += _changes(name, before, now)
        if now is None:
            confirmed.pop(name, None)
        else:
            confirmed[name] = now
    return {"format": _STATE_FORMAT, "confirmed": confirmed, "seen": observed}, transitions, pending


# --------------------------------------------------------------------------- acting on transitions


def api_client() -> WorkflowClient | None:
    """A REST API client for pausing DAGs: the ``dli_airflow_api`` connection, else ``DLI_AIRFLOW_*``.

    :returns: ``None`` when neither is configured (the pause is then recorded as not applied)
    """
    from dli_airflow.hooks.airflow_api import AirflowApiHook

    return AirflowApiHook(API_CONN_ID).get_conn()


def _apply_paused(name: str, paused: bool, client_factory: Callable[[], WorkflowClient | None]) -> bool:
    from dli_airflow.errors import DliError

    try:
        client = client_factory()
    except DliError as exc:
        log.warning("dli: cannot reach the Airflow API to %s %s: [%s] %s", _verb(paused), name, exc.code, exc.message)
        return False
    if client is None:
        log.warning(
            "dli: cannot %s the DAG %s: no Airflow API credentials. Create the Airflow connection %r "
            "(host = the API URL, login/password or a token as password) or set DLI_AIRFLOW_URL and "
            "DLI_AIRFLOW_TOKEN for the workers",
            _verb(paused), name, API_CONN_ID,
        )
        return False
    try:
        with client:
            (client.pause if paused else client.unpause)(name)
    except DliError as exc:
        log.warning("dli: cannot %s the DAG %s: [%s] %s", _verb(paused), name, exc.code, exc.message)
        return False
    except Exception as exc:  # isolation point: one DAG's paused state never stops the other transitions
        log.warning("dli: cannot %s the DAG %s: %s: %s", _verb(paused), name, type(exc).__name__, exc)
        return False
    log.info("dli: %s the DAG %s (schedule.enabled changed in the YAML)", "paused" if paused else "unpaused", name)
    return True


def problems_fingerprint(snapshot: StoreSnapshot) -> str | None:
    """One value for the store's set of problems (``None``: none), to see when that set changes."""
    if not snapshot.problems:
        return None
    import hashlib

    lines = sorted(f"{p.code}|{p.path or ''}|{p.message}" for p in snapshot.problems)
    return hashlib.sha256("\n".join(lines).encode("utf-8")).hexdigest()[:16]


def report_problems(
    snapshot: StoreSnapshot, reported: str | None, client_factory: Callable[[], WorkflowClient | None] = api_client
) -> tuple[str | None, dict[str, Any]]:
    """Make the store's problems impossible to miss: whenever their set changes, start a run of
    ``dli_spec_errors``, which fails with the list (Airflow's home page then counts a failed DAG and the
    DAG shows red). Returns the fingerprint to record — the new one only once its run was started, so a sync
    that could not start it tries again — and what was done (for the XCom)."""
    from dli_airflow.errors import DliError
    from dli_airflow.kinds import ERRORS_DAG_ID

    now = problems_fingerprint(snapshot)
    done: dict[str, Any] = {"count": len(snapshot.problems), "run_id": None}
    if now is None or now == reported:
        return now, done
    try:
        client = client_factory()
        if client is None:
            log.warning("dli: %d spec problem(s) changed, but without the %r connection (or DLI_AIRFLOW_URL) no "
                        "failed run of %s shows them", len(snapshot.problems), API_CONN_ID, ERRORS_DAG_ID)
            return reported, done
        with client:
            response = client._api.request("POST", f"/dags/{ERRORS_DAG_ID}/dagRuns", ok=(200, 404, 409), json={
                "logical_date": None, "note": f"dli_sync: the store's problems changed ({len(snapshot.problems)} now)",
            })
    except DliError as exc:
        log.warning("dli: cannot start a run of %s: [%s] %s", ERRORS_DAG_ID, exc.code, exc.message)
        return reported, done
    if response.status_code != 200:  # not parsed yet (404): the next sync tries again
        log.info("dli: %s is not in Airflow yet; the next sync starts its run", ERRORS_DAG_ID)
        return reported, done
    done["run_id"] = response.json().get("dag_run_id")
    log.warning("dli: %d spec problem(s) in %s: the run %s of %s lists them", len(snapshot.problems), snapshot.store,
                done["run_id"], ERRORS_DAG_ID)
    return now, done


def _verb(paused: bool) -> str:
    return "pause" if paused else "unpause"


def _targets(before: Record | None, now: Record | None) -> list[dict[str, Any]]:
    targets: list[dict[str, Any]] = []
    for record in (now, before):
        for target in (record or {}).get("notify") or ():
            if target not in targets:
                targets.append(target)
    return targets


def _notify(
    transition: Transition, targets: list[dict[str, Any]], store: str, sender: Callable[..., bool]
) -> tuple[int, int]:
    from dli_airflow.notifiers import Message
    from dli_airflow.spec import NotificationSpec

    message = Message(
        event="source_change",
        dataset=transition.dataset,
        text=f"dli: {transition.message}",
        details={"transition": transition.kind, "source": transition.source,
                 "previous_source": transition.previous_source, "path": transition.path, "store": store},
    )
    sent = failed = 0
    for raw in targets:
        try:
            target = NotificationSpec.model_validate(raw)
        except Exception as exc:  # a recorded target that no longer validates: skip it, say so
            log.error("dli: skipping an invalid on_source_change target of %s: %s", transition.dataset, exc)
            failed += 1
            continue
        if sender(target, message):
            sent += 1
        else:
            failed += 1
    return sent, failed


@dataclass(frozen=True)
class SyncPlan:
    """What one sync found: the state to record and the transitions to act on."""

    store: str
    baseline: bool
    state: dict[str, Any]
    transitions: list[Transition]
    pending: list[str]
    held: list[str]
    datasets: int
    #: per dataset with a transition: its on_source_change targets, before and after
    targets: dict[str, list[dict[str, Any]]]


def plan(snapshot: StoreSnapshot, state: Mapping[str, Any] | None) -> SyncPlan:
    """Compare a snapshot with the recorded state (no side effects)."""
    observed, held = observe(snapshot)
    previous: dict[str, Record] = dict((state or {}).get("confirmed") or {})
    new_state, transitions, pending = advance(state, observed, held)
    return SyncPlan(
        store=snapshot.store,
        baseline=not state or state.get("format") != _STATE_FORMAT,
        state=new_state,
        transitions=transitions,
        pending=pending,
        held=sorted(held),
        datasets=len(observed),
        targets={t.dataset: _targets(previous.get(t.dataset), observed.get(t.dataset)) for t in transitions},
    )


def act(
    sync: SyncPlan,
    *,
    client_factory: Callable[[], WorkflowClient | None] = api_client,
    sender: Callable[..., bool] | None = None,
) -> dict[str, Any]:
    """Apply paused states, send the notifications, log; returns the report (the task's XCom).

    :param client_factory: makes the REST API client that pauses DAGs (tests inject one)
    :param sender: ``send(target, message) -> bool`` (default :func:`dli_airflow.notifiers.send`)
    """
    if sender is None:
        from dli_airflow.notifiers import send as sender
    done: list[dict[str, Any]] = []
    for transition in sync.transitions:
        log.info("dli: [%s] %s", transition.kind, transition.message)
        applied = None
        if transition.kind in ("paused", "unpaused"):
            applied = _apply_paused(transition.dataset, transition.kind == "paused", client_factory)
        sent, failed = _notify(transition, sync.targets.get(transition.dataset, []), sync.store, sender)
        done.append({**transition.to_dict(), "notified": sent, "failed_notifications": failed, "applied": applied})
    if sync.baseline:
        log.info("dli: first sync of %s: recorded %d dataset(s) as the baseline", sync.store, sync.datasets)
    log.info(
        "dli: sync of %s: %d dataset(s), %d transition(s), %d pending (confirmed if the next sync sees them too)",
        sync.store, sync.datasets, len(done), len(sync.pending),
    )
    return {
        "store": sync.store,
        "baseline": sync.baseline,
        "datasets": sync.datasets,
        "transitions": done,
        "pending": sync.pending,
        "held": sync.held,
    }


# --------------------------------------------------------------------------- the task and the DAG


def run_sync(**context: Any) -> dict[str, Any]:
    """The ``sync`` task: read the store, compare, record, act; the report becomes the run's XCom."""
    from airflow.sdk import Variable

    from dli_airflow.cache import load_snapshot

    # never act on the last good copy: an outage is not a transition
    snapshot = load_snapshot(fallback=False)
    raw = Variable.get(STATE_VARIABLE, default=None)
    try:
        state = json.loads(raw) if raw else None
    except ValueError:
        log.warning("dli: the Variable %s is not JSON; recording a new baseline", STATE_VARIABLE)
        state = None
    sync = plan(snapshot, state)
    # a changed set of problems starts a (failing) run of dli_spec_errors; a second start is harmless
    sync.state["problems"], problems = report_problems(snapshot, (state or {}).get("problems"))
    # record first, then act: a transition is notified at most once, even if this task runs again
    Variable.set(
        STATE_VARIABLE,
        json.dumps(sync.state, sort_keys=True, separators=(",", ":")),
        description="dli_sync: the datasets of the spec store as the last syncs saw them (managed by dli)",
    )
    return {**act(sync), "problems": problems}


def build_sync_dag() -> DAG:
    """The ``dli_sync`` DAG: one task every ``[dli] sync_interval`` seconds, never two at once."""
    from airflow.providers.standard.operators.python import PythonOperator
    from airflow.sdk import DAG, DeltaTriggerTimetable

    from dli_airflow import config

    interval = config.sync_interval()
    dag = DAG(
        dag_id=SYNC_DAG_ID,
        schedule=DeltaTriggerTimetable(timedelta(seconds=interval)),
        start_date=START_DATE,
        catchup=False,
        max_active_runs=1,
        is_paused_upon_creation=False,
        tags=list(TAGS),
        # a sync is idempotent: a transient failure (the execution API slow under a stack's start-up) retries
        default_args={"owner": "dli", "retries": 2, "retry_delay": timedelta(seconds=20)},
        dagrun_timeout=timedelta(seconds=max(interval, 300)),
        description=f"dli: records source transitions of the spec store every {interval} s",
        doc_md=__doc__,
        auto_register=False,
    )
    PythonOperator(
        task_id="sync", dag=dag, python_callable=run_sync, execution_timeout=timedelta(seconds=max(interval, 300))
    )
    return dag


__all__ = [
    "API_CONN_ID",
    "STATE_VARIABLE",
    "SYNC_DAG_ID",
    "Transition",
    "SyncPlan",
    "act",
    "advance",
    "build_sync_dag",
    "observe",
    "plan",
    "problems_fingerprint",
    "report_problems",
    "run_sync",
]
