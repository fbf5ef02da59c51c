"""Fixtures shared by every test layer (unit, integration, e2e). Layer-specific fixtures live beside their tests."""

from __future__ import annotations

import os
import shutil
import signal
import sys
import textwrap
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest


def _tolerant_hypothesis_constants() -> None:
    """Hypothesis harvests constants from every module in ``sys.modules``; after Airflow has parsed DAG files
    in this process, some entries answer attribute access with ``NodeNotFound``, which would fail every
    property test that runs after them. A failed harvest just means no harvested constants."""
    from hypothesis.internal.conjecture import providers

    real = providers._get_local_constants

    def tolerant():  # noqa: ANN202 - hypothesis' own Constants type
        try:
            return real()
        except Exception:  # noqa: BLE001 - see the docstring
            return providers._local_constants

    providers._get_local_constants = tolerant


_tolerant_hypothesis_constants()

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES_STORE = ROOT / "examples" / "store"
SPEC_FIXTURES = ROOT / "tests" / "fixtures" / "specs"


@pytest.fixture
def dli_isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No `[dli]` setting leaks in from the machine: AIRFLOW_HOME is a fresh folder, the env vars are cleared.

    Returns the AIRFLOW_HOME folder; the DuckDB file defaults to ``<home>/dli/dli.duckdb``.
    """
    home = tmp_path / "airflow_home"
    home.mkdir()
    for key in list(os.environ):
        if key.startswith("AIRFLOW__DLI__"):
            monkeypatch.delenv(key)
    monkeypatch.delenv("AIRFLOW_CONFIG", raising=False)
    monkeypatch.setenv("AIRFLOW_HOME", str(home))
    return home


@pytest.fixture
def examples_store() -> Path:
    """The repository's example store (read only: copy it with ``store_copy`` to change it)."""
    return EXAMPLES_STORE


@pytest.fixture
def store_copy(tmp_path: Path) -> Path:
    """A writable copy of the example store."""
    target = tmp_path / "store"
    shutil.copytree(EXAMPLES_STORE, target)
    return target


@pytest.fixture
def make_store(tmp_path: Path) -> Callable[..., Path]:
    """Build a store from ``{"code/a.yaml": text_or_bytes, ...}``; text is dedented. Returns the store root."""

    def make(files: dict[str, str | bytes], root: Path | None = None) -> Path:
        base = root or tmp_path / "store"
        base.mkdir(parents=True, exist_ok=True)
        for rel, content in files.items():
            path = base / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                path.write_bytes(content)
            else:
                path.write_text(textwrap.dedent(content).lstrip("\n"), encoding="utf-8")
        return base

    return make


@pytest.fixture
def interrupt_soon() -> Iterator[Any]:
    """``interrupt_soon(exc_type, after)``: raise ``exc_type`` in this (the main) thread after ``after`` s.

    SIGUSR1, not SIGALRM: pytest-timeout may own SIGALRM.
    """
    assert threading.current_thread() is threading.main_thread()
    previous = signal.getsignal(signal.SIGUSR1)
    timers: list[threading.Timer] = []

    def arm(exc_type: type[BaseException], after: float = 0.5) -> None:
        def handler(signum: int, frame: Any) -> None:
            raise exc_type("interrupted by the test")

        signal.signal(signal.SIGUSR1, handler)
        timer = threading.Timer(after, os.kill, (os.getpid(), signal.SIGUSR1))
        timers.append(timer)
        timer.start()

    yield arm
    for timer in timers:
        timer.cancel()
    signal.signal(signal.SIGUSR1, previous)


@pytest.fixture(scope="session")
def dli_command() -> list[str]:
    """How to run the ``dli`` command in a subprocess: ``python -m dli_airflow.cli`` of the interpreter running
    the tests, else the installed ``dli`` script (one of them must exist: nothing skips)."""
    import importlib.util

    if importlib.util.find_spec("dli_airflow.cli.__main__") is not None:
        return [sys.executable, "-m", "dli_airflow.cli"]
    search = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    found = shutil.which("dli", path=search)
    assert found, f"the dli script is not installed next to {sys.executable} nor on PATH; run `pip install -e .`"
    return [found]


#: The only skips allowed: a test that needs a server this machine cannot run says so with this prefix.
#: Any other skip fails the session, so a missing dependency or a broken fixture never passes as "skipped".
ALLOWED_SKIP_PREFIX = "missing external server:"
_bad_skips: list[str] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped:
        reason = str(report.longrepr[-1]) if isinstance(report.longrepr, tuple) else str(report.longrepr)
        reason = reason.removeprefix("Skipped: ")
        if not reason.startswith(ALLOWED_SKIP_PREFIX):
            _bad_skips.append(f"{report.nodeid}: {reason}")


#: The classes of the hostile corpus (the README's table "The hostile corpus"): every test marked
#: ``@pytest.mark.hostile(kind=...)`` is one or more rows of one class; ``./run test -m hostile`` runs them all
#: and the summary counts them per class.
HOSTILE_KINDS = ("injection", "names", "files", "rendering", "yaml", "required", "writes", "cli-and-secrets", "http-bodies")
_hostile: dict[str, int] = {}


def pytest_collection_finish(session: pytest.Session) -> None:
    for item in session.items:
        for mark in item.iter_markers("hostile"):
            kind = mark.kwargs.get("kind")
            if kind not in HOSTILE_KINDS:
                raise pytest.UsageError(f"{item.nodeid}: hostile(kind={kind!r}) is not one of {HOSTILE_KINDS}")
            _hostile[kind] = _hostile.get(kind, 0) + 1


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _bad_skips:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter, exitstatus: int, config) -> None:  # noqa: ANN001
    if _hostile:
        counts = ", ".join(f"{kind} {_hostile[kind]}" for kind in HOSTILE_KINDS if kind in _hostile)
        terminalreporter.write_line(f"hostile corpus: {sum(_hostile.values())} cases collected ({counts})")
    if _bad_skips:
        terminalreporter.section("skipped without naming a missing external server (this fails the run)")
        for line in _bad_skips:
            terminalreporter.write_line(line)
        terminalreporter.write_line(f"skip only with pytest.skip('{ALLOWED_SKIP_PREFIX} <which server>')")
