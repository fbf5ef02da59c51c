"""The DAG factory: one Airflow DAG per active dataset of the store.

``dags/dli_datasets.py`` calls :func:`build_dags` and puts the result in its globals. Parsing stays
fast and isolated: the store is read once per parse (from the on-disk snapshot cache when nothing
changed), each spec is built in its own ``try``, on a worker only the DAG being run is built, and
every problem is logged and shown in the ``dli_spec_errors`` DAG instead of hiding other DAGs.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from airflow.sdk import DAG, Asset, Param, get_parsing_context

from dli_airflow.errors import DliError
from dli_airflow.sync import SYNC_DAG_ID

if TYPE_CHECKING:
    from dli_airflow.errors import DliError as _DliError
    from dli_airflow.spec import DatasetSpec, ParameterSpec
    from dli_airflow.store import SpecEntry, StoreSnapshot

log = logging.getLogger(__name__)

#: The DAG that lists the store's problems (shown only while there are some).
ERRORS_DAG_ID = "dli_spec_errors"
#: Start of every dataset DAG's schedule: early enough for any backfill people run.
START_DATE = datetime(2000, 1, 1, tzinfo=timezone.utc)
#: Characters of SQL shown in a DAG's doc.
DOC_SQL_LIMIT = 20_000


def asset_for(name: str) -> Asset:
    """The Airflow asset of a dataset (its DAG's outlet; what ``depends_on`` schedules on)."""
    return Asset(name=name, uri=f"dli://dataset/{name}", group="dli")


def param_for(param: ParameterSpec) -> Param:
    """An Airflow ``Param`` for a spec parameter, so the trigger form shows a typed field.

    A required parameter becomes nullable: Airflow 3.3 refuses a scheduled DAG with a required Param
    that has no default, and that error drops every DAG of the file. The operator enforces it.
    """
    from dli_airflow.sql import parameter_json_schema

    schema = parameter_json_schema(param)
    default = param.default.isoformat() if hasattr(param.default, "isoformat") else param.default
    description = param.description or ""
    if param.required:
        description = (description + " " if description else "") + "(required)"
    extra: dict[str, Any] = {}
    if "format" in schema:
        extra["format"] = schema["format"]
    return Param(
        default,
        type=["null", schema["type"]],
        description=description or None,
        title=param.name,
        **extra,
    )


def _schedule(spec: DatasetSpec) -> Any:
    from airflow.sdk import AssetOrTimeSchedule, CronTriggerTimetable

    if spec.schedule is None:
        return None
    timetable = (
        CronTriggerTimetable(spec.schedule.cron, timezone=spec.schedule.timezone) if spec.schedule.cron else None
    )
    if not spec.depends_on:
        return timetable
    assets = [asset_for(name) for name in spec.depends_on]
    if timetable is None:
        return assets
    from airflow.sdk import AssetAll

    return AssetOrTimeSchedule(timetable=timetable, assets=AssetAll(*assets))


def _doc(entry: SpecEntry) -> str:
    spec = entry.spec
    sql = entry.sql if len(entry.sql) <= DOC_SQL_LIMIT else entry.sql[:DOC_SQL_LIMIT] + "\n-- … (truncated)"
    lines = [f"### {spec.name}", ""]
    if spec.description:
        lines += [spec.description, ""]
    params = ", ".join(f"`{p.name}` ({p.type}{', required' if p.required else ''})" for p in spec.parameters)
    lines += [
        f"- **source**: `{entry.source.value}` ({entry.path})",
        f"- **status**: `{entry.status.value}`",
        f"- **owner**: {spec.owner}" + (f" · **team**: {spec.team}" if spec.team else ""),
        f"- **engine**: `{spec.resolved_engine}`",
        f"- **parameters**: {params or 'none'}",
    ]
    if spec.depends_on:
        lines.append(f"- **depends on**: {', '.join(f'`{d}`' for d in spec.depends_on)}")
    lines += ["", "```sql", sql.rstrip(), "```"]
    return "\n".join(lines)


def build_dag(entry: SpecEntry) -> DAG:
    """The DAG of one store entry."""
    from dli_airflow.notifiers import task_callbacks
    from dli_airflow.operators import DatasetQueryOperator

    spec = entry.spec
    schedule = spec.schedule
    retry = schedule.retry if schedule else None
    default_args: dict[str, Any] = {
        "owner": spec.owner,
        "retries": retry.max_attempts if retry else 0,
        "retry_delay": timedelta(seconds=retry.delay_seconds if retry else 300),
    }
    if schedule and schedule.timeout_seconds:
        default_args["execution_timeout"] = timedelta(seconds=schedule.timeout_seconds)
    tags = ["dli", f"source:{entry.source.value}"]
    if spec.team:
        tags.append(spec.team[:100])
    tags += [t[:100] for t in spec.tags if t not in tags]
    dag = DAG(
        dag_id=spec.name,
        schedule=_schedule(spec),
        start_date=START_DATE,
        catchup=False,
        max_active_runs=1,
        is_paused_upon_creation=not (schedule.enabled if schedule else True),
        default_args=default_args,
        tags=tags,
        params={p.name: param_for(p) for p in spec.parameters},
        doc_md=_doc(entry),
        description=(spec.description or "")[:500] or None,
        auto_register=False,
    )
    DatasetQueryOperator(
        task_id="run",
        dag=dag,
        spec=spec,
        sql_template=entry.sql,
        source=entry.source.value,
        sql_path=entry.sql_path or entry.path,
        outlets=[asset_for(spec.name)],
        # on_failure / on_success notifications: task callbacks, run by the worker after the task ends
        **task_callbacks(spec),
    )
    return dag


def build_errors_dag(problems: list[_DliError], store: str) -> DAG:
    """A DAG whose doc lists every problem of the store and whose task fails with the same list."""
    from airflow.providers.standard.operators.python import PythonOperator

    lines = [f"### {len(problems)} problem(s) in the dli spec store `{store}`", ""]
    lines += [f"- **{p.code}** {p.render()}".replace("\n", "\n  ") for p in problems]
    lines += ["", "Fix each file (`dli spec validate` shows the same list); the other datasets run meanwhile."]
    report = "\n".join(f"[{p.code}] {p.render()}" for p in problems)
    dag = DAG(
        dag_id=ERRORS_DAG_ID,
        schedule=None,
        start_date=START_DATE,
        catchup=False,
        is_paused_upon_creation=True,
        tags=["dli", "dli:errors"],
        doc_md="\n".join(lines),
        description=f"{len(problems)} dli spec problem(s): open for the list",
        auto_register=False,
    )
    PythonOperator(task_id="report", dag=dag, python_callable=_fail_with, op_kwargs={"report": report})
    return dag


def _fail_with(report: str) -> None:
    from airflow.sdk.exceptions import AirflowFailException

    raise AirflowFailException("dli spec store problems:\n" + report)


def build_dags(
    store: str | None = None, *, snapshot: StoreSnapshot | None = None, maintenance: bool | None = None
) -> dict[str, DAG]:
    """Every DAG of the store, keyed by dag_id (for the DAG file's globals).

    :param store: a folder or ``s3://`` URL; default ``[dli] spec_store``.
    :param snapshot: an already scanned store (tests, benchmarks).
    :param maintenance: also emit the ``dli_sync`` DAG; by default only for the configured store (no
        ``store`` and no ``snapshot``, as in the DAG file), since ``dli_sync`` syncs ``[dli] spec_store``.
    """
    from dli_airflow.cache import load_snapshot

    given_snapshot = snapshot is not None
    if snapshot is None:
        try:
            snapshot = load_snapshot(store)
        except DliError as exc:
            log.error("dli: cannot read the spec store: [%s] %s", exc.code, exc.render())
            return {ERRORS_DAG_ID: build_errors_dag([exc], store or "(default)")}
    wanted = get_parsing_context().dag_id
    dags: dict[str, DAG] = {}
    problems: list[DliError] = list(snapshot.problems)
    for entry in snapshot.active:
        if wanted is not None and entry.name != wanted:
            continue
        try:
            dags[entry.name] = build_dag(entry)
        except Exception as exc:  # isolation point: one spec never hides the others
            from dli_airflow.errors import SpecValidationError

            problem = SpecValidationError(f"{entry.path}: dataset {entry.name!r} cannot become a DAG: {exc}")
            problems.append(problem)
            log.exception("dli: [%s] %s", problem.code, problem.message)
    for problem in snapshot.problems:
        log.warning("dli: [%s] %s", problem.code, problem.render())
    if problems and wanted in (None, ERRORS_DAG_ID):
        dags[ERRORS_DAG_ID] = build_errors_dag(problems, snapshot.store)
    emit_sync = maintenance if maintenance is not None else (store is None and not given_snapshot)
    if emit_sync and wanted in (None, SYNC_DAG_ID):
        from dli_airflow.sync import build_sync_dag

        try:
            dags[SYNC_DAG_ID] = build_sync_dag()
        except Exception as exc:  # isolation point: the maintenance DAG never hides the datasets
            log.exception("dli: cannot build the %s DAG: %s", SYNC_DAG_ID, exc)
    return dags
