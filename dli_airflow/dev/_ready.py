"""Readiness of the dev stack: health, the token, the DAG list, import errors, the DAG file's parse.

Every request goes through :class:`~dli_airflow._api.ApiTransport` (its auth, its error mapping), built
with ``retries=1``: the poll loops here own the timing, and a failed request is simply asked again at
the next poll until the deadline.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from collections.abc import Collection, Mapping
from datetime import datetime
from typing import Any

import httpx

from dli_airflow._api import ApiTransport
from dli_airflow.dev._home import DAG_FILE_NAME, USERNAME, _Paths
from dli_airflow.dev._process import _check_alive, _owned_pids, _ProcessRecord, _tail
from dli_airflow.errors import DevError, DliError, ServerAuthError

log = logging.getLogger(__name__)

_POLL_SECONDS = 0.5
# The line the dag-processor's child writes to the per-file log when it starts parsing a file.
_PARSE_START_EVENT = "Filling up the DagBag from "
# What a poll treats as "not yet": every mapped transport or HTTP error but a refused login (handled
# on its own), an httpx error the mapping does not cover (a decoding error), and a body that is not JSON.
_RETRIED: tuple[type[Exception], ...] = (DliError, httpx.HTTPError, ValueError)


def _transport(
    url: str, password: str | None, *, timeout: float, transport: httpx.BaseTransport | None = None
) -> ApiTransport:
    """The REST API of the dev stack, logged in as ``admin`` on the first authenticated request.

    :param password: the admin password; None builds a transport good only for the health check, which
        sends no token
    :param timeout: seconds per request
    :param transport: an httpx transport (tests pass ``httpx.MockTransport``)
    """
    # retries=1: the callers poll to a deadline, so the transport must not add its own backoff.
    return ApiTransport(
        url, username=USERNAME if password is not None else None, password=password, timeout=timeout, retries=1,
        transport=transport,
    )


def get_token(url: str, username: str, password: str, *, timeout: float = 10.0) -> str:
    """A JWT for the REST API from ``POST /auth/token``.

    :param url: base URL of the api-server, e.g. ``http://127.0.0.1:8080``
    :param username: SimpleAuthManager user
    :param password: its password
    :param timeout: seconds for the request
    :returns: the access token, to send as ``Authorization: Bearer <token>``
    :raises ServerAuthError: the login was refused
    :raises ServerUnreachableError: nothing answered at ``url``
    """
    with ApiTransport(url, username=username, password=password, timeout=timeout, retries=1) as api:
        return api.token()


def _health(api: ApiTransport) -> dict[str, str | None] | None:
    """Statuses of metadatabase, scheduler and dag_processor, or None while the api-server is not answering."""
    try:
        data = api.request("GET", "/monitor/health", authenticated=False).json()
    except _RETRIED:
        return None
    if not isinstance(data, dict):
        return None
    return {key: (data.get(key) or {}).get("status") for key in ("metadatabase", "scheduler", "dag_processor")}


def _all_healthy(health: Mapping[str, str | None] | None) -> bool:
    return health is not None and all(value == "healthy" for value in health.values())


def _is_healthy(url: str, *, timeout: float, transport: httpx.BaseTransport | None = None) -> bool:
    """One health check of the stack at ``url`` (``dli dev status``); no login needed.

    :param timeout: seconds for the request
    :param transport: an httpx transport (tests pass ``httpx.MockTransport``)
    """
    with _transport(url, None, timeout=timeout, transport=transport) as api:
        return _all_healthy(_health(api))


def _list_dag_ids(api: ApiTransport) -> set[str]:
    """Every DAG id the api-server lists, across pages."""
    return {dag["dag_id"] for dag in api.paginate("/dags", "dags")}


def _import_errors(api: ApiTransport) -> list[dict[str, Any]]:
    """Every import error the api-server lists, across pages."""
    return api.paginate("/importErrors", "import_errors")


def _format_import_errors(errors: list[dict[str, Any]]) -> str:
    if not errors:
        return "no import errors"
    parts = []
    for error in errors:
        trace = "\n    ".join(str(error.get("stack_trace") or "").strip().splitlines()[-12:])
        parts.append(f"{error.get('filename')}:\n    {trace}")
    return "import errors:\n  " + "\n  ".join(parts)


def _parse_timestamp(value: str) -> datetime | None:
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def _dag_file_parsed_since(paths: _Paths, since: datetime, dag_processor: _ProcessRecord | None) -> bool:
    """True once the dag-processor has finished parsing ``dli_datasets.py`` at least once since ``since``.

    Why this signal: a DAG file that yields no DAGs and no import error leaves no trace in the REST
    API, so neither ``/dags`` nor ``/importErrors`` can tell "parsed" from "not parsed yet". The
    dag-processor, though, writes ``Filling up the DagBag from <file>`` to the file's own log
    (``logs/dag_processor/<date>/<bundle>/dli_datasets.py.log``) when a parse starts, and holds that
    log open until it has stored the result in the database. So a parse started after ``since`` has
    finished when nothing in the dag-processor's group holds the log open any more, or, should /proc
    not show that, when a second parse has started (a file is never parsed twice at once).
    """
    # Resolved and deduplicated: ``dag_processor/latest`` is a symlink to today's folder.
    logs = sorted({log.resolve() for log in paths.logs.glob(f"dag_processor/*/*/{DAG_FILE_NAME}.log")})
    starts = 0
    for log in logs:
        try:
            lines = log.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            continue
        for line in lines:
            if _PARSE_START_EVENT not in line:
                continue
            try:
                event = json.loads(line)
            except ValueError:
                continue
            stamp = _parse_timestamp(str(event.get("timestamp", "")))
            if stamp is not None and stamp >= since and str(event.get("event", "")).endswith(DAG_FILE_NAME):
                starts += 1
    if starts >= 2:
        return True
    if starts == 0 or dag_processor is None:
        return False
    targets = {str(log) for log in logs}
    for pid in _owned_pids({"dag-processor": dag_processor}, tagged=False):
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            return False
        for fd in fds:
            with contextlib.suppress(OSError):
                if os.readlink(f"/proc/{pid}/fd/{fd}") in targets:
                    return False
    return True



def _fresh_import_errors(api: ApiTransport, since: datetime | None) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """All import errors, and those of our DAG file (recorded after ``since``, when given)."""
    errors = _import_errors(api)
    ours = [e for e in errors if str(e.get("filename", "")).endswith(DAG_FILE_NAME)]
    if since is not None:
        # An import error of an earlier run stays in the database until the file is parsed again.
        ours = [e for e in ours if (stamp := _parse_timestamp(str(e.get("timestamp", "")))) and stamp >= since]
    return errors, ours


def _wait_ready(
    paths: _Paths,
    records: Mapping[str, _ProcessRecord],
    *,
    url: str,
    password: str,
    deadline: float,
    timeout: float,
    expected: Collection[str] | None,
    parsed_since: datetime | None,
    transport: httpx.BaseTransport | None = None,
) -> None:
    """Poll until healthy, then until the expected DAGs (or one parse of the DAG file) are there.

    A request that fails or times out is retried until the deadline: on SQLite the api-server can
    wait seconds for a lock while the first tasks start, and that is not a reason to give up. A
    refused login is not retried: the password is ours, and waiting does not change it.

    :param transport: an httpx transport (tests pass ``httpx.MockTransport``)
    """

    def elapsed() -> float:
        return timeout - (deadline - time.monotonic())

    with _transport(url, password, timeout=15.0, transport=transport) as api:
        health: dict[str, str | None] | None = None
        while True:
            _check_alive(paths, records)
            previous, health = health, _health(api)
            if health != previous:
                log.debug("health after %.1f s: %s", elapsed(), health)
            if _all_healthy(health):
                break
            if time.monotonic() > deadline:
                shown = health if health is not None else "api-server not answering"
                tails = "\n".join(f"--- {paths.log(name)}:\n{_tail(paths.log(name), 10)}" for name in records)
                raise DevError(
                    f"Airflow at {url} was not healthy within {timeout:.0f} s ({shown}); "
                    f"pass a longer --timeout or see the logs:\n{tails}"
                )
            time.sleep(_POLL_SECONDS)

        wanted = set(expected or ())
        missing: set[str] = set(wanted)
        errors: list[dict[str, Any]] = []
        last_failure: str | None = None
        while True:
            _check_alive(paths, records)
            try:
                # The first authenticated request logs in (the transport's auth keeps the token).
                errors, ours = _fresh_import_errors(api, parsed_since)
                listed = _list_dag_ids(api) if wanted and not ours else set()
            except ServerAuthError as exc:
                raise ServerAuthError(
                    exc.message,
                    hint=f"`dli dev up` logs in as {USERNAME} with the password in {paths.passwords}; "
                    f"if it changed while Airflow ran, run `dli dev down --home {paths.home}`, then `dli dev up`",
                ) from exc
            except _RETRIED as exc:
                last_failure = f"{type(exc).__name__}: {exc}"
                log.debug("retrying after %s", last_failure)
            else:
                if ours:
                    raise DevError(
                        f"the DAG file {paths.dag_file} failed to import; {_format_import_errors(ours)}",
                        hint="fix the error above (in dli_airflow.factory or the specs), then run `dli dev up` again",
                    )
                if wanted:
                    missing = wanted - listed
                    if not missing:
                        log.debug("all %d DAGs listed after %.1f s", len(wanted), elapsed())
                        return
                elif parsed_since is None or _dag_file_parsed_since(paths, parsed_since, records.get("dag-processor")):
                    log.debug("DAG file parsed after %.1f s", elapsed())
                    return
            if time.monotonic() > deadline:
                failure = f"; last request failed with {last_failure}" if last_failure else ""
                tail = f"last lines of {paths.log('dag-processor')}:\n{_tail(paths.log('dag-processor'), 15)}"
                if wanted:
                    raise DevError(
                        f"DAGs missing after {timeout:.0f} s: {', '.join(sorted(missing))}; "
                        f"{_format_import_errors(errors)}{failure}\n{tail}",
                        hint="check those specs (`dli spec validate`), or pass a longer --timeout",
                    )
                raise DevError(
                    f"the dag-processor did not parse {paths.dag_file} within {timeout:.0f} s{failure}\n{tail}",
                    hint="pass a longer --timeout, or look for the cause in the log above",
                )
            time.sleep(_POLL_SECONDS)
