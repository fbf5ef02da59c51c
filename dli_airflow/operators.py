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
    from airflow.sdk import Context

    from dli_airflow.bind import BoundSql
    from dli_airflow.engines import Engine, RunResult
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
        from dli_airflow.workflow import BACKFILL_TOKEN_KEY, check_backfill

        dag_run = context.get("dag_run")
        conf = dict(getattr(dag_run, "conf", None) or {})
        ti = context.get("ti")
        try:
            if conf.get(BACKFILL_TOKEN_KEY) and ti is not None:
                check_backfill(conf, ti.get_previous_dagrun())
            self.sql = self._render(context).display
        except DliError as exc:
            raise AirflowFailException(f"[{exc.code}] {exc.render()}") from exc

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

    def _log_statements(self, result: RunResult) -> None:
        for index, stmt in enumerate(result.statements, start=1):
            extra = f", query id {stmt.query_id}" if stmt.query_id else ""
            rows = "?" if stmt.rows_affected is None else stmt.rows_affected
            self.log.info("statement %d: %s row(s) affected in %.3fs%s", index, rows, stmt.seconds, extra)
