"""``dli spec validate | list | schema | publish``: check, list and publish Dataset Specs without any Airflow server."""

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
        _print_report(checked, errors)
    if errors:
        raise typer.Exit(code=1)


def _print_report(checked: list[dict[str, Any]], errors: list[Any]) -> None:
    """``ok FILE (DATASET)`` lines, then every error (stderr), then the summary: the report of validate and
    of a publish that found problems."""
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


@app.command("publish")
def publish(
    src: Annotated[
        Path, typer.Argument(help="The folder of the Git checkout holding the specs (it becomes code/), or a store "
                                  "folder whose code/ it is.")
    ],
    store: Annotated[
        Optional[str],
        typer.Option("--store", metavar="STORE", help="Store folder or s3://bucket/prefix to publish to; default [dli] spec_store."),
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Validate and print the plan; write nothing.")] = False,
    label: Annotated[
        Optional[str],
        typer.Option("--label", metavar="TEXT", help="What is published, recorded in the release (default: $GITHUB_SHA or "
                                     "$CI_COMMIT_SHA)."),
    ] = None,
    allow_empty: Annotated[
        bool, typer.Option("--allow-empty", help="Publish a folder without specs (removes every code dataset).")
    ] = False,
    fmt: FormatOption = OutputFormat.table,
) -> None:
    """Publish a folder of specs as the store's code/ (run by CI). Validates everything first and writes
    nothing on any error (exit 1); prints the plan; uploads SQL, then specs, then switches the release in one
    write, then deletes what the release no longer holds."""
    from dli_airflow import publish as releases
    from dli_airflow.catalog import open_store

    target = open_store(store)
    plan = releases.plan(src, target, label=label, allow_empty=allow_empty)
    if not plan.ok:
        if fmt is OutputFormat.json:
            print_json({**plan.to_dict(), "published": None})
        else:
            _print_report([], list(plan.problems))
            typer.echo(f"Nothing was published to {plan.store}.", err=True)
        raise typer.Exit(code=1)
    done = None if dry_run else releases.apply(plan, target)
    if fmt is OutputFormat.json:
        print_json({**plan.to_dict(), "dry_run": dry_run, "published": None if done is None else {
            "release": done.release, "uploaded": list(done.uploaded), "deleted": list(done.deleted),
            "bundles_removed": list(done.bundles_removed), "seconds": round(done.seconds, 3),
        }})
        return
    _print_plan(plan)
    if plan.up_to_date:
        typer.echo(f"Release {plan.index.release} is already the release of {plan.store}: nothing to publish.")
    elif done is None:
        typer.echo("Dry run: nothing was written.")
    else:
        typer.echo(
            f"Published release {done.release} to {plan.store}: {len(done.uploaded)} file(s) uploaded, "
            f"{len(done.deleted)} removed ({done.seconds:.1f} s)."
        )


def _print_plan(plan: Any) -> None:
    from rich.console import Console
    from rich.markup import escape

    out = Console(highlight=False, soft_wrap=True)
    current = plan.current.id if plan.current else "none (code/ has no release index yet)"
    out.print(f"Release {plan.index.release} of {escape(plan.source)} -> {escape(plan.store)} (current: {current})")
    out.print(
        f"  datasets: {len(plan.datasets_added)} added, {len(plan.datasets_changed)} changed, "
        f"{len(plan.datasets_removed)} removed; {len(plan.index.datasets)} in the release"
    )
    for mark, names in (("+", plan.datasets_added), ("~", plan.datasets_changed), ("-", plan.datasets_removed)):
        for name in names:
            out.print(f"    {mark} {escape(name)}")
    for what, names in (("become overridden by code", plan.overridden),
                        ("are restored (code no longer holds them)", plan.restored)):
        if names:
            out.print(f"  manual copies that {what}: {escape(', '.join(names))}")
    out.print(
        f"  files: {len(plan.added) + len(plan.changed)} to upload, {len(plan.removed)} to remove, "
        f"{plan.unchanged} unchanged"
    )
    if plan.ignored:
        shown = ", ".join(plan.ignored[:5]) + (f" and {len(plan.ignored) - 5} more" if len(plan.ignored) > 5 else "")
        out.print(f"  not published (no spec names them): {escape(shown)}")
    err = Console(stderr=True, highlight=False, soft_wrap=True)
    for warning in plan.warnings:
        err.print(f"[yellow]warning:[/] {escape(warning)}")


@app.command("list")
def list_specs(
    store: Annotated[
        Optional[str], typer.Option("--store", metavar="STORE", help="Store folder or s3:// URL; default [dli] spec_store.")
    ] = None,
    source: Annotated[str, typer.Option("--source", metavar="SOURCE", help="code, manual or all.")] = "all",
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
    output: Annotated[Optional[Path], typer.Option("--output", "-o", metavar="FILE", help="Write to this file instead of stdout.")] = None,
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
