"""Fast tests of ``dli_airflow.dev``: ports, secrets files, pid records, status and stop, without Airflow."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from datetime import datetime, timezone
from pathlib import Path

import httpx
import pytest

from dli_airflow import dev
from dli_airflow._api import ApiTransport
from dli_airflow.dev import _home, _process, _ready
from dli_airflow.errors import DliError, ServerAuthError, StoreNotFoundError


@pytest.fixture
def paths(tmp_path: Path) -> _home._Paths:
    return _home._Paths(tmp_path / "home")


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


def _record(name: str, proc: subprocess.Popen[bytes], *, ticks_offset: int = 0) -> _process._ProcessRecord:
    ticks = _process._start_ticks(proc.pid)
    assert ticks is not None
    return _process._ProcessRecord(name=name, pid=proc.pid, start_ticks=ticks + ticks_offset, run_id="test-run")


# --------------------------------------------------------------------------- ports


def test_requested_free_port_is_used() -> None:
    port = dev.free_port()

    assert _home._choose_port(port, saved=None) == port


def test_requested_busy_port_is_refused_with_what_to_do(listener: int) -> None:
    with pytest.raises(dev.DevError, match=f"port {listener} is in use: pass --port") as info:
        _home._choose_port(listener, saved=None)

    assert info.value.code == "DLI-010"


def test_requested_port_out_of_range_is_refused() -> None:
    with pytest.raises(dev.DevError, match="out of range"):
        _home._choose_port(70000, saved=None)


def test_saved_port_is_reused_when_free() -> None:
    saved = dev.free_port()

    assert _home._choose_port(None, saved=saved) == saved


def test_busy_saved_port_falls_back_to_a_free_one(listener: int) -> None:
    chosen = _home._choose_port(None, saved=listener)

    assert chosen != listener
    assert _home._port_is_free(chosen)


def test_default_port_is_8080_when_free(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_home, "_port_is_free", lambda port: True)

    assert _home._choose_port(None, saved=None) == 8080


def test_any_port_when_8080_is_busy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_home, "_port_is_free", lambda port: port != 8080)

    assert _home._choose_port(None, saved=None) not in (8080, None)


# --------------------------------------------------------------------------- dev.json, passwords.json


def test_dev_json_is_private_and_keeps_its_secrets(paths: _home._Paths) -> None:
    first = _home._save_state(paths, port=8081, store="/a")
    second = _home._save_state(paths, port=8082, store="/b")

    assert stat.S_IMODE(paths.dev_json.stat().st_mode) == 0o600
    assert len(first.jwt_secret) >= 64 and first.secret_key
    assert (second.jwt_secret, second.secret_key) == (first.jwt_secret, first.secret_key)
    assert json.loads(paths.dev_json.read_text())["port"] == 8082
    assert _home._load_state(paths) == second


def test_dev_state_repr_hides_the_secrets(paths: _home._Paths) -> None:
    state = _home._save_state(paths, port=8081, store="/a")

    assert state.jwt_secret not in repr(state) and state.secret_key not in repr(state)


def test_short_jwt_secret_is_replaced(paths: _home._Paths) -> None:
    paths.home.mkdir(parents=True)
    paths.dev_json.write_text(json.dumps({"port": 1, "store": None, "jwt_secret": "short", "secret_key": "k"}))

    assert len(_home._save_state(paths, port=2, store=None).jwt_secret) >= 64


def test_damaged_dev_json_says_what_to_do(paths: _home._Paths) -> None:
    paths.home.mkdir(parents=True)
    paths.dev_json.write_text("{not json")

    with pytest.raises(dev.DevError, match="delete it"):
        _home._load_state(paths)


def test_password_is_generated_once_privately_for_every_role_user(paths: _home._Paths) -> None:
    first = _home._ensure_password(paths)
    stored = json.loads(paths.passwords.read_text())
    second = _home._ensure_password(paths)

    assert first == second and len(first) >= 12
    assert json.loads(paths.passwords.read_text()) == stored
    assert sorted(stored) == ["admin", "op", "user", "viewer"] and stored["admin"] == first
    assert len(set(stored.values())) == 4
    assert stat.S_IMODE(paths.passwords.stat().st_mode) == 0o600


def test_password_file_keeps_other_users_and_tightens_its_mode(paths: _home._Paths) -> None:
    paths.home.mkdir(parents=True)
    paths.passwords.write_text(json.dumps({"admin": "given", "viewer": "v"}))
    paths.passwords.chmod(0o644)

    assert _home._ensure_password(paths) == "given"
    stored = json.loads(paths.passwords.read_text())
    assert stored["admin"] == "given" and stored["viewer"] == "v" and sorted(stored) == ["admin", "op", "user", "viewer"]
    assert stat.S_IMODE(paths.passwords.stat().st_mode) == 0o600


def test_dag_file_is_written_once(paths: _home._Paths) -> None:
    assert _home._write_dag_file(paths) is True
    assert _home._write_dag_file(paths) is False
    text = paths.dag_file.read_text()

    assert text == dev.dag_file_source() == dev.DAG_FILE_SOURCE
    # Airflow's safe-mode discovery only parses files mentioning both words.
    assert "airflow" in text.lower() and "dag" in text.lower()


# --------------------------------------------------------------------------- environment


def test_environment_of_the_processes(paths: _home._Paths, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONFIG", "/elsewhere/airflow.cfg")
    state = _home._DevState(port=8123, store="/s", jwt_secret="j" * 64, secret_key="k")

    env = _home._airflow_env(paths, state, "/s", {"EXTRA": "1"}, "run-1")

    assert "AIRFLOW_CONFIG" not in env
    assert env["AIRFLOW_HOME"] == str(paths.home)
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] == f"sqlite:///{paths.home}/airflow.db"
    assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://127.0.0.1:8123/execution/"
    assert env["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor" and env["AIRFLOW__CORE__PARALLELISM"] == "4"
    assert env["AIRFLOW__DLI__SPEC_STORE"] == "/s"
    assert env["AIRFLOW__DLI__DUCKDB_PATH"] == str(paths.home / "dli.duckdb")
    assert env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"] == str(paths.passwords)
    assert env["EXTRA"] == "1" and env[_home.RUN_ID_ENV] == "run-1"


def test_extra_env_overrides_the_duckdb_path(paths: _home._Paths) -> None:
    state = _home._DevState(port=1, store=None, jwt_secret="j" * 64, secret_key="k")

    env = _home._airflow_env(paths, state, "/s", {"AIRFLOW__DLI__DUCKDB_PATH": "/data/w.duckdb"}, "r")

    assert env["AIRFLOW__DLI__DUCKDB_PATH"] == "/data/w.duckdb"


def test_local_store_is_made_absolute_and_must_exist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "store").mkdir()
    monkeypatch.chdir(tmp_path)

    assert _home._normalise_store("store") == str(tmp_path / "store")
    assert _home._normalise_store("s3://bucket/prefix") == "s3://bucket/prefix"
    with pytest.raises(StoreNotFoundError):
        _home._normalise_store("missing")


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
    info = _process._proc_stat(os.getpid())

    assert info is not None and not info.exited
    assert info.ppid == os.getppid() and info.pgrp == os.getpgrp() and info.session == os.getsid(0)
    assert info.start_ticks > 0


def test_foreign_pid_is_neither_alive_nor_killed(paths: _home._Paths, sleeper: subprocess.Popen[bytes]) -> None:
    # The pid file names a live process, but with another start time: the pid was recycled.
    _process._write_record(paths, _record("scheduler", sleeper, ticks_offset=-1))

    assert dev.status(paths.home).processes["scheduler"] == dev.ProcessStatus(pid=sleeper.pid, alive=False)
    dev.down(paths.home)

    assert sleeper.poll() is None
    assert not paths.pid("scheduler").exists()


def test_down_stops_a_recorded_process_group(paths: _home._Paths, sleeper: subprocess.Popen[bytes]) -> None:
    _process._write_record(paths, _record("scheduler", sleeper))
    assert dev.status(paths.home).processes["scheduler"] == dev.ProcessStatus(pid=sleeper.pid, alive=True)

    started = time.monotonic()
    dev.down(paths.home)

    assert sleeper.wait(timeout=5) == -15  # SIGTERM, no need for SIGKILL
    assert time.monotonic() - started < 5
    assert not paths.pid("scheduler").exists()


def test_down_kills_what_ignores_sigterm(paths: _home._Paths, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    code = (
        "import signal, time, pathlib; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        f"pathlib.Path({str(ready)!r}).touch(); time.sleep(60)"
    )
    stubborn = subprocess.Popen([sys.executable, "-c", code], start_new_session=True)
    try:
        while not ready.exists():
            time.sleep(0.05)
        monkeypatch.setattr(_process, "_LEADER_GRACE_SECONDS", 0.3)
        monkeypatch.setattr(_process, "_STOP_GRACE_SECONDS", 0.6)
        _process._write_record(paths, _record("api-server", stubborn))

        dev.down(paths.home)

        assert stubborn.wait(timeout=5) == -9
    finally:
        if stubborn.poll() is None:
            stubborn.kill()
        stubborn.wait()


def test_down_finds_descendants_that_left_the_group(
    paths: _home._Paths, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A child that calls setsid() escapes killpg(); its parent link (then its run id) still marks it as ours.
    monkeypatch.setattr(_process, "_LEADER_GRACE_SECONDS", 0.3)
    pid_file = tmp_path / "grandchild.pid"
    code = (
        "import os, subprocess, sys, time; "
        "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'], start_new_session=True); "
        f"open({str(pid_file)!r}, 'w').write(str(p.pid)); time.sleep(60)"
    )
    env = {**os.environ, _home.RUN_ID_ENV: "test-run"}
    parent = subprocess.Popen([sys.executable, "-c", code], start_new_session=True, env=env)
    try:
        while not pid_file.exists() or not pid_file.read_text():
            time.sleep(0.05)
        grandchild = int(pid_file.read_text())
        _process._write_record(paths, _record("dag-processor", parent))

        dev.down(paths.home)

        parent.wait(timeout=5)
        assert not _process._is_running(grandchild)
    finally:
        if parent.poll() is None:
            parent.kill()
        parent.wait()


def test_up_refuses_another_store_while_running(
    paths: _home._Paths, tmp_path: Path, sleeper: subprocess.Popen[bytes]
) -> None:
    # Three live recorded processes and a dev.json stand for a running stack: nothing is launched.
    running_store = tmp_path / "running"
    other_store = tmp_path / "other"
    running_store.mkdir()
    other_store.mkdir()
    _home._save_state(paths, port=dev.free_port(), store=str(running_store))
    for name in dev.PROCESS_NAMES:
        _process._write_record(paths, _record(name, sleeper))

    with pytest.raises(dev.DevError, match="dli dev down --home"):
        dev.up(store=str(other_store), home=paths.home, timeout=5)

    assert sleeper.poll() is None


def test_dev_error_code() -> None:
    assert dev.DevError.code == "DLI-010"
    assert issubclass(dev.DevError, DliError)


# --------------------------------------------------------------------------- readiness signals


class FakeAirflow:
    """The REST API answers readiness asks for, as an ``httpx.MockTransport`` handler.

    ``faults`` maps a path to answers (or exceptions) served, in order, before the real one.
    """

    def __init__(
        self, *, dag_ids: Sequence[str] = (), import_errors: Sequence[dict[str, str]] = (), password: str = "pw"
    ) -> None:
        self.dag_ids = list(dag_ids)
        self.import_errors = list(import_errors)
        self.password = password
        self.health = {key: {"status": "healthy"} for key in ("metadatabase", "scheduler", "dag_processor")}
        self.faults: dict[str, list[httpx.Response | Exception]] = {}
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        path = request.url.path
        if self.faults.get(path):
            fault = self.faults[path].pop(0)
            if isinstance(fault, Exception):
                raise fault
            return fault
        if path == "/auth/token":
            if json.loads(request.content).get("password") != self.password:
                return httpx.Response(401, json={"detail": "Invalid credentials"})
            return httpx.Response(201, json={"access_token": "jwt-1"})
        if path == "/api/v2/monitor/health":
            return httpx.Response(200, json=self.health)
        if request.headers.get("Authorization") != "Bearer jwt-1":
            return httpx.Response(401, json={"detail": "Not authenticated"})
        offset, limit = int(request.url.params.get("offset", 0)), int(request.url.params.get("limit", 50))
        if path == "/api/v2/dags":
            page = [{"dag_id": d} for d in self.dag_ids[offset : offset + limit]]
            return httpx.Response(200, json={"dags": page, "total_entries": len(self.dag_ids)})
        if path == "/api/v2/importErrors":
            page = self.import_errors[offset : offset + limit]
            return httpx.Response(200, json={"import_errors": page, "total_entries": len(self.import_errors)})
        return httpx.Response(404, json={"detail": "Not Found"})

    def paths(self) -> list[str]:
        return [r.url.path for r in self.requests]


def _api(fake: FakeAirflow, password: str = "pw") -> ApiTransport:
    return _ready._transport("http://airflow.test", password, timeout=5.0, transport=httpx.MockTransport(fake))


def test_health_is_read_without_a_token() -> None:
    fake = FakeAirflow()
    fake.health["scheduler"] = {"status": "unhealthy", "latest_scheduler_heartbeat": None}

    with _api(fake) as api:
        health = _ready._health(api)

    assert health == {"metadatabase": "healthy", "scheduler": "unhealthy", "dag_processor": "healthy"}
    assert not _ready._all_healthy(health)
    assert fake.paths() == ["/api/v2/monitor/health"]
    assert "Authorization" not in fake.requests[0].headers


def test_health_lacking_a_component_is_not_healthy() -> None:
    fake = FakeAirflow()
    del fake.health["dag_processor"]

    with _api(fake) as api:
        health = _ready._health(api)

    assert health == {"metadatabase": "healthy", "scheduler": "healthy", "dag_processor": None}
    assert not _ready._all_healthy(health)


@pytest.mark.parametrize(
    "fault",
    [
        httpx.Response(503, text="starting"),
        httpx.Response(200, text="<html>not json</html>"),
        httpx.Response(200, json=["not", "an", "object"]),
        httpx.ConnectError("refused"),
        httpx.ReadTimeout("slow"),
    ],
    ids=["503", "not-json", "not-an-object", "refused", "timeout"],
)
def test_health_is_none_while_the_api_server_is_not_answering(fault: httpx.Response | Exception) -> None:
    fake = FakeAirflow()
    fake.faults["/api/v2/monitor/health"] = [fault]

    with _api(fake) as api:
        assert _ready._health(api) is None
        # retries=1: the poll loop asks again, not the transport.
        assert fake.paths() == ["/api/v2/monitor/health"]
        assert _ready._all_healthy(_ready._health(api))


def test_is_healthy_needs_no_password() -> None:
    fake = FakeAirflow()

    assert _ready._is_healthy("http://airflow.test", timeout=5.0, transport=httpx.MockTransport(fake))
    assert fake.paths() == ["/api/v2/monitor/health"]


def test_dag_ids_are_read_across_pages_after_one_login() -> None:
    fake = FakeAirflow(dag_ids=[f"dag_{i:03d}" for i in range(230)])

    with _api(fake) as api:
        assert _ready._list_dag_ids(api) == set(fake.dag_ids)

    assert fake.paths() == ["/auth/token"] + ["/api/v2/dags"] * 3
    assert [r.url.params["offset"] for r in fake.requests[1:]] == ["0", "100", "200"]
    assert {r.url.params["limit"] for r in fake.requests[1:]} == {"100"}


def test_only_fresh_import_errors_of_the_dag_file_count() -> None:
    since = datetime(2026, 1, 1, 12, 0, tzinfo=timezone.utc)
    errors = [
        {"filename": f"/home/dags/{dev.DAG_FILE_NAME}", "timestamp": "2026-01-01T11:59:59Z", "stack_trace": "old"},
        {"filename": f"/home/dags/{dev.DAG_FILE_NAME}", "timestamp": "2026-01-01T12:00:01Z", "stack_trace": "new"},
        {"filename": dev.DAG_FILE_NAME, "timestamp": "not a time", "stack_trace": "no time"},
        {"filename": "other.py", "timestamp": "2026-01-01T12:00:01Z", "stack_trace": "not ours"},
    ]
    # Past the first page: an error of ours on page two still counts.
    errors = [{"filename": f"f{i}.py", "timestamp": "2026-01-01T12:00:01Z", "stack_trace": "x"} for i in range(100)] + errors
    fake = FakeAirflow(import_errors=errors)

    with _api(fake) as api:
        everything, ours = _ready._fresh_import_errors(api, since)
        _, ours_any_time = _ready._fresh_import_errors(api, None)

    assert everything == errors
    assert [e["stack_trace"] for e in ours] == ["new"]
    assert [e["stack_trace"] for e in ours_any_time] == ["old", "new", "no time"]


def _wait(paths: _home._Paths, fake: FakeAirflow, *, timeout: float = 5.0, **kwargs: object) -> None:
    kwargs.setdefault("expected", None)
    kwargs.setdefault("parsed_since", None)
    _ready._wait_ready(
        paths,
        {},
        url="http://airflow.test",
        password="pw",
        deadline=time.monotonic() + timeout,
        timeout=timeout,
        transport=httpx.MockTransport(fake),
        **kwargs,  # type: ignore[arg-type]
    )


@pytest.fixture
def fast_polls(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_ready, "_POLL_SECONDS", 0.01)


@pytest.mark.usefixtures("fast_polls")
def test_wait_ready_retries_failed_requests_until_the_dags_are_listed(paths: _home._Paths) -> None:
    fake = FakeAirflow(dag_ids=["a", "b"])
    fake.faults["/api/v2/monitor/health"] = [httpx.ConnectError("refused"), httpx.Response(503)]
    fake.faults["/auth/token"] = [httpx.ReadTimeout("slow")]
    fake.faults["/api/v2/importErrors"] = [httpx.Response(500, json={"detail": "database is locked"})]
    fake.faults["/api/v2/dags"] = [httpx.ReadTimeout("locked")]

    _wait(paths, fake, expected={"a", "b"})

    assert fake.paths()[-2:] == ["/api/v2/importErrors", "/api/v2/dags"]
    assert fake.paths().count("/auth/token") == 2  # the timed-out login, then one that stuck


@pytest.mark.usefixtures("fast_polls")
def test_wait_ready_fails_at_once_when_the_login_is_refused(paths: _home._Paths) -> None:
    fake = FakeAirflow(password="another")

    started = time.monotonic()
    with pytest.raises(ServerAuthError, match="refused the login") as info:
        _wait(paths, fake, timeout=30.0, expected={"a"})

    assert time.monotonic() - started < 5
    assert str(paths.passwords) in (info.value.hint or "")


@pytest.mark.usefixtures("fast_polls")
def test_wait_ready_fails_at_once_on_an_import_error_of_the_dag_file(paths: _home._Paths) -> None:
    error = {"filename": str(paths.dag_file), "timestamp": "2026-01-01T12:00:01Z", "stack_trace": "Boom: bad"}
    fake = FakeAirflow(import_errors=[error])

    with pytest.raises(dev.DevError, match="(?s)failed to import; import errors:.*Boom: bad"):
        _wait(paths, fake, timeout=30.0, expected={"a"}, parsed_since=datetime(2026, 1, 1, 12, tzinfo=timezone.utc))

    assert "/api/v2/dags" not in fake.paths()


@pytest.mark.usefixtures("fast_polls")
def test_wait_ready_names_missing_dags_and_the_last_failure_at_the_deadline(paths: _home._Paths) -> None:
    # One listing shows only "a", then every listing fails: the message keeps what the last one showed.
    fake = FakeAirflow()
    fake.faults["/api/v2/dags"] = [httpx.Response(200, json={"dags": [{"dag_id": "a"}], "total_entries": 1})] + [
        httpx.Response(502, text="bad gateway")
    ] * 1000

    with pytest.raises(dev.DevError, match="DAGs missing after 0 s: b; no import errors; last request failed with ServerExecutionError"):
        _wait(paths, fake, timeout=0.3, expected={"a", "b"})


@pytest.mark.usefixtures("fast_polls")
def test_wait_ready_says_when_the_api_server_never_got_healthy(paths: _home._Paths) -> None:
    fake = FakeAirflow()
    fake.health["dag_processor"] = {"status": "unhealthy"}

    with pytest.raises(dev.DevError, match="not healthy within 0 s .*'dag_processor': 'unhealthy'"):
        _wait(paths, fake, timeout=0.2)


def _parse_log(paths: _home._Paths, *stamps: str) -> None:
    folder = paths.logs / "dag_processor" / "2026-01-01" / "dags-folder"
    folder.mkdir(parents=True, exist_ok=True)
    lines = [
        json.dumps({"timestamp": stamp, "event": f"Filling up the DagBag from {paths.dag_file}"}) for stamp in stamps
    ]
    (folder / f"{dev.DAG_FILE_NAME}.log").write_text("\n".join(lines) + "\n")
    # Airflow keeps a `latest` symlink to the day's folder: the same log must not count twice.
    (paths.logs / "dag_processor" / "latest").symlink_to("2026-01-01")


def test_dag_file_counts_as_parsed_once_a_second_parse_started(paths: _home._Paths) -> None:
    since = datetime(2026, 1, 1, 12, 0, tzinfo=timezone.utc)
    _parse_log(paths, "2026-01-01T11:00:00Z", "2026-01-01T12:00:01Z", "2026-01-01T12:00:06Z")

    assert _ready._dag_file_parsed_since(paths, since, None)


def test_dag_file_parse_before_since_or_in_flight_does_not_count(paths: _home._Paths) -> None:
    since = datetime(2026, 1, 1, 12, 0, tzinfo=timezone.utc)
    # One parse of an earlier run and one that started since: without the dag-processor to ask, not yet.
    _parse_log(paths, "2026-01-01T11:00:00Z", "2026-01-01T12:00:01Z")

    assert not _ready._dag_file_parsed_since(paths, since, None)


def test_the_default_store_is_a_scratch_copy_that_keeps_registrations(tmp_path):
    """`dli dev up` and `./run demo` serve a copy of examples/store: the walkthrough never dirties the checkout;
    code/ follows the checkout (as a publish would), manual/ keeps what was registered."""
    from dli_airflow.dev import scratch_store

    examples = Path(__file__).resolve().parents[2] / "examples" / "store"
    home = tmp_path / "home"
    store = scratch_store(examples, home)
    assert store == home / "store" and (store / "code/analytics/daily_clicks.yaml").is_file()
    (store / "manual/mine.yaml").write_text("name: my.own\nowner: me@example.com\nquery: SELECT 1\n")
    (store / "code/stale.yaml").write_text("name: gone.from.git\nowner: me@example.com\nquery: SELECT 1\n")
    again = scratch_store(examples, home)
    assert (again / "manual/mine.yaml").is_file() and not (again / "code/stale.yaml").exists()
    assert sorted(p.name for p in (examples / "manual").rglob("*.yaml")) == ["ad_hoc_summary.yaml", "user_metrics.yaml"]
