"""The fake's backfills: Airflow's one-run-per-scheduled-date, in order, stopping at the first failed date."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import date, datetime, time, timedelta, timezone
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from dli_airflow.errors import WorkflowExecutionError
from dli_airflow.kinds import SourceType
from dli_airflow.workflow import (
    RunStatus,
    WorkflowRun,
    WorkflowRunResult,
    WorkflowStatusResult,
    backfill_id_of,
    backfill_status,
    check_runnable,
)

if TYPE_CHECKING:
    from collections.abc import Iterator


class FakeBackfills:
    """Backfill methods of :class:`~dli_airflow.testing.FakeWorkflowClient` (which provides the runs)."""

    if TYPE_CHECKING:
        _runs: dict[str, Any]
        _backfills: dict[int, list[str]]

        def _entry_and_dag(self, name: str, source_type: Any) -> tuple[Any, dict[str, Any]]: ...
        def _new_run(self, name: str, kind: str, conf: dict[str, Any], logical_date: datetime | None,
                     note: str | None = None, backfill_id: int | None = None) -> Any: ...
        def _move(self, run_id: str, to: RunStatus, **kwargs: Any) -> WorkflowRun: ...
        def get_status(self, run_id: str, *, dataset: str | None = None) -> WorkflowStatusResult: ...
        def watch(self, run_id: str, *, dataset: str | None = None, poll: float = 1.0,
                  timeout: float | None = None) -> Iterator[WorkflowStatusResult]: ...

    def backfill(
        self,
        dataset_name: str,
        start_date: date | str,
        end_date: date | str,
        parameters: Mapping[str, Any] | None = None,
        dry_run: bool = False,
        *,
        source_type: SourceType | str | None = None,
    ) -> WorkflowRunResult:
        from dli_airflow._runs import backfill_started, backfill_window
        from dli_airflow.local import run_dates
        from dli_airflow.params import conf_for_backfill

        start, end = backfill_window(start_date, end_date, parameters)
        entry, dag = self._entry_and_dag(dataset_name, source_type)
        conf = conf_for_backfill(entry.spec, parameters)
        moments = _scheduled_moments(entry.spec, run_dates(entry.spec, start, end))
        if not moments:
            raise WorkflowExecutionError(
                f"No scheduled run of {dataset_name!r} falls between {start} and {end}",
                hint="check the dates against the cron (dli workflow get NAME)", dataset_name=dataset_name,
            )
        if dry_run:
            return backfill_started(dataset_name, moments, None)
        check_runnable(dataset_name, dag)
        if any(self._runs[r].run.status in (RunStatus.PENDING, RunStatus.RUNNING) for ids in self._backfills.values() for r in ids
               if self._runs[r].run.dataset_name == dataset_name):
            raise WorkflowExecutionError(f"A backfill of {dataset_name!r} is already running",
                                         hint="wait for it or stop it (dli workflow stop RUN_ID -d DATASET)")
        backfill_id = len(self._backfills) + 1
        runs = [self._new_run(dataset_name, "backfill", conf, moment, backfill_id=backfill_id) for moment in moments]
        self._backfills[backfill_id] = [r.run.run_id for r in runs]
        started = backfill_started(dataset_name, moments, backfill_id)
        return started.model_copy(update={"run_ids": tuple(self._backfills[backfill_id])})

    def backfill_runs(self, dataset_name: str, backfill_id: int) -> list[WorkflowRun]:
        return [self._runs[r].run for r in self._backfills.get(backfill_id, []) if self._runs[r].run.dataset_name == dataset_name]

    def wait_backfill(
        self,
        result: WorkflowRunResult,
        *,
        poll: float = 2.0,
        timeout: float | None = None,
        on_progress: Callable[[list[WorkflowRun]], None] | None = None,
    ) -> list[WorkflowRun]:
        assert result.backfill_id is not None, "not a started backfill"
        for run_id in self._backfills[result.backfill_id]:  # one date at a time, in order, as Airflow runs them
            for _ in self.watch(run_id):
                pass
            if on_progress is not None:
                on_progress(self.backfill_runs(result.dataset_name, result.backfill_id))
            if self._runs[run_id].run.status in (RunStatus.FAILED, RunStatus.KILLED):
                for rest in self._backfills[result.backfill_id]:  # the backfill stops at its first failed date
                    if not self._runs[rest].run.status.is_terminal:
                        self._move(rest, RunStatus.FAILED, error="an earlier date of this backfill failed")
                break
        return self.backfill_runs(result.dataset_name, result.backfill_id)

    def _backfill_ids(self, ref: str, dataset: str | None) -> list[str]:
        backfill_id = backfill_id_of(ref)
        ids = self._backfills.get(backfill_id) if backfill_id is not None else None
        if not ids:
            raise WorkflowExecutionError(f"No backfill {backfill_id} in Airflow",
                                         hint="the id is the one `dli workflow backfill` printed", run_id=ref)
        name = self._runs[ids[0]].run.dataset_name
        if dataset is not None and name != dataset:
            raise WorkflowExecutionError(f"Backfill {backfill_id} is of {name!r}, not {dataset!r}", run_id=ref)
        return ids

    def _backfill_status(self, ref: str, dataset: str | None) -> WorkflowStatusResult:
        ids = self._backfill_ids(ref, dataset)
        for run_id in ids:  # progress moves the date that runs now
            if not self._runs[run_id].run.status.is_terminal:
                self.get_status(run_id)
                break
        runs = [self._runs[r].run for r in ids]
        status = backfill_status(runs, completed=all(r.status.is_terminal for r in runs))
        starts = [r.started_at for r in runs if r.started_at]
        ends = [r.finished_at for r in runs if r.finished_at]
        failed = next((self._runs[r] for r in ids if self._runs[r].run.status is RunStatus.FAILED), None)
        error = f"{failed.run.logical_date:%Y-%m-%d} ({failed.run.run_id}): {failed.error}" if failed and failed.error else None
        run = WorkflowRun(run_id=ref, dataset_name=runs[0].dataset_name, status=status, run_type="backfill",
                          parameters=runs[0].parameters, logical_date=runs[0].logical_date,
                          started_at=min(starts) if starts else None,
                          finished_at=max(ends) if ends and status.is_terminal else None)
        return WorkflowStatusResult(run=run, error_message=error, runs=tuple(runs))


def _scheduled_moments(spec: Any, dates: list[date]) -> tuple[datetime, ...]:
    """The logical dates (UTC) a backfill of these local dates makes: one per scheduled time."""
    tz = ZoneInfo(spec.schedule.timezone if spec.schedule else "UTC")
    cron = spec.schedule.cron if spec.schedule else None
    if not dates:
        return ()
    if not cron:
        return tuple(datetime.combine(d, time.min, tzinfo=tz).astimezone(timezone.utc) for d in dates)
    from croniter import croniter

    wanted = set(dates)
    begin = datetime.combine(min(dates), time.min, tzinfo=tz) - timedelta(seconds=1)
    stop = datetime.combine(max(dates) + timedelta(days=1), time.min, tzinfo=tz)
    moments = []
    for moment in croniter(cron, begin).all_next(datetime):
        if moment >= stop:
            break
        if moment.astimezone(tz).date() in wanted:
            moments.append(moment.astimezone(timezone.utc))
    return tuple(moments)
