"""Registering manual specs (`dli_airflow.registry`): overrides, SQL beside the spec, the code/manual checks."""

from __future__ import annotations

import pytest
import yaml

from dli_airflow.catalog import scan
from dli_airflow.errors import (
    SpecValidationError,
    WorkflowNotFoundError,
    WorkflowPermissionError,
    WorkflowRegistrationError,
)
from dli_airflow.registry import (
    delete_manual,
    manual_entry,
    prepare_registration,
    registration_warning,
    write_manual,
)
from dli_airflow.spec import DatasetStatus, SourceType
from dli_airflow.store import LocalStore


def test_register_writes_spec_and_sql_and_applies_overrides(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "report.yaml").write_text(
        "# my report\nname: team.report\nowner: me@example.com\nquery_file: q/report.sql\n"
        "parameters: [{name: d, type: date, default: 2024-01-01}]\nschedule: {cron: '0 9 * * *'}\n"
    )
    (src / "q").mkdir()
    (src / "q" / "report.sql").write_text("SELECT {{ d }} AS d\n")
    store_root = tmp_path / "store"
    store_root.mkdir()
    store = LocalStore(store_root)
    prepared = prepare_registration(spec_path=src / "report.yaml", cron="30 7 * * 1", timezone="Asia/Seoul",
                                    enabled=False, retry_max_attempts=4)
    written = write_manual(store, prepared)
    assert written.spec_path == "manual/team.report.yaml" and written.sql_path == "manual/team.report.sql"
    doc = yaml.safe_load((store_root / written.spec_path).read_text())
    assert doc["query_file"] == "team.report.sql"
    assert doc["schedule"] == {"cron": "30 7 * * 1", "timezone": "Asia/Seoul", "enabled": False,
                               "retry": {"max_attempts": 4}}
    (entry,) = scan(store).entries
    assert entry.source is SourceType.MANUAL and entry.status is DatasetStatus.PAUSED
    assert entry.sql == "SELECT {{ d }} AS d\n"
    assert not list(store_root.glob("manual/.*.tmp"))
    delete_manual(store, entry)
    assert not any((store_root / "manual").iterdir())


def test_register_refuses_an_invalid_override(tmp_path):
    spec = tmp_path / "x.yaml"
    spec.write_text("name: x\nowner: o\nquery: SELECT 1\nschedule: {cron: '0 9 * * *'}\n")
    with pytest.raises(SpecValidationError, match="schedule.cron"):
        prepare_registration(spec_path=spec, cron="0 9 * *")


def test_register_needs_one_source():
    with pytest.raises(WorkflowRegistrationError):
        prepare_registration()


def _two_sources(make_store):
    return scan(LocalStore(make_store({
        "code/a.yaml": "name: both\nowner: o\nquery: SELECT 1\n",
        "manual/a.yaml": "name: both\nowner: o\nquery: SELECT 2\n",
        "code/b.yaml": "name: code_only\nowner: o\nquery: SELECT 1\n",
        "manual/c.yaml": "name: manual_only\nowner: o\nquery: SELECT 1\n",
    })))


def test_registering_over_code_or_an_existing_manual_spec_needs_force(make_store):
    snapshot = _two_sources(make_store)
    with pytest.raises(WorkflowRegistrationError, match="already exists in code/"):
        registration_warning(snapshot, "code_only", force=False)
    assert "overridden by code" in (registration_warning(snapshot, "code_only", force=True) or "")
    with pytest.raises(WorkflowRegistrationError, match="already registered"):
        registration_warning(snapshot, "manual_only", force=False)
    assert registration_warning(snapshot, "manual_only", force=True) is None
    assert registration_warning(snapshot, "new", force=False) is None
    assert registration_warning(None, "code_only", force=False) is None  # nothing to check against


def test_unregistering_takes_the_manual_copy_only(make_store):
    snapshot = _two_sources(make_store)
    entry, code_stays = manual_entry(snapshot, "both")
    assert entry.source is SourceType.MANUAL and code_stays
    assert manual_entry(snapshot, "manual_only")[1] is False
    with pytest.raises(WorkflowPermissionError, match="managed by code"):
        manual_entry(snapshot, "code_only")
    with pytest.raises(WorkflowNotFoundError):
        manual_entry(snapshot, "nope")


def test_an_unknown_override_keyword_is_refused(tmp_path):
    with pytest.raises(TypeError, match="allowed: cron, timezone, enabled, retry_max_attempts, retry_delay_seconds"):
        prepare_registration(spec={"name": "a", "owner": "o", "query": "SELECT 1"}, crn="0 9 * * *")
