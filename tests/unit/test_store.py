"""The storage layer (`dli_airflow.store`): the one write guard, writes under manual/ only, listing, reads."""

from __future__ import annotations

import pytest

from dli_airflow.errors import SpecValidationError, WorkflowPermissionError, WorkflowRegistrationError
from dli_airflow.spec import SourceType
from dli_airflow.store import LocalStore, SpecStore, StoreFile, manual_path


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


def test_a_local_store_declares_itself_local_and_reads_many_files_one_by_one(tmp_path):
    (tmp_path / "code").mkdir()
    (tmp_path / "code" / "a.yaml").write_bytes(b"a")
    (tmp_path / "code" / "b.sql").write_bytes(b"b")
    store = LocalStore(tmp_path)
    assert store.remote is False
    got = store.read_many(["code/a.yaml", "code/missing.sql", "code/b.sql", "code/a.yaml"])
    assert got == {"code/a.yaml": b"a", "code/b.sql": b"b"}  # a missing file is left out, not an error
    store.set_deadline(0.0)  # a local store has no deadline to keep
    assert store.read_bytes("code/a.yaml") == b"a"


def test_listing_skips_hidden_files_and_versions_change_with_the_content(tmp_path):
    (tmp_path / "manual" / ".git").mkdir(parents=True)
    (tmp_path / "manual" / ".git" / "x.yaml").write_bytes(b"hidden")
    (tmp_path / "manual" / ".x.yaml").write_bytes(b"hidden")
    (tmp_path / "manual" / "a.yaml").write_bytes(b"one")
    store = LocalStore(tmp_path)
    (before,) = store.list_files(SourceType.MANUAL)
    (tmp_path / "manual" / "a.yaml").write_bytes(b"three")
    (after,) = store.list_files(SourceType.MANUAL)
    assert before.path == after.path == "manual/a.yaml" and before.version != after.version
    assert store.list_files(SourceType.CODE) == []


def test_a_read_only_store_refuses_writes_by_default():
    class ReadOnly(SpecStore):
        url = "mem://x"

        def list_files(self, prefix: SourceType) -> list[StoreFile]:
            return []

        def read_bytes(self, path: str) -> bytes:
            raise SpecValidationError(f"{path} does not exist")

    with pytest.raises(WorkflowRegistrationError, match="read-only here"):
        ReadOnly().put_manual("manual/a.yaml", b"x")
    assert ReadOnly().read_many(["manual/a.yaml"]) == {}
