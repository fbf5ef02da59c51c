"""``dli dev up/down/status``: a real local Airflow 3 (api-server, scheduler, dag-processor, triggerer).

Airflow is only ever launched as subprocesses (``python -m airflow ...`` with this interpreter),
so importing this package never imports Airflow. Everything lives under one *home* folder::

    <home>/airflow.db        SQLite metadata database (LocalExecutor, PARALLELISM=4)
    <home>/dags/             dags folder; ``up`` writes ``dli_datasets.py`` (the packaged
                             ``dli_airflow/dag_files/dli_datasets.py``, see :func:`dag_file_source`)
    <home>/logs/<name>.log   output of each process
    <home>/run/<name>.pid    JSON: pid, process start time and the run id of each process
    <home>/dev.json          port, store, JWT secret and API secret key (0600, reused by every ``up``)
    <home>/passwords.json    SimpleAuthManager password of ``admin`` (0600, reused by every ``up``)

A recorded pid is only trusted when ``/proc/<pid>/stat`` still shows the start time recorded at
launch, so a pid the kernel has recycled for somebody else's process is never signalled.

The parts: :mod:`._home` (paths, secrets files, the DAG file, the port, the Airflow environment),
:mod:`._process` (supervision: /proc, pid records, launch, stop, logs, the lock) and :mod:`._ready`
(health, token, DAG list and import errors through :class:`~dli_airflow._api.ApiTransport`).
"""

from __future__ import annotations

import contextlib
import logging
import subprocess
import sys
import time
import uuid
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from dli_airflow.dev._home import (
    DAG_FILE_NAME,
    HOST,
    USERNAME,
    _airflow_env,
    _choose_port,
    _ensure_password,
    _load_state,
    _normalise_store,
    _Paths,
    _read_password,
    _resolve_home,
    _save_state,
    _write_dag_file,
    dag_file_source,
    free_port,
    scratch_store,
)
from dli_airflow.dev._process import (
    _KILL_WAIT_SECONDS,
    _STOP_GRACE_SECONDS,
    PROCESS_NAMES,
    _is_ours,
    _launch,
    _locked,
    _open_log,
    _ProcessRecord,
    _read_records,
    _stop,
    _stop_one,
    _tail,
    log_tails,
)
from dli_airflow.dev._ready import _is_healthy, _wait_ready, get_token
from dli_airflow.errors import DevError

log = logging.getLogger(__name__)

__all__ = [
    "DAG_FILE_NAME",
    "DAG_FILE_SOURCE",
    "PROCESS_NAMES",
    "USERNAME",
    "DevError",
    "DevStatus",
    "ProcessStatus",
    "dag_file_source",
    "down",
    "expected_dag_ids",
    "free_port",
    "get_token",
    "log_tails",
    "restart_api_server",
    "scratch_store",
    "status",
    "up",
]


def __getattr__(name: str) -> Any:
    # DAG_FILE_SOURCE was a constant holding a copy of the DAG file; it now reads the packaged file,
    # lazily, so importing this package reads nothing.
    if name == "DAG_FILE_SOURCE":
        return dag_file_source()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class ProcessStatus:
    """One recorded Airflow process: its pid (None when none is recorded) and whether it still runs."""

    pid: int | None
    alive: bool


@dataclass(frozen=True)
class DevStatus:
    """What runs under one dev home, and how to log in to it."""

    home: Path
    url: str | None
    port: int | None
    store: str | None
    processes: Mapping[str, ProcessStatus]
    healthy: bool
    username: str = USERNAME
    # Shown by the CLI on purpose (a local dev login), but kept out of reprs and tracebacks.
    password: str | None = field(default=None, repr=False)

    @property
    def running(self) -> bool:
        """True when every process is alive."""
        return bool(self.processes) and all(p.alive for p in self.processes.values())

    @property
    def state(self) -> Literal["running", "partial", "stopped"]:
        """``running``, ``stopped`` or ``partial`` (some processes died: run ``down`` then ``up``)."""
        alive = [p.alive for p in self.processes.values()]
        if alive and all(alive):
            return "running"
        return "partial" if any(alive) else "stopped"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (``dli dev status --format json``)."""
        return {
            "state": self.state,
            "healthy": self.healthy,
            "url": self.url,
            "port": self.port,
            "home": str(self.home),
            "store": self.store,
            "username": self.username,
            "password": self.password,
            "processes": {name: {"pid": p.pid, "alive": p.alive} for name, p in self.processes.items()},
        }


# --------------------------------------------------------------------------- public API


def expected_dag_ids(store: str) -> list[str] | None:
    """The DAG ids the active specs of ``store`` should produce, or None if ``dli_airflow.catalog`` is unavailable.

    :param store: a local folder or ``s3://bucket/prefix``
    """
    try:
        from dli_airflow.catalog import open_store, scan
    except ImportError:
        return None
    return [entry.name for entry in scan(open_store(store)).active]


def status(home: Path | str) -> DevStatus:
    """What runs under ``home``: processes (pid and liveness), URL, login and health.

    :param home: the dev home given to :func:`up`
    """
    return _status(_Paths(_resolve_home(home)))


def _status(paths: _Paths, *, known_healthy: bool = False) -> DevStatus:
    state = _load_state(paths)
    records = _read_records(paths)
    processes = {
        name: ProcessStatus(pid=record.pid, alive=_is_ours(record))
        if (record := records.get(name))
        else ProcessStatus(pid=None, alive=False)
        for name in PROCESS_NAMES
    }
    url = f"http://{HOST}:{state.port}" if state else None
    healthy = known_healthy and all(p.alive for p in processes.values())
    if url and not healthy and all(p.alive for p in processes.values()):
        # Generous: on SQLite the api-server stalls for up to ~5 s while a task takes the write lock.
        healthy = _is_healthy(url, timeout=10.0)
    return DevStatus(
        home=paths.home,
        url=url,
        port=state.port if state else None,
        store=state.store if state else None,
        processes=processes,
        healthy=healthy,
        password=_read_password(paths),
    )


def up(
    *,
    store: str,
    home: Path,
    port: int | None = None,
    timeout: float = 120,
    expected_dag_ids: Collection[str] | None = None,
    extra_env: Mapping[str, str] | None = None,
) -> DevStatus:
    """Start a real local Airflow 3 under ``home`` and wait until it is ready; harmless if it already runs.

    Either returns a healthy stack, or raises :class:`DevError` after stopping whatever this call started.

    :param store: the spec store (a local folder, made absolute, or ``s3://bucket/prefix``)
    :param home: the folder holding database, dags, logs, pid files and secrets
    :param port: api-server port; None reuses the saved one, else 8080, else any free port
    :param timeout: seconds to wait, from the start of the call, for health and DAGs
    :param expected_dag_ids: wait until these DAGs are listed; None (or empty) waits for one parse of the DAG file
    :param extra_env: more environment for every process (wins over the settings above)
    :returns: the status of the running stack
    """
    deadline = time.monotonic() + timeout
    paths = _Paths(_resolve_home(home))
    store = _normalise_store(store)
    paths.home.mkdir(parents=True, exist_ok=True)
    with _locked(paths, timeout):
        records = _read_records(paths)
        alive = {name: _is_ours(record) for name, record in records.items()}
        state = _load_state(paths)
        if any(alive.values()):
            running_store = state.store if state else None
            if running_store != store:
                raise DevError(
                    f"Airflow under {paths.home} already runs with store {running_store}, not {store}; "
                    f"run `dli dev down --home {paths.home}` first"
                )
            if state is not None and port is not None and port != state.port:
                raise DevError(
                    f"Airflow under {paths.home} already runs on port {state.port}, not {port}; "
                    f"run `dli dev down --home {paths.home}` first"
                )
        if state is not None and len(alive) == len(PROCESS_NAMES) and all(alive.values()):
            # Already up: start nothing; only make sure the DAG file is current and the stack ready.
            changed_at = datetime.now(timezone.utc) if _write_dag_file(paths) else None
            _wait_ready(
                paths,
                records,
                url=f"http://{HOST}:{state.port}",
                password=_ensure_password(paths),
                deadline=deadline,
                timeout=timeout,
                expected=expected_dag_ids,
                parsed_since=changed_at,
            )
            return _status(paths, known_healthy=True)
        if any(alive.values()):
            # Half a stack (one process died): restart all three rather than guess.
            _stop(paths, records)
        return _cold_start(
            paths,
            store=store,
            port=port,
            saved_port=state.port if state else None,
            deadline=deadline,
            timeout=timeout,
            expected=expected_dag_ids,
            extra_env=extra_env,
        )


def _cold_start(
    paths: _Paths,
    *,
    store: str,
    port: int | None,
    saved_port: int | None,
    deadline: float,
    timeout: float,
    expected: Collection[str] | None,
    extra_env: Mapping[str, str] | None,
) -> DevStatus:
    chosen = _choose_port(port, saved_port)
    state = _save_state(paths, port=chosen, store=store)
    password = _ensure_password(paths)
    _write_dag_file(paths)
    run_id = uuid.uuid4().hex
    env = _airflow_env(paths, state, store, extra_env, run_id)

    try:
        with _open_log(paths, "db-migrate") as migrate_log:
            result = subprocess.run(
                [sys.executable, "-m", "airflow", "db", "migrate"],
                stdin=subprocess.DEVNULL,
                stdout=migrate_log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=paths.home,
                timeout=max(1.0, deadline - time.monotonic()),
                check=False,
            )
    except subprocess.TimeoutExpired as exc:
        raise DevError(f"`airflow db migrate` took longer than {timeout:.0f} s; pass a longer --timeout") from exc
    log.debug("db migrate done after %.1f s", timeout - (deadline - time.monotonic()))
    if result.returncode != 0:
        raise DevError(
            f"`airflow db migrate` failed with code {result.returncode}; last lines of {paths.log('db-migrate')}:\n"
            f"{_tail(paths.log('db-migrate'))}"
        )

    records: dict[str, _ProcessRecord] = {}
    launched_at = datetime.now(timezone.utc)
    try:
        for name, args in (
            ("api-server", ["api-server", "--host", HOST, "--port", str(chosen)]),
            # Without --skip-serve-logs it opens a log server on 0.0.0.0:8793; the api-server reads local logs.
            ("scheduler", ["scheduler", "--skip-serve-logs"]),
            ("dag-processor", ["dag-processor"]),
            # no dli task defers, but Airflow's health (and the UI's badge) counts a triggerer as part of a stack
            ("triggerer", ["triggerer", "--skip-serve-logs"]),
        ):
            records[name] = _launch(paths, name, args, env, run_id)
        _wait_ready(
            paths,
            records,
            url=f"http://{HOST}:{chosen}",
            password=password,
            deadline=deadline,
            timeout=timeout,
            expected=expected,
            parsed_since=launched_at,
        )
    except BaseException:
        # Leave nothing half-started behind: a failed or interrupted `up` stops what it launched.
        with contextlib.suppress(DevError):
            _stop(paths, records)
        raise
    return _status(paths, known_healthy=True)


def restart_api_server(home: Path | str, *, timeout: float = 120) -> DevStatus:
    """Restart only the api-server of a running stack (the scheduler and dag-processor keep running), with the
    settings ``up`` gave it, and wait until it is healthy again — what a deploy or a crash of the api-server does.

    :raises DevError: no stack runs under ``home``
    """
    deadline = time.monotonic() + timeout
    paths = _Paths(_resolve_home(home))
    with _locked(paths, timeout):
        records = _read_records(paths)
        state = _load_state(paths)
        record = records.get("api-server")
        if state is None or state.store is None or record is None or not _is_ours(record):
            raise DevError(f"no api-server runs under {paths.home}; start the stack with `dli dev up`")
        _stop_one(paths, record)
        env = _airflow_env(paths, state, state.store, None, record.run_id)
        records["api-server"] = _launch(
            paths, "api-server", ["api-server", "--host", HOST, "--port", str(state.port)], env, record.run_id
        )
        _wait_ready(paths, records, url=f"http://{HOST}:{state.port}", password=_ensure_password(paths),
                    deadline=deadline, timeout=timeout, expected=None, parsed_since=None)
    return _status(paths, known_healthy=True)


def down(home: Path | str) -> None:
    """Stop every process ``up`` started under ``home`` and remove the pid files.

    Scheduler and dag-processor first, then the api-server: SIGTERM, then SIGKILL after 15 s (see
    ``_stop``). A pid whose start time differs from the recorded one belongs to somebody else and is
    never signalled. Harmless when nothing runs.

    :param home: the dev home given to :func:`up`
    """
    paths = _Paths(_resolve_home(home))
    if not paths.run.is_dir():
        return
    with _locked(paths, _STOP_GRACE_SECONDS + _KILL_WAIT_SECONDS):
        _stop(paths, _read_records(paths))
