"""The ``dli`` command: the root app, its one error boundary, and its sub-commands, composed statically.

A DliError anywhere below prints ``Error [DLI-xyz]: …`` (with the fix) on stderr and exits 1; ``-v`` adds
the traceback. Sub-commands are imported here at module level, so a broken import fails loudly instead of
making ``dli workflow`` silently disappear. Nothing here imports Airflow: commands import what they need
when they run.
"""

from __future__ import annotations

import sys
import traceback
from typing import Annotated, Any

import click
import typer
from typer.core import TyperGroup

from dli_airflow.cli import dataset, dev, spec, workflow
from dli_airflow.errors import DliError

_state: dict[str, bool] = {"verbose": False}


def print_error(exc: DliError) -> None:
    """Print one DLI error as ``Error [DLI-xyz]: message`` with its fix (and the traceback with ``-v``)."""
    from rich.console import Console
    from rich.markup import escape

    console = Console(stderr=True, highlight=False, soft_wrap=True)
    if _state["verbose"]:
        console.print(escape("".join(traceback.format_exception(exc))), style="dim")
    console.print(f"[bold red]Error [{exc.code}]:[/] {escape(exc.render())}")


class _BoundaryGroup(TyperGroup):
    """The root group: turns a DliError anywhere below it into one line on stderr and exit code 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except DliError as exc:
            print_error(exc)
            raise typer.Exit(code=1) from None


app = typer.Typer(
    cls=_BoundaryGroup,
    name="dli",
    help="dli-airflow: Dataset Specs (YAML + SQL) as Airflow DAGs on Trino, BigQuery or DuckDB.",
    no_args_is_help=True,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
    pretty_exceptions_show_locals=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.callback()
def _root(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show tracebacks and debug output.")] = False,
) -> None:
    _state["verbose"] = verbose


app.add_typer(spec.app, name="spec")
app.add_typer(dataset.app, name="dataset")
app.add_typer(dev.app, name="dev")
app.add_typer(workflow.app, name="workflow")


def main() -> None:
    """Entry point of the ``dli`` script."""
    try:
        app()
    except DliError as exc:  # raised outside a command (e.g. while parsing options)
        print_error(exc)
        sys.exit(1)
