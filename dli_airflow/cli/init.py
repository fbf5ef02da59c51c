"""``dli init [DIR]``: a new store to start from — ``code/`` and ``manual/``, one example dataset with its SQL —
and the commands that try it at once (no Airflow needed). Never overwrites a file."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from dli_airflow.errors import SpecConflictError, SpecFileNotFoundError

EXAMPLE_SPEC = """\
# A Dataset Spec: the README's "The Dataset Spec" explains every field.
name: example.daily_orders
type: Dataset
owner: you@example.com
team: "@your-team"
description: Orders and their total per day, from a generated sample (replace the SQL with your own).
engine: duckdb
query_file: daily_orders.sql
parameters:
  - name: execution_date
    type: date
    description: The day to compute (default today; a scheduled run gets the local date of its scheduled time).
  - name: min_amount
    type: integer
    default: 10
    description: Leave out orders below this amount.
schedule:
  enabled: false          # registered paused: unpause it when you are ready
  cron: "0 6 * * *"
  timezone: UTC
"""

EXAMPLE_SQL = """\
-- Parameters are bound as values by the engine, never spliced into the SQL text.
SELECT {{ execution_date }} AS day,
       count(*) AS orders,
       sum(amount) AS total
FROM (SELECT (i * 37) % 100 AS amount FROM range(1000) AS t(i)) AS sample
WHERE amount >= {{ min_amount }}
"""

#: what `dli init` writes, relative to DIR (folders end with /)
LAYOUT: dict[str, str | None] = {
    "code/example/daily_orders.yaml": EXAMPLE_SPEC,
    "code/example/daily_orders.sql": EXAMPLE_SQL,
    "manual/": None,
}


def scaffold(directory: Path) -> list[Path]:
    """Write the layout under ``directory``, each file created exclusively (an existing one is never replaced).

    :raises SpecConflictError: a file of the layout exists already (nothing is written)
    """
    if directory.exists() and not directory.is_dir():
        raise SpecFileNotFoundError(f"{directory} is a file, not a folder", hint="pass a new or empty folder")
    taken = [directory / rel for rel, text in LAYOUT.items() if text is not None and (directory / rel).exists()]
    if taken:
        raise SpecConflictError(
            f"{taken[0]} exists already: dli init never overwrites a file",
            hint="pass a new folder (dli init DIR), or remove the example first", path=str(taken[0]),
        )
    made: list[Path] = []
    for rel, text in LAYOUT.items():
        target = directory / rel
        if text is None:
            target.mkdir(parents=True, exist_ok=True)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            with open(target, "x", encoding="utf-8") as out:  # exclusive: a file made meanwhile is not replaced
                out.write(text)
        made.append(target)
    return made


def init(
    directory: Annotated[Path, typer.Argument(metavar="DIR", help="The folder of the new store (made if absent).")] = Path("."),
) -> None:
    """Start a store: code/ and manual/ with one example dataset, and the commands to try it (no Airflow needed)."""
    try:
        made = scaffold(directory)
    except FileExistsError as exc:  # made by someone else between the check and the write
        raise SpecConflictError(f"{exc.filename} exists already: dli init never overwrites a file") from None
    shown = directory if str(directory) != "." else Path(".")
    spec = shown / "code/example/daily_orders.yaml"
    typer.echo(f"Created a dli store in {os.path.abspath(directory)}:")
    for path in made:
        typer.echo(f"  {path}{'/' if path.is_dir() else ''}")
    typer.echo("Try it (no Airflow needed):")
    typer.echo(f"  dli dataset run {spec} --local -p min_amount=50")
    typer.echo(f"  dli spec validate {shown}")
    typer.echo(f"Use it as your store: export DLI_SPEC_STORE={os.path.abspath(directory)}   "
               f"(dli spec list; dli dev up --store {shown})")
