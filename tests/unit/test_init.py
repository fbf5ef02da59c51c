"""`dli init`: a new store a user can run at once, and never a file overwritten."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dli_airflow.catalog import scan
from dli_airflow.cli import app
from dli_airflow.cli.init import LAYOUT

DLI = [sys.executable, "-m", "dli_airflow.cli"]


def test_init_makes_a_store_whose_example_runs_at_once(tmp_path):
    target = tmp_path / "new-store"
    made = CliRunner().invoke(app, ["init", str(target)])
    assert made.exit_code == 0, made.output
    spec = target / "code/example/daily_orders.yaml"
    assert f"dli dataset run {spec} --local" in made.output and (target / "manual").is_dir()
    # the printed command works as printed (with a date, so the figures are fixed)
    ran = subprocess.run([*DLI, "dataset", "run", str(spec), "--local", "-p", "min_amount=50", "-p",
                          "execution_date=2024-05-01", "--format", "json"], capture_output=True, text=True, timeout=120)
    assert ran.returncode == 0, ran.stderr
    (run,) = json.loads(ran.stdout)["runs"]
    assert run["rows"] == [{"day": "2024-05-01", "orders": 500, "total": 37250}]
    snapshot = scan(target)  # and it is a store: the example is its one active code dataset, paused
    assert [(e.name, e.source.value, e.status.value) for e in snapshot.entries] == [
        ("example.daily_orders", "code", "paused")]
    assert snapshot.problems == ()


def test_init_never_overwrites_a_file(tmp_path):
    runner = CliRunner()
    assert runner.invoke(app, ["init", str(tmp_path)]).exit_code == 0
    sql = tmp_path / "code/example/daily_orders.sql"
    sql.write_text("SELECT 'mine' AS kept")
    again = runner.invoke(app, ["init", str(tmp_path)])
    assert again.exit_code == 1 and "DLI-204" in again.output and "never overwrites" in again.output
    assert sql.read_text() == "SELECT 'mine' AS kept"


def test_init_refuses_a_file_as_the_folder_and_writes_nothing_on_a_conflict(tmp_path):
    afile = tmp_path / "store.txt"
    afile.write_text("x")
    refused = CliRunner().invoke(app, ["init", str(afile)])
    assert refused.exit_code == 1 and "is a file, not a folder" in refused.output
    partial = tmp_path / "partial"
    (partial / "code/example").mkdir(parents=True)
    (partial / "code/example/daily_orders.sql").write_text("SELECT 1")
    assert CliRunner().invoke(app, ["init", str(partial)]).exit_code == 1
    assert not (partial / "code/example/daily_orders.yaml").exists() and not (partial / "manual").exists()


@pytest.mark.parametrize("rel", [rel for rel, text in LAYOUT.items() if text is not None])
def test_every_file_of_the_layout_is_checked(tmp_path, rel):
    (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / rel).write_text("mine")
    assert CliRunner().invoke(app, ["init", str(tmp_path)]).exit_code == 1
    assert (tmp_path / rel).read_text() == "mine"


def test_a_dataset_of_a_project_folder_runs_by_name_with_path(tmp_path):
    """--path (seed 003 §3.2: the project path): the dataset found by name in a folder of specs or a store."""
    assert CliRunner().invoke(app, ["init", str(tmp_path)]).exit_code == 0
    for folder in (tmp_path, tmp_path / "code"):
        ran = subprocess.run([*DLI, "dataset", "run", "example.daily_orders", "--local", "--path", str(folder),
                              "-p", "execution_date=2024-05-01", "--format", "json"],
                             capture_output=True, text=True, timeout=120)
        assert ran.returncode == 0, ran.stderr
        assert json.loads(ran.stdout)["runs"][0]["rows"][0]["orders"] == 900
    missing = CliRunner().invoke(app, ["dataset", "run", "example.daily_orderz", "--local", "--path", str(tmp_path)])
    assert missing.exit_code == 1 and "Did you mean: example.daily_orders" in missing.output
