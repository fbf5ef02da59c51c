"""The run methods of :class:`~dli_airflow.client.WorkflowClient`: run, backfill, status, logs, stop, history,
watch (the way airflow-ctl keeps each resource group of its client in its own module). No Airflow here.
"""

from __future__ import annotations

import getpass
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import date, datetime, timezone
from datetime import time as dtime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from dli_airflow._api import detail
from dli_airflow.errors import DliError, ParameterError, ServerUnreachableError, WorkflowExecutionError, parse_choice
from dli_airflow.kinds import DatasetStatus, SourceType
from dli_airflow.workflow import (
    KILLED_NOTE_PREFIX,
    RunStatus,
    TaskLog,
    WorkflowHistoryResult,
    WorkflowInfo,
    WorkflowListResult,
    WorkflowRun,
    WorkflowRunResult,
    WorkflowStatusResult,
    backfill_id_of,
    backfill_ref,
    backfill_status,
    dataset_of_run_id,
    log_line_text,
    make_run_id,
    parse_time,
    run_from_api,
    run_status,
    source_of,
    tasks_from_api,
)

if TYPE_CHECKING:
    from dli_airflow._api import ApiTransport
    from dli_airflow.catalog import SpecEntry


class RunMethods:
    """Runs of dli workflows on Airflow; mixed into :class:`~dli_airflow.client.WorkflowClient`, which
    provides the transport, the control plane and the DAG look-ups these methods use."""

    if TYPE_CHECKING:
        _api: ApiTransport

        def _require_dag(self, name: str) -> dict[str, Any]: ...
        def _check_runnable(self, name: str, dag: dict[str, Any]) -> None: ...
        def _needs_plane(self, action: str) -> DliError: ...
        def _conf_without_spec(self, name: str, parameters: Mapping[str, Any] | None) -> dict[str, Any]: ...
        def _dli_dags(self) -> dict[str, dict[str, Any]]: ...
        def list_workflows(self) -> WorkflowListResult: ...
        def _plane(self) -> bool: ...
        def _dli(self, method: str, path: str, **kwargs: Any) -> Any: ...

    def run(
        self,
        dataset_name: str,
        parameters: Mapping[str, Any] | None = None,
        dry_run: bool = False,
        *,
        source_type: SourceType | str | None = None,
        note: str | None = None,
    ) -> WorkflowRunResult:
        """Trigger an ad-hoc run on Airflow (``dry_run``: render and parse the SQL, trigger nothing).

        With dli's control plane in Airflow the parameters are validated and coerced against the spec on the
        server; without it, only by name against the DAG's params (Airflow checks the types)."""
        if self._plane():
            source = parse_choice(SourceType, source_type, "--source")
            body = {"parameters": dict(parameters or {}), "source": source.value if source else None,
                    "note": note, "dry_run": dry_run}  # the server notes who triggered it: the authenticated user
            # the server makes the run id, so a blind retry could start two runs: not retried
            return WorkflowRunResult.model_validate(self._dli("POST", f"/workflows/{dataset_name}/runs", json=body))
        # Airflow without dli's control plane: the names checked against the DAG's params, the types by Airflow
        if dry_run:
            raise self._needs_plane("A dry run (the SQL rendered against the spec)")
        if source_type is not None:
            raise self._needs_plane("Choosing the copy to run by --source")
        dag = self._require_dag(dataset_name)
        conf = self._conf_without_spec(dataset_name, parameters)
        self._check_runnable(dataset_name, dag)
        run_id = make_run_id(dataset_name, "adhoc")
        body = {
            "logical_date": None,
            "dag_run_id": run_id,
            "conf": conf,
            "note": note or f"triggered by {_user()} through dli",
        }
        # the run id is new and ours, so a retry is safe: Airflow on SQLite answers 500/503 when a lock made the
        # write fail, and a 409 after a retry means the earlier attempt did create our run
        response = self._api.request(
            "POST", f"/dags/{dataset_name}/dagRuns", json=body, ok=(200, 400, 409, 422), retry_statuses=(500, 503)
        )
        if response.status_code == 409:
            mine = self._api.request("GET", f"/dags/{dataset_name}/dagRuns/{run_id}", ok=(200, 404))
            if mine.status_code == 200:
                response = mine
        if response.status_code != 200:
            raise ParameterError(f"Airflow refused the run of {dataset_name!r}: {detail(response)}")
        return WorkflowRunResult(
            dataset_name=dataset_name,
            action="run",
            run_id=run_id,
            run_status=run_status(response.json()),
            message=f"Run started: {run_id}",
        )

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
        """Backfill with Airflow's backfill API: one run per scheduled time whose local date is in
        [start, end], in order, one at a time (``max_active_runs=1``). ``dry_run`` lists the dates.

        The run of a date whose previous date failed in the same backfill fails at once without running its
        SQL (the operator checks the run's Airflow backfill), so the backfill stops at its first failure;
        :meth:`wait_backfill` (the CLI's ``--wait``) also cancels the remaining runs in Airflow.
        """
        if self._plane():
            source = parse_choice(SourceType, source_type, "--source")
            body = {"start": str(start_date), "end": str(end_date), "parameters": dict(parameters or {}),
                    "source": source.value if source else None, "dry_run": dry_run}
            # a retry could start a second backfill (409 then): not retried
            started = WorkflowRunResult.model_validate(self._dli("POST", f"/workflows/{dataset_name}/backfills", json=body))
            return self._with_run_ids(started)
        # Airflow without dli's control plane: only the DAG's own params to check the names against
        start, end = backfill_window(start_date, end_date, parameters)
        dag = self._require_dag(dataset_name)
        conf = self._conf_without_spec(dataset_name, parameters)
        tz = self._api.get(f"/dags/{dataset_name}/details").get("timezone") or "UTC"
        body = backfill_request(dataset_name, start, end, conf, tz)
        dry = self._api.request("POST", "/backfills/dry_run", json=body, ok=(200, 409, 422), idempotent=True)
        if dry.status_code != 200:
            raise WorkflowExecutionError(f"Airflow refused the backfill of {dataset_name!r}: {detail(dry)}")
        dates = dry_run_dates(dataset_name, start, end, dry.json())
        if dry_run:
            return backfill_started(dataset_name, dates, None)
        self._check_runnable(dataset_name, dag)
        # Airflow on SQLite answers 503 "Database is locked" when it could not create the backfill: nothing
        # was created, so trying again is safe
        response = self._api.request("POST", "/backfills", json=body, ok=(200, 409, 422), retry_statuses=(503,))
        if response.status_code == 409:
            raise WorkflowExecutionError(
                f"A backfill of {dataset_name!r} is already running",
                hint="wait for it or stop it (dli workflow stop RUN_ID -d DATASET)",
            )
        if response.status_code != 200:
            raise ParameterError(f"Airflow refused the backfill of {dataset_name!r}: {detail(response)}")
        return self._with_run_ids(backfill_started(dataset_name, dates, int(response.json()["id"])))

    def _with_run_ids(self, started: WorkflowRunResult) -> WorkflowRunResult:
        """A started backfill with the ids of the runs Airflow made for it (what `status` and `stop` take)."""
        if started.dry_run or started.backfill_id is None or not started.logical_dates:
            return started
        try:  # Airflow creates a backfill's runs with it; a DAG has one run per logical date
            raw = self._api.get(f"/dags/{started.dataset_name}/dagRuns", limit=1000, order_by="logical_date",
                                logical_date_gte=min(started.logical_dates).isoformat(),
                                logical_date_lte=max(started.logical_dates).isoformat())["dag_runs"]
        except DliError:  # the backfill is started either way; `history NAME` lists its runs
            return started
        wanted = set(started.logical_dates)
        ids = [r["dag_run_id"] for r in raw if r.get("logical_date") and parse_time(r["logical_date"]) in wanted]
        return started.model_copy(update={"run_ids": tuple(ids)})

    def backfill_runs(self, dataset_name: str, backfill_id: int) -> list[WorkflowRun]:
        """The runs of a backfill, in logical-date order: the backfill runs of the dataset inside its range."""
        return self._backfill_runs(self._api.get(f"/backfills/{backfill_id}"), dataset_name)

    def _backfill_runs(self, backfill: Mapping[str, Any], dataset_name: str | None = None) -> list[WorkflowRun]:
        runs = self._api.get(
            f"/dags/{dataset_name or backfill['dag_id']}/dagRuns", run_type="backfill", limit=1000,
            order_by="logical_date", logical_date_gte=backfill["from_date"], logical_date_lte=backfill["to_date"],
        )["dag_runs"]
        return [run_from_api(r) for r in runs]

    def _backfill(self, backfill_id: int) -> dict[str, Any]:
        response = self._api.request("GET", f"/backfills/{backfill_id}", ok=(200, 404))
        if response.status_code == 404:
            raise WorkflowExecutionError(
                f"No backfill {backfill_id} in Airflow", hint="the id is the one `dli workflow backfill` printed",
                run_id=backfill_ref(backfill_id),
            )
        return dict(response.json())

    def _backfill_status(self, backfill_id: int, dataset: str | None) -> WorkflowStatusResult:
        """A backfill as one run: every date's run, one status for all (:func:`~dli_airflow.workflow.backfill_status`)."""
        backfill = self._backfill(backfill_id)
        if dataset is not None and backfill["dag_id"] != dataset:
            raise WorkflowExecutionError(f"Backfill {backfill_id} is of {backfill['dag_id']!r}, not {dataset!r}",
                                         run_id=backfill_ref(backfill_id))
        runs = self._backfill_runs(backfill)
        status = backfill_status(runs, completed=backfill.get("completed_at") is not None)
        starts = [r.started_at for r in runs if r.started_at]
        ends = [r.finished_at for r in runs if r.finished_at]
        conf = {k: v for k, v in (backfill.get("dag_run_conf") or {}).items() if not k.startswith("__dli")}
        run = WorkflowRun(
            run_id=backfill_ref(backfill_id), dataset_name=backfill["dag_id"], status=status, run_type="backfill",
            parameters=conf, logical_date=runs[0].logical_date if runs else None,
            started_at=min(starts) if starts else None,
            finished_at=max(ends) if ends and status.is_terminal else None,
        )
        error = None
        failed = next((r for r in runs if r.status is RunStatus.FAILED), None)
        if failed is not None:
            first = self.get_status(failed.run_id, dataset=failed.dataset_name).error_message
            error = f"{failed.logical_date:%Y-%m-%d} ({failed.run_id}): {first}" if first else None
        return WorkflowStatusResult(run=run, error_message=error, runs=tuple(runs))

    def wait_backfill(
        self,
        result: WorkflowRunResult,
        *,
        poll: float = 2.0,
        timeout: float | None = None,
        on_progress: Callable[[list[WorkflowRun]], None] | None = None,
    ) -> list[WorkflowRun]:
        """Wait for a backfill; at the first failed date, cancel the remaining runs (Airflow would go on)."""
        assert result.backfill_id is not None, "not a started backfill"
        deadline = None if timeout is None else time.monotonic() + timeout
        total = len(result.logical_dates)
        while True:
            runs = self.backfill_runs(result.dataset_name, result.backfill_id)
            if on_progress is not None:
                on_progress(runs)
            failed = [r for r in runs if r.status in (RunStatus.FAILED, RunStatus.KILLED)]
            if failed:
                self._api.request("PUT", f"/backfills/{result.backfill_id}/cancel", ok=(200, 409))
                return self.backfill_runs(result.dataset_name, result.backfill_id)
            if len(runs) >= total and all(r.status.is_terminal for r in runs):
                return runs
            if deadline is not None and time.monotonic() > deadline:
                raise WorkflowExecutionError(f"the backfill of {result.dataset_name!r} did not finish in {timeout:.0f}s")
            time.sleep(poll)

    def _find_run(self, run_id: str, dataset: str | None) -> dict[str, Any]:
        if dataset is None:
            dataset = dataset_of_run_id(run_id)
        if dataset is not None:
            response = self._api.request("GET", f"/dags/{dataset}/dagRuns/{run_id}", ok=(200, 404))
            if response.status_code == 404:
                raise WorkflowExecutionError(
                    f"Run {run_id!r} of {dataset!r} is not in Airflow",
                    hint=f"list the runs with: dli workflow history -d {dataset}", run_id=run_id, dataset_name=dataset,
                )
            return response.json()
        runs = self._api.get("/dags/~/dagRuns", run_id_pattern=run_id, limit=100)["dag_runs"]
        exact = [r for r in runs if r["dag_run_id"] == run_id]
        datasets = sorted({r["dag_id"] for r in exact})
        if not exact:
            raise WorkflowExecutionError(
                f"No run {run_id!r} in Airflow", hint="check the id (dli workflow history) or pass -d DATASET",
                run_id=run_id,
            )
        if len(datasets) > 1:
            raise WorkflowExecutionError(
                f"Run id {run_id!r} matches runs of {len(datasets)} datasets: {', '.join(datasets)}",
                hint="pass -d/--dataset to say which", run_id=run_id,
            )
        return exact[0]

    def get_status(self, run_id: str, *, dataset: str | None = None) -> WorkflowStatusResult:
        """The state of one run, its task tries, and for a failed run the error from the task's log.

        A backfill's id (``backfill:12``, the ``run_id`` :meth:`backfill` returns) gives the backfill as one
        run: ``runs`` holds each date's run, the status is all of them (RUNNING until every date ended)."""
        backfill_id = backfill_id_of(run_id)
        if backfill_id is not None:
            return self._backfill_status(backfill_id, dataset)
        raw = self._find_run(run_id, dataset)
        run = run_from_api(raw)
        tis = self._api.get(f"/dags/{raw['dag_id']}/dagRuns/{run_id}/taskInstances")["task_instances"]
        tasks = tasks_from_api(tis)
        error = None
        if run.status is RunStatus.FAILED:
            failed = next((t for t in tasks if t.state in ("failed", "upstream_failed")), None)
            if failed is not None and failed.try_number:
                error = self._error_from_log(raw["dag_id"], run_id, failed.task_id, failed.try_number)
        result = None
        if run.status is RunStatus.COMPLETED and any(t.task_id == "run" for t in tasks):
            response = self._api.request(
                "GET", f"/dags/{raw['dag_id']}/dagRuns/{run_id}/taskInstances/run/xcomEntries/return_value",
                ok=(200, 404),
            )
            if response.status_code == 200 and isinstance(response.json().get("value"), dict):
                result = response.json()["value"]
        return WorkflowStatusResult(run=run, tasks=tasks, error_message=error, result=result)

    def _error_from_log(self, dag_id: str, run_id: str, task_id: str, try_number: int) -> str | None:
        try:
            lines = self._log_lines(dag_id, run_id, task_id, try_number)
        except DliError:
            return None
        dli = [line for line in lines if "[DLI-" in line]
        if dli:
            return dli[-1].strip()
        errors = [line for line in lines if "error" in line.lower()]
        return errors[-1].strip() if errors else None

    def _log_lines(self, dag_id: str, run_id: str, task_id: str, try_number: int) -> list[str]:
        lines: list[str] = []
        token: str | None = None
        for _ in range(50):
            params = {"full_content": "true"}
            if token:
                params["token"] = token
            response = self._api.request(
                "GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/logs/{try_number}",
                params=params, ok=(200, 404),
            )
            if response.status_code == 404:
                raise WorkflowExecutionError(f"No log for try {try_number} of task {task_id!r} of run {run_id!r}")
            data = response.json()
            for item in data.get("content") or []:
                lines.extend(log_line_text(item).splitlines())
            token = data.get("continuation_token")
            if not token or not data.get("content"):
                break
        return lines

    def logs(
        self, run_id: str, task_id: str = "run", try_number: int | None = None, *, dataset: str | None = None
    ) -> TaskLog:
        """The log of a task try (default: the task ``run``, its latest try)."""
        if backfill_id_of(run_id) is not None:
            raise WorkflowExecutionError(
                f"{run_id} is a backfill: each of its dates has its own log",
                hint=f"pass one of its run ids (dli workflow status {run_id} lists them)", run_id=run_id,
            )
        raw = self._find_run(run_id, dataset)
        if try_number is None:
            ti = self._api.request(
                "GET", f"/dags/{raw['dag_id']}/dagRuns/{run_id}/taskInstances/{task_id}", ok=(200, 404)
            )
            if ti.status_code == 404:
                raise WorkflowExecutionError(f"Run {run_id!r} has no task {task_id!r}")
            try_number = max(1, int(ti.json().get("try_number") or 1))
        lines = self._log_lines(raw["dag_id"], run_id, task_id, try_number)
        return TaskLog(run_id=run_id, task_id=task_id, try_number=try_number, lines=tuple(lines))

    def stop(self, run_id: str, *, dataset: str | None = None, wait: float = 0.0) -> WorkflowRunResult:
        """Stop a run: Airflow marks it failed and terminates its task process (SIGTERM, then SIGKILL ~5 s
        later); the run's note records that a user stopped it, so it reads ``KILLED``.

        A backfill's id (``backfill:12``) stops the backfill: Airflow cancels the dates not started yet (they
        read FAILED) and the running date is stopped (KILLED).

        :param wait: seconds to wait until the task instances have ended (0: return at once).
        """
        backfill_id = backfill_id_of(run_id)
        if backfill_id is not None:
            return self._stop_backfill(backfill_id, dataset, wait)
        raw = self._find_run(run_id, dataset)
        run = run_from_api(raw)
        if run.status.is_terminal:
            raise WorkflowExecutionError(
                f"Run {run_id!r} has already ended ({run.status.value}); nothing to stop"
            )
        dag_id = raw["dag_id"]
        if self._plane():  # the server notes who stopped it: the authenticated user
            try:
                self._dli("POST", f"/workflows/{dag_id}/runs/{run_id}/stop")
            except ServerUnreachableError:
                # the answer timed out (on SQLite a write can wait >30 s for the lock): the stop may have been
                # made; look before asking once more, so a run is never reported as not stopped, nor stopped twice
                if not run_from_api(self._find_run(run_id, dag_id)).status.is_terminal:
                    self._dli("POST", f"/workflows/{dag_id}/runs/{run_id}/stop")
        else:
            note = f"{KILLED_NOTE_PREFIX} {_user()} through dli at {datetime.now(timezone.utc):%Y-%m-%d %H:%M:%S} UTC"
            self._api.request("PATCH", f"/dags/{dag_id}/dagRuns/{run_id}", json={"note": note}, params={"update_mask": "note"})
            self._api.request("PATCH", f"/dags/{dag_id}/dagRuns/{run_id}", json={"state": "failed"}, params={"update_mask": "state"})
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            tis = self._api.get(f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances")["task_instances"]
            if all(t.get("end_date") for t in tis):
                break
            time.sleep(0.5)
        return WorkflowRunResult(
            dataset_name=dag_id, action="stop", run_id=run_id, run_status=RunStatus.KILLED, message=f"Stopped {run_id}"
        )

    def _stop_backfill(self, backfill_id: int, dataset: str | None, wait: float) -> WorkflowRunResult:
        backfill = self._backfill(backfill_id)
        ref = backfill_ref(backfill_id)
        if dataset is not None and backfill["dag_id"] != dataset:
            raise WorkflowExecutionError(f"Backfill {backfill_id} is of {backfill['dag_id']!r}, not {dataset!r}", run_id=ref)
        if backfill.get("completed_at") is not None:
            raise WorkflowExecutionError(f"Backfill {backfill_id} has already ended; nothing to stop", run_id=ref)
        self._api.request("PUT", f"/backfills/{backfill_id}/cancel", ok=(200, 409))  # 409: it just completed
        stopped = 0
        for run in self._backfill_runs(backfill):
            if run.status is RunStatus.RUNNING:
                try:
                    self.stop(run.run_id, dataset=run.dataset_name, wait=wait)
                    stopped += 1
                except WorkflowExecutionError:  # it ended meanwhile
                    pass
        return WorkflowRunResult(
            dataset_name=backfill["dag_id"], action="stop", run_id=ref, run_status=RunStatus.KILLED, backfill_id=backfill_id,
            message=f"Stopped backfill {backfill_id}: the dates not started are cancelled"
            + (", the running one stopped" if stopped else ""),
        )

    def history(
        self,
        dataset_name: str | None = None,
        source_type: SourceType | str | None = None,
        run_status: RunStatus | str | None = None,
        limit: int = 20,
        include_dataset_info: bool = False,
    ) -> WorkflowHistoryResult:
        """Recent runs, newest first, across dli workflows (or one dataset, or one backfill: ``backfill:12``)."""
        backfill_id = backfill_id_of(dataset_name)
        if backfill_id is not None:
            runs = list(reversed(self._backfill_runs(self._backfill(backfill_id))))[:limit]
            return WorkflowHistoryResult(runs=tuple(runs), total_count=len(runs))
        source = parse_choice(SourceType, source_type, "--source")
        wanted = parse_choice(RunStatus, run_status, "--status")
        dags = self._dli_dags() if dataset_name is None or source is not None or include_dataset_info else {}
        if dataset_name is not None:
            dag_ids = [dataset_name]
        else:
            dag_ids = [d for d, dag in dags.items() if source is None or source_of(dag) is source]
        if source is not None:
            dag_ids = [d for d in dag_ids if d in dags and source_of(dags[d]) is source]
        states = {
            RunStatus.PENDING: ["queued"],
            RunStatus.RUNNING: ["running"],
            RunStatus.COMPLETED: ["success"],
            RunStatus.FAILED: ["failed"],
            RunStatus.KILLED: ["failed"],
        }.get(wanted) if wanted else None
        runs: list[WorkflowRun] = []
        offset = 0
        while len(runs) < limit and dag_ids:
            page_size = min(max(limit * 2, 50), 1000)
            # newest created first: a backfill of 2024 dates started today is recent (run_after would rank it
            # below last week's scheduled runs)
            body = {"dag_ids": dag_ids, "states": states, "order_by": "-id", "page_limit": page_size,
                    "page_offset": offset}
            page = self._api.request("POST", "/dags/~/dagRuns/list", json=body, idempotent=True).json()
            batch = page["dag_runs"]
            for raw in batch:
                run = run_from_api(raw, dags.get(raw["dag_id"]))
                if wanted is None or run.status is wanted:
                    runs.append(run)
            offset += len(batch)
            if len(batch) < page_size or offset >= (page.get("total_entries") or 0):
                break
        runs = runs[:limit]
        info: dict[str, WorkflowInfo] = {}
        if include_dataset_info:
            listed = self.list_workflows().workflows  # the control plane's join with the store, when there is one
            by_name = {i.dataset_name: i for i in listed if i.status is not DatasetStatus.OVERRIDDEN}
            info = {r.dataset_name: by_name[r.dataset_name] for r in runs if r.dataset_name in by_name}
        return WorkflowHistoryResult(runs=tuple(runs), total_count=len(runs), dataset_info=info)

    def watch(self, run_id: str, *, dataset: str | None = None, poll: float = 1.0,
              timeout: float | None = None) -> Iterator[WorkflowStatusResult]:
        """Yield the run's status every ``poll`` seconds until it ends."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            status = self.get_status(run_id, dataset=dataset)
            yield status
            if status.is_terminal:
                return
            if deadline is not None and time.monotonic() > deadline:
                raise WorkflowExecutionError(f"run {run_id!r} did not finish in {timeout:.0f}s")
            time.sleep(poll)


def backfill_window(start_date: date | str, end_date: date | str, parameters: Mapping[str, Any] | None) -> tuple[date, date]:
    """The backfill's first and last dates, checked (``execution_date`` comes from each scheduled date)."""
    from dli_airflow.params import parse_day

    start, end = parse_day(start_date, "--start"), parse_day(end_date, "--end")
    if end < start:
        raise ParameterError(f"end date {end} is before start date {start}", hint="swap -s and -e")
    if parameters and "execution_date" in parameters:
        raise ParameterError(
            "a backfill sets execution_date from each scheduled date; do not pass -p execution_date",
            hint="drop -p execution_date",
        )
    return start, end


def backfill_request(name: str, start: date, end: date, conf: dict[str, Any], tz: str) -> dict[str, Any]:
    """The body of Airflow's ``POST /backfills`` (and its dry run): the local dates [start, end] in ``tz``,
    one run at a time (the run of a date after a failed one stops at once: see the operator)."""
    zone = ZoneInfo(tz)
    return {
        "dag_id": name,
        "from_date": datetime.combine(start, dtime.min, tzinfo=zone).isoformat(),
        "to_date": datetime.combine(end, dtime.max.replace(microsecond=0), tzinfo=zone).isoformat(),
        "run_backwards": False,
        "dag_run_conf": conf,  # the operator finds the runs' backfill itself: no key of dli's in their conf
        "reprocess_behavior": "completed",
        "max_active_runs": 1,
    }


def dry_run_dates(name: str, start: date, end: date, dry: Mapping[str, Any]) -> tuple[datetime, ...]:
    """The logical dates of Airflow's backfill dry run, in order (none: DLI-802, naming the cron)."""
    dates = tuple(sorted(parse_time(item["logical_date"]) for item in dry.get("backfills", []) if item.get("logical_date")))
    if not dates:
        raise WorkflowExecutionError(
            f"No scheduled run of {name!r} falls between {start} and {end}",
            hint="check the dates against the cron (dli workflow get NAME)",
        )
    return dates


def backfill_started(name: str, dates: tuple[datetime, ...], backfill_id: int | None) -> WorkflowRunResult:
    """What a backfill answers: its dates, and (unless a dry run) Airflow's backfill id."""
    if backfill_id is None:
        return WorkflowRunResult(
            dataset_name=name, action="backfill", dry_run=True, logical_dates=dates,
            message=f"dry run: would run {len(dates)} date(s) from {dates[0]} to {dates[-1]}",
        )
    # its run_id is the backfill as one id (``backfill:12``): status, stop, watch and history take it; the ids
    # of its runs, which Airflow chooses, are ``run_ids`` once they are listed
    return WorkflowRunResult(
        dataset_name=name, action="backfill", run_id=backfill_ref(backfill_id), run_status=RunStatus.PENDING,
        logical_dates=dates, backfill_id=backfill_id,
        message=f"Backfill {backfill_id} started: {len(dates)} date(s) from {dates[0].date()} to {dates[-1].date()}",
    )


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no user database in some containers
        return "unknown"


def _render_dry(entry: SpecEntry, parameters: Mapping[str, Any] | None) -> tuple[str, ...]:
    from dli_airflow.params import local_execution_date
    from dli_airflow.render import parse_sql, render_entry

    execution_date = local_execution_date(entry.spec)
    rendered = render_entry(entry, parameters, execution_date=execution_date)
    for statement in rendered.statements:
        parse_sql(statement.sql, rendered.dialect, entry.sql_path or entry.path)
    return tuple(statement.display for statement in rendered.statements)  # values inlined, for reading


__all__ = ["RunMethods"]
