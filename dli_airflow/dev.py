"""``dli dev up/down/status``: a real local Airflow 3 (api-server, scheduler, dag-processor).

Airflow is only ever launched as subprocesses (``python -m airflow ...`` with this interpreter),
so importing this module never imports Airflow. Everything lives under one *home* folder::

    <home>/airflow.db        SQLite metadata database (LocalExecutor, PARALLELISM=4)
    <home>/dags/             dags folder; ``up`` writes ``dli_datasets.py`` (``DAG_FILE_SOURCE``)
    <home>/logs/<name>.log   output of each process
    <home>/run/<name>.pid    JSON: pid, process start time and the run id of each process
    <home>/dev.json          port, store, JWT secret and API secret key (0600, reused by every ``up``)
    <home>/passwords.json    SimpleAuthManager password of ``admin`` (0600, reused by every ``up``)

A recorded pid is only trusted when ``/proc/<pid>/stat`` still shows the start time recorded at
launch, so a pid the kernel has recycled for somebody else's process is never signalled.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any, Literal

import httpx

from dli_airflow.errors import DevError, DliError, ServerAuthError, ServerUnreachableError, StoreNotFoundError

log = logging.getLogger(__name__)

__all__ = [
    "DAG_FILE_NAME",
    "DAG_FILE_SOURCE",
    "PROCESS_NAMES",
    "USERNAME",
    "DevError",
    "DevStatus",
    "ProcessStatus",
    "down",
    "expected_dag_ids",
    "free_port",
    "get_token",
    "log_tails",
    "status",
    "up",
]

DAG_FILE_SOURCE = '''"""Airflow DAG file: one DAG per active dli Dataset Spec (see dli_airflow.factory)."""
from dli_airflow.factory import build_dags

globals().update(build_dags())
'''

DAG_FILE_NAME = "dli_datasets.py"
USERNAME = "admin"
DEFAULT_PORT = 8080
HOST = "127.0.0.1"
PROCESS_NAMES: tuple[str, ...] = ("api-server", "scheduler", "dag-processor")

# Marks every process of one ``up`` in its environment (children inherit it): a fallback for
# ``down`` to find descendants that left both the process group and the process tree.
RUN_ID_ENV = "DLI_DEV_RUN_ID"

_STOP_GRACE_SECONDS = 15.0
# Of the grace, how long the leaders alone get before their whole groups get SIGTERM too.
_LEADER_GRACE_SECONDS = 10.0
_KILL_WAIT_SECONDS = 5.0
_POLL_SECONDS = 0.5
_LOG_TAIL_LINES = 40
_LOG_ROTATE_BYTES = 10 * 1024 * 1024
# The line the dag-processor's child writes to the per-file log when it starts parsing a file.
_PARSE_START_EVENT = "Filling up the DagBag from "


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


# --------------------------------------------------------------------------- files under home


@dataclass(frozen=True)
class _Paths:
    home: Path

    @property
    def dev_json(self) -> Path:
        return self.home / "dev.json"

    @property
    def passwords(self) -> Path:
        return self.home / "passwords.json"

    @property
    def dags(self) -> Path:
        return self.home / "dags"

    @property
    def dag_file(self) -> Path:
        return self.dags / DAG_FILE_NAME

    @property
    def logs(self) -> Path:
        return self.home / "logs"

    @property
    def run(self) -> Path:
        return self.home / "run"

    @property
    def db(self) -> Path:
        return self.home / "airflow.db"

    def log(self, name: str) -> Path:
        return self.logs / f"{name}.log"

    def pid(self, name: str) -> Path:
        return self.run / f"{name}.pid"


@dataclass(frozen=True)
class _DevState:
    """The contents of ``dev.json``; the secrets never appear in a repr."""

    port: int
    store: str | None
    jwt_secret: str = field(repr=False)
    secret_key: str = field(repr=False)

    def to_json(self) -> str:
        data = {"port": self.port, "store": self.store, "jwt_secret": self.jwt_secret, "secret_key": self.secret_key}
        return json.dumps(data, indent=2) + "\n"


@dataclass(frozen=True)
class _ProcessRecord:
    """One pid file: enough to recognise the very process ``up`` started."""

    name: str
    pid: int
    start_ticks: int
    run_id: str


def _resolve_home(home: Path | str) -> Path:
    return Path(home).expanduser().resolve()


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` atomically to a file only the owner can read (it holds secrets)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        # The mode given to open() is filtered by the umask and ignored for an existing file.
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    os.replace(tmp, path)


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise DevError(f"{path} is not readable JSON ({exc}); delete it and run `dli dev up` again") from exc
    if not isinstance(data, dict):
        raise DevError(f"{path} must hold a JSON object; delete it and run `dli dev up` again")
    return data


def _load_state(paths: _Paths) -> _DevState | None:
    data = _read_json(paths.dev_json)
    if data is None:
        return None
    try:
        return _DevState(
            port=int(data["port"]),
            store=data.get("store"),
            jwt_secret=str(data["jwt_secret"]),
            secret_key=str(data["secret_key"]),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise DevError(f"{paths.dev_json} lacks port or secrets; delete it and run `dli dev up` again") from exc


def _save_state(paths: _Paths, *, port: int, store: str | None) -> _DevState:
    """Record port and store in ``dev.json``, generating the secrets the first time only.

    Reusing the secrets keeps tokens issued before a restart valid and every process agreeing on them.
    """
    previous = _load_state(paths)
    jwt_secret = previous.jwt_secret if previous and len(previous.jwt_secret) >= 64 else secrets.token_urlsafe(64)
    secret_key = previous.secret_key if previous and previous.secret_key else secrets.token_urlsafe(32)
    state = _DevState(port=port, store=store, jwt_secret=jwt_secret, secret_key=secret_key)
    _write_private(paths.dev_json, state.to_json())
    return state


def _read_password(paths: _Paths) -> str | None:
    data = _read_json(paths.passwords)
    value = data.get(USERNAME) if data else None
    return value if isinstance(value, str) and value else None


def _ensure_password(paths: _Paths) -> str:
    """The admin password, generated on the first ``up`` and kept afterwards.

    Written before launch: SimpleAuthManager only generates (and prints) its own password when the
    file lacks the user, and it keeps other users' entries, so we do too.
    """
    data = _read_json(paths.passwords) or {}
    password = data.get(USERNAME)
    if not isinstance(password, str) or not password:
        password = secrets.token_urlsafe(12)
        data[USERNAME] = password
    _write_private(paths.passwords, json.dumps(data) + "\n")
    return password


def _write_dag_file(paths: _Paths) -> bool:
    """Write ``DAG_FILE_SOURCE`` to the dags folder; True when the file changed."""
    paths.dags.mkdir(parents=True, exist_ok=True)
    try:
        if paths.dag_file.read_text(encoding="utf-8") == DAG_FILE_SOURCE:
            return False
    except FileNotFoundError:
        pass
    tmp = paths.dag_file.with_name(f".{DAG_FILE_NAME}.tmp")
    tmp.write_text(DAG_FILE_SOURCE, encoding="utf-8")
    # Atomic, so the dag-processor never parses half a file.
    os.replace(tmp, paths.dag_file)
    return True


def _normalise_store(store: str) -> str:
    """An absolute path for a local store (the processes run in another cwd); URLs unchanged."""
    if "://" in store:
        return store
    path = Path(store).expanduser().resolve()
    if not path.is_dir():
        raise StoreNotFoundError(f"spec store {path} does not exist or is not a folder")
    return str(path)


@contextlib.contextmanager
def _locked(paths: _Paths, timeout: float) -> Iterator[None]:
    """Serialise ``up`` and ``down`` on one home, so two of them never launch two stacks."""
    paths.run.mkdir(parents=True, exist_ok=True)
    with open(paths.run / ".lock", "a+") as fh:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise DevError(
                        f"another `dli dev up` or `dli dev down` is running on {paths.home}; wait for it to finish"
                    ) from None
                time.sleep(0.2)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


# --------------------------------------------------------------------------- ports


def _port_is_free(port: int) -> bool:
    """True when ``127.0.0.1:port`` can be bound, as uvicorn will (SO_REUSEADDR, so TIME_WAIT is fine)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now (the kernel's choice)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _choose_port(requested: int | None, saved: int | None) -> int:
    """The port to start on: the requested one (must be free), else the saved one, 8080, or any free port."""
    if requested is not None:
        if not 0 < requested < 65536:
            raise DevError(f"port {requested} is out of range: pass --port between 1 and 65535")
        if not _port_is_free(requested):
            raise DevError(f"port {requested} is in use: pass --port with another port, or omit --port to pick one")
        return requested
    for candidate in (saved, DEFAULT_PORT):
        if candidate is not None and _port_is_free(candidate):
            return candidate
    return free_port()


# --------------------------------------------------------------------------- processes


@dataclass(frozen=True)
class _ProcInfo:
    """The fields of ``/proc/<pid>/stat`` we use."""

    state: str
    ppid: int
    pgrp: int
    session: int
    start_ticks: int

    @property
    def exited(self) -> bool:
        # A zombie has exited; it only waits for its parent to reap it.
        return self.state in ("Z", "X")


def _proc_stat(pid: int) -> _ProcInfo | None:
    """What /proc says about ``pid``, or None if there is no such process."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_bytes().decode("utf-8", "replace")
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    fields = raw[raw.rindex(")") + 2 :].split()
    # fields[0] is field 3 of proc(5): state, ppid, pgrp, session; starttime is field 22.
    return _ProcInfo(
        state=fields[0], ppid=int(fields[1]), pgrp=int(fields[2]), session=int(fields[3]), start_ticks=int(fields[19])
    )


def _proc_table() -> dict[int, _ProcInfo]:
    table = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (info := _proc_stat(int(entry))) is not None:
            table[int(entry)] = info
    return table


def _start_ticks(pid: int) -> int | None:
    info = _proc_stat(pid)
    return info.start_ticks if info else None


def _is_running(pid: int, start_ticks: int | None = None) -> bool:
    """True when ``pid`` runs (and, given ``start_ticks``, is still the process that started then)."""
    info = _proc_stat(pid)
    return info is not None and not info.exited and (start_ticks is None or info.start_ticks == start_ticks)


def _is_ours(record: _ProcessRecord) -> bool:
    """True when the recorded pid still is the process we launched (same start time, not exited)."""
    return _is_running(record.pid, record.start_ticks)


def _tagged_pids(run_id: str, table: Mapping[int, _ProcInfo]) -> set[int]:
    """Processes whose environment still shows ``DLI_DEV_RUN_ID=<run_id>``.

    Only a fallback: a process that renames itself with setproctitle (the api-server, LocalExecutor
    workers) blanks its /proc environ, so the process tree is the main way to find ours.
    """
    marker = f"{RUN_ID_ENV}={run_id}".encode()
    found = set()
    for pid in table:
        if pid == os.getpid():
            continue
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes()
        except OSError:
            continue
        if marker in environ.split(b"\0"):
            found.add(pid)
    return found


def _read_record(paths: _Paths, name: str) -> _ProcessRecord | None:
    try:
        data = json.loads(paths.pid(name).read_text(encoding="utf-8"))
        return _ProcessRecord(
            name=name, pid=int(data["pid"]), start_ticks=int(data["start_ticks"]), run_id=str(data["run_id"])
        )
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError):
        # A damaged pid file identifies nothing we could safely signal.
        return None


def _read_records(paths: _Paths) -> dict[str, _ProcessRecord]:
    records = {}
    for name in PROCESS_NAMES:
        record = _read_record(paths, name)
        if record is not None:
            records[name] = record
    return records


def _write_record(paths: _Paths, record: _ProcessRecord) -> None:
    paths.run.mkdir(parents=True, exist_ok=True)
    data = {"pid": record.pid, "start_ticks": record.start_ticks, "run_id": record.run_id}
    paths.pid(record.name).write_text(json.dumps(data) + "\n", encoding="utf-8")


# Popen objects of the processes this Python process launched: kept so they are reaped (no zombies
# when ``up`` and ``down`` run in one process, as in the test fixtures) and never garbage-collected early.
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


def _reap_children() -> None:
    for pid, proc in list(_CHILDREN.items()):
        if proc.poll() is not None:
            del _CHILDREN[pid]


def _owned_pids(records: Mapping[str, _ProcessRecord], *, tagged: bool = True) -> dict[int, int]:
    """Every live process of the recorded stack, as pid -> start ticks.

    That is the recorded leaders' groups and sessions, all their descendants (also those that called
    setsid), and, with ``tagged``, processes carrying the run id. A group whose leader is gone still
    counts: the kernel never reuses a pid while a group or session of that id exists. A leader pid
    that now shows another start time was recycled, and its group is left alone.
    """
    _reap_children()
    table = _proc_table()
    owned: set[int] = set()
    for record in records.values():
        leader = table.get(record.pid)
        if leader is not None and leader.start_ticks != record.start_ticks:
            continue
        owned.update(pid for pid, info in table.items() if record.pid in (info.pgrp, info.session))
    if tagged:
        for run_id in {record.run_id for record in records.values()}:
            owned |= _tagged_pids(run_id, table)
    # Descendants that left the group: follow parent links until nothing new turns up.
    grew = True
    while grew:
        children = {pid for pid, info in table.items() if info.ppid in owned} - owned
        owned |= children
        grew = bool(children)
    return {pid: table[pid].start_ticks for pid in owned if not table[pid].exited and pid != os.getpid()}


def _signal(records: Mapping[str, _ProcessRecord], pids: Mapping[int, int], sig: signal.Signals) -> None:
    for record in records.values():
        if _is_ours(record):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(record.pid, sig)
    for pid, ticks in pids.items():
        # Checked again right before the signal: a pid seen earlier may have been recycled since.
        if _is_running(pid, ticks):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)


def _wait_gone(
    records: Mapping[str, _ProcessRecord], seen: dict[int, int], seconds: float, *, tagged: bool
) -> dict[int, int]:
    """Wait until no process of ``seen`` (updated with newly found ones) runs; return those still running."""
    deadline = time.monotonic() + seconds
    while True:
        seen.update(_owned_pids(records, tagged=tagged))
        left = {pid: ticks for pid, ticks in seen.items() if _is_running(pid, ticks)}
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.2)


# The api-server stops last: running tasks report their end (even a SIGTERM) through its Execution
# API, and without it they retry for many seconds, holding the scheduler's shutdown until SIGKILL.
_STOP_PHASES: tuple[tuple[str, ...], ...] = (("scheduler", "dag-processor"), ("api-server",))


def _leaders_and_tasks(records: Mapping[str, _ProcessRecord]) -> dict[int, int]:
    """The recorded leaders, and their descendants two or more levels down (pid -> start ticks).

    Under the scheduler, level one is the LocalExecutor workers and level two the task processes
    each worker forks; the dag-processor's parse processes are level one.
    """
    table = _proc_table()
    children: dict[int, list[int]] = {}
    for pid, info in table.items():
        children.setdefault(info.ppid, []).append(pid)
    chosen: dict[int, int] = {}
    for record in records.values():
        if not _is_ours(record):
            continue
        chosen[record.pid] = record.start_ticks
        level, depth = [record.pid], 0
        while level:
            level, depth = [child for pid in level for child in children.get(pid, [])], depth + 1
            if depth >= 2:
                chosen.update({pid: table[pid].start_ticks for pid in level})
    return chosen


def _stop(paths: _Paths, records: Mapping[str, _ProcessRecord]) -> None:
    """Stop the recorded processes: scheduler and dag-processor first, then the api-server.

    In each phase the leaders and the running tasks get SIGTERM first, their whole groups only after
    10 s, SIGKILL after 15 s. Why not SIGTERM the whole group at once: LocalExecutor workers then die
    inside ``queue.get()`` holding the queue's lock, and the scheduler, which on SIGTERM sends each
    worker a stop message through that queue, hangs until SIGKILL (seen in 1 ``down`` of 2). Why the
    tasks too: the scheduler alone waits for running tasks to finish, however long they take.
    """
    for index, names in enumerate(_STOP_PHASES):
        last = index == len(_STOP_PHASES) - 1
        # The last phase takes everything still recorded or tagged, whatever its name.
        scope = dict(records) if last else {n: records[n] for n in names if n in records}
        # Remembered across polls: an orphan re-parented to init is no longer anyone's descendant.
        seen = _owned_pids(scope, tagged=last)
        if not seen:
            continue
        _signal({}, _leaders_and_tasks(scope), signal.SIGTERM)
        left = _wait_gone(scope, seen, _LEADER_GRACE_SECONDS, tagged=last)
        if left:
            _signal(scope, left, signal.SIGTERM)
            left = _wait_gone(scope, seen, _STOP_GRACE_SECONDS - _LEADER_GRACE_SECONDS, tagged=last)
        if left:
            _signal(scope, left, signal.SIGKILL)
            left = _wait_gone(scope, seen, _KILL_WAIT_SECONDS, tagged=last)
            if left:
                pids = ",".join(map(str, sorted(left)))
                raise DevError(
                    f"processes {pids} of {paths.home} survived SIGKILL; "
                    f"inspect them with `ps -o pid,stat,cmd -p {pids}`"
                )
    for name in PROCESS_NAMES:
        with contextlib.suppress(FileNotFoundError):
            paths.pid(name).unlink()


@contextlib.contextmanager
def _open_log(paths: _Paths, name: str) -> Iterator[IO[bytes]]:
    paths.logs.mkdir(parents=True, exist_ok=True)
    log = paths.log(name)
    # Append, so the log of a crash survives the next `up`; rotate once so it cannot grow forever.
    with contextlib.suppress(FileNotFoundError):
        if log.stat().st_size > _LOG_ROTATE_BYTES:
            os.replace(log, log.with_suffix(".log.1"))
    with open(log, "ab") as fh:
        fh.write(f"\n===== dli dev: {name} starting at {datetime.now(timezone.utc).isoformat()} =====\n".encode())
        fh.flush()
        yield fh


def _launch(paths: _Paths, name: str, args: list[str], env: Mapping[str, str], run_id: str) -> _ProcessRecord:
    with _open_log(paths, name) as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "airflow", *args],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=dict(env),
            cwd=paths.home,
            # Its own session and process group: a Ctrl-C in the terminal does not reach it, and
            # `down` can signal it together with the workers it forks.
            start_new_session=True,
            close_fds=True,
        )
    _CHILDREN[proc.pid] = proc
    ticks = _start_ticks(proc.pid)
    if ticks is None:
        returncode = proc.wait()
        raise DevError(f"{name} exited at once with code {returncode}; see {paths.log(name)}\n{_tail(paths.log(name))}")
    record = _ProcessRecord(name=name, pid=proc.pid, start_ticks=ticks, run_id=run_id)
    _write_record(paths, record)
    return record


def _tail(path: Path, lines: int = _LOG_TAIL_LINES) -> str:
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 64 * 1024))
            text = fh.read().decode("utf-8", "replace")
    except OSError:
        return f"(no log at {path})"
    return "\n".join(text.splitlines()[-lines:])


def log_tails(home: Path | str, lines: int = _LOG_TAIL_LINES) -> str:
    """The last ``lines`` of every log under ``<home>/logs``, the dag-processor's per-file log of the DAG file included.

    :param home: the dev home given to :func:`up`
    :param lines: lines per log
    """
    logs = _Paths(_resolve_home(home)).logs
    files = sorted(logs.glob("*.log"))
    files += sorted({p.resolve() for p in logs.glob(f"dag_processor/*/*/{DAG_FILE_NAME}.log")})
    parts = [f"----- {log} -----\n{_tail(log, lines)}" for log in files]
    return "\n".join(parts) or f"(no logs under {logs})"


def _airflow_env(
    paths: _Paths, state: _DevState, store: str, extra_env: Mapping[str, str] | None, run_id: str
) -> dict[str, str]:
    """The environment of every process: the caller's, our settings, then ``extra_env``."""
    url = f"http://{HOST}:{state.port}"
    # AIRFLOW_CONFIG would make Airflow read another home's airflow.cfg.
    env = {key: value for key, value in os.environ.items() if key != "AIRFLOW_CONFIG"}
    env.update(
        {
            "AIRFLOW_HOME": str(paths.home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(paths.dags),
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            # LocalExecutor forks this many workers up front; the default 32 wastes memory.
            "AIRFLOW__CORE__PARALLELISM": "4",
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{paths.db}",
            "AIRFLOW__CORE__AUTH_MANAGER": (
                "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
            ),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{USERNAME}:admin",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(paths.passwords),
            "AIRFLOW__API__HOST": HOST,
            "AIRFLOW__API__PORT": str(state.port),
            # Without it task workers call the Execution API on localhost:8080.
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{url}/execution/",
            "AIRFLOW__API_AUTH__JWT_SECRET": state.jwt_secret,
            "AIRFLOW__API__SECRET_KEY": state.secret_key,
            # New and changed specs show up within seconds instead of the 300 s / 30 s defaults.
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "5",
            "AIRFLOW__DLI__SPEC_STORE": store,
            "AIRFLOW__DLI__DUCKDB_PATH": str(paths.home / "dli.duckdb"),
            # dli_sync applies schedule.enabled changes through the REST API with this connection.
            "AIRFLOW_CONN_DLI_AIRFLOW_API": json.dumps(
                {"conn_type": "http", "host": url, "login": USERNAME, "password": _read_password(paths) or ""}
            ),
            # Log tails must be current when a process dies.
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(extra_env or {})
    env[RUN_ID_ENV] = run_id
    return env


# --------------------------------------------------------------------------- HTTP


def get_token(url: str, username: str, password: str, *, timeout: float = 10.0) -> str:
    """A JWT for the REST API from ``POST /auth/token``.

    :param url: base URL of the api-server, e.g. ``http://127.0.0.1:8080``
    :param username: SimpleAuthManager user
    :param password: its password
    :param timeout: seconds for the request
    :returns: the access token, to send as ``Authorization: Bearer <token>``
    """
    try:
        response = httpx.post(
            f"{url.rstrip('/')}/auth/token", json={"username": username, "password": password}, timeout=timeout
        )
    except httpx.HTTPError as exc:
        raise ServerUnreachableError(
            f"cannot reach {url} for a token ({type(exc).__name__}); is it running? try `dli dev status`"
        ) from exc
    if response.status_code in (401, 403):
        raise ServerAuthError(f"{url} refused user {username!r}: wrong password (see passwords.json of the dev home)")
    if response.status_code not in (200, 201):
        raise DevError(f"{url}/auth/token answered {response.status_code}: {response.text[:300]}")
    token = response.json().get("access_token")
    if not isinstance(token, str) or not token:
        raise DevError(f"{url}/auth/token answered without an access_token")
    return token


def _health(client: httpx.Client) -> dict[str, str | None] | None:
    """Statuses of metadatabase, scheduler and dag_processor, or None while the api-server is not answering."""
    try:
        response = client.get("/api/v2/monitor/health")
    except httpx.HTTPError:
        return None
    if response.status_code != 200:
        return None
    data = response.json()
    return {key: (data.get(key) or {}).get("status") for key in ("metadatabase", "scheduler", "dag_processor")}


def _all_healthy(health: Mapping[str, str | None] | None) -> bool:
    return health is not None and all(value == "healthy" for value in health.values())


def _list_dag_ids(client: httpx.Client) -> set[str]:
    dag_ids: set[str] = set()
    offset = 0
    while True:
        # 100 is the api-server's default maximum_page_limit.
        response = client.get("/api/v2/dags", params={"limit": 100, "offset": offset})
        response.raise_for_status()
        page = response.json()
        dags = page.get("dags") or []
        dag_ids.update(dag["dag_id"] for dag in dags)
        offset += len(dags)
        if not dags or offset >= int(page.get("total_entries") or 0):
            return dag_ids


def _import_errors(client: httpx.Client) -> list[dict[str, Any]]:
    response = client.get("/api/v2/importErrors", params={"limit": 100})
    response.raise_for_status()
    return list(response.json().get("import_errors") or [])


def _format_import_errors(errors: list[dict[str, Any]]) -> str:
    if not errors:
        return "no import errors"
    parts = []
    for error in errors:
        trace = "\n    ".join(str(error.get("stack_trace") or "").strip().splitlines()[-12:])
        parts.append(f"{error.get('filename')}:\n    {trace}")
    return "import errors:\n  " + "\n  ".join(parts)


def _parse_timestamp(value: str) -> datetime | None:
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


# --------------------------------------------------------------------------- readiness


def _check_alive(paths: _Paths, records: Mapping[str, _ProcessRecord]) -> None:
    for name, record in records.items():
        if not _is_ours(record):
            proc = _CHILDREN.get(record.pid)
            code = proc.poll() if proc is not None else None
            how = f"exited with code {code}" if code is not None else "is no longer running"
            raise DevError(
                f"{name} (pid {record.pid}) {how} during start-up; last lines of {paths.log(name)}:\n"
                f"{_tail(paths.log(name))}"
            )


def _dag_file_parsed_since(paths: _Paths, since: datetime, dag_processor: _ProcessRecord | None) -> bool:
    """True once the dag-processor has finished parsing ``dli_datasets.py`` at least once since ``since``.

    Why this signal: a DAG file that yields no DAGs and no import error leaves no trace in the REST
    API, so neither ``/dags`` nor ``/importErrors`` can tell "parsed" from "not parsed yet". The
    dag-processor, though, writes ``Filling up the DagBag from <file>`` to the file's own log
    (``logs/dag_processor/<date>/<bundle>/dli_datasets.py.log``) when a parse starts, and holds that
    log open until it has stored the result in the database. So a parse started after ``since`` has
    finished when nothing in the dag-processor's group holds the log open any more, or, should /proc
    not show that, when a second parse has started (a file is never parsed twice at once).
    """
    # Resolved and deduplicated: ``dag_processor/latest`` is a symlink to today's folder.
    logs = sorted({log.resolve() for log in paths.logs.glob(f"dag_processor/*/*/{DAG_FILE_NAME}.log")})
    starts = 0
    for log in logs:
        try:
            lines = log.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            continue
        for line in lines:
            if _PARSE_START_EVENT not in line:
                continue
            try:
                event = json.loads(line)
            except ValueError:
                continue
            stamp = _parse_timestamp(str(event.get("timestamp", "")))
            if stamp is not None and stamp >= since and str(event.get("event", "")).endswith(DAG_FILE_NAME):
                starts += 1
    if starts >= 2:
        return True
    if starts == 0 or dag_processor is None:
        return False
    targets = {str(log) for log in logs}
    for pid in _owned_pids({"dag-processor": dag_processor}, tagged=False):
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            return False
        for fd in fds:
            with contextlib.suppress(OSError):
                if os.readlink(f"/proc/{pid}/fd/{fd}") in targets:
                    return False
    return True


def _fresh_import_errors(
    client: httpx.Client, since: datetime | None
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """All import errors, and those of our DAG file (recorded after ``since``, when given)."""
    errors = _import_errors(client)
    ours = [e for e in errors if str(e.get("filename", "")).endswith(DAG_FILE_NAME)]
    if since is not None:
        # An import error of an earlier run stays in the database until the file is parsed again.
        ours = [e for e in ours if (stamp := _parse_timestamp(str(e.get("timestamp", "")))) and stamp >= since]
    return errors, ours


def _wait_ready(
    paths: _Paths,
    records: Mapping[str, _ProcessRecord],
    *,
    url: str,
    password: str,
    deadline: float,
    timeout: float,
    expected: Collection[str] | None,
    parsed_since: datetime | None,
) -> None:
    """Poll until healthy, then until the expected DAGs (or one parse of the DAG file) are there.

    A request that fails or times out is retried until the deadline: on SQLite the api-server can
    wait seconds for a lock while the first tasks start, and that is not a reason to give up.
    """

    def elapsed() -> float:
        return timeout - (deadline - time.monotonic())

    with httpx.Client(base_url=url, timeout=15.0) as client:
        health: dict[str, str | None] | None = None
        while True:
            _check_alive(paths, records)
            previous, health = health, _health(client)
            if health != previous:
                log.debug("health after %.1f s: %s", elapsed(), health)
            if _all_healthy(health):
                break
            if time.monotonic() > deadline:
                shown = health if health is not None else "api-server not answering"
                tails = "\n".join(f"--- {paths.log(name)}:\n{_tail(paths.log(name), 10)}" for name in records)
                raise DevError(
                    f"Airflow at {url} was not healthy within {timeout:.0f} s ({shown}); "
                    f"pass a longer --timeout or see the logs:\n{tails}"
                )
            time.sleep(_POLL_SECONDS)

        wanted = set(expected or ())
        missing: set[str] = set(wanted)
        errors: list[dict[str, Any]] = []
        last_failure: str | None = None
        while True:
            _check_alive(paths, records)
            try:
                if "Authorization" not in client.headers:
                    client.headers["Authorization"] = f"Bearer {get_token(url, USERNAME, password)}"
                errors, ours = _fresh_import_errors(client, parsed_since)
                if ours:
                    raise DevError(
                        f"the DAG file {paths.dag_file} failed to import; {_format_import_errors(ours)}",
                        hint="fix the error above (in dli_airflow.factory or the specs), then run `dli dev up` again",
                    )
                if wanted:
                    missing = wanted - _list_dag_ids(client)
                    if not missing:
                        log.debug("all %d DAGs listed after %.1f s", len(wanted), elapsed())
                        return
                elif parsed_since is None or _dag_file_parsed_since(paths, parsed_since, records.get("dag-processor")):
                    log.debug("DAG file parsed after %.1f s", elapsed())
                    return
            except (httpx.HTTPError, ServerUnreachableError) as exc:
                last_failure = f"{type(exc).__name__}: {exc}"
                log.debug("retrying after %s", last_failure)
            if time.monotonic() > deadline:
                failure = f"; last request failed with {last_failure}" if last_failure else ""
                tail = f"last lines of {paths.log('dag-processor')}:\n{_tail(paths.log('dag-processor'), 15)}"
                if wanted:
                    raise DevError(
                        f"DAGs missing after {timeout:.0f} s: {', '.join(sorted(missing))}; "
                        f"{_format_import_errors(errors)}{failure}\n{tail}",
                        hint="check those specs (`dli spec validate`), or pass a longer --timeout",
                    )
                raise DevError(
                    f"the dag-processor did not parse {paths.dag_file} within {timeout:.0f} s{failure}\n{tail}",
                    hint="pass a longer --timeout, or look for the cause in the log above",
                )
            time.sleep(_POLL_SECONDS)


# --------------------------------------------------------------------------- public API


def expected_dag_ids(store: str) -> list[str] | None:
    """The DAG ids the active specs of ``store`` should produce, or None if ``dli_airflow.store`` is unavailable.

    :param store: a local folder or ``s3://bucket/prefix``
    """
    try:
        from dli_airflow.store import open_store
    except ImportError:
        return None
    return [entry.name for entry in open_store(store).scan().active]


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
        with httpx.Client(base_url=url, timeout=10.0) as client:
            healthy = _all_healthy(_health(client))
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
