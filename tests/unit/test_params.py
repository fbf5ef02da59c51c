"""Run parameters: coercion to the declared type (``spec.coerce_value``), unknown and missing ones, the
"Allowed parameters" list (``dli_airflow.params``)."""

from __future__ import annotations

from datetime import date, datetime

import pytest
from spec_support import spec_with

from dli_airflow.errors import ParameterError
from dli_airflow.params import describe_parameters, resolve_parameters
from dli_airflow.spec import DatasetSpec, coerce_value, load_spec

DIALECTS = ["duckdb", "trino", "bigquery"]


GOOD_VALUES = [
    # strings as they come from `-p key=value`
    ("string", "o'brien", "o'brien"),
    ("string", "", ""),
    ("string", "  spaced  ", "  spaced  "),
    ("date", "2024-01-15", date(2024, 1, 15)),
    ("date", " 2024-02-29 ", date(2024, 2, 29)),
    ("integer", "42", 42),
    ("integer", "-7", -7),
    ("integer", " +3 ", 3),
    ("number", "0.5", 0.5),
    ("number", "1e3", 1000.0),
    ("number", "3", 3),
    ("number", "-2.25", -2.25),
    ("boolean", "true", True),
    ("boolean", "FALSE", False),
    ("boolean", "yes", True),
    ("boolean", "no", False),
    ("boolean", "1", True),
    ("boolean", "0", False),
    ("boolean", "On", True),
    # JSON values from the API or a DAG run's conf
    ("string", 5, "5"),
    ("string", True, "true"),
    ("string", date(2024, 1, 15), "2024-01-15"),
    ("date", date(2024, 1, 15), date(2024, 1, 15)),
    ("date", datetime(2024, 1, 15, 23, 59), date(2024, 1, 15)),
    ("integer", 42, 42),
    ("integer", 5.0, 5),
    ("number", 2, 2),
    ("number", 0.25, 0.25),
    ("boolean", True, True),
    ("boolean", 0, False),
    ("boolean", 1, True),
]


@pytest.mark.parametrize(("param_type", "raw", "expected"), GOOD_VALUES)
def test_coerce_good_values(param_type: str, raw: object, expected: object) -> None:
    value = coerce_value(param_type, raw)
    assert value == expected
    assert type(value) is type(expected)


BAD_VALUES = [
    ("date", "15/01/2024"),
    ("date", "2024-02-30"),
    ("date", "yesterday"),
    ("date", ""),
    ("date", 20240115),
    ("integer", "1.5"),
    ("integer", "ten"),
    ("integer", ""),
    ("integer", "1e3"),
    ("integer", True),
    ("integer", 1.5),
    ("number", "abc"),
    ("number", "nan"),
    ("number", "inf"),
    ("number", ""),
    ("number", False),
    ("boolean", "maybe"),
    ("boolean", ""),
    ("boolean", 2),
    ("boolean", "2"),
    ("string", ["a"]),
    ("string", {"a": 1}),
]


@pytest.mark.hostile(kind="required")
@pytest.mark.parametrize(("param_type", "raw"), BAD_VALUES)
def test_coerce_bad_values(param_type: str, raw: object) -> None:
    with pytest.raises(ValueError):
        coerce_value(param_type, raw)


@pytest.mark.hostile(kind="required")
@pytest.mark.parametrize(
    ("name", "raw"),
    [("execution_date", "2024-13-01"), ("limit", "many"), ("ratio", "half"), ("flag", "perhaps")],
)
def test_bad_value_is_dli_203_naming_the_parameter(spec: DatasetSpec, name: str, raw: str) -> None:
    given = {"execution_date": "2024-01-15", name: raw}
    with pytest.raises(ParameterError) as info:
        resolve_parameters(spec, given)
    error = info.value
    assert error.code == "DLI-203"
    assert f"Parameter {name!r}" in error.message and repr(raw) in error.message
    assert f"-p {name}=" in error.render()


def test_resolve_coerces_and_fills_defaults(spec: DatasetSpec) -> None:
    values = resolve_parameters(spec, {"execution_date": "2024-01-15", "flag": "yes", "ratio": "0.5"})
    assert values == {
        "execution_date": date(2024, 1, 15),
        "limit": 100,
        "customer": None,
        "ratio": 0.5,
        "flag": True,
    }


@pytest.mark.hostile(kind="required")
def test_unknown_parameter_lists_the_allowed_ones() -> None:
    spec = spec_with("  - {name: execution_date, type: date, required: true}\n  - {name: limit, type: integer}\n")
    with pytest.raises(ParameterError) as info:
        resolve_parameters(spec, {"execution_date": "2024-01-15", "limt": "5"})
    error = info.value
    assert error.code == "DLI-203"
    assert "Unknown parameter 'limt'" in error.message
    assert "did you mean 'limit'?" in error.message
    assert "Allowed parameters: execution_date (required), limit (optional)" in error.message


@pytest.mark.hostile(kind="required")
def test_several_unknown_parameters_are_all_named(spec: DatasetSpec) -> None:
    with pytest.raises(ParameterError) as info:
        resolve_parameters(spec, {"zeta": 1, "alpha": 2})
    assert "Unknown parameters 'alpha', 'zeta'" in info.value.message


@pytest.mark.hostile(kind="required")
def test_unknown_parameter_on_a_dataset_without_parameters() -> None:
    spec = load_spec("name: a\nowner: b\nquery: SELECT 1\n", "a.yaml")
    with pytest.raises(ParameterError) as info:
        resolve_parameters(spec, {"x": "1"})
    assert "declares no parameters" in info.value.message


@pytest.mark.hostile(kind="required")
def test_missing_required_parameters_are_listed() -> None:
    spec = spec_with(
        "  - {name: execution_date, type: date, required: true}\n"
        "  - {name: customer, required: true}\n"
        "  - {name: limit, type: integer}\n"
    )
    with pytest.raises(ParameterError) as info:
        resolve_parameters(spec, {})
    error = info.value
    assert error.code == "DLI-203"
    assert "Missing required parameters: execution_date, customer" in error.message
    assert "Allowed parameters: execution_date (required), customer (required), limit (optional)" in error.message
    assert "-p execution_date=<value> -p customer=<value>" in error.render()


@pytest.mark.hostile(kind="required")
def test_none_counts_as_not_given(spec: DatasetSpec) -> None:
    with pytest.raises(ParameterError, match="Missing required parameter: execution_date"):
        resolve_parameters(spec, {"execution_date": None})
    assert resolve_parameters(spec, {"execution_date": "2024-01-15", "limit": None})["limit"] == 100


def test_execution_date_is_filled_when_not_given(spec: DatasetSpec) -> None:
    values = resolve_parameters(spec, {}, execution_date=date(2024, 1, 16))
    assert values["execution_date"] == date(2024, 1, 16)
    # a value given explicitly wins over the filled one
    values = resolve_parameters(spec, {"execution_date": "2024-01-01"}, execution_date=date(2024, 1, 16))
    assert values["execution_date"] == date(2024, 1, 1)


def test_fill_required_false_allows_missing(spec: DatasetSpec) -> None:
    assert resolve_parameters(spec, {}, fill_required=False)["execution_date"] is None


def test_describe_parameters(spec: DatasetSpec) -> None:
    assert describe_parameters(spec) == (
        "execution_date (required), limit (optional), customer (optional), ratio (optional), flag (optional)"
    )


# -- which runs get execution_date filled in: required means required on every other path --------------------


def _run_types():
    from airflow.sdk.api.datamodels._generated import DagRunType as SdkRunType
    from airflow.utils.types import DagRunType as CoreRunType

    return SdkRunType, CoreRunType


@pytest.mark.hostile(kind="required")
@pytest.mark.parametrize("enum_index", [0, 1], ids=["task-sdk DagRunType", "core DagRunType"])
@pytest.mark.parametrize(
    ("member", "filled"),
    [("MANUAL", False), ("OPERATOR_TRIGGERED", False), ("SCHEDULED", True), ("ASSET_TRIGGERED", True)],
)
def test_only_scheduler_made_runs_get_execution_date(spec: DatasetSpec, enum_index: int, member: str, filled: bool):
    """The Task SDK's DagRunType prints as 'DagRunType.MANUAL': a manual run from the UI with the field
    empty must still be refused, never filled with its logical date."""
    from datetime import timezone

    from dli_airflow.params import run_parameters

    run_type = getattr(_run_types()[enum_index], member)
    moment = datetime(2024, 1, 15, 23, 30, tzinfo=timezone.utc)
    for as_given in (run_type, str(run_type), getattr(run_type, "value")):
        call = lambda: run_parameters(  # noqa: E731
            spec, params={"execution_date": None}, conf={}, run_type=as_given, logical_date=moment
        )
        if filled:
            assert call()["execution_date"] == date(2024, 1, 15)
        else:
            with pytest.raises(ParameterError, match="Missing required parameter: execution_date") as caught:
                call()
            assert "Allowed parameters: execution_date (required)" in caught.value.message


@pytest.mark.hostile(kind="required")
@pytest.mark.parametrize("run_type", ["", "bogus", None, "DagRunType.SOMETHING_NEW"])
def test_an_unknown_run_type_fills_nothing(spec: DatasetSpec, run_type):
    from datetime import timezone

    from dli_airflow.params import run_parameters

    with pytest.raises(ParameterError, match="execution_date"):
        run_parameters(spec, params={}, conf={}, run_type=run_type, logical_date=datetime(2024, 1, 1, tzinfo=timezone.utc))


@pytest.mark.parametrize(
    ("value", "expected"),
    [("2024-01-15", date(2024, 1, 15)), (" 2024-01-15 ", date(2024, 1, 15)), (date(2024, 2, 29), date(2024, 2, 29)),
     (datetime(2024, 3, 1, 12), date(2024, 3, 1))],
)
def test_parse_day(value, expected):
    from dli_airflow.params import parse_day

    assert parse_day(value, "--start") == expected


@pytest.mark.hostile(kind="required")
@pytest.mark.parametrize("value", ["2024-13-01", "2024-02-30", "yesterday", "", "20240115x"])
def test_parse_day_refuses_what_is_not_a_date(value):
    from dli_airflow.params import parse_day

    with pytest.raises(ParameterError, match="--start .* is not a date") as caught:
        parse_day(value, "--start")
    assert "YYYY-MM-DD" in (caught.value.hint or "")
