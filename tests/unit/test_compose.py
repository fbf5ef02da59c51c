"""docker-compose.airflow.yml: no Docker daemon runs here, so check what can be checked without one."""

from __future__ import annotations

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
AIRFLOW_SERVICES = {"airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-worker", "airflow-triggerer"}


def _compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.airflow.yml").read_text())


def _mount(volume: str) -> tuple[str, str]:
    """``source:target[:mode]`` -> (target, source); the source may hold ``${VAR:-default}``."""
    if volume.endswith((":ro", ":rw")):
        volume = volume[:-3]
    source, _, target = volume.rpartition(":")
    return target, source


def test_names_every_service_of_the_reference_deployment():
    services = _compose()["services"]
    assert AIRFLOW_SERVICES | {"postgres", "redis", "airflow-init"} <= set(services)
    assert services["airflow-worker"]["command"] == "celery worker"


def test_airflow_services_mount_dags_and_the_store_and_set_the_spec_store():
    services = _compose()["services"]
    for name in AIRFLOW_SERVICES | {"airflow-init"}:
        service = services[name]
        env = service["environment"]
        assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor", name
        assert env["AIRFLOW__DLI__SPEC_STORE"] == "/opt/dli/store", name
        mounts = dict(_mount(v) for v in service["volumes"])
        assert mounts["/opt/airflow/dags"] == "./dli_airflow/dag_files", name
        assert "/opt/dli/store" in mounts, name
        assert env["AIRFLOW__CORE__DAGS_FOLDER"] == "/opt/airflow/dags"


def test_the_image_installs_this_package():
    build = _compose()["services"]["airflow-scheduler"]["build"]
    assert "pip install" in build["dockerfile_inline"] and "/opt/dli-airflow" in build["dockerfile_inline"]


def test_the_mounted_dags_folder_holds_exactly_the_packaged_dag_file():
    """The folder mounted as dags is the package's own ``dag_files/``: the DAG file ``dli dev up`` writes too."""
    services = _compose()["services"]
    source = dict(_mount(v) for v in services["airflow-scheduler"]["volumes"])["/opt/airflow/dags"]
    folder = ROOT / services["airflow-scheduler"]["build"]["context"] / source
    assert sorted(p.name for p in folder.glob("*.py")) == ["dli_datasets.py"]
    assert not (folder / "__init__.py").exists()


def test_dli_sync_has_its_airflow_api_connection_and_the_image_installs_the_tested_pins():
    import json

    services = _compose()["services"]
    for name in AIRFLOW_SERVICES:
        conn = json.loads(services[name]["environment"]["AIRFLOW_CONN_DLI_AIRFLOW_API"].replace(
            "${DLI_ADMIN_PASSWORD:-admin}", "admin"))
        assert conn["host"] == "http://airflow-apiserver:8080" and conn["login"] == "admin", name
    dockerfile = services["airflow-worker"]["build"]["dockerfile_inline"]
    assert "-c /opt/dli-airflow/constraints.txt" in dockerfile and "celery" in dockerfile
    pins = (ROOT / "constraints.txt").read_text()
    celery = next(line for line in pins.splitlines() if line.startswith("celery=="))
    assert tuple(int(x) for x in celery.split("==")[1].split(".")[:2]) < (5, 7)
