"""``DatasetQueryOperator``: renders a dataset's SQL with dli's renderer and runs it on its engine.

Airflow's own Jinja never sees the dataset's SQL (it would print ``{{ params.x }}`` as raw text): the
operator renders it in :meth:`render_template_fields` from the run's validated parameters, so the
UI's "Rendered Template" tab shows exactly the SQL that runs. The engine runs in a worker thread so
that a timeout or a kill is handled at once and cancels the query on the engine.
"""

from __future__ import annotations

import threading
from datetime import date
from typing import TYPE_CHECKING, Any, ClassVar
from zoneinfo import ZoneInfo

from airflow.sdk import BaseOperator

if TYPE_CHECKING:
    from airflow.sdk import Context

    from dli_airflow.engines import Engine, RunResult
    from dli_airflow.spec import DatasetSpec

#: Rows of the last statement kept in the XCom summary.
XCOM_MAX_ROWS = 20
#: ``conf`` keys with this prefix are dli's own (not parameters).
RESERVED_CONF_PREFIX = "__dli"
#: The ``conf`` key that ties the runs of one dli backfill together.
BACKFILL_TOKEN_KEY = "__dli_backfill"


class DatasetQueryOperator(BaseOperator):
    """Run one dataset's SQL.

    :param spec: the validated Dataset Spec.
    :param sql_template: the dataset's SQL template (Jinja; parameters render as typed literals).
    :param source: ``code`` or ``manual`` (shown in the log).
    :param sql_path: where the SQL came from (for messages).
    """

    template_fields: ClassVar[tuple[str, ...]] = ("sql",)
    template_fields_renderers: ClassVar[dict[str, str]] = {"sql": "sql"}
    ui_color = "#e8f4fd"

    def __init__(
        self,
        *,
        spec: DatasetSpec,
        sql_template: str,
        source: str = "code",
        sql_path: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.spec = spec
        self.sql_template = sql_template
        self.source = source
        self.sql_path = sql_path
        # shown in the UI before a run; replaced by the rendered SQL when the task runs
        self.sql = sql_template
        self.parameters: dict[str, Any] = {}
        self._engine: Engine | None = None

    # -- rendering -----------------------------------------------------------------------------------------
    def render_template_fields(self, context: Context, jinja_env: Any = None) -> None:
        """Render the SQL with dli's renderer (typed literals), not Airflow's Jinja."""
        from airflow.sdk.exceptions import AirflowFailException

        from dli_airflow.errors import DliError
        from dli_airflow.sql import render_sql

        try:
            self.parameters = self.resolve_parameters(context)
            self.sql = render_sql(
                self.sql_template,
                self.parameters,
                dialect=self.spec.resolved_engine,
                path=self.sql_path or self.spec.name,
            )
        except DliError as exc:
            raise AirflowFailException(f"[{exc.code}] {exc.render()}") from exc

    def resolve_parameters(self, context: Context) -> dict[str, Any]:
        """The run's parameters: trigger-form values or ``conf``, validated against the spec.

        ``execution_date``, when not given, is the local date (in ``schedule.timezone``) of the run's
        scheduled time for scheduled, backfill and asset-triggered runs; a manual run must give it.
        """
        from dli_airflow.errors import ParameterError
        from dli_airflow.sql import describe_parameters, resolve_parameters

        declared = {p.name for p in self.spec.parameters}
        params = context.get("params") or {}
        given = {k: v for k, v in dict(params).items() if k in declared}
        dag_run = context.get("dag_run")
        conf = dict(getattr(dag_run, "conf", None) or {})
        unknown = sorted(k for k in conf if k not in declared and not k.startswith(RESERVED_CONF_PREFIX))
        if unknown:
            raise ParameterError(
                f"Unknown parameter(s) {', '.join(map(repr, unknown))} in the run's conf for dataset "
                f"{self.spec.name!r}. Allowed parameters: {describe_parameters(self.spec)}",
                hint="trigger again with only the declared parameters",
            )
        self._stop_after_failed_backfill_date(context, conf)
        scheduled = self._scheduled_date(context)
        return resolve_parameters(self.spec, given, execution_date=scheduled)

    def _stop_after_failed_backfill_date(self, context: Context, conf: dict[str, Any]) -> None:
        """A dli backfill stops at its first failed date: later dates of the same backfill do not run.

        Airflow's backfill would go on; the client marks its runs with a token in ``conf`` so that the
        run of the next date can see that the previous date, of the same backfill, failed.
        """
        from dli_airflow.errors import WorkflowExecutionError

        token = conf.get(BACKFILL_TOKEN_KEY)
        ti = context.get("ti")
        if not token or ti is None or not hasattr(ti, "get_previous_dagrun"):
            return
        previous = ti.get_previous_dagrun()
        if previous is None or (previous.conf or {}).get(BACKFILL_TOKEN_KEY) != token:
            return
        if str(previous.state).lower().endswith("failed"):
            raise WorkflowExecutionError(
                f"an earlier date of this backfill failed (run {previous.run_id}), so this date is not run",
                hint="fix the failure, then run the backfill again from the failed date",
            )

    def _scheduled_date(self, context: Context) -> date | None:
        dag_run = context.get("dag_run")
        run_type = str(getattr(dag_run, "run_type", "") or "")
        if run_type.endswith("manual") or run_type == "":
            return None
        moment = context.get("logical_date") or getattr(dag_run, "run_after", None)
        if moment is None:
            return None
        tz = ZoneInfo(self.spec.schedule.timezone if self.spec.schedule else "UTC")
        return moment.astimezone(tz).date()

    # -- running -------------------------------------------------------------------------------------------
    def make_engine(self) -> Engine:
        """The engine named by the spec (or ``[dli] default_engine``)."""
        from dli_airflow.engines import engine_class

        cls = engine_class(self.spec.resolved_engine)
        if self.spec.resolved_engine == "duckdb":
            return cls()
        return cls(spec=self.spec)

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow.sdk.exceptions import AirflowException, AirflowFailException

        from dli_airflow.errors import DliError, ExecutionPermissionError, TemplateError
        from dli_airflow.sql import split_statements

        statements = split_statements(self.sql, self.spec.resolved_engine)
        if not statements:
            raise AirflowFailException(f"[{TemplateError.code}] the rendered SQL of {self.spec.name!r} is empty")
        self.log.info(
            "Dataset %s (%s, engine %s) with parameters %s: %d statement(s)\n%s",
            self.spec.name,
            self.source,
            self.spec.resolved_engine,
            {k: str(v) for k, v in self.parameters.items()},
            len(statements),
            self.sql,
        )
        try:
            result = self._run(statements)
        except ExecutionPermissionError as exc:
            raise AirflowFailException(f"[{exc.code}] {exc.render()}") from exc
        except DliError as exc:
            # transient or not, the engine's message reaches the log; retries apply
            raise AirflowException(f"[{exc.code}] {exc.render()}") from exc
        for index, stmt in enumerate(result.statements, start=1):
            extra = f", query id {stmt.query_id}" if stmt.query_id else ""
            self.log.info(
                "statement %d: %s row(s) affected in %.3fs%s",
                index,
                "?" if stmt.rows_affected is None else stmt.rows_affected,
                stmt.seconds,
                extra,
            )
        summary = result.summary(XCOM_MAX_ROWS)
        summary["dataset"] = self.spec.name
        summary["parameters"] = {k: (v.isoformat() if isinstance(v, date) else v) for k, v in self.parameters.items()}
        return summary

    def _run(self, statements: list[str]) -> RunResult:
        """Run on the engine in a worker thread; this thread stays free for timeout and kill signals."""
        from airflow.sdk.exceptions import AirflowTaskTimeout

        engine = self.make_engine()
        self._engine = engine
        outcome: dict[str, Any] = {}

        def target() -> None:
            try:
                outcome["result"] = engine.run(statements)
            except BaseException as exc:  # noqa: BLE001 - handed back to the main thread
                outcome["error"] = exc

        worker = threading.Thread(target=target, name=f"dli-{self.spec.name}", daemon=True)
        worker.start()
        try:
            while worker.is_alive():
                worker.join(0.2)
        except (AirflowTaskTimeout, KeyboardInterrupt, SystemExit):
            self.log.warning("Cancelling the query of %s on %s", self.spec.name, self.spec.resolved_engine)
            engine.cancel()
            worker.join(10)
            raise
        finally:
            self._engine = None
        if "error" in outcome:
            raise outcome["error"]
        return outcome["result"]

    def on_kill(self) -> None:
        engine = self._engine
        if engine is not None:
            self.log.warning("Task killed: cancelling the query of %s", self.spec.name)
            engine.cancel()
