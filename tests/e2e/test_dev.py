"""``dli dev``: a real Airflow 3 brought up, checked, brought up again and torn down."""

from __future__ import annotations

import json
import os
import stat
import time
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest
from typer.testing import CliRunner

from dli_airflow import dev
from dli_airflow.cli.dev import app as dev_app

if TYPE_CHECKING:
    from .conftest import AirflowE2E


def _processes_of_home(home: Path) -> dict[int, str]:
    """Live processes that belong to ``home``: ``AIRFLOW_HOME=<home>`` in their environment, or ``home`` as cwd.

    Both, because a process that renames itself (setproctitle: the api-server, LocalExecutor
    workers) blanks its /proc environ; ``up`` starts every process in ``home``.
    """
    marker = f"AIRFLOW_HOME={home}".encode()
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0]
            environ = Path(f"/proc/{entry}/environ").read_bytes()
            cwd = os.readlink(f"/proc/{entry}/cwd")
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if state != "Z" and (marker in environ.split(b"\0") or cwd == str(home)):
            found[int(entry)] = cmdline
    return found


def _pids(status: dev.DevStatus) -> dict[str, int | None]:
    return {name: proc.pid for name, proc in status.processes.items()}


def test_health_is_all_healthy(airflow: AirflowE2E) -> None:
    response = httpx.get(f"{airflow.url}/api/v2/monitor/health", timeout=10)

    assert response.status_code == 200
    health = response.json()
    for component in ("metadatabase", "scheduler", "dag_processor"):
        assert health[component]["status"] == "healthy", health


def test_api_accepts_the_admin_token(airflow: AirflowE2E) -> None:
    with airflow.api() as api:
        response = api.get("/dags", params={"limit": 1})

    assert response.status_code == 200, response.text
    assert "total_entries" in response.json()


def test_dag_file_is_the_packaged_one_and_imports(airflow: AirflowE2E) -> None:
    dag_file = airflow.home / "dags" / dev.DAG_FILE_NAME

    assert dag_file.read_text(encoding="utf-8") == dev.dag_file_source()
    with airflow.api() as api:
        errors = api.get("/importErrors").raise_for_status().json()["import_errors"]
    assert [e for e in errors if e["filename"].endswith(dev.DAG_FILE_NAME)] == []


def test_status_reports_alive_processes_and_the_password(airflow: AirflowE2E) -> None:
    status = dev.status(airflow.home)

    assert status.state == "running" and status.running and status.healthy
    assert status.url == airflow.url and status.port == airflow.port
    assert status.store == airflow.store
    assert set(status.processes) == set(dev.PROCESS_NAMES)
    assert all(p.pid is not None and p.alive for p in status.processes.values())
    passwords = json.loads((airflow.home / "passwords.json").read_text())
    assert status.username == "admin" and status.password == passwords["admin"]


@pytest.mark.hostile(kind="cli-and-secrets")
def test_secrets_are_private_and_never_shown(airflow: AirflowE2E) -> None:
    for name in ("dev.json", "passwords.json"):
        assert stat.S_IMODE((airflow.home / name).stat().st_mode) == 0o600, name
    jwt_secret = json.loads((airflow.home / "dev.json").read_text())["jwt_secret"]
    status = dev.status(airflow.home)

    assert len(jwt_secret) >= 64
    assert jwt_secret not in repr(status) and jwt_secret not in json.dumps(status.to_dict())
    for log in (airflow.home / "logs").rglob("*.log"):
        assert jwt_secret not in log.read_text(encoding="utf-8", errors="replace"), log


def test_second_up_is_harmless(airflow: AirflowE2E) -> None:
    before = dev.status(airflow.home)

    again = dev.up(store=airflow.store, home=airflow.home, timeout=60)

    assert _pids(again) == _pids(before)
    assert again.healthy and again.password == before.password and again.url == before.url


def test_up_refuses_another_store_while_running(airflow: AirflowE2E, tmp_path: Path) -> None:
    other = tmp_path / "other-store"
    (other / "code").mkdir(parents=True)
    before = dev.status(airflow.home)

    with pytest.raises(dev.DevError, match="dli dev down") as info:
        dev.up(store=str(other), home=airflow.home, timeout=30)

    assert info.value.code == "DLI-010"
    assert _pids(dev.status(airflow.home)) == _pids(before)


def test_up_names_the_dags_that_never_appear(airflow: AirflowE2E) -> None:
    before = dev.status(airflow.home)

    with pytest.raises(dev.DevError, match="DAGs missing after 5 s: no_such_dataset") as info:
        dev.up(store=airflow.store, home=airflow.home, timeout=5, expected_dag_ids=["no_such_dataset"])

    assert "dag-processor.log" in str(info.value)
    # Started by an earlier `up`, so left running.
    assert _pids(dev.status(airflow.home)) == _pids(before)


def test_cli_up_on_a_running_stack_prints_the_login(airflow: AirflowE2E) -> None:
    result = CliRunner().invoke(dev_app, ["up", "--store", airflow.store, "--home", str(airflow.home)])

    assert result.exit_code == 0, result.output
    assert airflow.url in result.output
    assert f"admin / {airflow.password}" in result.output
    assert f"dli dev down --home {airflow.home}" in result.output


def test_cli_status_json(airflow: AirflowE2E) -> None:
    result = CliRunner().invoke(dev_app, ["status", "--home", str(airflow.home), "--format", "json"])

    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["state"] == "running" and data["healthy"] is True
    assert data["url"] == airflow.url and data["password"] == airflow.password


def test_down_stops_every_process(tmp_path_factory: pytest.TempPathFactory, e2e_store: Path) -> None:
    # A stack of its own: stopping the session's stack would break the other e2e tests.
    home = tmp_path_factory.mktemp("airflow-down")
    try:
        started = time.monotonic()
        # No expected DAG ids: up waits for one parse of the DAG file instead.
        status = dev.up(store=str(e2e_store), home=home, port=dev.free_port(), timeout=180)
        up_seconds = time.monotonic() - started
        assert status.running and status.healthy, dev.log_tails(home)
        ours = _processes_of_home(home)
        # api-server, scheduler and its 4 LocalExecutor workers (PARALLELISM=4), dag-processor.
        assert len(ours) >= 7, ours
        assert {p.pid for p in status.processes.values()} <= set(ours)

        started = time.monotonic()
        dev.down(home)
        down_seconds = time.monotonic() - started

        left = _processes_of_home(home)
        assert left == {}, left
        after = dev.status(home)
        assert after.state == "stopped" and not after.running and not after.healthy
        assert all(p.pid is None and not p.alive for p in after.processes.values())
        assert not list((home / "run").glob("*.pid"))
        print(f"\nup {up_seconds:.1f} s, down {down_seconds:.1f} s, {len(ours)} processes")
    finally:
        dev.down(home)


def test_up_fails_cleanly_when_a_process_dies(tmp_path_factory: pytest.TempPathFactory, e2e_store: Path) -> None:
    home = tmp_path_factory.mktemp("airflow-broken")
    try:
        with pytest.raises(dev.DevError) as info:
            dev.up(
                store=str(e2e_store),
                home=home,
                port=dev.free_port(),
                timeout=120,
                # The scheduler cannot load this executor and exits.
                extra_env={"AIRFLOW__CORE__EXECUTOR": "NoSuchExecutor"},
            )

        assert info.value.code == "DLI-010"
        assert "NoSuchExecutor" in str(info.value), str(info.value)
        assert _processes_of_home(home) == {}
        assert dev.status(home).state == "stopped"
    finally:
        dev.down(home)
