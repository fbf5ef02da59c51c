"""The control plane's pieces that need no api-server: the plugin class, the error mapping, the bodies.
(Its behaviour in a real api-server: tests/e2e/test_control_plane_e2e.py.)"""

from __future__ import annotations

import subprocess
import sys

import pytest

from dli_airflow import errors


def test_loading_the_plugin_builds_no_app_and_imports_no_fastapi():
    code = ("import sys; import dli_airflow.plugin as p; "
            "print('fastapi' in sys.modules, 'dli_airflow.plugin.api' in sys.modules, p.DliPlugin.fastapi_apps[0]['url_prefix'])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "False", "/dli"]


@pytest.mark.parametrize(("error", "status"), [
    (errors.WorkflowPermissionError("x"), 403), (errors.WorkflowNotFoundError("x"), 404),
    (errors.DatasetNotFoundError("x"), 404), (errors.WorkflowRegistrationError("x"), 409),
    (errors.ParameterError("x"), 422), (errors.SpecValidationError("x"), 422), (errors.TemplateError("x"), 422),
    (errors.StoreUnavailableError("x"), 503), (errors.ConfigError("x"), 500), (errors.SqlExecutionError("x"), 502),
])
def test_each_dli_error_has_its_http_status(error: errors.DliError, status: int):
    from dli_airflow.plugin.api import status_of

    assert status_of(error) == status


def test_the_register_overrides_are_the_registry_keys_and_unknown_fields_are_refused():
    from pydantic import ValidationError

    from dli_airflow.plugin.models import Overrides, RegisterBody
    from dli_airflow.registry import OVERRIDE_KEYS

    assert tuple(Overrides.model_fields) == tuple(OVERRIDE_KEYS)
    with pytest.raises(ValidationError):
        RegisterBody.model_validate({"spec": "name: x", "overrides": {"crn": "0 9 * * *"}})
    with pytest.raises(ValidationError):
        RegisterBody.model_validate({"spec": "x" * (1024 * 1024 + 1)})
