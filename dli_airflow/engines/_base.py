"""What every engine shares: the result types, the :class:`Engine` protocol, the cancellable run loop.

:class:`BaseEngine` owns the scaffolding that DuckDB, Trino and BigQuery would otherwise each repeat: a
lock, the cancel event, the one handle that :meth:`BaseEngine.cancel` can interrupt (a DuckDB connection,
a Trino cursor, a BigQuery job), and :meth:`BaseEngine.run`, which opens a session, runs the statements in
order and stops at the first error. An engine adds only what is its own: how to open a session, how to
run one statement, how its errors map to DLI errors, how to cancel its handle.

:func:`run_cancellable` runs an engine in a worker thread so that the calling thread stays free for the
signals that stop a run (Airflow's task timeout, Ctrl-C) and cancels the query when one arrives, or when the
run's own ``timeout`` passes (``dli dataset run --timeout``). :func:`connection_defined` tells whether Airflow
finds a connection here, before a local run needs it.
"""

from __future__ import annotations

import logging
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar, Generic, Protocol, TypeVar

from dli_airflow.bind import BoundStatement
from dli_airflow.errors import DliError, ExecutionError, ExecutionTimeoutError

logger = logging.getLogger(__name__)

#: What an engine runs: statements with their bound values, or plain SQL without any.
Statements = Sequence[BoundStatement | str]

#: Rows kept per statement in a result (what the CLI prints and the operator pushes to XCom).
DEFAULT_MAX_ROWS = 1000
#: Seconds :func:`run_cancellable` waits for the worker to stop after a cancel before re-raising.
CANCEL_JOIN_SECONDS = 10.0
#: How often :func:`run_cancellable` wakes up while waiting (a signal is handled between two waits).
_POLL_SECONDS = 0.2


@dataclass(frozen=True)
class StatementResult:
    """What one statement did: its SQL as sent (placeholders, not values), the rows it affected, the first rows."""

    sql: str
    rows_affected: int | None = None
    columns: tuple[str, ...] = ()
    rows: tuple[tuple[Any, ...], ...] = ()
    truncated: bool = False
    query_id: str | None = None
    bytes_processed: int | None = None
    seconds: float = 0.0


@dataclass(frozen=True)
class RunResult:
    """The statements of one run, in order."""

    statements: tuple[StatementResult, ...] = field(default_factory=tuple)

    @property
    def last(self) -> StatementResult | None:
        """The last statement (its rows are the dataset's result), or ``None`` for an empty run."""
        return self.statements[-1] if self.statements else None

    def records(self) -> list[dict[str, Any]]:
        """The last statement's rows as objects keyed by column name."""
        last = self.last
        if last is None:
            return []
        return [dict(zip(last.columns, row)) for row in last.rows]

    def summary(self, max_rows: int = 20) -> dict[str, Any]:
        """A small, JSON-safe summary (for XCom): per statement rows affected, the last rows, bounded.

        :param max_rows: rows of the last statement kept
        """
        last = self.last
        rows = [[_json_safe(v) for v in row] for row in (last.rows[:max_rows] if last else ())]
        return {
            "statements": len(self.statements),
            "rows_affected": [s.rows_affected for s in self.statements],
            "query_ids": [s.query_id for s in self.statements if s.query_id],
            "columns": list(last.columns) if last else [],
            "rows": rows,
            "rows_truncated": bool(last and (last.truncated or len(last.rows) > max_rows)),
        }


def _json_safe(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


class Engine(Protocol):
    """Runs rendered SQL. Implementations live in ``dli_airflow.engines.<name>``."""

    name: str
    dialect: str

    def run(self, statements: Statements, *, max_rows: int = DEFAULT_MAX_ROWS) -> RunResult:
        """Run statements in order, their values bound; stop at the first error (raise an ``ExecutionError``)."""

    def cancel(self) -> None:
        """Cancel what is running (from ``on_kill`` or a timeout); safe to call at any time."""


class SupportsWarning(Protocol):
    """A logger: the stdlib's, or the structlog one an Airflow task has as ``self.log``."""

    def warning(self, msg: str, *args: Any) -> Any:
        """Log ``msg % args`` as a warning."""


#: What an engine's session is: a DuckDB connection, a Trino cursor, a BigQuery client.
SessionT = TypeVar("SessionT")


class BaseEngine(ABC, Generic[SessionT]):
    """The run loop and the cancel machinery of an engine; subclasses add the engine's own parts.

    Thread model: :meth:`run` runs in one thread, :meth:`cancel` may come from any other at any time
    (``on_kill``, a timeout, a test). The lock guards the current handle and the cancel flag together,
    so a cancel that arrives before the handle exists is carried out the moment it is tracked.
    """

    #: The engine's name (``[dli] default_engine``, a spec's ``engine``).
    name: ClassVar[str]
    #: The SQL dialect its statements are written in.
    dialect: ClassVar[str]
    #: How messages name the engine.
    title: ClassVar[str]

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cancelled = threading.Event()
        self._handle: Any = None
        self._begun = False

    # -- the template ------------------------------------------------------------------------------------
    def run(self, statements: Statements, *, max_rows: int = DEFAULT_MAX_ROWS) -> RunResult:
        """Run statements in order on one session, each with its values bound; stop at the first error.

        :param statements: the rendered statements (:class:`~dli_airflow.bind.BoundStatement`; plain SQL
            text is a statement without values)
        :param max_rows: rows kept per statement (one more is fetched to tell that there were more)
        :raises ExecutionError: (or a subclass) for the first statement that fails or is cancelled
        """
        # a cancel while idle must not stop the next run: the flag is about this run only, and is cleared
        # when it begins (by run_cancellable before the worker thread starts, so a cancel that comes before
        # the thread gets here is not lost)
        with self._lock:
            if not self._begun:
                self._cancelled.clear()
            self._begun = False
        session = self._open()
        results: list[StatementResult] = []
        total = len(statements)
        try:
            for index, statement in enumerate(statements, start=1):
                if self._cancelled.is_set():
                    raise self._cancelled_error(index, total)
                started = time.monotonic()
                bound = BoundStatement.of(statement, self.dialect)
                result = self._run_statement(session, bound, index=index, total=total, max_rows=max_rows)
                results.append(replace(result, seconds=time.monotonic() - started))
        finally:
            self._track(None)
            self._close(session)
        return RunResult(tuple(results))

    def begin(self) -> None:
        """Start a run from another thread: a :meth:`cancel` from now on stops it, even before :meth:`run`."""
        with self._lock:
            self._cancelled.clear()
            self._begun = True

    def cancel(self) -> None:
        """Cancel what is running; safe to call at any time, from any thread, any number of times."""
        with self._lock:
            self._cancelled.set()
            handle = self._handle
        if handle is not None:
            self._cancel_safely(handle)

    # -- what each engine provides -----------------------------------------------------------------------
    @abstractmethod
    def _open(self) -> SessionT:
        """Open the session the statements of one run share; call :meth:`_track` for a cancellable handle."""

    @abstractmethod
    def _run_statement(
        self, session: SessionT, statement: BoundStatement, *, index: int, total: int, max_rows: int
    ) -> StatementResult:
        """Run one statement with its values bound and map the engine's errors to DLI errors.

        :param statement: the SQL as the engine takes it (its placeholders) and the values apart
        :param index: the statement's number, from 1 (for messages)
        :param total: how many statements the run has
        :param max_rows: rows to keep
        """

    @abstractmethod
    def _cancel_handle(self, handle: Any) -> None:
        """Interrupt ``handle`` (what was passed to :meth:`_track`); may raise, the caller logs it."""

    def _close(self, session: SessionT) -> None:
        """Close the session (every engine's session has a ``close()``)."""
        session.close()  # type: ignore[attr-defined]

    def _cancelled_error(self, index: int, total: int, ref: str | None = None) -> ExecutionError:
        """The error of a statement stopped by :meth:`cancel`.

        :param ref: what the engine calls the statement's work (``query 2024…``, ``job dli_…``)
        """
        at = f" ({ref})" if ref else ""
        return ExecutionError(f"statement {index} of {total} was cancelled on {self.title}{at}", hint="run it again")

    def _redact(self, text: str) -> str:
        """``text`` without the connection's secrets (engines that know them override this)."""
        return text

    # -- helpers for the engines -------------------------------------------------------------------------
    def _track(self, handle: Any) -> None:
        """Make ``handle`` the one :meth:`cancel` interrupts (``None``: nothing to interrupt)."""
        with self._lock:
            self._handle = handle
            cancelled = self._cancelled.is_set()
        if handle is not None and cancelled:
            self._cancel_safely(handle)

    def _current(self) -> Any:
        """The tracked handle (``None`` between statements or runs)."""
        with self._lock:
            return self._handle

    @property
    def cancelled(self) -> bool:
        """Whether :meth:`cancel` was called during the current run."""
        return self._cancelled.is_set()

    def _cancel_safely(self, handle: Any) -> None:
        try:
            self._cancel_handle(handle)
        except Exception as exc:  # noqa: BLE001 - cancel is best effort: the query may have just finished
            logger.warning("cancelling the %s query failed: %s", self.title, self._redact(str(exc)))


def run_cancellable(
    engine: Engine,
    statements: Statements,
    *,
    max_rows: int = DEFAULT_MAX_ROWS,
    interrupts: tuple[type[BaseException], ...] = (KeyboardInterrupt, SystemExit),
    log: SupportsWarning | None = None,
    timeout: float | None = None,
) -> RunResult:
    """Run ``engine.run(statements)`` in a worker thread; cancel it when the calling thread is interrupted.

    Python delivers signals (Airflow's task timeout, Ctrl-C) to the main thread only, and a query blocked
    in a C library or a socket read would not see them: the worker runs the query and this thread waits
    in short slices, so an interrupt is handled at once.

    :param engine: the engine to run on
    :param statements: the rendered statements, with their bound values
    :param max_rows: rows kept per statement
    :param interrupts: the exceptions that stop the run: on one, the query is cancelled on the engine,
        the worker gets up to :data:`CANCEL_JOIN_SECONDS` to stop, and the exception is re-raised
    :param log: where the cancel is reported (the task's logger); default this module's
    :param timeout: seconds the whole run may take; past them the query is cancelled on the engine the same
        way and :class:`~dli_airflow.errors.ExecutionTimeoutError` (DLI-406) is raised (``None``: no limit)
    :raises: what ``engine.run`` raised, in this thread
    """
    outcome: dict[str, Any] = {}
    report = log if log is not None else logger
    deadline = None if timeout is None else time.monotonic() + timeout

    def target() -> None:
        try:
            outcome["result"] = engine.run(statements, max_rows=max_rows)
        except BaseException as exc:  # noqa: BLE001 - handed back to the calling thread
            outcome["error"] = exc

    begin = getattr(engine, "begin", None)
    if begin is not None:
        begin()  # a cancel between here and the worker's first statement is kept
    # daemon: a worker stuck in a driver after the cancel must not keep the process alive
    worker = threading.Thread(target=target, name=f"dli-{engine.name}", daemon=True)
    worker.start()
    timed_out = False
    try:
        while worker.is_alive():
            if deadline is not None and time.monotonic() >= deadline:
                timed_out = True
                break
            wait = _POLL_SECONDS if deadline is None else max(0.0, min(_POLL_SECONDS, deadline - time.monotonic()))
            worker.join(wait)
    except interrupts:
        report.warning("Cancelling the query on %s", engine.name)
        _cancel_until_stopped(engine, worker)
        raise
    if timed_out:
        report.warning("Cancelling the query on %s: the run took longer than %gs", engine.name, timeout)
        _cancel_until_stopped(engine, worker)
        if "result" not in outcome:  # it may have finished in the meantime: then nothing is lost
            error = outcome.get("error")
            raise _timeout_error(engine, timeout or 0.0, error, stopped=not worker.is_alive()) from error
    if "error" in outcome:
        raise outcome["error"]
    return outcome["result"]


def _cancel_until_stopped(engine: Engine, worker: threading.Thread) -> None:
    # again and again until the worker stops: an interrupt that lands between a statement's start and
    # the driver's execute is lost (DuckDB clears a connection's interrupt flag when a query begins)
    deadline = time.monotonic() + CANCEL_JOIN_SECONDS
    while True:
        engine.cancel()
        worker.join(_POLL_SECONDS)
        if not worker.is_alive() or time.monotonic() > deadline:
            break


def _timeout_error(engine: Engine, timeout: float, error: BaseException | None, *, stopped: bool) -> DliError:
    """The DLI-406 of a run past its ``timeout``, saying what the engine did with the cancel."""
    title = getattr(engine, "title", engine.name)
    if isinstance(error, DliError):
        what = f": {error.message}"
    elif stopped:
        what = ""
    else:
        what = f"; the cancel was sent, but the run did not stop within {CANCEL_JOIN_SECONDS:g}s"
    return ExecutionTimeoutError(f"the run took longer than {timeout:g}s and was cancelled on {title}{what}")


def connection_defined(conn_id: str) -> bool:
    """Whether Airflow can find the connection ``conn_id`` here (``AIRFLOW_CONN_*``, a secrets backend…).

    Reads it as the hooks do (``BaseHook.get_connection``), which needs no Airflow database: the
    environment-variable backend answers first.
    """
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        BaseHook.get_connection(conn_id)
    except AirflowNotFoundException:
        return False
    return True
