"""The run loop every engine shares (``engines/_base.py``), on the real DuckDB engine and on a fake one.

Cancels come from another thread, as ``on_kill`` does; interrupts are raised in the calling thread by a
signal handler, as Airflow's task timeout is.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import duckdb
import pytest

from dli_airflow.bind import BoundStatement
from dli_airflow.engines import (
    DEFAULT_MAX_ROWS,
    BaseEngine,
    RunResult,
    StatementResult,
    engine_class,
    engine_for,
    run_cancellable,
)
from dli_airflow.engines.duckdb import DuckDBEngine
from dli_airflow.errors import ConfigError, ExecutionError, ExecutionTimeoutError, SqlExecutionError
from dli_airflow.spec import load_spec

#: Minutes of work for DuckDB (a cross join it cannot shortcut): only a cancel ends it in time.
LONG_QUERY = "SELECT count(*) FROM range(10000000000) a, range(1000) b"


class Interrupt(Exception):
    """Stands for Airflow's ``AirflowTaskTimeout``: raised in the main thread by a signal handler."""


def _in_thread(engine: Any, statements: list[str]) -> tuple[threading.Thread, dict[str, Any]]:
    outcome: dict[str, Any] = {}

    def work() -> None:
        try:
            outcome["result"] = engine.run(statements)
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            outcome["error"] = exc

    worker = threading.Thread(target=work, daemon=True)
    worker.start()
    return worker, outcome


def _workers_alive(name: str) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == name and t.is_alive()]


# -- DuckDB through the shared loop --------------------------------------------------------------------


def test_a_long_query_cancelled_from_another_thread_reads_cancelled() -> None:
    engine = DuckDBEngine(":memory:")
    worker, outcome = _in_thread(engine, ["SELECT 1", LONG_QUERY])
    time.sleep(0.5)  # statement 2 is running by now
    cancelled_at = time.monotonic()
    engine.cancel()
    worker.join(10)
    assert not worker.is_alive(), "cancel() did not interrupt the query"
    assert time.monotonic() - cancelled_at < 5
    error = outcome["error"]
    assert isinstance(error, ExecutionError) and error.code == "DLI-401"
    assert "statement 2 was cancelled" in error.message


def test_a_cancel_between_runs_does_not_stop_the_next_run() -> None:
    engine = DuckDBEngine(":memory:")
    engine.cancel()
    assert engine.run(["SELECT 1 AS x"]).records() == [{"x": 1}]
    assert engine.cancelled is False


def test_a_statement_error_stops_the_loop_at_that_statement(tmp_path: Path) -> None:
    path = tmp_path / "db.duckdb"
    statements = ["CREATE TABLE t AS SELECT 1 AS x", "SELECT * FROM no_such_table", "INSERT INTO t VALUES (2)"]
    with pytest.raises(SqlExecutionError) as info:
        DuckDBEngine(path).run(statements)
    assert info.value.code == "DLI-405"
    assert "statement 2 of 3" in info.value.message and "no_such_table" in info.value.message
    with duckdb.connect(str(path)) as con:
        assert con.execute("SELECT x FROM t").fetchall() == [(1,)]  # statement 3 never ran


def test_results_carry_rows_affected_and_the_time_each_statement_took() -> None:
    result = DuckDBEngine(":memory:").run(
        ["CREATE TABLE t AS SELECT range AS x FROM range(5)", "SELECT x FROM t ORDER BY x"], max_rows=3
    )
    create, select = result.statements
    assert create.rows_affected == 5
    assert select.rows == ((0,), (1,), (2,)) and select.truncated and select.rows_affected is None
    assert all(s.seconds > 0 for s in result.statements)


@pytest.mark.parametrize(
    ("settings", "half", "utc"),
    [
        (None, 3.5, False),  # the connection as DuckDB opens it
        ({}, 3.5, True),  # no settings, still the UTC session of transpiled SQL
        ({"integer_division": True}, 3, True),  # Trino divides integers as integers
    ],
)
def test_settings_are_applied_on_connect(settings: dict[str, Any] | None, half: float, utc: bool) -> None:
    engine = DuckDBEngine(":memory:", settings=settings)
    (row,) = engine.run(["SELECT 7 / 2 AS half, current_setting('TimeZone') AS tz"]).statements[0].rows
    assert row[0] == half
    if utc:
        assert row[1] == "UTC"
    with engine.connect() as conn:  # connect() applies them too (what a caller of the connection sees)
        assert conn.execute("SELECT 7 / 2").fetchone() == (half,)


def test_settings_values_are_rendered_as_literals() -> None:
    engine = DuckDBEngine(":memory:", settings={"default_null_order": "nulls_last"})
    result = engine.run(["SELECT lower(current_setting('default_null_order')) AS o"])
    assert result.records() == [{"o": "nulls_last"}]


# -- run_cancellable -----------------------------------------------------------------------------------


def test_run_cancellable_returns_the_result_and_raises_the_engines_error_here() -> None:
    engine = DuckDBEngine(":memory:")
    result = run_cancellable(engine, ["SELECT 42 AS answer"])
    assert isinstance(result, RunResult) and result.records() == [{"answer": 42}]
    with pytest.raises(SqlExecutionError, match="statement 1 of 1"):
        run_cancellable(engine, ["SELECT * FROM nowhere"])


@pytest.mark.parametrize(
    ("interrupt", "interrupts"),
    [(KeyboardInterrupt, None), (Interrupt, (Interrupt,))],
    ids=["ctrl-c-by-default", "a-task-timeout"],
)
def test_run_cancellable_cancels_when_the_calling_thread_is_interrupted(
    interrupt_soon: Any, interrupt: type[BaseException], interrupts: tuple[type[BaseException], ...] | None
) -> None:
    engine = DuckDBEngine(":memory:")
    kwargs = {} if interrupts is None else {"interrupts": interrupts}
    interrupt_soon(interrupt, after=0.5)
    started = time.monotonic()
    with pytest.raises(interrupt):
        run_cancellable(engine, [LONG_QUERY], **kwargs)
    assert time.monotonic() - started < 8, "the worker was not cancelled"
    assert engine.cancelled
    assert not _workers_alive("dli-duckdb")  # the query stopped, the worker ended before the re-raise


def test_an_exception_not_named_an_interrupt_is_not_turned_into_a_cancel(interrupt_soon: Any) -> None:
    engine = FakeEngine(block=True)
    interrupt_soon(Interrupt, after=0.2)
    with pytest.raises(Interrupt):
        run_cancellable(engine, ["SELECT 1"])  # the default interrupts: Ctrl-C and SystemExit only
    assert engine.handle_cancels == 0
    engine.release.set()


def test_a_run_past_its_timeout_is_cancelled_on_the_engine_and_is_dli_406() -> None:
    engine = DuckDBEngine(":memory:")
    started = time.monotonic()
    with pytest.raises(ExecutionTimeoutError) as info:
        run_cancellable(engine, ["SELECT 1", LONG_QUERY], timeout=0.5)
    assert 0.5 <= time.monotonic() - started < 8
    assert info.value.code == "DLI-406" and engine.cancelled
    assert info.value.message.startswith("the run took longer than 0.5s and was cancelled on DuckDB: statement 2")
    assert isinstance(info.value.__cause__, ExecutionError)  # the engine's own "cancelled", kept as the cause
    assert not _workers_alive("dli-duckdb")


def test_a_run_within_its_timeout_returns_its_result() -> None:
    assert run_cancellable(DuckDBEngine(":memory:"), ["SELECT 42 AS answer"], timeout=30).records() == [{"answer": 42}]


def test_a_timeout_whose_engine_does_not_stop_still_ends_the_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    from dli_airflow.engines import _base

    monkeypatch.setattr(_base, "CANCEL_JOIN_SECONDS", 0.3)
    engine = FakeEngine(block=True)
    engine.cancel = lambda: None  # type: ignore[method-assign]  # the fault: a cancel that does nothing
    with pytest.raises(ExecutionTimeoutError, match="the cancel was sent, but the run did not stop within 0.3s"):
        run_cancellable(engine, ["SELECT 1"], timeout=0.2)
    engine.release.set()


# -- BaseEngine on a fake engine -----------------------------------------------------------------------


class FakeHandle:
    def __init__(self, fail: bool = False) -> None:
        self.fail = fail


class FakeEngine(BaseEngine[list]):
    """An engine whose statements wait for :attr:`release` (``block``) and whose cancel is recorded."""

    name = "fake"
    dialect = "duckdb"
    title = "Fake"

    def __init__(self, *, block: bool = False, cancel_fails: bool = False) -> None:
        super().__init__()
        self.block = block
        self.cancel_fails = cancel_fails
        self.release = threading.Event()
        self.running = threading.Event()
        self.handle_cancels = 0
        self.closed = 0

    def _open(self) -> list:
        return []

    def _close(self, session: list) -> None:
        self.closed += 1

    def _run_statement(
        self, session: list, statement: BoundStatement, *, index: int, total: int, max_rows: int
    ) -> StatementResult:
        self._track(FakeHandle(fail=self.cancel_fails))
        self.running.set()
        if self.block:
            self.release.wait(10)
        if self.cancelled:
            raise self._cancelled_error(index, total, "fake query")
        session.append(statement.sql)
        self._track(None)
        return StatementResult(sql=statement.sql, rows_affected=max_rows)

    def _cancel_handle(self, handle: FakeHandle) -> None:
        self.handle_cancels += 1
        if handle.fail:
            raise RuntimeError("the server said no")
        self.release.set()


def test_the_loop_runs_in_order_passes_max_rows_and_closes_the_session() -> None:
    engine = FakeEngine()
    result = engine.run(["a", "b"], max_rows=7)
    assert [s.sql for s in result.statements] == ["a", "b"]
    assert [s.rows_affected for s in result.statements] == [7, 7]
    assert engine.run(["c"]).statements[0].rows_affected == DEFAULT_MAX_ROWS
    assert engine.closed == 2


def test_cancel_interrupts_the_tracked_handle_and_the_base_message_names_it() -> None:
    engine = FakeEngine(block=True)
    worker, outcome = _in_thread(engine, ["a", "b"])
    assert engine.running.wait(5)
    engine.cancel()
    worker.join(5)
    assert engine.handle_cancels == 1 and engine.closed == 1
    assert str(outcome["error"].message) == "statement 1 of 2 was cancelled on Fake (fake query)"


def test_a_cancel_that_comes_before_the_handle_is_carried_out_when_it_is_tracked() -> None:
    engine = FakeEngine()
    engine.cancel()  # nothing tracked yet: only the flag
    assert engine.handle_cancels == 0
    engine._track(FakeHandle())
    assert engine.handle_cancels == 1


def test_a_failing_cancel_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    engine = FakeEngine(block=True, cancel_fails=True)
    worker, outcome = _in_thread(engine, ["a"])
    assert engine.running.wait(5)
    engine.cancel()  # the handle refuses: best effort
    assert "cancelling the Fake query failed: the server said no" in caplog.text
    engine.release.set()
    worker.join(5)
    assert isinstance(outcome["error"], ExecutionError)


# -- choosing the engine -------------------------------------------------------------------------------


def _spec(engine: str, extra: str = "") -> Any:
    return load_spec(f"name: s.x\nowner: me\nengine: {engine}\nquery: SELECT 1\n{extra}", "code/x.yaml")


def test_engine_for_duckdb_gets_the_path_not_the_spec(tmp_path: Path) -> None:
    engine = engine_for(_spec("duckdb"), duckdb_path=tmp_path / "x.duckdb")
    assert isinstance(engine, DuckDBEngine) and engine.path == str(tmp_path / "x.duckdb")
    assert engine.settings is None


def test_engine_for_trino_and_bigquery_read_the_spec() -> None:
    trino = engine_for(_spec("trino", "conn_id: lake\ncatalog: hive\nschema: sales\n"))
    assert (trino.name, trino.conn_id, trino.catalog, trino.schema) == ("trino", "lake", "hive", "sales")
    bigquery = engine_for(_spec("bigquery", "project: p\nlocation: EU\n"))
    assert (bigquery.name, bigquery.conn_id, bigquery.project, bigquery.location) == (
        "bigquery", "google_cloud_default", "p", "EU"
    )


def test_engine_class_refuses_an_unknown_engine() -> None:
    with pytest.raises(ConfigError, match="unknown engine 'oracle'") as info:
        engine_class("oracle")
    assert "duckdb, trino, bigquery" in (info.value.hint or "")


# -- statements with bound values ----------------------------------------------------------------------


def test_duckdb_binds_each_statement_s_own_values(tmp_path: Path) -> None:
    from datetime import date

    from dli_airflow.bind import BoundValue

    hostile = "'); CREATE TABLE pwned AS SELECT 42 AS x; --"
    statements = [
        BoundStatement("CREATE TABLE t AS SELECT ? AS c, ? AS d", (BoundValue("dli_1", hostile),
                                                                  BoundValue("dli_2", date(2024, 1, 15)))),
        "INSERT INTO t VALUES ('plain', DATE '2024-01-16')",  # plain SQL: a statement without values
        BoundStatement("SELECT c FROM t WHERE d >= ? ORDER BY d LIMIT ?", (BoundValue("dli_1", date(2024, 1, 15)),
                                                                          BoundValue("dli_2", 5))),
    ]
    path = tmp_path / "db.duckdb"
    result = DuckDBEngine(path).run(statements)
    assert result.statements[-1].rows == ((hostile,), ("plain",))
    assert result.statements[0].sql == "CREATE TABLE t AS SELECT ? AS c, ? AS d"  # what was sent, never the value
    with duckdb.connect(str(path)) as con:
        assert {r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()} == {"t"}


def test_bigquery_query_parameters_have_the_values_types() -> None:
    from datetime import date, datetime, timezone

    from dli_airflow.bind import BoundValue
    from dli_airflow.engines.bigquery import query_parameters

    values = ["o'b", 7, 0.5, True, date(2024, 1, 15), datetime(2024, 1, 15, 10), datetime(2024, 1, 15, tzinfo=timezone.utc),
              [1, 2], []]
    statement = BoundStatement("SELECT 1", tuple(BoundValue(f"dli_{i}", v) for i, v in enumerate(values, 1)),
                               dialect="bigquery")
    api = [p.to_api_repr() for p in query_parameters(statement)]
    assert [p["parameterType"]["type"] for p in api] == [
        "STRING", "INT64", "FLOAT64", "BOOL", "DATE", "DATETIME", "TIMESTAMP", "ARRAY", "ARRAY"
    ]
    assert api[7]["parameterType"]["arrayType"] == {"type": "INT64"} and api[0]["parameterValue"] == {"value": "o'b"}
    assert [p["name"] for p in api] == [f"dli_{i}" for i in range(1, 10)]


def test_a_cancel_before_the_worker_thread_starts_is_not_lost(tmp_path) -> None:
    """Ctrl-C right after run_cancellable started the worker (before its first statement) stops the run."""
    import threading

    from dli_airflow.engines import run_cancellable
    from dli_airflow.engines.duckdb import DuckDBEngine

    engine = DuckDBEngine(str(tmp_path / "db.duckdb"))
    real_run = engine.run
    gate = threading.Event()
    outcome = []

    def late_run(*args, **kwargs):  # the worker thread is scheduled late: the interrupt comes first
        gate.wait(5)
        try:
            return real_run(*args, **kwargs)
        except Exception as exc:
            outcome.append(exc)
            raise

    engine.run = late_run  # type: ignore[method-assign]
    calls = []

    class Interrupt(Exception):
        pass

    def interrupting_join(self, timeout=None):  # the calling thread is interrupted while it waits
        if not calls:
            calls.append(1)
            engine.cancel()
            gate.set()
            raise Interrupt
        return original_join(self, timeout)

    original_join = threading.Thread.join
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(threading.Thread, "join", interrupting_join)
        with pytest.raises(Interrupt):
            run_cancellable(engine, ["SELECT sum(hash(i)) FROM range(100000000000) t(i)"], interrupts=(Interrupt,))
    assert outcome and "was cancelled" in str(outcome[0])  # the worker stopped before running anything
