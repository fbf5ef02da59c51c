"""The README stays true: its two commands, the CI command and the generated error table."""

from __future__ import annotations

import re
from pathlib import Path

from dli_airflow.errors import markdown_table

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


def test_readme_opens_with_the_demo_and_the_test_command():
    first_block = re.search(r"```bash\n(.*?)```", README, re.S).group(1)
    commands = [line.split("#")[0].strip() for line in first_block.strip().splitlines()]
    assert commands == ["./run demo", "./run test"]


def test_ci_runs_the_readme_test_command():
    assert "./run test" in (ROOT / ".ci" / "run").read_text()


def test_error_table_is_generated_from_errors_py():
    assert markdown_table() in README, "regenerate it: python -m dli_airflow.errors"


def test_shipped_json_schema_is_current():
    import json

    from dli_airflow.spec import json_schema

    shipped = json.loads((ROOT / "examples" / "dataset-spec.schema.json").read_text())
    assert shipped == json_schema(), "regenerate it: dli spec schema -o examples/dataset-spec.schema.json"


def test_the_readmes_validation_example_is_what_dli_prints():
    """The README's `dli spec validate` example names a file that exists and shows the error it gives."""
    import os
    import subprocess
    import sys

    example = re.search(r"```text\n\$ (dli spec validate \S+)\n(error \[DLI-\d+\][^\n]*)\n", README)
    assert example, "the README's validation example is gone"
    command, shown = example.group(1), example.group(2)
    path = command.split()[-1]
    assert (ROOT / path).is_file(), f"the README validates {path}, which does not exist"
    out = subprocess.run([sys.executable, "-m", "dli_airflow.cli", *command.split()[1:]], cwd=ROOT,
                         capture_output=True, text=True, env={**os.environ, "COLUMNS": "400"})
    assert out.returncode == 1
    assert shown in (out.stdout + out.stderr).splitlines()
