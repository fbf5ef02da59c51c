"""The CLI's one error boundary (``dli_airflow.cli._app``): no input ends in a traceback, Ctrl-C is
"cancelled" with exit code 130, and ``-v`` tracebacks are scrubbed of credentials like every other output."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dli_airflow.cli import app
from dli_airflow.errors import scrub

pytestmark = pytest.mark.usefixtures("dli_isolated")

SECRET = "sup3r-s3cret-Pw"


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.hostile(kind="cli-and-secrets")
@pytest.mark.parametrize(
    ("text", "kept"),
    [
        (f"http://AKIA123:{SECRET}@127.0.0.1:9000/bucket", "127.0.0.1:9000/bucket"),
        (f"s3://user:{SECRET}@bucket/prefix", "bucket/prefix"),
        (f"password={SECRET} retry", "retry"),
        (f"{{'password': '{SECRET}', 'login': 'ana'}}", "'login': 'ana'"),
        (f"Authorization: Bearer {SECRET}xyz", "Authorization"),
        (f"https://h/x?token={SECRET}&page=2", "page=2"),
        (f"aws_secret_access_key = {SECRET}", "aws_secret_access_key"),
    ],
)
def test_scrub_removes_credentials_and_keeps_the_rest(text: str, kept: str) -> None:
    out = scrub(text)
    assert SECRET not in out and kept in out


@pytest.mark.hostile(kind="cli-and-secrets")
def test_ctrl_c_in_a_command_is_cancelled_with_exit_130(runner: CliRunner, monkeypatch, examples_store: Path) -> None:
    def interrupted(*args, **kwargs):  # noqa: ANN002, ANN003 - the fault: a Ctrl-C while the store is read
        raise KeyboardInterrupt

    monkeypatch.setattr("dli_airflow.catalog.scan", interrupted)
    result = runner.invoke(app, ["spec", "list", "--store", str(examples_store)])
    assert result.exit_code == 130
    assert "cancelled" in result.output and "Traceback" not in result.output


@pytest.mark.hostile(kind="cli-and-secrets")
def test_an_unexpected_error_is_one_line_without_a_traceback(runner: CliRunner, monkeypatch, examples_store) -> None:
    def broken(*args, **kwargs):  # noqa: ANN002, ANN003 - the fault: a bug below the CLI
        raise RuntimeError(f"boom while reading http://u:{SECRET}@host/x")

    monkeypatch.setattr("dli_airflow.catalog.scan", broken)
    result = runner.invoke(app, ["spec", "list", "--store", str(examples_store)])
    assert result.exit_code == 1
    assert "unexpected RuntimeError: boom while reading http://***@host/x" in result.output
    assert "-v" in result.output and "Traceback" not in result.output and SECRET not in result.output
    verbose = runner.invoke(app, ["-v", "spec", "list", "--store", str(examples_store)])
    assert "Traceback" in verbose.output and SECRET not in verbose.output


@pytest.mark.hostile(kind="cli-and-secrets")
@pytest.mark.parametrize(
    ("args", "code", "text"),
    [
        (["spec", "list", "--source", "bogus"], "DLI-203", "--source 'bogus' is not one of code, manual, all"),
        (["dataset", "run", "analytics.daily_clicks", "-s", "2024-13-01", "-e", "2024-01-02"], "DLI-203",
         "--start '2024-13-01' is not a date"),
        (["dataset", "run", "analytics.daily_clicks", "-p", "nokey"], "DLI-203", "is not key=value"),
        (["spec", "validate", "/no/such/file.yaml"], "DLI-103", "does not exist"),
    ],
)
def test_bad_options_are_dli_errors(runner: CliRunner, examples_store: Path, args, code, text) -> None:
    if args[0] == "dataset":
        args = [*args, "--store", str(examples_store)]
    result = runner.invoke(app, args)
    assert result.exit_code == 1, result.output
    assert f"[{code}]" in result.output and text in " ".join(result.output.split())
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    ("args", "text"),
    [
        (["workflow", "list", "--bogus"], "No such option: --bogus"),
        (["workflow", "run"], "Missing argument"),
        (["workflow", "list", "--limit", "0"], "--limit"),
        (["spec", "nosuchcommand"], "No such command"),
    ],
)
def test_usage_errors_are_typers_usage_message_with_exit_2_not_a_bug_report(runner: CliRunner, args, text) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert text in result.output and "Usage:" in result.output
    assert "unexpected" not in result.output and "report it" not in result.output


@pytest.mark.hostile(kind="cli-and-secrets")
def test_verbose_tracebacks_never_show_a_credentialed_endpoint(dli_command: list[str], tmp_path: Path) -> None:
    """botocore puts the endpoint URL, user info included, into its exception: -v must not print it."""
    env = {
        **os.environ,
        "AWS_ENDPOINT_URL": f"http://AKIAEXAMPLE:{SECRET}@127.0.0.1:{_closed_port()}",
        "AWS_ACCESS_KEY_ID": "AKIAEXAMPLE",
        "AWS_SECRET_ACCESS_KEY": SECRET,
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    done = subprocess.run(
        [*dli_command, "-v", "spec", "list", "--store", "s3://bucket/prefix"],
        env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path, check=False,
    )
    assert done.returncode == 1
    assert "Error [DLI-503]" in done.stderr
    assert SECRET not in done.stderr + done.stdout


@pytest.mark.hostile(kind="cli-and-secrets")
def test_ctrl_c_cancels_a_local_run_and_exits_130(dli_command: list[str], make_store, tmp_path: Path) -> None:
    """A real SIGINT to a real `dli dataset run --local` of a long DuckDB query: the query is cancelled."""
    store = make_store({"code/slow.yaml": "name: s.slow\nowner: me\nquery: SELECT sum(hash(i)) FROM range(100000000000) t(i)\n"})
    proc = subprocess.Popen(
        [*dli_command, "dataset", "run", "s.slow", "--store", str(store), "--duckdb", str(tmp_path / "db.duckdb")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
        # as from a terminal: a suite started in the background (`cmd &` in a script) inherits SIGINT ignored,
        # and Python then leaves it ignored
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    time.sleep(4)  # the query is running by now (the CLI starts in ~1 s)
    started = time.monotonic()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "cancelled" in err and "Traceback" not in err
    assert time.monotonic() - started < 15, "the query was not cancelled"


@pytest.mark.hostile(kind="cli-and-secrets")
def test_a_reader_that_goes_away_ends_the_command_quietly(tmp_path):
    """`dli … | head`: once the reader has closed the pipe, the command stops with 141 (128 + SIGPIPE, as a
    shell reports it) and says nothing about it — not "unexpected BrokenPipeError, please report a bug"."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    store = Path(__file__).resolve().parents[2] / "examples" / "store"
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the first byte is written
    try:
        done = subprocess.run([sys.executable, "-m", "dli_airflow.cli", "spec", "list", "--store", str(store),
                               "--format", "json"], stdout=write_end, stderr=subprocess.PIPE, text=True,
                              timeout=120, cwd=tmp_path)
    finally:
        os.close(write_end)
    assert done.returncode == 141, done.stderr
    assert "BrokenPipe" not in done.stderr and "Error" not in done.stderr, done.stderr
