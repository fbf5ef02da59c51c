"""Session fixtures for end-to-end tests: one real Airflow 3 started by ``dli_airflow.dev.up``.

Every test under ``tests/e2e`` is marked ``e2e``. The stack runs on a free port in a temporary
home, serves a copy of ``examples/store``, and is always stopped at the end of the session.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from dli_airflow import dev

_HERE = Path(__file__).resolve().parent
_REPO = _HERE.parents[1]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # A conftest hook sees the items of the whole session: mark only those below this folder.
    for item in items:
        if _HERE in Path(item.path).resolve().parents:
            item.add_marker(pytest.mark.e2e)


@dataclass(frozen=True)
class AirflowE2E:
    """A running dev Airflow: where it is and how to talk to it."""

    url: str
    port: int
    home: Path
    store: str
    username: str
    password: str

    def token(self) -> str:
        """A fresh JWT for the REST API."""
        return dev.get_token(self.url, self.username, self.password)

    def api(self, *, timeout: float = 30.0) -> httpx.Client:
        """An ``httpx.Client`` with base URL ``<url>/api/v2`` and a bearer token; close it (``with``)."""
        return httpx.Client(
            base_url=f"{self.url}/api/v2",
            headers={"Authorization": f"Bearer {self.token()}"},
            timeout=timeout,
        )


def _warm_up(url: str, username: str, password: str) -> None:
    """The control plane's first requests after a start pay for its cold paths (the store's first snapshot, the
    first in-process REST call), which on a loaded 2-core CI machine took longer than a request's 30 s once:
    made here, with time to spare, so no test's first request is the one that pays."""
    from dli_airflow.client import WorkflowClient

    with WorkflowClient(url=url, username=username, password=password, timeout=180) as client:
        client.list_workflows()
        client.run("e2e.daily", {"execution_date": "2000-01-01"}, dry_run=True)


@pytest.fixture(scope="session")
def e2e_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of ``examples/store`` (or an empty store with ``code/`` and ``manual/``) tests may change."""
    store = tmp_path_factory.mktemp("store") / "store"
    examples = _REPO / "examples" / "store"
    if examples.is_dir():
        shutil.copytree(examples, store)
    # datasets made for the end-to-end tests (slow, failing, flaky, a manual one without schedule)
    shutil.copytree(_HERE / "store", store, dirs_exist_ok=True)
    for prefix in ("code", "manual"):
        (store / prefix).mkdir(parents=True, exist_ok=True)
    return store


@pytest.fixture(scope="session")
def airflow(tmp_path_factory: pytest.TempPathFactory, e2e_store: Path) -> Iterator[AirflowE2E]:
    """A real Airflow 3 (api-server, scheduler, dag-processor) with the DAGs of ``e2e_store`` listed."""
    home = tmp_path_factory.mktemp("airflow-home")
    # broken specs also in Airflow's own import-errors view (opt-in; test_sync_e2e checks it on this Airflow)
    os.environ["AIRFLOW__DLI__IMPORT_ERRORS"] = "True"
    # An explicit free port, so the tests never take 8080 from a `dli dev up` the developer runs.
    port = dev.free_port()
    try:
        status = dev.up(
            store=str(e2e_store),
            home=home,
            port=port,
            timeout=180,
            expected_dag_ids=dev.expected_dag_ids(str(e2e_store)),
        )
        assert status.url is not None and status.port is not None and status.password is not None
        _warm_up(status.url, status.username, status.password)
        yield AirflowE2E(
            url=status.url,
            port=status.port,
            home=status.home,
            store=str(e2e_store),
            username=status.username,
            password=status.password,
        )
    except Exception:
        sys.stderr.write(f"\nAirflow did not start; logs under {home}:\n{dev.log_tails(home, lines=60)}\n")
        raise
    finally:
        dev.down(home)
