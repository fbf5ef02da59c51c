"""Fast tests of ``dli_airflow.dev``: ports, secrets files, pid records, status and stop, without Airflow."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path

import httpx
import pytest

from dli_airflow import dev
from dli_airflow.errors import DliError, StoreNotFoundError


@pytest.fixture
def paths(tmp_path: Path) -> dev._Paths:
    return dev._Paths(tmp_path / "home")


@pytest.fixture
def listener() -> Iterator[int]:
    """A port something listens on."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    """A process in a session of its own, like the ones ``up`` launches; killed at the end if still there."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
    yield proc
    if proc.poll() is None:
        proc.kill()
    proc.wait()


def _record(name: str, proc: subprocess.Popen[bytes], *, ticks_offset: int = 0) -> dev._ProcessRecord:
    ticks = dev._start_ticks(proc.pid)
    assert ticks is not None
    return dev._ProcessRecord(name=name, pid=proc.pid, start_ticks=ticks + ticks_offset, run_id="test-run")


# --------------------------------------------------------------------------- ports


def test_requested_free_port_is_used() -> None:
    port = dev.free_port()

    assert dev._choose_port(port, saved=None) == port


def test_requested_busy_port_is_refused_with_what_to_do(listener: int) -> None:
    with pytest.raises(dev.DevError, match=f"port {listener} is in use: pass --port") as info:
        dev._choose_port(listener, saved=None)

    assert info.value.code == "DLI-010"


def test_requested_port_out_of_range_is_refused() -> None:
    with pytest.raises(dev.DevError, match="out of range"):
        dev._choose_port(70000, saved=None)


def test_saved_port_is_reused_when_free() -> None:
    saved = dev.free_port()

    assert dev._choose_port(None, saved=saved) == saved


def test_busy_saved_port_falls_back_to_a_free_one(listener: int) -> None:
    chosen = dev._choose_port(None, saved=listener)

    assert chosen != listener
    assert dev._port_is_free(chosen)


def test_default_port_is_8080_when_free(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dev, "_port_is_free", lambda port: True)

    assert dev._choose_port(None, saved=None) == 8080


def test_any_port_when_8080_is_busy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dev, "_port_is_free", lambda port: port != 8080)

    assert dev._choose_port(None, saved=None) not in (8080, None)


# --------------------------------------------------------------------------- dev.json, passwords.json


def test_dev_json_is_private_and_keeps_its_secrets(paths: dev._Paths) -> None:
    first = dev._save_state(paths, port=8081, store="/a")
    second = dev._save_state(paths, port=8082, store="/b")

    assert stat.S_IMODE(paths.dev_json.stat().st_mode) == 0o600
    assert len(first.jwt_secret) >= 64 and first.secret_key
    assert (second.jwt_secret, second.secret_key) == (first.jwt_secret, first.secret_key)
    assert json.loads(paths.dev_json.read_text())["port"] == 8082
    assert dev._load_state(paths) == second


def test_dev_state_repr_hides_the_secrets(paths: dev._Paths) -> None:
    state = dev._save_state(paths, port=8081, store="/a")

    assert state.jwt_secret not in repr(state) and state.secret_key not in repr(state)


def test_short_jwt_secret_is_replaced(paths: dev._Paths) -> None:
    paths.home.mkdir(parents=True)
    paths.dev_json.write_text(json.dumps({"port": 1, "store": None, "jwt_secret": "short", "secret_key": "k"}))

    assert len(dev._save_state(paths, port=2, store=None).jwt_secret) >= 64


def test_damaged_dev_json_says_what_to_do(paths: dev._Paths) -> None:
    paths.home.mkdir(parents=True)
    paths.dev_json.write_text("{not json")

    with pytest.raises(dev.DevError, match="delete it"):
        dev._load_state(paths)


def test_password_is_generated_once_privately(paths: dev._Paths) -> None:
    first = dev._ensure_password(paths)
    second = dev._ensure_password(paths)

    assert first == second and len(first) >= 12
    assert json.loads(paths.passwords.read_text()) == {"admin": first}
    assert stat.S_IMODE(paths.passwords.stat().st_mode) == 0o600


def test_password_file_keeps_other_users_and_tightens_its_mode(paths: dev._Paths) -> None:
    paths.home.mkdir(parents=True)
    paths.passwords.write_text(json.dumps({"admin": "given", "viewer": "v"}))
    paths.passwords.chmod(0o644)

    assert dev._ensure_password(paths) == "given"
    assert json.loads(paths.passwords.read_text()) == {"admin": "given", "viewer": "v"}
    assert stat.S_IMODE(paths.passwords.stat().st_mode) == 0o600


def test_dag_file_is_written_once(paths: dev._Paths) -> None:
    assert dev._write_dag_file(paths) is True
    assert dev._write_dag_file(paths) is False
    text = paths.dag_file.read_text()

    assert text == dev.DAG_FILE_SOURCE
    # Airflow's safe-mode discovery only parses files mentioning both words.
    assert "airflow" in text.lower() and "dag" in text.lower()


# --------------------------------------------------------------------------- environment


def test_environment_of_the_processes(paths: dev._Paths, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONFIG", "/elsewhere/airflow.cfg")
    state = dev._DevState(port=8123, store="/s", jwt_secret="j" * 64, secret_key="k")

    env = dev._airflow_env(paths, state, "/s", {"EXTRA": "1"}, "run-1")

    assert "AIRFLOW_CONFIG" not in env
    assert env["AIRFLOW_HOME"] == str(paths.home)
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] == f"sqlite:///{paths.home}/airflow.db"
    assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://127.0.0.1:8123/execution/"
    assert env["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor" and env["AIRFLOW__CORE__PARALLELISM"] == "4"
    assert env["AIRFLOW__DLI__SPEC_STORE"] == "/s"
    assert env["AIRFLOW__DLI__DUCKDB_PATH"] == str(paths.home / "dli.duckdb")
    assert env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"] == str(paths.passwords)
    assert env["EXTRA"] == "1" and env[dev.RUN_ID_ENV] == "run-1"


def test_extra_env_overrides_the_duckdb_path(paths: dev._Paths) -> None:
    state = dev._DevState(port=1, store=None, jwt_secret="j" * 64, secret_key="k")

    env = dev._airflow_env(paths, state, "/s", {"AIRFLOW__DLI__DUCKDB_PATH": "/data/w.duckdb"}, "r")

    assert env["AIRFLOW__DLI__DUCKDB_PATH"] == "/data/w.duckdb"


def test_local_store_is_made_absolute_and_must_exist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "store").mkdir()
    monkeypatch.chdir(tmp_path)

    assert dev._normalise_store("store") == str(tmp_path / "store")
    assert dev._normalise_store("s3://bucket/prefix") == "s3://bucket/prefix"
    with pytest.raises(StoreNotFoundError):
        dev._normalise_store("missing")


# --------------------------------------------------------------------------- pid records, status, down


def test_status_when_nothing_ever_ran(tmp_path: Path) -> None:
    status = dev.status(tmp_path / "never")

    assert status.state == "stopped" and not status.running and not status.healthy
    assert status.url is None and status.password is None
    assert set(status.processes) == set(dev.PROCESS_NAMES)
    assert all(p == dev.ProcessStatus(pid=None, alive=False) for p in status.processes.values())


def test_down_when_nothing_ever_ran(tmp_path: Path) -> None:
    dev.down(tmp_path / "never")

    assert not (tmp_path / "never").exists()


def test_proc_stat_reads_this_process() -> None:
    info = dev._proc_stat(os.getpid())

    assert info is not None and not info.exited
    assert info.ppid == os.getppid() and info.pgrp == os.getpgrp() and info.session == os.getsid(0)
    assert info.start_ticks > 0


def test_foreign_pid_is_neither_alive_nor_killed(paths: dev._Paths, sleeper: subprocess.Popen[bytes]) -> None:
    # The pid file names a live process, but with another start time: the pid was recycled.
    dev._write_record(paths, _record("scheduler", sleeper, ticks_offset=-1))

    assert dev.status(paths.home).processes["scheduler"] == dev.ProcessStatus(pid=sleeper.pid, alive=False)
    dev.down(paths.home)

    assert sleeper.poll() is None
    assert not paths.pid("scheduler").exists()


def test_down_stops_a_recorded_process_group(paths: dev._Paths, sleeper: subprocess.Popen[bytes]) -> None:
    dev._write_record(paths, _record("scheduler", sleeper))
    assert dev.status(paths.home).processes["scheduler"] == dev.ProcessStatus(pid=sleeper.pid, alive=True)

    started = time.monotonic()
    dev.down(paths.home)

    assert sleeper.wait(timeout=5) == -15  # SIGTERM, no need for SIGKILL
    assert time.monotonic() - started < 5
    assert not paths.pid("scheduler").exists()


def test_down_kills_what_ignores_sigterm(paths: dev._Paths, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    code = (
        "import signal, time, pathlib; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        f"pathlib.Path({str(ready)!r}).touch(); time.sleep(60)"
    )
    stubborn = subprocess.Popen([sys.executable, "-c", code], start_new_session=True)
    try:
        while not ready.exists():
            time.sleep(0.05)
        monkeypatch.setattr(dev, "_LEADER_GRACE_SECONDS", 0.3)
        monkeypatch.setattr(dev, "_STOP_GRACE_SECONDS", 0.6)
        dev._write_record(paths, _record("api-server", stubborn))

        dev.down(paths.home)

        assert stubborn.wait(timeout=5) == -9
    finally:
        if stubborn.poll() is None:
            stubborn.kill()
        stubborn.wait()


def test_down_finds_descendants_that_left_the_group(
    paths: dev._Paths, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A child that calls setsid() escapes killpg(); its parent link (then its run id) still marks it as ours.
    monkeypatch.setattr(dev, "_LEADER_GRACE_SECONDS", 0.3)
    pid_file = tmp_path / "grandchild.pid"
    code = (
        "import os, subprocess, sys, time; "
        "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'], start_new_session=True); "
        f"open({str(pid_file)!r}, 'w').write(str(p.pid)); time.sleep(60)"
    )
    env = {**os.environ, dev.RUN_ID_ENV: "test-run"}
    parent = subprocess.Popen([sys.executable, "-c", code], start_new_session=True, env=env)
    try:
        while not pid_file.exists() or not pid_file.read_text():
            time.sleep(0.05)
        grandchild = int(pid_file.read_text())
        dev._write_record(paths, _record("dag-processor", parent))

        dev.down(paths.home)

        parent.wait(timeout=5)
        assert not dev._is_running(grandchild)
    finally:
        if parent.poll() is None:
            parent.kill()
        parent.wait()


def test_up_refuses_another_store_while_running(
    paths: dev._Paths, tmp_path: Path, sleeper: subprocess.Popen[bytes]
) -> None:
    # Three live recorded processes and a dev.json stand for a running stack: nothing is launched.
    running_store = tmp_path / "running"
    other_store = tmp_path / "other"
    running_store.mkdir()
    other_store.mkdir()
    dev._save_state(paths, port=dev.free_port(), store=str(running_store))
    for name in dev.PROCESS_NAMES:
        dev._write_record(paths, _record(name, sleeper))

    with pytest.raises(dev.DevError, match="dli dev down --home"):
        dev.up(store=str(other_store), home=paths.home, timeout=5)

    assert sleeper.poll() is None


def test_dev_error_code() -> None:
    assert dev.DevError.code == "DLI-010"
    assert issubclass(dev.DevError, DliError)


# --------------------------------------------------------------------------- readiness signals


def _api(handler: Callable[[httpx.Request], httpx.Response]) -> httpx.Client:
    return httpx.Client(base_url="http://airflow.test", transport=httpx.MockTransport(handler))


def test_dag_ids_are_read_across_pages() -> None:
    all_ids = [f"dag_{i:03d}" for i in range(230)]

    def handler(request: httpx.Request) -> httpx.Response:
        offset, limit = int(request.url.params["offset"]), int(request.url.params["limit"])
        page = [{"dag_id": d} for d in all_ids[offset : offset + limit]]
        return httpx.Response(200, json={"dags": page, "total_entries": len(all_ids)})

    with _api(handler) as client:
        assert dev._list_dag_ids(client) == set(all_ids)


def test_only_fresh_import_errors_of_the_dag_file_count() -> None:
    since = datetime(2026, 1, 1, 12, 0, tzinfo=timezone.utc)
    errors = [
        {"filename": dev.DAG_FILE_NAME, "timestamp": "2026-01-01T11:59:59Z", "stack_trace": "old"},
        {"filename": dev.DAG_FILE_NAME, "timestamp": "2026-01-01T12:00:01Z", "stack_trace": "new"},
        {"filename": "other.py", "timestamp": "2026-01-01T12:00:01Z", "stack_trace": "not ours"},
    ]

    with _api(lambda request: httpx.Response(200, json={"import_errors": errors})) as client:
        everything, ours = dev._fresh_import_errors(client, since)
        _, ours_any_time = dev._fresh_import_errors(client, None)

    assert everything == errors
    assert [e["stack_trace"] for e in ours] == ["new"]
    assert [e["stack_trace"] for e in ours_any_time] == ["old", "new"]


def _parse_log(paths: dev._Paths, *stamps: str) -> None:
    folder = paths.logs / "dag_processor" / "2026-01-01" / "dags-folder"
    folder.mkdir(parents=True, exist_ok=True)
    lines = [
        json.dumps({"timestamp": stamp, "event": f"Filling up the DagBag from {paths.dag_file}"}) for stamp in stamps
    ]
    (folder / f"{dev.DAG_FILE_NAME}.log").write_text("\n".join(lines) + "\n")
    # Airflow keeps a `latest` symlink to the day's folder: the same log must not count twice.
    (paths.logs / "dag_processor" / "latest").symlink_to("2026-01-01")


def test_dag_file_counts_as_parsed_once_a_second_parse_started(paths: dev._Paths) -> None:
    since = datetime(2026, 1, 1, 12, 0, tzinfo=timezone.utc)
    _parse_log(paths, "2026-01-01T11:00:00Z", "2026-01-01T12:00:01Z", "2026-01-01T12:00:06Z")

    assert dev._dag_file_parsed_since(paths, since, None)


def test_dag_file_parse_before_since_or_in_flight_does_not_count(paths: dev._Paths) -> None:
    since = datetime(2026, 1, 1, 12, 0, tzinfo=timezone.utc)
    # One parse of an earlier run and one that started since: without the dag-processor to ask, not yet.
    _parse_log(paths, "2026-01-01T11:00:00Z", "2026-01-01T12:00:01Z")

    assert not dev._dag_file_parsed_since(paths, since, None)
