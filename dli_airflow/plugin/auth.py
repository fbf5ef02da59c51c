"""Who calls the control plane, and what Airflow's auth manager lets them do (a dataset's name is its DAG id)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Request

from dli_airflow.errors import WorkflowPermissionError
from dli_airflow.spec import DatasetStatus
from dli_airflow.workflow import WorkflowInfo

#: Writes authenticated by the UI's cookie (not by a bearer token) must carry this header: a page of
#: another site cannot send it without a CORS preflight the api-server refuses (CSRF protection).
CSRF_HEADER = "X-DLI-Request"


async def authenticated_user(request: Request) -> Any:
    """The caller, authenticated by the api-server (401 without credentials, 403 for a bad token)."""
    from airflow.api_fastapi.core_api.security import get_user
    from fastapi.security import HTTPAuthorizationCredentials

    header = request.headers.get("authorization") or ""
    scheme, _, token = header.partition(" ")
    bearer = HTTPAuthorizationCredentials(scheme=scheme, credentials=token) if token else None
    return await get_user(request, None, bearer)


User = Annotated[Any, Depends(authenticated_user)]


def authorized(user: Any, method: str, name: str | None, runs: bool = False) -> bool:
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


def require(user: Any, method: str, name: str | None, action: str, runs: bool = False) -> None:
    if not authorized(user, method, name, runs):
        who = getattr(user, "get_name", lambda: "this user")()
        target = f"the workflow {name!r}" if name else "every workflow"
        raise WorkflowPermissionError(
            f"{who} may not {action} {target}: Airflow's auth manager refuses {method} on the DAG",
            hint="ask an Airflow admin for that DAG permission (see the README's role table)",
        )


def visible(user: Any, infos: list[WorkflowInfo]) -> list[WorkflowInfo]:
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
            every = authorized(user, "GET", None)
        if every:
            kept.append(info)
    return kept


def check_csrf(request: Request) -> None:
    if request.headers.get("authorization", "").lower().startswith("bearer "):
        return
    if not request.headers.get(CSRF_HEADER):
        raise WorkflowPermissionError(
            f"A write authenticated by the UI's cookie needs the {CSRF_HEADER} header (CSRF protection)",
            hint="send `Authorization: Bearer <token>`, or the header from the Datasets page's own script",
        )



def name_of(user: Any) -> str:
    """The user's name as the auth manager knows it (for notes and provenance)."""
    return str(getattr(user, "get_name", lambda: "unknown")() or "unknown")


__all__ = ["CSRF_HEADER", "User", "authenticated_user", "authorized", "check_csrf", "name_of", "require", "visible"]
