"""The control plane's FastAPI app, mounted by the plugin at ``/dli``: the ``/dli/api/v1`` API.

Authentication is the api-server's own (a JWT from ``/auth/token`` as ``Authorization: Bearer``, or the
UI's cookie); authorization is Airflow's auth manager, with a dataset's name as its DAG id:

- reading a workflow needs read access to its DAG; a spec that is not a DAG (yet) — an overridden manual
  copy, a dataset Airflow has not parsed — is shown to users who may read every DAG;
- pausing and unpausing need edit access to the DAG (``PUT``); a run needs ``POST`` on its runs (Airflow's
  own rule for triggering); registering needs edit on the DAG of that name, or on every DAG for a name
  that is not a DAG yet; unregistering needs ``DELETE`` on the DAG.

Writes to Airflow (pause, unpause, runs) are made through Airflow's own REST API, in-process, with the caller's
credentials: Airflow authorizes and audits them as if the caller had made them, once. A code workflow is
never modified or deleted here, whoever asks. Errors are JSON: ``{"code", "message", "hint", "problems"}``.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import FastAPI, Query, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from dli_airflow import __version__
from dli_airflow.errors import (
    DatasetNotFoundError,
    DliError,
    ParameterError,
    Problem,
    WorkflowExecutionError,
    WorkflowNotFoundError,
    WorkflowPermissionError,
    parse_choice,
)
from dli_airflow.plugin import state
from dli_airflow.plugin.auth import User, authorized, check_csrf, name_of, require, visible
from dli_airflow.plugin.models import (
    ActionResult,
    BackfillBody,
    Overrides,
    RegisterBody,
    RunBody,
    WorkflowCopies,
    WorkflowPage,
)
from dli_airflow.plugin.rest import call
from dli_airflow.registry import provenance_line, registered_result
from dli_airflow.spec import DatasetStatus, SourceType
from dli_airflow.workflow import (
    RunStatus,
    WorkflowInfo,
    WorkflowRegisterResult,
    WorkflowRunResult,
    check_runnable,
    entry_for_run,
    make_run_id,
    merge_workflows,
    run_status,
    select_workflows,
)

API_PREFIX = "/api/v1"
#: The largest page of ``GET /workflows`` (Airflow's own API pages at most 1,000 DAGs too)
MAX_PAGE = 1000

# HTTP status by DLI code (the longest matching prefix wins)
_STATUS = {
    "DLI-0": 500, "DLI-1": 404, "DLI-2": 422, "DLI-3": 422, "DLI-4": 502, "DLI-5": 503,
    "DLI-800": 404, "DLI-801": 409, "DLI-802": 409, "DLI-803": 403,
}


#: validation errors reported per request, at most
_MAX_FIELD_ERRORS = 20


def request_error(errors: Any) -> ParameterError:
    """DLI-203 for a request FastAPI could not validate: each field (``body.parameters``, ``query.limit``)
    with what is wrong. The values sent are never echoed (a body may hold anything, secrets too)."""
    problems = []
    for error in list(errors)[:_MAX_FIELD_ERRORS]:
        location = [str(part) for part in error.get("loc", ())]
        where = {"body": "<request body>", "query": "<query>", "path": "<path>"}.get(location[0] if location else "", "<request>")
        field = ".".join(location[1:]) or None
        problems.append(Problem(str(error.get("msg", "invalid"))[:300], file=where, field=field))
    summary = "; ".join(f"{p.field or p.file}: {p.message}" for p in problems[:5]) or "the request is not valid"
    return ParameterError(
        f"Invalid request: {summary}", problems=problems,
        hint=f"see the fields and their types on the API's page: /dli{API_PREFIX}/docs",
    )


def not_in_airflow(name: str, *, in_store: bool, path: str | None = None) -> WorkflowNotFoundError:
    """DLI-800 for a workflow Airflow has no DAG of, with the one hint that fits: a spec in the store that
    Airflow has not parsed yet (just registered: retry in seconds), or a name that is not a dli dataset."""
    if in_store:
        where = f" ({path})" if path else ""
        return WorkflowNotFoundError(
            f"Workflow {name!r} is in the spec store{where} but Airflow has not parsed it yet", dataset_name=name,
            hint=f"try again in a few seconds (a registered spec is parsed at once; a published one at the next "
            f"parse); `dli workflow get {name}` shows when it is in Airflow",
        )
    return WorkflowNotFoundError(
        f"Workflow {name!r} is not a dli workflow in Airflow", dataset_name=name,
        hint="check the name with `dli workflow list`, or register its spec first (`dli workflow register SPEC.yaml`)",
    )


def status_of(error: DliError) -> int:
    """The HTTP status that answers ``error``."""
    for prefix in sorted(_STATUS, key=len, reverse=True):
        if error.code.startswith(prefix):
            return _STATUS[prefix]
    return 500


def _infos(only: str | None = None, running: bool = False) -> list[WorkflowInfo]:
    snapshot = state.snapshot(fresh=only is not None)
    return merge_workflows(snapshot.entries, state.dli_dags(only), state.running_dag_ids() if running else set(),
                           only=only, orphans=not _complete(snapshot))


def _complete(snapshot: Any) -> bool:
    """Whether this snapshot is the whole store as it is now (no outage, no unreadable path)."""
    return not snapshot.warnings and not snapshot.unread


def create_app() -> FastAPI:
    """The control plane's app (the plugin builds it on its first request)."""
    app = FastAPI(
        title="dli control plane",
        version=__version__,
        description="dli-airflow's API in Airflow's api-server: workflows of the spec store joined with "
        "Airflow's state, authorized by Airflow's auth manager. Errors carry the DLI code, message and hint.",
        docs_url=f"{API_PREFIX}/docs",
        openapi_url=f"{API_PREFIX}/openapi.json",
        redoc_url=None,
    )

    @app.exception_handler(DliError)
    async def dli_error(request: Request, exc: DliError) -> JSONResponse:
        # the dataset and run the request was about, where the raise site did not say
        if exc.dataset_name is None and isinstance(request.path_params.get("name"), str):
            exc.dataset_name = request.path_params["name"]
        if exc.run_id is None and isinstance(request.path_params.get("run_id"), str):
            exc.run_id = request.path_params["run_id"]
        return JSONResponse(exc.to_dict(), status_code=status_of(exc))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Any:
        # a body that is not JSON at all: DLI-203 like any unreadable request; the api-server's own answers
        # (401/403 for credentials, with Airflow's wording the client's token refresh relies on) stay as they are
        if exc.status_code == 400:
            error = ParameterError(f"Invalid request: {exc.detail}",
                                   hint=f"send a JSON body as documented on the API's page: /dli{API_PREFIX}/docs")
            return JSONResponse(error.to_dict(), status_code=400)
        return await http_exception_handler(request, exc)

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        error = request_error(exc.errors())
        return JSONResponse(error.to_dict(), status_code=status_of(error))

    @app.get(f"{API_PREFIX}/health")
    def health() -> dict[str, Any]:
        """Whether the control plane answers and reads the store (no authentication, no store details)."""
        try:
            snapshot = state.snapshot()
        except DliError as exc:
            return {"status": "degraded", "version": __version__, "store": {"readable": False, "code": exc.code}}
        return {
            "status": "degraded" if snapshot.warnings else "ok",
            "version": __version__,
            "store": {"readable": not snapshot.warnings, "datasets": len(snapshot.entries),
                      "problems": len(snapshot.problems)},
        }

    @app.get(f"{API_PREFIX}/workflows")
    def list_workflows(
        user: User,
        source: str | None = None,
        status: str | None = None,
        filter: str | None = None,  # noqa: A002 - the query parameter's name
        running: bool = False,
        enabled: bool = False,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
        offset: Annotated[int, Query(ge=0)] = 0,
    ) -> WorkflowPage:
        """Every workflow the caller may read: the store's specs (overridden manual copies too) joined with
        their DAGs' state, sorted by name then source, one page at a time."""
        selected = select_workflows(
            visible(user, _infos(running=running)),
            source=parse_choice(SourceType, source, "source"),
            status=parse_choice(DatasetStatus, status, "status"),
            dataset_filter=filter, running_only=running, enabled_only=enabled,
        )
        return WorkflowPage(workflows=selected[offset:offset + limit], total_entries=len(selected),
                            problems=len(state.snapshot().problems))

    @app.get(f"{API_PREFIX}/workflows/{{name}}")
    def get_workflow(name: str, user: User) -> WorkflowCopies:
        """A dataset's workflow, the active copy first."""
        require(user, "GET", name, "read")
        infos = [i for i in _infos(only=name) if i.dataset_name == name]
        if not infos:
            raise WorkflowNotFoundError(f"Workflow {name!r} is neither in the spec store nor in Airflow")
        infos.sort(key=lambda i: i.status is DatasetStatus.OVERRIDDEN)
        infos = [_with_provenance(i) for i in infos]
        return WorkflowCopies(workflow=infos[0], copies=infos[1:])

    @app.get("/datasets", response_class=HTMLResponse, include_in_schema=False)
    async def datasets_page(request: Request, q: Annotated[str, Query(max_length=200)] = "") -> HTMLResponse:
        """The Datasets page of Airflow's UI (its "Datasets" nav entry frames it)."""
        from fastapi import HTTPException
        from starlette.concurrency import run_in_threadpool

        from dli_airflow.plugin import page
        from dli_airflow.plugin.auth import authenticated_user

        try:
            user = await authenticated_user(request)
        except HTTPException as exc:
            reason = "Sign in to see the datasets." if exc.status_code == 401 else "Your session has expired."
            return HTMLResponse(page.sign_in(reason), status_code=exc.status_code, headers=page.security_headers())

        def build() -> str:
            try:
                snapshot = state.snapshot()
            except DliError as exc:
                return page.render([], (exc,), (), user=name_of(user), query=q, store_readable=False)
            infos = visible(user, merge_workflows(snapshot.entries, state.dli_dags(), state.running_dag_ids(),
                                                  orphans=not _complete(snapshot)))
            problems = snapshot.problems if authorized(user, "GET", None) else ()
            return page.render(infos, problems, snapshot.warnings, user=name_of(user), query=q, store=snapshot.store)

        return HTMLResponse(await run_in_threadpool(build), headers=page.security_headers())

    @app.get(f"{API_PREFIX}/transitions")
    def transitions(user: User, limit: Annotated[int, Query(ge=1, le=100)] = 20) -> dict[str, Any]:
        """``dli_sync``'s recent transitions (added, removed, overridden, restored, paused, ...), newest run
        first: what each of its last ``limit`` runs recorded."""
        require(user, "GET", None, "read the sync transitions of")
        return {"runs": state.sync_transitions(limit)}

    @app.get(f"{API_PREFIX}/problems")
    def problems(user: User) -> dict[str, Any]:
        """The store's problems (file, field, fix) and warnings (an outage served from the last good copy)."""
        require(user, "GET", None, "read the problems of")
        snapshot = state.snapshot()
        return {"problems": [p.to_dict() for p in snapshot.problems], "warnings": list(snapshot.warnings)}

    def _set_paused(request: Request, user: Any, name: str, paused: bool, source: str | None) -> ActionResult:
        action = "pause" if paused else "unpause"
        check_csrf(request)
        require(user, "PUT", name, action)
        wanted = parse_choice(SourceType, source, "source")
        snapshot = state.snapshot(fresh=True)
        try:
            entry = snapshot.get(name, wanted)
        except DatasetNotFoundError:
            entry = None
            if wanted is not None:
                raise WorkflowNotFoundError(f"Dataset {name!r} has no {wanted.value} spec") from None
        if entry is not None and entry.status is DatasetStatus.OVERRIDDEN:
            raise WorkflowPermissionError(
                f"Workflow {name!r} (manual) is overridden by code and cannot be {action}d on its own",
                hint="removing the code spec (in Git, deployed by CI) restores the manual one",
            )
        if name not in state.dli_dags(name):
            raise not_in_airflow(name, in_store=entry is not None)
        call(request, "PATCH", f"/dags/{name}", {"is_paused": paused})
        return ActionResult(dataset_name=name, action=action, message=f"{action.capitalize()}d {name}")

    @app.post(f"{API_PREFIX}/workflows/{{name}}/pause")
    def pause(name: str, request: Request, user: User, source: str | None = None) -> ActionResult:
        """Pause the workflow's schedule (code and manual workflows alike)."""
        return _set_paused(request, user, name, True, source)

    @app.post(f"{API_PREFIX}/workflows/{{name}}/unpause")
    def unpause(name: str, request: Request, user: User, source: str | None = None) -> ActionResult:
        """Unpause it; an overridden manual copy cannot be unpaused (the code copy is the active one)."""
        return _set_paused(request, user, name, False, source)

    @app.post(f"{API_PREFIX}/workflows")
    def register(body: RegisterBody, request: Request, user: User) -> WorkflowRegisterResult:
        """Register a spec (YAML text or a JSON object) and its SQL as a manual workflow, validated here,
        written under ``manual/`` only; then Airflow is asked to parse the DAG file at once."""
        from dli_airflow._yaml import load_yaml
        from dli_airflow.catalog import open_store
        from dli_airflow.registry import manual_path_of, prepare_registration, registration_warning, write_manual

        check_csrf(request)
        document = load_yaml(body.spec.encode("utf-8"), "<request body: spec>") if isinstance(body.spec, str) else body.spec
        prepared = prepare_registration(spec=document, sql=body.sql, **body.overrides.model_dump(exclude_none=True))
        name = prepared.spec.name
        # a name that is not a DAG yet can only be authorized against every DAG (DagDetails(id=None))
        require(user, "PUT", name if name in state.dli_dags(name) else None, f"register {name!r} as")
        current = state.snapshot(fresh=True)
        warning = registration_warning(current, name, force=body.force)
        origin = _origin(request)
        written = write_manual(open_store(), prepared, force=body.force, at=manual_path_of(current, name),
                               written_by=provenance_line("register", name_of(user), request_from=origin))
        state.forget_snapshot()
        state.audit("dli.register", user, name, origin, spec=written.spec_path, sql=written.sql_path, force=body.force)
        state.request_reparse()
        return registered_result(prepared, written, warning)

    @app.patch(f"{API_PREFIX}/workflows/{{name}}")
    def update(name: str, body: Overrides, request: Request, user: User) -> WorkflowRegisterResult:
        """Change a manual workflow's schedule (seed 002 P2-4: ``cron``, ``timezone``, ``enabled``,
        ``retry_max_attempts``, ``retry_delay_seconds``); the rest of its spec and its SQL stay. A code
        workflow is DLI-803: it changes in Git."""
        from dli_airflow._yaml import load_yaml
        from dli_airflow.catalog import open_store
        from dli_airflow.registry import manual_entry, prepare_registration, query_file_of, write_manual

        check_csrf(request)
        require(user, "PUT", name if name in state.dli_dags(name) else None, "update")
        changes = body.model_dump(exclude_none=True)
        if not changes:
            raise ParameterError(
                "Nothing to update: the body names no setting",
                hint="send at least one of cron, timezone, enabled, retry_max_attempts, retry_delay_seconds",
            )
        entry, code_stays = manual_entry(state.snapshot(fresh=True), name)
        store = open_store()
        current = store.read_manual(entry.path)
        if current is None:
            raise WorkflowNotFoundError(f"Workflow {name!r} was unregistered meanwhile")
        document = load_yaml(current.data, entry.path)
        sql_path = query_file_of(current.data, entry.path)
        sql_file = store.read_manual(sql_path) if sql_path is not None else None
        sql = sql_file.data.decode("utf-8") if sql_file is not None else None
        prepared = prepare_registration(spec=document, sql=sql, **changes)
        origin = _origin(request)
        written = write_manual(store, prepared, expected_version=current.version, at=entry.path,
                               written_by=provenance_line("update", name_of(user), request_from=origin))
        state.forget_snapshot()
        state.audit("dli.update", user, name, origin, spec=written.spec_path, changes=changes)
        state.request_reparse()
        warning = "The code spec of this dataset stays active: the manual copy is overridden" if code_stays else None
        return registered_result(prepared, written, warning)

    @app.delete(f"{API_PREFIX}/workflows/{{name}}")
    def unregister(name: str, request: Request, user: User) -> ActionResult:
        """Remove a dataset's manual spec and its SQL. A code-only dataset is DLI-803 (code changes in Git)."""
        from dli_airflow.catalog import open_store
        from dli_airflow.registry import delete_manual, manual_entry

        check_csrf(request)
        require(user, "DELETE", name, "unregister")
        entry, code_stays = manual_entry(state.snapshot(fresh=True), name)
        delete_manual(open_store(), entry)
        state.forget_snapshot()
        state.audit("dli.unregister", user, name, _origin(request), spec=entry.path)
        state.request_reparse()  # the DAG goes (or the code copy takes over) at once, not at the next interval
        return ActionResult(
            dataset_name=name, action="unregister",
            message=f"Unregistered the manual spec of {name} ({entry.path})"
            + ("; the code version stays active" if code_stays else ""),
        )

    @app.post(f"{API_PREFIX}/workflows/{{name}}/runs")
    def run(name: str, body: RunBody, request: Request, user: User) -> WorkflowRunResult:
        """Start an ad-hoc run: the parameters are validated and coerced against the spec here, before
        Airflow is called (``dry_run``: render and parse the SQL, trigger nothing)."""
        from dli_airflow._runs import _render_dry
        from dli_airflow.params import conf_for_run

        check_csrf(request)
        require(user, "POST", name, "run", runs=True)
        entry = entry_for_run(state.snapshot(fresh=True), name, parse_choice(SourceType, body.source, "source"))
        dag = state.dli_dags(name).get(name)
        if dag is None:
            raise not_in_airflow(name, in_store=entry is not None, path=entry.path if entry else None)
        conf = conf_for_run(entry.spec, body.parameters) if entry is not None else dict(body.parameters)
        if body.dry_run:
            rendered = _render_dry(entry, body.parameters) if entry is not None else ()
            return WorkflowRunResult(
                dataset_name=name, action="run", dry_run=True, rendered_sql=rendered,
                message=f"dry run: {len(rendered)} statement(s) render and parse; nothing was triggered",
            )
        check_runnable(name, dag)
        run_id = make_run_id(name, "adhoc")
        created = call(request, "POST", f"/dags/{name}/dagRuns", {
            "logical_date": None, "dag_run_id": run_id, "conf": conf,
            "note": body.note or f"triggered by {name_of(user)} through dli",
        }, retry=True)
        return WorkflowRunResult(
            dataset_name=name, action="run", run_id=run_id,
            run_status=run_status(created) if created is not None else RunStatus.PENDING,
            message=f"Run started: {run_id}",
        )

    @app.post(f"{API_PREFIX}/workflows/{{name}}/backfills")
    def backfill(name: str, body: BackfillBody, request: Request, user: User) -> WorkflowRunResult:
        """Backfill the scheduled dates whose local date (in the spec's time zone) is in [start, end], one
        run at a time, with the parameters validated and coerced against the spec here (``dry_run``: the
        dates, nothing created)."""
        from dli_airflow._runs import backfill_request, backfill_started, backfill_window, dry_run_dates
        from dli_airflow.params import conf_for_backfill

        check_csrf(request)
        require(user, "POST", name, "backfill", runs=True)
        start, end = backfill_window(body.start, body.end, body.parameters)
        entry = entry_for_run(state.snapshot(fresh=True), name, parse_choice(SourceType, body.source, "source"))
        dag = state.dli_dags(name).get(name)
        if dag is None or entry is None:
            raise not_in_airflow(name, in_store=entry is not None)
        conf = conf_for_backfill(entry.spec, body.parameters)
        tz = entry.spec.schedule.timezone if entry.spec.schedule else "UTC"
        request_body = backfill_request(name, start, end, conf, tz)
        refused = f"Airflow refused the backfill of {name!r}"
        dates = dry_run_dates(name, start, end, call(request, "POST", "/backfills/dry_run", request_body, refused=refused))
        if body.dry_run:
            return backfill_started(name, dates, None)
        check_runnable(name, dag)
        # On SQLite, Airflow answers 503 when a lock stopped it half-way, after deleting the runs it had made —
        # one of which the scheduler may have queued already. Retrying at once would make runs of the same ids,
        # and that queued task's failure ("not found") would then land on the new run: wait until it has.
        created = call(request, "POST", "/backfills", request_body, refused=refused, retry=True, settle=5.0, conflict=(
            f"A backfill of {name!r} is already running", "wait for it or stop it (dli workflow stop RUN_ID -d DATASET)"))
        return backfill_started(name, dates, int(created["id"]))

    @app.post(f"{API_PREFIX}/workflows/{{name}}/runs/{{run_id}}/stop")
    def stop(name: str, run_id: str, request: Request, user: User) -> WorkflowRunResult:
        """Stop a run: Airflow marks it failed and terminates its task; its note records who stopped it, so
        it reads ``KILLED``."""
        from datetime import datetime, timezone

        from dli_airflow.workflow import KILLED_NOTE_PREFIX, run_from_api

        check_csrf(request)
        require(user, "PUT", name, "stop runs of", runs=True)
        if name not in state.dli_dags(name):
            raise WorkflowNotFoundError(f"Workflow {name!r} is not in Airflow (or not a dli DAG)")
        path = f"/dags/{name}/dagRuns/{run_id}"
        raw = call(request, "GET", path, missing=(
            f"Run {run_id!r} of {name!r} is not in Airflow", f"list the runs with: dli workflow history -d {name}"))
        if run_from_api(raw).status.is_terminal:
            raise WorkflowExecutionError(f"Run {run_id!r} has already ended ({run_from_api(raw).status.value}); nothing to stop")
        note = f"{KILLED_NOTE_PREFIX} {name_of(user)} through dli at {datetime.now(timezone.utc):%Y-%m-%d %H:%M:%S} UTC"
        call(request, "PATCH", f"{path}?update_mask=note", {"note": note})
        call(request, "PATCH", f"{path}?update_mask=state", {"state": "failed"})
        return WorkflowRunResult(dataset_name=name, action="stop", run_id=run_id, run_status=RunStatus.KILLED,
                                 message=f"Stopped {run_id}")

    return app



def _origin(request: Request) -> str | None:
    return request.client.host if request.client else None


def _with_provenance(info: WorkflowInfo) -> WorkflowInfo:
    """A manual workflow with who registered or last changed it (the provenance line of its spec)."""
    if info.source_type is not SourceType.MANUAL or not info.spec_file:
        return info
    from dli_airflow.catalog import open_store
    from dli_airflow.registry import provenance
    from dli_airflow.workflow import parse_time

    try:
        current = open_store().read_manual(info.spec_file)
    except (DliError, OSError):
        return info
    record = provenance(current.data) if current is not None else {}
    if not record:
        return info
    try:
        at = parse_time(record["at"]) if "at" in record else None
    except (ValueError, TypeError):
        at = None
    return info.model_copy(update={"changed_by": record.get("by"), "changed_at": at, "last_change": record.get("action")})



__all__ = ["API_PREFIX", "MAX_PAGE", "create_app", "request_error", "status_of"]
