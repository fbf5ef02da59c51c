"""``DatasetQueryOperator`` on its own (no DAG, no server): the rendered-SQL field, execute, timeouts, on_kill.

The engine is the real DuckDB on a temporary file; the task context is the small part of Airflow's that
the operator reads.
"""

from __future__ import annotations

import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from airflow.sdk.exceptions import AirflowException, AirflowFailException, AirflowTaskTimeout

from dli_airflow.operators import DatasetQueryOperator
from dli_airflow.spec import load_spec

SPEC = """\
name: sales.orders
owner: me@example.com
query_file: orders.sql
schedule: {cron: "0 2 * * *", timezone: Asia/Tokyo}
parameters:
  - {name: execution_date, type: date, required: true}
  - {name: customer, type: string, default: nobody}
"""
SQL = "SELECT {{ execution_date }} AS d, {{ customer }} AS c"
LONG_QUERY = "SELECT count(*) FROM range(10000000000) a, range(1000) b"


@pytest.fixture
def duckdb_file(dli_isolated: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "dli.duckdb"
    monkeypatch.setenv("AIRFLOW__DLI__DUCKDB_PATH", str(path))
    return path


def make_task(sql: str = SQL, spec: str = SPEC) -> DatasetQueryOperator:
    return DatasetQueryOperator(
        task_id="run", spec=load_spec(spec, "code/orders.yaml"), sql_template=sql, sql_path="code/orders.sql"
    )


def context(
    run_type: str = "manual",
    *,
    params: dict[str, Any] | None = None,
    conf: dict[str, Any] | None = None,
    logical: datetime | None = None,
    ti: Any = None,
) -> dict[str, Any]:
    dag_run = SimpleNamespace(run_type=run_type, conf=conf or {}, run_after=logical)
    ctx: dict[str, Any] = {"params": params or {}, "dag_run": dag_run, "logical_date": logical}
    if ti is not None:
        ctx["ti"] = ti
    return ctx


# -- the rendered-SQL field ----------------------------------------------------------------------------


def test_init_only_stores_its_arguments() -> None:
    task = make_task()
    assert task.sql == SQL and task.sql_template == SQL and task.sql_path == "code/orders.sql"
    assert task.source == "code" and dict(task.parameters) == {}
    assert task.template_fields == ("sql",) and task.template_fields_renderers == {"sql": "sql"}


def test_render_fills_execution_date_from_the_schedule_in_its_time_zone() -> None:
    task = make_task()
    # 2024-01-15 17:00 UTC is already the 16th in Tokyo
    task.render_template_fields(context("scheduled", logical=datetime(2024, 1, 15, 17, tzinfo=timezone.utc)))
    assert task.sql == "SELECT DATE '2024-01-16' AS d, 'nobody' AS c"


def test_render_takes_typed_params_and_quotes_text() -> None:
    task = make_task()
    task.render_template_fields(context(params={"execution_date": "2024-01-15", "customer": "o'brien"}))
    assert task.sql == "SELECT DATE '2024-01-15' AS d, 'o''brien' AS c"


def test_a_manual_run_without_a_required_parameter_fails_without_retry() -> None:
    with pytest.raises(AirflowFailException, match="DLI-203.*execution_date"):
        make_task().render_template_fields(context())


def test_unknown_conf_keys_fail_and_name_the_allowed_parameters() -> None:
    ctx = context(params={"execution_date": "2024-01-15"}, conf={"custmer": "x", "__dli_note": "ours"})
    with pytest.raises(AirflowFailException, match="DLI-203") as info:
        make_task().render_template_fields(ctx)
    assert "'custmer'" in str(info.value) and "Allowed parameters" in str(info.value)
    assert "__dli_note" not in str(info.value)


class PreviousRunTI:
    """A task instance whose previous DAG run is given; counts the look-ups."""

    def __init__(self, previous: Any) -> None:
        self.previous = previous
        self.lookups = 0

    def get_previous_dagrun(self) -> Any:
        self.lookups += 1
        return self.previous


def test_a_date_after_a_failed_date_of_the_same_backfill_does_not_run() -> None:
    previous = SimpleNamespace(run_id="backfill__2024-01-14", state="failed", conf={"__dli_backfill": "tok"})
    ti = PreviousRunTI(previous)
    ctx = context("backfill", conf={"__dli_backfill": "tok"}, logical=datetime(2024, 1, 15, tzinfo=timezone.utc), ti=ti)
    with pytest.raises(AirflowFailException, match="DLI-802.*an earlier date of this backfill failed"):
        make_task().render_template_fields(ctx)
    assert ti.lookups == 1


def test_without_a_way_to_ask_airflow_a_date_after_a_failure_runs_and_says_why(monkeypatch, capsys) -> None:
    """A backfill started outside dli (no token): whether the failed date is of the same backfill is Airflow's
    to say; without the dli_airflow_api connection (nor DLI_AIRFLOW_URL) the date runs, as in Airflow."""
    monkeypatch.delenv("DLI_AIRFLOW_URL", raising=False)
    monkeypatch.delenv("AIRFLOW_CONN_DLI_AIRFLOW_API", raising=False)
    ti = PreviousRunTI(SimpleNamespace(run_id="r", state="failed", conf={}))
    task = make_task()
    task.render_template_fields(context("backfill", logical=datetime(2024, 1, 15, tzinfo=timezone.utc), ti=ti))
    assert ti.lookups == 1 and "DATE '2024-01-15'" in task.sql
    shown = capsys.readouterr()
    assert "cannot tell whether it failed in this backfill" in shown.out + shown.err


def test_no_previous_run_is_looked_up_for_other_runs() -> None:
    ti = PreviousRunTI(SimpleNamespace(run_id="r", state="failed", conf={}))
    task = make_task()
    task.render_template_fields(context("scheduled", logical=datetime(2024, 1, 15, tzinfo=timezone.utc), ti=ti))
    assert ti.lookups == 0 and "DATE '2024-01-15'" in task.sql


def test_a_manual_run_of_the_task_sdk_without_a_required_parameter_fails() -> None:
    from airflow.sdk.api.datamodels._generated import DagRunType

    # the Task SDK's enum stringifies as "DagRunType.MANUAL": the operator hands the run type over as it is
    ctx = context(logical=datetime(2024, 1, 15, 17, tzinfo=timezone.utc))
    ctx["dag_run"].run_type = DagRunType.MANUAL
    with pytest.raises(AirflowFailException, match="DLI-203.*execution_date"):
        make_task().render_template_fields(ctx)
    ctx["dag_run"].run_type = DagRunType.SCHEDULED
    task = make_task()
    task.render_template_fields(ctx)
    assert "DATE '2024-01-16'" in task.sql  # the scheduled date, in Tokyo


# -- execute ---------------------------------------------------------------------------------------------


def test_execute_renders_what_runs_itself_and_binds_the_values(duckdb_file: Path) -> None:
    import duckdb

    hostile = "'); CREATE TABLE pwned AS SELECT 42 AS x; --"
    task = make_task("CREATE TABLE kept AS SELECT {{ customer }} AS c, {{ execution_date }} AS d;\nSELECT c, d FROM kept")
    ctx = context(params={"execution_date": "2024-01-15", "customer": hostile})
    summary = task.execute(ctx)  # no render_template_fields first: execute renders (within its limits) itself
    assert summary["statements"] == 2 and summary["rows"] == [[hostile, "2024-01-15"]]
    assert "SELECT '''); CREATE TABLE pwned" in task.sql  # the field shows the value inlined, for reading
    with duckdb.connect(str(duckdb_file), read_only=True) as conn:
        tables = {r[0] for r in conn.execute("SELECT table_name FROM information_schema.tables").fetchall()}
    assert tables == {"kept"}


def test_a_render_past_its_time_limit_fails_inside_execute_without_retry(
    duckdb_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIRFLOW__DLI__RENDER_TIMEOUT_SECONDS", "0.3")
    task = make_task("SELECT 1\n{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}")
    started = time.monotonic()
    with pytest.raises(AirflowFailException, match=r"DLI-205.*code/orders\.sql:2: rendering the SQL took longer than 0\.3 s"):
        task.execute(context(params={"execution_date": "2024-01-15"}))
    assert time.monotonic() - started < 5
    assert not duckdb_file.exists()  # no engine was even opened


def test_a_placeholder_in_a_string_fails_before_any_sql_runs(duckdb_file: Path) -> None:
    task = make_task("SELECT regexp_matches('x', $$^{{ customer }}$$)")
    with pytest.raises(AirflowFailException, match="DLI-205.*inside a quoted SQL string"):
        task.render_template_fields(context(params={"execution_date": "2024-01-15"}))
    with pytest.raises(AirflowFailException, match="DLI-205.*inside a quoted SQL string"):
        task.execute(context(params={"execution_date": "2024-01-15"}))
    assert not duckdb_file.exists()


def test_execute_runs_on_duckdb_and_returns_the_summary(duckdb_file: Path) -> None:
    task = make_task()
    ctx = context(params={"execution_date": "2024-01-15", "customer": "ann"})
    task.render_template_fields(ctx)
    summary = task.execute(ctx)
    assert summary["dataset"] == "sales.orders"
    assert summary["parameters"] == {"execution_date": "2024-01-15", "customer": "ann"}
    assert summary["statements"] == 1 and summary["columns"] == ["d", "c"]
    assert summary["rows"] == [["2024-01-15", "ann"]]
    assert duckdb_file.exists()
    assert task._engine is None  # nothing left for on_kill


def test_empty_sql_fails_without_retry(duckdb_file: Path) -> None:
    task = make_task("{% if customer == 'x' %}SELECT 1{% endif %}\n-- nothing else")
    ctx = context(params={"execution_date": "2024-01-15"})
    task.render_template_fields(ctx)
    with pytest.raises(AirflowFailException, match="DLI-205.*empty"):
        task.execute(ctx)


def test_a_sql_error_is_retried_and_names_the_statement(duckdb_file: Path) -> None:
    task = make_task("SELECT 1;\nSELECT * FROM no_such_table")
    ctx = context(params={"execution_date": "2024-01-15"})
    task.render_template_fields(ctx)
    with pytest.raises(AirflowException, match="DLI-405.*statement 2 of 2") as info:
        task.execute(ctx)
    assert not isinstance(info.value, AirflowFailException)
    # the command it suggests is written for this dataset
    assert f"dli dataset run {task.spec.name} --local --dry-run" in str(info.value) and " NAME " not in str(info.value)


def test_a_task_timeout_cancels_the_query(duckdb_file: Path, interrupt_soon: Any) -> None:
    task = make_task(LONG_QUERY)
    ctx = context(params={"execution_date": "2024-01-15"})
    task.render_template_fields(ctx)
    interrupt_soon(AirflowTaskTimeout, after=0.5)
    started = time.monotonic()
    with pytest.raises(AirflowTaskTimeout):
        task.execute(ctx)
    assert time.monotonic() - started < 8, "the query was not cancelled"
    assert not [t for t in threading.enumerate() if t.name == "dli-duckdb" and t.is_alive()]
    assert task._engine is None


def test_on_kill_cancels_the_running_query(duckdb_file: Path) -> None:
    task = make_task(LONG_QUERY)
    ctx = context(params={"execution_date": "2024-01-15"})
    task.render_template_fields(ctx)
    outcome: dict[str, BaseException] = {}

    def execute() -> None:
        try:
            task.execute(ctx)
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            outcome["error"] = exc

    worker = threading.Thread(target=execute)
    worker.start()
    deadline = time.monotonic() + 5
    while task._engine is None and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)  # the statement is running by now
    task.on_kill()
    worker.join(10)
    assert not worker.is_alive(), "execute() did not return after on_kill"
    error = outcome["error"]
    assert isinstance(error, AirflowException) and not isinstance(error, AirflowFailException)
    assert "DLI-401" in str(error) and "cancelled" in str(error)


def test_on_kill_when_nothing_runs_is_harmless() -> None:
    make_task().on_kill()
