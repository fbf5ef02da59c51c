"""``dli dataset run NAME --local``: run a dataset's SQL on this machine (DuckDB), no Airflow server."""

from __future__ import annotations

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

RUN_HELP = """Run a dataset on THIS machine (embedded DuckDB), with no Airflow server.

Use it to develop and test: quick feedback, only local logs. Trino and BigQuery SQL is transpiled
to DuckDB by sqlglot. To run on Airflow (production, scheduled resources, history kept in
Airflow), use `dli workflow run NAME` instead.

A required parameter must be given (-p execution_date=2024-01-15); an optional execution_date
left out is today in the schedule's time zone. --start/--end run every scheduled date of the range in order and stop at the first failure.
"""


@app.command("run", help=RUN_HELP)
def run(
    name: Annotated[str, typer.Argument(help="Dataset name (as in the spec's name:), or a spec file (SPEC.yaml).",
                                        metavar="NAME|SPEC.yaml")],
    local: Annotated[bool, typer.Option("--local", help="Run on this machine (the only mode of `dataset run`).")] = True,
    param: ParamOption = None,
    store: Annotated[Optional[str], typer.Option("--store", metavar="STORE", help="Store folder; default [dli] spec_store.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Render and parse the SQL; run nothing.")] = False,
    start: Annotated[Optional[str], typer.Option("--start", "-s", metavar="YYYY-MM-DD", help="First execution_date of a range (YYYY-MM-DD).")] = None,
    end: Annotated[Optional[str], typer.Option("--end", "-e", metavar="YYYY-MM-DD", help="Last execution_date of a range (YYYY-MM-DD).")] = None,
    duckdb_path: Annotated[Optional[str], typer.Option("--duckdb", metavar="FILE", help="DuckDB file; default [dli] duckdb_path.")] = None,
    fmt: FormatOption = OutputFormat.table,
) -> None:
    from dli_airflow.catalog import scan
    from dli_airflow.errors import ParameterError
    from dli_airflow.local import run_entry

    given = parse_params(param)
    from dli_airflow.params import parse_day

    first = parse_day(start, "--start") if start is not None else None
    last = parse_day(end, "--end") if end is not None else None
    if (first is None) != (last is None):
        raise ParameterError("give both --start and --end", hint="e.g. --start 2024-01-01 --end 2024-01-07")
    entry = _spec_file_entry(name) if _is_spec_file(name) else scan(store).get(name)
    if first is not None and last is not None:
        results = _run_range_with_progress(entry, given, first, last, dry_run, duckdb_path, fmt)
    else:
        results = [run_entry(entry, given, dry_run=dry_run, duckdb_path=duckdb_path)]
    estimate = _bigquery_estimate(entry, given) if dry_run and entry.spec.resolved_engine == "bigquery" else None
    _print_results(results, fmt, dry_run, estimate)


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
                             duckdb_path: Optional[str], fmt: OutputFormat) -> list[Any]:
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

        results = run_range(entry, given, first, last, dry_run=dry_run, duckdb_path=duckdb_path, on_date=on_date)
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
                        "transpiled_from": r.rendered.transpiled_from,
                        "statements": [s.display for s in r.rendered.statements],  # values inlined
                        "rows_affected": [s.rows_affected for s in r.result.statements] if r.result else None,
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
            console.print(f"  statement {index}: ok{affected} in {stmt.seconds:.3f}s", style="dim")
    last = results[-1].result if results and not dry_run else None
    if last is not None and last.last is not None and last.last.columns and last.last.columns != ("Count",):
        print_table(last.last.columns, last.last.rows)
        if last.last.truncated:
            console.print(f"(first {len(last.last.rows)} rows shown)", style="dim")
