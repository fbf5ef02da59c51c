"""The control plane's pieces that need no api-server: the plugin class, the error mapping, the bodies.
(Its behaviour in a real api-server: tests/e2e/test_control_plane_e2e.py.)"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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


_MARK = "S3CRET-VALUE"
_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20).map(lambda t: _MARK + t),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=10), inner, max_size=3),
    max_leaves=10,
)


@pytest.mark.hostile(kind="http-bodies")
@settings(max_examples=300, deadline=None)
@given(body=st.dictionaries(st.sampled_from(["parameters", "source", "note", "dry_run", "start", "end", "spec",
                                             "sql", "force", "overrides", "cron", "x"]), _json, max_size=5),
       model=st.sampled_from(["RunBody", "BackfillBody", "RegisterBody", "Overrides"]))
def test_an_invalid_body_is_dli_203_naming_fields_and_never_echoing_values(body, model):
    """Whatever a client sends, the answer to a body the API cannot read names the fields and what is wrong
    with them, and carries none of the values sent (a body may hold secrets, or megabytes)."""
    from pydantic import ValidationError

    from dli_airflow.plugin import models
    from dli_airflow.plugin.api import request_error

    try:
        getattr(models, model).model_validate(body)
    except ValidationError as exc:
        raised = exc.errors()
    else:
        return
    error = request_error([{**e, "loc": ("body", *e["loc"])} for e in raised])  # FastAPI's locations
    assert error.code == "DLI-203" and error.problems
    text = json.dumps(error.to_dict())
    assert _MARK not in text
    assert {p.file for p in error.problems} == {"<request body>"}
    assert {p.field for p in error.problems} <= {".".join(map(str, e["loc"])) or None for e in raised}


@pytest.mark.hostile(kind="http-bodies")
@pytest.mark.parametrize(("loc", "field", "where"), [
    (("body", "parameters"), "parameters", "<request body>"), (("query", "limit"), "limit", "<query>"),
    (("body",), None, "<request body>"), (("path", "name"), "name", "<path>"), ((), None, "<request>"),
])
def test_a_validation_error_names_where_and_which_field(loc, field, where):
    from dli_airflow.plugin.api import request_error

    error = request_error([{"loc": loc, "msg": "Field required", "input": _MARK}])
    assert (error.problems[0].file, error.problems[0].field) == (where, field)
    assert _MARK not in json.dumps(error.to_dict()) and "/dli/api/v1/docs" in error.hint


def test_a_workflow_not_in_airflow_gets_the_one_hint_that_fits():
    """A spec in the store that Airflow has not parsed yet (just registered) says to retry in seconds, not to
    register it; a name that is nowhere says to check it or register it."""
    from dli_airflow.plugin.api import not_in_airflow

    pending = not_in_airflow("team.daily", in_store=True, path="manual/team/daily.yaml")
    assert pending.code == "DLI-800" and "manual/team/daily.yaml" in pending.message
    assert "not parsed it yet" in pending.message and "dli workflow register" not in pending.render()
    assert "dli workflow get team.daily" in pending.hint
    unknown = not_in_airflow("team.nope", in_store=False)
    assert "not parsed" not in unknown.render() and "dli workflow list" in unknown.hint


def test_the_control_plane_answers_from_its_snapshot_while_it_lists_the_store_again(monkeypatch, tmp_path):
    """Stale while revalidating: past its TTL, the snapshot still answers at once while one background
    listing runs (a 1,000-spec store takes most of a second to list: every fifth request used to wait for
    it); a write's forget_snapshot wins over a listing begun before it; past the maximum age a request lists
    the store itself. The listing is slowed by an event here, a fault a real store cannot be made to show."""
    import threading
    import time

    from dli_airflow.plugin import state

    monkeypatch.setenv("AIRFLOW__DLI__SPEC_STORE", str(tmp_path))
    gate = threading.Event()
    loads: list[int] = []

    def load(store: str) -> object:
        number = len(loads) + 1
        loads.append(number)
        if number > 1:
            assert gate.wait(10)
        return f"snapshot {number}"

    monkeypatch.setattr(state, "_load", load)
    monkeypatch.setattr(state, "SNAPSHOT_TTL_SECONDS", 0.05)
    state.forget_snapshot()
    assert state.snapshot() == "snapshot 1"  # the first one is listed by the request
    time.sleep(0.06)
    began = time.monotonic()
    assert state.snapshot() == "snapshot 1" and state.snapshot() == "snapshot 1"  # answered while listing
    assert time.monotonic() - began < 1 and len(loads) == 2  # one background listing, not one per request
    gate.set()
    deadline = time.monotonic() + 5
    while state.snapshot() != "snapshot 2":
        assert time.monotonic() < deadline, "the background listing was never installed"
        time.sleep(0.01)

    # a write during a background listing: the listing's (older) snapshot is never installed
    gate.clear()
    time.sleep(0.06)
    assert state.snapshot() == "snapshot 2"  # starts listing 3, held by the gate
    state.forget_snapshot()
    gate.set()
    assert state.snapshot() == "snapshot 4"  # the request after the write lists the store itself
    time.sleep(0.2)
    assert state._memo is not None and state._memo[2] == "snapshot 4"  # listing 3 came back and was dropped

    # past the maximum age nothing stale is served
    monkeypatch.setattr(state, "SNAPSHOT_MAX_AGE_SECONDS", 0.05)
    time.sleep(0.06)
    assert state.snapshot() == "snapshot 5"
    state.forget_snapshot()
