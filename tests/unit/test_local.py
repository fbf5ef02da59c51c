"""Local runs on the embedded DuckDB engine: statements, results, errors, cancel, dates and ranges; where a
local run goes, its exit statuses, and the dli connections file (the runs on Trino and BigQuery themselves are
in ``tests/integration/test_local_engines.py``)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import duckdb
import pytest

from dli_airflow.catalog import SpecEntry, scan
from dli_airflow.engines import engine_class
from dli_airflow.engines.duckdb import DuckDBEngine
from dli_airflow.errors import (
    ConfigError,
    DatasetNotFoundError,
    ExecutionError,
    ExecutionPermissionError,
    ExecutionTimeoutError,
    ParameterError,
    ServerExecutionError,
    SpecValidationError,
    SqlExecutionError,
    TemplateError,
    TranspileError,
    scrub,
)
from dli_airflow.local import (
    exit_code_for,
    load_connections_file,
    mask_connection,
    resolve_engine,
    run_dates,
    run_entry,
    run_range,
)
from dli_airflow.params import today_in
from dli_airflow.render import render_entry
from dli_airflow.spec import DatasetSpec, load_spec
from dli_airflow.store import LocalStore

pytestmark = pytest.mark.usefixtures("dli_isolated")

MakeStore = Callable[..., Path]


def _spec(extra: str = "") -> DatasetSpec:
    return load_spec(f"name: s.x\nowner: me\nquery: SELECT 1\n{extra}", "s.yaml")


@pytest.fixture
def entry_for(make_store: MakeStore) -> Callable[[str], SpecEntry]:
    """A SpecEntry from the text of one spec file (loaded through a real store)."""

    def make(text: str) -> SpecEntry:
        root = make_store({"code/s.yaml": text})
        snapshot = scan(LocalStore(root))
        assert snapshot.problems == (), [p.render() for p in snapshot.problems]
        return snapshot.entries[0]

    return make


# -- DuckDB engine ------------------------------------------------------------------------------------------


def test_statements_run_in_order_on_a_file(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "warehouse.duckdb"
    result = DuckDBEngine(path).run(
        [
            "CREATE TABLE t AS SELECT range AS a FROM range(5)",
            "INSERT INTO t VALUES (10), (11)",
            "UPDATE t SET a = a + 100 WHERE a < 2",
            "DELETE FROM t WHERE a = 11",
            "SELECT a, a * 2 AS doubled FROM t ORDER BY a",
        ]
    )
    assert [s.rows_affected for s in result.statements] == [5, 2, 2, 1, 6]
    last = result.last
    assert last.columns == ("a", "doubled")
    assert last.rows[:2] == ((2, 4), (3, 6))
    assert result.records()[-1] == {"a": 101, "doubled": 202}
    # the file keeps the data for the next run
    assert DuckDBEngine(path).run(["SELECT count(*) AS n FROM t"]).records() == [{"n": 6}]


def test_sql_error_is_405_with_the_statement_number(tmp_path: Path) -> None:
    path = tmp_path / "w.duckdb"
    with pytest.raises(SqlExecutionError) as info:
        DuckDBEngine(path).run(["CREATE TABLE a (x INT)", "SELECT * FROM no_such_table", "CREATE TABLE b (x INT)"])
    error = info.value
    assert error.code == "DLI-405"
    assert "statement 2 of 3" in error.message and "no_such_table" in error.message
    assert "--dry-run" in error.render()
    tables = {
        r[0] for r in duckdb.connect(str(path)).execute("SELECT table_name FROM information_schema.tables").fetchall()
    }
    assert tables == {"a"}  # ran up to the error, nothing after it


def test_max_rows_truncates_the_result() -> None:
    result = DuckDBEngine(":memory:").run(["SELECT * FROM range(10)"], max_rows=3)
    assert len(result.last.rows) == 3 and result.last.truncated
    summary = result.summary(max_rows=2)
    assert summary["rows"] == [[0], [1]] and summary["rows_truncated"] is True


def test_summary_is_json_safe() -> None:
    import json

    result = DuckDBEngine(":memory:").run(["SELECT DATE '2024-01-15' AS d, 1.5::DECIMAL(4,2) AS n, NULL AS z"])
    assert json.loads(json.dumps(result.summary()))["rows"] == [["2024-01-15", "1.50", None]]


def test_cancel_from_another_thread_interrupts_a_long_query() -> None:
    engine = DuckDBEngine(":memory:")
    outcome: dict[str, BaseException] = {}

    def work() -> None:
        try:
            engine.run(["SELECT count(*) FROM range(1000000000000) a, range(1000) b"])
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            outcome["error"] = exc

    worker = threading.Thread(target=work, daemon=True)
    started = time.monotonic()
    worker.start()
    deadline = started + 30
    while worker.is_alive() and time.monotonic() < deadline:
        time.sleep(0.1)
        engine.cancel()  # safe to call at any time, also before the query starts
    worker.join(timeout=1)
    assert not worker.is_alive(), "cancel() did not interrupt the query"
    assert time.monotonic() - started < 10
    error = outcome["error"]
    assert isinstance(error, ExecutionError) and error.code == "DLI-401"
    assert "cancelled" in error.message


def test_cancel_when_idle_is_harmless() -> None:
    engine = DuckDBEngine(":memory:")
    engine.cancel()
    assert engine.run(["SELECT 1 AS x"]).records() == [{"x": 1}]


def test_default_path_comes_from_config(dli_isolated: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert DuckDBEngine().path == str(dli_isolated / "dli" / "dli.duckdb")
    monkeypatch.setenv("AIRFLOW__DLI__DUCKDB_PATH", str(tmp_path / "x.duckdb"))
    assert DuckDBEngine().path == str(tmp_path / "x.duckdb")


def test_engine_lookup() -> None:
    assert engine_class("duckdb") is DuckDBEngine
    with pytest.raises(ConfigError) as info:
        engine_class("postgres")
    assert info.value.code == "DLI-001" and "duckdb" in info.value.render()


# -- run_dates ----------------------------------------------------------------------------------------------


def test_run_dates_daily_cron_in_seoul() -> None:
    spec = _spec("schedule:\n  cron: '0 9 * * *'\n  timezone: Asia/Seoul\n")
    assert run_dates(spec, date(2024, 1, 14), date(2024, 1, 16)) == [
        date(2024, 1, 14),
        date(2024, 1, 15),
        date(2024, 1, 16),
    ]


def test_run_dates_use_the_local_date_of_the_scheduled_time() -> None:
    # 00:30 in Seoul is 15:30 UTC of the day before: the local date counts
    spec = _spec("schedule:\n  cron: '30 0 * * *'\n  timezone: Asia/Seoul\n")
    assert run_dates(spec, date(2024, 1, 15), date(2024, 1, 15)) == [date(2024, 1, 15)]


def test_run_dates_weekly_cron() -> None:
    spec = _spec("schedule:\n  cron: '0 12 * * 1'\n  timezone: Europe/London\n")  # Mondays
    assert run_dates(spec, date(2024, 1, 1), date(2024, 1, 31)) == [
        date(2024, 1, 1),
        date(2024, 1, 8),
        date(2024, 1, 15),
        date(2024, 1, 22),
        date(2024, 1, 29),
    ]
    assert run_dates(spec, date(2024, 1, 2), date(2024, 1, 7)) == []


def test_run_dates_hourly_cron_gives_one_run_per_date() -> None:
    spec = _spec("schedule:\n  cron: '0 * * * *'\n")
    assert run_dates(spec, date(2024, 1, 1), date(2024, 1, 2)) == [date(2024, 1, 1), date(2024, 1, 2)]


@pytest.mark.parametrize(
    "extra", ["", "depends_on: [raw.clicks]\nschedule:\n  timezone: Asia/Seoul\n"], ids=["no-schedule", "assets-only"]
)
def test_run_dates_without_cron_is_every_day(extra: str) -> None:
    spec = _spec(extra)
    assert run_dates(spec, date(2024, 2, 27), date(2024, 3, 1)) == [
        date(2024, 2, 27),
        date(2024, 2, 28),
        date(2024, 2, 29),
        date(2024, 3, 1),
    ]


def test_run_dates_refuses_reversed_and_huge_ranges() -> None:
    spec = _spec()
    with pytest.raises(ParameterError, match="before"):
        run_dates(spec, date(2024, 1, 2), date(2024, 1, 1))
    with pytest.raises(ParameterError, match="limit"):
        run_dates(spec, date(2024, 1, 1), date(2042, 1, 1))


# -- local runs ---------------------------------------------------------------------------------------------

FAILS_ON_JAN_2 = """\
name: s.fails_on_jan_2
owner: me
query: |
  CREATE TABLE IF NOT EXISTS done (d DATE);
  SELECT CASE WHEN {{ execution_date }} = DATE '2024-01-02' THEN error('boom') ELSE 1 END;
  INSERT INTO done VALUES ({{ execution_date }});
parameters:
  - {name: execution_date, type: date, required: true}
schedule:
  cron: "0 9 * * *"
  timezone: Asia/Seoul
"""


def test_range_stops_at_the_first_failure(entry_for: Callable[[str], SpecEntry], tmp_path: Path) -> None:
    db = tmp_path / "w.duckdb"
    entry = entry_for(FAILS_ON_JAN_2)
    seen: list[date] = []
    with pytest.raises(SqlExecutionError) as info:
        run_range(
            entry, {}, date(2024, 1, 1), date(2024, 1, 4), duckdb_path=str(db), on_date=lambda d, i, n: seen.append(d)
        )
    assert info.value.code == "DLI-405" and "statement 2 of 3" in info.value.message and "boom" in info.value.message
    assert seen == [date(2024, 1, 1), date(2024, 1, 2)]
    assert duckdb.connect(str(db)).execute("SELECT d FROM done ORDER BY d").fetchall() == [(date(2024, 1, 1),)]


def test_range_runs_each_date_in_order(entry_for: Callable[[str], SpecEntry], tmp_path: Path) -> None:
    db = tmp_path / "w.duckdb"
    entry = entry_for(FAILS_ON_JAN_2)
    results = run_range(entry, None, date(2024, 1, 3), date(2024, 1, 5), duckdb_path=str(db))
    assert [r.execution_date for r in results] == [date(2024, 1, 3), date(2024, 1, 4), date(2024, 1, 5)]
    assert duckdb.connect(str(db)).execute("SELECT count(*) FROM done").fetchone() == (3,)


def test_range_needs_an_execution_date_parameter(entry_for: Callable[[str], SpecEntry]) -> None:
    entry = entry_for("name: s.x\nowner: me\nquery: SELECT 1\n")
    with pytest.raises(ParameterError, match="declares no execution_date"):
        run_range(entry, {}, date(2024, 1, 1), date(2024, 1, 2), dry_run=True)


def test_range_and_execution_date_together_are_refused(entry_for: Callable[[str], SpecEntry]) -> None:
    entry = entry_for(FAILS_ON_JAN_2)
    with pytest.raises(ParameterError, match="not both"):
        run_range(entry, {"execution_date": "2024-01-01"}, date(2024, 1, 1), date(2024, 1, 2), dry_run=True)


@pytest.mark.parametrize("tz", ["Pacific/Kiritimati", "Pacific/Pago_Pago", "UTC"])
def test_today_in_the_spec_time_zone_when_no_execution_date(entry_for: Callable[[str], SpecEntry], tz: str) -> None:
    entry = entry_for(
        "name: s.today\nowner: me\nquery: SELECT {{ execution_date }} AS d\n"
        "parameters:\n  - {name: execution_date, type: date}\n"
        f"schedule:\n  cron: '0 9 * * *'\n  timezone: {tz}\n"
    )
    before = datetime.now(ZoneInfo(tz)).date()
    result = run_entry(entry, {}, duckdb_path=":memory:")
    after = datetime.now(ZoneInfo(tz)).date()
    assert result.execution_date in {before, after}
    assert result.result.records() == [{"d": result.execution_date}]
    assert today_in(entry.spec) in {before, after}


@pytest.mark.hostile(kind="required")
def test_a_required_execution_date_is_never_filled_in_locally(entry_for: Callable[[str], SpecEntry]) -> None:
    """Seed 003 §3.4: a missing required parameter is an immediate error, also for a local run."""
    entry = entry_for(
        "name: s.required\nowner: me\nquery: SELECT {{ execution_date }} AS d\n"
        "parameters:\n  - {name: execution_date, type: date, required: true}\n"
    )
    for dry_run in (False, True):
        with pytest.raises(ParameterError, match="Missing required parameter: execution_date") as caught:
            run_entry(entry, {}, duckdb_path=":memory:", dry_run=dry_run)
        assert "Allowed parameters: execution_date (required)" in caught.value.message


def test_today_is_utc_without_a_schedule() -> None:
    assert today_in(_spec()) in {datetime.now(ZoneInfo("UTC")).date()}


def test_given_execution_date_wins(entry_for: Callable[[str], SpecEntry]) -> None:
    entry = entry_for(FAILS_ON_JAN_2.replace("error('boom')", "0"))
    result = run_entry(entry, {"execution_date": "2024-03-01"}, duckdb_path=":memory:")
    assert result.execution_date == date(2024, 3, 1)


def test_dry_run_renders_and_parses_but_runs_nothing(entry_for: Callable[[str], SpecEntry], tmp_path: Path) -> None:
    db = tmp_path / "w.duckdb"
    result = run_entry(entry_for(FAILS_ON_JAN_2), {"execution_date": "2024-01-02"}, dry_run=True, duckdb_path=str(db))
    assert result.result is None
    assert len(result.rendered.statements) == 3
    third = result.rendered.statements[2]
    assert "DATE '2024-01-02'" in third.display  # for reading: the value inlined
    assert "2024-01-02" not in third.sql and third.positional() == [date(2024, 1, 2)]  # what runs binds it
    assert not db.exists()


def test_dry_run_reports_sql_that_does_not_parse(entry_for: Callable[[str], SpecEntry]) -> None:
    entry = entry_for("name: s.bad\nowner: me\nquery: SELEC 1 FROMM\n")
    with pytest.raises(SqlExecutionError) as info:
        run_entry(entry, {}, dry_run=True)
    assert info.value.code == "DLI-405" and "code/s.yaml" in info.value.message


def test_trino_sql_is_transpiled_and_runs_on_duckdb(entry_for: Callable[[str], SpecEntry]) -> None:
    entry = entry_for(
        "name: s.trino\nowner: me\nengine: trino\n"
        "query: SELECT date_add('day', 1, {{ execution_date }}) AS next_day, {{ who }} AS who\n"
        'parameters:\n  - {name: execution_date, type: date}\n  - {name: who, default: "o\'brien"}\n'
    )
    result = run_entry(entry, {"execution_date": "2024-01-15"}, duckdb_path=":memory:")
    assert result.rendered.transpiled_from == "trino" and result.rendered.dialect == "duckdb"
    [row] = result.result.records()
    assert str(row["next_day"]).startswith("2024-01-16")
    assert row["who"] == "o'brien"


def test_sql_that_does_not_parse_in_its_dialect_is_a_transpile_error(entry_for: Callable[[str], SpecEntry]) -> None:
    entry = entry_for("name: s.trino\nowner: me\nengine: trino\nquery: SELECT FROM WHERE (\n")
    with pytest.raises(TranspileError) as info:
        render_entry(entry, {}, target_dialect="duckdb")
    assert info.value.code == "DLI-301"


def test_sql_rendering_to_nothing_is_an_error(entry_for: Callable[[str], SpecEntry]) -> None:
    entry = entry_for(
        "name: s.empty\nowner: me\nquery: '{% if flag %}SELECT 1{% endif %}'\n"
        "parameters:\n  - {name: flag, type: boolean, default: false}\n"
    )
    with pytest.raises(ParameterError, match="no statement"):
        render_entry(entry, {})


def test_example_dataset_runs_end_to_end(examples_store: Path, tmp_path: Path) -> None:
    entry = scan(LocalStore(examples_store)).get("analytics.daily_clicks")
    db = str(tmp_path / "w.duckdb")
    result = run_entry(entry, {"execution_date": "2024-01-15", "campaign": "campaign_1"}, duckdb_path=db)
    assert result.result.records() == [
        {"click_date": date(2024, 1, 15), "campaign": "campaign_1", "clicks": 20, "users": 17}
    ]
    # rerunning the same date replaces, never duplicates
    run_entry(entry, {"execution_date": "2024-01-15"}, duckdb_path=db)
    again = run_entry(entry, {"execution_date": "2024-01-15"}, duckdb_path=db)
    assert [r["clicks"] for r in again.result.records()] == [20, 20, 20]


# -- where a local run goes, its exit statuses, the connections file -----------------------------------------


@pytest.mark.parametrize(
    ("engine", "requested", "expected"),
    [("trino", None, "trino"), ("bigquery", None, "bigquery"), ("trino", "duckdb", "duckdb"),
     ("bigquery", "DuckDB", "duckdb"), ("trino", "trino", "trino"), ("duckdb", None, "duckdb")],
)
def test_a_local_run_goes_to_the_datasets_engine_unless_told_duckdb(engine: str, requested: str | None,
                                                                   expected: str) -> None:
    assert resolve_engine(_spec(f"engine: {engine}\n"), requested) == expected


def test_another_engine_than_the_datasets_is_refused() -> None:
    with pytest.raises(ParameterError, match="'s.x' is a trino dataset; its SQL runs on trino or duckdb"):
        resolve_engine(_spec("engine: trino\n"), "bigquery")
    with pytest.raises(ParameterError, match="its SQL runs on duckdb"):
        resolve_engine(_spec(), "trino")


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (ParameterError("bad -p"), 1), (SpecValidationError("bad spec"), 1), (DatasetNotFoundError("no such"), 1),
        (ConfigError("no connection"), 1), (TemplateError("bad template"), 1),
        (SqlExecutionError("syntax"), 3), (TranspileError("cannot transpile"), 3),
        (ExecutionTimeoutError("too long"), 4),
        (ExecutionError("cannot connect"), 5), (ExecutionPermissionError("denied"), 5),
        (ServerExecutionError("worker crashed"), 5),
    ],
)
def test_exit_statuses_tell_invalid_input_sql_errors_timeouts_and_engine_failures_apart(error: Any,
                                                                                         status: int) -> None:
    assert exit_code_for(error) == status


def test_a_connections_file_becomes_airflow_connections_of_this_process(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow.sdk import BaseHook

    monkeypatch.setenv("AIRFLOW_CONN_TRINO_DEV", '{"conn_type": "trino", "host": "old.example.com"}')
    monkeypatch.setenv("AIRFLOW_CONN_LEGACY", "")  # (so that the test leaves the environment as it found it)
    file = tmp_path / "connections.yaml"
    file.write_text(
        "trino_dev:\n"
        "  conn_type: trino\n"
        "  host: trino.example.com\n"
        "  port: '8443'\n"
        "  login: ana\n"
        "  password: 'S3cret-From-File'\n"
        "  extra: {protocol: https, jwt__token: null, catalog: iceberg}\n"
        "legacy: 'trino://bob:p%40ss-Word-9@legacy.example.com:443/hive?protocol=https'\n"
    )
    assert load_connections_file(file) == ("trino_dev", "legacy")
    dev = BaseHook.get_connection("trino_dev")  # Airflow reads them as it reads any AIRFLOW_CONN_*: the file wins
    assert (dev.host, dev.port, dev.login, dev.password) == ("trino.example.com", 8443, "ana", "S3cret-From-File")
    assert dev.extra_dejson == {"protocol": "https", "jwt__token": None, "catalog": "iceberg"}
    legacy = BaseHook.get_connection("legacy")
    assert (legacy.host, legacy.login, legacy.password, legacy.extra_dejson) == (
        "legacy.example.com", "bob", "p@ss-Word-9", {"protocol": "https"})
    shown = scrub("login failed for S3cret-From-File and p@ss-Word-9 (p%40ss-Word-9)")
    assert "S3cret" not in shown and "ss-Word-9" not in shown  # masked in every message from now on


@pytest.mark.hostile(kind="cli-and-secrets")
@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "the file is empty"),
        ("- trino_default\n", "a connections file maps connection ids to connections"),
        ("a b: {conn_type: trino}\n", "'a b' is not a connection id"),
        ("t: {host: h, password: Pw-Value-123}\n", "t: conn_type is missing"),
        ("t: {conn_type: trino, port: eighty, password: Pw-Value-123}\n", "t.port must be a port number"),
        ("t: {conn_type: trino, extra: '{bad json Pw-Value-123'}\n", "t.extra is a string that is not JSON"),
        ("t: {conn_type: trino, password: 2024-01-15}\n", "t.password must be text, and YAML read it as a date"),
        ("t: {conn_type: trino, password: 0777}\n", "quote it"),
        ("t: {conn_type: trino, password: Pw-Value-123}\nt: {conn_type: trino}\n", "duplicate key 't'"),
    ],
)
def test_a_bad_connections_file_says_where_and_never_shows_a_value(tmp_path: Path, text: str, fragment: str) -> None:
    file = tmp_path / "connections.yaml"
    file.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_connections_file(file)
    rendered = info.value.render()
    assert fragment in rendered and str(file) in rendered
    for value in ("Pw-Value-123", "2024-01-15", "0777"):
        assert value not in rendered


def test_a_missing_connections_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_connections_file(tmp_path / "nope.yaml")


@pytest.mark.hostile(kind="cli-and-secrets")
@pytest.mark.parametrize(
    ("value", "secret"),
    [
        ('{"conn_type": "trino", "password": "Json-Pass-777"}', "Json-Pass-777"),
        ('{"conn_type": "trino", "extra": {"auth": "jwt", "jwt__token": "eyJhbGc.Token-Part.Sig-777"}}',
         "eyJhbGc.Token-Part.Sig-777"),
        ('{"conn_type": "google_cloud_platform", "extra": {"keyfile_dict": {"private_key": "-----BEGIN KEY-777"}}}',
         "-----BEGIN KEY-777"),
        ("trino://ana:Uri-Pass-777@h:443/hive", "Uri-Pass-777"),
        ("trino://ana@h:443/hive?jwt__token=Query-Token-777", "Query-Token-777"),
    ],
    ids=["json-password", "jwt-token", "keyfile-dict", "uri-password", "uri-token"],
)
def test_a_connections_secrets_are_masked_wherever_it_comes_from(value: str, secret: str) -> None:
    mask_connection(value)
    assert secret not in scrub(f"Error: something went wrong near {secret}!")
