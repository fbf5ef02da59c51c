"""The `dli spec` and `dli dataset run --local` commands, through typer's CliRunner and as a real subprocess."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import duckdb
import jsonschema
import pytest
import yaml
from typer.testing import CliRunner

from dli_airflow.cli import app

pytestmark = pytest.mark.usefixtures("dli_isolated")

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "specs"
MakeStore = Callable[..., Path]
DAILY = "analytics.daily_clicks"


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def bad_store(make_store: MakeStore) -> Path:
    return make_store(
        {
            "code/good.yaml": "name: s.good\nowner: me\nquery: SELECT 1\n",
            "code/bad.yaml": (
                "name: s.bad\nowner: me\nquery: SELECT 1\nschedule:\n  cron: '0 9 * * *'\n  retry: {max_attemps: 3}\n"
            ),
        }
    )


def _tables(db: Path) -> set[str]:
    if not db.exists():
        return set()
    conn = duckdb.connect(str(db), read_only=True)
    try:
        return {r[0] for r in conn.execute("SELECT table_name FROM information_schema.tables").fetchall()}
    finally:
        conn.close()


# -- dli spec validate --------------------------------------------------------------------------------------


def test_validate_example_store(runner: CliRunner, examples_store: Path) -> None:
    result = runner.invoke(app, ["spec", "validate", str(examples_store)])
    assert result.exit_code == 0, result.output
    assert "5 valid, 0 errors" in result.stdout
    assert "analytics.daily_clicks" in result.stdout


def test_validate_store_with_a_bad_file(runner: CliRunner, bad_store: Path) -> None:
    result = runner.invoke(app, ["spec", "validate", str(bad_store)])
    assert result.exit_code == 1
    assert "[DLI-201]" in result.stderr
    assert f"{bad_store}/code/bad.yaml" in result.stderr
    assert "schedule.retry.max_attemps" in result.stderr and "did you mean 'max_attempts'?" in result.stderr
    assert "1 valid, 1 error" in result.stderr
    assert "Traceback" not in result.output
    assert "s.good" in result.stdout


def test_validate_json(runner: CliRunner, bad_store: Path) -> None:
    result = runner.invoke(app, ["spec", "validate", str(bad_store), "--format", "json"])
    assert result.exit_code == 1
    data = json.loads(result.stdout)
    assert data["ok"] is False
    assert [v["dataset"] for v in data["valid"]] == ["s.good"]
    [error] = data["errors"]
    assert error["code"] == "DLI-201"
    assert error["problems"][0]["field"] == "schedule.retry.max_attemps"
    assert error["problems"][0]["file"] == f"{bad_store}/code/bad.yaml"


def test_validate_files_and_folders_of_fixtures(runner: CliRunner) -> None:
    good = runner.invoke(app, ["spec", "validate", str(FIXTURES / "good")])
    assert good.exit_code == 0, good.output
    assert "4 valid, 0 errors" in good.stdout
    bad_files = sorted((FIXTURES / "bad").glob("*.y*ml"))
    bad = runner.invoke(app, ["spec", "validate", "-f", "json", *map(str, bad_files)])
    assert bad.exit_code == 1
    data = json.loads(bad.stdout)
    assert data["valid"] == [] and len(data["errors"]) == len(bad_files)


def test_validate_missing_path(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(app, ["spec", "validate", str(tmp_path / "nope.yaml")])
    assert result.exit_code == 1
    assert "[DLI-103]" in result.stderr and "nope.yaml" in result.stderr


# -- dli spec list ------------------------------------------------------------------------------------------


def test_list_shows_the_overridden_manual_spec(runner: CliRunner, examples_store: Path) -> None:
    result = runner.invoke(app, ["spec", "list", "--store", str(examples_store)])
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stdout.splitlines() if "analytics.user_metrics" in line]
    assert len(lines) == 2
    assert any("manual" in line and "overridden (by code)" in line for line in lines)
    assert any("code" in line and "active" in line for line in lines)


def test_list_source_manual(runner: CliRunner, examples_store: Path) -> None:
    result = runner.invoke(app, ["spec", "list", "--store", str(examples_store), "--source", "manual", "-f", "json"])
    assert result.exit_code == 0, result.output
    rows = {(d["dataset"], d["status"]) for d in json.loads(result.stdout)["datasets"]}
    assert rows == {("analytics.user_metrics", "overridden"), ("reports.ad_hoc_summary", "paused")}
    table = runner.invoke(app, ["spec", "list", "--store", str(examples_store), "--source", "manual"])
    assert "analytics.daily_clicks" not in table.stdout and "reports.ad_hoc_summary" in table.stdout


def test_list_json_fields(runner: CliRunner, examples_store: Path) -> None:
    data = json.loads(runner.invoke(app, ["spec", "list", "--store", str(examples_store), "-f", "json"]).stdout)
    daily = next(d for d in data["datasets"] if d["dataset"] == DAILY)
    assert daily == {
        "dataset": DAILY,
        "source": "code",
        "status": "active",
        "overridden_by": None,
        "cron": "0 9 * * *",
        "timezone": "Asia/Seoul",
        "owner": "engineer@example.com",
        "engine": "duckdb",
        "file": "code/analytics/daily_clicks.yaml",
    }
    assert data["errors"] == []


def test_list_warns_about_broken_specs(runner: CliRunner, bad_store: Path) -> None:
    result = runner.invoke(app, ["spec", "list", "--store", str(bad_store)])
    assert result.exit_code == 0
    assert "s.good" in result.stdout and "s.bad" not in result.stdout
    assert "1 spec file(s) have problems" in result.stderr


def test_list_uses_the_configured_store(
    runner: CliRunner, examples_store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIRFLOW__DLI__SPEC_STORE", str(examples_store))
    result = runner.invoke(app, ["spec", "list", "-f", "json"])
    assert result.exit_code == 0 and len(json.loads(result.stdout)["datasets"]) == 5


@pytest.mark.parametrize(
    ("args", "code"),
    [(["--source", "git"], "DLI-203"), (["--store", "/no/such/store"], "DLI-102")],
    ids=["bad-source", "missing-store"],
)
def test_list_errors(runner: CliRunner, examples_store: Path, args: list[str], code: str) -> None:
    result = runner.invoke(app, ["spec", "list", "--store", str(examples_store), *args])
    assert result.exit_code == 1
    assert f"Error [{code}]" in result.stderr and "Traceback" not in result.output


# -- dli spec schema ----------------------------------------------------------------------------------------


def _yaml_as_json(path: Path) -> object:
    # editors read YAML dates as strings; so does this check
    return json.loads(json.dumps(yaml.safe_load(path.read_text(encoding="utf-8")), default=str))


def test_schema_validates_every_example_and_rejects_unknown_keys(runner: CliRunner, examples_store: Path) -> None:
    result = runner.invoke(app, ["spec", "schema"])
    assert result.exit_code == 0
    schema = json.loads(result.stdout)
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())
    specs = sorted(examples_store.rglob("*.yaml")) + sorted((FIXTURES / "good").glob("*.y*ml"))
    assert len(specs) >= 9
    for path in specs:
        errors = [e.message for e in validator.iter_errors(_yaml_as_json(path))]
        assert errors == [], (path, errors)
    typo = {"name": "a", "owner": "b", "query": "SELECT 1", "ownr": "x"}
    assert any("ownr" in e.message for e in validator.iter_errors(typo))
    nested = {
        "name": "a",
        "owner": "b",
        "query": "SELECT 1",
        "schedule": {"cron": "0 9 * * *", "retry": {"max_attemps": 3}},
    }
    assert not validator.is_valid(nested)
    assert not validator.is_valid({"name": "a", "owner": "b", "query": "x", "engine": "trinoo"})
    assert not validator.is_valid({"owner": "b", "query": "x"})


def test_schema_to_a_file(runner: CliRunner, tmp_path: Path) -> None:
    out = tmp_path / "dataset-spec.schema.json"
    result = runner.invoke(app, ["spec", "schema", "-o", str(out)])
    assert result.exit_code == 0
    assert json.loads(out.read_text())["title"] == "dli Dataset Spec"
    assert result.stdout == ""


# -- dli dataset run --local --------------------------------------------------------------------------------


def _run(runner: CliRunner, store: Path, db: Path, *args: str):  # noqa: ANN202 - click's Result
    return runner.invoke(app, ["dataset", "run", DAILY, "--local", "--store", str(store), "--duckdb", str(db), *args])


def test_run_prints_the_rows(runner: CliRunner, examples_store: Path, tmp_path: Path) -> None:
    result = _run(runner, examples_store, tmp_path / "w.duckdb", "-p", "execution_date=2024-01-15")
    assert result.exit_code == 0, result.output
    rows = [line for line in result.stdout.splitlines() if "2024-01-15" in line and "campaign_" in line]
    assert len(rows) == 3
    assert all("20" in row and "17" in row for row in rows)
    assert "statement 6: ok" in result.stdout


def test_run_json_rows_are_objects_keyed_by_column(runner: CliRunner, examples_store: Path, tmp_path: Path) -> None:
    result = _run(
        runner,
        examples_store,
        tmp_path / "w.duckdb",
        "-p",
        "execution_date=2024-01-15",
        "-p",
        "min_clicks=5",
        "--format",
        "json",
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["dataset"] == DAILY and data["dry_run"] is False
    [run] = data["runs"]
    assert run["parameters"] == {"execution_date": "2024-01-15", "min_clicks": 5, "campaign": None}
    assert run["rows"] == [
        {"click_date": "2024-01-15", "campaign": f"campaign_{i}", "clicks": 20, "users": 17} for i in range(3)
    ]
    assert len(run["statements"]) == len(run["rows_affected"]) == 6


def test_run_string_parameter_is_a_literal(runner: CliRunner, examples_store: Path, tmp_path: Path) -> None:
    db = tmp_path / "w.duckdb"
    hostile = "campaign_1' OR '1'='1"
    result = _run(
        runner, examples_store, db, "-p", "execution_date=2024-01-15", "-p", f"campaign={hostile}", "-f", "json"
    )
    assert result.exit_code == 0, result.output
    [run] = json.loads(result.stdout)["runs"]
    assert "campaign = 'campaign_1'' OR ''1''=''1'" in run["statements"][4]
    assert run["rows"] == []  # no campaign has that name; nothing extra comes back


def test_dry_run_runs_nothing(runner: CliRunner, examples_store: Path, tmp_path: Path) -> None:
    db = tmp_path / "w.duckdb"
    result = _run(runner, examples_store, db, "-p", "execution_date=2024-01-15", "--dry-run")
    assert result.exit_code == 0, result.output
    assert "dry run ok: 6 statement(s)" in result.stdout
    assert "DATE '2024-01-15'" in result.stdout
    assert _tables(db) == set()
    as_json = json.loads(
        _run(runner, examples_store, db, "-p", "execution_date=2024-01-15", "--dry-run", "-f", "json").stdout
    )
    assert as_json["dry_run"] is True and as_json["runs"][0]["rows"] is None
    assert _tables(db) == set()


def test_unknown_parameter(runner: CliRunner, examples_store: Path, tmp_path: Path) -> None:
    result = _run(runner, examples_store, tmp_path / "w.duckdb", "-p", "execution_date=2024-01-15", "-p", "min_click=3")
    assert result.exit_code == 1
    assert "Error [DLI-203]" in result.stderr
    assert "did you mean 'min_clicks'?" in result.stderr
    assert "Allowed parameters: execution_date (required), min_clicks (optional), campaign (optional)" in result.stderr
    assert "Traceback" not in result.output
    assert not (tmp_path / "w.duckdb").exists()


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["-p", "execution_date=15/01/2024"], "'execution_date'"),
        (["-p", "execution_date"], "is not key=value"),
        (["-p", "execution_date=2024-01-15", "-p", "execution_date=2024-01-16"], "given twice"),
        (["--start", "2024-01-01"], "give both --start and --end"),
        (["--start", "2024-01-01", "--end", "soon"], "--end 'soon' is not a date"),
        (["--start", "2024-01-01", "--end", "2024-01-02", "-p", "execution_date=2024-01-01"], "not both"),
    ],
    ids=["bad-date", "no-equals", "twice", "start-only", "bad-end", "range-and-date"],
)
def test_parameter_errors(
    runner: CliRunner, examples_store: Path, tmp_path: Path, args: list[str], fragment: str
) -> None:
    result = _run(runner, examples_store, tmp_path / "w.duckdb", *args)
    assert result.exit_code == 1
    assert "Error [DLI-203]" in result.stderr and fragment in result.stderr
    assert "Traceback" not in result.output


def test_unknown_dataset(runner: CliRunner, examples_store: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["dataset", "run", "analytics.daily_clics", "--store", str(examples_store)])
    assert result.exit_code == 1
    assert "Error [DLI-101]" in result.stderr and "analytics.daily_clicks" in result.stderr


def test_range_makes_one_run_per_day(runner: CliRunner, examples_store: Path, tmp_path: Path) -> None:
    db = tmp_path / "w.duckdb"
    result = _run(runner, examples_store, db, "--start", "2024-01-01", "--end", "2024-01-03", "-f", "json")
    assert result.exit_code == 0, result.output
    runs = json.loads(result.stdout)["runs"]
    assert [r["parameters"]["execution_date"] for r in runs] == ["2024-01-01", "2024-01-02", "2024-01-03"]
    conn = duckdb.connect(str(db), read_only=True)
    assert conn.execute("SELECT count(DISTINCT click_date) FROM daily_clicks").fetchone() == (3,)
    conn.close()


def test_run_without_a_required_execution_date_is_dli_203(runner: CliRunner, examples_store: Path, tmp_path: Path) -> None:
    result = _run(runner, examples_store, tmp_path / "w.duckdb", "--dry-run", "-f", "json")
    assert result.exit_code == 1
    assert "Error [DLI-203]" in result.output and "Missing required parameter: execution_date" in result.output
    assert "Traceback" not in result.output


def test_sql_error_is_405_without_traceback(runner: CliRunner, make_store: MakeStore, tmp_path: Path) -> None:
    store = make_store({"code/x.yaml": "name: s.broken\nowner: me\nquery: SELECT * FROM missing_table\n"})
    args = ["dataset", "run", "s.broken", "--store", str(store), "--duckdb", str(tmp_path / "w.duckdb")]
    quiet = runner.invoke(app, args)
    assert quiet.exit_code == 3  # dli dataset run's exit status of a SQL error
    assert "Error [DLI-405]" in quiet.stderr and "statement 1 of 1" in quiet.stderr
    assert "Traceback" not in quiet.output
    verbose = runner.invoke(app, ["--verbose", *args])
    assert verbose.exit_code == 3
    assert "Traceback (most recent call last)" in verbose.stderr
    assert "Error [DLI-405]" in verbose.stderr


# -- as a real subprocess -----------------------------------------------------------------------------------


def _dli(command: list[str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*command, *args], capture_output=True, text=True, timeout=120, check=False)


def test_subprocess_validate(dli_command: list[str], examples_store: Path, bad_store: Path) -> None:
    ok = _dli(dli_command, "spec", "validate", str(examples_store))
    assert ok.returncode == 0, ok.stderr
    assert "5 valid, 0 errors" in ok.stdout
    bad = _dli(dli_command, "spec", "validate", str(bad_store))
    assert bad.returncode == 1
    assert "[DLI-201]" in bad.stderr and "code/bad.yaml" in bad.stderr and "schedule.retry.max_attemps" in bad.stderr
    assert "Traceback" not in bad.stderr + bad.stdout


def test_subprocess_run_json_and_errors(dli_command: list[str], examples_store: Path, tmp_path: Path) -> None:
    base = ["dataset", "run", DAILY, "--local", "--store", str(examples_store), "--duckdb", str(tmp_path / "w.duckdb")]
    ok = _dli(dli_command, *base, "-p", "execution_date=2024-01-15", "--format", "json")
    assert ok.returncode == 0, ok.stderr
    rows = json.loads(ok.stdout)["runs"][0]["rows"]
    assert [r["campaign"] for r in rows] == ["campaign_0", "campaign_1", "campaign_2"]
    table = _dli(dli_command, *base, "-p", "execution_date=2024-01-16")
    assert table.returncode == 0 and table.stdout.count("2024-01-16") >= 3
    bad = _dli(dli_command, *base, "-p", "nope=1")
    assert bad.returncode == 1
    assert "Error [DLI-203]" in bad.stderr and "Allowed parameters: execution_date (required)" in bad.stderr
    assert "Traceback" not in bad.stderr
    verbose = _dli(dli_command, "--verbose", *base, "-p", "nope=1")
    assert verbose.returncode == 1 and "Traceback" in verbose.stderr


def test_subprocess_schema(dli_command: list[str]) -> None:
    result = _dli(dli_command, "spec", "schema")
    assert result.returncode == 0
    jsonschema.Draft202012Validator.check_schema(json.loads(result.stdout))


def test_every_noun_is_a_sub_command(runner: CliRunner) -> None:
    """Composed statically: a sub-command that fails to import fails `import dli_airflow.cli`, never vanishes."""
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for noun in ("spec", "dataset", "workflow", "dev"):
        assert noun in result.output


@pytest.mark.parametrize(
    ("args", "text"),
    [
        (["spec", "list", "--help"], "[dli] spec_store"),
        (["dataset", "run", "--help"], "[dli] duckdb_path"),
    ],
)
def test_help_shows_config_keys_as_written(runner: CliRunner, args: list[str], text: str) -> None:
    """`[dli]` in a help text is not taken for rich markup (and dropped)."""
    result = runner.invoke(app, args, terminal_width=200, env={"COLUMNS": "200"})
    assert result.exit_code == 0
    assert text in " ".join(result.output.split()), result.output


def test_the_workflow_table_shows_a_next_run_in_its_schedules_zone_with_the_label() -> None:
    from datetime import datetime, timezone

    from dli_airflow.cli.workflow import _fmt_zoned

    utc = datetime(2026, 12, 3, 0, 0, tzinfo=timezone.utc)
    assert _fmt_zoned(utc, "Asia/Seoul") == "2026-12-03 09:00 Asia/Seoul"
    assert _fmt_zoned(utc, None) == "2026-12-03 00:00 UTC"
    assert _fmt_zoned(None, "Asia/Seoul") == "-"


def test_a_piped_dry_run_prints_the_sql_unwrapped(runner: CliRunner, tmp_path: Path) -> None:
    """Piped into a file or another tool, ``--dry-run`` prints each statement exactly as rendered: a
    long line is never folded or cut at a terminal width."""
    store = tmp_path / "store"
    (store / "code").mkdir(parents=True)
    columns = ", ".join(f"{i} AS column_with_a_long_name_{i}" for i in range(40))  # one ~1,200-char line
    (store / "code" / "wide.yaml").write_text(yaml.safe_dump({
        "name": "demo.wide", "owner": "a@example.com",
        "parameters": [{"name": "day", "type": "date", "required": True}],
        "query": f"SELECT {{{{ day }}}} AS day, {columns}",
    }))
    result = runner.invoke(app, ["dataset", "run", "demo.wide", "--local", "--store", str(store),
                                 "--duckdb", str(tmp_path / "w.duckdb"), "-p", "day=2024-01-15", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert f"SELECT DATE '2024-01-15' AS day, {columns};" in result.stdout.splitlines()


def test_every_option_in_help_names_what_it_takes(runner: CliRunner) -> None:
    """`--help` shows what an option takes (``KEY=VALUE``, ``YYYY-MM-DD``, ``NAME``), never a Python type
    name such as ``<str>`` or ``<int>``."""
    import re

    import typer

    def commands(group, path: tuple[str, ...] = ()):  # noqa: ANN001, ANN202 - typer's own click types
        yield path
        if hasattr(group, "list_commands"):
            ctx = group.context_class(group)
            for name in group.list_commands(ctx):
                yield from commands(group.get_command(ctx, name), (*path, name))

    seen = 0
    for path in commands(typer.main.get_command(app)):
        result = runner.invoke(app, [*path, "--help"])
        assert result.exit_code == 0, (path, result.output)
        bad = re.findall(r"<(?:str|int|float|bool|path|text|integer)>", result.output, flags=re.I)
        assert not bad, f"dli {' '.join(path)} --help shows {bad}"
        seen += 1
    assert seen > 20


def test_dli_workflow_without_an_airflow_says_how_to_name_one(runner: CliRunner, tmp_path: Path, monkeypatch) -> None:
    """No DLI_AIRFLOW_URL and no dev Airflow running: the error is in the CLI's terms (environment variables,
    `dli dev up`, DLI_DEV_HOME for one started with --home elsewhere), not the Python API's (url=)."""
    for var in ("DLI_AIRFLOW_URL", "DLI_AIRFLOW_TOKEN", "DLI_AIRFLOW_USERNAME", "DLI_AIRFLOW_PASSWORD"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("DLI_DEV_HOME", str(tmp_path / "nowhere"))
    result = runner.invoke(app, ["workflow", "list"])
    assert result.exit_code != 0
    text = result.output
    assert "DLI-501" in text and "DLI_AIRFLOW_URL" in text and "dli dev up" in text and "DLI_DEV_HOME" in text
    assert "url=" not in text and str(tmp_path / "nowhere") in text


def test_a_finished_run_prints_its_result_rows(capsys) -> None:
    """`dli workflow run --wait` and `dli workflow status` show what the task recorded: rows affected and the
    first rows of the last statement (as `dli dataset run` does), not only COMPLETED."""
    import typer

    from dli_airflow.cli.workflow import _finish
    from dli_airflow.cli._output import OutputFormat
    from dli_airflow.workflow import RunStatus, WorkflowRun, WorkflowStatusResult

    run = WorkflowRun(run_id="manual__x", dataset_name="demo.daily", status=RunStatus.COMPLETED, run_type="adhoc")
    summary = {"statements": 2, "rows_affected": [3, -1], "columns": ["campaign", "clicks"],
               "rows": [["campaign_a", 20], ["campaign_b", 17]], "rows_truncated": False}
    _finish(WorkflowStatusResult(run=run, result=summary), OutputFormat.table)
    out = capsys.readouterr().out
    assert "manual__x: COMPLETED" in out and "rows affected: 3" in out
    assert "campaign_a" in out and "20" in out and "campaign_b" in out and "clicks" in out
    failed = WorkflowRun(run_id="manual__y", dataset_name="demo.daily", status=RunStatus.FAILED, run_type="adhoc")
    with pytest.raises(typer.Exit):
        _finish(WorkflowStatusResult(run=failed, error_message="boom"), OutputFormat.table)
    assert "error: boom" in capsys.readouterr().out


def test_history_takes_the_dataset_as_its_argument(runner: CliRunner, monkeypatch) -> None:
    """`dli workflow history NAME` is `-d NAME` (the seeds' form); two different names are refused."""
    import contextlib

    from dli_airflow.workflow import WorkflowHistoryResult

    asked: list[str | None] = []

    class Client:
        def history(self, *, dataset_name, **_):  # noqa: ANN001, ANN003, ANN202
            asked.append(dataset_name)
            return WorkflowHistoryResult(runs=(), total_count=0)

    monkeypatch.setattr("dli_airflow.cli.workflow._client", lambda: contextlib.nullcontext(Client()))
    assert runner.invoke(app, ["workflow", "history", "team.daily"]).exit_code == 0
    assert runner.invoke(app, ["workflow", "history", "-d", "team.daily"]).exit_code == 0
    assert asked == ["team.daily", "team.daily"]
    both = runner.invoke(app, ["workflow", "history", "team.daily", "-d", "team.other"])
    assert both.exit_code != 0 and "two datasets" in both.output


def test_status_of_a_dataset_name_shows_its_latest_run(runner: CliRunner, monkeypatch) -> None:
    import contextlib

    from dli_airflow.errors import WorkflowExecutionError
    from dli_airflow.workflow import WorkflowHistoryResult, WorkflowRun, WorkflowStatusResult

    latest = WorkflowRun(run_id="manual__2026", dataset_name="team.daily", status="COMPLETED", run_type="adhoc")

    class Client:
        def get_status(self, run_id, *, dataset=None):  # noqa: ANN001, ANN202
            if run_id != "manual__2026":
                raise WorkflowExecutionError(f"No run {run_id!r} in Airflow")
            return WorkflowStatusResult(run=latest)

        def history(self, *, dataset_name, limit):  # noqa: ANN001, ANN202
            return WorkflowHistoryResult(runs=(latest,) if dataset_name == "team.daily" else (), total_count=1)

    monkeypatch.setattr("dli_airflow.cli.workflow._client", lambda: contextlib.nullcontext(Client()))
    shown = runner.invoke(app, ["workflow", "status", "team.daily"])
    assert shown.exit_code == 0, shown.output
    assert "manual__2026" in shown.stdout and "COMPLETED" in shown.stdout
    nothing = runner.invoke(app, ["workflow", "status", "team.nope"])
    assert nothing.exit_code != 0 and "No run 'team.nope'" in nothing.output


def test_verbose_works_after_the_sub_command(runner: CliRunner, tmp_path: Path) -> None:
    """`-v` is a common option: `dli spec validate FILE -v` is `dli -v spec validate FILE`."""
    bad = Path(__file__).resolve().parents[2] / "examples" / "broken" / "bad.yaml"
    for args in (["-v", "spec", "validate", str(bad)], ["spec", "validate", str(bad), "-v"],
                 ["spec", "validate", "-v", str(bad)]):
        result = runner.invoke(app, args)
        assert result.exit_code == 1 and "No such option" not in result.output, (args, result.output)
        assert "DLI-201" in result.output


def test_dataset_run_takes_the_spec_file_just_written(runner: CliRunner, tmp_path: Path) -> None:
    """`dli dataset run my_ds.yaml` runs that file (its query_file relative to it), no store needed; a broken
    file is the same error `dli spec validate` gives."""
    folder = tmp_path / "work"
    folder.mkdir()
    (folder / "q.sql").write_text("SELECT {{ n }} * 2 AS doubled")
    (folder / "my_ds.yaml").write_text(yaml.safe_dump({
        "name": "demo.mine", "owner": "a@example.com", "query_file": "q.sql",
        "parameters": [{"name": "n", "type": "integer", "default": 21}],
    }))
    result = runner.invoke(app, ["dataset", "run", str(folder / "my_ds.yaml"), "--duckdb", str(tmp_path / "w.duckdb")])
    assert result.exit_code == 0, result.output
    assert "42" in result.stdout
    (folder / "broken.yaml").write_text("name: demo.broken\nowner: a@example.com\nquery: SELECT 1\nschedule: {cron: '0 9 * *'}\n")
    broken = runner.invoke(app, ["dataset", "run", str(folder / "broken.yaml")])
    assert broken.exit_code == 1 and "DLI-201" in broken.output and "has 4 fields" in broken.output
