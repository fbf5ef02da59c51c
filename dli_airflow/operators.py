"""``DatasetQueryOperator``: renders a dataset's SQL with dli's renderer and runs it on its engine.

Airflow's own Jinja never sees the dataset's SQL (it would print ``{{ params.x }}`` as raw text).
:meth:`~DatasetQueryOperator.render_template_fields` checks the run's parameters and fills the UI's
"Rendered Template" field with the SQL as it reads with the values inlined. What runs is rendered again
inside :meth:`~DatasetQueryOperator.execute` — within the render's own limits and the task's
``execution_timeout`` — and sent with its values bound as the engine's parameters, never spliced into the
SQL. The engine runs in a worker thread (:func:`~dli_airflow.engines.run_cancellable`) so that a timeout
or a kill is handled at once and cancels the query on the engine.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, ClassVar

from airflow.sdk import BaseOperator

if TYPE_CHECKING:
    from airflow.providers.openlineage.extractors import OperatorLineage
    from airflow.sdk import Context

    from dli_airflow.bind import BoundSql
    from dli_airflow.engines import Engine, RunResult
    from dli_airflow.lineage import Phase
    from dli_airflow.spec import DatasetSpec

#: Rows of the last statement kept in the XCom summary.
XCOM_MAX_ROWS = 20


class DatasetQueryOperator(BaseOperator):
    """Run one dataset's SQL.

    :param spec: the validated Dataset Spec.
    :param sql_template: the dataset's SQL template (Jinja; parameters are bound as the engine's parameters).
    :param source: ``code`` or ``manual`` (shown in the log).
    :param sql_path: where the SQL came from (for messages).
    """

    template_fields: ClassVar[tuple[str, ...]] = ("sql",)
    template_fields_renderers: ClassVar[dict[str, str]] = {"sql": "sql"}
    ui_color = "#e8f4fd"

    #: The run's validated parameters, set when the SQL is rendered.
    parameters: Mapping[str, Any] = MappingProxyType({})
    #: The engine running the SQL, while it runs (what ``on_kill`` cancels).
    _engine: Engine | None = None
    #: OpenLineage: the statements as rendered (values inlined) and the engine's id of each one that ran.
    _lineage_sql: tuple[str, ...] = ()
    _lineage_query_ids: tuple[str | None, ...] = ()

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
        # the templated field: the template until the task renders it, so the UI shows it before a run
        self.sql = sql_template

    def _named(self, text: str) -> str:
        """An engine's message with the command it suggests written for this dataset (engines do not know it)."""
        return text.replace("dli dataset run NAME", f"dli dataset run {self.spec.name}")

    def render_template_fields(self, context: Context, jinja_env: Any = None) -> None:
        """Check the run's parameters and fill the rendered-SQL field (values inlined, for reading).

        Not Airflow's Jinja: dli's bounded renderer. What runs is rendered again in :meth:`execute`.

        :raises AirflowFailException: bad parameters, a template error, or an earlier failed date of the
            same dli backfill (retrying would not help)
        """
        from airflow.sdk.exceptions import AirflowFailException

        from dli_airflow.errors import DliError

        try:
            self._check_backfill(context)
            bound = self._render(context)
            self.sql = bound.display
            self._lineage_sql = tuple(str(s) for s in bound.statements)
        except DliError as exc:
            raise AirflowFailException(f"[{exc.code}] {exc.render()}") from exc

    def _check_backfill(self, context: Context) -> None:
        """A backfill stops at its first failed date, however it was started (dli, the UI's Backfill form,
        the REST API): :func:`~dli_airflow.workflow.check_backfill`. Airflow is asked for the run's backfill
        (through the ``dli_airflow_api`` connection) only when the previous date failed."""
        from dli_airflow.params import run_type_name
        from dli_airflow.workflow import BACKFILL_TOKEN_KEY, check_backfill

        dag_run, ti = context.get("dag_run"), context.get("ti")
        if dag_run is None or ti is None or run_type_name(getattr(dag_run, "run_type", None)) != "backfill":
            return
        previous = ti.get_previous_dagrun()
        if previous is None or not str(previous.state).lower().endswith("failed"):
            return
        conf = dict(getattr(dag_run, "conf", None) or {})
        backfill = None if conf.get(BACKFILL_TOKEN_KEY) else self._backfill_of(dag_run)
        check_backfill(conf, previous, backfill)

    def _backfill_of(self, dag_run: Any) -> Mapping[str, Any] | None:
        """The running Airflow backfill of this DAG whose range holds the run's logical date (REST API shape);
        ``None`` (and a warning: the backfill then goes on, as Airflow's does) when it cannot be asked."""
        from dli_airflow.errors import DliError
        from dli_airflow.hooks.airflow_api import AirflowApiHook
        from dli_airflow.workflow import parse_time

        try:
            client = AirflowApiHook().get_conn()
            if client is None:
                self.log.warning("The previous date failed, but without the dli_airflow_api connection this task "
                                 "cannot tell whether it failed in this backfill: this date runs")
                return None
            with client:
                found = client._api.get("/backfills", dag_id=dag_run.dag_id, order_by="-id", limit=10)["backfills"]
        except DliError as exc:
            self.log.warning("Could not read this run's backfill from Airflow (%s): this date runs", exc.message)
            return None
        logical = dag_run.logical_date
        for backfill in found:
            if backfill.get("completed_at") is None and logical is not None and (
                    parse_time(backfill["from_date"]) <= logical <= parse_time(backfill["to_date"])):
                return backfill
        return None

    def _render(self, context: Context) -> BoundSql:
        """The run's parameters (set on :attr:`parameters`) and the SQL rendered within its limits.

        :raises DliError: bad parameters (DLI-203) or a template failure (DLI-205)
        """
        from dli_airflow.params import run_parameters
        from dli_airflow.render import render_bound

        dag_run = context.get("dag_run")
        self.parameters = run_parameters(
            self.spec,
            params=context.get("params") or {},
            conf=dict(getattr(dag_run, "conf", None) or {}),
            run_type=getattr(dag_run, "run_type", None),
            logical_date=context.get("logical_date") or getattr(dag_run, "run_after", None),
        )
        path = self.sql_path or self.spec.name
        return render_bound(self.sql_template, self.parameters, dialect=self.spec.resolved_engine, path=path)

    def execute(self, context: Context) -> dict[str, Any]:
        """Render the SQL (bounded, inside the task's timeout) and run it on the dataset's engine, values bound.

        The XCom is a bounded summary.

        :raises AirflowFailException: bad parameters, a template error, empty SQL or a denied permission
            (no retry)
        :raises AirflowException: any other engine error (the spec's retries apply)
        """
        from airflow.sdk.exceptions import AirflowException, AirflowFailException, AirflowTaskTimeout

        from dli_airflow.engines import engine_for, run_cancellable
        from dli_airflow.errors import DliError, ExecutionPermissionError, TemplateError

        engine_name = self.spec.resolved_engine
        try:
            bound = self._render(context)
        except DliError as exc:
            raise AirflowFailException(f"[{exc.code}] {exc.render()}") from exc
        statements = bound.statements
        if not statements:
            raise AirflowFailException(f"[{TemplateError.code}] the rendered SQL of {self.spec.name!r} is empty")
        self.sql = bound.display
        self._lineage_sql = tuple(str(s) for s in statements)
        self.log.info(
            "Dataset %s (%s, engine %s) with parameters %s: %d statement(s), values bound as parameters\n%s",
            self.spec.name, self.source, engine_name, {k: str(v) for k, v in self.parameters.items()},
            len(statements), bound.display,
        )
        try:
            self._engine = engine_for(self.spec)
            interrupts = (AirflowTaskTimeout, KeyboardInterrupt, SystemExit)
            result = run_cancellable(self._engine, statements, interrupts=interrupts, log=self.log)
        except ExecutionPermissionError as exc:
            raise AirflowFailException(f"[{exc.code}] {self._named(exc.render())}") from exc
        except DliError as exc:
            # transient or not, the engine's message reaches the log; retries apply
            raise AirflowException(f"[{exc.code}] {self._named(exc.render())}") from exc
        finally:
            self._engine = None
        self._lineage_query_ids = tuple(s.query_id for s in result.statements)
        self._log_statements(result)
        summary = result.summary(XCOM_MAX_ROWS)
        summary["dataset"] = self.spec.name
        summary["parameters"] = {k: (v.isoformat() if isinstance(v, date) else v) for k, v in self.parameters.items()}
        return summary

    def on_kill(self) -> None:
        """Cancel the running query on the engine (the task was killed or marked failed)."""
        engine = self._engine
        if engine is not None:
            self.log.warning("Task killed: cancelling the query of %s", self.spec.name)
            engine.cancel()

    # -- OpenLineage (the provider's DefaultExtractor calls these; dli_airflow.lineage needs the extra) ------
    def get_openlineage_facets_on_start(self) -> OperatorLineage | None:
        """The datasets the rendered SQL reads and writes (parsed; the engine is not asked) and the dli facet."""
        return self._lineage("start")

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> OperatorLineage | None:
        """The datasets of the statements that ran (Trino's columns, BigQuery's job statistics) and the dli facet.

        :param task_instance: the finished task instance (unused: the operator kept what ran)
        """
        return self._lineage("complete")

    def get_openlineage_facets_on_failure(self, task_instance: Any) -> OperatorLineage | None:
        """The datasets the rendered SQL reads and writes (parsed) and the dli facet.

        :param task_instance: the failed task instance (unused)
        """
        return self._lineage("failure")

    def _lineage(self, phase: Phase) -> OperatorLineage | None:
        try:
            from dli_airflow.lineage import operator_lineage
        except ImportError:  # no openlineage extra: nothing to emit, and nothing to say about it
            self.log.debug("OpenLineage: the openlineage extra is not installed")
            return None
        query_ids = self._lineage_query_ids if phase == "complete" else ()
        return operator_lineage(
            self.spec, source=self.source, statements=self._lineage_sql, query_ids=query_ids, phase=phase
        )

    def _log_statements(self, result: RunResult) -> None:
        for index, stmt in enumerate(result.statements, start=1):
            extra = f", query id {stmt.query_id}" if stmt.query_id else ""
            rows = "?" if stmt.rows_affected is None else stmt.rows_affected
            self.log.info("statement %d: %s row(s) affected in %.3fs%s", index, rows, stmt.seconds, extra)
