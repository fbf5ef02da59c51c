"""What the control plane reads in the api-server: the store's snapshot (through the same cache as the
dag-processor) and the dli DAGs' state from Airflow's metadata DB, in-process (one query each, no REST
round trip). Writes to Airflow go through its own REST API instead (see ``api.py``), so they are
authorized and audited by Airflow exactly once.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dli_airflow.catalog import StoreSnapshot

#: How long one snapshot answers requests before the store is listed again (a LIST per prefix, GETs only
#: for changed objects): a burst of requests costs one listing. Past it, the snapshot still answers while one
#: background thread lists the store (a request never waits for that listing: a store of 1,000 local specs
#: takes most of a second to list), up to :data:`SNAPSHOT_MAX_AGE_SECONDS`.
SNAPSHOT_TTL_SECONDS = 5.0
#: A snapshot older than this is never served: the request lists the store itself. So a change to the store
#: shows within 10 s at most (within 5 s and one listing while requests keep coming), and a background
#: listing that hangs (an S3 endpoint that stopped answering) cannot hold stale answers longer.
SNAPSHOT_MAX_AGE_SECONDS = 10.0

log = logging.getLogger(__name__)
_lock = threading.Lock()
_memo: tuple[float, str, StoreSnapshot] | None = None
#: bumped by every write's :func:`forget_snapshot`: a background listing begun before a write never
#: installs its (older) snapshot after it
_generation = 0
_refreshing = False


def _load(store: str) -> StoreSnapshot:
    from dli_airflow.cache import load_snapshot

    return load_snapshot(store)


def _install(store: str, generation: int, loaded: StoreSnapshot, started: float) -> None:
    global _memo
    if generation == _generation and (_memo is None or _memo[0] <= started):
        _memo = (started, store, loaded)


def _refresh(store: str, generation: int) -> None:
    global _refreshing
    started = time.monotonic()
    try:
        loaded = _load(store)
    except Exception:  # noqa: BLE001 - the next request lists again (or serves the last snapshot until its age runs out)
        log.warning("dli: listing the spec store in the background failed; the last snapshot answers meanwhile",
                    exc_info=True)
        loaded = None
    with _lock:
        _refreshing = False
        if loaded is not None:
            _install(store, generation, loaded, started)


def snapshot(*, fresh: bool = False) -> StoreSnapshot:
    """The store's resolved snapshot (``fresh``: listed now — one dataset's page and every write see the
    store as it is; the list of all may lag by up to :data:`SNAPSHOT_MAX_AGE_SECONDS`).

    A snapshot past its TTL still answers while one background thread lists the store again (stale while
    revalidating), up to :data:`SNAPSHOT_MAX_AGE_SECONDS`. During an outage this is the last good copy, its
    ``warnings`` saying so; with neither store nor copy it raises the store's DLI-503.
    """
    global _refreshing
    from dli_airflow import config

    store = config.spec_store()
    with _lock:
        memo, generation = _memo, _generation
        if not fresh and memo is not None and memo[1] == store:
            age = time.monotonic() - memo[0]
            if age < SNAPSHOT_TTL_SECONDS:
                return memo[2]
            if age < SNAPSHOT_MAX_AGE_SECONDS:
                if not _refreshing:
                    _refreshing = True
                    threading.Thread(target=_refresh, args=(store, generation), daemon=True,
                                     name="dli-snapshot-refresh").start()
                return memo[2]
    started = time.monotonic()
    loaded = _load(store)
    with _lock:
        _install(store, generation, loaded, started)
    return loaded


def forget_snapshot() -> None:
    """Read the store again on the next request (after a write through the control plane)."""
    global _memo, _generation
    with _lock:
        _memo = None
        _generation += 1


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def dli_dags(only: str | None = None) -> dict[str, dict[str, Any]]:
    """The live DAGs tagged ``dli`` (or the one named ``only``), as REST-API-shaped dicts by dag id."""
    from airflow.models.dag import DagModel, DagTag
    from airflow.utils.session import create_session
    from sqlalchemy import select

    # Columns, not ORM instances: building 1,000 DagModel objects (and their tags through selectinload)
    # was four fifths of the control plane's list at 1,000 workflows.
    dli = select(DagTag.dag_id).where(DagTag.name == "dli")
    query = select(
        DagModel.dag_id, DagModel.is_paused, DagModel.next_dagrun_create_after, DagModel.next_dagrun,
        DagModel.owners, DagModel.description, DagModel.timetable_summary,
    ).where(DagModel.is_stale.is_(False), DagModel.dag_id.in_(dli))
    tags = select(DagTag.dag_id, DagTag.name).where(DagTag.dag_id.in_(dli))
    if only is not None:
        query = query.where(DagModel.dag_id == only)
        tags = tags.where(DagTag.dag_id == only)
    with create_session() as session:
        rows = session.execute(query).all()
        tags_of: dict[str, list[dict[str, str]]] = {}
        for dag_id, name in session.execute(tags):
            tags_of.setdefault(dag_id, []).append({"name": name})
    return {
        dag_id: {
            "dag_id": dag_id,
            "is_paused": bool(is_paused),
            "is_stale": False,
            "next_dagrun_run_after": _iso(create_after),
            "next_dagrun_logical_date": _iso(next_dagrun),
            "tags": sorted(tags_of.get(dag_id, []), key=lambda t: t["name"]),
            "owners": [o.strip() for o in (owners or "").split(",") if o.strip()],
            "description": description,
            "timetable_summary": timetable_summary,
        }
        for dag_id, is_paused, create_after, next_dagrun, owners, description, timetable_summary in rows
    }


def running_dag_ids() -> set[str]:
    """The DAGs with a queued or running run."""
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from airflow.utils.state import DagRunState
    from sqlalchemy import select

    with create_session() as session:
        query = select(DagRun.dag_id).where(DagRun.state.in_([DagRunState.QUEUED, DagRunState.RUNNING])).distinct()
        return set(session.scalars(query))


def request_reparse() -> int:
    """Ask the dag-processor to parse the dli DAG files now (Airflow's priority parsing requests, what
    ``PUT /api/v2/parseDagFile/{file_token}`` records), so a registered dataset is runnable without waiting for
    the next parse interval. Returns how many files were asked for."""
    from airflow.models.dag import DagModel, DagTag
    from airflow.models.dagbag import DagPriorityParsingRequest
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        files = session.execute(
            select(DagModel.bundle_name, DagModel.relative_fileloc)
            .where(DagModel.is_stale.is_(False), DagModel.relative_fileloc.is_not(None),
                   DagModel.dag_id.in_(select(DagTag.dag_id).where(DagTag.name == "dli")))
            .distinct()
        ).all()
        pending = set(session.execute(
            select(DagPriorityParsingRequest.bundle_name, DagPriorityParsingRequest.relative_fileloc)
        ).all())
        for bundle, fileloc in files:
            if (bundle, fileloc) not in pending:
                session.add(DagPriorityParsingRequest(bundle_name=bundle, relative_fileloc=fileloc))
        return len(files)


def sync_transitions(limit: int) -> list[dict[str, Any]]:
    """The reports of ``dli_sync``'s last ``limit`` runs that recorded one (newest first): when, which run,
    and the transitions it confirmed (kind, dataset, source, message, applied, notified)."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    from dli_airflow.sync import SYNC_DAG_ID

    query = (
        select(XComModel)
        .where(XComModel.dag_id == SYNC_DAG_ID, XComModel.task_id == "sync", XComModel.key == "return_value")
        .order_by(XComModel.timestamp.desc())
        .limit(limit)
    )
    runs = []
    with create_session() as session:
        for row in session.scalars(query):
            report = XComModel.deserialize_value(row)
            if not isinstance(report, dict):
                continue
            runs.append({
                "run_id": row.run_id, "at": _iso(row.timestamp), "baseline": bool(report.get("baseline")),
                "datasets": report.get("datasets"), "pending": list(report.get("pending") or []),
                "transitions": [t for t in report.get("transitions") or [] if isinstance(t, dict)],
            })
    return runs


def audit(event: str, user: Any, name: str, request_from: str | None, **extra: Any) -> None:
    """One row of Airflow's audit log (the UI's Audit Log page) for a write Airflow's own API did not make.

    ``dag_id`` is set only while the DAG exists: ``/api/v2/eventLogs`` shows a row with a ``dag_id`` only to
    readers of that DAG, so a row naming a DAG that is gone (an unregistered dataset) would vanish; the
    dataset's name is always in ``extra``.
    """
    import json

    from airflow.models.dag import DagModel
    from airflow.models.log import Log
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        exists = session.scalar(select(DagModel.dag_id).where(DagModel.dag_id == name, DagModel.is_stale.is_(False)))
        details = {"dataset": name, "from": request_from, **extra}
        row = Log(event=event, owner=getattr(user, "get_name", lambda: None)(),
                  extra=json.dumps(details, default=str), **({"dag_id": name} if exists else {}))
        session.add(row)


__all__ = [
    "SNAPSHOT_MAX_AGE_SECONDS", "SNAPSHOT_TTL_SECONDS", "audit", "dli_dags", "forget_snapshot", "request_reparse", "running_dag_ids",
    "snapshot", "sync_transitions",
]
