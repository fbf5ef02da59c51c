"""``WorkflowClient``: run, backfill, stop, watch, pause and register dli workflows through Airflow's REST API v2.

Imports no Airflow code: it works on a laptop with only ``httpx`` and this package. It reads the spec
store (``store=`` or ``[dli] spec_store``) to validate parameters before anything is sent, to know a
dataset's source, and to register manual specs; everything about runs comes from Airflow.

Connection: ``WorkflowClient(url=..., token=...)`` or ``username=/password=`` (a JWT from ``/auth/token``,
refreshed when it expires), or :meth:`WorkflowClient.from_env` with ``DLI_AIRFLOW_URL`` and
``DLI_AIRFLOW_TOKEN`` or ``DLI_AIRFLOW_USERNAME``/``DLI_AIRFLOW_PASSWORD``; ``DLI_AIRFLOW_CA_BUNDLE``
for a private CA. Idempotent reads are retried on connection errors and 5xx with bounded backoff.
The token and the password are never logged or put in an error.
"""

from __future__ import annotations

import getpass
import logging
import os
import re
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import date, datetime, time as dtime, timedelta, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx

from dli_airflow.errors import (
    DatasetNotFoundError,
    DliError,
    ParameterError,
    ServerAuthError,
    ServerExecutionError,
    ServerUnreachableError,
    WorkflowExecutionError,
    WorkflowNotFoundError,
    WorkflowPermissionError,
    WorkflowRegistrationError,
)
from dli_airflow.spec import DatasetStatus, SourceType
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
)

log = logging.getLogger(__name__)

#: The conf key that ties the runs of one backfill (dli_airflow.operators.BACKFILL_TOKEN_KEY; no Airflow import here).
BACKFILL_TOKEN_KEY = "__dli_backfill"
#: Prefix of the run note that marks a run stopped by a user (KILLED rather than FAILED).
KILLED_NOTE_PREFIX = "dli: stopped by"
#: Kinds in run ids the client makes: ``<dataset>__<kind>__<UTC timestamp>``.
RUN_KINDS = ("adhoc", "backfill")
_RUN_ID = re.compile(r"^(?P<dataset>.+)__(?P<kind>adhoc|backfill)__(?P<ts>\d{8}T\d{6}(?:\d+)?Z)$")
_RETRY_STATUSES = {500, 502, 503, 504}
_AIRFLOW_RUN_TYPES = {"manual": "adhoc", "scheduled": "scheduled", "backfill": "backfill", "asset_triggered": "asset_triggered"}


class WorkflowClient:
    """A client of Airflow's REST API v2 for dli workflows.

    :param url: the Airflow API server, e.g. ``https://airflow.example.com``.
    :param token: a JWT (any auth manager); or ``username``/``password`` for ``/auth/token``.
    :param timeout: seconds per request.
    :param store: the spec store (folder or ``s3://``); default ``[dli] spec_store``.
    :param verify: TLS verification: ``True``, ``False`` or a CA bundle path.
    :param retries: attempts for idempotent requests on connection errors and 5xx.
    :param transport: an httpx transport (tests inject faults here).
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        token: str | None = None,
        username: str | None = None,
        password: str | None = None,
        timeout: float = 30.0,
        store: str | os.PathLike[str] | None = None,
        verify: bool | str = True,
        retries: int = 3,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if not url:
            raise ServerUnreachableError(
                "No Airflow URL: pass url= or set DLI_AIRFLOW_URL (e.g. http://127.0.0.1:8080)",
                hint="`dli dev status` shows the URL of a local Airflow",
            )
        if token is None and (username is None or password is None):
            raise ServerAuthError(
                "No Airflow credentials: set DLI_AIRFLOW_TOKEN, or DLI_AIRFLOW_USERNAME and DLI_AIRFLOW_PASSWORD",
                hint="a token from any auth manager works through DLI_AIRFLOW_TOKEN",
            )
        self.url = url.rstrip("/")
        self._token = token
        self._username = username
        self._password = password
        self._static_token = token is not None
        self.retries = max(1, retries)
        self.store_url = str(store) if store is not None else None
        self._http = httpx.Client(
            base_url=self.url, timeout=timeout, verify=verify, transport=transport, follow_redirects=False
        )
        self.requests_made = 0

    @classmethod
    def from_env(cls, **overrides: Any) -> WorkflowClient:
        """A client from ``DLI_AIRFLOW_URL``, ``DLI_AIRFLOW_TOKEN`` or ``DLI_AIRFLOW_USERNAME``/``_PASSWORD``,
        ``DLI_AIRFLOW_CA_BUNDLE`` and ``DLI_AIRFLOW_TIMEOUT``; keyword arguments override them."""
        env = os.environ
        kwargs: dict[str, Any] = {
            "url": env.get("DLI_AIRFLOW_URL"),
            "token": env.get("DLI_AIRFLOW_TOKEN") or None,
            "username": env.get("DLI_AIRFLOW_USERNAME") or None,
            "password": env.get("DLI_AIRFLOW_PASSWORD") or None,
        }
        if env.get("DLI_AIRFLOW_CA_BUNDLE"):
            kwargs["verify"] = env["DLI_AIRFLOW_CA_BUNDLE"]
        if env.get("DLI_AIRFLOW_TIMEOUT"):
            kwargs["timeout"] = float(env["DLI_AIRFLOW_TIMEOUT"])
        if env.get("DLI_SPEC_STORE"):
            kwargs["store"] = env["DLI_SPEC_STORE"]
        kwargs.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**kwargs)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> WorkflowClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:  # never show credentials
        return f"WorkflowClient(url={self.url!r})"

    # -- HTTP ---------------------------------------------------------------------------------------------
    def _fetch_token(self) -> str:
        try:
            response = self._http.post("/auth/token", json={"username": self._username, "password": self._password})
            self.requests_made += 1
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from None
        if response.status_code in (401, 403):
            raise ServerAuthError(
                f"Airflow at {self.url} refused the login of user {self._username!r}",
                hint="check DLI_AIRFLOW_USERNAME and DLI_AIRFLOW_PASSWORD (or set DLI_AIRFLOW_TOKEN)",
            )
        if response.status_code >= 400:
            raise ServerExecutionError(f"Airflow at {self.url} answered {response.status_code} to /auth/token")
        token = response.json().get("access_token")
        if not token:
            raise ServerAuthError(f"Airflow at {self.url} returned no access_token from /auth/token")
        return str(token)

    def _unreachable(self, exc: Exception) -> ServerUnreachableError:
        reason = type(exc).__name__
        return ServerUnreachableError(
            f"Cannot connect to Airflow at {self.url} ({reason})",
            hint="check DLI_AIRFLOW_URL and that the Airflow api-server is running (`dli dev status` for a local one)",
        )

    def _request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Any = None,
        ok: tuple[int, ...] = (200,),
        idempotent: bool | None = None,
        retry_statuses: tuple[int, ...] = (),
    ) -> httpx.Response:
        """Send one API request; map transport and HTTP errors to DLI errors.

        Returns the response when its status is in ``ok`` (the caller handles those); raises otherwise.
        """
        if idempotent is None:
            idempotent = method in ("GET", "HEAD")
        attempts = self.retries if idempotent else (max(self.retries, 6) if retry_statuses else 1)
        refreshed = False
        attempt = 0
        while True:
            attempt += 1
            if self._token is None:
                self._token = self._fetch_token()
            headers = {"Authorization": f"Bearer {self._token}"}
            try:
                response = self._http.request(method, f"/api/v2{path}", json=json, params=params, headers=headers)
                self.requests_made += 1
            except httpx.TransportError as exc:
                if idempotent and attempt < attempts:
                    time.sleep(min(0.25 * 2 ** (attempt - 1), 2.0))
                    continue
                raise self._unreachable(exc) from None
            status = response.status_code
            # Airflow answers 403 "Invalid JWT token" (not 401) to an expired token
            expired = status == 401 or (status == 403 and "Invalid JWT" in response.text)
            if expired and not refreshed and not self._static_token:
                self._token = None  # expired: log in again once
                refreshed = True
                attempt -= 1
                continue
            retryable = _RETRY_STATUSES if idempotent else set(retry_statuses)
            if status in retryable and attempt < attempts:
                time.sleep(min(0.25 * 2 ** (attempt - 1), 2.0))
                continue
            if status in ok:
                return response
            self._raise_for(response, path)

    def _raise_for(self, response: httpx.Response, path: str) -> None:
        status = response.status_code
        detail = _detail(response)
        if status == 401 or (status == 403 and "Invalid JWT" in response.text):
            raise ServerAuthError(
                f"Airflow at {self.url} refused the credentials (401): {detail}",
                hint="set a valid DLI_AIRFLOW_TOKEN, or DLI_AIRFLOW_USERNAME and DLI_AIRFLOW_PASSWORD",
            )
        if status == 403:
            raise ServerAuthError(
                f"Airflow at {self.url} does not allow this ({path}): {detail}",
                hint="ask an Airflow admin for access to the DAG, or use another user",
            )
        if status >= 500:
            raise ServerExecutionError(
                f"Airflow at {self.url} failed ({status}) on {path}: {detail}",
                hint="retry in a moment; if it persists, check the api-server log",
            )
        raise WorkflowExecutionError(f"Airflow refused {path} ({status}): {detail}")

    def _get(self, path: str, **params: Any) -> Any:
        return self._request("GET", path, params={k: v for k, v in params.items() if v is not None}).json()

    # -- the store ----------------------------------------------------------------------------------------
    def _snapshot(self):  # -> StoreSnapshot | None
        from dli_airflow.store import open_store

        try:
            return open_store(self.store_url).scan()
        except DliError as exc:
            log.debug("dli: the spec store is not readable here: %s", exc)
            return None

    def _store(self):
        from dli_airflow.store import open_store

        return open_store(self.store_url)

    # -- DAG helpers --------------------------------------------------------------------------------------
    def _dag(self, name: str) -> dict[str, Any] | None:
        response = self._request("GET", f"/dags/{name}", ok=(200, 404))
        if response.status_code != 200:
            return None
        dag = response.json()
        # a DAG whose spec went away stays in Airflow as stale until it is deleted: it is gone for us
        return None if dag.get("is_stale") else dag

    def _dli_dags(self) -> dict[str, dict[str, Any]]:
        dags: dict[str, dict[str, Any]] = {}
        offset = 0
        while True:
            page = self._get("/dags", tags="dli", limit=100, offset=offset)
            for dag in page["dags"]:
                dags[dag["dag_id"]] = dag
            offset += len(page["dags"])
            if not page["dags"] or offset >= page.get("total_entries", 0):
                return dags

    def _require_dag(self, name: str) -> dict[str, Any]:
        dag = self._dag(name)
        if dag is None:
            snapshot = self._snapshot()
            where = ""
            if snapshot is not None:
                try:
                    entry = snapshot.get(name)
                except DatasetNotFoundError:
                    pass
                else:
                    where = (
                        f" The spec is in the store ({entry.path}) but Airflow has not parsed it yet: "
                        "wait for the next parse (about 30 s) and check the dli_spec_errors DAG."
                    )
            raise WorkflowNotFoundError(f"Workflow {name!r} is not in Airflow.{where}")
        return dag

    # -- reads --------------------------------------------------------------------------------------------
    def get(self, dataset_name: str) -> WorkflowInfo | None:
        """The workflow of a dataset (the active copy), or ``None`` if neither Airflow nor the store has it."""
        infos = [i for i in self._infos(only=dataset_name) if i.dataset_name == dataset_name]
        infos.sort(key=lambda i: i.status is DatasetStatus.OVERRIDDEN)  # the active copy first
        return infos[0] if infos else None

    def list_workflows(
        self,
        source_type: SourceType | str | None = None,
        status: DatasetStatus | str | None = None,
        dataset_filter: str | None = None,
        running_only: bool = False,
        enabled_only: bool = False,
        limit: int = 1000,
    ) -> WorkflowListResult:
        """Every dli workflow: Airflow's DAGs (tag ``dli``) merged with the store, so overridden manual specs
        show too (``overridden_by = code``, no next run)."""
        source = SourceType(source_type) if source_type else None
        wanted = DatasetStatus(status) if status else None
        infos = self._infos(running_only=running_only)
        selected = [
            i
            for i in infos
            if (source is None or i.source_type is source)
            and (wanted is None or i.status is wanted)
            and (not dataset_filter or dataset_filter.lower() in i.dataset_name.lower())
            and (not running_only or i.is_running)
            and (not enabled_only or i.status is DatasetStatus.ACTIVE)
        ]
        return WorkflowListResult(workflows=tuple(selected[:limit]), total_count=len(selected))

    def _running_dag_ids(self) -> set[str]:
        body = {"dag_ids": None, "states": ["queued", "running"], "page_limit": 1000}
        runs = self._request("POST", "/dags/~/dagRuns/list", json=body, idempotent=True).json()["dag_runs"]
        return {r["dag_id"] for r in runs}

    def _infos(self, *, only: str | None = None, running_only: bool = False) -> list[WorkflowInfo]:
        if only is not None:
            dag = self._dag(only)
            dags = {only: dag} if dag is not None and _has_tag(dag, "dli") else {}
        else:
            dags = self._dli_dags()
        running = self._running_dag_ids() if running_only else set()
        snapshot = self._snapshot()
        infos: list[WorkflowInfo] = []
        seen: set[str] = set()
        if snapshot is not None:
            for entry in snapshot.entries:
                if only is not None and entry.name != only:
                    continue
                dag = dags.get(entry.name) if entry.schedules else None
                infos.append(_info_from_entry(entry, dag, entry.name in running))
                if entry.schedules:
                    seen.add(entry.name)
        for dag_id, dag in dags.items():
            if dag_id in seen or _has_tag(dag, "dli:errors"):  # dli_spec_errors (and its shards')
                continue
            infos.append(_info_from_dag(dag, dag_id in running))
        infos.sort(key=lambda i: (i.dataset_name, i.source_type.value))
        return infos

    # -- runs ---------------------------------------------------------------------------------------------
    def _entry_for_run(self, name: str, source_type: SourceType | str | None):
        snapshot = self._snapshot()
        if snapshot is None:
            return None
        source = SourceType(source_type) if source_type else None
        try:
            entry = snapshot.get(name, source)
        except DatasetNotFoundError:
            if source is None:
                return None
            raise WorkflowNotFoundError(f"Dataset {name!r} has no {source.value} spec in the store {snapshot.store}")
        if entry.status is DatasetStatus.OVERRIDDEN:
            raise WorkflowExecutionError(
                f"Workflow {name!r} ({entry.source.value}) is overridden by code: the code version is active",
                hint=f"run the code version: dli workflow run {name} (without --source manual)",
            )
        return entry

    def _check_runnable(self, name: str, dag: dict[str, Any]) -> None:
        if dag.get("is_paused"):
            raise WorkflowExecutionError(
                f"Workflow {name!r} is paused, so a run would wait in the queue until it is unpaused",
                hint=f"unpause it first: dli workflow unpause {name}",
            )

    def _validated_conf(self, name: str, entry: Any, parameters: Mapping[str, Any] | None) -> dict[str, Any]:
        from dli_airflow.sql import resolve_parameters

        given = {k: v for k, v in (parameters or {}).items()}
        if entry is None:
            # no store here: check names against the DAG's params at least
            details = self._get(f"/dags/{name}/details")
            allowed = set((details.get("params") or {}).keys())
            unknown = sorted(set(given) - allowed)
            if unknown:
                raise ParameterError(
                    f"Unknown parameter(s) {', '.join(map(repr, unknown))} for {name!r}. "
                    f"Allowed parameters: {', '.join(sorted(allowed)) or '(none)'}"
                )
            return given
        values = resolve_parameters(entry.spec, given)
        return {k: (v.isoformat() if isinstance(v, date) else v) for k, v in values.items() if k in given}

    def run(
        self,
        dataset_name: str,
        parameters: Mapping[str, Any] | None = None,
        dry_run: bool = False,
        *,
        source_type: SourceType | str | None = None,
        note: str | None = None,
    ) -> WorkflowRunResult:
        """Trigger an ad-hoc run on Airflow (``dry_run``: render and parse the SQL, trigger nothing)."""
        entry = self._entry_for_run(dataset_name, source_type)
        dag = self._require_dag(dataset_name)
        conf = self._validated_conf(dataset_name, entry, parameters)
        if dry_run:
            rendered = _render_dry(entry, parameters) if entry is not None else ()
            return WorkflowRunResult(
                dataset_name=dataset_name,
                action="run",
                dry_run=True,
                rendered_sql=rendered,
                message=f"dry run: {len(rendered)} statement(s) render and parse; nothing was triggered",
            )
        self._check_runnable(dataset_name, dag)
        run_id = make_run_id(dataset_name, "adhoc")
        body = {
            "logical_date": None,
            "dag_run_id": run_id,
            "conf": conf,
            "note": note or f"triggered by {_user()} through dli",
        }
        response = self._request("POST", f"/dags/{dataset_name}/dagRuns", json=body, ok=(200, 400, 409, 422))
        if response.status_code != 200:
            raise ParameterError(f"Airflow refused the run of {dataset_name!r}: {_detail(response)}")
        return WorkflowRunResult(
            dataset_name=dataset_name,
            action="run",
            run_id=run_id,
            run_status=_status(response.json()),
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

        The runs carry a backfill token in ``conf``: the run of a date whose previous date (same backfill)
        failed fails at once without running its SQL, so the backfill stops at its first failure;
        :meth:`wait_backfill` (the CLI's ``--wait``) also cancels the remaining runs in Airflow.
        """
        from dli_airflow.spec import parse_date

        start, end = parse_date(start_date), parse_date(end_date)
        if end < start:
            raise ParameterError(f"end date {end} is before start date {start}", hint="swap -s and -e")
        entry = self._entry_for_run(dataset_name, source_type)
        dag = self._require_dag(dataset_name)
        if parameters and "execution_date" in parameters:
            raise ParameterError(
                "a backfill sets execution_date from each scheduled date; do not pass -p execution_date",
                hint="drop -p execution_date",
            )
        conf = self._validated_conf_partial(dataset_name, entry, parameters)
        # ties the runs together: the run of a date after a failed one stops at once (see the operator)
        conf[BACKFILL_TOKEN_KEY] = f"{_user()}@{datetime.now(timezone.utc):%Y%m%dT%H%M%S%f}"
        tz = ZoneInfo(entry.spec.schedule.timezone if entry is not None and entry.spec.schedule else "UTC")
        from_dt = datetime.combine(start, dtime.min, tzinfo=tz)
        to_dt = datetime.combine(end, dtime.max.replace(microsecond=0), tzinfo=tz)
        body = {
            "dag_id": dataset_name,
            "from_date": from_dt.isoformat(),
            "to_date": to_dt.isoformat(),
            "run_backwards": False,
            "dag_run_conf": conf,
            "reprocess_behavior": "completed",
            "max_active_runs": 1,
        }
        dry = self._request("POST", "/backfills/dry_run", json=body, ok=(200, 409, 422), idempotent=True)
        if dry.status_code != 200:
            raise WorkflowExecutionError(f"Airflow refused the backfill of {dataset_name!r}: {_detail(dry)}")
        dates = tuple(
            sorted(_dt(item["logical_date"]) for item in dry.json().get("backfills", []) if item.get("logical_date"))
        )
        if not dates:
            raise WorkflowExecutionError(
                f"No scheduled run of {dataset_name!r} falls between {start} and {end}",
                hint="check the dates against the cron (dli workflow get NAME)",
            )
        if dry_run:
            return WorkflowRunResult(
                dataset_name=dataset_name,
                action="backfill",
                dry_run=True,
                logical_dates=dates,
                message=f"dry run: would run {len(dates)} date(s) from {dates[0]} to {dates[-1]}",
            )
        self._check_runnable(dataset_name, dag)
        # Airflow on SQLite answers 503 "Database is locked" when it could not create the backfill: nothing
        # was created, so trying again is safe
        response = self._request("POST", "/backfills", json=body, ok=(200, 409, 422), retry_statuses=(503,))
        if response.status_code == 409:
            raise WorkflowExecutionError(
                f"A backfill of {dataset_name!r} is already running",
                hint="wait for it or stop it (dli workflow stop RUN_ID -d DATASET)",
            )
        if response.status_code != 200:
            raise ParameterError(f"Airflow refused the backfill of {dataset_name!r}: {_detail(response)}")
        backfill = response.json()
        backfill_id = int(backfill["id"])
        return WorkflowRunResult(
            dataset_name=dataset_name,
            action="backfill",
            run_id=make_run_id(dataset_name, "backfill", backfill_id=backfill_id),
            run_status=RunStatus.PENDING,
            logical_dates=dates,
            backfill_id=backfill_id,
            message=f"Backfill started: {len(dates)} date(s) from {dates[0].date()} to {dates[-1].date()}",
        )

    def _validated_conf_partial(self, name: str, entry: Any, parameters: Mapping[str, Any] | None) -> dict[str, Any]:
        from dli_airflow.sql import resolve_parameters

        given = dict(parameters or {})
        if entry is None:
            return self._validated_conf(name, None, given)
        values = resolve_parameters(entry.spec, given, fill_required=False)
        missing = [
            p.name for p in entry.spec.parameters if p.required and p.name != "execution_date" and values[p.name] is None
        ]
        if missing:
            from dli_airflow.sql import describe_parameters

            raise ParameterError(
                f"Missing required parameter(s): {', '.join(missing)}. Allowed parameters: "
                f"{describe_parameters(entry.spec)}"
            )
        return {k: (v.isoformat() if isinstance(v, date) else v) for k, v in values.items() if k in given}

    def backfill_runs(self, dataset_name: str, backfill_id: int) -> list[WorkflowRun]:
        """The runs of a backfill, in logical-date order."""
        runs = self._get(
            f"/dags/{dataset_name}/dagRuns", run_type="backfill", limit=1000, order_by="logical_date"
        )["dag_runs"]
        backfill = self._get(f"/backfills/{backfill_id}")
        created = _dt(backfill["created_at"]) if backfill.get("created_at") else None
        mine = [r for r in runs if created is None or _dt(r["queued_at"] or r["run_after"]) >= created - timedelta(seconds=5)]
        return [_run_from(r) for r in mine]

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
                self._request("PUT", f"/backfills/{result.backfill_id}/cancel", ok=(200, 409))
                return self.backfill_runs(result.dataset_name, result.backfill_id)
            if len(runs) >= total and all(r.status.is_terminal for r in runs):
                return runs
            if deadline is not None and time.monotonic() > deadline:
                raise WorkflowExecutionError(f"the backfill of {result.dataset_name!r} did not finish in {timeout:.0f}s")
            time.sleep(poll)

    def _find_run(self, run_id: str, dataset: str | None) -> dict[str, Any]:
        if dataset is None:
            match = _RUN_ID.match(run_id)
            if match:
                dataset = match.group("dataset")
        if dataset is not None:
            response = self._request("GET", f"/dags/{dataset}/dagRuns/{run_id}", ok=(200, 404))
            if response.status_code == 404:
                raise WorkflowExecutionError(
                    f"Run {run_id!r} of {dataset!r} is not in Airflow",
                    hint=f"list the runs with: dli workflow history -d {dataset}",
                )
            return response.json()
        runs = self._get("/dags/~/dagRuns", run_id_pattern=run_id, limit=100)["dag_runs"]
        exact = [r for r in runs if r["dag_run_id"] == run_id]
        datasets = sorted({r["dag_id"] for r in exact})
        if not exact:
            raise WorkflowExecutionError(
                f"No run {run_id!r} in Airflow", hint="check the id (dli workflow history) or pass -d DATASET"
            )
        if len(datasets) > 1:
            raise WorkflowExecutionError(
                f"Run id {run_id!r} matches runs of {len(datasets)} datasets: {', '.join(datasets)}",
                hint="pass -d/--dataset to say which",
            )
        return exact[0]

    def get_status(self, run_id: str, *, dataset: str | None = None) -> WorkflowStatusResult:
        """The state of one run, its task tries, and for a failed run the error from the task's log."""
        raw = self._find_run(run_id, dataset)
        run = _run_from(raw)
        tis = self._get(f"/dags/{raw['dag_id']}/dagRuns/{run_id}/taskInstances")["task_instances"]
        tasks = tuple(_task_from(t) for t in tis)
        error = None
        if run.status is RunStatus.FAILED:
            failed = next((t for t in tasks if t.state in ("failed", "upstream_failed")), None)
            if failed is not None and failed.try_number:
                error = self._error_from_log(raw["dag_id"], run_id, failed.task_id, failed.try_number)
        result = None
        if run.status is RunStatus.COMPLETED and any(t.task_id == "run" for t in tasks):
            response = self._request(
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
            response = self._request(
                "GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/logs/{try_number}",
                params=params, ok=(200, 404),
            )
            if response.status_code == 404:
                raise WorkflowExecutionError(f"No log for try {try_number} of task {task_id!r} of run {run_id!r}")
            data = response.json()
            for item in data.get("content") or []:
                lines.extend(_log_text(item).splitlines())
            token = data.get("continuation_token")
            if not token or not data.get("content"):
                break
        return lines

    def logs(
        self, run_id: str, task_id: str = "run", try_number: int | None = None, *, dataset: str | None = None
    ) -> TaskLog:
        """The log of a task try (default: the task ``run``, its latest try)."""
        raw = self._find_run(run_id, dataset)
        if try_number is None:
            ti = self._request(
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

        :param wait: seconds to wait until the task instances have ended (0: return at once).
        """
        raw = self._find_run(run_id, dataset)
        run = _run_from(raw)
        if run.status.is_terminal:
            raise WorkflowExecutionError(
                f"Run {run_id!r} has already ended ({run.status.value}); nothing to stop"
            )
        dag_id = raw["dag_id"]
        note = f"{KILLED_NOTE_PREFIX} {_user()} through dli at {datetime.now(timezone.utc):%Y-%m-%d %H:%M:%S} UTC"
        self._request("PATCH", f"/dags/{dag_id}/dagRuns/{run_id}", json={"note": note}, params={"update_mask": "note"})
        self._request("PATCH", f"/dags/{dag_id}/dagRuns/{run_id}", json={"state": "failed"}, params={"update_mask": "state"})
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            tis = self._get(f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances")["task_instances"]
            if all(t.get("end_date") for t in tis):
                break
            time.sleep(0.5)
        return WorkflowRunResult(
            dataset_name=dag_id, action="stop", run_id=run_id, run_status=RunStatus.KILLED, message=f"Stopped {run_id}"
        )

    def history(
        self,
        dataset_name: str | None = None,
        source_type: SourceType | str | None = None,
        run_status: RunStatus | str | None = None,
        limit: int = 20,
        include_dataset_info: bool = False,
    ) -> WorkflowHistoryResult:
        """Recent runs, newest first, across dli workflows (or one dataset)."""
        source = SourceType(source_type) if source_type else None
        wanted = RunStatus(run_status.upper() if isinstance(run_status, str) else run_status) if run_status else None
        dags = self._dli_dags() if dataset_name is None or source is not None or include_dataset_info else {}
        if dataset_name is not None:
            dag_ids = [dataset_name]
        else:
            dag_ids = [d for d, dag in dags.items() if source is None or _source_of(dag) is source]
        if source is not None:
            dag_ids = [d for d in dag_ids if d in dags and _source_of(dags[d]) is source]
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
            body = {"dag_ids": dag_ids, "states": states, "order_by": "-run_after", "page_limit": page_size,
                    "page_offset": offset}
            page = self._request("POST", "/dags/~/dagRuns/list", json=body, idempotent=True).json()
            batch = page["dag_runs"]
            for raw in batch:
                run = _run_from(raw, dags.get(raw["dag_id"]))
                if wanted is None or run.status is wanted:
                    runs.append(run)
            offset += len(batch)
            if len(batch) < page_size or offset >= (page.get("total_entries") or 0):
                break
        runs = runs[:limit]
        info: dict[str, WorkflowInfo] = {}
        if include_dataset_info:
            by_name = {i.dataset_name: i for i in self._infos() if i.status is not DatasetStatus.OVERRIDDEN}
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

    # -- pause --------------------------------------------------------------------------------------------
    def _set_paused(self, name: str, paused: bool, source_type: SourceType | str | None) -> WorkflowRunResult:
        source = SourceType(source_type) if source_type else None
        snapshot = self._snapshot()
        if snapshot is not None and source is not None:
            try:
                entry = snapshot.get(name, source)
            except DatasetNotFoundError:
                raise WorkflowNotFoundError(f"Dataset {name!r} has no {source.value} spec") from None
            if entry.status is DatasetStatus.OVERRIDDEN:
                raise WorkflowPermissionError(
                    f"Workflow {name!r} (manual) is overridden by code and cannot be "
                    f"{'paused' if paused else 'unpaused'} on its own",
                    hint="removing the code spec (in Git, deployed by CI) restores the manual one",
                )
        self._require_dag(name)
        self._request("PATCH", f"/dags/{name}", json={"is_paused": paused})
        return WorkflowRunResult(
            dataset_name=name, action="pause" if paused else "unpause",
            message=f"{'Paused' if paused else 'Unpaused'} {name}",
        )

    def pause(self, dataset_name: str, *, source_type: SourceType | str | None = None) -> WorkflowRunResult:
        """Pause the schedule (code and manual workflows alike). Stands until the YAML's ``enabled`` changes."""
        return self._set_paused(dataset_name, True, source_type)

    def unpause(self, dataset_name: str, *, source_type: SourceType | str | None = None) -> WorkflowRunResult:
        return self._set_paused(dataset_name, False, source_type)

    # -- register -----------------------------------------------------------------------------------------
    def register(
        self,
        spec_path: str | os.PathLike[str] | None = None,
        *,
        spec: Any = None,
        sql: str | None = None,
        cron: str | None = None,
        timezone: str | None = None,
        enabled: bool | None = None,
        retry_max_attempts: int | None = None,
        retry_delay_seconds: int | None = None,
        force: bool = False,
    ) -> WorkflowRegisterResult:
        """Register a spec as a manual workflow (written under ``manual/`` only).

        A name that exists in ``code/`` needs ``force=True``: the manual copy is stored but stays inactive
        (overridden). Re-registering an existing manual spec needs ``force=True`` too.
        """
        from dli_airflow.registry import prepare_registration, write_manual

        prepared = prepare_registration(
            spec_path=spec_path, spec=spec, sql=sql, cron=cron, timezone=timezone, enabled=enabled,
            retry_max_attempts=retry_max_attempts, retry_delay_seconds=retry_delay_seconds,
        )
        name = prepared.spec.name
        snapshot = self._snapshot()
        warning = None
        if snapshot is not None:
            sources = {e.source for e in snapshot.entries if e.name == name}
            if SourceType.CODE in sources:
                warning = (
                    "This dataset already exists in code/: your manual registration will be overridden by code; "
                    "the manual file is kept but inactive"
                )
                if not force:
                    raise WorkflowRegistrationError(
                        f"Dataset {name!r} already exists in code/. {warning}.", hint="pass force=True (--force) to store it anyway"
                    )
            if SourceType.MANUAL in sources and not force:
                raise WorkflowRegistrationError(
                    f"Dataset {name!r} is already registered (manual)",
                    hint="pass force=True (--force) to replace it",
                )
        written = write_manual(self._store(), prepared)
        info = WorkflowInfo(
            dataset_name=name,
            source_type=SourceType.MANUAL,
            status=DatasetStatus.OVERRIDDEN if warning else (
                DatasetStatus.ACTIVE if (prepared.spec.schedule is None or prepared.spec.schedule.enabled)
                else DatasetStatus.PAUSED
            ),
            cron=prepared.spec.schedule.cron if prepared.spec.schedule else None,
            timezone=prepared.spec.schedule.timezone if prepared.spec.schedule else None,
            overridden_by=SourceType.CODE if warning else None,
            owner=prepared.spec.owner,
            in_airflow=False,
            spec_file=written.spec_path,
        )
        return WorkflowRegisterResult(
            source_type=SourceType.MANUAL, workflow_info=info, spec_path=written.spec_path,
            sql_path=written.sql_path, warning=warning,
        )

    def unregister(self, dataset_name: str) -> WorkflowRunResult:
        """Remove a dataset's manual spec (and its SQL). A code-only dataset is a permission error."""
        from dli_airflow.registry import delete_manual

        snapshot = self._snapshot()
        if snapshot is None:
            raise WorkflowRegistrationError("The spec store cannot be read here", hint="set DLI_SPEC_STORE or --store")
        sources = {e.source for e in snapshot.entries if e.name == dataset_name}
        if not sources:
            raise WorkflowNotFoundError(f"Dataset {dataset_name!r} is not registered in the store {snapshot.store}")
        if SourceType.MANUAL not in sources:
            raise WorkflowPermissionError(
                f"Workflow {dataset_name!r} is managed by code (GitOps)",
                hint="modify the YAML in Git and deploy it through CI; only pause/unpause are allowed here",
            )
        entry = snapshot.get(dataset_name, SourceType.MANUAL)
        delete_manual(self._store(), entry)
        return WorkflowRunResult(
            dataset_name=dataset_name, action="unregister",
            message=f"Unregistered the manual spec of {dataset_name} ({entry.path})"
            + ("; the code version stays active" if SourceType.CODE in sources else ""),
        )


# -- helpers ------------------------------------------------------------------------------------------------

def make_run_id(dataset: str, kind: str, *, backfill_id: int | None = None) -> str:
    """``<dataset>__<kind>__<UTC timestamp>`` (so a bare run id names its dataset)."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%f")[:-3] + "Z"
    return f"{dataset}__{kind}__{stamp}"


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no user database in some containers
        return "unknown"


def _detail(response: httpx.Response) -> str:
    try:
        data = response.json()
    except ValueError:
        return response.text[:300]
    detail = data.get("detail", data) if isinstance(data, dict) else data
    if isinstance(detail, list):
        return "; ".join(str(d.get("msg", d)) if isinstance(d, dict) else str(d) for d in detail)[:500]
    return str(detail)[:500]


def _dt(value: str | None) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _has_tag(dag: Mapping[str, Any], tag: str) -> bool:
    return any((t.get("name") if isinstance(t, dict) else t) == tag for t in dag.get("tags") or [])


def _source_of(dag: Mapping[str, Any] | None) -> SourceType | None:
    if dag is None:
        return None
    if _has_tag(dag, "source:manual"):
        return SourceType.MANUAL
    if _has_tag(dag, "source:code"):
        return SourceType.CODE
    return None


def _status(raw: Mapping[str, Any]) -> RunStatus:
    state = raw.get("state")
    if state == "success":
        return RunStatus.COMPLETED
    if state == "failed":
        note = raw.get("note") or ""
        return RunStatus.KILLED if note.startswith(KILLED_NOTE_PREFIX) else RunStatus.FAILED
    if state == "running":
        return RunStatus.RUNNING
    return RunStatus.PENDING


def _run_from(raw: Mapping[str, Any], dag: Mapping[str, Any] | None = None) -> WorkflowRun:
    return WorkflowRun(
        run_id=raw["dag_run_id"],
        dataset_name=raw["dag_id"],
        source_type=_source_of(dag),
        status=_status(raw),
        run_type=_AIRFLOW_RUN_TYPES.get(raw.get("run_type") or "manual", "adhoc"),  # type: ignore[arg-type]
        parameters={k: v for k, v in (raw.get("conf") or {}).items() if not k.startswith("__dli")},
        logical_date=_dt(raw.get("logical_date")),
        started_at=_dt(raw.get("start_date")),
        finished_at=_dt(raw.get("end_date")),
        note=raw.get("note"),
    )


def _task_from(raw: Mapping[str, Any]) -> TaskRun:
    return TaskRun(
        task_id=raw["task_id"],
        state=raw.get("state"),
        try_number=int(raw.get("try_number") or 0),
        started_at=_dt(raw.get("start_date")),
        finished_at=_dt(raw.get("end_date")),
        duration_seconds=raw.get("duration"),
        pid=raw.get("pid"),
        hostname=raw.get("hostname"),
    )


def _log_text(item: Any) -> str:
    if isinstance(item, str):
        return item
    if isinstance(item, dict):
        event = str(item.get("event", ""))
        level = item.get("level")
        extra = ""
        if item.get("error_detail"):
            details = item["error_detail"]
            if isinstance(details, list):
                extra = " | " + " | ".join(f"{d.get('exc_type')}: {d.get('exc_value')}" for d in details if isinstance(d, dict))
        return f"[{level}] {event}{extra}" if level else event + extra
    return str(item)


def _info_from_entry(entry: Any, dag: Mapping[str, Any] | None, running: bool) -> WorkflowInfo:
    spec = entry.spec
    status = entry.status
    if status is not DatasetStatus.OVERRIDDEN and dag is not None:
        status = DatasetStatus.PAUSED if dag.get("is_paused") else DatasetStatus.ACTIVE
    next_run = None
    if dag is not None and status is DatasetStatus.ACTIVE:
        next_run = _dt(dag.get("next_dagrun_run_after") or dag.get("next_dagrun_logical_date"))
    return WorkflowInfo(
        dataset_name=spec.name,
        source_type=entry.source,
        status=status,
        cron=spec.schedule.cron if spec.schedule else None,
        timezone=spec.schedule.timezone if spec.schedule else None,
        next_run=next_run,
        overridden_by=entry.overridden_by,
        owner=spec.owner,
        team=spec.team,
        engine=spec.resolved_engine,
        description=spec.description,
        depends_on=tuple(spec.depends_on),
        parameters=tuple(f"{p.name} ({'required' if p.required else 'optional'})" for p in spec.parameters),
        in_airflow=dag is not None,
        is_running=running,
        spec_file=entry.path,
    )


def _info_from_dag(dag: Mapping[str, Any], running: bool) -> WorkflowInfo:
    paused = bool(dag.get("is_paused"))
    timetable = dag.get("timetable_summary") or None
    return WorkflowInfo(
        dataset_name=dag["dag_id"],
        source_type=_source_of(dag) or SourceType.CODE,
        status=DatasetStatus.PAUSED if paused else DatasetStatus.ACTIVE,
        cron=timetable,
        next_run=None if paused else _dt(dag.get("next_dagrun_run_after")),
        owner=", ".join(dag.get("owners") or []) or None,
        description=dag.get("description"),
        in_airflow=True,
        is_running=running,
    )


def _render_dry(entry: Any, parameters: Mapping[str, Any] | None) -> tuple[str, ...]:
    from dli_airflow.local import render_entry, today_in
    from dli_airflow.sql import parse_sql

    execution_date = today_in(entry.spec) if entry.spec.parameter("execution_date") is not None else None
    rendered = render_entry(entry, parameters, execution_date=execution_date)
    for statement in rendered.statements:
        parse_sql(statement, rendered.dialect, entry.sql_path or entry.path)
    return rendered.statements


__all__ = ["KILLED_NOTE_PREFIX", "WorkflowClient", "make_run_id"]
