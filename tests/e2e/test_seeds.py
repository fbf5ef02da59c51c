"""The product documents' examples, run as written against a real Airflow (`dli dev up`), with the dataset names
of examples/store: seed 001 §3.1 (library usage), §3.2 (the mock), §3.3 (errors), §9.2, §10; seed 003
appendix A (the command summary). Where the seed's class names differ (``WorkflowAPI(context=…)`` is
``WorkflowClient(url=…)``, ``ExecutionMode.MOCK`` is ``FakeWorkflowClient``) the call is the seed's.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from dli_airflow import (
    FakeWorkflowClient,
    RunStatus,
    SourceType,
    WorkflowClient,
    WorkflowExecutionError,
    WorkflowNotFoundError,
    WorkflowPermissionError,
)
from dli_airflow.kinds import DatasetStatus

DS = "analytics.daily_clicks"
_KEPT = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "VIRTUAL_ENV", "PYTHONPATH")


@pytest.fixture
def api(airflow):
    # 60 s a request: right after a backfill starts, the SQLite metadata DB of this Airflow can hold a write
    # (pause, stop) for over 30 s while the scheduler queues its runs (measured: 2 of 5 runs of this file)
    with WorkflowClient(url=airflow.url, username=airflow.username, password=airflow.password, timeout=60) as client:
        yield client


def test_seed_001_3_1_library_usage(api, e2e_store: Path):
    info = api.get(DS)
    assert info is not None and info.status is DatasetStatus.ACTIVE and info.cron == "0 9 * * *"
    # MANUAL workflow registration by name (a code dataset: stored overridden, with force)
    result = api.register(DS, path=e2e_store, cron="0 9 * * *", timezone="Asia/Seoul", enabled=True, force=True)
    try:
        assert result.workflow_info.dataset_name == DS and result.workflow_info.status is DatasetStatus.OVERRIDDEN
        run_result = api.run(DS, parameters={"execution_date": "2025-01-01"})
        assert run_result.run_id.startswith(f"{DS}__adhoc__") and run_result.status is RunStatus.PENDING
        backfill_result = api.backfill(DS, start_date="2025-01-01", end_date="2025-01-07")
        assert backfill_result.run_id == f"backfill:{backfill_result.backfill_id}"
        status = api.get_status(run_result.run_id)
        assert status.is_running or status.is_terminal
        workflows = api.list_workflows(source_type=SourceType.MANUAL)
        assert DS in {wf.dataset_name for wf in workflows.workflows}
        history = api.history(dataset_name=DS, limit=10, include_dataset_info=True)
        assert run_result.run_id in {run.run_id for run in history.runs}
        assert history.dataset_info[DS].source_type is SourceType.CODE
        api.pause(DS)
        assert api.get(DS).status is DatasetStatus.PAUSED
        api.unpause(DS)
        assert api.get(DS).status is DatasetStatus.ACTIVE
        backfilled = api.get_status(backfill_result.run_id)
        assert len(backfilled.runs) == 7 and backfilled.run.run_type == "backfill"
        # the seed leaves it running; followed here to its end as one id (the next tests start from a quiet DAG)
        final = list(api.watch(backfill_result.run_id, poll=2.0, timeout=600))[-1]
        assert final.status is RunStatus.COMPLETED and [r.status for r in final.runs] == [RunStatus.COMPLETED] * 7
    finally:
        api.unregister(DS)  # only the manual copy: the code one stays
    assert api.get(DS).source_type is SourceType.CODE


def test_seed_001_3_2_mock_mode(e2e_store: Path):
    api = FakeWorkflowClient(store=e2e_store)
    result = api.run(DS, {"execution_date": "2025-01-01"})
    assert result.run_id.startswith("mock_")


def test_seed_001_3_3_error_handling(api):
    with pytest.raises(WorkflowNotFoundError) as e:
        api.run("nonexistent.dataset")
    assert f"[{e.value.code.value}] Workflow not found: {e.value.dataset_name}" == \
        "[DLI-800] Workflow not found: nonexistent.dataset"
    with pytest.raises(WorkflowPermissionError) as denied:  # a code workflow cannot be registered or deleted
        api.unregister(DS)
    assert denied.value.code.value == "DLI-803" and denied.value.message
    with pytest.raises(WorkflowExecutionError) as stop:
        api.stop("invalid_run_id")
    assert stop.value.code.value == "DLI-802" and "invalid_run_id" in stop.value.message


def test_seed_001_9_2_and_10_result_and_status_properties(api):
    result = api.run("e2e.adhoc", parameters={"n": "4"})
    assert result.run_id and result.status is RunStatus.PENDING
    status = list(api.watch(result.run_id, poll=1.0, timeout=180))[-1]
    assert status.is_terminal and not status.is_running
    assert status.duration_seconds is not None and status.error_message is None


def _dli(airflow, e2e_store, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k in _KEPT}
    env.update({"DLI_AIRFLOW_URL": airflow.url, "DLI_AIRFLOW_USERNAME": airflow.username,
                "DLI_AIRFLOW_PASSWORD": airflow.password, "DLI_DEV_HOME": str(e2e_store / "no-dev-home")})
    return subprocess.run([sys.executable, "-m", "dli_airflow.cli", *args], env=env, capture_output=True,
                          text=True, timeout=300)


def test_seed_003_register_by_name_from_the_project_path(airflow, e2e_store, tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    (project / "by_cli.yaml").write_text("name: seeds.by_cli\nowner: tests@example.com\nquery: SELECT 1 AS one\n"
                                         "schedule: {enabled: false, cron: '0 4 * * *'}\n")
    done = _dli(airflow, e2e_store, "workflow", "register", "seeds.by_cli", "--path", str(project), "--cron", "0 5 * * *")
    assert done.returncode == 0, done.stderr
    assert "Registered seeds.by_cli (manual, paused)" in done.stdout
    gone = _dli(airflow, e2e_store, "workflow", "unregister", "seeds.by_cli")
    assert gone.returncode == 0, gone.stderr
    missing = _dli(airflow, e2e_store, "workflow", "register", "seeds.by_clj", "--path", str(project))
    assert missing.returncode == 1 and "Did you mean: seeds.by_cli" in missing.stderr


def test_seed_003_appendix_a_command_summary(airflow, e2e_store):
    def ok(*args: str) -> str:
        done = _dli(airflow, e2e_store, "workflow", *args)
        assert done.returncode == 0, f"dli workflow {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
        return done.stdout

    # execution
    assert "render and parse" in ok("run", "e2e.adhoc", "-p", "n=3", "--dry-run", "-v")
    started = ok("run", "e2e.slow")
    run_id = re.search(r"Run started: (\S+)", started).group(1)
    assert "dry run: would run 3 date(s)" in ok("backfill", DS, "-s", "2024-01-01", "-e", "2024-01-03", "--dry-run")
    assert f"Stopped {run_id}" in ok("stop", run_id)
    # monitoring
    assert run_id in ok("status", run_id) and "KILLED" in ok("status", run_id)
    for source in ("code", "manual", "all"):
        assert "DATASET" in ok("list", "--source", source)
    ok("list", "--running")
    assert DS in ok("list", "--enabled-only")
    assert run_id in ok("history", "-d", "e2e.slow", "--source", "code", "-n", "5", "-s", "KILLED")
    # following a run to its end (also a backfill's id): exit 0 only on COMPLETED
    adhoc = re.search(r"Run started: (\S+)", ok("run", "e2e.adhoc", "-p", "n=2")).group(1)
    assert "COMPLETED" in ok("status", adhoc, "--wait")
    killed = _dli(airflow, e2e_store, "workflow", "status", run_id, "--wait")
    assert killed.returncode == 1 and "KILLED" in killed.stdout
    # schedule management (code and manual alike)
    assert "Paused" in ok("pause", "e2e.adhoc")
    assert "Unpaused" in ok("unpause", "e2e.adhoc")
