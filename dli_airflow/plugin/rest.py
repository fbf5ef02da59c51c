"""Airflow's REST API v2 called in the api-server's own process with the caller's credentials: Airflow
authorizes and audits each write as if the caller had made it, once."""

from __future__ import annotations

from typing import Any

from fastapi import Request

from dli_airflow.errors import ParameterError, ServerExecutionError, WorkflowExecutionError, WorkflowPermissionError


def call(
    request: Request, method: str, path: str, body: dict[str, Any] | None = None, *, retry: bool = False,
    settle: float = 0.0,
    refused: str | None = None, conflict: tuple[str, str] | None = None, missing: tuple[str, str] | None = None,
) -> Any:
    """Call Airflow's REST API v2 in this api-server process with the caller's own credentials.

    :param retry: retry on 500/503 (a write the metadata DB refused, e.g. a SQLite lock) — only for writes
        that are safe to repeat (a run with its own new id: a 409 then means an earlier attempt made it;
        a backfill Airflow could not create)
    :param settle: seconds to wait at least before each retry (see the backfill route: a half-made backfill's
        cleanup must be seen by the scheduler before its run ids are made again)
    :param refused: the message of a 400/422 answer (DLI-203), default one naming the request
    :param conflict: message and hint of a 409 answer (DLI-802), else a 409 after a retry is success
    :param missing: message and hint of a 404 answer (DLI-802)
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
        time.sleep(max(settle, backoff(attempt)))
    if response.status_code == 409 and conflict is not None:
        raise WorkflowExecutionError(conflict[0], hint=conflict[1])
    if retry and attempt > 1 and response.status_code == 409:
        return None  # an earlier attempt made it
    if response.status_code == 404 and missing is not None:
        raise WorkflowExecutionError(missing[0], hint=missing[1])
    if response.status_code in (401, 403):
        raise WorkflowPermissionError(f"Airflow refused {method} {path}: {response.text[:200]}")
    if response.status_code in (400, 422):
        raise ParameterError(f"{refused or f'Airflow refused {method} {path}'}: {_detail(response)}")
    if response.status_code >= 400:
        raise ServerExecutionError(f"Airflow answered {response.status_code} to {method} {path}: {response.text[:300]}")
    return response.json() if response.content else None


def _detail(response: Any) -> str:
    from dli_airflow._api import detail

    return detail(response)[:300]




__all__ = ["call"]
