"""Registering manual specs: prepare a spec (with schedule overrides) and write it under ``manual/``.

The spec and its SQL go to ``manual/<name>.yaml`` and ``manual/<name>.sql``; the SQL is written first
and the spec last, so a reader never sees a spec without its SQL. No Airflow here.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from dli_airflow.errors import DliError, SpecFileNotFoundError, WorkflowRegistrationError
from dli_airflow.spec import DatasetSpec, load_yaml, validate_spec
from dli_airflow.store import SingleFileStore, SpecEntry, SpecStore, load_entry


@dataclass(frozen=True)
class PreparedSpec:
    spec: DatasetSpec
    document: dict[str, Any]
    sql: str | None  # the SQL file's text, None for inline SQL


@dataclass(frozen=True)
class WrittenSpec:
    spec_path: str
    sql_path: str | None


def prepare_registration(
    *,
    spec_path: str | os.PathLike[str] | None = None,
    spec: DatasetSpec | dict[str, Any] | None = None,
    sql: str | None = None,
    cron: str | None = None,
    timezone: str | None = None,
    enabled: bool | None = None,
    retry_max_attempts: int | None = None,
    retry_delay_seconds: int | None = None,
) -> PreparedSpec:
    """Load a spec (file, model or dict), apply the schedule overrides and validate the result."""
    if (spec_path is None) == (spec is None):
        raise WorkflowRegistrationError("give exactly one of spec_path or spec")
    sql_text: str | None = sql
    if spec_path is not None:
        path = Path(spec_path)
        if not path.is_file():
            raise SpecFileNotFoundError(f"{path} does not exist")
        store = SingleFileStore.for_file(path)
        rel = path.resolve().relative_to(store.root.resolve()).as_posix()
        loaded, file_sql, sql_rel = load_entry(store, rel)
        document = load_yaml(path.read_bytes(), str(path))
        if sql_rel is not None:
            sql_text = file_sql
    elif isinstance(spec, DatasetSpec):
        document = spec.model_dump(mode="json", by_alias=True, exclude_defaults=True)
    else:
        document = copy.deepcopy(dict(spec or {}))
    if not isinstance(document, dict):
        raise WorkflowRegistrationError("the spec must be a mapping")
    overrides = {
        "cron": cron,
        "timezone": timezone,
        "enabled": enabled,
    }
    if any(v is not None for v in overrides.values()) or retry_max_attempts is not None or retry_delay_seconds is not None:
        schedule = dict(document.get("schedule") or {})
        schedule.update({k: v for k, v in overrides.items() if v is not None})
        retry = dict(schedule.get("retry") or {})
        if retry_max_attempts is not None:
            retry["max_attempts"] = retry_max_attempts
        if retry_delay_seconds is not None:
            retry["delay_seconds"] = retry_delay_seconds
        if retry:
            schedule["retry"] = retry
        document["schedule"] = schedule
    if document.get("query_file") is not None:
        if sql_text is None:
            raise WorkflowRegistrationError(
                "the spec names a query_file but no SQL was given", hint="pass spec_path=, or sql= with the SQL text"
            )
        document["query_file"] = f"{document.get('name')}.sql"
    shown = str(spec_path) if spec_path is not None else "<spec>"
    validated = validate_spec(document, shown)
    if sql_text is not None and document.get("query_file"):
        from dli_airflow.sql import check_template

        check_template(sql_text, validated, shown)
    return PreparedSpec(spec=validated, document=document, sql=sql_text if document.get("query_file") else None)


def write_manual(store: SpecStore, prepared: PreparedSpec) -> WrittenSpec:
    """Write the spec (and its SQL) under ``manual/``: SQL first, spec last."""
    name = prepared.spec.name
    spec_path = f"manual/{name}.yaml"
    sql_path = f"manual/{name}.sql" if prepared.sql is not None else None
    text = yaml.safe_dump(prepared.document, sort_keys=False, allow_unicode=True, default_flow_style=False)
    header = f"# Registered through dli (manual/). Edit with `dli workflow register --force`.\n"
    try:
        if sql_path is not None and prepared.sql is not None:
            store.put_manual(sql_path, prepared.sql.encode("utf-8"))
        store.put_manual(spec_path, (header + text).encode("utf-8"))
    except DliError:
        raise
    except OSError as exc:
        raise WorkflowRegistrationError(f"cannot write {store.display(spec_path)}: {exc.strerror or exc}") from exc
    return WrittenSpec(spec_path=spec_path, sql_path=sql_path)


def delete_manual(store: SpecStore, entry: SpecEntry) -> None:
    """Remove a manual spec: the spec first (so it stops being scheduled), then its SQL."""
    store.delete_manual(entry.path)
    if entry.sql_path is not None:
        store.delete_manual(entry.sql_path)
