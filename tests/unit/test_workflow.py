"""The protocol client and operator share (``dli_airflow.workflow``): run ids, run states, the backfill-stop
rule, and the converters from REST API v2 objects."""

from __future__ import annotations

from datetime import datetime
from types import SimpleNamespace

import pytest

from dli_airflow.errors import WorkflowExecutionError
from dli_airflow.workflow import (
    BACKFILL_TOKEN_KEY,
    KILLED_NOTE_PREFIX,
    RESERVED_CONF_PREFIX,
    RUN_ID_PATTERN,
    RunStatus,
    SourceType,
    check_backfill,
    dataset_of_run_id,
    log_line_text,
    make_run_id,
    run_from_api,
    run_status,
)


def test_run_ids_name_their_dataset():
    run_id = make_run_id("iceberg.analytics.daily_clicks", "adhoc")
    match = RUN_ID_PATTERN.match(run_id)
    assert match and match.group("dataset") == "iceberg.analytics.daily_clicks" and match.group("kind") == "adhoc"
    assert dataset_of_run_id(make_run_id("a__b", "backfill")) == "a__b"
    assert dataset_of_run_id("scheduled__2024-01-01T00:00:00+00:00") is None


def test_run_ids_of_one_dataset_differ_by_their_millisecond_stamp(monkeypatch):
    stamps = iter(["20240101T000000001000", "20240101T000000002000"])

    class _Now:
        @staticmethod
        def now(tz):  # noqa: ANN001, ANN205
            return SimpleNamespace(strftime=lambda fmt: next(stamps))

    monkeypatch.setattr("dli_airflow.workflow.datetime", _Now)
    first, second = make_run_id("a", "adhoc"), make_run_id("a", "adhoc")
    assert first == "a__adhoc__20240101T000000001Z" and second == "a__adhoc__20240101T000000002Z"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"state": "queued"}, RunStatus.PENDING),
        ({"state": "running"}, RunStatus.RUNNING),
        ({"state": "success"}, RunStatus.COMPLETED),
        ({"state": "failed", "note": None}, RunStatus.FAILED),
        ({"state": "failed", "note": f"{KILLED_NOTE_PREFIX} ana through dli"}, RunStatus.KILLED),
    ],
)
def test_airflow_states_map_to_run_states(raw, expected):
    assert run_status(raw) is expected


def test_the_backfill_token_is_a_reserved_conf_key():
    assert BACKFILL_TOKEN_KEY.startswith(RESERVED_CONF_PREFIX)


def test_a_run_hides_dli_conf_keys_from_its_parameters():
    raw = {"dag_run_id": "r", "dag_id": "d", "state": "success", "run_type": "backfill",
           "conf": {"limit": 3, BACKFILL_TOKEN_KEY: "t"}, "start_date": "2024-01-01T00:00:00Z"}
    run = run_from_api(raw, {"tags": [{"name": "source:manual"}]})
    assert run.parameters == {"limit": 3} and run.run_type == "backfill" and run.source_type is SourceType.MANUAL
    assert run.started_at is not None and run.started_at.utcoffset() is not None


def _run(token: str | None, state: str) -> SimpleNamespace:
    return SimpleNamespace(conf={BACKFILL_TOKEN_KEY: token} if token else {}, state=state, run_id="prev")


@pytest.mark.parametrize(
    ("conf", "previous", "stops"),
    [
        ({BACKFILL_TOKEN_KEY: "t1"}, _run("t1", "failed"), True),
        ({BACKFILL_TOKEN_KEY: "t1"}, _run("t1", "DagRunState.FAILED"), True),
        ({BACKFILL_TOKEN_KEY: "t1"}, _run("t1", "success"), False),
        ({BACKFILL_TOKEN_KEY: "t1"}, _run("t0", "failed"), False),  # another backfill's failure
        ({BACKFILL_TOKEN_KEY: "t1"}, None, False),  # the first date
        ({}, _run("t1", "failed"), False),  # not a dli backfill
    ],
)
def test_a_backfill_stops_after_its_own_failed_date(conf, previous, stops):
    if stops:
        with pytest.raises(WorkflowExecutionError, match="earlier date of this backfill failed"):
            check_backfill(conf, previous)
    else:
        check_backfill(conf, previous)


def _previous(state: str, logical: str, ended: str | None) -> SimpleNamespace:
    when = datetime.fromisoformat
    return SimpleNamespace(conf={}, state=state, run_id="prev", logical_date=when(logical),
                           end_date=when(ended) if ended else None)


_BACKFILL = {"id": 7, "from_date": "2024-01-01T00:00:00Z", "to_date": "2024-01-05T00:00:00Z",
             "created_at": "2024-06-01T10:00:00Z", "completed_at": None}


@pytest.mark.parametrize(
    ("previous", "stops"),
    [
        (_previous("failed", "2024-01-02T06:00:00+00:00", "2024-06-01T10:05:00+00:00"), True),
        (_previous("DagRunState.FAILED", "2024-01-01T06:00:00+00:00", "2024-06-01T10:01:00+00:00"), True),
        (_previous("success", "2024-01-02T06:00:00+00:00", "2024-06-01T10:05:00+00:00"), False),
        # failed before this backfill was made, and not run again by it (reprocess_behavior none)
        (_previous("failed", "2024-01-02T06:00:00+00:00", "2024-05-01T00:00:00+00:00"), False),
        # the date before the backfill's range
        (_previous("failed", "2023-12-31T06:00:00+00:00", "2024-06-01T10:05:00+00:00"), False),
        (_previous("failed", "2024-01-02T06:00:00+00:00", None), False),
    ],
)
def test_a_backfill_started_anywhere_stops_after_its_own_failed_date(previous, stops):
    """No token of dli's in conf (the UI's Backfill form, POST /api/v2/backfills): the run's Airflow backfill
    decides whether the previous date failed in it."""
    if stops:
        with pytest.raises(WorkflowExecutionError, match="earlier date of this backfill failed") as stopped:
            check_backfill({}, previous, _BACKFILL)
        assert "a rerun starts again from its first date" in stopped.value.hint
    else:
        check_backfill({}, previous, _BACKFILL)


def test_structured_log_lines_keep_level_and_error():
    item = {"event": "Task failed", "level": "error", "error_detail": [{"exc_type": "X", "exc_value": "boom"}]}
    assert log_line_text(item) == "[error] Task failed | X: boom"
    assert log_line_text("plain") == "plain"


# -- the store joined with Airflow's DAGs (client and control plane alike) ----------------------------------

def _entry(name: str, source: str, status: str, schedule: str = "", overridden_by: str | None = None):
    from dli_airflow.catalog import SpecEntry
    from dli_airflow.spec import DatasetStatus, SourceType, load_spec

    spec = load_spec(f"name: {name}\nowner: me@example.com\nquery: SELECT 1\n{schedule}", f"{source}/{name}.yaml")
    return SpecEntry(spec=spec, source=SourceType(source), status=DatasetStatus(status), path=f"{source}/{name}.yaml",
                     sql="SELECT 1", overridden_by=SourceType(overridden_by) if overridden_by else None)


SEOUL = "schedule:\n  cron: '0 9 * * *'\n  timezone: Asia/Seoul\n"


def test_merge_joins_entries_with_their_dags_and_shows_next_run_in_the_specs_zone():
    from dli_airflow.workflow import merge_workflows

    entries = [
        _entry("a.daily", "code", "active", SEOUL),
        _entry("a.daily", "manual", "overridden", overridden_by="code"),
        _entry("b.new", "manual", "active"),
    ]
    dags = {
        "a.daily": {"dag_id": "a.daily", "is_paused": False, "next_dagrun_run_after": "2026-12-03T00:00:00+00:00",
                    "tags": [{"name": "dli"}]},
        "c.orphan": {"dag_id": "c.orphan", "is_paused": True, "tags": [{"name": "dli"}, {"name": "source:manual"}]},
        "dli_spec_errors": {"dag_id": "dli_spec_errors", "tags": [{"name": "dli"}, {"name": "dli:errors"}]},
    }
    infos = merge_workflows(entries, dags, {"a.daily"})
    assert [(i.dataset_name, i.source_type.value, i.status.value) for i in infos] == [
        ("a.daily", "code", "active"), ("a.daily", "manual", "overridden"), ("b.new", "manual", "active"),
        ("c.orphan", "manual", "paused"),
    ]
    code = infos[0]
    assert code.next_run is not None and code.next_run.isoformat() == "2026-12-03T09:00:00+09:00"
    assert code.is_running and infos[1].next_run is None and not infos[2].in_airflow
    assert [i.dataset_name for i in merge_workflows(entries, dags, set(), only="c.orphan")] == ["c.orphan"]
    # the whole store read (the control plane): a dli DAG without a spec was unregistered and is on its way out
    assert "c.orphan" not in {i.dataset_name for i in merge_workflows(entries, dags, set(), orphans=False)}
    assert merge_workflows(entries, dags, set(), only="c.orphan", orphans=False) == []


def test_select_filters_by_source_status_name_and_running():
    from dli_airflow.spec import DatasetStatus, SourceType
    from dli_airflow.workflow import merge_workflows, select_workflows

    infos = merge_workflows([_entry("a.daily", "code", "active"), _entry("b.x", "manual", "paused")], {}, set())
    assert [i.dataset_name for i in select_workflows(infos, source=SourceType.MANUAL)] == ["b.x"]
    assert [i.dataset_name for i in select_workflows(infos, status=DatasetStatus.ACTIVE)] == ["a.daily"]
    assert [i.dataset_name for i in select_workflows(infos, dataset_filter="DAI")] == ["a.daily"]
    assert select_workflows(infos, running_only=True) == []
    assert [i.dataset_name for i in select_workflows(infos, enabled_only=True)] == ["a.daily"]


def test_a_run_or_try_has_a_duration_only_once_it_has_ended():
    """A running run has no duration yet (its elapsed time is there), and a try that has just started does not
    show the previous try's duration, which Airflow's task instance still carries."""
    from datetime import datetime, timedelta, timezone

    from dli_airflow.workflow import WorkflowRun, task_from_api

    start = datetime.now(timezone.utc) - timedelta(seconds=30)
    running = WorkflowRun(run_id="r", dataset_name="d", status="RUNNING", run_type="adhoc", started_at=start)
    assert running.duration_seconds is None and 29 <= running.elapsed_seconds < 120
    ended = running.model_copy(update={"status": "COMPLETED", "finished_at": start + timedelta(seconds=12)})
    assert ended.duration_seconds == 12 == ended.elapsed_seconds
    retrying = task_from_api({"task_id": "run", "state": "running", "try_number": 2,
                              "start_date": start.isoformat(), "end_date": None, "duration": 302.8})
    assert retrying.duration_seconds is None
    done = task_from_api({"task_id": "run", "state": "success", "try_number": 2, "start_date": start.isoformat(),
                          "end_date": (start + timedelta(seconds=5)).isoformat(), "duration": 5.0})
    assert done.duration_seconds == 5.0


def test_seed_004_names_read_the_same_fields():
    from dli_airflow.workflow import TaskRun, WorkflowRun, WorkflowStatusResult, tasks_from_api

    run = WorkflowRun(run_id="r", dataset_name="d", status="COMPLETED", run_type="backfill", parameters={"n": 1},
                      started_at=datetime.fromisoformat("2024-01-01T00:00:00+00:00"),
                      finished_at=datetime.fromisoformat("2024-01-01T00:00:09+00:00"))
    assert (run.trigger_type, run.input_data, run.ended_at) == ("backfill", {"n": 1}, run.finished_at)
    assert "trigger_type" not in run.model_dump()  # the JSON keeps one name per field
    status = WorkflowStatusResult(run=run, result={"rows": []})
    assert status.output_data == {"rows": []} and status.duration_seconds == 9.0
    assert TaskRun(task_id="run", try_number=3).retry_count == 2 and TaskRun(task_id="run").retry_count == 0
    tasks = tasks_from_api([{"task_id": "late", "start_date": "2024-01-01T00:00:05Z"},
                            {"task_id": "early", "start_date": "2024-01-01T00:00:01Z"}, {"task_id": "waiting"}])
    assert [(t.task_id, t.execution_order) for t in tasks] == [("late", 2), ("early", 1), ("waiting", None)]
