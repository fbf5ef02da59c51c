"""Registering manual specs: the one write guard, atomic local writes, overrides."""

from __future__ import annotations

import pytest
import yaml

from dli_airflow.catalog import scan
from dli_airflow.errors import SpecValidationError, WorkflowPermissionError, WorkflowRegistrationError
from dli_airflow.registry import delete_manual, prepare_registration, write_manual
from dli_airflow.spec import DatasetStatus, SourceType
from dli_airflow.store import LocalStore, manual_path


@pytest.mark.parametrize(
    "path",
    ["code/x.yaml", "manual/../code/x.yaml", "/manual/x.yaml", "manual", "manual/./x.yaml", "manual//x.yaml",
     "x.yaml", "../manual/x.yaml", "manual/a/../../code/x.yaml"],
)
def test_every_write_outside_manual_is_refused(path):
    with pytest.raises(WorkflowPermissionError, match="only plain files under manual/"):
        manual_path(path)


def test_store_writes_never_touch_code(tmp_path):
    (tmp_path / "code").mkdir()
    (tmp_path / "code" / "a.yaml").write_text("name: a\nowner: o\nquery: SELECT 1\n")
    store = LocalStore(tmp_path)
    for call in (lambda: store.put_manual("code/a.yaml", b"x"), lambda: store.delete_manual("code/a.yaml")):
        with pytest.raises(WorkflowPermissionError):
            call()
    assert (tmp_path / "code" / "a.yaml").read_text().startswith("name: a")


def test_symlinked_manual_folder_pointing_into_code_is_refused(tmp_path):
    (tmp_path / "code").mkdir()
    (tmp_path / "manual").symlink_to(tmp_path / "code")
    with pytest.raises(WorkflowPermissionError, match="outside manual/"):
        LocalStore(tmp_path).put_manual("manual/x.yaml", b"name: x\n")
    assert not (tmp_path / "code" / "x.yaml").exists()


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
