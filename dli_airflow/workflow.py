"""Workflows on Airflow: the frozen results of :class:`~dli_airflow.client.WorkflowClient` (seed 001 §2.2,
003 §8), their converters from REST API v2 objects, and the protocol the client and the operator share
(run ids, reserved ``conf`` keys, the backfill-stop rule, the note of a stopped run). No Airflow here.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from enum import Enum
from typing import TYPE_CHECKING, Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field

from dli_airflow.errors import DatasetNotFoundError, WorkflowExecutionError, WorkflowNotFoundError
from dli_airflow.kinds import RESERVED_CONF_PREFIX, SourceType
from dli_airflow.kinds import DatasetStatus as WorkflowStatus

if TYPE_CHECKING:
    from dli_airflow.catalog import SpecEntry, StoreSnapshot

# -- the protocol between client and operator ---------------------------------------------------------------

#: The ``conf`` key that ties the runs of one dli backfill together.
BACKFILL_TOKEN_KEY = f"{RESERVED_CONF_PREFIX}_backfill"
#: Prefix of the run note that marks a run stopped by a user (KILLED rather than FAILED).
KILLED_NOTE_PREFIX = "dli: stopped by"
#: Kinds in run ids the client makes: ``<dataset>__<kind>__<UTC timestamp>``.
RUN_KINDS = ("adhoc", "backfill")
RUN_ID_PATTERN = re.compile(r"^(?P<dataset>.+)__(?P<kind>adhoc|backfill)__(?P<ts>\d{8}T\d{6}(?:\d+)?Z)$")
_AIRFLOW_RUN_TYPES = {"manual": "adhoc", "scheduled": "scheduled", "backfill": "backfill", "asset_triggered": "asset_triggered"}


#: A backfill as one id (``backfill:12``: Airflow's backfill 12), which ``status``, ``stop``, ``watch`` and
#: ``history`` take like a run id; dataset names and dli's run ids never contain ``:`` at that place.
BACKFILL_REF_PREFIX = "backfill:"


def backfill_ref(backfill_id: int) -> str:
    return f"{BACKFILL_REF_PREFIX}{backfill_id}"


def backfill_id_of(ref: str | None) -> int | None:
    """Airflow's backfill id a ``backfill:12`` reference names, else ``None``."""
    if ref and ref.startswith(BACKFILL_REF_PREFIX) and ref[len(BACKFILL_REF_PREFIX):].isdigit():
        return int(ref[len(BACKFILL_REF_PREFIX):])
    return None


def backfill_status(runs: list[WorkflowRun], completed: bool) -> RunStatus:
    """One status for a backfill's runs: ended once Airflow completed it and every run ended (then KILLED if a
    user stopped one, FAILED if one failed, else COMPLETED); before that RUNNING once a date started."""
    if completed and all(r.status.is_terminal for r in runs):
        ended = {r.status for r in runs}
        return next((s for s in (RunStatus.KILLED, RunStatus.FAILED) if s in ended), RunStatus.COMPLETED)
    if any(r.status is not RunStatus.PENDING for r in runs):
        return RunStatus.RUNNING
    return RunStatus.PENDING


def make_run_id(dataset: str, kind: str) -> str:
    """``<dataset>__<kind>__<UTC timestamp>`` (so a bare run id names its dataset)."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%f")[:-3] + "Z"
    return f"{dataset}__{kind}__{stamp}"


def dataset_of_run_id(run_id: str) -> str | None:
    """The dataset a run id made by :func:`make_run_id` names, else ``None``."""
    match = RUN_ID_PATTERN.match(run_id)
    return match.group("dataset") if match else None


def check_backfill(conf: Mapping[str, Any], previous_run: Any | None, backfill: Mapping[str, Any] | None = None) -> None:
    """A backfill stops at its first failed date: later dates of the same backfill do not run.

    Airflow's backfill would go on. The rule keys on the run's Airflow backfill, so it holds for a backfill
    started anywhere (``dli workflow backfill``, the UI's Backfill form, ``POST /api/v2/backfills``): the
    previous date failed *in this backfill* when it lies inside the backfill's range and ended after the
    backfill was created (an older failure that this backfill did not run again does not count). Runs queued
    by an older dli with a backfill token in ``conf`` are matched by that token.

    :param conf: the run's ``conf``
    :param previous_run: the dataset's previous DAG run (``state``, ``logical_date``, ``end_date``, ``run_id``,
        ``conf``), or ``None``
    :param backfill: the run's Airflow backfill (REST API shape: ``from_date``, ``created_at``), if known
    :raises WorkflowExecutionError: the previous date belongs to the same backfill and failed
    """
    if previous_run is None or not str(previous_run.state).lower().endswith("failed"):
        return
    token = conf.get(BACKFILL_TOKEN_KEY)
    if token:
        same = (previous_run.conf or {}).get(BACKFILL_TOKEN_KEY) == token
    elif backfill is not None:
        begins, created = _as_time(backfill.get("from_date")), _as_time(backfill.get("created_at"))
        logical, ended = _as_time(previous_run.logical_date), _as_time(previous_run.end_date)
        same = None not in (begins, created, logical, ended) and logical >= begins and ended >= created
    else:
        same = False
    if same:
        raise WorkflowExecutionError(
            f"an earlier date of this backfill failed (run {previous_run.run_id}), so this date is not run",
            hint="fix the failure, then run the backfill again: a rerun starts again from its first date",
        )


def _as_time(value: Any) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    return parse_time(str(value))


class RunStatus(str, Enum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    KILLED = "KILLED"

    @property
    def is_terminal(self) -> bool:
        return self in (RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.KILLED)


RunType = Literal["adhoc", "scheduled", "backfill", "asset_triggered"]


class _Result(BaseModel):
    # defer_build: a model's validator is built on its first use, not at import (a command uses two or three)
    model_config = ConfigDict(frozen=True, defer_build=True)


class WorkflowInfo(_Result):
    """A dataset's workflow: where its spec comes from, its state in Airflow and its schedule."""

    dataset_name: str
    source_type: SourceType
    status: WorkflowStatus
    cron: Optional[str] = None
    timezone: Optional[str] = None
    next_run: Optional[datetime] = None
    overridden_by: Optional[SourceType] = None
    owner: Optional[str] = None
    team: Optional[str] = None
    engine: Optional[str] = None
    description: Optional[str] = None
    depends_on: tuple[str, ...] = ()
    parameters: tuple[str, ...] = ()
    in_airflow: bool = True
    is_running: bool = False
    spec_file: Optional[str] = None
    #: a manual workflow's last write through dli: ``register`` or ``update``, by whom, when (``dli workflow get``)
    changed_by: Optional[str] = None
    changed_at: Optional[datetime] = None
    last_change: Optional[str] = None


class WorkflowPage(BaseModel):
    """One page of the control plane's ``GET /dli/api/v1/workflows``: up to 1,000 workflows, and how many
    match in all."""

    workflows: list[WorkflowInfo]
    total_entries: int
    #: spec files of the store that are no workflow because they are broken (``GET /problems`` lists them)
    problems: int = 0


class WorkflowRun(_Result):
    """One run of a workflow (an Airflow DAG run)."""

    run_id: str
    dataset_name: str
    source_type: Optional[SourceType] = None
    status: RunStatus
    run_type: RunType
    parameters: dict[str, Any] = Field(default_factory=dict)
    logical_date: Optional[datetime] = None
    started_at: Optional[datetime] = None
    finished_at: Optional[datetime] = None
    note: Optional[str] = None

    # seed 004's names for the same fields (WorkflowExecution: trigger_type, input_data, ended_at)
    trigger_type = property(lambda self: self.run_type, doc="Seed 004's name for :attr:`run_type`.")
    input_data = property(lambda self: self.parameters, doc="Seed 004's name for :attr:`parameters`.")
    ended_at = property(lambda self: self.finished_at, doc="Seed 004's name for :attr:`finished_at`.")

    @property
    def duration_seconds(self) -> Optional[float]:
        """How long the run took, once it has ended (none while it runs, as the seeds define it; see
        :attr:`elapsed_seconds`)."""
        if self.started_at is None or self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()

    @property
    def elapsed_seconds(self) -> Optional[float]:
        """Seconds since the run started (until it ended, for an ended run)."""
        if self.started_at is None:
            return None
        end = self.finished_at or datetime.now(self.started_at.tzinfo)
        return (end - self.started_at).total_seconds()


class TaskRun(_Result):
    """One task try of a run."""

    task_id: str
    state: Optional[str] = None
    try_number: int = 0
    started_at: Optional[datetime] = None
    finished_at: Optional[datetime] = None
    duration_seconds: Optional[float] = None
    pid: Optional[int] = None
    hostname: Optional[str] = None
    #: 1 for the run's first task to start, 2 for the next, ... (None: not started)
    execution_order: Optional[int] = None

    @property
    def retry_count(self) -> int:
        """Tries after the first (seed 004's NodeExecution.retry_count)."""
        return max(0, self.try_number - 1)

    ended_at = property(lambda self: self.finished_at, doc="Seed 004's name for :attr:`finished_at`.")


class WorkflowStatusResult(_Result):
    """The detailed state of one run."""

    run: WorkflowRun
    tasks: tuple[TaskRun, ...] = ()
    error_message: Optional[str] = None
    #: the task's result summary (XCom ``return_value``) of a completed run: rows affected, the first rows
    result: Optional[dict[str, Any]] = None
    #: for a backfill (``backfill:12``): the run of each of its dates, in date order
    runs: tuple[WorkflowRun, ...] = ()

    output_data = property(lambda self: self.result, doc="Seed 004's name for :attr:`result`.")

    @property
    def run_id(self) -> str:
        return self.run.run_id

    @property
    def status(self) -> RunStatus:
        return self.run.status

    @property
    def is_running(self) -> bool:
        return self.run.status in (RunStatus.PENDING, RunStatus.RUNNING)

    @property
    def is_terminal(self) -> bool:
        return self.run.status.is_terminal

    @property
    def duration_seconds(self) -> Optional[float]:
        return self.run.duration_seconds


class WorkflowRunResult(_Result):
    """What an action did: a run started (or, with ``dry_run``, what would run), a stop, a pause."""

    dataset_name: str
    action: Literal["run", "backfill", "stop", "pause", "unpause", "unregister"]
    run_id: Optional[str] = None
    run_status: Optional[RunStatus] = None
    dry_run: bool = False
    message: str = ""
    rendered_sql: tuple[str, ...] = ()
    logical_dates: tuple[datetime, ...] = ()
    run_ids: tuple[str, ...] = ()
    backfill_id: Optional[int] = None

    @property
    def status(self) -> Optional[RunStatus]:
        """Seed 001's name for :attr:`run_status` (``result.status``)."""
        return self.run_status


class WorkflowRegisterResult(_Result):
    source_type: SourceType
    workflow_info: WorkflowInfo
    spec_path: str
    sql_path: Optional[str] = None
    warning: Optional[str] = None


class WorkflowListResult(_Result):
    workflows: tuple[WorkflowInfo, ...]
    total_count: int
    #: broken spec files in the store, which are no workflow (the control plane's count; 0 without it)
    problems: int = 0


class WorkflowHistoryResult(_Result):
    runs: tuple[WorkflowRun, ...]
    total_count: int
    dataset_info: dict[str, WorkflowInfo] = Field(default_factory=dict)


class TaskLog(_Result):
    """The log of one task try, as text lines."""

    run_id: str
    task_id: str
    try_number: int
    lines: tuple[str, ...]


# -- converters from REST API v2 objects ------------------------------------------------------------------


def parse_time(value: str | None) -> datetime | None:
    """An API timestamp (ISO 8601, ``Z`` or offset) as an aware datetime."""
    if not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def has_tag(dag: Mapping[str, Any], tag: str) -> bool:
    """Whether an API DAG object carries ``tag``."""
    return any((t.get("name") if isinstance(t, dict) else t) == tag for t in dag.get("tags") or [])


def source_of(dag: Mapping[str, Any] | None) -> SourceType | None:
    """The source a DAG's tags name (``source:code`` / ``source:manual``)."""
    if dag is None:
        return None
    if has_tag(dag, "source:manual"):
        return SourceType.MANUAL
    if has_tag(dag, "source:code"):
        return SourceType.CODE
    return None


def run_status(raw: Mapping[str, Any]) -> RunStatus:
    """The dli status of an API DAG run (a failed run whose note says a user stopped it is KILLED)."""
    state = raw.get("state")
    if state == "success":
        return RunStatus.COMPLETED
    if state == "failed":
        note = raw.get("note") or ""
        return RunStatus.KILLED if note.startswith(KILLED_NOTE_PREFIX) else RunStatus.FAILED
    if state == "running":
        return RunStatus.RUNNING
    return RunStatus.PENDING


def run_from_api(raw: Mapping[str, Any], dag: Mapping[str, Any] | None = None) -> WorkflowRun:
    """A :class:`WorkflowRun` from an API DAG run (and its DAG, for the source)."""
    return WorkflowRun(
        run_id=raw["dag_run_id"],
        dataset_name=raw["dag_id"],
        source_type=source_of(dag),
        status=run_status(raw),
        run_type=_AIRFLOW_RUN_TYPES.get(raw.get("run_type") or "manual", "adhoc"),  # type: ignore[arg-type]
        parameters={k: v for k, v in (raw.get("conf") or {}).items() if not k.startswith(RESERVED_CONF_PREFIX)},
        logical_date=parse_time(raw.get("logical_date")),
        started_at=parse_time(raw.get("start_date")),
        finished_at=parse_time(raw.get("end_date")),
        note=raw.get("note"),
    )


def tasks_from_api(raws: Iterable[Mapping[str, Any]]) -> tuple[TaskRun, ...]:
    """A run's task tries, numbered by the order they started in (``execution_order``)."""
    tasks = [task_from_api(raw) for raw in raws]
    started = sorted((t for t in tasks if t.started_at is not None), key=lambda t: t.started_at)
    order = {id(t): i for i, t in enumerate(started, 1)}
    return tuple(t.model_copy(update={"execution_order": order.get(id(t))}) for t in tasks)


def task_from_api(raw: Mapping[str, Any]) -> TaskRun:
    """A :class:`TaskRun` from an API task instance."""
    return TaskRun(
        task_id=raw["task_id"],
        state=raw.get("state"),
        try_number=int(raw.get("try_number") or 0),
        started_at=parse_time(raw.get("start_date")),
        finished_at=parse_time(raw.get("end_date")),
        # Airflow keeps the previous try's duration on a try that has just started: none until this one ends
        duration_seconds=raw.get("duration") if raw.get("end_date") else None,
        pid=raw.get("pid"),
        hostname=raw.get("hostname"),
    )


def log_line_text(item: Any) -> str:
    """One item of an API task log (a structured event or a plain line) as text."""
    if isinstance(item, str):
        return item
    if isinstance(item, dict):
        event = str(item.get("event", ""))
        level = item.get("level")
        extra = ""
        if item.get("error_detail"):
            details = item["error_detail"]
            if isinstance(details, list):
                extra = " | " + " | ".join(f"{d.get('exc_type')}: {d.get('exc_value')}" for d in details if isinstance(d, dict))
        return f"[{level}] {event}{extra}" if level else event + extra
    return str(item)


def info_from_entry(
    entry: SpecEntry, dag: Mapping[str, Any] | None, running: bool, *, default_engine: str | None = None
) -> WorkflowInfo:
    """A :class:`WorkflowInfo` from a store entry and its DAG in Airflow (``None``: not parsed yet).

    :param default_engine: ``[dli] default_engine`` when the caller has read it already (a list of 1,000
        entries reads Airflow's config once, not once per spec without an ``engine``)
    """
    spec = entry.spec
    status = entry.status
    if status is not WorkflowStatus.OVERRIDDEN and dag is not None:
        status = WorkflowStatus.PAUSED if dag.get("is_paused") else WorkflowStatus.ACTIVE
    next_run = None
    if dag is not None and status is WorkflowStatus.ACTIVE:
        next_run = parse_time(dag.get("next_dagrun_run_after") or dag.get("next_dagrun_logical_date"))
        if next_run is not None and spec.schedule is not None and spec.schedule.timezone:
            from zoneinfo import ZoneInfo

            next_run = next_run.astimezone(ZoneInfo(spec.schedule.timezone))  # shown in the spec's own zone
    return WorkflowInfo(
        dataset_name=spec.name,
        source_type=entry.source,
        status=status,
        cron=spec.schedule.cron if spec.schedule else None,
        timezone=spec.schedule.timezone if spec.schedule else None,
        next_run=next_run,
        overridden_by=entry.overridden_by,
        owner=spec.owner,
        team=spec.team,
        engine=spec.engine or default_engine or spec.resolved_engine,
        description=spec.description,
        depends_on=tuple(spec.depends_on),
        parameters=tuple(f"{p.name} ({'required' if p.required else 'optional'})" for p in spec.parameters),
        in_airflow=dag is not None,
        is_running=running,
        spec_file=entry.path,
    )


def entry_for_run(snapshot: StoreSnapshot, name: str, source: SourceType | None) -> SpecEntry | None:
    """The spec a run of ``name`` uses (``None``: no spec of that name, e.g. a DAG whose spec went away).

    :raises WorkflowNotFoundError: ``source`` was asked for and the store has no spec of that source
    :raises WorkflowExecutionError: the copy asked for is overridden by code
    """
    try:
        entry = snapshot.get(name, source)
    except DatasetNotFoundError:
        if source is None:
            return None
        raise WorkflowNotFoundError(f"Dataset {name!r} has no {source.value} spec in the store {snapshot.store}") from None
    if entry.status is WorkflowStatus.OVERRIDDEN:
        raise WorkflowExecutionError(
            f"Workflow {name!r} ({entry.source.value}) is overridden by code: the code version is active",
            hint=f"run the code version: dli workflow run {name} (without --source manual)",
        )
    return entry


def check_runnable(name: str, dag: Mapping[str, Any]) -> None:
    """A run of a paused DAG would wait in the queue: refuse it with what to do."""
    if dag.get("is_paused"):
        raise WorkflowExecutionError(
            f"Workflow {name!r} is paused, so a run would wait in the queue until it is unpaused",
            hint=f"unpause it first: dli workflow unpause {name}",
        )


def merge_workflows(
    entries: Iterable[SpecEntry], dags: Mapping[str, Mapping[str, Any]], running: set[str], *, only: str | None = None,
    orphans: bool = True,
) -> list[WorkflowInfo]:
    """Every workflow: the store's entries joined with their DAGs (API-shaped dicts by dag id), then the dli
    DAGs the store does not explain; sorted by name, then source.

    :param orphans: list those DAGs too (their spec is not readable here). ``False`` when the whole store was
        read: a dli DAG without a spec is then one whose spec was removed, which Airflow keeps listing until
        the dag-processor deactivates it (``[dag_processor] stale_dag_threshold``, a minute or two)
    """
    infos: list[WorkflowInfo] = []
    seen: set[str] = set()
    default_engine: str | None = None
    for entry in entries:
        if only is not None and entry.name != only:
            continue
        if default_engine is None and entry.spec.engine is None:
            from dli_airflow import config

            default_engine = config.default_engine()
        dag = dags.get(entry.name) if entry.schedules else None
        infos.append(info_from_entry(entry, dag, entry.name in running, default_engine=default_engine))
        if entry.schedules:
            seen.add(entry.name)
    for dag_id, dag in dags.items():
        if not orphans or dag_id in seen or has_tag(dag, "dli:errors") or (only is not None and dag_id != only):
            continue
        infos.append(info_from_dag(dag, dag_id in running))
    infos.sort(key=lambda i: (i.dataset_name, i.source_type.value))
    return infos


def select_workflows(
    infos: Iterable[WorkflowInfo],
    *,
    source: SourceType | None = None,
    status: WorkflowStatus | None = None,
    dataset_filter: str | None = None,
    running_only: bool = False,
    enabled_only: bool = False,
) -> list[WorkflowInfo]:
    """The workflows that pass every filter given (``dataset_filter``: a case-insensitive substring)."""
    needle = (dataset_filter or "").lower()
    return [
        i
        for i in infos
        if (source is None or i.source_type is source)
        and (status is None or i.status is status)
        and (not needle or needle in i.dataset_name.lower())
        and (not running_only or i.is_running)
        and (not enabled_only or i.status is WorkflowStatus.ACTIVE)
    ]


def info_from_dag(dag: Mapping[str, Any], running: bool) -> WorkflowInfo:
    """A :class:`WorkflowInfo` from an API DAG alone (its spec is not readable here)."""
    paused = bool(dag.get("is_paused"))
    timetable = dag.get("timetable_summary") or None
    return WorkflowInfo(
        dataset_name=dag["dag_id"],
        source_type=source_of(dag) or SourceType.CODE,
        status=WorkflowStatus.PAUSED if paused else WorkflowStatus.ACTIVE,
        cron=timetable,
        next_run=None if paused else parse_time(dag.get("next_dagrun_run_after")),
        owner=", ".join(dag.get("owners") or []) or None,
        description=dag.get("description"),
        in_airflow=True,
        is_running=running,
    )


__all__ = [
    "BACKFILL_REF_PREFIX",
    "BACKFILL_TOKEN_KEY",
    "KILLED_NOTE_PREFIX",
    "RESERVED_CONF_PREFIX",
    "RUN_ID_PATTERN",
    "RunStatus",
    "SourceType",
    "TaskLog",
    "TaskRun",
    "WorkflowHistoryResult",
    "WorkflowInfo",
    "WorkflowListResult",
    "WorkflowPage",
    "WorkflowRegisterResult",
    "WorkflowRun",
    "WorkflowRunResult",
    "WorkflowStatus",
    "WorkflowStatusResult",
    "check_backfill",
    "check_runnable",
    "dataset_of_run_id",
    "entry_for_run",
    "info_from_dag",
    "info_from_entry",
    "log_line_text",
    "make_run_id",
    "merge_workflows",
    "parse_time",
    "run_from_api",
    "run_status",
    "select_workflows",
    "source_of",
    "task_from_api",
    "tasks_from_api",
]
