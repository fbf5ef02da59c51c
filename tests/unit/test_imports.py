"""The shape of the package: no import circles, no module over ~600 lines, nothing imports the CLI, the
modules that must never import Airflow don't, and the public names are pinned.

The import graph is read with ``ast`` from the source, counting imports inside functions too (deferred
imports are how circles hide) and skipping ``if TYPE_CHECKING:`` blocks (those never run).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import dli_airflow

PACKAGE = Path(dli_airflow.__file__).parent
#: STYLE.md §1: modules that never import Airflow (a laptop with only the client has none).
NEVER_AIRFLOW = [
    "dli_airflow",
    "dli_airflow.errors",
    "dli_airflow.config",
    "dli_airflow._yaml",
    "dli_airflow.spec",
    "dli_airflow.params",
    "dli_airflow.render",
    "dli_airflow.transpile",
    "dli_airflow.store",
    "dli_airflow.catalog",
    "dli_airflow.storecheck",
    "dli_airflow.cache",
    "dli_airflow.workflow",
    "dli_airflow._api",
    "dli_airflow._runs",
    "dli_airflow.client",
    "dli_airflow.registry",
    "dli_airflow.local",
    "dli_airflow.dev",
    "dli_airflow.cli",
    "dli_airflow.get_provider_info",
    "dli_airflow.engines",
    "dli_airflow.engines.duckdb",
    "dli_airflow.engines.trino",
    "dli_airflow.engines.bigquery",
]
MAX_LINES = 600


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py")) if "dag_files" not in p.parts}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST, module: str) -> set[str]:
    """The dli_airflow modules a module imports, wherever the import statement is (but under TYPE_CHECKING)."""
    found: set[str] = set()
    package = module if MODULES[module].name == "__init__.py" else module.rpartition(".")[0]

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                # `from dli_airflow import config` imports the module dli_airflow.config
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return {name for name in found if name in MODULES and name != module}


GRAPH = {name: _imports(ast.parse(path.read_text(encoding="utf-8")), name) for name, path in MODULES.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module: the catalog's own Tarjan (which finds
    ``depends_on`` cycles), on the import graph."""
    from dli_airflow.storecheck import strong_components

    return strong_components({node: sorted(targets) for node, targets in graph.items()})


def test_the_graph_reader_sees_deferred_imports_and_skips_type_checking():
    tree = ast.parse(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from dli_airflow.client import WorkflowClient\n"
        "def f():\n    from dli_airflow.catalog import scan\n    import dli_airflow.render\n"
        "from dli_airflow import config\n"
    )
    assert _imports(tree, "dli_airflow.spec") == {"dli_airflow.catalog", "dli_airflow.render", "dli_airflow.config"}
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_circles():
    assert _cycles(GRAPH) == []


def test_nothing_outside_the_cli_imports_the_cli():
    def is_cli(name: str) -> bool:
        return name == "dli_airflow.cli" or name.startswith("dli_airflow.cli.")

    offenders = {m: sorted(t for t in ts if is_cli(t)) for m, ts in GRAPH.items() if not is_cli(m)}
    assert {m: ts for m, ts in offenders.items() if ts} == {}


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_module_is_over_600_lines(module):
    lines = MODULES[module].read_text(encoding="utf-8").count("\n")
    assert lines <= MAX_LINES, f"{MODULES[module]} has {lines} lines; split it by concept (STYLE.md §1)"


CHECK = """
import sys
import {module}
heavy = sorted(m for m in sys.modules if m == "airflow" or m.startswith("airflow.") or m.startswith("google.cloud."))
print(",".join(heavy[:5]))
"""


@pytest.mark.parametrize("module", NEVER_AIRFLOW)
def test_no_airflow_import(module: str) -> None:
    """The bare `google` / `google.cloud` namespace packages come from .pth files at start-up; not counted."""
    result = subprocess.run(
        [sys.executable, "-c", CHECK.format(module=module)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "", f"importing {module} pulled in: {result.stdout.strip()}"


def test_spec_validate_runs_without_airflow(tmp_path) -> None:  # noqa: ANN001
    """Run the command in a process where `import airflow` fails: it must still work."""
    blocker = tmp_path / "airflow"
    blocker.mkdir()
    (blocker / "__init__.py").write_text("raise ImportError('airflow must not be imported by dli spec')\n")
    code = (
        f"import sys; sys.path.insert(0, {str(tmp_path)!r}); sys.argv = ['dli', 'spec', 'validate', 'examples/store'];"
        "from dli_airflow.cli import main; main()"
    )
    root = Path(__file__).resolve().parents[2]
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=root, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "0 errors" in result.stdout


#: The public API of ``import dli_airflow``: adding a name is a decision, removing one breaks users.
PUBLIC = [
    "ConfigError", "DatasetNotFoundError", "DatasetNotifier", "DatasetQueryOperator", "DatasetSpec",
    "DatasetStatus", "DevError", "DliError", "ErrorCode", "ExecutionError", "ExecutionPermissionError", "ExecutionTimeoutError",
    "FakeWorkflowClient",
    "NotificationSpec", "ParameterError", "ParameterSpec", "Problem", "ReleaseConflictError", "RetrySpec",
    "RunStatus", "ScheduleSpec",
    "ServerAuthError", "ServerExecutionError", "ServerUnreachableError", "SourceType", "SpecConflictError",
    "SpecEntry", "SpecFileNotFoundError", "SpecSyntaxError", "SpecValidationError", "SqlExecutionError",
    "StoreNotFoundError", "StoreSnapshot", "StoreUnavailableError", "TaskLog", "TaskRun", "TemplateError",
    "TranspileError", "WorkflowClient", "WorkflowExecutionError", "WorkflowHistoryResult", "WorkflowInfo",
    "WorkflowListResult", "WorkflowNotFoundError", "WorkflowPermissionError", "WorkflowRegisterResult",
    "WorkflowRegistrationError", "WorkflowRun", "WorkflowRunResult", "WorkflowStatus", "WorkflowStatusResult",
    "__version__", "build_dags", "load_spec", "open_store", "scan",
]


def test_the_public_names_are_pinned():
    assert sorted(dli_airflow.__all__) == sorted(PUBLIC)
    assert sorted(dli_airflow.__all__) == sorted(["__version__", *dli_airflow._LAZY])


def test_every_public_name_resolves_to_its_defining_object():
    from dli_airflow import client, errors

    assert dli_airflow.WorkflowClient is client.WorkflowClient
    assert dli_airflow.DliError is errors.DliError
    for name in dli_airflow.__all__:
        assert getattr(dli_airflow, name) is not None, name
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        dli_airflow.nope  # noqa: B018


def test_the_client_names_import_no_airflow():
    code = "import sys; from dli_airflow import WorkflowClient, DatasetSpec, DliError; print('airflow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
