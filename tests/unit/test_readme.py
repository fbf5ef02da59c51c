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
