"""``WorkflowClient``: run, backfill, stop, watch, pause and register dli workflows through Airflow's REST API v2.

Imports no Airflow code and never reads or writes the spec store: it works on a laptop with only ``httpx``,
this package, the Airflow URL and a token. Everything that needs the store — the workflows joined with it,
parameters validated and coerced against the spec, registration, schedule updates — is asked of dli's
control plane in the api-server (``/dli/api/v1``, the dli plugin); runs, logs and history come from
Airflow's REST API v2. Against an Airflow without the plugin, runs, pauses, status, logs and history still
work on the REST API alone (parameters checked by name against the DAG's params); registration needs it.

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

from dli_airflow._api import DLI_API, ApiTransport, check_settings, plane_list, settings_from_env
from dli_airflow._runs import RunMethods
from dli_airflow.errors import (
    ParameterError,
    ServerExecutionError,
    WorkflowNotFoundError,
    parse_choice,
)
from dli_airflow.kinds import DatasetStatus, SourceType
from dli_airflow.workflow import (
    WorkflowInfo,
    WorkflowListResult,
    WorkflowPage,
    WorkflowRegisterResult,
    WorkflowRunResult,
    check_runnable,
    has_tag,
    merge_workflows,
    select_workflows,
)

log = logging.getLogger(__name__)




if TYPE_CHECKING:
    from dli_airflow.registry import ScheduleOverrides

    if __import__("sys").version_info >= (3, 11):
        from typing import Unpack
    else:
        from typing_extensions import Unpack


def _page_of(content: bytes) -> tuple[list[WorkflowInfo], int, int]:
    """One page of the control plane's list, validated from its bytes."""
    page = WorkflowPage.model_validate_json(content)
    return page.workflows, page.total_entries, page.problems


class WorkflowClient(RunMethods):
    """A client of Airflow's REST API v2 for dli workflows.

    :param url: the Airflow API server, e.g. ``https://airflow.example.com``.
    :param token: a JWT (any auth manager); or ``username``/``password`` for ``/auth/token``.
    :param timeout: seconds per request.
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
        verify: bool | str = True,
        retries: int = 3,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._api = ApiTransport(
            check_settings(url, token, username, password), token=token, username=username, password=password, timeout=timeout, verify=verify,
            retries=retries, transport=transport,
        )
        self.url = self._api.url
        self._has_plane: bool | None = None

    @property
    def requests_made(self) -> int:
        """HTTP requests sent to Airflow so far (token requests included)."""
        return self._api.requests_made

    @classmethod
    def from_env(cls, **overrides: Any) -> WorkflowClient:
        """A client from ``DLI_AIRFLOW_URL``, ``DLI_AIRFLOW_TOKEN`` or ``DLI_AIRFLOW_USERNAME``/``_PASSWORD``,
        ``DLI_AIRFLOW_CA_BUNDLE`` and ``DLI_AIRFLOW_TIMEOUT``; keyword arguments override them."""
        return cls(**settings_from_env(**overrides))

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

    def _needs_plane(self, action: str) -> ServerExecutionError:
        return ServerExecutionError(
            f"{action} needs dli's control plane, and the Airflow at {self.url} has none (/dli/api/v1 answers 404)",
            hint="install dli-airflow into Airflow's own environment (its plugin loads by entry point) and restart "
            "the api-server; `airflow plugins` lists `dli` then",
        )

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
            raise WorkflowNotFoundError(
                f"Workflow {name!r} is not in Airflow",
                hint="check the name with `dli workflow list`; a spec just published shows after the next parse "
                "(a broken one in the dli_spec_errors DAG)", dataset_name=name,
            )
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
        limit: int | None = None,
    ) -> WorkflowListResult:
        """Every dli workflow: the store's specs joined with Airflow's DAGs on the control plane, so overridden
        manual specs show too (``overridden_by = code``, no next run); without it, Airflow's dli DAGs only."""
        source = parse_choice(SourceType, source_type, "--source")
        wanted = parse_choice(DatasetStatus, status, "--status")
        if self._has_plane is not False:
            listed = self._list_on_the_plane(source, wanted, dataset_filter, running_only, enabled_only, limit)
            if listed is not None:
                return listed
        selected = select_workflows(
            self._infos(running_only=running_only), source=source, status=wanted,
            dataset_filter=dataset_filter, running_only=running_only, enabled_only=enabled_only,
        )
        return WorkflowListResult(workflows=tuple(selected[:limit]), total_count=len(selected))

    def _list_on_the_plane(
        self, source: SourceType | None, status: DatasetStatus | None, dataset_filter: str | None,
        running_only: bool, enabled_only: bool, limit: int | None,
    ) -> WorkflowListResult | None:
        """The list, paged; ``None`` when this Airflow has no control plane. The first page doubles as the
        plane's probe (no ``/health`` round trip first), and each page is validated from its bytes."""
        params = {
            "source": source.value if source else None, "status": status.value if status else None,
            "filter": dataset_filter or None, "running": running_only or None, "enabled": enabled_only or None,
        }
        listed = plane_list(self._api, params, limit, _page_of)
        self._has_plane = listed is not None
        if listed is None:
            return None
        found, total, problems = listed
        return WorkflowListResult(workflows=tuple(found), total_count=total, problems=problems)

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
        return merge_workflows((), dags, running, only=only)

    # -- runs ---------------------------------------------------------------------------------------------
    def _check_runnable(self, name: str, dag: dict[str, Any]) -> None:
        check_runnable(name, dag)

    def _conf_without_spec(self, name: str, parameters: Mapping[str, Any] | None) -> dict[str, Any]:
        """No control plane: check the names against the DAG's params at least (Airflow checks the types)."""
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
            # setting a paused state is idempotent: retried on a timeout (SQLite's write lock can hold it)
            done = self._dli("POST", f"/workflows/{name}/{'pause' if paused else 'unpause'}",
                             params={"source": source.value} if source else None, idempotent=True)
            return WorkflowRunResult(dataset_name=name, action=done["action"], message=done["message"])
        if source is not None:
            raise self._needs_plane("choosing the copy to pause by --source")
        self._require_dag(name)
        self._api.request("PATCH", f"/dags/{name}", json={"is_paused": paused}, idempotent=True)
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
        dataset_name: str | os.PathLike[str] | None = None,
        *,
        spec_path: str | os.PathLike[str] | None = None,
        spec: Any = None,
        sql: str | None = None,
        path: str | os.PathLike[str] | None = None,
        force: bool = False,
        **overrides: Unpack[ScheduleOverrides],
    ) -> WorkflowRegisterResult:
        """Register a dataset of the local project as a manual workflow (written under ``manual/`` only).

        ``register("analytics.daily_clicks", cron="0 9 * * *", timezone="Asia/Seoul")`` finds the spec of that
        name in the project folder ``path`` (default: the current folder; a folder of specs or a store folder).
        The first argument may also be a spec file (``register("specs/daily_clicks.yaml")``), or pass
        ``spec_path=``, or ``spec=`` (a :class:`~dli_airflow.spec.DatasetSpec` or dict) with ``sql=``.

        A name that exists in ``code/`` needs ``force=True``: the manual copy is stored but stays inactive
        (overridden). Re-registering an existing manual spec needs ``force=True`` too.

        :param overrides: schedule settings over the spec's (:class:`~dli_airflow.registry.ScheduleOverrides`:
            ``cron``, ``timezone``, ``enabled``, ``retry_max_attempts``, ``retry_delay_seconds``)
        """
        from dli_airflow.registry import is_spec_path, prepare_registration, project_spec_path

        if dataset_name is not None:
            if spec_path is not None or spec is not None:
                raise TypeError("give one of a dataset name (or spec file), spec_path= or spec=")
            if is_spec_path(dataset_name):
                spec_path = dataset_name
            else:
                spec_path = project_spec_path(str(dataset_name), path)
        # validated here first (a bad spec fails before anything is sent), and again on the server
        prepared = prepare_registration(spec_path=spec_path, spec=spec, sql=sql, **overrides)
        if not self._plane():
            raise self._needs_plane("Registering a workflow")
        document = json.loads(json.dumps(prepared.document, default=str))  # YAML dates travel as their text
        body = {"spec": document, "sql": prepared.sql, "force": force}
        return WorkflowRegisterResult.model_validate(self._dli("POST", "/workflows", json=body))

    def update(self, dataset_name: str, **changes: Unpack[ScheduleOverrides]) -> WorkflowRegisterResult:
        """Change a manual workflow's schedule (``cron``, ``timezone``, ``enabled``, ``retry_max_attempts``,
        ``retry_delay_seconds``); its SQL and the rest of its spec stay. A code workflow is DLI-803 (GitOps:
        change it in Git)."""
        from dli_airflow.registry import OVERRIDE_KEYS

        unknown = sorted(set(changes) - set(OVERRIDE_KEYS))
        if unknown:
            raise TypeError(f"unexpected keyword argument(s) {', '.join(unknown)}; allowed: {', '.join(OVERRIDE_KEYS)}")
        given = {k: v for k, v in changes.items() if v is not None}
        if not given:
            raise ParameterError("Nothing to update", hint=f"pass at least one of {', '.join(OVERRIDE_KEYS)}")
        if not self._plane():
            raise self._needs_plane("Updating a workflow")
        return WorkflowRegisterResult.model_validate(self._dli("PATCH", f"/workflows/{dataset_name}", json=given))

    def unregister(self, dataset_name: str) -> WorkflowRunResult:
        """Remove a dataset's manual spec (and its SQL). A code-only dataset is a permission error."""
        if not self._plane():
            raise self._needs_plane("Unregistering a workflow")
        done = self._dli("DELETE", f"/workflows/{dataset_name}")
        return WorkflowRunResult(dataset_name=dataset_name, action=done["action"], message=done["message"])

    def transitions(self, limit: int = 20) -> list[dict[str, Any]]:
        """``dli_sync``'s recent runs and the transitions each recorded (added, removed, overridden, ...)."""
        if not self._plane():
            raise self._needs_plane("Reading the sync transitions")
        return list(self._dli("GET", "/transitions", params={"limit": limit})["runs"])

    def problems(self) -> dict[str, Any]:
        """The store's problems (file, field, fix) and warnings, as the control plane reads the store."""
        if not self._plane():
            raise self._needs_plane("Reading the store's problems")
        return dict(self._dli("GET", "/problems"))


__all__ = ["WorkflowClient"]
