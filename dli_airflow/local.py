"""Local runs: ``dli dataset run NAME --local`` renders a dataset's SQL and runs it from this machine.

A dataset runs on its own engine through the engine classes the operator uses — Trino and BigQuery through
the provider hooks, with the Airflow connection read as Airflow reads it (``AIRFLOW_CONN_<ID>``, or a dli
connections file that :func:`load_connections_file` turns into those) and no Airflow server or database.
``engine="duckdb"`` runs a Trino or BigQuery dataset on this machine's DuckDB instead: sqlglot transpiles the
rendered SQL, and what cannot be transpiled fails with a DLI-3xx error, never with wrong results. (For
:func:`run_entry`, the library call, DuckDB is the default; the CLI passes the dataset's engine.) A run may be
bounded (``timeout``): past it the query is cancelled on the engine (DLI-406). No Airflow here.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, unquote, urlsplit
from zoneinfo import ZoneInfo

from dli_airflow.engines import DEFAULT_MAX_ROWS, RunResult, connection_defined, engine_for, run_cancellable
from dli_airflow.engines.duckdb import DuckDBEngine
from dli_airflow.errors import (
    ConfigError,
    DliError,
    ExecutionError,
    ExecutionTimeoutError,
    ParameterError,
    ServerExecutionError,
    SpecSyntaxError,
    SqlExecutionError,
    TranspileError,
    add_secret,
)
from dli_airflow.params import local_execution_date
from dli_airflow.render import RenderedRun, parse_sql, render_entry
from dli_airflow.spec import DatasetSpec
from dli_airflow.transpile import SOURCE_SETTINGS

if TYPE_CHECKING:
    from dli_airflow.catalog import SpecEntry

#: The longest date range a local run accepts (a typo such as 2042 instead of 2024 should not start 6,000 runs).
MAX_LOCAL_DATES = 3660
#: Where a local run may go: the engine's own name, or this machine's DuckDB.
DUCKDB = "duckdb"

#: ``dli dataset run``'s exit statuses, besides 0 (done), 2 (a usage error: typer's) and 130 (Ctrl-C: the
#: query was cancelled on the engine). Invalid input is 1, as for every dli command: nothing ran — the spec, its
#: parameters, the dataset's name, ``--engine``, a connection that is not defined or a bad connections file
#: (DLI-0xx, 1xx, 2xx, and any error but the ones below).
EXIT_INVALID_INPUT = 1
#: The engine rejected the SQL (DLI-405), or it cannot run faithfully on DuckDB (DLI-301).
EXIT_SQL_ERROR = 3
#: The run took longer than ``--timeout`` and was cancelled on the engine (DLI-406).
EXIT_TIMEOUT = 4
#: The engine failed the run: it cannot be reached, refused the credentials or a permission (DLI-404), failed
#: inside (DLI-504), the query was cancelled on the server, or the DuckDB file stayed locked (DLI-401).
EXIT_ENGINE_FAILED = 5

#: The fields of one connection in a connections file: Airflow's JSON form of a connection.
CONNECTION_FIELDS = ("conn_type", "description", "host", "login", "password", "schema", "port", "extra")
#: The connection ids Airflow's environment-variable backend can look up (``AIRFLOW_CONN_<ID>``).
_CONN_ID = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
#: Keys whose values are secrets, in a connection's extra (``jwt__token``, ``keyfile_dict``, ``client_secret``…).
_SECRET_KEY = re.compile(r"(?i)pass(word|wd)?$|secret|token|private_key|keyfile_dict|credential")
#: How to define the default connection of each engine, for the message when there is none.
_EXAMPLES = {
    "trino": '{"conn_type": "trino", "host": "trino.example.com", "port": 443, "login": "me", '
    '"extra": {"protocol": "https", "catalog": "hive"}}',
    "bigquery": '{"conn_type": "google_cloud_platform", "extra": {"project": "my-project"}}',
}


@dataclass(frozen=True)
class LocalRunResult:
    """One local run: what was rendered, what the engine did (``None`` for a dry run), how long it took.

    :param engine: where it ran: the dataset's engine, or ``duckdb``
    :param conn_id: the Airflow connection it ran through (Trino, BigQuery)
    """

    rendered: RenderedRun
    result: RunResult | None
    seconds: float
    engine: str = DUCKDB
    conn_id: str | None = None

    @property
    def execution_date(self) -> Any:
        return self.rendered.parameters.get("execution_date")


def run_dates(spec: DatasetSpec, start: date, end: date) -> list[date]:
    """The dates a range run covers: one per scheduled time whose local date is in [start, end].

    A dataset without a cron gets every calendar day. (DESIGN.md: the backfill rule.)
    """
    if end < start:
        raise ParameterError(f"--end {end} is before --start {start}", hint="swap them")
    if (end - start).days + 1 > MAX_LOCAL_DATES:
        raise ParameterError(
            f"the range {start}..{end} has {(end - start).days + 1} days; the limit is {MAX_LOCAL_DATES}",
            hint="split the range",
        )
    cron = spec.schedule.cron if spec.schedule else None
    if not cron:
        return [start + timedelta(days=i) for i in range((end - start).days + 1)]
    from croniter import croniter

    tz = ZoneInfo(spec.schedule.timezone if spec.schedule else "UTC")
    begin = datetime.combine(start, datetime.min.time(), tzinfo=tz) - timedelta(seconds=1)
    stop = datetime.combine(end + timedelta(days=1), datetime.min.time(), tzinfo=tz)
    dates: list[date] = []
    for moment in croniter(cron, begin).all_next(datetime):
        if moment >= stop:
            break
        local = moment.astimezone(tz).date()
        if not dates or dates[-1] != local:
            dates.append(local)
    return dates


def resolve_engine(spec: DatasetSpec, requested: str | None = None) -> str:
    """Where a local run of ``spec`` goes: its own engine, unless ``requested`` is ``duckdb``.

    :param requested: ``--engine``: the dataset's engine or ``duckdb`` (``None``: the dataset's engine)
    :raises ParameterError: another engine than the dataset's
    """
    own = spec.resolved_engine
    if requested is None:
        return own
    wanted = requested.strip().lower()
    if wanted in (own, DUCKDB):
        return wanted
    allowed = DUCKDB if own == DUCKDB else f"{own} or {DUCKDB}"
    raise ParameterError(
        f"--engine {requested}: {spec.name!r} is a {own} dataset; its SQL runs on {allowed}",
        hint=f"drop --engine to run it on {own}" + ("" if own == DUCKDB else ", or pass --engine duckdb"),
    )


def run_entry(
    entry: SpecEntry,
    given: Mapping[str, Any] | None = None,
    *,
    execution_date: date | None = None,
    dry_run: bool = False,
    duckdb_path: str | None = None,
    max_rows: int = DEFAULT_MAX_ROWS,
    engine: str = DUCKDB,
    timeout: float | None = None,
) -> LocalRunResult:
    """Run one dataset from this machine (or, with ``dry_run``, render and parse only).

    On DuckDB, Trino and BigQuery SQL is parsed in its own dialect, transpiled to DuckDB and run with
    :data:`SOURCE_SETTINGS`. On the dataset's own engine, the statements go to it as the operator sends
    them, through the connection of the spec's ``conn_id`` (else the engine's default).

    :param engine: ``duckdb`` (this machine's DuckDB) or the dataset's engine (:func:`resolve_engine`)
    :param timeout: seconds the run may take; past them the query is cancelled on the engine (DLI-406)
    :raises ConfigError: the dataset's engine has no connection here (the message says how to give one)
    """
    started = time.monotonic()
    if execution_date is None:
        execution_date = local_execution_date(entry.spec)
    path = entry.sql_path or entry.path
    if engine != DUCKDB:
        return _run_on_own_engine(entry, given, execution_date, dry_run, max_rows, timeout, started)
    if dry_run and entry.spec.resolved_engine != DUCKDB:
        # parse in the engine's own dialect first (placeholders and all), so that errors point at the line
        # and column of the file
        _parse_in_own_dialect(render_entry(entry, given, execution_date=execution_date), path)
    # Trino/BigQuery SQL is transpiled with its values' placeholders in place; they bind as DuckDB parameters
    rendered = render_entry(entry, given, execution_date=execution_date, target_dialect=DUCKDB)
    if dry_run:
        for statement in rendered.statements:
            parse_sql(statement.sql, DUCKDB, path)
        return LocalRunResult(rendered, None, time.monotonic() - started)
    settings = SOURCE_SETTINGS.get(rendered.transpiled_from, {}) if rendered.transpiled_from else None
    runner = DuckDBEngine(duckdb_path, settings=settings)
    result = _bounded(runner, rendered, max_rows, timeout)
    return LocalRunResult(rendered, result, time.monotonic() - started)


def run_range(
    entry: SpecEntry,
    given: Mapping[str, Any] | None,
    start: date,
    end: date,
    *,
    dry_run: bool = False,
    duckdb_path: str | None = None,
    on_date: Callable[[date, int, int], None] | None = None,
    engine: str = DUCKDB,
    timeout: float | None = None,
) -> list[LocalRunResult]:
    """Run each date of [start, end] in order as ``execution_date``; stop at the first failure.

    :param timeout: seconds each date's run may take
    """
    if entry.spec.parameter("execution_date") is None:
        raise ParameterError(
            f"dataset {entry.name!r} declares no execution_date parameter, so a date range means nothing for it",
            hint="drop --start/--end, or declare an execution_date parameter of type date",
        )
    if given and given.get("execution_date") is not None:
        raise ParameterError(
            "give either -p execution_date=… or --start/--end, not both", hint="drop -p execution_date"
        )
    dates = run_dates(entry.spec, start, end)
    results: list[LocalRunResult] = []
    for index, day in enumerate(dates):
        if on_date is not None:
            on_date(day, index, len(dates))
        results.append(run_entry(entry, given, execution_date=day, dry_run=dry_run, duckdb_path=duckdb_path,
                                 engine=engine, timeout=timeout))
    return results


def exit_code_for(exc: DliError) -> int:
    """The exit status of ``dli dataset run`` for ``exc`` (:data:`EXIT_SQL_ERROR` …)."""
    if isinstance(exc, ExecutionTimeoutError):
        return EXIT_TIMEOUT
    if isinstance(exc, (SqlExecutionError, TranspileError)):
        return EXIT_SQL_ERROR
    if isinstance(exc, (ExecutionError, ServerExecutionError)):
        return EXIT_ENGINE_FAILED
    return EXIT_INVALID_INPUT


# -- the dataset's own engine --------------------------------------------------------------------------------


def _run_on_own_engine(
    entry: SpecEntry,
    given: Mapping[str, Any] | None,
    execution_date: date | None,
    dry_run: bool,
    max_rows: int,
    timeout: float | None,
    started: float,
) -> LocalRunResult:
    rendered = render_entry(entry, given, execution_date=execution_date)
    if dry_run:
        _parse_in_own_dialect(rendered, entry.sql_path or entry.path)
        return LocalRunResult(rendered, None, time.monotonic() - started, engine=rendered.engine)
    runner = engine_for(entry.spec)
    conn_id = getattr(runner, "conn_id", None)
    if conn_id is not None:
        mask_connection(os.environ.get(_env_name(conn_id)))
        if not connection_defined(conn_id):
            raise missing_connection(entry.spec, conn_id, os.environ.get(_env_name(conn_id)))
    result = _bounded(runner, rendered, max_rows, timeout)
    return LocalRunResult(rendered, result, time.monotonic() - started, engine=rendered.engine, conn_id=conn_id)


def missing_connection(spec: DatasetSpec, conn_id: str, env_value: str | None = None) -> ConfigError:
    """The error of a local run whose engine has no connection here, saying exactly how to give one.

    :param env_value: the ``AIRFLOW_CONN_<ID>`` that is set but that Airflow could not read, if any
    """
    engine = spec.resolved_engine
    whose = "its conn_id" if spec.conn_id else f"the {engine} default; set conn_id in the spec for another"
    example = _EXAMPLES.get(engine, '{"conn_type": "…"}')
    if env_value is not None:
        return ConfigError(
            f"{spec.name} runs on {engine} through the Airflow connection {conn_id!r} ({whose}): "
            f"{_env_name(conn_id)} is set, but Airflow cannot read it as a connection: {_unreadable(env_value)}",
            hint=f"write Airflow's connection JSON, e.g. {_env_name(conn_id)}='{example}', or a connection URI as "
            "Airflow documents it (the login and password, URL-encoded, before the host)",
            dataset_name=spec.name,
            field="conn_id",
        )
    return ConfigError(
        f"{spec.name} runs on {engine} through the Airflow connection {conn_id!r} ({whose}), and it is not "
        "defined here",
        hint=f"define it for this shell: export {_env_name(conn_id)}='{example}' (any Airflow connection JSON or "
        f"URI); or put it under {conn_id}: in a connections file (--connections FILE or DLI_CONNECTIONS_FILE); "
        "or run the SQL on this machine's DuckDB instead: --engine duckdb",
        dataset_name=spec.name,
        field="conn_id",
    )


def _unreadable(value: str) -> str:
    """Why a connection value cannot be read, without showing it (it may hold a password)."""
    text = value.strip()
    if text.startswith("{"):
        try:
            json.loads(text)
        except json.JSONDecodeError as exc:
            return f"it is not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})"
        return "its JSON is not a connection's (conn_type, host, login, password, schema, port, extra)"
    return "it is neither JSON nor a URI Airflow can parse"


def _bounded(runner: Any, rendered: RenderedRun, max_rows: int, timeout: float | None) -> RunResult:
    """Run in a worker thread (Ctrl-C cancels the query on the engine instead of waiting for it), bounded."""
    try:
        return run_cancellable(runner, rendered.statements, max_rows=max_rows, timeout=timeout)
    except ExecutionTimeoutError as exc:
        raise ExecutionTimeoutError(
            exc.message, hint="give it more time (--timeout SECONDS), or make the query cheaper",
            dataset_name=rendered.dataset,
        ) from exc.__cause__


def _parse_in_own_dialect(rendered: RenderedRun, path: str) -> None:
    for statement in rendered.statements:
        parse_sql("\n" * (statement.line - 1) + " " * (statement.column - 1) + statement.sql, rendered.dialect, path)


# -- connections ---------------------------------------------------------------------------------------------


def load_connections_file(path: str | Path) -> tuple[str, ...]:
    """Give this process the connections of a dli connections file, the way Airflow takes connections from
    the environment: each becomes ``AIRFLOW_CONN_<ID>`` (over one already set), in Airflow's JSON form.

    The file (YAML or JSON) maps connection ids to connections: Airflow's connection fields
    (:data:`CONNECTION_FIELDS`; ``extra`` a mapping) or a connection URI. Its secrets are masked in all
    output from now on; no message about the file shows a value.

    :returns: the connection ids, in the file's order
    :raises ConfigError: the file is missing, unreadable or not of that form
    """
    from dli_airflow._yaml import load_yaml

    file = Path(path).expanduser()
    if not file.is_file():
        raise ConfigError(f"the connections file {file} does not exist", hint=_FILE_HINT, path=str(file))
    try:
        document = load_yaml(file.read_bytes(), str(file))
    except SpecSyntaxError as exc:
        raise ConfigError(_without_values(exc.message), hint=_FILE_HINT, path=str(file)) from None
    except OSError as exc:
        raise ConfigError(f"cannot read the connections file {file}: {exc.strerror}", path=str(file)) from None
    if not isinstance(document, dict) or not document:
        raise ConfigError(f"{file}: a connections file maps connection ids to connections", hint=_FILE_HINT,
                          path=str(file))
    values: dict[str, str] = {}
    for conn_id, connection in document.items():
        if not isinstance(conn_id, str) or not _CONN_ID.match(conn_id):
            raise ConfigError(f"{file}: {str(conn_id)[:60]!r} is not a connection id (letters, digits, _ . -)",
                              hint=_FILE_HINT, path=str(file))
        values[conn_id] = _connection_value(file, conn_id, connection)
    for conn_id, value in values.items():
        mask_connection(value)
        os.environ[_env_name(conn_id)] = value
    return tuple(values)


_FILE_HINT = ("write one mapping per connection id, with Airflow's connection fields, e.g. "
              "trino_default: {conn_type: trino, host: trino.example.com, port: 443, login: me, "
              "extra: {protocol: https}}; or the connection's URI as a string")


def _connection_value(file: Path, conn_id: str, connection: Any) -> str:
    """One connection of the file as the value of its ``AIRFLOW_CONN_<ID>`` (the URI, or Airflow's JSON form)."""
    if isinstance(connection, str) and "://" in connection:
        return connection.strip()
    if not isinstance(connection, dict):
        raise ConfigError(f"{file}: {conn_id}: a connection is a mapping of its fields or a URI string",
                          hint=_FILE_HINT, path=str(file), field=conn_id)
    unknown = sorted(str(k) for k in connection if k not in CONNECTION_FIELDS)
    if unknown:
        raise ConfigError(
            f"{file}: {conn_id}: unknown field(s) {', '.join(unknown)}",
            hint=f"a connection has {', '.join(CONNECTION_FIELDS)}; engine settings go under extra",
            path=str(file), field=f"{conn_id}.{unknown[0]}",
        )
    fields: dict[str, Any] = {}
    for name, value in connection.items():
        where = f"{conn_id}.{name}"
        if value is None:
            continue
        if name == "port":
            if isinstance(value, bool) or not (isinstance(value, int) or (isinstance(value, str) and value.isdigit())):
                raise ConfigError(f"{file}: {where} must be a port number", path=str(file), field=where)
            fields[name] = int(value)
        elif name == "extra":
            if isinstance(value, str):
                try:
                    value = json.loads(value)
                except ValueError:
                    raise ConfigError(f"{file}: {where} is a string that is not JSON", hint="write extra as a mapping",
                                      path=str(file), field=where) from None
            if not isinstance(value, dict):
                raise ConfigError(f"{file}: {where} must be a mapping", path=str(file), field=where)
            fields[name] = value
        elif not isinstance(value, str):
            # YAML 1.1 reads an unquoted no, 0123 or 2024-01-15 as another type: the value is not shown
            raise ConfigError(f"{file}: {where} must be text, and YAML read it as a {type(value).__name__}",
                              hint="quote the value", path=str(file), field=where)
        else:
            fields[name] = value
    if not fields.get("conn_type"):
        raise ConfigError(f"{file}: {conn_id}: conn_type is missing (trino, google_cloud_platform, …)",
                          path=str(file), field=f"{conn_id}.conn_type")
    return json.dumps(fields)


def _without_values(message: str) -> str:
    """A YAML error about a connections file without the text it quotes (it may be a password)."""
    if "ambiguous" in message:
        where = re.match(r"^(.*?:\d+): ", message)
        return (f"{where.group(1) if where else message.split(':')[0]}: an unquoted value YAML 1.1 reads as another "
                "type (a leading zero or ':'); quote it")
    return message


def mask_connection(value: str | Mapping[str, Any] | None) -> None:
    """Mask the secrets of a connection (its ``AIRFLOW_CONN_*`` value: JSON or URI) in all output from now on."""
    if not value:
        return
    if isinstance(value, str):
        text = value.strip()
        try:
            parsed = json.loads(text)
        except ValueError:
            _mask_uri(text)
            return
        if not isinstance(parsed, dict):
            return
        value = parsed
    _mask_fields(value)


def _mask_uri(uri: str) -> None:
    parts = urlsplit(uri)
    if parts.password:
        add_secret(parts.password)
        add_secret(unquote(parts.password))
        add_secret(uri)
    for key, item in parse_qsl(parts.query):
        if _SECRET_KEY.search(key):
            add_secret(item)
            add_secret(uri)
        elif key == "__extra__":
            mask_connection(item)


def _mask_fields(fields: Mapping[str, Any]) -> None:
    for key, item in fields.items():
        if isinstance(item, Mapping):
            if _SECRET_KEY.search(str(key)):
                add_secret(json.dumps(item))
            _mask_fields(item)
        elif isinstance(item, str):
            if _SECRET_KEY.search(str(key)):
                add_secret(item)
            elif key == "extra":
                mask_connection(item)


def _env_name(conn_id: str) -> str:
    return f"AIRFLOW_CONN_{conn_id.upper()}"
