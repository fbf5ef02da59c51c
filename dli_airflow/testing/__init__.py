"""``FakeWorkflowClient``: an in-memory stand-in for :class:`~dli_airflow.client.WorkflowClient`, for users' unit
tests (seed 001 §3.2, the MOCK mode).

It has the real client's methods with the real client's signatures (checked when this module is imported,
so the two cannot drift), returns the same result models and raises the same errors, because it runs the
same rules as dli's control plane on a private copy of a store folder: the store's code/manual resolution,
registration (``manual/`` only; a code name needs ``force``), pause rules (an overridden manual copy
cannot be unpaused), parameter validation and coercion against the spec, and the SQL rendered for a dry
run. Nothing leaves the process: no Airflow, no HTTP, no engine.

Runs do not execute. A run starts ``PENDING`` and moves when the test says so — :meth:`~FakeWorkflowClient.start`,
:meth:`~FakeWorkflowClient.complete`, :meth:`~FakeWorkflowClient.fail` — or along ``progress`` (one step per
status read, so ``watch`` and ``wait_backfill`` finish). Run ids start with ``mock_`` so they are never
mistaken for Airflow's.

    fake = FakeWorkflowClient(store="examples/store", progress=[RunStatus.RUNNING, RunStatus.COMPLETED])
    result = fake.run("analytics.daily_clicks", {"execution_date": "2025-01-01"})
    assert result.run_id.startswith("mock_")
    assert list(fake.watch(result.run_id))[-1].status is RunStatus.COMPLETED
"""

from __future__ import annotations

import inspect
import itertools
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from dli_airflow.client import WorkflowClient
from dli_airflow.errors import (
    DatasetNotFoundError,
    ParameterError,
    WorkflowExecutionError,
    WorkflowNotFoundError,
    WorkflowPermissionError,
    parse_choice,
)
from dli_airflow.kinds import DatasetStatus, SourceType
from dli_airflow.testing._backfills import FakeBackfills
from dli_airflow.workflow import (
    RunStatus,
    TaskLog,
    TaskRun,
    WorkflowHistoryResult,
    WorkflowInfo,
    WorkflowListResult,
    WorkflowRegisterResult,
    WorkflowRun,
    WorkflowRunResult,
    WorkflowStatusResult,
    backfill_id_of,
    check_runnable,
    entry_for_run,
    merge_workflows,
    select_workflows,
)

#: Every run id the fake makes starts with this (seed 001 §3.2: ``result.run_id.startswith("mock_")``).
FAKE_RUN_PREFIX = "mock_"


@dataclass
class _Run:
    run: WorkflowRun
    result: dict[str, Any] | None = None
    error: str | None = None
    log: list[str] = field(default_factory=list)
    backfill_id: int | None = None


class FakeWorkflowClient(FakeBackfills):
    """An in-memory :class:`~dli_airflow.client.WorkflowClient` over a private copy of a store folder.

    :param store: a store folder (``code/`` and ``manual/``) to copy; ``None`` for an empty store. The copy is
        the fake's own: registrations never touch the folder given. :attr:`store_path` is the copy.
    :param progress: statuses a run moves through, one per status read (e.g. ``[RUNNING, COMPLETED]``);
        ``None``: runs stay where they are until :meth:`start`, :meth:`complete` or :meth:`fail`.
    :param paused: datasets whose DAG starts paused (default: those whose spec has ``enabled: false``).
    """

    url = "mock://airflow"

    def __init__(
        self,
        store: str | os.PathLike[str] | None = None,
        *,
        progress: Sequence[RunStatus | str] | None = None,
        paused: Sequence[str] | None = None,
    ) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="dli-fake-store-")
        self.store_path = Path(self._tmp.name) / "store"
        if store is not None:
            shutil.copytree(Path(store), self.store_path, symlinks=False)
        for prefix in SourceType:
            (self.store_path / prefix.value).mkdir(parents=True, exist_ok=True)
        self._progress = tuple(RunStatus(p) for p in progress) if progress is not None else None
        self._paused: dict[str, bool] = {}
        self._explicit_paused = set(paused or ())
        self._runs: dict[str, _Run] = {}
        self._backfills: dict[int, list[str]] = {}
        self._ids = itertools.count(1)
        self.requests_made = 0  # nothing is ever sent

    # -- the store -----------------------------------------------------------------------------------------
    def _snapshot(self) -> Any:
        from dli_airflow.catalog import scan
        from dli_airflow.store import LocalStore

        return scan(LocalStore(self.store_path))

    def _dags(self) -> dict[str, dict[str, Any]]:
        """The DAGs Airflow would have: one per winning spec, paused as ``schedule.enabled`` says at first."""
        dags: dict[str, dict[str, Any]] = {}
        for entry in self._snapshot().active:
            name = entry.name
            if name not in self._paused:
                enabled = entry.spec.schedule is None or entry.spec.schedule.enabled
                self._paused[name] = name in self._explicit_paused or not enabled
            dags[name] = {"dag_id": name, "is_paused": self._paused[name], "tags": [{"name": "dli"}],
                          "next_dagrun_run_after": None}
        return dags

    def _running(self) -> set[str]:
        return {r.run.dataset_name for r in self._runs.values() if not r.run.status.is_terminal}

    # -- reads ---------------------------------------------------------------------------------------------
    def get(self, dataset_name: str) -> WorkflowInfo | None:
        infos = [i for i in self._infos(only=dataset_name) if i.dataset_name == dataset_name]
        infos.sort(key=lambda i: i.status is DatasetStatus.OVERRIDDEN)
        return infos[0] if infos else None

    def _infos(self, only: str | None = None) -> list[WorkflowInfo]:
        return merge_workflows(self._snapshot().entries, self._dags(), self._running(), only=only, orphans=False)

    def list_workflows(
        self,
        source_type: SourceType | str | None = None,
        status: DatasetStatus | str | None = None,
        dataset_filter: str | None = None,
        running_only: bool = False,
        enabled_only: bool = False,
        limit: int | None = None,
    ) -> WorkflowListResult:
        source = parse_choice(SourceType, source_type, "--source")
        wanted = parse_choice(DatasetStatus, status, "--status")
        selected = select_workflows(self._infos(), source=source, status=wanted, dataset_filter=dataset_filter,
                                    running_only=running_only, enabled_only=enabled_only)
        return WorkflowListResult(workflows=tuple(selected[:limit]), total_count=len(selected),
                                  problems=len(self._snapshot().problems))

    def problems(self) -> dict[str, Any]:
        snapshot = self._snapshot()
        return {"problems": [p.to_dict() for p in snapshot.problems], "warnings": list(snapshot.warnings)}

    def transitions(self, limit: int = 20) -> list[dict[str, Any]]:
        return []  # no dli_sync runs in a fake

    # -- pause -----------------------------------------------------------------------------------------------
    def _set_paused(self, name: str, paused: bool, source_type: SourceType | str | None) -> WorkflowRunResult:
        action = "pause" if paused else "unpause"
        wanted = parse_choice(SourceType, source_type, "--source")
        try:
            entry = self._snapshot().get(name, wanted)
        except DatasetNotFoundError:
            if wanted is not None:
                raise WorkflowNotFoundError(f"Dataset {name!r} has no {wanted.value} spec", dataset_name=name) from None
            raise WorkflowNotFoundError(f"Workflow {name!r} is not in Airflow", dataset_name=name) from None
        if entry.status is DatasetStatus.OVERRIDDEN:
            raise WorkflowPermissionError(
                f"Workflow {name!r} (manual) is overridden by code and cannot be {action}d on its own",
                hint="removing the code spec (in Git, deployed by CI) restores the manual one", dataset_name=name,
            )
        self._dags()
        self._paused[name] = paused
        return WorkflowRunResult(dataset_name=name, action=action, message=f"{action.capitalize()}d {name}")

    def pause(self, dataset_name: str, *, source_type: SourceType | str | None = None) -> WorkflowRunResult:
        return self._set_paused(dataset_name, True, source_type)

    def unpause(self, dataset_name: str, *, source_type: SourceType | str | None = None) -> WorkflowRunResult:
        return self._set_paused(dataset_name, False, source_type)

    # -- register ----------------------------------------------------------------------------------------------
    def register(
        self,
        dataset_name: str | os.PathLike[str] | None = None,
        *,
        spec_path: str | os.PathLike[str] | None = None,
        spec: Any = None,
        sql: str | None = None,
        path: str | os.PathLike[str] | None = None,
        force: bool = False,
        **overrides: Any,
    ) -> WorkflowRegisterResult:
        from dli_airflow.registry import (
            is_spec_path,
            manual_path_of,
            prepare_registration,
            project_spec_path,
            registered_result,
            registration_warning,
            write_manual,
        )
        from dli_airflow.store import LocalStore

        if dataset_name is not None:
            if spec_path is not None or spec is not None:
                raise TypeError("give one of a dataset name (or spec file), spec_path= or spec=")
            spec_path = dataset_name if is_spec_path(dataset_name) else project_spec_path(str(dataset_name), path)
        prepared = prepare_registration(spec_path=spec_path, spec=spec, sql=sql, **overrides)
        snapshot = self._snapshot()
        warning = registration_warning(snapshot, prepared.spec.name, force=force)
        written = write_manual(LocalStore(self.store_path), prepared, force=force,
                               at=manual_path_of(snapshot, prepared.spec.name))
        self._paused.pop(prepared.spec.name, None)  # as dli_sync applies a new `enabled`
        return registered_result(prepared, written, warning)

    def update(self, dataset_name: str, **changes: Any) -> WorkflowRegisterResult:
        from dli_airflow._yaml import load_yaml
        from dli_airflow.registry import (
            OVERRIDE_KEYS,
            manual_entry,
            prepare_registration,
            query_file_of,
            registered_result,
            write_manual,
        )
        from dli_airflow.store import LocalStore

        unknown = sorted(set(changes) - set(OVERRIDE_KEYS))
        if unknown:
            raise TypeError(f"unexpected keyword argument(s) {', '.join(unknown)}; allowed: {', '.join(OVERRIDE_KEYS)}")
        given = {k: v for k, v in changes.items() if v is not None}
        if not given:
            raise ParameterError("Nothing to update", hint=f"pass at least one of {', '.join(OVERRIDE_KEYS)}")
        entry, code_stays = manual_entry(self._snapshot(), dataset_name)
        store = LocalStore(self.store_path)
        current = store.read_manual(entry.path)
        assert current is not None
        sql_path = query_file_of(current.data, entry.path)
        sql_file = store.read_manual(sql_path) if sql_path is not None else None
        prepared = prepare_registration(spec=load_yaml(current.data, entry.path),
                                        sql=sql_file.data.decode("utf-8") if sql_file else None, **given)
        written = write_manual(store, prepared, expected_version=current.version, at=entry.path)
        if "enabled" in given and not code_stays:
            self._paused[dataset_name] = not given["enabled"]  # as dli_sync applies it
        warning = "The code spec of this dataset stays active: the manual copy is overridden" if code_stays else None
        return registered_result(prepared, written, warning)

    def unregister(self, dataset_name: str) -> WorkflowRunResult:
        from dli_airflow.registry import delete_manual, manual_entry
        from dli_airflow.store import LocalStore

        entry, code_stays = manual_entry(self._snapshot(), dataset_name)
        delete_manual(LocalStore(self.store_path), entry)
        return WorkflowRunResult(
            dataset_name=dataset_name, action="unregister",
            message=f"Unregistered the manual spec of {dataset_name} ({entry.path})"
            + ("; the code version stays active" if code_stays else ""),
        )

    # -- runs ----------------------------------------------------------------------------------------------------
    def _entry_and_dag(self, name: str, source_type: SourceType | str | None) -> tuple[Any, dict[str, Any]]:
        entry = entry_for_run(self._snapshot(), name, parse_choice(SourceType, source_type, "--source"))
        dag = self._dags().get(name)
        if entry is None or dag is None:
            raise WorkflowNotFoundError(
                f"Workflow {name!r} is not in Airflow", hint="check the name: dli workflow list", dataset_name=name
            )
        return entry, dag

    def _new_run(self, name: str, kind: str, conf: dict[str, Any], logical_date: datetime | None,
                 note: str | None = None, backfill_id: int | None = None) -> _Run:
        run_id = f"{FAKE_RUN_PREFIX}{name}__{kind}__{next(self._ids):06d}"
        run = WorkflowRun(run_id=run_id, dataset_name=name, source_type=self._source_of(name), status=RunStatus.PENDING,
                          run_type="backfill" if kind == "backfill" else "adhoc", parameters=conf,
                          logical_date=logical_date, note=note or "triggered through dli (fake)")
        self._runs[run_id] = _Run(run=run, backfill_id=backfill_id)
        return self._runs[run_id]

    def _source_of(self, name: str) -> SourceType | None:
        try:
            return self._snapshot().get(name).source
        except DatasetNotFoundError:
            return None

    def run(
        self,
        dataset_name: str,
        parameters: Mapping[str, Any] | None = None,
        dry_run: bool = False,
        *,
        source_type: SourceType | str | None = None,
        note: str | None = None,
    ) -> WorkflowRunResult:
        from dli_airflow._runs import _render_dry
        from dli_airflow.params import conf_for_run

        entry, dag = self._entry_and_dag(dataset_name, source_type)
        conf = conf_for_run(entry.spec, parameters)
        if dry_run:
            rendered = _render_dry(entry, parameters)
            return WorkflowRunResult(
                dataset_name=dataset_name, action="run", dry_run=True, rendered_sql=rendered,
                message=f"dry run: {len(rendered)} statement(s) render and parse; nothing was triggered",
            )
        check_runnable(dataset_name, dag)
        made = self._new_run(dataset_name, "adhoc", conf, None, note)
        return WorkflowRunResult(dataset_name=dataset_name, action="run", run_id=made.run.run_id,
                                 run_status=RunStatus.PENDING, message=f"Run started: {made.run.run_id}")

    def _find(self, run_id: str, dataset: str | None) -> _Run:
        found = self._runs.get(run_id)
        if found is None or (dataset is not None and found.run.dataset_name != dataset):
            raise WorkflowExecutionError(f"No run {run_id!r} in Airflow",
                                         hint="check the id (dli workflow history) or pass -d DATASET", run_id=run_id)
        return found

    def get_status(self, run_id: str, *, dataset: str | None = None) -> WorkflowStatusResult:
        if backfill_id_of(run_id) is not None:
            return self._backfill_status(run_id, dataset)
        found = self._find(run_id, dataset)
        if self._progress is not None and not found.run.status.is_terminal:
            following = [s for s in self._progress if _rank(s) > _rank(found.run.status)]
            if following:
                self._move(run_id, following[0])
        return self._status(found)

    def _status(self, found: _Run) -> WorkflowStatusResult:
        run = found.run
        state = {RunStatus.PENDING: "queued", RunStatus.RUNNING: "running", RunStatus.COMPLETED: "success"}.get(
            run.status, "failed")
        task = TaskRun(task_id="run", state=state, try_number=0 if run.status is RunStatus.PENDING else 1,
                       started_at=run.started_at, finished_at=run.finished_at,
                       duration_seconds=run.duration_seconds, execution_order=1 if run.started_at else None)
        return WorkflowStatusResult(run=run, tasks=(task,), error_message=found.error,
                                    result=found.result if run.status is RunStatus.COMPLETED else None)

    def logs(
        self, run_id: str, task_id: str = "run", try_number: int | None = None, *, dataset: str | None = None
    ) -> TaskLog:
        if backfill_id_of(run_id) is not None:
            raise WorkflowExecutionError(
                f"{run_id} is a backfill: each of its dates has its own log",
                hint=f"pass one of its run ids (dli workflow status {run_id} lists them)", run_id=run_id,
            )
        found = self._find(run_id, dataset)
        if task_id != "run":
            raise WorkflowExecutionError(f"Run {run_id!r} has no task {task_id!r}", run_id=run_id)
        return TaskLog(run_id=run_id, task_id=task_id, try_number=try_number or 1, lines=tuple(found.log))

    def stop(self, run_id: str, *, dataset: str | None = None, wait: float = 0.0) -> WorkflowRunResult:
        if backfill_id_of(run_id) is not None:
            ids = self._backfill_ids(run_id, dataset)
            if all(self._runs[r].run.status.is_terminal for r in ids):
                raise WorkflowExecutionError(f"Backfill {backfill_id_of(run_id)} has already ended; nothing to stop",
                                             run_id=run_id)
            stopped = 0
            for rest in ids:  # Airflow fails the dates not started; the running one is stopped
                current = self._runs[rest].run.status
                if current is RunStatus.RUNNING:
                    self._move(rest, RunStatus.KILLED)
                    stopped += 1
                elif current is RunStatus.PENDING:
                    self._move(rest, RunStatus.FAILED)
            return WorkflowRunResult(
                dataset_name=self._runs[ids[0]].run.dataset_name, action="stop", run_id=run_id,
                run_status=RunStatus.KILLED, backfill_id=backfill_id_of(run_id),
                message=f"Stopped backfill {backfill_id_of(run_id)}: the dates not started are cancelled"
                + (", the running one stopped" if stopped else ""),
            )
        found = self._find(run_id, dataset)
        if found.run.status.is_terminal:
            raise WorkflowExecutionError(
                f"Run {run_id!r} has already ended ({found.run.status.value}); nothing to stop", run_id=run_id)
        self._move(run_id, RunStatus.KILLED)
        return WorkflowRunResult(dataset_name=found.run.dataset_name, action="stop", run_id=run_id,
                                 run_status=RunStatus.KILLED, message=f"Stopped {run_id}")

    def history(
        self,
        dataset_name: str | None = None,
        source_type: SourceType | str | None = None,
        run_status: RunStatus | str | None = None,
        limit: int = 20,
        include_dataset_info: bool = False,
    ) -> WorkflowHistoryResult:
        if backfill_id_of(dataset_name) is not None:
            runs = [self._runs[r].run for r in reversed(self._backfill_ids(str(dataset_name), None))][:limit]
            return WorkflowHistoryResult(runs=tuple(runs), total_count=len(runs))
        source = parse_choice(SourceType, source_type, "--source")
        wanted = parse_choice(RunStatus, run_status, "--status")
        runs = [r.run for r in reversed(self._runs.values())  # newest first
                if (dataset_name is None or r.run.dataset_name == dataset_name)
                and (source is None or r.run.source_type is source) and (wanted is None or r.run.status is wanted)]
        runs = runs[:limit]
        info: dict[str, WorkflowInfo] = {}
        if include_dataset_info:
            by_name = {i.dataset_name: i for i in self._infos() if i.status is not DatasetStatus.OVERRIDDEN}
            info = {r.dataset_name: by_name[r.dataset_name] for r in runs if r.dataset_name in by_name}
        return WorkflowHistoryResult(runs=tuple(runs), total_count=len(runs), dataset_info=info)

    def watch(self, run_id: str, *, dataset: str | None = None, poll: float = 1.0,
              timeout: float | None = None) -> Iterator[WorkflowStatusResult]:
        while True:
            status = self.get_status(run_id, dataset=dataset)
            yield status
            if status.is_terminal:
                return
            if self._progress is None or self.get_status(run_id, dataset=dataset).run.status is status.run.status:
                raise WorkflowExecutionError(
                    f"the fake run {run_id!r} is {status.status.value} and nothing moves it",
                    hint="call complete()/fail() on the fake first, or make it with progress=[...]", run_id=run_id,
                )
            # that read moved it: report the new state next

    # -- the test's controls -------------------------------------------------------------------------------------
    def start(self, run_id: str) -> WorkflowRun:
        """Move a run to ``RUNNING``."""
        return self._move(run_id, RunStatus.RUNNING)

    def complete(self, run_id: str, *, rows: Sequence[Mapping[str, Any]] = (), rows_affected: int | None = None) -> WorkflowRun:
        """End a run ``COMPLETED``, with the result summary its task would return (first rows, row count)."""
        return self._move(run_id, RunStatus.COMPLETED, rows=rows, rows_affected=rows_affected)

    def fail(self, run_id: str, error: str = "[DLI-402] the query failed (fake)") -> WorkflowRun:
        """End a run ``FAILED`` with this error message (what ``get_status().error_message`` shows)."""
        return self._move(run_id, RunStatus.FAILED, error=error)

    def runs(self) -> list[WorkflowRun]:
        """Every run the fake has made, oldest first."""
        return [r.run for r in self._runs.values()]

    def _move(self, run_id: str, to: RunStatus, *, error: str | None = None,
              rows: Sequence[Mapping[str, Any]] = (), rows_affected: int | None = None) -> WorkflowRun:
        found = self._find(run_id, None)
        if found.run.status.is_terminal:
            raise WorkflowExecutionError(f"Run {run_id!r} has already ended ({found.run.status.value})", run_id=run_id)
        now = datetime.now(timezone.utc)
        started = found.run.started_at or (now if to is not RunStatus.PENDING else None)
        update: dict[str, Any] = {"status": to, "started_at": started}
        if to.is_terminal:
            update["finished_at"] = now
        if to is RunStatus.KILLED:
            update["note"] = "dli: stopped by you through dli (fake)"
        found.run = found.run.model_copy(update=update)
        found.log.append(f"{now:%Y-%m-%d %H:%M:%S} run {to.value}")
        if error is not None:
            found.error = error
            found.log.append(error)
        if to is RunStatus.COMPLETED:
            found.result = {"rows_affected": rows_affected, "columns": list(rows[0]) if rows else [],
                            "rows": [dict(r) for r in rows], "row_count": len(rows)}
        return found.run

    # -- the client's housekeeping ---------------------------------------------------------------------------------
    @classmethod
    def from_env(cls, **overrides: Any) -> FakeWorkflowClient:
        """A fake over ``DLI_SPEC_STORE`` (a folder), for code that builds its client with ``from_env``."""
        return cls(store=overrides.get("store") or os.environ.get("DLI_SPEC_STORE") or None)

    def close(self) -> None:
        self._tmp.cleanup()

    def __enter__(self) -> FakeWorkflowClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"FakeWorkflowClient(store={str(self.store_path)!r}, runs={len(self._runs)})"


def _rank(status: RunStatus) -> int:
    return 0 if status is RunStatus.PENDING else 1 if status is RunStatus.RUNNING else 2


# -- the surface check: the fake has every public method of the real client, with the same parameters ------------
def public_methods(cls: type) -> dict[str, inspect.Signature]:
    """The public methods of a client class (and ``__enter__``/``__exit__``) with their signatures."""
    names = [n for n in dir(cls) if not n.startswith("_") or n in ("__enter__", "__exit__")]
    found: dict[str, inspect.Signature] = {}
    for name in names:
        value = inspect.getattr_static(cls, name)
        if isinstance(value, (classmethod, staticmethod)):
            value = value.__func__
        if inspect.isfunction(value):
            found[name] = inspect.signature(value)
    return found


def _shape(signature: inspect.Signature) -> list[tuple[str, Any, Any]]:
    return [(p.name, p.kind, p.default) for p in signature.parameters.values()]


def surface_differences(real: type = WorkflowClient, fake: type = FakeWorkflowClient) -> list[str]:
    """How the fake's methods differ from the real client's (empty: none)."""
    theirs, ours = public_methods(real), public_methods(fake)
    problems = [f"{name}: missing from {fake.__name__}" for name in sorted(set(theirs) - set(ours))]
    for name in sorted(set(theirs) & set(ours)):
        if _shape(theirs[name]) != _shape(ours[name]):
            problems.append(f"{name}: {fake.__name__}{ours[name]} differs from {real.__name__}{theirs[name]}")
    return problems


_DRIFT = surface_differences()
if _DRIFT:  # pragma: no cover - fails the import, so any test of users' code shows it at once
    raise TypeError("FakeWorkflowClient no longer matches WorkflowClient: " + "; ".join(_DRIFT))


__all__ = ["FAKE_RUN_PREFIX", "FakeWorkflowClient", "public_methods", "surface_differences"]
