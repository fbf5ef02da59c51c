"""The Dataset Spec: pydantic models and a safe YAML loader that reports every problem by file and field.

``load_spec(data, path)`` turns the bytes of one spec file into a :class:`DatasetSpec`, or raises one
:class:`~dli_airflow.errors.DliError` that names the file, the field path (``schedule.retry.max_attempts``),
what is wrong and how to fix it. Nothing here touches Airflow.
"""

from __future__ import annotations

import difflib
import math
import re
from datetime import date, datetime
from functools import lru_cache
from typing import Annotated, Any, Literal, Union
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from dli_airflow._yaml import load_yaml
from dli_airflow.errors import DliError, Problem, SpecValidationError
from dli_airflow.kinds import DatasetStatus, SourceType

#: A dataset name, matched in full: ``\Z``, not ``$``, which lets a trailing newline through (``"a.b\n"``).
NAME_PATTERN = re.compile(r"[A-Za-z0-9_.\-]{1,250}\Z")
PARAM_NAME_PATTERN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
#: Names starting so (after :func:`name_key`) are dli's own DAGs: ``dli_sync``, ``dli_spec_errors``, its shards'.
RESERVED_PREFIX = "dli_"
#: The longest a schedule's ``timeout_seconds`` may be (7 days): the worker's timer refuses far larger ones.
MAX_TIMEOUT_SECONDS = 7 * 86_400
#: A cron must fire within this many years from now (``0 0 29 2 *`` does every 4 to 8; ``0 0 30 2 *`` never).
CRON_HORIZON_YEARS = 10

_TRUE = {"true", "t", "yes", "y", "1", "on"}
_FALSE = {"false", "f", "no", "n", "0", "off"}


def coerce_value(param_type: str, value: Any) -> Any:
    """Coerce one value (from YAML, JSON or a ``key=value`` string) to a declared type.

    :raises ValueError: with a short reason when the value does not fit the type.
    """
    if value is None:
        return None
    if param_type == "string":
        if isinstance(value, (dict, list)):
            raise ValueError("expected text, got a " + type(value).__name__)
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, (date, datetime)):
            return value.isoformat()
        return str(value)
    if param_type == "date":
        if isinstance(value, datetime):
            return value.date()
        if isinstance(value, date):
            return value
        if isinstance(value, str):
            try:
                return date.fromisoformat(value.strip())
            except ValueError:
                raise ValueError("expected a date as YYYY-MM-DD, e.g. 2024-01-15") from None
        raise ValueError("expected a date as YYYY-MM-DD, e.g. 2024-01-15")
    if param_type == "integer":
        if isinstance(value, bool):
            raise ValueError("expected a whole number, got a boolean")
        if isinstance(value, int):
            return value
        if isinstance(value, float):
            if value.is_integer():
                return int(value)
            raise ValueError("expected a whole number")
        if isinstance(value, str) and re.fullmatch(r"\s*[-+]?\d+\s*", value):
            return int(value)
        raise ValueError("expected a whole number, e.g. 100")
    if param_type == "number":
        if isinstance(value, bool):
            raise ValueError("expected a number, got a boolean")
        if isinstance(value, (int, float)):
            number = float(value) if isinstance(value, float) else value
        elif isinstance(value, str):
            try:
                number = float(value) if re.search(r"[.eE]", value) else int(value)
            except ValueError:
                raise ValueError("expected a number, e.g. 0.5") from None
        else:
            raise ValueError("expected a number, e.g. 0.5")
        if isinstance(number, float) and not math.isfinite(number):
            raise ValueError("expected a finite number")
        return number
    if param_type == "boolean":
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        raise ValueError("expected true or false")
    raise ValueError(f"unknown parameter type {param_type!r}")  # pragma: no cover - guarded by the model


ParamType = Literal["string", "date", "integer", "number", "boolean"]
EngineName = Literal["duckdb", "trino", "bigquery"]


class _FieldError(ValueError):
    """A cross-field error that names its field: pydantic reports model-validator errors without a loc."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class ParameterSpec(_Model):
    """One typed parameter of the dataset's SQL."""

    name: str = Field(description="Name used in the SQL template: {{ name }} or {{ params.name }}.")
    type: ParamType = Field("string", description="string | date | integer | number | boolean")
    required: bool = Field(False, description="A manual run must give it (a scheduled run fills execution_date).")
    default: Union[bool, int, float, date, str, None] = Field(None, description="Value when none is given.")
    description: str | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not PARAM_NAME_PATTERN.fullmatch(value):
            raise ValueError(
                f"parameter name {value!r} is not a valid identifier; use letters, digits and _ (e.g. 'start_date')"
            )
        if value == "params":
            raise ValueError("'params' is reserved (the template exposes parameters as params.<name>); rename it")
        return value

    @field_validator("default", mode="before")
    @classmethod
    def _default_matches_type(cls, value: Any, info: ValidationInfo) -> Any:
        param_type = info.data.get("type")
        if value is None or param_type is None:
            return value
        try:
            return coerce_value(param_type, value)
        except ValueError as exc:
            raise ValueError(f"default {value!r} is not a valid {param_type}: {exc}") from None


def _whole_number(value: Any) -> Any:
    """Refuse ``yes``/``no`` where a count belongs: pydantic would take a boolean as 1 or 0."""
    if isinstance(value, bool):  # a ValueError, which pydantic reports by field (a TypeError would escape)
        raise ValueError(  # noqa: TRY004
            f"expected a whole number, got {str(value).lower()} (YAML reads yes/no/on/off as booleans)"
        )
    return value


_Count = Annotated[int, BeforeValidator(_whole_number)]


class RetrySpec(_Model):
    max_attempts: _Count = Field(1, ge=0, le=100, description="Retries after the first try (seed 003 §4).")
    delay_seconds: _Count = Field(300, ge=0, le=86_400, description="Seconds between tries.")


class NotificationSpec(_Model):
    """Where to send a notification: Slack, a webhook or e-mail, through an Airflow connection."""

    type: Literal["slack", "webhook", "email"]
    channel: str | None = Field(None, description="Slack channel, e.g. '#data-alerts' (slack with an API token).")
    conn_id: str | None = Field(None, description="Airflow connection (Slack API/webhook, HTTP for webhook).")
    to: list[str] | None = Field(None, description="E-mail recipients (type: email).")

    @model_validator(mode="after")
    def _fields_for_type(self) -> NotificationSpec:
        if self.type == "email" and not self.to:
            raise _FieldError("to", "an email notification needs 'to: [someone@example.com]'")
        if self.type == "webhook" and not self.conn_id:
            raise _FieldError("conn_id", "a webhook notification needs 'conn_id' (an HTTP connection holding the URL)")
        return self


class NotificationsSpec(_Model):
    on_failure: list[NotificationSpec] = Field(default_factory=list)
    on_success: list[NotificationSpec] = Field(default_factory=list)
    on_source_change: list[NotificationSpec] = Field(default_factory=list)


@lru_cache(maxsize=1024)
def _valid_cron(value: str) -> bool:
    """croniter's check, once per distinct expression (a store of thousands of specs uses a handful)."""
    from croniter import croniter

    return bool(croniter.is_valid(value))


_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
           "November", "December")
_MONTH_DAYS = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


@lru_cache(maxsize=1024)
def _why_never_fires(value: str) -> str | None:
    """Why a valid cron has no fire time in the next :data:`CRON_HORIZON_YEARS` years (``None``: it fires).

    Airflow takes such a cron and the DAG never runs, with no warning. Once per distinct expression.
    """
    from croniter import CroniterBadDateError, croniter

    fields = value.split(" ")
    if fields[2] in ("*", "?") and not any(c in fields[4] for c in "#Ll"):
        return None  # any day of the named months: it fires within a year (skips the search, ~0.4 ms)
    try:
        croniter(value, datetime.now(), max_years_between_matches=CRON_HORIZON_YEARS).get_next(datetime)
        return None
    except CroniterBadDateError:
        pass
    days, months = croniter(value).expanded[2:4]
    months = list(range(1, 13)) if months == ["*"] else [m for m in months if isinstance(m, int)]
    plain_days = days != ["*"] and all(isinstance(d, int) for d in days)
    if plain_days and months and min(days) > max(_MONTH_DAYS[m - 1] for m in months):
        names = [_MONTHS[m - 1] for m in months]
        shown = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]
        return f"day {min(days)} of the month never comes in {shown}"
    return f"it has no fire time in the next {CRON_HORIZON_YEARS} years"


class ScheduleSpec(_Model):
    enabled: bool = Field(True, description="false: the DAG is created paused.")
    cron: str | None = Field(None, description="5-field cron, e.g. '0 9 * * *'. Required unless depends_on is set.")
    timezone: str = Field("UTC", description="IANA time zone of the cron, e.g. 'Asia/Seoul'.")
    retry: RetrySpec = Field(default_factory=RetrySpec)
    notifications: NotificationsSpec = Field(default_factory=NotificationsSpec)
    timeout_seconds: _Count | None = Field(
        None, gt=0, le=MAX_TIMEOUT_SECONDS, description="The task's execution_timeout (at most 7 days); the query is cancelled."
    )

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = " ".join(value.split())
        fields = value.split(" ")
        if len(fields) != 5:
            raise ValueError(
                f"cron {value!r} has {len(fields)} field{'s' if len(fields) != 1 else ''}; "
                "use 5 (minute hour day-of-month month day-of-week), e.g. '0 9 * * *'"
            )
        if not _valid_cron(value):
            raise ValueError(f"cron {value!r} is not a valid cron expression; e.g. '0 9 * * *' is daily at 09:00")
        reason = _why_never_fires(value)
        if reason is not None:
            raise ValueError(f"cron {value!r} never fires: {reason}; Airflow would never run the DAG")
        return value

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            close = difflib.get_close_matches(value, _zone_names(), n=1)
            hint = f"did you mean {close[0]!r}?" if close else "use an IANA name such as 'UTC' or 'Asia/Seoul'"
            raise ValueError(f"unknown time zone {value!r}; {hint}") from None
        return value


def _zone_names() -> list[str]:
    import zoneinfo

    return sorted(zoneinfo.available_timezones())


class DatasetSpec(_Model):
    """A Dataset Spec file: what to compute (SQL), with which parameters, on what schedule."""

    name: str = Field(
        description="Dataset name; becomes the DAG id. Letters, digits, _ - . (1-250); not starting with '.', '__' "
        "or 'dli_' (reserved)."
    )
    type: Literal["Dataset"] = "Dataset"
    owner: str = Field(description="Who answers for it, e.g. an e-mail address.")
    team: str | None = None
    description: str | None = None
    engine: EngineName | None = Field(None, description="trino | bigquery | duckdb; default [dli] default_engine.")
    conn_id: str | None = Field(None, description="Airflow connection; default per engine.")
    catalog: str | None = Field(None, description="Trino catalog (else the connection's).")
    db_schema: str | None = Field(None, alias="schema", description="Trino schema (else the connection's).")
    project: str | None = Field(None, description="BigQuery project (else the connection's).")
    location: str | None = Field(None, description="BigQuery location (else the connection's).")
    query_file: str | None = Field(None, description="SQL file, relative to this spec file.")
    query: str | None = Field(None, description="Inline SQL (instead of query_file).")
    parameters: list[ParameterSpec] = Field(default_factory=list)
    schedule: ScheduleSpec | None = None
    depends_on: list[str] = Field(default_factory=list, description="Upstream datasets (Airflow assets).")
    tags: list[str] = Field(default_factory=list, description="Extra Airflow tags.")

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        check_dataset_name(value)
        return value

    @field_validator("depends_on")
    @classmethod
    def _depends_on(cls, value: list[str]) -> list[str]:
        for name in value:
            check_dataset_name(name)
        if len(set(value)) != len(value):
            raise ValueError("lists the same dataset twice; keep one")
        return value

    @field_validator("owner")
    @classmethod
    def _owner(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("is empty; name who answers for this dataset, e.g. engineer@example.com")
        return value.strip()

    @model_validator(mode="after")
    def _cross_field(self) -> DatasetSpec:
        if (self.query is None) == (self.query_file is None):
            raise _FieldError(
                "query" if self.query is None else "query_file",
                "give exactly one of 'query' (inline SQL) or 'query_file' (a .sql file beside the spec)"
                if self.query is None
                else "has both 'query' and 'query_file'; keep one",
            )
        if self.query is not None and not self.query.strip():
            raise _FieldError("query", "'query' is empty; write the SQL or use query_file")
        seen: set[str] = set()
        for index, param in enumerate(self.parameters):
            if param.name in seen:
                raise _FieldError(
                    f"parameters[{index}].name",
                    f"parameter {param.name!r} is declared twice; parameter names must be unique",
                )
            seen.add(param.name)
        if self.name in self.depends_on:
            raise _FieldError("depends_on", "depends_on lists the dataset itself; remove it")
        schedule = self.schedule
        if schedule is not None:
            if schedule.cron is None and not self.depends_on:
                raise _FieldError(
                    "schedule.cron",
                    "schedule has no cron and the dataset has no depends_on; add schedule.cron (e.g. '0 9 * * *') "
                    "or depends_on, or remove the schedule section",
                )
            if schedule.enabled:
                for index, param in enumerate(self.parameters):
                    if param.required and param.default is None and param.name != "execution_date":
                        raise _FieldError(
                            f"parameters[{index}].required",
                            f"parameter {param.name!r} is required and has no default, so a scheduled run could "
                            "never start; give it a default, make it optional, or set schedule.enabled: false",
                        )
        return self

    # -- derived ---------------------------------------------------------------------------------------
    @property
    def resolved_engine(self) -> str:
        from dli_airflow import config

        return self.engine or config.default_engine()

    @property
    def is_scheduled(self) -> bool:
        return self.schedule is not None

    def parameter(self, name: str) -> ParameterSpec | None:
        return next((p for p in self.parameters if p.name == name), None)


def name_key(name: str) -> str:
    """The form in which two dataset names are the same dataset to people: case and ``-``/``_`` folded.

    ``Sales-Daily`` and ``sales_daily`` are two DAG ids to Airflow but one name to a reader, and one file
    on a case-insensitive disk; the catalog reports such look-alikes as a conflict.
    """
    return name.lower().replace("-", "_")


def check_dataset_name(value: str) -> None:
    """Refuse a name that cannot be a dataset's DAG id and file name, or that dli keeps for itself.

    :raises ValueError: with the reason and the fix.
    """
    if not NAME_PATTERN.fullmatch(value):
        bad = sorted({c for c in value if not NAME_PATTERN.fullmatch(c)})
        reason = f"has characters {''.join(bad)!r} that are not allowed" if bad else "must be 1-250 characters"
        raise ValueError(f"dataset name {value!r} {reason}; use letters, digits, '_', '-' and '.'")
    if ".." in value:
        raise ValueError(f"dataset name {value!r} contains '..'; use single dots (e.g. 'catalog.schema.table')")
    if value.startswith("."):
        raise ValueError(
            f"dataset name {value!r} starts with '.': its file would be hidden and skipped when the store is listed; "
            "start with a letter or digit"
        )
    if value.startswith("__"):
        raise ValueError(
            f"dataset name {value!r} starts with '__', which Python keeps for its own names (e.g. __file__); "
            "start with a letter or digit"
        )
    if name_key(value).startswith(RESERVED_PREFIX):
        raise ValueError(
            f"dataset name {value!r} starts with {RESERVED_PREFIX!r}, which is reserved for dli's own DAGs "
            "(dli_sync, dli_spec_errors); choose another prefix, e.g. your team's"
        )


# -- loading -----------------------------------------------------------------------------------------------


def load_spec(data: bytes | str, path: str) -> DatasetSpec:
    """Parse and validate one spec file.

    :param data: the file's bytes (or text).
    :param path: how to name the file in errors (e.g. ``code/sales/daily.yaml``).
    :raises SpecSyntaxError: unreadable YAML (encoding, syntax, tags, size, alias bombs).
    :raises SpecValidationError: valid YAML that is not a valid Dataset Spec.
    """
    document = load_yaml(data, path)
    return validate_spec(document, path)


def validate_spec(document: Any, path: str) -> DatasetSpec:
    """Validate a parsed YAML document as a Dataset Spec."""
    if not isinstance(document, dict):
        kind = type(document).__name__ if document is not None else "nothing"
        raise SpecValidationError(
            f"{path}: a Dataset Spec is a YAML mapping (key: value lines), but the file holds {kind}",
            problems=[Problem("not a mapping", file=path)],
        )
    try:
        return DatasetSpec.model_validate(document)
    except ValidationError as exc:
        problems = [_problem(err, path, document) for err in exc.errors(include_url=False)]
        name = document.get("name") if isinstance(document.get("name"), str) else None
        head = f"{path}: " + (f"dataset {name!r}: " if name else "")
        if len(problems) == 1:
            p = problems[0]
            message = head + (f"{p.field}: {p.message}" if p.field else p.message)
            if p.hint:
                message += f"; {p.hint}"
        else:
            message = head + f"{len(problems)} problems"
        raise SpecValidationError(message, problems=problems) from exc


_FIELD_NAMES: dict[type[BaseModel], list[str]] = {}


def _model_at(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The pydantic model whose fields live at ``loc`` (for 'did you mean' hints)."""
    model: type[BaseModel] = DatasetSpec
    for part in loc:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part) or next(
            (f for f in model.model_fields.values() if f.alias == part), None
        )
        if field is None:
            return model
        annotation = field.annotation
        inner = _model_in(annotation)
        if inner is None:
            return None
        model = inner
    return model


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def _problem(err: dict[str, Any], path: str, document: dict[str, Any]) -> Problem:
    loc = tuple(part for part in err["loc"] if not (isinstance(part, str) and part.startswith("function-")))
    # pydantic puts union member names (e.g. 'bool', 'int') into loc for unions; drop them
    loc = tuple(p for p in loc if p not in {"bool", "int", "float", "date", "str", "list[str]"})
    field = ".".join(str(p) if not isinstance(p, int) else f"[{p}]" for p in loc).replace(".[", "[")
    kind = err["type"]
    message = str(err["msg"])
    hint: str | None = None
    if message.startswith("Value error, "):
        message = message[len("Value error, ") :]
    cause = (err.get("ctx") or {}).get("error")
    if isinstance(cause, _FieldError):
        field = f"{field}{'' if not field or cause.field.startswith('[') else '.'}{cause.field}"
    if kind == "extra_forbidden":
        key = str(loc[-1]) if loc else "?"
        model = _model_at(loc[:-1])
        names: list[str] = []
        if model is not None:
            names = [f.alias or n for n, f in model.model_fields.items()]
        close = difflib.get_close_matches(key, names, n=1, cutoff=0.6)
        message = f"unknown key {key!r}"
        hint = f"did you mean {close[0]!r}?" if close else (f"allowed keys: {', '.join(names)}" if names else None)
    elif kind == "less_than_equal" and field == "schedule.timeout_seconds":
        hint = "at most 604800 (7 days); leave timeout_seconds out for no limit"
    elif kind == "missing":
        message = "is required but missing"
        hint = _MISSING_HINTS.get(field)
    elif kind == "literal_error":
        given = err.get("input")
        expected = err.get("ctx", {}).get("expected", "")
        message = f"{given!r} is not allowed; expected {expected}"
        if isinstance(given, str):
            options = re.findall(r"'([^']+)'", str(expected))
            close = difflib.get_close_matches(given.lower(), options, n=1)
            if close:
                hint = f"did you mean {close[0]!r}?"
    elif kind in {"int_parsing", "int_type", "int_from_float", "bool_parsing", "bool_type", "string_type"}:
        given = err.get("input")
        message = f"{given!r}: {message[0].lower() + message[1:]}"
        if kind == "string_type" and isinstance(given, (bool, int, float, date)):
            hint = (
                f"YAML read the unquoted value as a {_YAML_TYPES.get(type(given), type(given).__name__)}; "
                "put it in quotes to keep the text as written (e.g. \"NO\", \"2024\")"
            )
    return Problem(message, file=path, field=field or None, hint=hint)


_YAML_TYPES = {bool: "boolean", int: "number", float: "number", date: "date", datetime: "timestamp"}

_MISSING_HINTS = {
    "name": "add e.g. 'name: analytics.daily_clicks' (it becomes the DAG id)",
    "owner": "add e.g. 'owner: engineer@example.com'",
    "parameters[0].name": "every parameter needs a name",
}


def json_schema() -> dict[str, Any]:
    """JSON Schema of a Dataset Spec file, for editors (VS Code's YAML extension, JetBrains)."""
    schema = DatasetSpec.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "dli Dataset Spec"
    return schema


def parse_date(value: str | date | datetime) -> date:
    """A date from ``YYYY-MM-DD`` (or a date/datetime object)."""
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    return date.fromisoformat(value.strip())


__all__ = [
    "DatasetSpec",
    "DatasetStatus",
    "DliError",
    "NotificationSpec",
    "ParameterSpec",
    "RetrySpec",
    "ScheduleSpec",
    "SourceType",
    "check_dataset_name",
    "json_schema",
    "load_spec",
    "load_yaml",
    "name_key",
    "validate_spec",
]
