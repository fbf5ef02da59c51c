"""The hooks of ``dli_airflow.hooks``: connections from ``AIRFLOW_CONN_*`` variables, no server, no Airflow DB."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import httpx
import pytest

from dli_airflow.client import WorkflowClient
from dli_airflow.hooks import AIRFLOW_API_CONN_ID, AirflowApiHook, DliBigQueryHook, DliTrinoHook
from dli_airflow.hooks.airflow_api import api_url


@pytest.fixture
def conn_env(dli_isolated: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """``conn_env(conn_id, **fields)`` defines an Airflow connection as an ``AIRFLOW_CONN_`` JSON variable."""
    for key in ("DLI_AIRFLOW_URL", "DLI_AIRFLOW_TOKEN", "DLI_AIRFLOW_USERNAME", "DLI_AIRFLOW_PASSWORD"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.delenv(f"AIRFLOW_CONN_{AIRFLOW_API_CONN_ID.upper()}", raising=False)

    def define(conn_id: str, **fields: Any) -> None:
        monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(fields))

    return define


def first_request(client: WorkflowClient) -> httpx.Request:
    """The first request the client's authentication sends for an API call (nothing goes on the wire)."""
    flow = client._api.auth.auth_flow(httpx.Request("GET", f"{client.url}/api/v2/dags"))
    return next(flow)


def test_the_hooks_package_imports_no_airflow() -> None:
    code = (
        "import sys\n"
        "import dli_airflow.hooks as h\n"
        "assert h.AIRFLOW_API_CONN_TYPE == 'dli_airflow_api'\n"
        "loaded = sorted(m for m in sys.modules if m == 'airflow' or m.startswith('airflow.'))\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_the_http_connection_dev_up_sets_gives_a_password_client(conn_env: Any) -> None:
    # what `dli dev up` exports: conn_type http, the URL with its scheme as host
    conn_env("dli_airflow_api", conn_type="http", host="http://127.0.0.1:28080/", login="admin", password="pw")
    client = AirflowApiHook().get_conn()
    assert isinstance(client, WorkflowClient) and client.url == "http://127.0.0.1:28080"
    assert client._api.retries == 2
    login = first_request(client)  # username/password: the JWT is fetched first
    assert (login.method, login.url.path) == ("POST", "/auth/token")
    assert json.loads(login.content) == {"username": "admin", "password": "pw"}


def test_a_password_without_login_is_a_token(conn_env: Any) -> None:
    conn_env("api_token", conn_type="dli_airflow_api", host="airflow.example.com", schema="https", port=8443,
             password="jwt-123")
    client = AirflowApiHook("api_token").get_conn()
    assert client is not None and client.url == "https://airflow.example.com:8443"
    request = first_request(client)
    assert request.url.path == "/api/v2/dags" and request.headers["Authorization"] == "Bearer jwt-123"


def test_without_the_connection_the_environment_is_used(conn_env: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    assert AirflowApiHook().get_conn() is None  # neither: the pause is recorded as not applied
    monkeypatch.setenv("DLI_AIRFLOW_URL", "http://localhost:8080")
    monkeypatch.setenv("DLI_AIRFLOW_TOKEN", "env-token")
    client = AirflowApiHook().get_conn()
    assert client is not None and client.url == "http://localhost:8080"
    assert first_request(client).headers["Authorization"] == "Bearer env-token"


def test_a_connection_without_host_falls_back_to_the_environment(
    conn_env: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    conn_env("dli_airflow_api", conn_type="http", login="admin", password="pw")
    assert AirflowApiHook().get_conn() is None
    monkeypatch.setenv("DLI_AIRFLOW_URL", "http://env:8080")
    monkeypatch.setenv("DLI_AIRFLOW_TOKEN", "t")
    assert AirflowApiHook().get_conn().url == "http://env:8080"


@pytest.mark.parametrize(
    ("host", "scheme", "port", "url"),
    [
        ("https://airflow.example.com/", None, None, "https://airflow.example.com"),
        ("https://airflow.example.com:9", "http", 80, "https://airflow.example.com:9"),  # the URL wins
        ("airflow", None, None, "http://airflow"),
        ("airflow", "https", 8443, "https://airflow:8443"),
        ("airflow", "postgres", 8080, "http://airflow:8080"),  # a schema that is not a scheme
    ],
)
def test_api_url(host: str, scheme: str | None, port: int | None, url: str) -> None:
    assert api_url(host, scheme, port) == url


def test_the_api_hook_describes_its_connection_type() -> None:
    assert AirflowApiHook.conn_type == "dli_airflow_api" and AirflowApiHook.default_conn_name == "dli_airflow_api"
    assert AirflowApiHook.conn_name_attr == "airflow_api_conn_id"
    assert AirflowApiHook.hook_name == "dli: Airflow REST API"
    assert AirflowApiHook("x").airflow_api_conn_id == "x"
    behaviour = AirflowApiHook.get_ui_field_behaviour()
    assert behaviour["relabeling"]["host"] == "Airflow API URL" and "token" in behaviour["relabeling"]["password"]
    behaviour["hidden_fields"].append("host")  # a copy: the declared form does not change
    assert "host" not in AirflowApiHook.get_ui_field_behaviour()["hidden_fields"]


def test_the_trino_hook_puts_the_specs_catalog_and_schema_on_a_copy_of_the_connection(conn_env: Any) -> None:
    conn_env("lake", conn_type="trino", host="trino.example.com", port=8080, login="dli", schema="main",
             extra={"catalog": "memory", "session_properties": {"query_max_run_time": "1h"}})
    plain = DliTrinoHook(trino_conn_id="lake").get_connection("lake")
    assert (plain.schema, plain.extra_dejson["catalog"]) == ("main", "memory")
    hook = DliTrinoHook(trino_conn_id="lake", catalog="hive", db_schema="sales")
    conn = hook.get_connection("lake")
    assert (conn.schema, conn.extra_dejson["catalog"]) == ("sales", "hive")
    assert conn.extra_dejson["session_properties"] == {"query_max_run_time": "1h"}  # the rest is kept


def test_the_bigquery_hook_points_the_client_at_the_connections_api_endpoint(conn_env: Any) -> None:
    conn_env("bq", conn_type="google_cloud_platform",
             extra={"project": "p", "is_anonymous": True, "api_endpoint": "http://127.0.0.1:9050"})
    hook = DliBigQueryHook(gcp_conn_id="bq", use_legacy_sql=False)
    assert hook.get_client_options().api_endpoint == "http://127.0.0.1:9050"
    assert hook.get_client_options("http://other").api_endpoint == "http://other"
    conn_env("bq_plain", conn_type="google_cloud_platform", extra={"project": "p", "is_anonymous": True})
    assert DliBigQueryHook(gcp_conn_id="bq_plain", use_legacy_sql=False).get_client_options().api_endpoint is None
