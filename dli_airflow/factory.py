"""The DAG factory: one Airflow DAG per active dataset of the store.

The DAG file (``dli_airflow/dag_files/dli_datasets.py``) puts :func:`dag_file_globals` in its globals: the
DAGs of :func:`build_dags` under names the package controls (``dli_dag_0``, ``dli_dag_1``, …), never under a
dataset's name, since Airflow reads module globals such as ``__file__`` and a dataset so named would break
every DAG of the file. Parsing stays fast and isolated: the store is read once per parse (from the on-disk
snapshot cache when nothing changed), each spec is built in its own ``try``, on a worker only the DAG being
run is built, and every problem is logged and shown in the ``dli_spec_errors`` DAG instead of hiding other DAGs.
"""

from __future__ import annotations

import contextlib
import gc
import logging
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from airflow.sdk import DAG, Asset, Param, get_parsing_context

# Light imports only: the catalog, the spec models, the store clients and sqlglot are imported by build_dags,
# with the collector kept off Airflow's objects (see _older_objects_frozen)
from dli_airflow import config
from dli_airflow.errors import DliError
from dli_airflow.kinds import ERRORS_DAG_ID  # the errors DAG's id, shared with dli_sync
from dli_airflow.sync import SYNC_DAG_ID

if TYPE_CHECKING:
    from dli_airflow.catalog import SpecEntry, StoreSnapshot
    from dli_airflow.errors import DliError as _DliError
    from dli_airflow.spec import DatasetSpec, ParameterSpec

log = logging.getLogger(__name__)

#: Start of every dataset DAG's schedule: early enough for any backfill people run. UTC for every DAG: the
#: timetable carries the spec's zone, and Airflow 3.3's DAG details show the server's [core] default_timezone
#: whatever a DAG's start date says (so the doc header and description name the zone instead).
START_DATE = datetime(2000, 1, 1, tzinfo=timezone.utc)


@lru_cache(maxsize=1024)
def _cron_text(cron: str) -> str:
    """``0 9 * * *`` → ``At 09:00`` (Airflow's own cron_descriptor, 24-hour clock); the cron if it cannot say."""
    try:
        from cron_descriptor import CasingTypeEnum, ExpressionDescriptor

        return ExpressionDescriptor(cron, casing_type=CasingTypeEnum.Sentence, use_24hour_time_format=True).get_description()
    except Exception:  # noqa: BLE001 - a cron croniter accepts that cron_descriptor cannot read: show the cron
        return f"cron {cron}"


def schedule_text(spec: DatasetSpec) -> str:
    """The schedule as a person reads it, with its time zone (the UI shows times in the viewer's zone and a
    cron summary carries none): ``At 09:00, Asia/Seoul time (0 9 * * *)``; ``when iceberg.raw.clicks is
    updated, or At 09:00, …`` for an asset-or-time schedule; ``triggered only``."""
    schedule = spec.schedule
    if schedule is None:
        return "triggered only (no schedule)"
    timed = f"{_cron_text(schedule.cron)}, {schedule.timezone} time ({schedule.cron})" if schedule.cron else ""
    if not spec.depends_on:
        return timed
    upstream = ", ".join(spec.depends_on)
    assets = f"when {upstream} {'is' if len(spec.depends_on) == 1 else 'are'} updated"
    return f"{assets}, or {timed[0].lower()}{timed[1:]}" if timed else assets
#: Characters of SQL shown in a DAG's doc.
DOC_SQL_LIMIT = 20_000
#: The DAG file's globals are ``<prefix><n>``: names no dataset can take (``dli_`` is reserved).
GLOBALS_PREFIX = "dli_dag_"


def asset_for(name: str) -> Asset:
    """The Airflow asset of a dataset (its DAG's outlet; what ``depends_on`` schedules on)."""
    return Asset(name=name, uri=f"x-dli://dataset/{name}", group="dli")


def param_for(param: ParameterSpec) -> Param:
    """An Airflow ``Param`` for a spec parameter, so the trigger form shows a typed field.

    A required parameter becomes nullable: Airflow 3.3 refuses a scheduled DAG with a required Param
    that has no default, and that error drops every DAG of the file. The operator enforces it.
    """
    from dli_airflow.params import parameter_json_schema

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


def _doc(entry: SpecEntry, engine: str) -> str:
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
        f"- **engine**: `{engine}`",
        f"- **schedule**: {schedule_text(spec)}",
        f"- **parameters**: {params or 'none'}",
    ]
    if spec.depends_on:
        lines.append(f"- **depends on**: {', '.join(f'`{d}`' for d in spec.depends_on)}")
    lines += ["", "```sql", sql.rstrip(), "```"]
    return "\n".join(lines)


def build_dag(entry: SpecEntry, default_engine: str | None = None) -> DAG:
    """The DAG of one store entry.

    :param default_engine: ``[dli] default_engine``, when the caller has read it once for many DAGs (a
        setting read costs ~0.1 ms, a tenth of what dli adds to a DAG).
    """
    from dli_airflow.notifiers import task_callbacks
    from dli_airflow.operators import DatasetQueryOperator

    spec = entry.spec
    engine = spec.engine or default_engine or spec.resolved_engine
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
        doc_md=_doc(entry, engine),
        description=(spec.description or "")[:500] or schedule_text(spec)[:500],
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


def build_errors_dag(problems: list[_DliError], store: str, dag_id: str = ERRORS_DAG_ID) -> DAG:
    """A DAG whose doc lists every problem of the store and whose task fails with the same list."""
    from airflow.providers.standard.operators.python import PythonOperator

    lines = [f"### {len(problems)} problem(s) in the dli spec store `{store}`", ""]
    lines += [f"- **{p.code}** {p.render()}".replace("\n", "\n  ") for p in problems]
    lines += ["", "Fix each file (`dli spec validate` shows the same list); the other datasets run meanwhile."]
    report = "\n".join(f"[{p.code}] {p.render()}" for p in problems)
    dag = DAG(
        dag_id=dag_id,
        schedule=None,
        start_date=START_DATE,
        catchup=False,
        # unpaused, so that the run dli_sync starts when the problems change runs (and fails, showing red);
        # with no schedule it never runs by itself
        is_paused_upon_creation=False,
        tags=["dli", "dli:errors"],
        doc_md="\n".join(lines),
        description=f"{len(problems)} dli spec problem(s): open for the list",
        auto_register=False,
    )
    PythonOperator(task_id="report", dag=dag, python_callable=_fail_with, op_kwargs={"report": report})
    return dag


def errors_dag_id(shard: int = 0) -> str:
    """The errors DAG of a shard: the store's problems are in shard 0's; another shard's lists only the
    datasets of its own that could not become DAGs."""
    return ERRORS_DAG_ID if shard == 0 else f"{ERRORS_DAG_ID}_shard{shard}"


def _check_shard(shard: int, shards: int) -> None:
    if not isinstance(shards, int) or shards < 1 or not isinstance(shard, int) or not 0 <= shard < shards:
        from dli_airflow.errors import ConfigError

        raise ConfigError(
            f"build_dags(shard={shard!r}, shards={shards!r}): the shard must be 0 to shards - 1",
            hint="write one DAG file per shard, from build_dags(shard=0, shards=K) to build_dags(shard=K-1, shards=K)",
        )


def _fail_with(report: str) -> None:
    from airflow.sdk.exceptions import AirflowFailException

    raise AirflowFailException("dli spec store problems:\n" + report)


def build_dags(
    store: str | None = None,
    *,
    snapshot: StoreSnapshot | None = None,
    maintenance: bool | None = None,
    shard: int = 0,
    shards: int = 1,
) -> dict[str, DAG]:
    """Every DAG of the store, keyed by dag_id (the DAG file takes :func:`dag_file_globals` of them).

    :param store: a folder or ``s3://`` URL; default ``[dli] spec_store``.
    :param snapshot: an already scanned store (tests, benchmarks).
    :param maintenance: also emit the ``dli_sync`` DAG; by default only for the configured store (no
        ``store`` and no ``snapshot``, as in the DAG file), since ``dli_sync`` syncs ``[dli] spec_store``.
    :param shard: with ``shards`` > 1, build only the datasets that :func:`shard_of` puts in this shard,
        so K DAG files (shards 0 to K-1) split a large store and the dag-processor parses them in
        parallel (``[dag_processor] parsing_processes``). Shard 0 also carries ``dli_spec_errors`` and
        ``dli_sync``. Every shard reads the same snapshot cache.
    :param shards: the number of DAG files the datasets are split over (default 1: all in this file).
    """
    _check_shard(shard, shards)
    with _older_objects_frozen() as freeze_more:
        return _build_dags(store, snapshot, maintenance, shard, shards, freeze_more)


def _build_dags(
    store: str | None,
    snapshot: StoreSnapshot | None,
    maintenance: bool | None,
    shard: int,
    shards: int,
    freeze_more: Callable[[], None],
) -> dict[str, DAG]:
    from dli_airflow.cache import load_snapshot
    from dli_airflow.catalog import shard_of
    from dli_airflow.spec import check_dataset_name

    errors_id = errors_dag_id(shard)
    given_snapshot = snapshot is not None
    wanted = get_parsing_context().dag_id
    if snapshot is None:
        # a worker (the parsing context names its DAG) of a published store reads only that dataset
        only = wanted if wanted is not None and wanted not in (errors_id, SYNC_DAG_ID) else None
        try:
            snapshot = load_snapshot(store, shard=(shard, shards) if shards > 1 else None, only=only)
        except DliError as exc:
            log.error("dli: cannot read the spec store: [%s] %s", exc.code, exc.render())
            return {errors_id: build_errors_dag([exc], store or "(default)", errors_id)}
    freeze_more()  # the snapshot lives as long as the DAGs: no collection needs to scan it
    dags: dict[str, DAG] = {}
    # the store's own problems belong to shard 0; a shard adds the datasets it failed to build
    problems: list[DliError] = list(snapshot.problems) if shard == 0 else []
    default_engine = config.default_engine()
    for entry in snapshot.active:
        if (wanted is not None and entry.name != wanted) or shard_of(entry.name, shards) != shard:
            continue
        try:
            # the catalog refuses such names; this also covers a snapshot cached before they were refused,
            # so a dataset never takes the place of dli_sync or dli_spec_errors
            check_dataset_name(entry.name)
            dags[entry.name] = build_dag(entry, default_engine)
        except Exception as exc:  # isolation point: one spec never hides the others
            from dli_airflow.errors import SpecValidationError

            problem = SpecValidationError(f"{entry.path}: dataset {entry.name!r} cannot become a DAG: {exc}")
            problems.append(problem)
            log.exception("dli: [%s] %s", problem.code, problem.message)
    if shard == 0:
        for problem in snapshot.problems:
            log.warning("dli: [%s] %s", problem.code, problem.render())
    if problems and wanted in (None, errors_id):
        dags[errors_id] = build_errors_dag(problems, snapshot.store, errors_id)
        if wanted is None and config.get("import_errors").strip().lower() in ("true", "1", "yes", "on"):
            from dli_airflow import import_errors

            import_errors.register(problems, snapshot.store)  # opt-in: Airflow's own import-errors view too
    emit_sync = maintenance if maintenance is not None else (store is None and not given_snapshot and shard == 0)
    if emit_sync and wanted in (None, SYNC_DAG_ID):
        from dli_airflow.sync import build_sync_dag

        try:
            dags[SYNC_DAG_ID] = build_sync_dag()
        except Exception as exc:  # isolation point: the maintenance DAG never hides the datasets
            log.exception("dli: cannot build the %s DAG: %s", SYNC_DAG_ID, exc)
    return dags


@contextlib.contextmanager
def _older_objects_frozen() -> Iterator[Callable[[], None]]:
    """Keep the garbage collector off what already exists while the store is read and the DAGs are built.

    A DAG file is imported into a process holding Airflow's ~200,000 objects, and reading the store and
    building DAGs allocates enough to trigger full collections that scan them all: importing sqlglot in a
    DagBag process took 0.3-0.4 s with the collector scanning them, 0.1 s without, and building from a
    just-unpickled snapshot paid ~0.4 ms a DAG for scans of its young objects. ``gc.freeze`` moves what exists
    out of the collector's reach; the yielded function freezes what was made since (the snapshot, once
    loaded); what the build itself allocates is collected as usual. On leaving, ``gc.unfreeze`` gives it all
    back (to the oldest generation) — unless something had frozen objects before (Airflow's dag-processor
    freezes its heap before forking each parse, so that children do not copy it): then the child keeps them
    frozen, as Airflow wants. A process that turned the collector off keeps it off.
    """
    if not gc.isenabled():
        yield lambda: None
        return
    frozen_before = gc.get_freeze_count() > 0
    gc.freeze()
    try:
        yield gc.freeze
    finally:
        if not frozen_before:
            gc.unfreeze()


def __getattr__(name: str) -> Any:
    """``shard_of`` and ``check_dataset_name`` (the catalog's and the spec's) without importing those modules
    with this one."""
    if name == "shard_of":
        from dli_airflow.catalog import shard_of

        return shard_of
    if name == "check_dataset_name":
        from dli_airflow.spec import check_dataset_name

        return check_dataset_name
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def dag_file_globals(
    store: str | None = None,
    *,
    snapshot: StoreSnapshot | None = None,
    maintenance: bool | None = None,
    shard: int = 0,
    shards: int = 1,
) -> dict[str, DAG]:
    """The DAGs of :func:`build_dags` (same arguments) for a DAG file's ``globals().update(...)``.

    Airflow's DagBag collects every DAG object among a module's globals, whatever its name, and reads some
    globals itself (``__file__``), so the keys are ``dli_dag_0``, ``dli_dag_1``, … in dag_id order: the
    package chooses them, not a spec.
    """
    dags = build_dags(store, snapshot=snapshot, maintenance=maintenance, shard=shard, shards=shards)
    return {f"{GLOBALS_PREFIX}{n}": dags[dag_id] for n, dag_id in enumerate(sorted(dags))}
