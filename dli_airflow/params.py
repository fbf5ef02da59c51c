"""Run parameters: check and coerce the values a run is given against the spec's declared parameters.

One set of rules for every path a run takes: ``-p key=value`` on the CLI, JSON through the API and the
trigger form (``conf`` / ``params``), and the dates a schedule or a backfill fills in. Errors list what is
allowed (``Allowed parameters: execution_date (required), limit (optional)``). Nothing here touches Airflow.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from datetime import date, datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from dli_airflow.errors import ParameterError
from dli_airflow.kinds import RESERVED_CONF_PREFIX
from dli_airflow.spec import coerce_value

if TYPE_CHECKING:
    from dli_airflow.spec import DatasetSpec, ParameterSpec


#: What ``-p name=…`` looks like for each parameter type (the hint of a value that does not convert).
_EXAMPLES = {"date": "YYYY-MM-DD (e.g. 2024-01-15)", "integer": "a whole number (e.g. 10)",
             "number": "a number (e.g. 1.5)", "boolean": "true or false", "string": "any text"}


def describe_parameters(spec: DatasetSpec) -> str:
    """``execution_date (required), limit (optional)`` — for error messages."""
    if not spec.parameters:
        return "(none: this dataset declares no parameters)"
    return ", ".join(f"{p.name} ({'required' if p.required else 'optional'})" for p in spec.parameters)


def resolve_parameters(
    spec: DatasetSpec,
    given: Mapping[str, Any] | None = None,
    *,
    execution_date: date | None = None,
    fill_required: bool = True,
) -> dict[str, Any]:
    """Validate and coerce run parameters against the spec.

    :param given: values by name (strings from the CLI, JSON values from the API or ``conf``).
        ``None`` values count as not given.
    :param execution_date: filled into the ``execution_date`` parameter (when declared) if not given.
    :param fill_required: raise for required parameters still missing.
    :raises ParameterError: unknown names, values of the wrong type, or missing required ones; the
        message lists the allowed parameters.
    """
    given = dict(given or {})
    declared = {p.name: p for p in spec.parameters}
    allowed = describe_parameters(spec)
    unknown = sorted(k for k in given if k not in declared)
    if unknown:
        names = ", ".join(repr(k) for k in unknown)
        close = difflib.get_close_matches(unknown[0], list(declared), n=1)
        suggestion = f" (did you mean {close[0]!r}?)" if close else ""
        raise ParameterError(
            f"Unknown parameter{'s' if len(unknown) > 1 else ''} {names} for dataset {spec.name!r}{suggestion}. "
            f"Allowed parameters: {allowed}",
            hint="pass only the parameters the spec declares (-p name=value)",
        )
    values: dict[str, Any] = {}
    for param in spec.parameters:
        raw = given.get(param.name)
        if raw is None and param.name == "execution_date" and execution_date is not None:
            raw = execution_date
        if raw is None:
            values[param.name] = param.default
            continue
        try:
            values[param.name] = coerce_value(param.type, raw)
        except ValueError as exc:
            raise ParameterError(
                f"Parameter {param.name!r} of dataset {spec.name!r}: {raw!r} is not a valid {param.type}: {exc}",
                hint=f"pass -p {param.name}={_EXAMPLES.get(param.type, 'VALUE')}",
            ) from None
    if fill_required:
        missing = [p.name for p in spec.parameters if p.required and values[p.name] is None]
        if missing:
            raise ParameterError(
                f"Missing required parameter{'s' if len(missing) > 1 else ''}: {', '.join(missing)} "
                f"(dataset {spec.name!r}). Allowed parameters: {allowed}",
                hint=" ".join(f"-p {m}=<value>" for m in missing),
            )
    return values


def parse_day(value: str | date, option: str = "the date") -> date:
    """A date given as ``YYYY-MM-DD`` (a ``date`` passes as it is).

    :param option: how the caller names it (``--start``), for the message
    :raises ParameterError: the text is not a date
    """
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value).strip())
    except ValueError:
        raise ParameterError(f"{option} {value!r} is not a date", hint=f"write {option} as YYYY-MM-DD, e.g. 2024-01-15") from None


def today_in(spec: DatasetSpec) -> date:
    """Today's date in the spec's schedule time zone (UTC when it has no schedule)."""
    tz = ZoneInfo(spec.schedule.timezone if spec.schedule else "UTC")
    return datetime.now(tz).date()


#: Run types whose runs the scheduler creates for a scheduled time: they get ``execution_date`` filled in.
#: Every other run (manual, operator-triggered, an unknown kind) must give a required parameter itself.
SCHEDULED_RUN_TYPES = frozenset({"scheduled", "backfill", "backfill_job", "asset_triggered"})


def run_type_name(run_type: object) -> str:
    """Airflow's run type as its plain value, however it arrives: the Task SDK's ``DagRunType`` enum
    (whose ``str()`` is ``DagRunType.MANUAL``), core's (whose ``str()`` is ``manual``), or text."""
    value = getattr(run_type, "value", run_type)
    return str(value or "").rsplit(".", 1)[-1].strip().lower()


def local_execution_date(spec: DatasetSpec) -> date | None:
    """The ``execution_date`` a local run (or a dry run) fills in when none is given: today in the schedule's
    time zone when the parameter is optional; nothing when it is required, which then must be given (seed 003
    §3.4: a missing required parameter is an immediate error)."""
    param = spec.parameter("execution_date")
    if param is None or param.required:
        return None
    return today_in(spec)


def scheduled_date(spec: DatasetSpec, run_type: object, moment: datetime | None) -> date | None:
    """The ``execution_date`` a run gets when none is given: the local date (in ``schedule.timezone``) of
    its scheduled time for scheduled, backfill and asset-triggered runs; ``None`` for any other run, which
    must then give it (a required parameter is required on every path).

    :param run_type: Airflow's run type (``manual``, ``scheduled``, ``backfill``, ``asset_triggered``), as
        text or as either of Airflow's ``DagRunType`` enums
    :param moment: the run's logical date, else its ``run_after``
    """
    if run_type_name(run_type) not in SCHEDULED_RUN_TYPES or moment is None:
        return None
    tz = ZoneInfo(spec.schedule.timezone if spec.schedule else "UTC")
    return moment.astimezone(tz).date()


def run_parameters(
    spec: DatasetSpec,
    *,
    params: Mapping[str, Any],
    conf: Mapping[str, Any],
    run_type: object,
    logical_date: datetime | None,
) -> dict[str, Any]:
    """The validated parameters of one Airflow run of a dataset.

    :param params: the run's ``params`` (trigger-form values and defaults); only declared names are read
    :param conf: the run's ``conf``: a name that is neither declared nor dli's own (``__dli…``) is an error
    :param run_type: Airflow's run type, which decides whether ``execution_date`` is filled in
    :param logical_date: the run's logical date (else its ``run_after``)
    :raises ParameterError: unknown names in ``conf``, values of the wrong type, missing required ones
    """
    declared = {p.name for p in spec.parameters}
    unknown = sorted(k for k in conf if k not in declared and not k.startswith(RESERVED_CONF_PREFIX))
    if unknown:
        raise ParameterError(
            f"Unknown parameter(s) {', '.join(map(repr, unknown))} in the run's conf for dataset "
            f"{spec.name!r}. Allowed parameters: {describe_parameters(spec)}",
            hint="trigger again with only the declared parameters",
        )
    given = {k: v for k, v in dict(params).items() if k in declared}
    return resolve_parameters(spec, given, execution_date=scheduled_date(spec, run_type, logical_date))


def as_conf(values: Mapping[str, Any], given: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON ``conf`` of a run: the coerced values of the parameters that were given (dates as text)."""
    return {k: (v.isoformat() if isinstance(v, date) else v) for k, v in values.items() if k in given}


def conf_for_run(spec: DatasetSpec, given: Mapping[str, Any] | None) -> dict[str, Any]:
    """Check an ad-hoc run's parameters and return its ``conf`` (coerced, only what was given)."""
    given = dict(given or {})
    return as_conf(resolve_parameters(spec, given), given)


def conf_for_backfill(spec: DatasetSpec, given: Mapping[str, Any] | None) -> dict[str, Any]:
    """Check a backfill's parameters: every required one but ``execution_date`` (each date fills it in)."""
    given = dict(given or {})
    values = resolve_parameters(spec, given, fill_required=False)
    missing = [p.name for p in spec.parameters if p.required and p.name != "execution_date" and values[p.name] is None]
    if missing:
        raise ParameterError(
            f"Missing required parameter(s): {', '.join(missing)}. Allowed parameters: {describe_parameters(spec)}"
        )
    return as_conf(values, given)


def parameter_json_schema(param: ParameterSpec) -> dict[str, Any]:
    """JSON-Schema type of a parameter (for Airflow Params)."""
    return {
        "string": {"type": "string"},
        "date": {"type": "string", "format": "date"},
        "integer": {"type": "integer"},
        "number": {"type": "number"},
        "boolean": {"type": "boolean"},
    }[param.type]


__all__ = [
    "as_conf",
    "conf_for_backfill",
    "conf_for_run",
    "describe_parameters",
    "parameter_json_schema",
    "resolve_parameters",
    "local_execution_date",
    "parse_day",
    "run_parameters",
    "SCHEDULED_RUN_TYPES",
    "run_type_name",
    "scheduled_date",
    "today_in",
]
