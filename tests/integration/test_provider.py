"""dli-airflow registers as an Airflow provider: `airflow providers list` and its [dli] config section."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.integration


def _airflow(tmp_path, *args: str) -> str:
    env = {**os.environ, "AIRFLOW_HOME": str(tmp_path)}
    done = subprocess.run([sys.executable, "-m", "airflow", *args], env=env, capture_output=True, text=True,
                          timeout=180)
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
