"""dli-airflow registers as an Airflow provider: `airflow providers list/get/hooks/notifications`, [dli] config."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.integration


def _airflow(tmp_path, *args: str) -> str:
    env = {**os.environ, "AIRFLOW_HOME": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-m", "airflow", *args], env=env, capture_output=True, text=True, check=False, timeout=180
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_airflow_lists_the_provider(tmp_path):
    providers = json.loads(_airflow(tmp_path, "providers", "list", "-o", "json"))
    (ours,) = [p for p in providers if p["package_name"] == "dli-airflow"]
    assert ours["version"] == __import__("dli_airflow").__version__


def test_the_dli_config_section_is_declared_with_descriptions(tmp_path):
    out = _airflow(tmp_path, "config", "list", "--section", "dli", "--include-descriptions", "--defaults")
    for key in ("spec_store", "default_engine", "duckdb_path", "aws_conn_id", "sync_interval", "cache_dir"):
        assert f"AIRFLOW__DLI__{key.upper()}" in out, key
    assert "Where the Dataset Specs live" in out


def test_providers_get_full_shows_hooks_notifier_and_connection_type(tmp_path):
    (info,) = json.loads(_airflow(tmp_path, "providers", "get", "dli-airflow", "--full", "-o", "json"))
    assert info["package-name"] == "dli-airflow"
    # from the package metadata's Documentation URL: GET /api/v2/providers needs it
    assert info["documentation-url"] == "https://pypi.org/project/dli-airflow/"
    modules = [m for group in info["hooks"] for m in group["python-modules"]]
    assert modules == ["dli_airflow.hooks.airflow_api", "dli_airflow.hooks.trino", "dli_airflow.hooks.bigquery"]
    assert info["notifications"] == ["dli_airflow.notifiers.DatasetNotifier"]
    (conn_type,) = info["connection-types"]
    assert conn_type["connection-type"] == "dli_airflow_api"
    assert conn_type["hook-class-name"] == "dli_airflow.hooks.airflow_api.AirflowApiHook"


def test_the_dli_airflow_api_connection_type_is_registered(tmp_path):
    hooks = {h["connection_type"]: h for h in json.loads(_airflow(tmp_path, "providers", "hooks", "-o", "json"))}
    ours = hooks["dli_airflow_api"]
    assert ours["class"] == "dli_airflow.hooks.airflow_api.AirflowApiHook"
    assert ours["package_name"] == "dli-airflow" and ours["hook_name"] == "dli: Airflow REST API"
    assert ours["conn_id_attribute_name"] == "airflow_api_conn_id"
    # the providers' own connection types stay theirs
    assert hooks["trino"]["package_name"] == "apache-airflow-providers-trino"
    assert hooks["google_cloud_platform"]["package_name"] == "apache-airflow-providers-google"


def test_the_notifier_is_registered(tmp_path):
    notifiers = json.loads(_airflow(tmp_path, "providers", "notifications", "-o", "json"))
    assert {"notification_class_name": "dli_airflow.notifiers.DatasetNotifier"} in notifiers
