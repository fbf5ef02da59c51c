"""``dli spec validate | list | schema``: check and list Dataset Specs without any Airflow server."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from dli_airflow.cli._output import FormatOption, OutputFormat, new_app, print_json, print_table

app = new_app("Validate and list Dataset Specs (no Airflow server needed).")

SOURCE_CHOICES = ["code", "manual", "all"]


@app.command("validate")
def validate(
    paths: Annotated[
        list[str],
        typer.Argument(help="Spec files, store folders (holding code/ and manual/) or s3://bucket/prefix stores."),
    ],
    fmt: FormatOption = OutputFormat.table,
) -> None:
    """Validate spec files and whole stores: YAML, fields, SQL templates, conflicts. Exit 1 on any error."""
    from dli_airflow.catalog import load_entry, scan
    from dli_airflow.errors import DliError, SpecFileNotFoundError
    from dli_airflow.store import SingleFileStore, is_store_root, iter_spec_files

    checked: list[dict[str, Any]] = []
    errors: list[DliError] = []
    for raw in paths:
        if raw.startswith("s3://"):
            # a whole S3 store: read through [dli] aws_conn_id or the AWS environment
            snapshot = scan(raw)
            for entry in snapshot.entries:
                checked.append(
                    {"file": f"{snapshot.store}/{entry.path}", "dataset": entry.name, "source": entry.source.value,
                     "status": entry.status.value, "ok": True}
                )
            errors.extend(snapshot.problems)
            continue
        path = Path(raw)
        if not path.exists():
            errors.append(SpecFileNotFoundError(f"{path} does not exist"))
            continue
        if path.is_dir() and is_store_root(path):
            snapshot = scan(path)
            for entry in snapshot.entries:
                checked.append(
                    {"file": str(path / entry.path), "dataset": entry.name, "source": entry.source.value,
                     "status": entry.status.value, "ok": True}
                )
            errors.extend(snapshot.problems)
            continue
        for spec_file in iter_spec_files([path]):
            store = SingleFileStore.for_file(spec_file)
            rel = spec_file.resolve().relative_to(store.root.resolve()).as_posix()
            try:
                spec = load_entry(store, rel).spec
            except DliError as exc:
                errors.append(exc)
                continue
            checked.append({"file": str(spec_file), "dataset": spec.name, "ok": True})
    if fmt is OutputFormat.json:
        print_json({"ok": not errors, "valid": checked, "errors": [e.to_dict() for e in errors]})
    else:
        from rich.console import Console
        from rich.markup import escape

        out = Console(highlight=False, soft_wrap=True)
        for item in checked:
            out.print(f"[green]ok[/]    {escape(item['file'])}  ({escape(item['dataset'])})")
        err = Console(stderr=True, highlight=False, soft_wrap=True)
        for exc in errors:
            err.print(f"[red]error[/] [{exc.code}] {escape(exc.render())}")
        summary = f"{len(checked)} valid, {len(errors)} error{'s' if len(errors) != 1 else ''}"
        (err if errors else out).print(summary)
    if errors:
        raise typer.Exit(code=1)


@app.command("list")
def list_specs(
    store: Annotated[
        Optional[str], typer.Option("--store", help="Store folder or s3:// URL; default [dli] spec_store.")
    ] = None,
    source: Annotated[str, typer.Option("--source", help="code, manual or all.")] = "all",
    fmt: FormatOption = OutputFormat.table,
) -> None:
    """List the datasets of a store with their source (code|manual) and status (active|paused|overridden)."""
    from dli_airflow.catalog import scan
    from dli_airflow.errors import ParameterError

    if source not in SOURCE_CHOICES:
        raise ParameterError(f"--source {source!r} is not one of {', '.join(SOURCE_CHOICES)}")
    snapshot = scan(store)
    entries = [e for e in snapshot.entries if source == "all" or e.source.value == source]
    if fmt is OutputFormat.json:
        print_json(
            {
                "store": snapshot.store,
                "datasets": [
                    {
                        "dataset": e.name,
                        "source": e.source.value,
                        "status": e.status.value,
                        "overridden_by": e.overridden_by.value if e.overridden_by else None,
                        "cron": e.spec.schedule.cron if e.spec.schedule else None,
                        "timezone": e.spec.schedule.timezone if e.spec.schedule else None,
                        "owner": e.spec.owner,
                        "engine": e.spec.resolved_engine,
                        "file": e.path,
                    }
                    for e in entries
                ],
                "errors": [p.to_dict() for p in snapshot.problems],
            }
        )
    else:
        rows = [
            (
                e.name,
                e.source.value,
                e.status.value + (f" (by {e.overridden_by.value})" if e.overridden_by else ""),
                (e.spec.schedule.cron or "(assets)") if e.spec.schedule else "-",
                e.spec.schedule.timezone if e.spec.schedule else "-",
                e.spec.owner,
            )
            for e in entries
        ]
        print_table(["DATASET", "SOURCE", "STATUS", "CRON", "TIMEZONE", "OWNER"], rows)
        if snapshot.problems:
            from rich.console import Console

            Console(stderr=True, highlight=False).print(
                f"[yellow]warning:[/] {len(snapshot.problems)} spec file(s) have problems and are not listed; "
                f"run `dli spec validate {snapshot.store}`"
            )


@app.command("schema")
def schema(
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Write to this file instead of stdout.")] = None,
) -> None:
    """Print the JSON Schema of a Dataset Spec, for editors (VS Code, JetBrains) to validate as you type."""
    import json

    from dli_airflow.spec import json_schema

    text = json.dumps(json_schema(), indent=2) + "\n"
    if output is None:
        typer.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")
        typer.echo(f"Wrote {output}", err=True)
