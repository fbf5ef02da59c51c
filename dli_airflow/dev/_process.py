"""Process supervision for ``dli dev``: /proc reading, pid records, launch, the stop phases, log files, the lock.

A recorded pid is only trusted when ``/proc/<pid>/stat`` still shows the start time recorded at
launch, so a pid the kernel has recycled for somebody else's process is never signalled.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import IO

from dli_airflow.dev._home import DAG_FILE_NAME, RUN_ID_ENV, _Paths, _resolve_home
from dli_airflow.errors import DevError

PROCESS_NAMES: tuple[str, ...] = ("api-server", "scheduler", "dag-processor", "triggerer")

_STOP_GRACE_SECONDS = 15.0
# Of the grace, how long the leaders alone get before their whole groups get SIGTERM too.
_LEADER_GRACE_SECONDS = 10.0
_KILL_WAIT_SECONDS = 5.0
_LOG_TAIL_LINES = 40
_LOG_ROTATE_BYTES = 10 * 1024 * 1024


@dataclass(frozen=True)
class _ProcessRecord:
    """One pid file: enough to recognise the very process ``up`` started."""

    name: str
    pid: int
    start_ticks: int
    run_id: str


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
_STOP_PHASES: tuple[tuple[str, ...], ...] = (("scheduler", "dag-processor", "triggerer"), ("api-server",))


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


def _stop_one(paths: _Paths, record: _ProcessRecord) -> None:
    """Stop one recorded process and its group (SIGTERM, SIGKILL after the grace), leaving the others running."""
    scope = {record.name: record}
    seen = _owned_pids(scope, tagged=False)
    if seen:
        _signal(scope, seen, signal.SIGTERM)
        left = _wait_gone(scope, seen, _STOP_GRACE_SECONDS, tagged=False)
        if left:
            _signal(scope, left, signal.SIGKILL)
            if _wait_gone(scope, seen, _KILL_WAIT_SECONDS, tagged=False):
                raise DevError(f"the {record.name} of {paths.home} survived SIGKILL")
    with contextlib.suppress(FileNotFoundError):
        paths.pid(record.name).unlink()


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


def _check_alive(paths: _Paths, records: Mapping[str, _ProcessRecord]) -> None:
    """Raise :class:`DevError` with its log tail when a launched process is gone (readiness polls call it)."""
    for name, record in records.items():
        if not _is_ours(record):
            proc = _CHILDREN.get(record.pid)
            code = proc.poll() if proc is not None else None
            how = f"exited with code {code}" if code is not None else "is no longer running"
            raise DevError(
                f"{name} (pid {record.pid}) {how} during start-up; last lines of {paths.log(name)}:\n"
                f"{_tail(paths.log(name))}"
            )

