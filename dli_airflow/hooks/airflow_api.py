"""``AirflowApiHook``: the ``dli_airflow_api`` connection to Airflow's REST API, as a ``WorkflowClient``.

``dli_sync`` pauses and unpauses DAGs through it (a task has no database access in Airflow 3). The
connection: host = the API URL (``https://airflow.example.com``; without a scheme, ``schema`` gives it and
``port`` the port), login/password, or a token as password with no login. Any connection type works
(``dli dev up`` sets an ``http`` one); ``dli_airflow_api`` is the one the UI offers with these fields.
"""

from __future__ import annotations

import copy
import logging
import os
from typing import TYPE_CHECKING, Any, ClassVar

from airflow.sdk import BaseHook

from dli_airflow.hooks import (
    AIRFLOW_API_CONN_ID,
    AIRFLOW_API_CONN_TYPE,
    AIRFLOW_API_FIELD_BEHAVIOUR,
    AIRFLOW_API_HOOK_NAME,
)

if TYPE_CHECKING:
    from dli_airflow.client import WorkflowClient

log = logging.getLogger(__name__)

#: Attempts per idempotent request: a pause is retried a little, the next sync tries again anyway.
RETRIES = 2


class AirflowApiHook(BaseHook):
    """Airflow's REST API through an Airflow connection; :meth:`get_conn` gives a ``WorkflowClient``.

    :param airflow_api_conn_id: the connection (default ``dli_airflow_api``)
    """

    conn_name_attr: ClassVar[str] = "airflow_api_conn_id"
    default_conn_name: ClassVar[str] = AIRFLOW_API_CONN_ID
    conn_type: ClassVar[str] = AIRFLOW_API_CONN_TYPE
    hook_name: ClassVar[str] = AIRFLOW_API_HOOK_NAME

    def __init__(self, airflow_api_conn_id: str = default_conn_name, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.airflow_api_conn_id = airflow_api_conn_id

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """The connection form: host is the API URL; login/password, or a token as password."""
        return copy.deepcopy(AIRFLOW_API_FIELD_BEHAVIOUR)  # a copy: the caller may change it

    def get_conn(self) -> WorkflowClient | None:
        """A client for the connection's API server; without the connection, one from ``DLI_AIRFLOW_*``.

        :returns: ``None`` when neither the connection (with a host) nor ``DLI_AIRFLOW_URL`` is there
        """
        from airflow.sdk.exceptions import AirflowNotFoundException

        from dli_airflow.client import WorkflowClient

        conn = None
        try:
            conn = self.get_connection(self.airflow_api_conn_id)
        except AirflowNotFoundException:
            log.debug("dli: no %s connection; trying DLI_AIRFLOW_URL", self.airflow_api_conn_id)
        except Exception as exc:  # noqa: BLE001 - a lookup that cannot work here (no DB, bad URI) falls back too
            # the type only: a connection URI's message may hold its password
            log.warning("dli: cannot read the %s connection (%s); trying DLI_AIRFLOW_URL",
                        self.airflow_api_conn_id, type(exc).__name__)
        if conn is not None and conn.host:
            url = api_url(conn.host, conn.schema, conn.port)
            if conn.login:
                return WorkflowClient(url, username=conn.login, password=conn.password or "", retries=RETRIES)
            return WorkflowClient(url, token=conn.password or "", retries=RETRIES)
        if os.environ.get("DLI_AIRFLOW_URL"):
            return WorkflowClient.from_env(retries=RETRIES)
        return None


def api_url(host: str, scheme: str | None = None, port: int | None = None) -> str:
    """The API server's URL from a connection's fields.

    :param host: a URL (``https://airflow:8080/``) or a bare host name
    :param scheme: for a bare host: ``http`` or ``https`` (anything else means ``http``)
    :param port: for a bare host: the port, if any
    """
    host = host.rstrip("/")
    if "://" in host:
        return host
    scheme = scheme if scheme in ("http", "https") else "http"
    return f"{scheme}://{host}{f':{port}' if port else ''}"
