"""Integration fixtures: the Trino and BigQuery protocol stand-ins on 127.0.0.1, and Airflow connections to them.

Each stand-in binds a free port (port 0), is polled for health to a deadline, always stops, and on a
failed test the requests it received are printed. ``pki`` makes the session's test certificates and keys;
``trino_secure`` is a Trino stand-in over TLS that authenticates every kind the trino client has, and
``bigquery_secure`` a BigQuery stand-in with Google's token endpoint.
"""

from __future__ import annotations

import json
import os
import ssl
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from bigquery_standin import BigQueryStandin  # noqa: E402
from standin_auth import OAUTH2_USER, TRINO_PASSWORD, TRINO_USER, GoogleAuth, Pki, TrinoAuth, make_pki  # noqa: E402
from trino_standin import TrinoStandin  # noqa: E402

#: Airflow connection ids the tests use (``AIRFLOW_CONN_<ID>``).
TRINO_CONN_ID = "trino_standin"
BIGQUERY_CONN_ID = "bigquery_standin"
BIGQUERY_PROJECT = "standin-project"
HEALTH_DEADLINE = 10.0


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Any:
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


def _wait_healthy(url: str, verify: Any = True) -> None:
    deadline = time.monotonic() + HEALTH_DEADLINE
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1, verify=verify).status_code < 500:
                return
        except httpx.HTTPError as exc:
            last = exc
        time.sleep(0.05)
    raise AssertionError(f"the stand-in at {url} did not answer within {HEALTH_DEADLINE}s: {last}")


def _dump_on_failure(request: pytest.FixtureRequest, name: str, requests: list[tuple[str, str]],
                     notes: list[str] | None = None) -> None:
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        lines = "\n".join(f"  {method} {path}" for method, path in requests[-50:])
        print(f"\n--- {name} received {len(requests)} request(s); the last ones:\n{lines}", file=sys.stderr)
        for note in (notes or [])[-20:]:
            print(f"  {note}", file=sys.stderr)


@pytest.fixture
def airflow_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh AIRFLOW_HOME, no ``[dli]`` settings from the machine, the DAG factory building every DAG."""
    home = tmp_path / "airflow_home"
    home.mkdir()
    for key in list(os.environ):
        if key.startswith("AIRFLOW__DLI__"):
            monkeypatch.delenv(key)
    monkeypatch.delenv("AIRFLOW_CONFIG", raising=False)
    monkeypatch.delenv("_AIRFLOW_PARSING_CONTEXT_DAG_ID", raising=False)
    monkeypatch.setenv("AIRFLOW_HOME", str(home))
    monkeypatch.setenv("AIRFLOW__DLI__DUCKDB_PATH", str(tmp_path / "dli.duckdb"))
    return home


@pytest.fixture
def trino_standin(request: pytest.FixtureRequest) -> Iterator[TrinoStandin]:
    """A Trino stand-in on a free port of 127.0.0.1 (DuckDB in memory behind it)."""
    server = TrinoStandin(page_size=2, poll_seconds=0.1).start()
    try:
        _wait_healthy(f"{server.url}/v1/info")
        yield server
    finally:
        _dump_on_failure(request, "the Trino stand-in", server.requests)
        server.stop()


@pytest.fixture
def trino_conn(trino_standin: TrinoStandin, airflow_env: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """The Airflow connection ``trino_standin`` (catalog ``memory``, schema ``main``), as an env var."""
    monkeypatch.setenv(
        f"AIRFLOW_CONN_{TRINO_CONN_ID.upper()}",
        json.dumps(
            {
                "conn_type": "trino",
                "host": "127.0.0.1",
                "port": trino_standin.port,
                "login": "dli",
                "schema": "main",
                "extra": {"catalog": "memory"},
            }
        ),
    )
    return TRINO_CONN_ID


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """This session's test CA, server and client certificates, and an identity provider's RSA key pair."""
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def trino_secure(request: pytest.FixtureRequest, pki: Pki) -> Iterator[TrinoStandin]:
    """A Trino stand-in over TLS (the test CA's certificate) that authenticates as a coordinator configured
    with ``CERTIFICATE,PASSWORD,OAUTH2,JWT``: client certificates of the test CA, ``TRINO_USER`` with
    ``TRINO_PASSWORD``, OAuth 2.0 logins as ``OAUTH2_USER``, JWTs signed by the identity provider's key."""
    auth = TrinoAuth(
        passwords={TRINO_USER: TRINO_PASSWORD},
        jwt_public_key=pki.idp_public_key.read_text(),
        client_ca=pki.ca_cert,
        oauth2_user=OAUTH2_USER,
        oauth2_wait=3.0,
    )
    server = TrinoStandin(page_size=2, poll_seconds=0.1, tls=(pki.server_cert, pki.server_key), auth=auth).start()
    try:
        _wait_healthy(f"{server.url}/v1/info", verify=ssl.create_default_context(cafile=str(pki.ca_cert)))
        yield server
    finally:
        notes = [f"auth: {kind} {who} -> {status}" for kind, who, status in server.authentications]
        notes += [f"TLS handshake failed: {error}" for error in server.handshake_errors]
        _dump_on_failure(request, "the secure Trino stand-in", server.requests, notes)
        server.stop()


@pytest.fixture
def bigquery_secure(request: pytest.FixtureRequest) -> Iterator[BigQueryStandin]:
    """A BigQuery stand-in that wants an access token from its own token endpoint (``auth.token_uri``), as
    Google does; register the test's service accounts with ``auth.add_service_account``."""
    server = BigQueryStandin(poll_seconds=0.1, auth=GoogleAuth()).start()
    try:
        _wait_healthy(f"{server.url}/health")
        yield server
    finally:
        auth = server.auth
        notes = [f"token grant {grant} -> {who}" for grant, who in (auth.grants if auth else [])]
        _dump_on_failure(request, "the secure BigQuery stand-in", server.requests, notes)
        server.stop()


@pytest.fixture
def bigquery_standin(request: pytest.FixtureRequest) -> Iterator[BigQueryStandin]:
    """A BigQuery REST stand-in on a free port of 127.0.0.1 (DuckDB in memory behind it)."""
    server = BigQueryStandin(poll_seconds=0.1).start()
    try:
        _wait_healthy(f"{server.url}/health")
        yield server
    finally:
        _dump_on_failure(request, "the BigQuery stand-in", server.requests)
        server.stop()


@pytest.fixture
def bigquery_conn(bigquery_standin: BigQueryStandin, airflow_env: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """The Airflow connection ``bigquery_standin``: anonymous credentials, the stand-in as API endpoint."""
    monkeypatch.setenv(
        f"AIRFLOW_CONN_{BIGQUERY_CONN_ID.upper()}",
        json.dumps(
            {
                "conn_type": "google_cloud_platform",
                "extra": {
                    "project": BIGQUERY_PROJECT,
                    "location": "US",
                    "is_anonymous": True,
                    "api_endpoint": bigquery_standin.url,
                },
            }
        ),
    )
    return BIGQUERY_CONN_ID


@pytest.fixture
def make_task(airflow_env: Path) -> Callable[..., Any]:
    """The ``run`` task of the DAG ``build_dag`` makes from a spec (YAML text) and its SQL."""
    from dli_airflow.catalog import SpecEntry
    from dli_airflow.factory import build_dag
    from dli_airflow.spec import DatasetStatus, SourceType, load_spec

    def make(spec_yaml: str, sql: str) -> Any:
        spec = load_spec(spec_yaml, "code/dataset.yaml")
        entry = SpecEntry(
            spec=spec,
            source=SourceType.CODE,
            status=DatasetStatus.ACTIVE,
            path="code/dataset.yaml",
            sql=sql,
            sql_path="code/dataset.sql",
        )
        return build_dag(entry).get_task("run")

    return make


@pytest.fixture
def run_context() -> Callable[..., dict[str, Any]]:
    """Makes the small task context of a manual run (what ``render_template_fields``/``execute`` read)."""
    from types import SimpleNamespace

    def make(params: dict[str, Any] | None = None, conf: dict[str, Any] | None = None) -> dict[str, Any]:
        dag_run = SimpleNamespace(run_type="manual", conf=conf or {}, run_after=None)
        return {"params": params or {}, "dag_run": dag_run, "logical_date": None}

    return make
