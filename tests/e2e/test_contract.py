"""One contract, two clients: every test here runs on ``WorkflowClient`` against the real Airflow of the session
fixture and on ``FakeWorkflowClient`` over a copy of the same store, and asserts what a user sees — the same
results, the same errors (class and DLI code). Where the two must differ (the fake's runs do not execute, so
the test moves them), :func:`settle` is the only place that knows.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from dli_airflow import (
    FakeWorkflowClient,
    ParameterError,
    RunStatus,
    SourceType,
    WorkflowClient,
    WorkflowExecutionError,
    WorkflowNotFoundError,
    WorkflowPermissionError,
    WorkflowRegistrationError,
)
from dli_airflow.kinds import DatasetStatus

PROJECT_SPEC = """\
name: contract.by_name
owner: tests@example.com
description: registered by name from a project folder by the contract suite
query: SELECT {{ n }} + 1 AS plus_one
parameters:
  - {name: n, type: integer, default: 1}
schedule:
  enabled: false
  cron: "0 3 * * *"
"""


@pytest.fixture(params=["real", "fake"])
def wf(request, e2e_store: Path):
    if request.param == "fake":
        with FakeWorkflowClient(store=e2e_store) as fake:
            yield fake
        return
    airflow = request.getfixturevalue("airflow")
    with WorkflowClient(url=airflow.url, username=airflow.username, password=airflow.password) as client:
        yield client


def settle(wf, run_id: str, to: RunStatus):
    """The run's last status once it has ended: the real one is waited for, the fake one is moved there."""
    if isinstance(wf, FakeWorkflowClient):
        if to is RunStatus.COMPLETED:
            wf.complete(run_id)
        elif to is RunStatus.FAILED:
            wf.fail(run_id, "[DLI-402] Catalog Error: Table with name e2e_no_such_table does not exist!")
        else:
            wf.start(run_id)
            return wf.get_status(run_id)
    else:
        if to is RunStatus.RUNNING:
            for status in wf.watch(run_id, poll=0.5, timeout=120):
                if status.status is RunStatus.RUNNING:
                    return status
    return list(wf.watch(run_id, poll=1.0, timeout=180))[-1]


def test_reads_join_the_store_with_airflow(wf):
    info = wf.get("analytics.daily_clicks")
    assert info is not None and info.source_type is SourceType.CODE
    assert (info.cron, info.timezone) == ("0 9 * * *", "Asia/Seoul")
    assert wf.get("no.such.dataset") is None
    manual = {i.dataset_name: i for i in wf.list_workflows(source_type="manual").workflows}
    overridden = manual["analytics.user_metrics"]
    assert overridden.status is DatasetStatus.OVERRIDDEN and overridden.overridden_by is SourceType.CODE
    assert all(i.source_type is SourceType.MANUAL for i in manual.values())


def test_parameters_are_checked_against_the_spec_before_a_run(wf):
    with pytest.raises(ParameterError) as unknown:
        wf.run("e2e.adhoc", {"nope": 1})
    assert unknown.value.code.value.startswith("DLI-2") and "nope" in unknown.value.message
    with pytest.raises(ParameterError) as typed:
        wf.run("e2e.adhoc", {"n": "twenty"})
    assert "'n'" in typed.value.message
    with pytest.raises(WorkflowNotFoundError) as missing:
        wf.run("no.such.dataset")
    assert missing.value.code.value == "DLI-800" and missing.value.dataset_name == "no.such.dataset"


def test_a_run_completes_with_its_coerced_parameters(wf):
    started = wf.run("e2e.adhoc", {"n": "5"})
    assert started.action == "run" and started.status in (RunStatus.PENDING, RunStatus.RUNNING)
    final = settle(wf, started.run_id, RunStatus.COMPLETED)
    assert final.status is RunStatus.COMPLETED and final.is_terminal and not final.is_running
    assert final.run.parameters == {"n": 5}  # coerced against the spec: an integer, not "5"
    assert final.duration_seconds is not None and final.duration_seconds >= 0
    assert wf.history("e2e.adhoc", limit=5).runs[0].run_id == started.run_id  # newest first


def test_a_failed_run_reads_failed_with_its_error(wf):
    started = wf.run("e2e.failing")
    final = settle(wf, started.run_id, RunStatus.FAILED)
    assert final.status is RunStatus.FAILED
    assert final.error_message and "e2e_no_such_table" in final.error_message
    assert wf.history("e2e.failing", run_status="FAILED", limit=5).runs[0].run_id == started.run_id


def test_stop_kills_a_running_run_once(wf):
    started = wf.run("e2e.slow")
    settle(wf, started.run_id, RunStatus.RUNNING)
    stopped = wf.stop(started.run_id)
    assert stopped.run_status is RunStatus.KILLED and stopped.status is RunStatus.KILLED
    assert wf.get_status(started.run_id).status is RunStatus.KILLED
    with pytest.raises(WorkflowExecutionError, match="already ended"):
        wf.stop(started.run_id)
    with pytest.raises(WorkflowExecutionError) as unknown:
        wf.get_status("no-such-run-id")
    assert unknown.value.code.value == "DLI-802" and unknown.value.run_id == "no-such-run-id"


def test_code_workflows_cannot_be_changed_or_deleted(wf):
    for attempt in (lambda: wf.unregister("analytics.daily_clicks"),
                    lambda: wf.update("analytics.daily_clicks", cron="0 1 * * *")):
        with pytest.raises(WorkflowPermissionError) as denied:
            attempt()
        assert denied.value.code.value == "DLI-803"
    with pytest.raises(WorkflowPermissionError) as overridden:
        wf.unpause("analytics.user_metrics", source_type="manual")  # the overridden manual copy
    assert "overridden by code" in overridden.value.message and "removing the code spec" in overridden.value.hint


def test_register_by_name_update_and_unregister(wf, tmp_path):
    project = tmp_path / "project"
    (project / "contract").mkdir(parents=True)
    (project / "contract" / "by_name.yaml").write_text(PROJECT_SPEC)
    registered = wf.register("contract.by_name", path=project, timezone="Asia/Seoul")
    try:
        assert registered.source_type is SourceType.MANUAL
        assert (registered.workflow_info.cron, registered.workflow_info.timezone) == ("0 3 * * *", "Asia/Seoul")
        with pytest.raises(WorkflowRegistrationError) as again:
            wf.register("contract.by_name", path=project)
        assert again.value.code.value == "DLI-801"
        updated = wf.update("contract.by_name", cron="30 4 * * *")
        assert updated.workflow_info.cron == "30 4 * * *" and updated.workflow_info.timezone == "Asia/Seoul"
    finally:
        wf.unregister("contract.by_name")
    assert wf.get("contract.by_name") is None


def test_backfill_dry_run_lists_the_scheduled_dates(wf):
    planned = wf.backfill("e2e.daily", "2021-03-01", "2021-03-03", dry_run=True)
    assert planned.dry_run and planned.backfill_id is None
    assert [d.isoformat() for d in planned.logical_dates] == [
        "2021-03-01T06:00:00+00:00", "2021-03-02T06:00:00+00:00", "2021-03-03T06:00:00+00:00"]
    with pytest.raises(ParameterError, match="execution_date"):
        wf.backfill("e2e.daily", "2021-03-01", "2021-03-03", {"execution_date": "2021-03-01"})


def test_a_backfill_is_one_id_for_status_history_and_stop(wf):
    started = wf.backfill("e2e.daily", "2021-05-01", "2021-05-02", {"label": "contract"})
    assert started.run_id == f"backfill:{started.backfill_id}" and len(started.run_ids) == 2
    if isinstance(wf, FakeWorkflowClient):
        for run_id in started.run_ids:
            wf.complete(run_id)
    final = list(wf.watch(started.run_id, poll=1.0, timeout=240))[-1]
    assert final.status is RunStatus.COMPLETED and final.run.run_type == "backfill"
    assert [r.logical_date.date().isoformat() for r in final.runs] == ["2021-05-01", "2021-05-02"]
    assert final.run.parameters == {"label": "contract"}
    assert {r.run_id for r in wf.history(started.run_id).runs} == set(started.run_ids)
    with pytest.raises(WorkflowExecutionError, match="already ended"):
        wf.stop(started.run_id)
    with pytest.raises(WorkflowExecutionError, match="its own log"):
        wf.logs(started.run_id)
    with pytest.raises(WorkflowExecutionError, match="No backfill 99999"):
        wf.get_status("backfill:99999")
