"""The dev home: its paths, ``dev.json`` and ``passwords.json``, the DAG file, the port, the Airflow environment.

Nothing here starts or signals a process (:mod:`._process`) or talks HTTP (:mod:`._ready`).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from dli_airflow.errors import DevError, StoreNotFoundError

DAG_FILE_NAME = "dli_datasets.py"
USERNAME = "admin"
#: One user per role of the simple auth manager, named after it (``admin`` is the one the tools use), so
#: the control plane's role table can be tried locally; their passwords are in ``<home>/passwords.json``.
ROLE_USERS = ("admin", "op", "user", "viewer")
DEFAULT_PORT = 8080
HOST = "127.0.0.1"

# Marks every process of one ``up`` in its environment (children inherit it): a fallback for
# ``down`` to find descendants that left both the process group and the process tree.
RUN_ID_ENV = "DLI_DEV_RUN_ID"


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
    """The admin password (and one for each of :data:`ROLE_USERS`), generated on the first ``up`` and kept.

    Written before launch: SimpleAuthManager only generates (and prints) its own password when the
    file lacks the user, and it keeps other users' entries, so we do too.
    """
    data = _read_json(paths.passwords) or {}
    for user in ROLE_USERS:
        if not isinstance(data.get(user), str) or not data[user]:
            data[user] = secrets.token_urlsafe(12)
    _write_private(paths.passwords, json.dumps(data) + "\n")
    return data[USERNAME]


def dag_file_source() -> str:
    """The text of the DAG file ``up`` writes: the packaged ``dli_airflow/dag_files/dli_datasets.py``.

    Read from the installed package (a wheel carries it as package data), so the text exists once:
    the same file docker-compose mounts as its dags folder and the README shows.
    """
    return (resources.files("dli_airflow") / "dag_files" / DAG_FILE_NAME).read_text(encoding="utf-8")


def _write_dag_file(paths: _Paths) -> bool:
    """Write :func:`dag_file_source` to the dags folder; True when the file changed."""
    source = dag_file_source()
    paths.dags.mkdir(parents=True, exist_ok=True)
    try:
        if paths.dag_file.read_text(encoding="utf-8") == source:
            return False
    except FileNotFoundError:
        pass
    tmp = paths.dag_file.with_name(f".{DAG_FILE_NAME}.tmp")
    tmp.write_text(source, encoding="utf-8")
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


# --------------------------------------------------------------------------- the Airflow environment


#: SQLite's connection arguments for every process of the stack (``[database] sql_alchemy_connect_args``
#: imports them): wait up to 30 s for the database's write lock instead of sqlite3's 5 s. Under a dev stack's
#: load (a killed task's supervisor writing while a backfill is created) 5 s runs out, Airflow answers 503 and
#: cleans up half-made rows the scheduler may be holding — which crashes Airflow 3.3's scheduler.
SQLITE_CONNECT_ARGS: dict[str, object] = {"timeout": 30}
SQLITE_CONNECT_ARGS_ASYNC: dict[str, object] = {"timeout": 30}


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
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS": "dli_airflow.dev._home.SQLITE_CONNECT_ARGS",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS_ASYNC": "dli_airflow.dev._home.SQLITE_CONNECT_ARGS_ASYNC",
            "AIRFLOW__CORE__AUTH_MANAGER": (
                "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
            ),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": ",".join(f"{u}:{u}" for u in ROLE_USERS),
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
    if not env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("sqlite"):
        # another database (PostgreSQL for the Celery tier): SQLite's connect arguments would break it
        for key in ("AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS", "AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS_ASYNC"):
            if key not in (extra_env or {}):
                env.pop(key, None)
    env[RUN_ID_ENV] = run_id
    return env


def scratch_store(source: Path, home: Path) -> Path:
    """A copy of ``source`` (``examples/store``) in the dev home, what ``dli dev up`` and ``./run demo`` serve by
    default, so that registering through the walkthrough never writes into the checkout.

    ``code/`` is the checkout's each time (as a publish from Git would make it); ``manual/`` is copied once
    and then kept: what a user registered stays across restarts (delete ``<home>/store`` to start again).
    """
    import shutil

    target = home / "store"
    target.mkdir(parents=True, exist_ok=True)
    code = target / "code"
    fresh = target / ".code.new"
    shutil.rmtree(fresh, ignore_errors=True)
    shutil.copytree(source / "code", fresh)
    shutil.rmtree(code, ignore_errors=True)
    fresh.rename(code)
    if not (target / "manual").exists():
        shutil.copytree(source / "manual", target / "manual")
    return target

