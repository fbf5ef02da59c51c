"""What the client decides by itself (no server): configuration errors, no credentials shown, no Airflow import."""

from __future__ import annotations

import subprocess
import sys

import pytest

from dli_airflow.client import WorkflowClient
from dli_airflow.errors import ServerAuthError, ServerUnreachableError


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
    shown = repr(client) + repr(client._api) + repr(client._api.auth)
    assert "s3cret" not in shown and "http://127.0.0.1:9" in shown


def test_client_module_imports_no_airflow():
    code = "import sys, dli_airflow.client, dli_airflow.cli.workflow; print('airflow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
