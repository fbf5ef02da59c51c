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

from typing import Annotated, Any, Optional, Union

from fastapi import Depends, FastAPI, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from dli_airflow import __version__
from dli_airflow._yaml import MAX_SPEC_BYTES
from dli_airflow.errors import (
    DatasetNotFoundError,
    DliError,
    ParameterError,
    ServerExecutionError,
    WorkflowNotFoundError,
    WorkflowPermissionError,
    parse_choice,
)
from dli_airflow.plugin import state
from dli_airflow.registry import registered_result
from dli_airflow.spec import DatasetStatus, SourceType
from dli_airflow.store import MAX_SQL_BYTES
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
#: Writes authenticated by the UI's cookie (not by a bearer token) must carry this header: a page of
#: another site cannot send it without a CORS preflight the api-server refuses (CSRF protection).
CSRF_HEADER = "X-DLI-Request"

# HTTP status by DLI code (the longest matching prefix wins)
_STATUS = {
    "DLI-0": 500, "DLI-1": 404, "DLI-2": 422, "DLI-3": 422, "DLI-4": 502, "DLI-5": 503,
    "DLI-800": 404, "DLI-801": 409, "DLI-802": 409, "DLI-803": 403,
}


def status_of(error: DliError) -> int:
    """The HTTP status that answers ``error``."""
    for prefix in sorted(_STATUS, key=len, reverse=True):
        if error.code.startswith(prefix):
            return _STATUS[prefix]
    return 500


async def _user(request: Request) -> Any:
    """The caller, authenticated by the api-server (401 without credentials, 403 for a bad token)."""
    from airflow.api_fastapi.core_api.security import get_user
    from fastapi.security import HTTPAuthorizationCredentials

    header = request.headers.get("authorization") or ""
    scheme, _, token = header.partition(" ")
    bearer = HTTPAuthorizationCredentials(scheme=scheme, credentials=token) if token else None
    return await get_user(request, None, bearer)


User = Annotated[Any, Depends(_user)]


def _authorized(user: Any, method: str, name: str | None, runs: bool = False) -> bool:
    """Whether ``user`` may ``method`` the DAG ``name`` (``None``: every DAG) — or its runs — by Airflow's
    auth manager."""
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity, DagDetails

    team = None
    if name is not None:
        from airflow.models.dag import DagModel

        team = DagModel.get_team_name(name)
    return get_auth_manager().is_authorized_dag(
        method=method, access_entity=DagAccessEntity.RUN if runs else None,
        details=DagDetails(id=name, team_name=team), user=user,
    )


def _require(user: Any, method: str, name: str | None, action: str, runs: bool = False) -> None:
    if not _authorized(user, method, name, runs):
        who = getattr(user, "get_name", lambda: "this user")()
        target = f"the workflow {name!r}" if name else "every workflow"
        raise WorkflowPermissionError(
            f"{who} may not {action} {target}: Airflow's auth manager refuses {method} on the DAG",
            hint="ask an Airflow admin for that DAG permission (see the README's role table)",
        )


def _visible(user: Any, infos: list[WorkflowInfo]) -> list[WorkflowInfo]:
    from airflow.api_fastapi.app import get_auth_manager

    readable = get_auth_manager().get_authorized_dag_ids(user=user, method="GET")
    every = None
    kept = []
    for info in infos:
        if info.in_airflow and info.status is not DatasetStatus.OVERRIDDEN:
            if info.dataset_name in readable:
                kept.append(info)
            continue
        if every is None:
            every = _authorized(user, "GET", None)
        if every:
            kept.append(info)
    return kept


def _infos(only: str | None = None, running: bool = False) -> list[WorkflowInfo]:
    snapshot = state.snapshot(fresh=only is not None)
    return merge_workflows(snapshot.entries, state.dli_dags(only), state.running_dag_ids() if running else set(), only=only)


class WorkflowPage(BaseModel):
    workflows: list[WorkflowInfo]
    total_entries: int


class WorkflowCopies(BaseModel):
    """A dataset's workflow: the active copy first, then the others (an overridden manual copy)."""

    workflow: WorkflowInfo
    copies: list[WorkflowInfo]


class ActionResult(BaseModel):
    dataset_name: str
    action: str
    message: str


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
        return JSONResponse(exc.to_dict(), status_code=status_of(exc))

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
            _visible(user, _infos(running=running)),
            source=parse_choice(SourceType, source, "source"),
            status=parse_choice(DatasetStatus, status, "status"),
            dataset_filter=filter, running_only=running, enabled_only=enabled,
        )
        return WorkflowPage(workflows=selected[offset:offset + limit], total_entries=len(selected))

    @app.get(f"{API_PREFIX}/workflows/{{name}}")
    def get_workflow(name: str, user: User) -> WorkflowCopies:
        """A dataset's workflow, the active copy first."""
        _require(user, "GET", name, "read")
        infos = [i for i in _infos(only=name) if i.dataset_name == name]
        if not infos:
            raise WorkflowNotFoundError(f"Workflow {name!r} is neither in the spec store nor in Airflow")
        infos.sort(key=lambda i: i.status is DatasetStatus.OVERRIDDEN)
        return WorkflowCopies(workflow=infos[0], copies=infos[1:])

    @app.get(f"{API_PREFIX}/problems")
    def problems(user: User) -> dict[str, Any]:
        """The store's problems (file, field, fix) and warnings (an outage served from the last good copy)."""
        _require(user, "GET", None, "read the problems of")
        snapshot = state.snapshot()
        return {"problems": [p.to_dict() for p in snapshot.problems], "warnings": list(snapshot.warnings)}

    def _set_paused(request: Request, user: Any, name: str, paused: bool, source: str | None) -> ActionResult:
        action = "pause" if paused else "unpause"
        _check_csrf(request)
        _require(user, "PUT", name, action)
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
            raise WorkflowNotFoundError(f"Workflow {name!r} is not in Airflow (not parsed yet, or not a dli DAG)")
        _airflow(request, "PATCH", f"/dags/{name}", {"is_paused": paused})
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
        from dli_airflow.registry import prepare_registration, registration_warning, write_manual

        _check_csrf(request)
        document = load_yaml(body.spec.encode("utf-8"), "<request body: spec>") if isinstance(body.spec, str) else body.spec
        prepared = prepare_registration(spec=document, sql=body.sql, **body.overrides.model_dump(exclude_none=True))
        name = prepared.spec.name
        # a name that is not a DAG yet can only be authorized against every DAG (DagDetails(id=None))
        _require(user, "PUT", name if name in state.dli_dags(name) else None, f"register {name!r} as")
        warning = registration_warning(state.snapshot(fresh=True), name, force=body.force)
        written = write_manual(open_store(), prepared, force=body.force)
        state.forget_snapshot()
        state.audit("dli.register", user, name, request.client.host if request.client else None,
                    spec=written.spec_path, sql=written.sql_path, force=body.force)
        state.request_reparse()
        return registered_result(prepared, written, warning)

    @app.delete(f"{API_PREFIX}/workflows/{{name}}")
    def unregister(name: str, request: Request, user: User) -> ActionResult:
        """Remove a dataset's manual spec and its SQL. A code-only dataset is DLI-803 (code changes in Git)."""
        from dli_airflow.catalog import open_store
        from dli_airflow.registry import delete_manual, manual_entry

        _check_csrf(request)
        _require(user, "DELETE", name, "unregister")
        entry, code_stays = manual_entry(state.snapshot(fresh=True), name)
        delete_manual(open_store(), entry)
        state.forget_snapshot()
        state.audit("dli.unregister", user, name, request.client.host if request.client else None, spec=entry.path)
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

        _check_csrf(request)
        _require(user, "POST", name, "run", runs=True)
        entry = entry_for_run(state.snapshot(fresh=True), name, parse_choice(SourceType, body.source, "source"))
        dag = state.dli_dags(name).get(name)
        if dag is None:
            where = f" Its spec is in the store ({entry.path}) but Airflow has not parsed it yet." if entry else ""
            raise WorkflowNotFoundError(f"Workflow {name!r} is not in Airflow.{where}")
        conf = conf_for_run(entry.spec, body.parameters) if entry is not None else dict(body.parameters)
        if body.dry_run:
            rendered = _render_dry(entry, body.parameters) if entry is not None else ()
            return WorkflowRunResult(
                dataset_name=name, action="run", dry_run=True, rendered_sql=rendered,
                message=f"dry run: {len(rendered)} statement(s) render and parse; nothing was triggered",
            )
        check_runnable(name, dag)
        run_id = make_run_id(name, "adhoc")
        who = getattr(user, "get_name", lambda: "unknown")()
        created = _airflow(request, "POST", f"/dags/{name}/dagRuns", {
            "logical_date": None, "dag_run_id": run_id, "conf": conf,
            "note": body.note or f"triggered by {who} through dli",
        }, retry=True)
        return WorkflowRunResult(
            dataset_name=name, action="run", run_id=run_id,
            run_status=run_status(created) if created is not None else RunStatus.PENDING,
            message=f"Run started: {run_id}",
        )

    return app


class Overrides(BaseModel):
    """Schedule settings over the spec's (the keys of :data:`dli_airflow.registry.OVERRIDE_KEYS`)."""

    model_config = ConfigDict(extra="forbid")

    cron: Optional[str] = None
    timezone: Optional[str] = None
    enabled: Optional[bool] = None
    retry_max_attempts: Optional[int] = None
    retry_delay_seconds: Optional[int] = None


class RegisterBody(BaseModel):
    """``POST /workflows``: the spec (YAML text, or the same as a JSON object), its SQL when the spec names a
    ``query_file``, ``force`` (seed 003 §2.7) and schedule overrides (``cron``, ``timezone``, ``enabled``,
    ``retry_max_attempts``, ``retry_delay_seconds``)."""

    model_config = ConfigDict(extra="forbid")

    spec: Union[Annotated[str, Field(max_length=MAX_SPEC_BYTES)], dict[str, Any]]
    sql: Optional[Annotated[str, Field(max_length=MAX_SQL_BYTES)]] = None
    force: bool = False
    overrides: Overrides = Field(default_factory=lambda: Overrides())




class RunBody(BaseModel):
    """``POST /workflows/{name}/runs``: the run's parameters (JSON values or text, coerced to their types)."""

    model_config = ConfigDict(extra="forbid")

    parameters: dict[str, Any] = Field(default_factory=dict)
    source: Optional[str] = None
    note: Optional[str] = Field(default=None, max_length=1000)
    dry_run: bool = False


def _check_csrf(request: Request) -> None:
    if request.headers.get("authorization", "").lower().startswith("bearer "):
        return
    if not request.headers.get(CSRF_HEADER):
        raise WorkflowPermissionError(
            f"A write authenticated by the UI's cookie needs the {CSRF_HEADER} header (CSRF protection)",
            hint="send `Authorization: Bearer <token>`, or the header from the Datasets page's own script",
        )


def _airflow(
    request: Request, method: str, path: str, body: dict[str, Any] | None = None, *, retry: bool = False
) -> Any:
    """Call Airflow's REST API v2 in this api-server process with the caller's own credentials.

    :param retry: retry on 500/503 (a write the metadata DB refused, e.g. a SQLite lock) — only for writes
        that are safe to repeat (a run with its own new id: a 409 then means an earlier attempt made it)
    """
    import time

    import anyio.from_thread
    import httpx
    from airflow.api_fastapi.main import app as root  # the api-server's app (uvicorn imported it already)

    from dli_airflow._api import backoff

    headers = {k: v for k, v in request.headers.items() if k.lower() in ("authorization", "cookie")}
    headers["content-type"] = "application/json"

    async def call() -> httpx.Response:
        transport = httpx.ASGITransport(app=root)
        async with httpx.AsyncClient(transport=transport, base_url="http://api-server") as client:
            return await client.request(method, f"/api/v2{path}", json=body, headers=headers)

    for attempt in range(1, 7 if retry else 2):
        response = anyio.from_thread.run(call)
        if not (retry and response.status_code in (500, 503) and attempt < 6):
            break
        time.sleep(backoff(attempt))
    if retry and attempt > 1 and response.status_code == 409:
        return None  # an earlier attempt made it
    if response.status_code in (401, 403):
        raise WorkflowPermissionError(f"Airflow refused {method} {path}: {response.text[:200]}")
    if response.status_code in (400, 422):
        raise ParameterError(f"Airflow refused {method} {path}: {response.text[:300]}")
    if response.status_code >= 400:
        raise ServerExecutionError(f"Airflow answered {response.status_code} to {method} {path}: {response.text[:300]}")
    return response.json() if response.content else None


__all__ = ["API_PREFIX", "CSRF_HEADER", "MAX_PAGE", "create_app", "status_of"]
