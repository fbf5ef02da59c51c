"""Registering manual specs: prepare a spec (with schedule overrides) and write it under ``manual/``.

The spec and its SQL go to ``manual/<name>.yaml`` and ``manual/<name>.sql``; the SQL is written first
and the spec last, so a reader never sees a spec without its SQL. No Airflow here.
"""

from __future__ import annotations

import copy
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict

import yaml

from dli_airflow._yaml import load_yaml
from dli_airflow.catalog import SpecEntry, load_entry
from dli_airflow.errors import (
    DliError,
    SpecFileNotFoundError,
    WorkflowNotFoundError,
    WorkflowPermissionError,
    WorkflowRegistrationError,
)
from dli_airflow.spec import DatasetSpec, SourceType, validate_spec
from dli_airflow.store import SingleFileStore, SpecStore

if TYPE_CHECKING:
    from dli_airflow.catalog import StoreSnapshot

if sys.version_info >= (3, 11):
    from typing import Unpack
else:  # pragma: no cover - Python 3.10
    from typing_extensions import Unpack


class ScheduleOverrides(TypedDict, total=False):
    """The schedule settings a registration may override (``dli workflow register --cron ...``).

    The one list of these keywords: the client's ``register`` and the CLI take exactly these.
    """

    cron: str
    timezone: str
    enabled: bool
    retry_max_attempts: int
    retry_delay_seconds: int


#: The keywords of :class:`ScheduleOverrides`, in order.
OVERRIDE_KEYS: tuple[str, ...] = tuple(ScheduleOverrides.__annotations__)


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
    **overrides: Unpack[ScheduleOverrides],
) -> PreparedSpec:
    """Load a spec (file, model or dict), apply the schedule overrides and validate the result.

    :param overrides: :class:`ScheduleOverrides`; ``None`` values are left out
    """
    unknown = sorted(set(overrides) - set(OVERRIDE_KEYS))
    if unknown:
        raise TypeError(f"unexpected keyword argument(s) {', '.join(unknown)}; allowed: {', '.join(OVERRIDE_KEYS)}")
    given: dict[str, Any] = {k: v for k, v in overrides.items() if v is not None}
    if (spec_path is None) == (spec is None):
        raise WorkflowRegistrationError("give exactly one of spec_path or spec")
    sql_text: str | None = sql
    if spec_path is not None:
        path = Path(spec_path)
        if not path.is_file():
            raise SpecFileNotFoundError(f"{path} does not exist")
        store = SingleFileStore.for_file(path)
        rel = path.resolve().relative_to(store.root.resolve()).as_posix()
        loaded = load_entry(store, rel)
        document = load_yaml(path.read_bytes(), str(path))
        if loaded.sql_path is not None:
            sql_text = loaded.sql
    elif isinstance(spec, DatasetSpec):
        document = spec.model_dump(mode="json", by_alias=True, exclude_defaults=True)
    else:
        document = copy.deepcopy(dict(spec or {}))
    if not isinstance(document, dict):
        raise WorkflowRegistrationError("the spec must be a mapping")
    if given:
        schedule = dict(document.get("schedule") or {})
        schedule.update({k: given[k] for k in ("cron", "timezone", "enabled") if k in given})
        retry = dict(schedule.get("retry") or {})
        for key in ("max_attempts", "delay_seconds"):
            if f"retry_{key}" in given:
                retry[key] = given[f"retry_{key}"]
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
        from dli_airflow.render import check_template

        check_template(sql_text, validated, shown)
    return PreparedSpec(spec=validated, document=document, sql=sql_text if document.get("query_file") else None)


def write_manual(store: SpecStore, prepared: PreparedSpec) -> WrittenSpec:
    """Write the spec (and its SQL) under ``manual/``: SQL first, spec last."""
    name = prepared.spec.name
    spec_path = f"manual/{name}.yaml"
    sql_path = f"manual/{name}.sql" if prepared.sql is not None else None
    text = yaml.safe_dump(prepared.document, sort_keys=False, allow_unicode=True, default_flow_style=False)
    header = "# Registered through dli (manual/). Edit with `dli workflow register --force`.\n"
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


def registration_warning(snapshot: StoreSnapshot | None, name: str, *, force: bool) -> str | None:
    """Decide whether ``name`` may be registered as a manual spec; the warning to show if it may.

    A name that exists in ``code/`` needs ``force``: the manual copy is stored but stays inactive
    (overridden). Replacing an existing manual spec needs ``force`` too.

    :param snapshot: the store as it is now (``None``: not readable here, nothing to check against)
    :raises WorkflowRegistrationError: the name is taken and ``force`` was not given
    """
    if snapshot is None:
        return None
    sources = {e.source for e in snapshot.entries if e.name == name}
    warning = None
    if SourceType.CODE in sources:
        warning = (
            "This dataset already exists in code/: your manual registration will be overridden by code; "
            "the manual file is kept but inactive"
        )
        if not force:
            raise WorkflowRegistrationError(
                f"Dataset {name!r} already exists in code/. {warning}.",
                hint="pass force=True (--force) to store it anyway",
            )
    if SourceType.MANUAL in sources and not force:
        raise WorkflowRegistrationError(
            f"Dataset {name!r} is already registered (manual)", hint="pass force=True (--force) to replace it"
        )
    return warning


def manual_entry(snapshot: StoreSnapshot, name: str) -> tuple[SpecEntry, bool]:
    """The manual entry of ``name`` that unregistering removes, and whether a code spec stays active.

    :raises WorkflowNotFoundError: the store has no spec of that name
    :raises WorkflowPermissionError: only a code spec has it (code is changed in Git, not here)
    """
    sources = {e.source for e in snapshot.entries if e.name == name}
    if not sources:
        raise WorkflowNotFoundError(f"Dataset {name!r} is not registered in the store {snapshot.store}")
    if SourceType.MANUAL not in sources:
        raise WorkflowPermissionError(
            f"Workflow {name!r} is managed by code (GitOps)",
            hint="modify the YAML in Git and deploy it through CI; only pause/unpause are allowed here",
        )
    return snapshot.get(name, SourceType.MANUAL), SourceType.CODE in sources


__all__ = [
    "OVERRIDE_KEYS",
    "PreparedSpec",
    "ScheduleOverrides",
    "WrittenSpec",
    "delete_manual",
    "manual_entry",
    "prepare_registration",
    "registration_warning",
    "write_manual",
]
