"""``get_provider_info()``: a plain dict, importable without Airflow, valid against Airflow's own schema."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from importlib import resources
from typing import Any

import jsonschema
import pytest
from airflow.sdk import BaseHook, BaseNotifier

from dli_airflow.get_provider_info import get_provider_info


def _airflow_schema(name: str) -> dict[str, Any]:
    """One of the JSON schemas that ship inside the installed ``airflow`` package."""
    return json.loads(resources.files("airflow").joinpath(name).read_text())


def import_string(dotted: str) -> Any:
    """The class ``dotted`` names, imported as Airflow's providers manager does."""
    module, _, name = dotted.rpartition(".")
    return getattr(importlib.import_module(module), name)


@pytest.fixture(scope="module")
def info() -> dict[str, Any]:
    return get_provider_info()


def test_discovery_imports_no_airflow() -> None:
    # Airflow calls this while it discovers providers: importing Airflow here would be a circular import
    code = (
        "import sys\n"
        "from dli_airflow.get_provider_info import get_provider_info\n"
        "info = get_provider_info()\n"
        "assert info['package-name'] == 'dli-airflow'\n"
        "loaded = sorted(m for m in sys.modules if m == 'airflow' or m.startswith('airflow.'))\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_it_validates_against_airflows_provider_info_schema(info: dict[str, Any]) -> None:
    schema = _airflow_schema("provider_info.schema.json")
    jsonschema.validators.validator_for(schema)(schema).validate(info)
    assert info["versions"] == [__import__("dli_airflow").__version__]


def test_every_declared_class_and_module_imports(info: dict[str, Any]) -> None:
    for entry in info["connection-types"]:
        hook = import_string(entry["hook-class-name"])
        assert issubclass(hook, BaseHook)
        assert hook.conn_type == entry["connection-type"] and hook.hook_name == entry["hook-name"]
    for group in info["hooks"]:
        for module in group["python-modules"]:
            importlib.import_module(module)
    for name in info["notifications"]:
        assert issubclass(import_string(name), BaseNotifier)
    integrations = {i["integration-name"] for i in info["integrations"]}
    assert {g["integration-name"] for g in info["hooks"]} <= integrations


def test_only_dlis_own_connection_type_is_declared(info: dict[str, Any]) -> None:
    # trino and google_cloud_platform belong to their providers: declaring them again would clash
    assert [c["connection-type"] for c in info["connection-types"]] == ["dli_airflow_api"]
    assert info["notifications"] == ["dli_airflow.notifiers.DatasetNotifier"]


def test_the_declared_connection_form_is_the_hooks(info: dict[str, Any]) -> None:
    (entry,) = info["connection-types"]
    declared = entry["ui-field-behaviour"]
    as_hook = {"hidden_fields": declared["hidden-fields"], "relabeling": declared["relabeling"],
               "placeholders": declared["placeholders"]}
    schema = _airflow_schema("customized_form_field_behaviours.schema.json")
    jsonschema.validate(as_hook, schema)
    assert as_hook == import_string(entry["hook-class-name"]).get_ui_field_behaviour()


def test_the_dli_config_section_lists_every_option(info: dict[str, Any]) -> None:
    from dli_airflow.config import OPTIONS

    section = info["config"]["dli"]
    assert set(section["options"]) == set(OPTIONS)
    assert all(o["description"] for o in section["options"].values())
