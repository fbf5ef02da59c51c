"""The packaged DAG file through Airflow's own DagBag and serialization, with every hostile name in the store.

What the dag-processor does per file (Airflow 3.3): ``BundleDagBag`` imports the file and collects the DAG
objects among its module globals, then ``airflow.dag_processing.processor._serialize_dags`` serializes each
one; that list is what reaches the metadata DB. One spec must never hide, replace or break another: every
good dataset arrives, ``dli_sync`` is the maintenance DAG, and ``dli_spec_errors`` lists each hostile file
with its code.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import structlog

ROOT = Path(__file__).resolve().parents[2]
DAG_FILE = ROOT / "dli_airflow" / "dag_files" / "dli_datasets.py"


def _spec(name: str, extra: str = "") -> str:
    return f"name: {name}\nowner: me@example.com\nquery: SELECT 1 AS one\n{extra}"


# good specs: each must become a DAG that reaches the metadata DB
GOOD = {
    "code/good.yaml": _spec("good.ds2"),
    "code/typed.yaml": _spec(
        "good.typed",
        "parameters:\n  - {name: answer, type: string, default: NO}\n  - {name: code, type: string, default: 010}\n"
        "  - {name: at, type: string, default: 12:30:00}\n  - {name: n, type: integer, default: 7}\n",
    ),
    # good.closer (manual, below) closes a cycle with it: the manual one is taken out, this one keeps running
    "code/down.yaml": _spec("good.downstream", "depends_on: [good.ds2, good.closer]\nschedule: {cron: '0 9 * * *'}\n"),
    "code/dli.yaml": _spec("dli"),  # near the reserved prefix, not in it
    "code/leap.yaml": _spec("good.leap", "schedule: {cron: '0 0 29 2 *'}\n"),
    "manual/mine.yaml": _spec("team.mine", "schedule: {cron: '0 6 * * *', timeout_seconds: 604800}\n"),
}

# hostile files: (path, text, the code dli_spec_errors must list it with)
HOSTILE = [
    ("code/file.yaml", _spec("__file__"), "DLI-201"),
    ("code/builtins.yaml", _spec("__builtins__"), "DLI-201"),
    ("code/modname.yaml", _spec("__name__"), "DLI-201"),
    ("code/loader.yaml", _spec("__loader__"), "DLI-201"),
    ("code/sync.yaml", _spec("dli_sync"), "DLI-201"),
    ("code/errors.yaml", _spec("dli_spec_errors"), "DLI-201"),
    ("code/shard.yaml", _spec("dli_spec_errors_shard1"), "DLI-201"),
    ("code/sync_case.yaml", _spec("DLI-Sync"), "DLI-201"),
    ("code/globals.yaml", _spec("dli_dag_0"), "DLI-201"),
    ("code/newline.yaml", _spec('"good.ds2\\n"'), "DLI-201"),
    ("code/hidden.yaml", _spec(".hidden"), "DLI-201"),
    ("code/never.yaml", _spec("bad.never", "schedule: {cron: '0 0 30 2 *'}\n"), "DLI-201"),
    ("code/timeout.yaml", _spec("bad.timeout", "schedule: {cron: '0 9 * * *', timeout_seconds: 100000000000000000000}\n"),
     "DLI-201"),
    ("code/dup.yaml", _spec("bad.dup", "schedule: {enabled: false, cron: '0 9 * * *'}\nschedule: {cron: '* * * * *'}\n"),
     "DLI-202"),
    ("code/octal.yaml", _spec("bad.octal", "schedule: {cron: '0 9 * * *', retry: {max_attempts: 010}}\n"), "DLI-202"),
    ("code/look1.yaml", _spec("sales_daily"), "DLI-204"),
    ("code/look2.yaml", _spec("Sales-Daily"), "DLI-204"),
    ("code/cyc_a.yaml", _spec("cyc.a", "depends_on: [cyc.b]\n"), "DLI-201"),
    ("code/cyc_b.yaml", _spec("cyc.b", "depends_on: [cyc.a]\n"), "DLI-201"),
    ("manual/look.yaml", _spec("Good.DS2"), "DLI-204"),
    ("manual/file.yaml", _spec("__file__"), "DLI-201"),
    ("manual/sync.yaml", _spec("dli_sync", "schedule: {cron: '* * * * *'}\n"), "DLI-201"),
    ("manual/newline.yaml", _spec('"team.mine\\n"'), "DLI-201"),
    ("manual/closes.yaml", _spec("good.closer", "depends_on: [good.downstream]\n"), "DLI-201"),
]
GOOD_NAMES = {"good.ds2", "good.typed", "good.downstream", "dli", "good.leap", "team.mine"}


@pytest.fixture
def dags_folder(airflow_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    store = tmp_path / "store"
    for rel, text in [*GOOD.items(), *((p, t) for p, t, _ in HOSTILE)]:
        (store / rel).parent.mkdir(parents=True, exist_ok=True)
        (store / rel).write_text(text, encoding="utf-8")
    folder = tmp_path / "dags"
    folder.mkdir()
    shutil.copy(DAG_FILE, folder / DAG_FILE.name)
    monkeypatch.setenv("AIRFLOW__DLI__SPEC_STORE", str(store))
    monkeypatch.setenv("AIRFLOW__DLI__CACHE_DIR", str(tmp_path / "cache"))
    return folder


def _reach_the_db(folder: Path) -> tuple[dict[str, dict], dict]:
    """The DagBag of ``folder`` and the serialized DAGs the dag-processor would write, by dag_id."""
    from airflow.dag_processing.dagbag import BundleDagBag
    from airflow.dag_processing.processor import _serialize_dags
    from airflow.serialization.serialized_objects import DagSerialization

    bag = BundleDagBag(dag_folder=folder, bundle_path=folder, bundle_name="dli", load_op_links=False)
    serialized, errors = _serialize_dags(bag, structlog.get_logger())
    assert not errors, errors
    by_id = {lazy.dag_id: lazy.data for lazy in serialized}
    for dag_id, data in by_id.items():  # and each one reads back, as the scheduler and the API server do
        assert DagSerialization.from_dict(data).dag_id == dag_id
    return by_id, bag.import_errors


@pytest.mark.hostile(kind="names")
def test_every_good_dataset_reaches_the_db_and_each_hostile_one_is_listed(dags_folder: Path) -> None:
    serialized, import_errors = _reach_the_db(dags_folder)
    assert import_errors == {}
    assert set(serialized) == GOOD_NAMES | {"dli_spec_errors", "dli_sync"}  # nothing lost, nothing replaced
    sync = serialized["dli_sync"]["dag"]
    assert "dli:maintenance" in sync["tags"] and "source:code" not in sync["tags"]

    doc = serialized["dli_spec_errors"]["dag"]["doc_md"]
    blocks = doc.split("\n- **")[1:]
    store = Path(dags_folder).parent / "store"
    for rel, _, code in HOSTILE:
        found = [b for b in blocks if f"{store}/{rel}" in b]
        assert found, f"{rel} is not listed in dli_spec_errors"
        assert all(b.startswith(f"{code}**") for b in found), (rel, found)
    # no good file is a problem (code/down.yaml is named only as the code side of the cycle that a manual spec closes)
    assert not [rel for rel in GOOD if any(b.split("\n")[0].find(f"{store}/{rel}") >= 0 for b in blocks)]
    assert "the manual ones ('good.closer') are not scheduled; the code ones keep running" in doc


@pytest.mark.hostile(kind="yaml")
def test_string_defaults_reach_the_trigger_form_as_written(dags_folder: Path) -> None:
    serialized, _ = _reach_the_db(dags_folder)
    params = dict(serialized["good.typed"]["dag"]["params"])
    defaults = {name: p["default"] for name, p in params.items()}
    assert defaults == {"answer": "NO", "code": "010", "at": "12:30:00", "n": 7}


@pytest.mark.hostile(kind="names")
def test_the_check_sees_a_file_whose_globals_hide_every_dag(dags_folder: Path) -> None:
    """The control: the same DagBag and serialization count zero DAGs for a DAG file that puts a DAG under
    ``__file__`` (what ``globals().update(build_dags())`` did with a dataset so named)."""
    (dags_folder / DAG_FILE.name).unlink()
    (dags_folder / "by_dag_id.py").write_text(
        "from dli_airflow.factory import build_dags\n\n"
        "dags = build_dags()\n"
        "globals().update({'__file__': dags['good.ds2'], **{f'd{i}': d for i, d in enumerate(dags.values())}})\n"
    )
    serialized, _ = _reach_the_db(dags_folder)
    assert serialized == {}


def test_with_import_errors_on_each_broken_spec_is_an_import_error_of_its_own_file(dags_folder, monkeypatch):
    """``[dli] import_errors = True``: Airflow's own import-errors view lists each broken spec under the spec's
    path (with the problem's text), never under the DAG file, and every good DAG still reaches the DB. Private
    internals of the dag-processor: re-check this on an Airflow upgrade."""
    import airflow
    from airflow.dag_processing.dagbag import BundleDagBag
    from airflow.dag_processing.processor import _serialize_dags

    from dli_airflow.import_errors import CHECKED_ON, DAG_PREFIX

    assert airflow.__version__ == CHECKED_ON, "check dli_airflow/import_errors.py on this Airflow, then pin it"
    monkeypatch.setenv("AIRFLOW__DLI__IMPORT_ERRORS", "True")
    bag = BundleDagBag(dag_folder=dags_folder, bundle_path=dags_folder, bundle_name="dli", load_op_links=False)
    serialized, errors = _serialize_dags(bag, structlog.get_logger())
    assert bag.import_errors == {}  # the DAG file itself imported fine
    names = {lazy.dag_id for lazy in serialized}
    assert names == GOOD_NAMES | {"dli_spec_errors", "dli_sync"}  # the problem DAGs never reach the DB
    store = Path(dags_folder).parent / "store"
    assert DAG_FILE.name not in " ".join(errors)
    for rel, _, code in HOSTILE:
        keyed = [text for where, text in errors.items() if where == f"{store}/{rel}"]
        if keyed:  # a hostile file that is a problem of its own (not only the other side of a conflict)
            assert f"[{code}]" in keyed[0] and "Failed to serialize DAG 'dli_spec_problem_" in keyed[0]
    matched = [rel for rel, _, _ in HOSTILE if f"{store}/{rel}" in errors]
    assert len(matched) >= len(HOSTILE) // 2, sorted(errors)
    assert all(not n.startswith(DAG_PREFIX) for n in names)
    monkeypatch.delenv("AIRFLOW__DLI__IMPORT_ERRORS")
    bag = BundleDagBag(dag_folder=dags_folder, bundle_path=dags_folder, bundle_name="dli", load_op_links=False)
    assert _serialize_dags(bag, structlog.get_logger())[1] == {}  # off by default
