"""The DAG factory and the operator, checked on the airflow.sdk objects directly (no server)."""

from __future__ import annotations

import os
import shutil
from datetime import date, datetime, timezone
from pathlib import Path
from types import SimpleNamespace

import duckdb
import pytest
from airflow.sdk import AssetOrTimeSchedule, CronTriggerTimetable  # noqa: E402
from airflow.sdk.exceptions import AirflowFailException  # noqa: E402

from dli_airflow.catalog import scan  # noqa: E402
from dli_airflow.factory import ERRORS_DAG_ID, build_dags  # noqa: E402
from dli_airflow.store import LocalStore  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "store"


@pytest.fixture
def dli_env(tmp_path, monkeypatch):
    monkeypatch.setenv("AIRFLOW__DLI__CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("AIRFLOW__DLI__DUCKDB_PATH", str(tmp_path / "dli.duckdb"))
    monkeypatch.delenv("_AIRFLOW_PARSING_CONTEXT_DAG_ID", raising=False)
    return tmp_path


@pytest.fixture
def example_dags(dli_env):
    return build_dags(str(EXAMPLES))


def test_one_dag_per_active_dataset(example_dags):
    active = {e.name for e in scan(LocalStore(EXAMPLES)).active}
    assert set(example_dags) == active
    assert "analytics.user_metrics" in example_dags
    # the overridden manual copy is not a DAG: the code one is
    assert "source:code" in example_dags["analytics.user_metrics"].tags


def test_each_dags_doc_and_description_name_its_schedules_time_zone(example_dags, dli_env):
    """The UI shows times in the viewer's zone and a cron summary carries none: the doc header says the
    schedule with its zone, and so does the description of a spec that has none."""
    dag = example_dags["analytics.daily_clicks"]
    assert str(dag.timetable.timezone) == "Asia/Seoul"
    assert "**schedule**: At 09:00, Asia/Seoul time (0 9 * * *)" in dag.doc_md
    store = dli_env / "store"
    (store / "code").mkdir(parents=True)
    (store / "code" / "nodesc.yaml").write_text(
        "name: team.nodesc\nowner: o@example.com\nquery: SELECT 1\nschedule: {cron: '30 6 * * *', timezone: Europe/Berlin}\n")
    (store / "code" / "adhoc.yaml").write_text("name: team.adhoc\nowner: o@example.com\nquery: SELECT 1\n")
    dags = build_dags(str(store))
    assert dags["team.nodesc"].description == "At 06:30, Europe/Berlin time (30 6 * * *)"
    assert "triggered only" in dags["team.adhoc"].doc_md


def test_the_schedule_text_names_the_zone_and_reads_asset_or_cron():
    from dli_airflow.factory import schedule_text
    from dli_airflow.spec import DatasetSpec

    def spec(**extra):
        return DatasetSpec.model_validate({"name": "a.b", "owner": "o@example.com", "query": "SELECT 1", **extra})

    assert schedule_text(spec(schedule={"cron": "30 6 * * 1", "timezone": "Europe/Berlin"})) == (
        "At 06:30, only on Monday, Europe/Berlin time (30 6 * * 1)")
    both = schedule_text(spec(schedule={"cron": "0 9 * * *"}, depends_on=["raw.clicks"]))
    assert both == "when raw.clicks is updated, or at 09:00, UTC time (0 9 * * *)"
    assert schedule_text(spec(schedule={}, depends_on=["raw.a", "raw.b"])) == "when raw.a, raw.b are updated"
    assert schedule_text(spec()).startswith("triggered only")


def test_dag_attributes_follow_the_spec(example_dags):
    dag = example_dags["analytics.daily_clicks"]
    assert isinstance(dag.timetable, CronTriggerTimetable)
    assert dag.timetable.expression == "0 9 * * *"
    assert str(dag.timetable.timezone) == "Asia/Seoul"
    assert dag.catchup is False
    assert dag.max_active_runs == 1
    assert dag.is_paused_upon_creation is False
    assert set(dag.tags) == {"dli", "source:code", "@data-engineering"}
    task = dag.get_task("run")
    assert task.owner == "engineer@example.com"
    assert task.retries == 2
    assert task.retry_delay.total_seconds() == 60
    assert [o.name for o in task.outlets] == ["analytics.daily_clicks"]
    assert "FROM raw_clicks" in dag.doc_md and "source**: `code`" in dag.doc_md
    schema = dag.params.get_param("execution_date").schema
    assert schema["type"] == ["null", "string"] and schema["format"] == "date"
    assert dag.params.get_param("min_clicks").schema["type"] == ["null", "integer"]
    assert dag.params["min_clicks"] == 1


def test_paused_spec_is_created_paused(example_dags):
    assert example_dags["reports.ad_hoc_summary"].is_paused_upon_creation is True


def test_depends_on_is_an_asset_or_time_schedule(example_dags):
    dag = example_dags["analytics.campaign_report"]
    assert isinstance(dag.timetable, AssetOrTimeSchedule)
    names = [a.name for a in dag.timetable.asset_condition.objects]
    assert names == ["analytics.daily_clicks"]


@pytest.mark.hostile(kind="required")
def test_bad_param_value_is_rejected_by_the_dag_params(example_dags):
    from airflow.sdk.exceptions import ParamValidationError

    params = example_dags["analytics.daily_clicks"].params
    with pytest.raises(ParamValidationError):
        params.get_param("min_clicks").resolve("many")
    with pytest.raises(ParamValidationError):
        params.get_param("execution_date").resolve("15/01/2024")
    assert params.get_param("execution_date").resolve("2024-01-15") == "2024-01-15"
    assert params.get_param("execution_date").resolve(None) is None


def test_every_dag_survives_serialization(example_dags):
    from airflow.serialization.serialized_objects import DagSerialization

    for dag_id, dag in example_dags.items():
        data = DagSerialization.to_dict(dag)
        back = DagSerialization.from_dict(data)
        assert back.dag_id == dag_id
        assert list(back.task_dict["run"].template_fields) == ["sql"]


def test_broken_spec_is_reported_and_does_not_hide_others(dli_env):
    store = dli_env / "store"
    shutil.copytree(EXAMPLES, store)
    (store / "code" / "broken.yaml").write_text("name: analytics.broken\nowner: me\nquery: SELECT 1\nschedule: {cron: '0 9 * *'}\n")
    dags = build_dags(str(store))
    assert "analytics.daily_clicks" in dags and "analytics.broken" not in dags
    errors = dags[ERRORS_DAG_ID]
    assert "broken.yaml" in errors.doc_md and "schedule.cron" in errors.doc_md and "DLI-201" in errors.doc_md


def test_worker_builds_only_the_dag_it_runs(dli_env, monkeypatch):
    monkeypatch.setenv("_AIRFLOW_PARSING_CONTEXT_DAG_ID", "analytics.daily_clicks")
    assert list(build_dags(str(EXAMPLES))) == ["analytics.daily_clicks"]


def test_unreadable_store_gives_the_errors_dag(dli_env):
    dags = build_dags(str(dli_env / "nope"))
    assert list(dags) == [ERRORS_DAG_ID]
    assert "DLI-102" in dags[ERRORS_DAG_ID].doc_md


def test_dev_up_writes_exactly_the_packaged_dag_file(tmp_path):
    from dli_airflow.dev import _home

    packaged = ROOT / "dli_airflow" / "dag_files" / "dli_datasets.py"
    paths = _home._Paths(tmp_path / "home")
    _home._write_dag_file(paths)
    assert paths.dag_file.read_bytes() == packaged.read_bytes()


def _context(run_type: str, conf: dict | None = None, params: dict | None = None, logical: datetime | None = None):
    dag_run = SimpleNamespace(run_type=run_type, conf=conf or {}, run_after=logical)
    return {"params": params or {}, "dag_run": dag_run, "logical_date": logical}


def test_operator_renders_typed_literals_and_runs_on_duckdb(example_dags, dli_env):
    task = example_dags["analytics.daily_clicks"].get_task("run")
    # 2024-01-16 00:30 UTC is 09:30 in Seoul: the scheduled run of the 16th
    ctx = _context("scheduled", params={"min_clicks": 1}, logical=datetime(2024, 1, 16, 0, 30, tzinfo=timezone.utc))
    task.render_template_fields(ctx)
    assert "DATE '2024-01-16'" in task.sql and "{{" not in task.sql
    summary = task.execute(ctx)
    assert summary["parameters"]["execution_date"] == "2024-01-16"
    assert summary["columns"] == ["click_date", "campaign", "clicks", "users"]
    assert len(summary["rows"]) == 3
    with duckdb.connect(str(dli_env / "dli.duckdb"), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM daily_clicks WHERE click_date = DATE '2024-01-16'").fetchone() == (3,)


@pytest.mark.hostile(kind="required")
def test_operator_refuses_a_manual_run_without_a_required_parameter(example_dags):
    task = example_dags["analytics.daily_clicks"].get_task("run")
    with pytest.raises(AirflowFailException, match="DLI-203.*execution_date"):
        task.render_template_fields(_context("manual", params={"execution_date": None}))


@pytest.mark.hostile(kind="required")
def test_operator_refuses_unknown_conf_keys(example_dags):
    task = example_dags["analytics.daily_clicks"].get_task("run")
    ctx = _context("manual", conf={"execution_date": "2024-01-02", "limt": 3}, params={"execution_date": "2024-01-02"})
    with pytest.raises(AirflowFailException, match="limt.*Allowed parameters: execution_date \\(required\\)"):
        task.render_template_fields(ctx)


def test_operator_fails_with_the_dli_message_when_sql_fails(dli_env):
    store = dli_env / "store"
    (store / "code").mkdir(parents=True)
    (store / "code" / "bad_sql.yaml").write_text("name: bad_sql\nowner: me\nquery: SELECT * FROM no_such_table\n")
    task = build_dags(str(store))["bad_sql"].get_task("run")
    ctx = _context("manual")
    task.render_template_fields(ctx)
    from airflow.sdk.exceptions import AirflowException

    with pytest.raises(AirflowException, match="DLI-405.*no_such_table"):
        task.execute(ctx)
    assert date.today()  # the failing run leaves the database usable
    with duckdb.connect(str(dli_env / "dli.duckdb")) as con:
        con.execute("SELECT 1")


def _backfill_context(previous_conf: dict, previous_state: str):
    previous = SimpleNamespace(run_id="backfill__2024-01-02", state=previous_state, conf=previous_conf)
    ctx = _context("backfill", conf={"__dli_backfill": "tok-1"}, params={"min_clicks": 1},
                   logical=datetime(2024, 1, 3, 0, 0, tzinfo=timezone.utc))
    ctx["ti"] = SimpleNamespace(get_previous_dagrun=lambda: previous)
    return ctx


def test_a_backfill_date_after_a_failed_one_of_the_same_backfill_does_not_run(example_dags):
    task = example_dags["analytics.daily_clicks"].get_task("run")
    with pytest.raises(AirflowFailException, match="an earlier date of this backfill failed"):
        task.render_template_fields(_backfill_context({"__dli_backfill": "tok-1"}, "failed"))


@pytest.mark.parametrize(("conf", "state"), [({"__dli_backfill": "tok-0"}, "failed"), ({"__dli_backfill": "tok-1"}, "success"), ({}, "failed")])
def test_other_backfills_and_successes_do_not_stop_a_date(example_dags, conf, state):
    task = example_dags["analytics.daily_clicks"].get_task("run")
    task.render_template_fields(_backfill_context(conf, state))
    assert "DATE '2024-01-03'" in task.sql


# -- sharding: K DAG files split a large store --------------------------------------------------------


def _many(store: Path, n: int) -> set[str]:
    (store / "code").mkdir(parents=True)
    names = {f"team.ds_{i:03d}" for i in range(n)}
    for name in names:
        (store / "code" / f"{name}.yaml").write_text(
            f"name: {name}\nowner: me@example.com\nquery: SELECT 1\nschedule: {{cron: '0 9 * * *'}}\n"
        )
    return names


def test_shards_split_the_datasets_without_loss_or_overlap(dli_env, monkeypatch):
    store = dli_env / "store"
    names = _many(store, 40)
    (store / "code" / "broken.yaml").write_text("name: team.broken\nowner: me\nquery: SELECT 1\nschedule: {cron: 'x'}\n")
    monkeypatch.setenv("AIRFLOW__DLI__SPEC_STORE", str(store))
    shards = [build_dags(shard=i, shards=3) for i in range(3)]
    datasets = [set(d) - {ERRORS_DAG_ID, "dli_sync"} for d in shards]
    assert set().union(*datasets) == names
    assert sum(len(d) for d in datasets) == len(names)  # each dataset in exactly one file
    assert all(len(d) >= 5 for d in datasets)  # a hash spreads them
    # the store's problems and the maintenance DAG live in shard 0 only
    assert ERRORS_DAG_ID in shards[0] and "broken.yaml" in shards[0][ERRORS_DAG_ID].doc_md
    assert "dli_sync" in shards[0]
    assert not any(k.startswith(ERRORS_DAG_ID) or k == "dli_sync" for d in shards[1:] for k in d)


def test_a_dataset_keeps_its_shard_across_processes_and_releases():
    import subprocess
    import sys

    from dli_airflow.factory import shard_of

    names = ("analytics.daily_clicks", "analytics.user_metrics", "a", "b.c", "sales.orders")
    # golden values: a changed hash would move DAGs between files on upgrade
    assert [shard_of(n, 4) for n in names] == GOLDEN
    # and a process with another str-hash seed puts them in the same files
    code = f"from dli_airflow.factory import shard_of; print([shard_of(n, 4) for n in {names!r}])"
    other = subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONHASHSEED": "12345"},
                           capture_output=True, text=True, check=True)
    assert other.stdout.strip() == str(GOLDEN)
    assert shard_of("anything", 1) == 0


GOLDEN = [2, 2, 3, 2, 1]


def test_a_worker_builds_its_dag_from_its_own_shard(dli_env, monkeypatch):
    from dli_airflow.factory import shard_of

    store = dli_env / "store"
    names = sorted(_many(store, 12))
    target = names[5]
    home = shard_of(target, 3)
    monkeypatch.setenv("_AIRFLOW_PARSING_CONTEXT_DAG_ID", target)
    assert list(build_dags(str(store), shard=home, shards=3)) == [target]
    assert build_dags(str(store), shard=(home + 1) % 3, shards=3) == {}


def test_a_dataset_a_shard_cannot_build_is_listed_in_that_shards_errors_dag(dli_env, monkeypatch):
    import dli_airflow.factory as factory

    store = dli_env / "store"
    names = sorted(_many(store, 12))
    victim = next(n for n in names if factory.shard_of(n, 2) == 1)
    real = factory.build_dag

    def failing(entry, *args):  # Airflow refusing one DAG: no valid spec makes it fail on purpose
        if entry.name == victim:
            raise ValueError("refused by Airflow")
        return real(entry, *args)

    monkeypatch.setattr(factory, "build_dag", failing)
    one = build_dags(str(store), shard=1, shards=2)
    assert victim not in one and f"{ERRORS_DAG_ID}_shard1" in one
    assert victim in one[f"{ERRORS_DAG_ID}_shard1"].doc_md and "refused by Airflow" in one[f"{ERRORS_DAG_ID}_shard1"].doc_md
    assert ERRORS_DAG_ID not in build_dags(str(store), shard=0, shards=2)


@pytest.mark.parametrize("shard, shards", [(3, 3), (-1, 2), (0, 0)])
def test_a_wrong_shard_says_how_to_write_the_files(dli_env, shard, shards):
    from dli_airflow.errors import ConfigError

    with pytest.raises(ConfigError) as info:
        build_dags(str(EXAMPLES), shard=shard, shards=shards)
    assert "shard=0, shards=K" in info.value.render()


def test_airflow_parses_shard_files_into_every_dag_once(dli_env, monkeypatch, tmp_path):
    """Airflow's own DagBag (what the dag-processor runs per file) over a folder of 3 shard files."""
    from airflow.dag_processing.dagbag import BundleDagBag

    store = dli_env / "store"
    names = _many(store, 30)
    monkeypatch.setenv("AIRFLOW__DLI__SPEC_STORE", str(store))
    dags_dir = tmp_path / "dags"
    dags_dir.mkdir()
    for i in range(3):
        (dags_dir / f"dli_datasets_{i}.py").write_text(
            f"from dli_airflow.factory import dag_file_globals\n\nglobals().update(dag_file_globals(shard={i}, shards=3))\n"
        )
    bag = BundleDagBag(dag_folder=dags_dir, bundle_path=dags_dir, bundle_name="t", load_op_links=False)
    assert not bag.import_errors
    assert set(bag.dags) == names | {"dli_sync"}
    files = {bag.dags[n].fileloc for n in names}
    assert len(files) == 3


# -- the DAG file's globals: names the package controls (issue 13) -------------------------------------------


@pytest.mark.hostile(kind="names")
def test_dag_file_globals_key_the_dags_by_package_names_only(dli_env, monkeypatch):
    from dli_airflow.factory import GLOBALS_PREFIX, dag_file_globals

    monkeypatch.setenv("AIRFLOW__DLI__SPEC_STORE", str(EXAMPLES))
    by_id = build_dags()
    module = dag_file_globals()
    assert list(module) == [f"{GLOBALS_PREFIX}{n}" for n in range(len(by_id))]
    assert [d.dag_id for d in module.values()] == sorted(by_id)  # the same DAGs, in dag_id order
    assert "dli_sync" in by_id and not set(module) & set(by_id)


@pytest.mark.hostile(kind="names")
def test_the_packaged_dag_file_never_puts_a_dataset_name_in_its_globals():
    import ast

    source = (ROOT / "dli_airflow" / "dag_files" / "dli_datasets.py").read_text()
    calls = [n for n in ast.walk(ast.parse(source)) if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)]
    [update] = [c for c in calls if c.func.attr == "update"]
    assert ast.unparse(update) == "globals().update(dag_file_globals())"
    assert "airflow" in source and "dag" in source  # the DagBag's safe mode imports only such files


@pytest.mark.hostile(kind="names")
@pytest.mark.parametrize("name", ["dli_sync", "dli_spec_errors", "__file__", ".hidden"])
def test_a_cached_entry_with_a_reserved_name_never_replaces_a_dli_dag(dli_env, name):
    """A snapshot cached before such names were refused: the factory refuses them too."""
    import dataclasses

    from dli_airflow.spec import DatasetSpec

    snapshot = scan(LocalStore(EXAMPLES))
    good = snapshot.active[0]
    hostile = dataclasses.replace(good, spec=DatasetSpec.model_construct(**{**dict(good.spec), "name": name}))
    snapshot = dataclasses.replace(snapshot, entries=(*snapshot.entries, hostile))
    dags = build_dags(snapshot=snapshot, maintenance=True)
    assert set(dags) == {e.name for e in snapshot.active if e is not hostile} | {ERRORS_DAG_ID, "dli_sync"}
    assert "source:code" not in dags["dli_sync"].tags  # still the maintenance DAG, not the dataset
    assert f"dataset {name!r} cannot become a DAG" in dags[ERRORS_DAG_ID].doc_md
    assert [t.task_id for t in dags[ERRORS_DAG_ID].tasks] == ["report"]



def test_building_dags_gives_the_collector_back_everything_it_froze(dli_env, monkeypatch):
    """build_dags keeps the garbage collector off the objects that existed before (gc.freeze) only while it
    reads the store and builds: afterwards nothing stays frozen (a long-lived process would otherwise never
    collect them), also when a DAG fails to build; what someone else froze stays frozen; a process that
    turned the collector off keeps it off."""
    import gc

    import dli_airflow.factory as factory

    store = dli_env / "store"
    names = sorted(_many(store, 4))
    seen: list[int] = []
    real = factory.build_dag

    def watching(entry, *args):
        seen.append(gc.get_freeze_count())
        if entry.name == names[0]:
            raise ValueError("refused by Airflow")
        return real(entry, *args)

    monkeypatch.setattr(factory, "build_dag", watching)
    dags = build_dags(str(store))
    assert set(names[1:]) <= set(dags) and ERRORS_DAG_ID in dags
    assert seen and all(count > 0 for count in seen)  # frozen while building
    assert gc.get_freeze_count() == 0 and gc.isenabled()
    # Airflow's dag-processor freezes its heap before it forks a parse: the child keeps it frozen
    gc.freeze()
    try:
        frozen = gc.get_freeze_count()
        build_dags(str(store))
        assert gc.get_freeze_count() >= frozen
    finally:
        gc.unfreeze()
    gc.disable()
    try:
        seen.clear()
        build_dags(str(store))
        assert seen and all(count == 0 for count in seen) and not gc.isenabled()
    finally:
        gc.enable()
