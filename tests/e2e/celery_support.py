"""The Celery tier: PostgreSQL 15, Redis, moto, and Airflow's api-server, scheduler, dag-processor and two
Celery workers, all on 127.0.0.1, every one a real server.

PostgreSQL refuses to run as root: as root it runs as ``nobody`` (``runuser``), its data folder in a
temporary directory that user owns; as another user, as that user. Every server takes a free port,
is polled until it answers, and is always stopped; its log is printed when the stack fails to start.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

HOST = "127.0.0.1"
HERE = Path(__file__).resolve().parent


def _pg_bin() -> Path:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"))
    if not found:
        raise RuntimeError("PostgreSQL server binaries not found under /usr/lib/postgresql (.ci/run installs them)")
    return found[-1].parent


def _as_unprivileged(cmd: list[str]) -> list[str]:
    return ["runuser", "-u", "nobody", "--", *cmd] if os.geteuid() == 0 else cmd


def _wait(check, what: str, deadline_s: float, log: Path | None = None, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            break
        if check():
            return
        time.sleep(0.2)
    tail = log.read_text(errors="replace")[-3000:] if log is not None and log.exists() else ""
    raise RuntimeError(f"{what} did not come up within {deadline_s:.0f} s\n{tail}")


def _port_answers(port: int) -> bool:
    import socket

    with contextlib.closing(socket.socket()) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((HOST, port)) == 0


def _stop(proc: subprocess.Popen | None, timeout: float = 15.0) -> None:
    if proc is None or proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


@dataclass
class Postgres:
    root: Path
    port: int
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"postgresql+psycopg2://airflow@{HOST}:{self.port}/airflow"

    @property
    def log(self) -> Path:
        return self.root / "postgres.log"

    def start(self) -> Postgres:
        bin_dir = _pg_bin()
        if os.geteuid() == 0:
            # nobody cannot enter pytest's (root-only) temporary folders: a folder of its own under /tmp
            import pwd
            import tempfile

            self.root = Path(tempfile.mkdtemp(prefix="dli-pg-"))
            nobody = pwd.getpwnam("nobody")
            os.chown(self.root, nobody.pw_uid, nobody.pw_gid)
        self.root.mkdir(parents=True, exist_ok=True)
        data = self.root / "data"
        init = subprocess.run(_as_unprivileged([str(bin_dir / "initdb"), "-D", str(data), "-U", "airflow",
                                                "--auth=trust", "-E", "UTF8"]),
                              capture_output=True, text=True, timeout=120)
        if init.returncode != 0:
            raise RuntimeError(f"initdb failed ({init.returncode}):\n{init.stdout[-1500:]}\n{init.stderr[-1500:]}")
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                _as_unprivileged([str(bin_dir / "postgres"), "-D", str(data), "-p", str(self.port), "-k",
                                  str(self.root), "-c", f"listen_addresses={HOST}", "-c", "fsync=off",
                                  "-c", "max_connections=200"]),
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
            )

        def ready() -> bool:
            return subprocess.run([str(bin_dir / "pg_isready"), "-h", HOST, "-p", str(self.port)],
                                  capture_output=True).returncode == 0

        _wait(ready, "PostgreSQL", 60, self.log, self.proc)
        subprocess.run([str(bin_dir / "createdb"), "-h", HOST, "-p", str(self.port), "-U", "airflow", "airflow"],
                       check=True, capture_output=True, timeout=60)
        return self

    def stop(self) -> None:
        _stop(self.proc)
        if os.geteuid() == 0 and self.root.name.startswith("dli-pg-"):
            shutil.rmtree(self.root, ignore_errors=True)


@dataclass
class Redis:
    root: Path
    port: int
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}/0"

    def start(self) -> Redis:
        exe = shutil.which("redis-server")
        if exe is None:
            raise RuntimeError("redis-server not found (.ci/run installs Debian's redis-server)")
        self.root.mkdir(parents=True, exist_ok=True)
        log = self.root / "redis.log"
        with log.open("ab") as out:
            self.proc = subprocess.Popen(
                [exe, "--port", str(self.port), "--bind", HOST, "--save", "", "--appendonly", "no",
                 "--dir", str(self.root)],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
            )
        _wait(lambda: _port_answers(self.port), "Redis", 30, log, self.proc)
        return self

    def stop(self) -> None:
        _stop(self.proc)


@dataclass
class Workers:
    """Celery workers launched with the dev stack's environment (each its own process group)."""

    home: Path
    env: dict[str, str]
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)

    def start(self, *names: str) -> Workers:
        for name in names:
            env = dict(self.env, DLI_TEST_WORKER_NAME=name,
                       AIRFLOW__CORE__HOSTNAME_CALLABLE="worker_names.hostname",
                       PYTHONPATH=os.pathsep.join(p for p in (str(HERE), self.env.get("PYTHONPATH", "")) if p))
            log = self.home / "logs" / f"celery-{name}.log"
            log.parent.mkdir(parents=True, exist_ok=True)
            with log.open("ab") as out:
                self.procs[name] = subprocess.Popen(
                    [sys.executable, "-m", "airflow", "celery", "worker", "--celery-hostname", f"{name}@{HOST}",
                     "--concurrency", "1", "--skip-serve-logs", "--without-gossip", "--without-mingle"],
                    stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, cwd=self.home,
                    start_new_session=True,
                )
        for name in names:
            log = self.home / "logs" / f"celery-{name}.log"
            _wait(lambda log=log: "ready." in log.read_text(errors="replace"), f"Celery worker {name}", 120, log,
                  self.procs[name])
        return self

    def pids(self) -> dict[str, int]:
        return {name: proc.pid for name, proc in self.procs.items()}

    def stop(self) -> None:
        for proc in self.procs.values():
            _stop(proc, timeout=30)

    def logs(self) -> str:
        return "\n".join(f"--- celery-{n}.log\n" + (self.home / "logs" / f"celery-{n}.log").read_text(
            errors="replace")[-2000:] for n in self.procs)


def pss_mib(pid: int) -> float:
    """The proportional set size of a process and all its descendants, in MiB (``smaps_rollup``)."""
    total = 0
    for p in [pid, *_descendants(pid)]:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{p}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
    return total / 1024


def _descendants(pid: int) -> Iterator[int]:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    stack = list(children.get(pid, []))
    while stack:
        child = stack.pop()
        yield child
        stack.extend(children.get(child, []))
