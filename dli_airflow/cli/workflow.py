"""``dli workflow …``: run, backfill, stop, watch, pause and register workflows on Airflow (REST API v2).

Connection: ``DLI_AIRFLOW_URL`` with ``DLI_AIRFLOW_TOKEN`` or ``DLI_AIRFLOW_USERNAME``/``DLI_AIRFLOW_PASSWORD``;
without them, the local Airflow of ``dli dev up`` (``$DLI_DEV_HOME`` or ``~/.dli/airflow``) when it runs.
Never imports Airflow.
"""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from dli_airflow.cli._output import (
    FormatOption,
    OutputFormat,
    ParamOption,
    new_app,
    parse_params,
    print_json,
    print_model,
    print_table,
)

app = new_app(
    "Run and manage workflows ON AIRFLOW (production runs, schedules, history kept in Airflow). "
    "To run a dataset on this machine instead, use `dli dataset run NAME --local`."
)

DatasetOption = Annotated[
    Optional[str], typer.Option("--dataset", "-d", metavar="NAME", help="Dataset of the run (for runs started by the scheduler or UI).")
]
SourceOption = Annotated[Optional[str], typer.Option("--source", metavar="SOURCE", help="code or manual (default: the active copy).")]


def _connection() -> dict[str, Any]:
    """The connection settings of the Airflow named by ``DLI_AIRFLOW_URL``, else of the running
    ``dli dev up``. The spec store is never read here: the control plane in Airflow reads it."""
    from dli_airflow._api import settings_from_env

    if os.environ.get("DLI_AIRFLOW_URL"):
        return settings_from_env()
    from dli_airflow import config, dev

    home = config.dev_home()
    status = dev.status(home) if home.is_dir() else None
    if status is not None and status.running and status.url and status.password:
        return {"url": status.url, "username": status.username, "password": status.password}
    from dli_airflow.errors import ServerUnreachableError

    where = f"no dev Airflow is running in {home}" if home.is_dir() else f"no dev Airflow in {home}"
    raise ServerUnreachableError(
        f"No Airflow to talk to: DLI_AIRFLOW_URL is not set, and {where}",
        hint="set DLI_AIRFLOW_URL (e.g. https://airflow.example.com) and DLI_AIRFLOW_TOKEN, or "
        "DLI_AIRFLOW_USERNAME and DLI_AIRFLOW_PASSWORD; or start a local Airflow with `dli dev up` (one "
        f"started with --home elsewhere: set {config.DEV_HOME_ENV} to that folder)",
    )


def _transport() -> Any:
    """The bare :class:`~dli_airflow._api.ApiTransport` of :func:`_connection` (no client models)."""
    from dli_airflow._api import ApiTransport, check_settings

    settings = _connection()
    check_settings(settings.get("url"), settings.get("token"), settings.get("username"), settings.get("password"))
    return ApiTransport(**settings)


def _client() -> Any:
    """The :class:`~dli_airflow.client.WorkflowClient` of :func:`_connection`."""
    from dli_airflow.client import WorkflowClient

    return WorkflowClient(**_connection())


def _fmt_time(value: Optional[datetime]) -> str:
    return value.astimezone().strftime("%Y-%m-%d %H:%M") if value else "-"


def _fmt_zoned(value: Optional[datetime], zone: Optional[str]) -> str:
    """A schedule's time in the schedule's own zone, labelled: ``2026-12-03 09:00 Asia/Seoul`` (UTC without one)."""
    if value is None:
        return "-"
    from zoneinfo import ZoneInfo

    name = zone or "UTC"
    return f"{value.astimezone(ZoneInfo(name)).strftime('%Y-%m-%d %H:%M')} {name}"


def _echo_result(result: Any, fmt: OutputFormat) -> None:
    if fmt is OutputFormat.json:
        print_model(result)
    else:
        typer.echo(result.message)


@app.command("run")
def run(
    name: Annotated[str, typer.Argument(help="Dataset name.")],
    param: ParamOption = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Validate and render the SQL; trigger nothing.")] = False,
    wait: Annotated[bool, typer.Option("--wait", help="Wait for the run to end; exit 0 only on COMPLETED.")] = False,
    source: SourceOption = None,
    fmt: FormatOption = OutputFormat.table,
) -> None:
    """Trigger a run on Airflow now (validated parameters; the run id names the dataset)."""
    with _client() as client:
        result = client.run(name, parse_params(param), dry_run=dry_run, source_type=source)
        if dry_run:
            if fmt is OutputFormat.json:
                print_model(result)
            else:
                for statement in result.rendered_sql:
                    typer.echo(statement + ";\n")
                typer.echo(result.message)
            return
        if not wait:
            _echo_result(result, fmt)
            return
        if fmt is OutputFormat.table:
            typer.echo(result.message)
        final = _wait_run(client, result.run_id, name, fmt)
    _finish(final, fmt)


def _wait_run(client: Any, run_id: str, dataset: str, fmt: OutputFormat) -> Any:
    from rich.console import Console

    console = Console(stderr=True)
    last = None
    with console.status(f"{run_id}: PENDING", spinner="dots") as spinner:
        for status in client.watch(run_id, dataset=dataset, poll=1.0):
            last = status
            spinner.update(f"{run_id}: {status.status.value}")
    return last


def _finish(status: Any, fmt: OutputFormat) -> None:
    from dli_airflow.workflow import RunStatus

    if fmt is OutputFormat.json:
        print_json(status.model_dump(mode="json") | {"is_terminal": status.is_terminal})
    else:
        duration = f" in {status.duration_seconds:.1f}s" if status.duration_seconds is not None else ""
        typer.echo(f"{status.run_id}: {status.status.value}{duration}")
        if status.error_message:
            typer.echo(f"  error: {status.error_message}")
        _print_result_rows(status.result)
    if status.status is not RunStatus.COMPLETED:
        raise typer.Exit(code=1)


def _print_result_rows(result: Optional[dict[str, Any]]) -> None:
    """A completed run's result as the task recorded it (its XCom): rows affected per statement, and the
    first rows of the last statement, as `dli dataset run` prints them."""
    if not isinstance(result, dict):
        return
    affected = [n for n in result.get("rows_affected") or () if n is not None and n >= 0]
    if affected:
        typer.echo(f"rows affected: {', '.join(str(n) for n in affected)}")
    columns, rows = result.get("columns") or [], result.get("rows") or []
    if columns and rows:
        more = " (first rows only)" if result.get("rows_truncated") else ""
        print_table(columns, rows, title=f"last statement: {len(rows)} row(s){more}")


@app.command("backfill")
def backfill(
    name: Annotated[str, typer.Argument(help="Dataset name.")],
    start: Annotated[str, typer.Option("--start", "-s", metavar="YYYY-MM-DD", help="First date (YYYY-MM-DD), in the schedule's time zone.")],
    end: Annotated[str, typer.Option("--end", "-e", metavar="YYYY-MM-DD", help="Last date (YYYY-MM-DD), inclusive.")],
    param: Annotated[Optional[list[str]], typer.Option("--param", "-p", metavar="KEY=VALUE", help="Extra parameter key=value (repeatable).")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="List the dates that would run; run nothing.")] = False,
    wait: Annotated[bool, typer.Option("--wait", help="Show progress; cancel the rest at the first failed date.")] = False,
    source: SourceOption = None,
    fmt: FormatOption = OutputFormat.table,
) -> None:
    """Run every scheduled date from --start to --end in order, one at a time (Airflow's backfill).

    It stops at the first failed date: later dates fail at once without running their SQL. With --wait,
    the remaining runs are also cancelled in Airflow and the command exits 1.
    """
    with _client() as client:
        result = client.backfill(name, start, end, parse_params(param), dry_run=dry_run, source_type=source)
        if dry_run or not wait:
            if fmt is OutputFormat.json:
                print_model(result)
            else:
                typer.echo(result.message)
                if dry_run:
                    for moment in result.logical_dates:
                        typer.echo(f"  {moment.isoformat()}")
                else:
                    ids = result.run_ids
                    if ids:
                        shown = ", ".join(ids) if len(ids) <= 3 else f"{ids[0]} … {ids[-1]} ({len(ids)} runs)"
                        typer.echo(f"  runs: {shown}")
                    typer.echo(f"  follow it: dli workflow status {result.run_id} (every date); stop it: "
                               f"dli workflow stop {result.run_id}")
            return
        if fmt is OutputFormat.table:
            typer.echo(result.message)
        runs = _wait_backfill(client, result)
    from dli_airflow.workflow import RunStatus

    ok = len(runs) == len(result.logical_dates) and all(r.status is RunStatus.COMPLETED for r in runs)
    if fmt is OutputFormat.json:
        print_json({"backfill_id": result.backfill_id, "runs": [r.model_dump(mode="json") for r in runs], "ok": ok})
    else:
        rows = [(r.logical_date.isoformat() if r.logical_date else "-", r.run_id, r.status.value) for r in runs]
        print_table(["LOGICAL DATE", "RUN ID", "STATUS"], rows)
        typer.echo("Backfill COMPLETED" if ok else "Backfill FAILED: the remaining dates were cancelled")
    if not ok:
        raise typer.Exit(code=1)


def _wait_backfill(client: Any, result: Any) -> list[Any]:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    total = len(result.logical_dates)
    with Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=Console(stderr=True),
    ) as progress:
        task = progress.add_task(result.dataset_name, total=total)

        def on_progress(runs: list[Any]) -> None:
            done = sum(1 for r in runs if r.status.is_terminal)
            current = next((r for r in runs if not r.status.is_terminal), None)
            label = f"{result.dataset_name} {current.logical_date:%Y-%m-%d}" if current and current.logical_date else result.dataset_name
            progress.update(task, completed=done, description=label)

        return client.wait_backfill(result, on_progress=on_progress)


@app.command("stop")
def stop(
    run_id: Annotated[str, typer.Argument(help="Run id (as printed by `dli workflow run`), or a backfill's id (backfill:ID).", metavar="RUN_ID|backfill:ID")],
    dataset: DatasetOption = None,
    fmt: FormatOption = OutputFormat.table,
) -> None:
    """Stop a run: its task process is terminated and the run reads KILLED (a backfill: its dates not started
    are cancelled and the running one is stopped)."""
    with _client() as client:
        _echo_result(client.stop(run_id, dataset=dataset, wait=15.0), fmt)


@app.command("status")
def status(
    run_id: Annotated[str, typer.Argument(help="Run id, a backfill's id (backfill:ID: every date), or a dataset name for its latest run.", metavar="RUN_ID|backfill:ID|NAME")],
    dataset: DatasetOption = None,
    wait: Annotated[bool, typer.Option("--wait", help="Follow it until it ends (a backfill: until its last date); exit 1 unless COMPLETED.")] = False,
    fmt: FormatOption = OutputFormat.table,
) -> None:
    """Show a run's state, its task tries and, for a failed run, the error (a dataset name: its latest run)."""
    from dli_airflow.errors import DliError, WorkflowExecutionError

    with _client() as client:
        try:
            result = client.get_status(run_id, dataset=dataset)
        except WorkflowExecutionError as not_a_run:
            if dataset is not None:
                raise
            # not a run id: a dataset name shows that dataset's latest run
            try:
                latest = client.history(dataset_name=run_id, limit=1).runs
            except DliError:
                latest = ()
            if not latest:
                raise not_a_run from None
            result = client.get_status(latest[0].run_id, dataset=run_id)
        if wait and not result.is_terminal:
            result = _wait_run(client, result.run_id, result.run.dataset_name, fmt)
    if wait and result.status.value != "COMPLETED":
        _show_status(result, fmt)
        raise typer.Exit(code=1)
    _show_status(result, fmt)


def _show_status(result: Any, fmt: OutputFormat) -> None:
    if fmt is OutputFormat.json:
        print_json(result.model_dump(mode="json") | {"is_running": result.is_running, "is_terminal": result.is_terminal,
                                                     "duration_seconds": result.duration_seconds})
        return
    run = result.run
    typer.echo(f"{run.run_id}  {run.dataset_name}  {run.status.value}  ({run.run_type})")
    if run.parameters:
        typer.echo("  parameters: " + ", ".join(f"{k}={v}" for k, v in run.parameters.items()))
    if result.runs:  # a backfill: each date's run
        print_table(["LOGICAL DATE", "RUN ID", "STATUS", "DURATION"], [
            (r.logical_date.isoformat() if r.logical_date else "-", r.run_id, r.status.value,
             f"{r.duration_seconds:.1f}s" if r.duration_seconds is not None else "-") for r in result.runs])
        if result.error_message:
            typer.echo(f"error: {result.error_message}")
        return
    rows = [
        (t.task_id, t.state or "-", t.try_number, _fmt_time(t.started_at), _fmt_time(t.finished_at),
         f"{t.duration_seconds:.1f}s" if t.duration_seconds is not None else "-")
        for t in result.tasks
    ]
    print_table(["TASK", "STATE", "TRY", "START", "END", "DURATION"], rows)
    if result.error_message:
        typer.echo(f"error: {result.error_message}")
    _print_result_rows(result.result)


@app.command("list")
def list_workflows(
    source: Annotated[str, typer.Option("--source", metavar="SOURCE", help="code, manual or all.")] = "all",
    running: Annotated[bool, typer.Option("--running", help="Only workflows with a queued or running run.")] = False,
    enabled_only: Annotated[bool, typer.Option("--enabled-only", help="Only active (unpaused) schedules.")] = False,
    dataset: Annotated[Optional[str], typer.Option("--dataset", "-d", metavar="NAME", help="Filter by dataset name (substring).")] = None,
    limit: Annotated[Optional[int], typer.Option("--limit", "-n", metavar="N", min=1, help="At most this many (default: all).")] = None,
    fmt: FormatOption = OutputFormat.table,
) -> None:
    """List workflows: the store joined with Airflow's DAGs by the control plane (overridden manual specs included)."""
    from dli_airflow.errors import parse_choice
    from dli_airflow.kinds import SourceType

    chosen = parse_choice(SourceType, None if source == "all" else source, "--source")
    listed = _list_on_the_plane(chosen, dataset, running, enabled_only, limit)
    if listed is None:  # an Airflow without dli's control plane: the client reads Airflow's dli DAGs alone
        with _client() as client:
            result = client.list_workflows(source_type=chosen, dataset_filter=dataset, running_only=running,
                                           enabled_only=enabled_only, limit=limit)
        listed = {"workflows": [info.model_dump(mode="json") for info in result.workflows],
                  "total_count": result.total_count, "problems": result.problems}
    if fmt is OutputFormat.json:
        print_json(listed)
        return
    rows = []
    for info in listed["workflows"]:
        next_run = _fmt_zoned(_when(info.get("next_run")), info.get("timezone"))
        if info.get("overridden_by") is not None:
            next_run = f"- (overridden by {info['overridden_by']})"
        elif not info.get("in_airflow", True):
            next_run = "- (not in Airflow yet)"
        rows.append((info["dataset_name"], info["source_type"], info["status"], info.get("cron") or "-", next_run))
    print_table(["DATASET", "SOURCE", "STATUS", "CRON", "NEXT RUN"], rows)
    if listed["problems"]:
        typer.echo(
            f"warning: {listed['problems']} spec file(s) in the store are broken and are no workflow: the "
            "dli_spec_errors DAG lists them, and `dli spec validate` (with the store) shows each with its fix",
            err=True,
        )


def _list_on_the_plane(source: Any, dataset: Optional[str], running: bool, enabled_only: bool,
                       limit: Optional[int]) -> Optional[dict[str, Any]]:
    """The control plane's list as plain JSON (``workflows``, ``total_count``, ``problems``), or ``None``
    without a control plane. Never imports pydantic or the client's models: the CLI's most used read costs
    its start, the transport and the requests (bench/plane.py measures it against ``dli --help``)."""
    import json

    from dli_airflow._api import plane_list

    def decode(content: bytes) -> tuple[list[Any], int, int]:
        page = json.loads(content)
        return page["workflows"], int(page["total_entries"]), int(page.get("problems") or 0)

    params = {"source": source.value if source else None, "filter": dataset or None,
              "running": running or None, "enabled": enabled_only or None}
    with _transport() as api:
        listed = plane_list(api, params, limit, decode)
    if listed is None:
        return None
    workflows, total, problems = listed
    return {"workflows": workflows, "total_count": total, "problems": problems}


def _when(value: Optional[str]) -> Optional[datetime]:
    return datetime.fromisoformat(value) if value else None


@app.command("history")
def history(
    name: Annotated[Optional[str], typer.Argument(help="Only this dataset (the same as -d NAME), or the runs of one backfill (backfill:ID).", metavar="NAME|backfill:ID", show_default=False)] = None,
    dataset: Annotated[Optional[str], typer.Option("--dataset", "-d", metavar="NAME", help="Only this dataset.")] = None,
    source: Annotated[str, typer.Option("--source", metavar="SOURCE", help="code, manual or all.")] = "all",
    limit: Annotated[int, typer.Option("--limit", "-n", metavar="N", help="How many runs.")] = 20,
    run_status: Annotated[Optional[str], typer.Option("--status", "-s", metavar="STATUS", help="PENDING|RUNNING|COMPLETED|FAILED|KILLED.")] = None,
    show_dataset_info: Annotated[bool, typer.Option("--show-dataset-info", help="Add each dataset's owner and schedule.")] = False,
    fmt: FormatOption = OutputFormat.table,
) -> None:
    """Recent runs, newest first."""
    if name and dataset and name != dataset:
        raise typer.BadParameter(f"two datasets given: {name!r} and -d {dataset!r}; give one", param_hint="NAME")
    dataset = dataset or name
    with _client() as client:
        result = client.history(
            dataset_name=dataset, source_type=None if source == "all" else source, run_status=run_status,
            limit=limit, include_dataset_info=show_dataset_info,
        )
    if fmt is OutputFormat.json:
        print_model(result)
        return
    columns = ["RUN ID", "DATASET", "STATUS", "TYPE", "STARTED", "DURATION"]
    if show_dataset_info:
        columns += ["OWNER", "CRON"]
    rows = []
    for run in result.runs:
        row = [run.run_id, run.dataset_name, run.status.value, run.run_type, _fmt_time(run.started_at),
               f"{run.duration_seconds:.1f}s" if run.duration_seconds is not None else "-"]
        if show_dataset_info:
            info = result.dataset_info.get(run.dataset_name)
            row += [info.owner if info else "-", (info.cron if info else None) or "-"]
        rows.append(row)
    print_table(columns, rows)


@app.command("pause")
def pause(
    name: Annotated[str, typer.Argument(help="Dataset name.")],
    source: SourceOption = None,
    fmt: FormatOption = OutputFormat.table,
) -> None:
    """Pause a schedule (code and manual workflows alike)."""
    with _client() as client:
        _echo_result(client.pause(name, source_type=source), fmt)


@app.command("unpause")
def unpause(
    name: Annotated[str, typer.Argument(help="Dataset name.")],
    source: SourceOption = None,
    fmt: FormatOption = OutputFormat.table,
) -> None:
    """Resume a schedule."""
    with _client() as client:
        _echo_result(client.unpause(name, source_type=source), fmt)


@app.command("get")
def get(
    name: Annotated[str, typer.Argument(help="Dataset name.")],
    fmt: FormatOption = OutputFormat.table,
) -> None:
    """Show one workflow: source, status, schedule, next run, owner, parameters."""
    from dli_airflow.errors import WorkflowNotFoundError

    with _client() as client:
        info = client.get(name)
    if info is None:
        raise WorkflowNotFoundError(f"Workflow {name!r} is neither in Airflow nor in the spec store")
    if fmt is OutputFormat.json:
        print_model(info)
        return
    data = info.model_dump(mode="json")
    for key, value in data.items():
        if value not in (None, [], ()):
            typer.echo(f"{key:14} {', '.join(value) if isinstance(value, list) else value}")


@app.command("logs")
def logs(
    run_id: Annotated[str, typer.Argument(help="Run id.")],
    task_id: Annotated[str, typer.Option("--task", metavar="TASK_ID", help="Task id.")] = "run",
    try_number: Annotated[Optional[int], typer.Option("--try", metavar="N", help="Try number (default: the latest).")] = None,
    dataset: DatasetOption = None,
    fmt: FormatOption = OutputFormat.table,
) -> None:
    """Print a task try's log."""
    with _client() as client:
        result = client.logs(run_id, task_id, try_number, dataset=dataset)
    if fmt is OutputFormat.json:
        print_model(result)
    else:
        for line in result.lines:
            typer.echo(line)


@app.command("register")
def register(
    target: Annotated[str, typer.Argument(metavar="NAME|SPEC.yaml", help="A dataset of the project (--path), or a spec YAML file (its query_file is registered with it).")],
    cron: Annotated[Optional[str], typer.Option("--cron", metavar="CRON", help="Override schedule.cron.")] = None,
    timezone: Annotated[Optional[str], typer.Option("--timezone", metavar="ZONE", help="Override schedule.timezone.")] = None,
    enabled: Annotated[Optional[bool], typer.Option("--enabled/--disabled", help="Override schedule.enabled.")] = None,
    retry_max_attempts: Annotated[Optional[int], typer.Option("--retry-max-attempts", metavar="N", help="Retries after the first try.")] = None,
    retry_delay_seconds: Annotated[Optional[int], typer.Option("--retry-delay-seconds", metavar="SECONDS", help="Seconds between tries.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace a manual spec, or store one a code spec overrides.")] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask before storing a spec that code overrides.")] = False,
    path: Annotated[Optional[Path], typer.Option("--path", metavar="DIR", help="The project folder a dataset NAME is found in (default: .).")] = None,
    fmt: FormatOption = OutputFormat.table,
) -> None:
    """Register a dataset (by name from the project, or a spec file) as a manual workflow (written under manual/ of the store; Airflow picks it up at its next parse)."""
    from dli_airflow.errors import WorkflowRegistrationError

    with _client() as client:
        kwargs = dict(cron=cron, timezone=timezone, enabled=enabled, retry_max_attempts=retry_max_attempts,
                      retry_delay_seconds=retry_delay_seconds)
        try:
            result = client.register(target, path=path, force=force, **kwargs)
        except WorkflowRegistrationError as exc:
            if "already exists in code/" not in exc.message or force:
                raise
            typer.echo(
                "Warning: This dataset already exists in Code path.\n"
                "         Your Manual registration will be overridden by Code.\n"
                "         The Manual file will be kept but inactive.",
                err=True,
            )
            if not yes and not typer.confirm("Proceed?", default=False):
                raise typer.Exit(code=1) from None
            result = client.register(target, path=path, force=True, **kwargs)
    if fmt is OutputFormat.json:
        print_model(result)
    else:
        state = result.workflow_info.status.value
        typer.echo(f"Registered {result.workflow_info.dataset_name} (manual, {state}) as {result.spec_path}")


@app.command("update")
def update(
    name: Annotated[str, typer.Argument(help="Dataset name (a manual workflow).")],
    cron: Annotated[Optional[str], typer.Option("--cron", metavar="CRON", help="New schedule.cron.")] = None,
    timezone: Annotated[Optional[str], typer.Option("--timezone", metavar="ZONE", help="New schedule.timezone.")] = None,
    enabled: Annotated[Optional[bool], typer.Option("--enabled/--disabled", help="New schedule.enabled.")] = None,
    retry_max_attempts: Annotated[Optional[int], typer.Option("--retry-max-attempts", metavar="N", help="Retries after the first try.")] = None,
    retry_delay_seconds: Annotated[Optional[int], typer.Option("--retry-delay-seconds", metavar="SECONDS", help="Seconds between tries.")] = None,
    fmt: FormatOption = OutputFormat.table,
) -> None:
    """Change a manual workflow's schedule; its SQL and the rest of its spec stay (code workflows: in Git)."""
    with _client() as client:
        result = client.update(name, cron=cron, timezone=timezone, enabled=enabled,
                               retry_max_attempts=retry_max_attempts, retry_delay_seconds=retry_delay_seconds)
    if fmt is OutputFormat.json:
        print_model(result)
        return
    info = result.workflow_info
    schedule = f"{info.cron} {info.timezone or 'UTC'}" if info.cron else "no schedule"
    typer.echo(f"Updated {info.dataset_name} (manual, {info.status.value}): {schedule}")
    if result.warning:
        typer.echo(f"Warning: {result.warning}", err=True)


@app.command("unregister")
def unregister(
    name: Annotated[str, typer.Argument(help="Dataset name.")],
    fmt: FormatOption = OutputFormat.table,
) -> None:
    """Remove a manual workflow's spec from the store (code workflows: change them in Git)."""
    with _client() as client:
        _echo_result(client.unregister(name), fmt)
