"""Registering manual specs: prepare a spec (with schedule overrides) and write it under ``manual/``.

Writes are create-if-absent, so of two registrations of one name at once exactly one succeeds and the
other fails with DLI-801 (:meth:`~dli_airflow.store.SpecStore.create_manual`; ``force`` replaces only the
version it read, :meth:`~dli_airflow.store.SpecStore.replace_manual`). The SQL goes to a key of its own
per registration, ``manual/<name>.<16 hex>.sql``, written first and named by the spec's ``query_file``
(the spec last): a spec and its SQL can never pair across two writers, because no other registration
ever writes that key, and the loser's cleanup or a later replacement can delete only its own SQL.
No Airflow here.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import os
import posixpath
import secrets
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict

import yaml

from dli_airflow._yaml import load_yaml
from dli_airflow.catalog import SpecEntry, load_entry, sql_location
from dli_airflow.errors import (
    DliError,
    SpecFileNotFoundError,
    WorkflowNotFoundError,
    WorkflowPermissionError,
    WorkflowRegistrationError,
)
from dli_airflow.spec import DatasetSpec, DatasetStatus, SourceType, name_key, validate_spec
from dli_airflow.store import SPEC_SUFFIXES, SingleFileStore, SpecStore
from dli_airflow.workflow import WorkflowInfo, WorkflowRegisterResult

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
        if not path.exists():
            link = f" (a symlink to {os.readlink(path)})" if path.is_symlink() else ""
            raise SpecFileNotFoundError(f"{path} does not exist{link}")
        store = SingleFileStore.for_file(path)
        rel = path.resolve().relative_to(store.root.resolve()).as_posix()
        loaded = load_entry(store, rel)  # only a regular file, bounded, is read (a FIFO never blocks)
        document = load_yaml(store.read_bytes(rel), str(path))
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


def is_spec_path(target: str | os.PathLike[str]) -> bool:
    """Whether ``register``'s first argument is a spec file rather than a dataset name of the project: a path
    object, anything with a path separator, or a YAML file that exists here (dataset names have no ``/``)."""
    if isinstance(target, os.PathLike):
        return True
    text = str(target)
    if "/" in text or os.sep in text:
        return True
    return text.lower().endswith(SPEC_SUFFIXES) and Path(text).is_file()


def project_spec_path(dataset_name: str, project: str | os.PathLike[str] | None = None) -> Path:
    """The spec file of ``dataset_name`` in a local project (seed 001 ``register("name", cron=...)``).

    The project (default: the current folder) is a folder of specs — a Git checkout, as ``dli spec publish``
    reads it — or a store folder (``code/`` and ``manual/``: its winning copy). Every spec there is loaded
    and validated, bounded like the store's reads.

    :raises DatasetNotFoundError: no valid spec of that name there (close names suggested; a spec of that
        name with a problem is reported as such)
    """
    from dli_airflow.catalog import scan
    from dli_airflow.errors import DatasetNotFoundError
    from dli_airflow.publish import SourceTree
    from dli_airflow.store import LocalStore, is_store_root

    folder = Path(project if project is not None else ".").expanduser()
    if not folder.is_dir():
        raise SpecFileNotFoundError(
            f"The project folder {folder} does not exist", hint="pass --path (path=) the folder of your specs"
        )
    store: SpecStore = LocalStore(folder) if is_store_root(folder) else SourceTree(folder)
    snapshot = scan(store)
    try:
        entry = snapshot.get(dataset_name)
    except DatasetNotFoundError as exc:
        message = exc.message.replace(f"the store {snapshot.store}", f"the project {folder}")
        raise DatasetNotFoundError(
            message, hint=f"pass the spec file, or --path (path=) the folder that holds {dataset_name}'s spec",
            dataset_name=dataset_name, path=str(folder),
        ) from None
    return Path(store.display(entry.path)) if isinstance(store, SourceTree) else folder / entry.path


#: The first line of every spec dli writes.
HEADER = "# Registered through dli (manual/). Change it with `dli workflow update` or `dli workflow register --force`.\n"
#: The second line: who wrote this version, how and when (JSON), read back by :func:`provenance`.
PROVENANCE_PREFIX = "# dli-provenance: "
#: The fields of a provenance line, and the longest value kept of each
_PROVENANCE_FIELDS = {"action": 16, "by": 256, "at": 40, "from": 64}


def provenance_line(action: str, by: str | None, at: datetime | None = None, request_from: str | None = None) -> str:
    """The provenance line of a spec written now by ``by`` (one line: JSON escapes every newline)."""
    when = (at or datetime.now(timezone.utc)).astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    record = {"action": action, "by": by or "unknown", "at": when, "from": request_from}
    record = {k: str(v)[:_PROVENANCE_FIELDS[k]] for k, v in record.items() if v is not None}
    return PROVENANCE_PREFIX + json.dumps(record, ensure_ascii=True, separators=(",", ":")) + "\n"


def provenance(data: bytes) -> dict[str, str]:
    """Who registered or last changed a manual spec, from its provenance line (``{}`` if it has none:
    a spec written before dli recorded it, or by hand). Only the known fields, as bounded strings."""
    for line in data[:4096].decode("utf-8", "replace").splitlines()[:3]:
        if line.startswith(PROVENANCE_PREFIX):
            try:
                record = json.loads(line[len(PROVENANCE_PREFIX):])
            except ValueError:
                return {}
            if not isinstance(record, dict):
                return {}
            return {k: v[:n] for k, n in _PROVENANCE_FIELDS.items() if isinstance(v := record.get(k), str)}
    return {}


def sql_key(name: str, sql: bytes) -> str:
    """A fresh key for one registration's SQL: ``manual/<name>.<16 hex>.sql``.

    The hex digits hash the SQL with a random nonce, so no two registrations share a key (a content
    address alone would be shared by two writers of the same SQL, and one's cleanup would delete the
    other's file). The name part is cut to keep the file name under 255 bytes.
    """
    token = hashlib.sha256(secrets.token_bytes(16) + sql).hexdigest()[:16]
    return f"manual/{name[:200]}.{token}.sql"


def write_manual(
    store: SpecStore,
    prepared: PreparedSpec,
    *,
    force: bool = False,
    expected_version: str | None = None,
    written_by: str | None = None,
    at: str | None = None,
) -> WrittenSpec:
    """Write the spec (and its SQL) under ``manual/``: the SQL to a fresh key first, then the spec naming it.

    Without ``force`` the spec is created only if absent; with ``force`` an existing manual spec is
    replaced only if it is still the version read here (a concurrent writer makes this fail, never lose
    a write). The SQL of a replaced spec is deleted once the new spec is in place.

    :param expected_version: replace only this version (an update read it first), else DLI-801
    :param written_by: the provenance line (:func:`provenance_line`) to write under the header
    :param at: the store path of the manual copy being replaced (an update, or ``force`` over a spec placed
        by hand at ``manual/team/x.yaml``): written in place, its new SQL beside it. Default
        ``manual/<name>.yaml``

    :raises WorkflowRegistrationError: DLI-801, the name is registered (or was, meanwhile) or the store
        refuses conditional writes
    """
    name = prepared.spec.name
    spec_path = at if at is not None and at.startswith("manual/") else f"manual/{name}.yaml"
    document = dict(prepared.document)
    sql_path: str | None = None
    sql = prepared.sql.encode("utf-8") if prepared.sql is not None else None
    if sql is not None:
        # beside the spec: its query_file is relative to the spec's folder
        sql_path = posixpath.join(posixpath.dirname(spec_path), posixpath.basename(sql_key(name, sql)))
        document["query_file"] = posixpath.basename(sql_path)
    text = yaml.safe_dump(document, sort_keys=False, allow_unicode=True, default_flow_style=False)
    try:
        current = store.read_manual(spec_path) if force or expected_version is not None else None
        if expected_version is not None and (current is None or current.version != expected_version):
            raise WorkflowRegistrationError(
                f"{store.display(spec_path)} changed while it was being updated (another writer)",
                hint="read it again (dli workflow get NAME) and retry",
            )
        head = (HEADER + (written_by or "")).encode("utf-8")
        if sql_path is not None and sql is not None:
            store.create_manual(sql_path, sql)
        try:
            if current is None:
                store.create_manual(spec_path, head + text.encode("utf-8"))
            else:
                store.replace_manual(spec_path, head + text.encode("utf-8"), current.version)
        except BaseException:
            if sql_path is not None:  # the key is this registration's own: nobody else uses it
                with contextlib.suppress(DliError, OSError):
                    store.delete_manual(sql_path)
            raise
        old_sql = query_file_of(current.data, spec_path) if current is not None else None
        if old_sql is not None and old_sql != sql_path:  # the replaced spec's SQL, no longer named
            with contextlib.suppress(DliError, OSError):
                store.delete_manual(old_sql)
    except DliError:
        raise
    except OSError as exc:
        raise WorkflowRegistrationError(f"cannot write {store.display(spec_path)}: {exc.strerror or exc}") from exc
    return WrittenSpec(spec_path=spec_path, sql_path=sql_path)


def query_file_of(data: bytes, spec_path: str) -> str | None:
    """The store path of the SQL file a manual spec names, if it is one dli may delete (under manual/)."""
    try:
        document = load_yaml(data, spec_path)
        query_file = document.get("query_file") if isinstance(document, dict) else None
        if not isinstance(query_file, str):
            return None
        path = sql_location(query_file, spec_path, spec_path)
    except DliError:
        return None
    return path if path.startswith("manual/") else None


def delete_manual(store: SpecStore, entry: SpecEntry) -> None:
    """Remove a manual spec: the spec first (so it stops being scheduled), then the SQL it names.

    The spec is deleted only if it is still the version read here: an unregistration never removes a
    registration that replaced it meanwhile (DLI-801 instead).
    """
    try:
        current = store.read_manual(entry.path)
        if current is None:
            return  # removed meanwhile: nothing left to do
        store.delete_manual(entry.path, current.version)
        sql_path = query_file_of(current.data, entry.path)
        if sql_path is not None:
            store.delete_manual(sql_path)
    except DliError:
        raise
    except OSError as exc:
        raise WorkflowRegistrationError(f"cannot delete {store.display(entry.path)}: {exc.strerror or exc}") from exc


def registration_warning(snapshot: StoreSnapshot | None, name: str, *, force: bool) -> str | None:
    """Decide whether ``name`` may be registered as a manual spec; the warning to show if it may.

    A name that exists in ``code/`` needs ``force``: the manual copy is stored but stays inactive
    (overridden). Replacing an existing manual spec needs ``force`` too.

    :param snapshot: the store as it is now (``None``: not readable here, nothing to check against)
    :raises WorkflowRegistrationError: the name is taken and ``force`` was not given
    """
    if snapshot is None:
        return None
    key = name_key(name)
    # a look-alike (other case, '-' for '_') is a different DAG id but the same name to a reader: the
    # catalog would report the pair as a conflict and schedule neither, so it is refused here, force or not
    lookalikes = sorted({e.name for e in snapshot.entries if e.name != name and name_key(e.name) == key})
    if lookalikes:
        raise WorkflowRegistrationError(
            f"Dataset {name!r} looks like {', '.join(map(repr, lookalikes))} already in the store (names that "
            "differ only by case or by '-'/'_' are one dataset to dli)",
            hint=f"register it as {lookalikes[0]!r} (with --force to replace it) or choose another name",
        )
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


def manual_path_of(snapshot: StoreSnapshot | None, name: str) -> str | None:
    """The store path of ``name``'s manual copy, if the store has one (a ``force`` registration replaces it there)."""
    if snapshot is None:
        return None
    return next((e.path for e in snapshot.entries if e.name == name and e.source is SourceType.MANUAL), None)


def registered_result(prepared: PreparedSpec, written: WrittenSpec, warning: str | None) -> WorkflowRegisterResult:
    """What a registration answers: the manual workflow as stored (not in Airflow until the next parse)."""
    schedule = prepared.spec.schedule
    if warning:
        status = DatasetStatus.OVERRIDDEN
    else:
        status = DatasetStatus.ACTIVE if (schedule is None or schedule.enabled) else DatasetStatus.PAUSED
    info = WorkflowInfo(
        dataset_name=prepared.spec.name,
        source_type=SourceType.MANUAL,
        status=status,
        cron=schedule.cron if schedule else None,
        timezone=schedule.timezone if schedule else None,
        overridden_by=SourceType.CODE if warning else None,
        owner=prepared.spec.owner,
        in_airflow=False,
        spec_file=written.spec_path,
    )
    return WorkflowRegisterResult(
        source_type=SourceType.MANUAL, workflow_info=info, spec_path=written.spec_path,
        sql_path=written.sql_path, warning=warning,
    )


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
    "provenance",
    "provenance_line",
    "query_file_of",
    "registered_result",
    "registration_warning",
    "sql_key",
    "write_manual",
]
