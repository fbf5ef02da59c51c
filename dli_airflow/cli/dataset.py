"""``dli dataset run NAME --local``: run a dataset's SQL from this machine, on its engine or on DuckDB."""

from __future__ import annotations

import io
import sys
from datetime import date
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from dli_airflow.cli._output import (
    FormatOption,
    OutputFormat,
    ParamOption,
    new_app,
    parse_params,
    print_json,
    print_table,
)

app = new_app("Run datasets on this machine.")

RUN_HELP = """Run a dataset from THIS machine, with no Airflow server or database.

Use it to develop and test: quick feedback, only local logs. A Trino or BigQuery dataset runs on
its own engine, through the Airflow connection of its conn_id (else trino_default /
google_cloud_default) taken from AIRFLOW_CONN_<ID> or a connections file (--connections FILE,
or DLI_CONNECTIONS_FILE); --engine duckdb runs its SQL on the embedded DuckDB instead, transpiled
by sqlglot. To run on Airflow (production, scheduled resources, history kept in Airflow), use
`dli workflow run NAME` instead.

A required parameter must be given (-p execution_date=2024-01-15); an optional execution_date
left out is today in the schedule's time zone. --start/--end run every scheduled date of the range in order and stop at the first failure.
--timeout cancels the query on the engine. Exit status: 0 done, 1 invalid input (nothing ran),
2 usage error, 3 SQL error, 4 timeout, 5 the engine failed (connection, credentials, permission,
server), 130 Ctrl-C (the query is cancelled on the engine).
"""


@app.command("run", help=RUN_HELP)
def run(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Dataset name (as in the spec's name:), or a spec file (SPEC.yaml).",
                                        metavar="NAME|SPEC.yaml")],
    local: Annotated[bool, typer.Option("--local", help="Run on this machine (the only mode of `dataset run`).")] = True,
    param: ParamOption = None,
    store: Annotated[Optional[str], typer.Option("--store", metavar="STORE", help="Store folder; default [dli] spec_store.")] = None,
    path: Annotated[Optional[str], typer.Option("--path", metavar="DIR", help="A project folder (specs of a Git checkout, or a store) to find NAME in, instead of the store.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Render and parse the SQL; run nothing.")] = False,
    start: Annotated[Optional[str], typer.Option("--start", "-s", metavar="YYYY-MM-DD", help="First execution_date of a range (YYYY-MM-DD).")] = None,
    end: Annotated[Optional[str], typer.Option("--end", "-e", metavar="YYYY-MM-DD", help="Last execution_date of a range (YYYY-MM-DD).")] = None,
    duckdb_path: Annotated[Optional[str], typer.Option("--duckdb", metavar="FILE", help="DuckDB file of DuckDB runs; default [dli] duckdb_path.")] = None,
    engine: Annotated[Optional[str], typer.Option("--engine", metavar="ENGINE", help="Where to run: the dataset's engine (the default) or duckdb (Trino/BigQuery SQL transpiled).")] = None,
    connections: Annotated[Optional[str], typer.Option("--connections", metavar="FILE", envvar="DLI_CONNECTIONS_FILE", help="A YAML or JSON file of Airflow connections (conn_id: fields); default DLI_CONNECTIONS_FILE.")] = None,
    timeout: Annotated[Optional[float], typer.Option("--timeout", metavar="SECONDS", help="Cancel the query on the engine after SECONDS (each date of a range).")] = None,
    fmt: FormatOption = OutputFormat.table,
) -> None:
    from dli_airflow.errors import DliError
    from dli_airflow.local import exit_code_for

    verbose = bool(ctx.find_root().params.get("verbose"))
    try:
        if path is not None:
            if store is not None:
                from dli_airflow.errors import ParameterError

                raise ParameterError("give --path or --store, not both", hint="--path DIR: a project folder; --store: a store")
            if not _is_spec_file(name):
                from dli_airflow.registry import project_spec_path

                name = str(project_spec_path(name, path))  # then run as that spec file
        _run(name, param, store, dry_run, start, end, duckdb_path, engine, connections, timeout, fmt, verbose)
    except DliError as exc:
        exc.exit_code = exit_code_for(exc)  # the boundary prints it and exits with it
        raise


def _run(name: str, param: Optional[list[str]], store: Optional[str], dry_run: bool, start: Optional[str],
         end: Optional[str], duckdb_path: Optional[str], engine: Optional[str], connections: Optional[str],
         timeout: Optional[float], fmt: OutputFormat, verbose: bool) -> None:
    from dli_airflow.catalog import scan
    from dli_airflow.errors import ParameterError
    from dli_airflow.local import DUCKDB, load_connections_file, resolve_engine, run_entry
    from dli_airflow.params import parse_day

    given = parse_params(param)
    first = parse_day(start, "--start") if start is not None else None
    last = parse_day(end, "--end") if end is not None else None
    if (first is None) != (last is None):
        raise ParameterError("give both --start and --end", hint="e.g. --start 2024-01-01 --end 2024-01-07")
    if timeout is not None and not timeout > 0:
        raise ParameterError(f"--timeout {timeout:g} is not a number of seconds above 0", hint="e.g. --timeout 600")
    if connections:
        load_connections_file(connections)
    entry = _spec_file_entry(name) if _is_spec_file(name) else scan(store).get(name)
    where = resolve_engine(entry.spec, engine)
    if duckdb_path is not None and where != DUCKDB:
        raise ParameterError(
            f"--duckdb is the file of DuckDB runs, and {entry.name} runs on {where}",
            hint="add --engine duckdb to run its SQL on DuckDB, or drop --duckdb",
        )
    if (where != DUCKDB and not dry_run) or (dry_run and entry.spec.resolved_engine == "bigquery"):
        _engine_logs_to_stderr(verbose)  # the engine's hooks bring Airflow, which logs to stdout: the rows' place
    if first is not None and last is not None:
        results = _run_range_with_progress(entry, given, first, last, dry_run, duckdb_path, fmt, where, timeout)
    else:
        results = [run_entry(entry, given, dry_run=dry_run, duckdb_path=duckdb_path, engine=where, timeout=timeout)]
    estimate = _bigquery_estimate(entry, given) if dry_run and entry.spec.resolved_engine == "bigquery" else None
    _print_results(results, fmt, dry_run, estimate)


class _Stderr(io.TextIOBase):
    """``sys.stderr`` as it is when written to (a test runner swaps it per command)."""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()

    def isatty(self) -> bool:
        return sys.stderr.isatty()


_STDERR = _Stderr()


def _engine_logs_to_stderr(verbose: bool) -> None:
    """Airflow's logging (the hooks', the engines') on stderr, warnings only unless ``-v``: stdout is the result.

    Airflow's own logging setup (``airflow.sdk.log.configure_logging``), so its secrets masking stays on.
    """
    from airflow.sdk.log import configure_logging

    configure_logging(log_level="INFO" if verbose else "WARNING", output=_STDERR, colored_console_log=False)


def _is_spec_file(name: str) -> bool:
    """A spec file the user names (``dli dataset run my_ds.yaml``) rather than a dataset of the store: a name
    with a YAML suffix that is a file here (a dataset name may end in ``.yaml`` only if no such file exists)."""
    from dli_airflow.store import SPEC_SUFFIXES

    return name.lower().endswith(tuple(SPEC_SUFFIXES)) and Path(name).is_file()


def _spec_file_entry(name: str) -> Any:
    """The spec file as a store entry: validated like `dli spec validate FILE` (its query_file relative to it)."""
    from dli_airflow.catalog import SpecEntry, load_entry
    from dli_airflow.kinds import DatasetStatus, SourceType
    from dli_airflow.store import SingleFileStore

    spec_file = Path(name)
    store = SingleFileStore.for_file(spec_file)
    rel = spec_file.resolve().relative_to(store.root.resolve()).as_posix()
    loaded = load_entry(store, rel)
    source = SourceType.MANUAL if rel.startswith("manual/") else SourceType.CODE
    return SpecEntry(spec=loaded.spec, source=source, status=DatasetStatus.ACTIVE, path=str(spec_file),
                     sql=loaded.sql, sql_path=loaded.sql_path)


def _bigquery_estimate(entry: Any, given: dict[str, str]) -> dict[str, Any]:
    """Bytes a BigQuery dataset would scan, from dry-run jobs, where the connection and server are reachable."""
    from dli_airflow.errors import DliError
    from dli_airflow.params import local_execution_date
    from dli_airflow.render import render_entry

    try:
        from dli_airflow.engines.bigquery import BigQueryEngine

        execution_date = local_execution_date(entry.spec)
        own = render_entry(entry, given, execution_date=execution_date)
        sizes = BigQueryEngine(spec=entry.spec).dry_run(own.statements)
    except DliError as exc:
        return {"available": False, "reason": f"[{exc.code}] {exc.message}"}
    except Exception as exc:  # no google extra, no connection, no network: the estimate is optional
        return {"available": False, "reason": f"{type(exc).__name__}: {exc}"[:300]}
    return {"available": True, "bytes_per_statement": sizes, "total_bytes": sum(sizes)}


def _run_range_with_progress(entry: Any, given: dict[str, str], first: date, last: date, dry_run: bool,
                             duckdb_path: Optional[str], fmt: OutputFormat, engine: str,
                             timeout: Optional[float]) -> list[Any]:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from dli_airflow.local import run_range

    progress = Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=Console(stderr=True), transient=fmt is OutputFormat.json,
    )
    with progress:
        task = progress.add_task(entry.name, total=None)

        def on_date(day: date, index: int, total: int) -> None:
            progress.update(task, total=total, completed=index, description=f"{entry.name} {day}")

        results = run_range(entry, given, first, last, dry_run=dry_run, duckdb_path=duckdb_path, on_date=on_date,
                            engine=engine, timeout=timeout)
        progress.update(task, completed=len(results), description=f"{entry.name} done")
    return results


def _print_results(results: list[Any], fmt: OutputFormat, dry_run: bool, estimate: Any = None) -> None:
    if fmt is OutputFormat.json:
        print_json(
            {
                "dataset": results[0].rendered.dataset if results else None,
                "dry_run": dry_run,
                "bigquery_estimate": estimate,
                "runs": [
                    {
                        "parameters": r.rendered.parameters,
                        "engine": r.rendered.engine,
                        "ran_on": r.engine,
                        "conn_id": r.conn_id,
                        "transpiled_from": r.rendered.transpiled_from,
                        "statements": [s.display for s in r.rendered.statements],  # values inlined
                        "rows_affected": [s.rows_affected for s in r.result.statements] if r.result else None,
                        "query_ids": [s.query_id for s in r.result.statements] if r.result else None,
                        "rows": r.result.records() if r.result else None,
                        "seconds": round(r.seconds, 3),
                    }
                    for r in results
                ],
            }
        )
        return
    from rich.console import Console
    from rich.markup import escape
    from rich.syntax import Syntax

    console = Console(highlight=False, soft_wrap=True)
    for r in results:
        params = ", ".join(f"{k}={v}" for k, v in r.rendered.parameters.items()) or "no parameters"
        note = f" (transpiled from {r.rendered.transpiled_from})" if r.rendered.transpiled_from else ""
        if r.conn_id:
            note = f" (on {r.engine}, connection {r.conn_id})"
        console.print(f"[bold]{escape(r.rendered.dataset)}[/] {escape(params)}{note}")
        if dry_run:
            for statement in r.rendered.statements:  # values inlined for reading; the run binds them
                if console.is_terminal:
                    console.print(Syntax(statement.display + ";", "sql", word_wrap=True))
                else:  # piped or redirected: the SQL exactly as rendered, never wrapped at a guessed width
                    typer.echo(statement.display + ";")
            console.print(f"[green]dry run ok[/]: {len(r.rendered.statements)} statement(s) render and parse")
            if estimate is not None:
                if estimate["available"]:
                    console.print(f"BigQuery would scan {estimate['total_bytes']:,} bytes "
                                  f"(per statement: {estimate['bytes_per_statement']})")
                else:
                    console.print(f"BigQuery bytes estimate unavailable: {escape(estimate['reason'])}", style="dim")
            continue
        assert r.result is not None
        for index, stmt in enumerate(r.result.statements, start=1):
            affected = "" if stmt.rows_affected is None else f", {stmt.rows_affected} row(s)"
            ref = f" ({'job' if r.engine == 'bigquery' else 'query'} {stmt.query_id})" if stmt.query_id else ""
            console.print(f"  statement {index}: ok{affected} in {stmt.seconds:.3f}s{escape(ref)}", style="dim")
    last = results[-1].result if results and not dry_run else None
    if last is not None and last.last is not None and last.last.columns and last.last.columns != ("Count",):
        print_table(last.last.columns, last.last.rows)
        if last.last.truncated:
            console.print(f"(first {len(last.last.rows)} rows shown)", style="dim")
