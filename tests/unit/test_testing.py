"""The test double users write their unit tests against (the shared contract with the real client is
tests/e2e/test_contract.py); and registering a dataset of a local project by name."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import dli_airflow
from dli_airflow import FakeWorkflowClient, RunStatus, WorkflowClient
from dli_airflow.errors import DatasetNotFoundError, SpecFileNotFoundError, WorkflowExecutionError
from dli_airflow.kinds import DatasetStatus
from dli_airflow.registry import is_spec_path, project_spec_path
from dli_airflow.testing import public_methods, surface_differences

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "store"


@pytest.fixture
def fake():
    with FakeWorkflowClient(store=EXAMPLES) as client:
        yield client


def test_the_fake_has_every_method_of_the_real_client_with_the_same_parameters():
    assert surface_differences() == []
    assert {"run", "backfill", "stop", "get_status", "watch", "register", "update", "history"} <= set(
        public_methods(WorkflowClient))


def test_a_drift_of_the_real_client_is_named():
    class Grown(WorkflowClient):
        def archive(self, dataset_name: str) -> None: ...

        def stop(self, run_id: str, *, dataset: str | None = None, wait: float = 5.0, reason: str = ""): ...

    drift = surface_differences(real=Grown)
    assert any(d.startswith("archive: missing from FakeWorkflowClient") for d in drift)
    assert any(d.startswith("stop:") for d in drift)


def test_runs_move_only_when_the_test_moves_them(fake):
    started = fake.run("analytics.daily_clicks", {"execution_date": "2025-01-01", "min_clicks": "3"})
    assert started.run_id.startswith("mock_") and started.status is RunStatus.PENDING
    assert fake.get_status(started.run_id).status is RunStatus.PENDING  # nothing moves it by itself
    with pytest.raises(WorkflowExecutionError, match="nothing moves it"):
        list(fake.watch(started.run_id))
    fake.start(started.run_id)
    fake.complete(started.run_id, rows=[{"campaign": "spring", "clicks": 4}], rows_affected=1)
    status = fake.get_status(started.run_id)
    assert status.status is RunStatus.COMPLETED and status.result["rows"] == [{"campaign": "spring", "clicks": 4}]
    assert status.run.parameters == {"execution_date": "2025-01-01", "min_clicks": 3}
    assert fake.requests_made == 0


def test_progress_moves_runs_one_step_per_read():
    with FakeWorkflowClient(store=EXAMPLES, progress=["RUNNING", "COMPLETED"]) as fake:
        run_id = fake.run("analytics.daily_clicks", {"execution_date": "2025-01-01"}).run_id
        assert [s.status for s in fake.watch(run_id)] == [RunStatus.RUNNING, RunStatus.COMPLETED]


def test_a_fake_backfill_stops_at_its_first_failed_date(fake):
    started = fake.backfill("analytics.daily_clicks", "2025-01-01", "2025-01-03")
    assert started.backfill_id == 1 and len(started.run_ids) == 3
    first, second, third = started.run_ids
    fake.complete(first)
    fake.fail(second, "[DLI-402] boom")
    runs = fake.wait_backfill(started)
    assert [r.status for r in runs] == [RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.FAILED]
    assert "earlier date" in fake.get_status(third).error_message


def test_registrations_stay_in_the_fakes_copy(fake, tmp_path):
    before = sorted(p.relative_to(EXAMPLES) for p in EXAMPLES.rglob("*"))
    fake.register("analytics.daily_clicks", path=EXAMPLES, force=True, cron="0 1 * * *")
    fake.update("reports.ad_hoc_summary", enabled=True)
    assert sorted(p.relative_to(EXAMPLES) for p in EXAMPLES.rglob("*")) == before
    assert fake.get("reports.ad_hoc_summary").status is DatasetStatus.ACTIVE  # enabled, as dli_sync applies it
    assert (fake.store_path / "manual" / "analytics.daily_clicks.yaml").is_file()


def test_update_of_a_spec_placed_by_hand_rewrites_it_in_place(fake):
    """A manual spec at manual/reports/ad_hoc_summary.yaml (not where dli writes) is updated there: no
    second manual copy of the same name appears (two copies of one name are a conflict)."""
    updated = fake.update("reports.ad_hoc_summary", cron="0 1 * * *")
    assert updated.spec_path == "manual/reports/ad_hoc_summary.yaml"
    names = [i for i in fake.list_workflows().workflows if i.dataset_name == "reports.ad_hoc_summary"]
    assert len(names) == 1 and names[0].cron == "0 1 * * *" and fake.problems()["problems"] == []


def test_the_seed_mock_example_runs_as_written():
    # seed 001 §3.2, with a dataset of examples/store
    api = FakeWorkflowClient(store=EXAMPLES)
    result = api.run("analytics.daily_clicks", {"execution_date": "2025-01-01"})
    assert result.run_id.startswith("mock_")
    assert "FakeWorkflowClient" in dli_airflow.__all__


# -- register by name: the project folder ----------------------------------------------------------------------
def test_a_first_argument_is_a_path_only_when_it_looks_like_one(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "here.yaml").write_text("name: x\n")
    assert is_spec_path("specs/x.yaml") and is_spec_path(Path("x")) and is_spec_path("here.yaml")
    assert not is_spec_path("analytics.daily_clicks") and not is_spec_path("missing.yaml")


def test_a_dataset_is_found_by_name_in_a_folder_of_specs_or_a_store(tmp_path):
    tree = tmp_path / "checkout"
    shutil.copytree(EXAMPLES / "code", tree)
    assert project_spec_path("analytics.daily_clicks", tree) == tree / "analytics" / "daily_clicks.yaml"
    assert project_spec_path("reports.ad_hoc_summary", EXAMPLES) == EXAMPLES / "manual/reports/ad_hoc_summary.yaml"


def test_a_name_not_in_the_project_says_where_it_looked_and_what_is_close(tmp_path):
    with pytest.raises(DatasetNotFoundError) as close:
        project_spec_path("analytics.daily_clickz", EXAMPLES)
    assert "Did you mean: analytics.daily_clicks" in close.value.message and str(EXAMPLES) in close.value.message
    assert "--path" in close.value.hint and close.value.dataset_name == "analytics.daily_clickz"
    (tmp_path / "broken.yaml").write_text("name: team.broken\nowner: a@b.c\nquery: SELECT 1\nengine: oracle\n")
    with pytest.raises(DatasetNotFoundError, match="has a problem"):
        project_spec_path("team.broken", tmp_path)
    with pytest.raises(SpecFileNotFoundError, match="does not exist"):
        project_spec_path("x", tmp_path / "nowhere")


def test_stopping_a_fake_backfill_kills_the_running_date_and_cancels_the_rest(fake):
    started = fake.backfill("analytics.daily_clicks", "2025-01-01", "2025-01-03")
    first, second, third = started.run_ids
    fake.complete(first)
    fake.start(second)
    assert fake.get_status(started.run_id).status is RunStatus.RUNNING
    stopped = fake.stop(started.run_id)
    assert stopped.status is RunStatus.KILLED and "the running one stopped" in stopped.message
    final = fake.get_status(started.run_id)
    assert [r.status for r in final.runs] == [RunStatus.COMPLETED, RunStatus.KILLED, RunStatus.FAILED]
    assert final.status is RunStatus.KILLED and final.is_terminal
