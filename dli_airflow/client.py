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

import json
import logging
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import httpx

from dli_airflow._api import ApiTransport, no_credentials
from dli_airflow._runs import RunMethods
from dli_airflow.errors import (
    DatasetNotFoundError,
    DliError,
    ParameterError,
    ServerUnreachableError,
    WorkflowNotFoundError,
    WorkflowPermissionError,
    WorkflowRegistrationError,
    parse_choice,
)
from dli_airflow.spec import DatasetStatus, SourceType
from dli_airflow.workflow import (
    WorkflowInfo,
    WorkflowListResult,
    WorkflowRegisterResult,
    WorkflowRunResult,
    check_runnable,
    entry_for_run,
    has_tag,
    merge_workflows,
    select_workflows,
)

log = logging.getLogger(__name__)

#: dli's control plane in the api-server (the dli plugin), beside Airflow's ``/api/v2``
DLI_API = "/dli/api/v1"
#: workflows per page of the control plane's list (its largest)
PLANE_PAGE = 1000

if TYPE_CHECKING:
    from dli_airflow.catalog import SpecEntry, StoreSnapshot
    from dli_airflow.registry import ScheduleOverrides
    from dli_airflow.store import SpecStore

    if __import__("sys").version_info >= (3, 11):
        from typing import Unpack
    else:
        from typing_extensions import Unpack


class WorkflowClient(RunMethods):
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
            raise no_credentials()
        self._api = ApiTransport(
            url, token=token, username=username, password=password, timeout=timeout, verify=verify,
            retries=retries, transport=transport,
        )
        self.url = self._api.url
        self.store_url = str(store) if store is not None else None
        self._has_plane: bool | None = None

    @property
    def requests_made(self) -> int:
        """HTTP requests sent to Airflow so far (token requests included)."""
        return self._api.requests_made

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
        self._api.close()

    def __enter__(self) -> WorkflowClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:  # never show credentials
        return f"WorkflowClient(url={self.url!r})"

    # -- the control plane --------------------------------------------------------------------------------
    def _plane(self) -> bool:
        """Whether this Airflow serves dli's control plane (the dli plugin in its api-server); asked once.

        With it, reads, pauses and runs are decided on the server — the store joined with Airflow there,
        parameters coerced against the spec there — and this client needs only the URL and a token."""
        if self._has_plane is None:
            # an Airflow without the plugin answers 404 (a proxy in front of it may answer 401/403/405)
            response = self._api.request("GET", "/health", prefix=DLI_API, ok=(200, 401, 403, 404, 405),
                                         authenticated=False)
            try:
                self._has_plane = response.status_code == 200 and "status" in response.json()
            except ValueError:
                self._has_plane = False
        return self._has_plane

    def _dli(self, method: str, path: str, **kwargs: Any) -> Any:
        """One control-plane request; its JSON answer (its errors raise their DLI error)."""
        return self._api.request(method, path, prefix=DLI_API, **kwargs).json()

    # -- the store ----------------------------------------------------------------------------------------
    def _snapshot(self) -> StoreSnapshot | None:
        from dli_airflow.catalog import scan

        try:
            return scan(self.store_url)
        except DliError as exc:
            log.debug("dli: the spec store is not readable here: %s", exc)
            return None

    def _store(self) -> SpecStore:
        from dli_airflow.catalog import open_store

        return open_store(self.store_url)

    # -- DAG helpers --------------------------------------------------------------------------------------
    def _dag(self, name: str) -> dict[str, Any] | None:
        response = self._api.request("GET", f"/dags/{name}", ok=(200, 404))
        if response.status_code != 200:
            return None
        dag = response.json()
        # a DAG whose spec went away stays in Airflow as stale until it is deleted: it is gone for us
        return None if dag.get("is_stale") else dag

    def _dli_dags(self) -> dict[str, dict[str, Any]]:
        return {dag["dag_id"]: dag for dag in self._api.paginate("/dags", "dags", tags="dli")}

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
        if self._plane():
            response = self._api.request("GET", f"/workflows/{dataset_name}", prefix=DLI_API, ok=(200, 404))
            return WorkflowInfo.model_validate(response.json()["workflow"]) if response.status_code == 200 else None
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
        source = parse_choice(SourceType, source_type, "--source")
        wanted = parse_choice(DatasetStatus, status, "--status")
        if self._plane():
            return self._list_on_the_plane(source, wanted, dataset_filter, running_only, enabled_only, limit)
        selected = select_workflows(
            self._infos(running_only=running_only), source=source, status=wanted,
            dataset_filter=dataset_filter, running_only=running_only, enabled_only=enabled_only,
        )
        return WorkflowListResult(workflows=tuple(selected[:limit]), total_count=len(selected))

    def _list_on_the_plane(
        self, source: SourceType | None, status: DatasetStatus | None, dataset_filter: str | None,
        running_only: bool, enabled_only: bool, limit: int,
    ) -> WorkflowListResult:
        params: dict[str, Any] = {
            "source": source.value if source else None, "status": status.value if status else None,
            "filter": dataset_filter or None, "running": running_only or None, "enabled": enabled_only or None,
        }
        params = {k: v for k, v in params.items() if v is not None}
        found: list[WorkflowInfo] = []
        total = 0
        while len(found) < limit:
            page = self._dli("GET", "/workflows", params={**params, "limit": min(PLANE_PAGE, limit - len(found)),
                                                          "offset": len(found)})
            batch = [WorkflowInfo.model_validate(w) for w in page["workflows"]]
            total = int(page["total_entries"])
            found.extend(batch)
            if not batch or len(found) >= total:
                break
        return WorkflowListResult(workflows=tuple(found), total_count=total)

    def _running_dag_ids(self) -> set[str]:
        body = {"dag_ids": None, "states": ["queued", "running"], "page_limit": 1000}
        runs = self._api.request("POST", "/dags/~/dagRuns/list", json=body, idempotent=True).json()["dag_runs"]
        return {r["dag_id"] for r in runs}

    def _infos(self, *, only: str | None = None, running_only: bool = False) -> list[WorkflowInfo]:
        if only is not None:
            dag = self._dag(only)
            dags = {only: dag} if dag is not None and has_tag(dag, "dli") else {}
        else:
            dags = self._dli_dags()
        running = self._running_dag_ids() if running_only else set()
        snapshot = self._snapshot()
        return merge_workflows(snapshot.entries if snapshot is not None else (), dags, running, only=only)

    # -- runs ---------------------------------------------------------------------------------------------
    def _entry_for_run(self, name: str, source_type: SourceType | str | None) -> SpecEntry | None:
        snapshot = self._snapshot()
        if snapshot is None:
            return None
        return entry_for_run(snapshot, name, parse_choice(SourceType, source_type, "--source"))

    def _check_runnable(self, name: str, dag: dict[str, Any]) -> None:
        check_runnable(name, dag)

    def _run_conf(self, name: str, entry: SpecEntry | None, parameters: Mapping[str, Any] | None) -> dict[str, Any]:
        from dli_airflow.params import conf_for_run

        if entry is None:
            return self._conf_without_spec(name, parameters)
        return conf_for_run(entry.spec, parameters)

    def _conf_without_spec(self, name: str, parameters: Mapping[str, Any] | None) -> dict[str, Any]:
        """No store here: check the names against the DAG's params at least."""
        given = dict(parameters or {})
        allowed = set((self._api.get(f"/dags/{name}/details").get("params") or {}).keys())
        unknown = sorted(set(given) - allowed)
        if unknown:
            raise ParameterError(
                f"Unknown parameter(s) {', '.join(map(repr, unknown))} for {name!r}. "
                f"Allowed parameters: {', '.join(sorted(allowed)) or '(none)'}"
            )
        return given

    # -- pause --------------------------------------------------------------------------------------------
    def _set_paused(self, name: str, paused: bool, source_type: SourceType | str | None) -> WorkflowRunResult:
        source = parse_choice(SourceType, source_type, "--source")
        if self._plane():
            done = self._dli("POST", f"/workflows/{name}/{'pause' if paused else 'unpause'}",
                             params={"source": source.value} if source else None)
            return WorkflowRunResult(dataset_name=name, action=done["action"], message=done["message"])
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
        self._api.request("PATCH", f"/dags/{name}", json={"is_paused": paused})
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
        force: bool = False,
        **overrides: Unpack[ScheduleOverrides],
    ) -> WorkflowRegisterResult:
        """Register a spec as a manual workflow (written under ``manual/`` only).

        A name that exists in ``code/`` needs ``force=True``: the manual copy is stored but stays inactive
        (overridden). Re-registering an existing manual spec needs ``force=True`` too.

        :param overrides: schedule settings over the spec's (:class:`~dli_airflow.registry.ScheduleOverrides`:
            ``cron``, ``timezone``, ``enabled``, ``retry_max_attempts``, ``retry_delay_seconds``)
        """
        from dli_airflow.registry import prepare_registration, registered_result, registration_warning, write_manual

        # validated here first (a bad spec fails before anything is sent), and again where it is written
        prepared = prepare_registration(spec_path=spec_path, spec=spec, sql=sql, **overrides)
        if self._plane():
            document = json.loads(json.dumps(prepared.document, default=str))  # YAML dates travel as their text
            body = {"spec": document, "sql": prepared.sql, "force": force}
            return WorkflowRegisterResult.model_validate(self._dli("POST", "/workflows", json=body))
        warning = registration_warning(self._snapshot(), prepared.spec.name, force=force)
        return registered_result(prepared, write_manual(self._store(), prepared, force=force), warning)

    def unregister(self, dataset_name: str) -> WorkflowRunResult:
        """Remove a dataset's manual spec (and its SQL). A code-only dataset is a permission error."""
        from dli_airflow.registry import delete_manual, manual_entry

        if self._plane():
            done = self._dli("DELETE", f"/workflows/{dataset_name}")
            return WorkflowRunResult(dataset_name=dataset_name, action=done["action"], message=done["message"])
        snapshot = self._snapshot()
        if snapshot is None:
            raise WorkflowRegistrationError("The spec store cannot be read here", hint="set DLI_SPEC_STORE or --store")
        entry, code_stays = manual_entry(snapshot, dataset_name)
        delete_manual(self._store(), entry)
        return WorkflowRunResult(
            dataset_name=dataset_name, action="unregister",
            message=f"Unregistered the manual spec of {dataset_name} ({entry.path})"
            + ("; the code version stays active" if code_stays else ""),
        )


__all__ = ["WorkflowClient"]
