"""The CLI and the spec model never import Airflow nor a Google SDK (a `dli spec validate` must not pay for them).

The bare `google` / `google.cloud` namespace packages are imported at start-up by .pth files; they are not counted.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

CHECK = """
import sys
import {modules}
heavy = sorted(m for m in sys.modules if m == "airflow" or m.startswith("airflow.") or m.startswith("google.cloud."))
print(",".join(heavy))
"""


@pytest.mark.parametrize(
    "modules",
    [
        "dli_airflow.cli",
        "dli_airflow.spec",
        "dli_airflow.cli, dli_airflow.spec, dli_airflow.store, dli_airflow.sql, dli_airflow.local, "
        "dli_airflow.engines.duckdb",
    ],
    ids=["cli", "spec", "foundation"],
)
def test_no_airflow_import(modules: str) -> None:
    result = subprocess.run(
        [sys.executable, "-c", CHECK.format(modules=modules)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "", f"importing {modules} pulled in: {result.stdout.strip()}"


def test_spec_validate_runs_without_airflow(tmp_path) -> None:  # noqa: ANN001
    """Run the command in a process where `import airflow` fails: it must still work."""
    blocker = tmp_path / "airflow"
    blocker.mkdir()
    (blocker / "__init__.py").write_text("raise ImportError('airflow must not be imported by dli spec')\n")
    code = (
        f"import sys; sys.path.insert(0, {str(tmp_path)!r}); sys.argv = ['dli', 'spec', 'validate', 'examples/store'];"
        "from dli_airflow.cli import main; main()"
    )
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=root, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "0 errors" in result.stdout
