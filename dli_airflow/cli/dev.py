"""``dli dev up|status|down``: a real local Airflow 3 for trying specs end to end.

Airflow itself is never imported here: :mod:`dli_airflow.dev` launches it as subprocesses.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from dli_airflow import config
from dli_airflow.cli._output import FORMAT_OPTION, OutputFormat, print_json, print_table
from dli_airflow.errors import StoreNotFoundError

app = typer.Typer(
    help="Run a real local Airflow 3 (api-server, scheduler, dag-processor) serving your spec store.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)

STORE_ENV = "AIRFLOW__DLI__SPEC_STORE"


HomeOption = Annotated[
    Path | None,
    typer.Option(
        "--home", metavar="FOLDER", help=f"Folder for database, logs and secrets [default: ${config.DEV_HOME_ENV} or ~/.dli/airflow]."
    ),
]


def _home(home: Path | None) -> Path:
    """The ``--home`` given, else :func:`dli_airflow.config.dev_home` (the one default ``dli workflow`` uses too)."""
    return home.expanduser() if home is not None else config.dev_home()


def _store(store: str | None, home: Path) -> str:
    if store:
        return store
    if os.environ.get(STORE_ENV):
        return os.environ[STORE_ENV]
    if Path("examples/store").is_dir():  # a scratch copy: registrations never write into the checkout
        from dli_airflow.dev import scratch_store

        return str(scratch_store(Path("examples/store").resolve(), home))
    raise StoreNotFoundError(f"no spec store given: pass --store PATH or set {STORE_ENV}",
                             hint="dli init DIR makes one to start from")


@app.command("up")
def up_command(
    store: Annotated[
        str | None,
        typer.Option(
            "--store", metavar="STORE", help=f"Spec store folder or s3://bucket/prefix [default: ${STORE_ENV}, or a copy of ./examples/store in the home]."
        ),
    ] = None,
    port: Annotated[
        int | None, typer.Option("--port", metavar="PORT", help="api-server port [default: the last one, else 8080, else free].")
    ] = None,
    home: HomeOption = None,
    timeout: Annotated[float, typer.Option("--timeout", metavar="SECONDS", help="Seconds to wait for health and DAGs.")] = 120.0,
) -> None:
    """Start Airflow (or check the running one) and wait until every active spec's DAG is listed."""
    from dli_airflow import dev

    chosen_home = _home(home)
    chosen_store = _store(store, chosen_home)
    result = dev.up(
        store=chosen_store,
        home=chosen_home,
        port=port,
        timeout=timeout,
        expected_dag_ids=dev.expected_dag_ids(chosen_store),
    )
    typer.echo(f"Airflow is up at {result.url}")
    typer.echo(f"  login: {result.username} / {result.password}")
    typer.echo(f"  home:  {result.home}")
    typer.echo(f"  store: {result.store}")
    typer.echo(f"  logs:  {result.home / 'logs'}")
    typer.echo(f"  stop:  dli dev down --home {result.home}")


@app.command("status")
def status_command(
    home: HomeOption = None,
    fmt: OutputFormat = FORMAT_OPTION,
) -> None:
    """Show whether Airflow runs, its URL, login and processes."""
    from dli_airflow import dev

    result = dev.status(_home(home))
    if fmt is OutputFormat.json:
        print_json(result.to_dict())
        return
    health = "healthy" if result.healthy else "not healthy"
    typer.echo(f"Airflow under {result.home}: {result.state}" + (f", {health}" if result.state != "stopped" else ""))
    if result.url:
        typer.echo(f"  url:   {result.url}")
        typer.echo(f"  login: {result.username} / {result.password}")
        typer.echo(f"  store: {result.store}")
    print_table(
        ["process", "pid", "state"],
        [
            [name, proc.pid if proc.pid is not None else "-", "alive" if proc.alive else "stopped"]
            for name, proc in result.processes.items()
        ],
    )
    if result.state == "partial":
        typer.echo(f"  some processes died: see {result.home / 'logs'}, then `dli dev down` and `dli dev up`")


@app.command("down")
def down_command(home: HomeOption = None) -> None:
    """Stop the Airflow processes started by `dli dev up`."""
    from dli_airflow import dev

    chosen_home = _home(home)
    dev.down(chosen_home)
    typer.echo(f"Airflow under {chosen_home.resolve()} is stopped")
