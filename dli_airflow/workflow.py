"""Frozen results of :class:`~dli_airflow.client.WorkflowClient` (seed 001 §2.2, 003 §8). No Airflow here."""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field

from dli_airflow.spec import DatasetStatus as WorkflowStatus
from dli_airflow.spec import SourceType


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
    model_config = ConfigDict(frozen=True)


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

    @property
    def duration_seconds(self) -> Optional[float]:
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


class WorkflowStatusResult(_Result):
    """The detailed state of one run."""

    run: WorkflowRun
    tasks: tuple[TaskRun, ...] = ()
    error_message: Optional[str] = None
    #: the task's result summary (XCom ``return_value``) of a completed run: rows affected, the first rows
    result: Optional[dict[str, Any]] = None

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


class WorkflowRegisterResult(_Result):
    source_type: SourceType
    workflow_info: WorkflowInfo
    spec_path: str
    sql_path: Optional[str] = None
    warning: Optional[str] = None


class WorkflowListResult(_Result):
    workflows: tuple[WorkflowInfo, ...]
    total_count: int


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


__all__ = [
    "RunStatus",
    "SourceType",
    "TaskLog",
    "TaskRun",
    "WorkflowHistoryResult",
    "WorkflowInfo",
    "WorkflowListResult",
    "WorkflowRegisterResult",
    "WorkflowRun",
    "WorkflowRunResult",
    "WorkflowStatus",
    "WorkflowStatusResult",
]
