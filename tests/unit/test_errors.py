"""The error tree: stable, unique codes in their ranges; messages render with their fix."""

from __future__ import annotations

import re

import pytest

from dli_airflow import errors
from dli_airflow.errors import DliError, Problem, all_error_classes

RANGES = {
    "ConfigError": 0,
    "DatasetNotFoundError": 1,
    "StoreNotFoundError": 1,
    "SpecFileNotFoundError": 1,
    "SpecValidationError": 2,
    "SpecSyntaxError": 2,
    "ParameterError": 2,
    "SpecConflictError": 2,
    "TemplateError": 2,
    "TranspileError": 3,
    "ExecutionError": 4,
    "ExecutionPermissionError": 4,
    "SqlExecutionError": 4,
    "ExecutionTimeoutError": 4,
    "ServerUnreachableError": 5,
    "ServerAuthError": 5,
    "StoreUnavailableError": 5,
    "ServerExecutionError": 5,
    "WorkflowNotFoundError": 8,
    "WorkflowRegistrationError": 8,
    "WorkflowExecutionError": 8,
    "WorkflowPermissionError": 8,
}

#: Codes DESIGN.md fixes by number; they never change meaning.
FIXED = {
    "ExecutionPermissionError": "DLI-404",
    "SqlExecutionError": "DLI-405",
    "WorkflowNotFoundError": "DLI-800",
    "WorkflowRegistrationError": "DLI-801",
    "WorkflowExecutionError": "DLI-802",
    "WorkflowPermissionError": "DLI-803",
}


def test_codes_are_unique() -> None:
    codes = [cls.code for cls in all_error_classes()]
    assert len(codes) == len(set(codes)), sorted(c for c in codes if codes.count(c) > 1)


def test_every_class_has_a_well_formed_code_of_its_own() -> None:
    for cls in all_error_classes():
        assert "code" in vars(cls), f"{cls.__name__} inherits its code"
        assert re.fullmatch(r"DLI-\d{3}", cls.code), cls


def test_every_class_is_in_its_range() -> None:
    classes = {cls.__name__: cls for cls in all_error_classes()}
    assert RANGES.keys() <= classes.keys()
    for name, cls in classes.items():
        if name in RANGES:
            assert int(cls.code[4]) == RANGES[name], f"{name} {cls.code}"
        else:  # a class added later: it still sits in a known range
            assert cls.code[4] in "0123458", f"{name} {cls.code}"


@pytest.mark.parametrize(("name", "code"), sorted(FIXED.items()))
def test_fixed_codes(name: str, code: str) -> None:
    assert getattr(errors, name).code == code


def test_all_error_classes_are_sorted_and_exclude_the_base() -> None:
    classes = all_error_classes()
    assert DliError not in classes
    assert [c.code for c in classes] == sorted(c.code for c in classes)


def test_render_includes_the_class_hint() -> None:
    error = errors.StoreNotFoundError("The spec store /x is not a folder")
    assert error.render() == f"The spec store /x is not a folder\n  Fix: {errors.StoreNotFoundError.hint}"


def test_render_prefers_the_given_hint_and_lists_problems() -> None:
    error = errors.SpecValidationError(
        "code/a.yaml: 2 problems",
        hint="fix both",
        problems=[
            Problem("unknown key 'ownr'", file="code/a.yaml", field="ownr", hint="did you mean 'owner'?"),
            Problem("has 4 fields", file="code/a.yaml", field="schedule.cron", line=7),
        ],
    )
    assert error.render() == (
        "code/a.yaml: 2 problems\n"
        "  - code/a.yaml: ownr: unknown key 'ownr'; did you mean 'owner'?\n"
        "  - code/a.yaml:7: schedule.cron: has 4 fields\n"
        "  Fix: fix both"
    )
    assert errors.SpecValidationError.hint != "fix both"  # the class default is untouched


def test_error_without_hint_renders_only_the_message() -> None:
    assert errors.ParameterError("bad").render() == "bad"


def test_to_dict() -> None:
    error = errors.SpecConflictError("two files", problems=[Problem("declares 'a'", file="x.yaml", field="name")])
    assert error.to_dict() == {
        "code": "DLI-204",
        "message": "two files",
        "hint": errors.SpecConflictError.hint,
        "problems": [{"file": "x.yaml", "field": "name", "line": None, "message": "declares 'a'", "hint": None}],
        "dataset_name": None, "run_id": None, "path": "x.yaml", "field": "name",
    }


def test_the_context_crosses_the_wire() -> None:
    """The control plane's JSON error carries what the error is about; the client's error has it again."""
    import httpx

    from dli_airflow._api import dli_error_of

    sent = errors.WorkflowNotFoundError("Workflow 'x.y' is not in Airflow", dataset_name="x.y", run_id="r1")
    got = dli_error_of(httpx.Response(404, json=sent.to_dict()))
    assert isinstance(got, errors.WorkflowNotFoundError) and got.code.value == "DLI-800"
    assert (got.dataset_name, got.run_id, got.message) == ("x.y", "r1", sent.message)


def test_str_is_the_message_and_errors_are_exceptions() -> None:
    error = errors.SqlExecutionError("statement 1 of 1 failed")
    assert str(error) == "statement 1 of 1 failed"
    assert isinstance(error, errors.ExecutionError) and isinstance(error, Exception)
    with pytest.raises(DliError):
        raise error


def test_every_error_code_is_a_string_enum_and_errors_carry_their_context():
    """Seed 001 §3.3: ``e.code.value`` and ``str(e.code)`` are the code; the error names what it is about."""
    import json

    from dli_airflow import ErrorCode
    from dli_airflow.errors import Problem, SpecValidationError, WorkflowNotFoundError, all_error_classes

    for cls in all_error_classes():
        assert isinstance(cls.code, ErrorCode) and str(cls.code) == cls.code.value == cls.code
        assert f"[{cls.code}]" == f"[{cls.code.value}]"
    error = WorkflowNotFoundError("no such workflow", dataset_name="team.daily")
    assert error.code.value == "DLI-800" and error.dataset_name == "team.daily" and error.run_id is None
    assert {ErrorCode.DLI_800: "found"}["DLI-800"] == "found"  # hashes like its string
    assert json.loads(json.dumps(error.to_dict()))["code"] == "DLI-800"
    invalid = SpecValidationError("bad spec", problems=[Problem("4 fields", file="code/a.yaml", field="schedule.cron")])
    assert (invalid.path, invalid.field) == ("code/a.yaml", "schedule.cron")
    with pytest.raises(ValueError):
        type("Bogus", (WorkflowNotFoundError,), {"code": "DLI-999"})
