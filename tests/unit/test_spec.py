"""The Dataset Spec: every field wrong in the ways people get it wrong, and unreadable YAML of every kind.

Each bad input must raise one DliError with its stable code that names the file and the field path.
"""

from __future__ import annotations

import time
from datetime import date
from pathlib import Path

import pytest

from dli_airflow.errors import DliError, SpecSyntaxError, SpecValidationError
from dli_airflow.spec import DatasetSpec, json_schema, load_spec

pytestmark = pytest.mark.usefixtures("dli_isolated")

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "specs"
PATH = "code/sales/daily.yaml"

BASE = """\
name: sales.daily
owner: engineer@example.com
query: SELECT 1
"""
SCHEDULED = (
    BASE
    + """\
schedule:
  cron: "0 9 * * *"
"""
)


def _raises(text: str | bytes, path: str = PATH) -> DliError:
    data = text.encode("utf-8") if isinstance(text, str) else text
    with pytest.raises(DliError) as info:
        load_spec(data, path)
    return info.value


# (id, YAML, code, field path, fragments the message or hint must contain)
BAD_SPECS = [
    # name
    (
        "name-missing",
        "owner: a@b.c\nquery: SELECT 1\n",
        "DLI-201",
        "name",
        ["required", "name: analytics.daily_clicks"],
    ),
    (
        "name-slash-space",
        BASE.replace("sales.daily", "'sales/daily clicks'"),
        "DLI-201",
        "name",
        ["' /'", "not allowed"],
    ),
    ("name-dotdot", BASE.replace("sales.daily", "sales..daily"), "DLI-201", "name", ["'..'"]),
    ("name-251-chars", BASE.replace("sales.daily", "a" * 251), "DLI-201", "name", ["1-250"]),
    ("name-unicode", BASE.replace("sales.daily", "매출.daily"), "DLI-201", "name", ["not allowed"]),
    ("name-number", BASE.replace("sales.daily", "2024"), "DLI-201", "name", ["valid string"]),
    ("name-empty", BASE.replace("sales.daily", "''"), "DLI-201", "name", ["1-250"]),
    # names that would hide, replace or break another DAG (issue 13): refused at validation, so at registration
    ("name-trailing-newline", BASE.replace("sales.daily", '"sales.daily\\n"'), "DLI-201", "name", ["'\\n'", "not allowed"]),
    ("name-trailing-crlf", BASE.replace("sales.daily", '"sales.daily\\r\\n"'), "DLI-201", "name", ["not allowed"]),
    ("name-dunder-file", BASE.replace("sales.daily", "__file__"), "DLI-201", "name", ["'__'", "__file__"]),
    ("name-dunder-builtins", BASE.replace("sales.daily", "__builtins__"), "DLI-201", "name", ["starts with '__'"]),
    ("name-dunder-name", BASE.replace("sales.daily", "__name__"), "DLI-201", "name", ["starts with '__'"]),
    ("name-dunder-prefix", BASE.replace("sales.daily", "__sales.daily"), "DLI-201", "name", ["starts with '__'"]),
    ("name-dli_sync", BASE.replace("sales.daily", "dli_sync"), "DLI-201", "name", ["'dli_'", "reserved"]),
    ("name-dli_spec_errors", BASE.replace("sales.daily", "dli_spec_errors"), "DLI-201", "name", ["reserved"]),
    ("name-errors-shard", BASE.replace("sales.daily", "dli_spec_errors_shard1"), "DLI-201", "name", ["reserved"]),
    ("name-dli-prefix", BASE.replace("sales.daily", "dli_sales"), "DLI-201", "name", ["reserved"]),
    ("name-DLI-Sync", BASE.replace("sales.daily", "DLI-Sync"), "DLI-201", "name", ["reserved", "dli_sync"]),
    ("name-dli-dash", BASE.replace("sales.daily", "dli-spec-errors"), "DLI-201", "name", ["reserved"]),
    ("name-dot-hidden", BASE.replace("sales.daily", ".hidden"), "DLI-201", "name", ["starts with '.'", "hidden"]),
    ("name-dot", BASE.replace("sales.daily", "'.'"), "DLI-201", "name", ["starts with '.'"]),
    ("name-tab", BASE.replace("sales.daily", '"sales\\tdaily"'), "DLI-201", "name", ["not allowed"]),
    (
        "parameter-name-trailing-newline",
        BASE + 'parameters:\n  - name: "limit\\n"\n',
        "DLI-201",
        "parameters[0].name",
        ["not a valid identifier"],
    ),
    ("name-nul", BASE.replace("sales.daily", '"sales\\0"'), "DLI-201", "name", ["not allowed"]),
    # owner
    (
        "owner-missing",
        "name: sales.daily\nquery: SELECT 1\n",
        "DLI-201",
        "owner",
        ["required", "owner: engineer@example.com"],
    ),
    ("owner-blank", BASE.replace("engineer@example.com", "'   '"), "DLI-201", "owner", ["empty"]),
    # unknown keys, with "did you mean"
    ("unknown-ownr", BASE + "ownr: x\n", "DLI-201", "ownr", ["unknown key 'ownr'", "did you mean 'owner'?"]),
    ("unknown-quer", "name: a\nowner: b\nquer: SELECT 1\n", "DLI-201", "quer", ["did you mean 'query'?"]),
    (
        "unknown-schedule.crn",
        BASE + "schedule:\n  crn: '0 9 * * *'\n",
        "DLI-201",
        "schedule.crn",
        ["did you mean 'cron'?"],
    ),
    (
        "unknown-retry.max_attemps",
        SCHEDULED + "  retry: {max_attemps: 3}\n",
        "DLI-201",
        "schedule.retry.max_attemps",
        ["did you mean 'max_attempts'?"],
    ),
    (
        "unknown-parameter.tpye",
        BASE + "parameters:\n  - name: limit\n    tpye: integer\n",
        "DLI-201",
        "parameters[0].tpye",
        ["did you mean 'type'?"],
    ),
    (
        "unknown-notifications.on_fail",
        SCHEDULED + "  notifications:\n    on_fail: []\n",
        "DLI-201",
        "schedule.notifications.on_fail",
        ["did you mean 'on_failure'?"],
    ),
    # wrong types
    ("type-lowercase", BASE + "type: dataset\n", "DLI-201", "type", ["did you mean 'Dataset'?"]),
    ("parameters-mapping", BASE + "parameters: {name: limit}\n", "DLI-201", "parameters", ["valid list"]),
    ("depends_on-string", BASE + "depends_on: raw.clicks\n", "DLI-201", "depends_on", ["valid list"]),
    ("schedule-string", BASE + "schedule: daily\n", "DLI-201", "schedule", []),
    ("enabled-maybe", SCHEDULED + "  enabled: maybe\n", "DLI-201", "schedule.enabled", ["'maybe'", "boolean"]),
    ("retry-number", SCHEDULED + "  retry: 3\n", "DLI-201", "schedule.retry", []),
    (
        "retry-words",
        SCHEDULED + "  retry: {max_attempts: three}\n",
        "DLI-201",
        "schedule.retry.max_attempts",
        ["'three'", "integer"],
    ),
    (
        "retry-negative",
        SCHEDULED + "  retry: {max_attempts: -1}\n",
        "DLI-201",
        "schedule.retry.max_attempts",
        ["greater than or equal to 0"],
    ),
    (
        "retry-delay-negative",
        SCHEDULED + "  retry: {delay_seconds: -5}\n",
        "DLI-201",
        "schedule.retry.delay_seconds",
        ["greater than or equal to 0"],
    ),
    ("timeout-zero", SCHEDULED + "  timeout_seconds: 0\n", "DLI-201", "schedule.timeout_seconds", ["greater than 0"]),
    # numeric bounds: what Airflow would refuse later (timedelta overflow, the worker's timer), refused now
    (
        "timeout-1e20",
        SCHEDULED + "  timeout_seconds: 100000000000000000000\n",
        "DLI-201",
        "schedule.timeout_seconds",
        ["less than or equal to 604800", "7 days", "leave timeout_seconds out"],
    ),
    ("timeout-float-1e20", SCHEDULED + "  timeout_seconds: 1.0e+20\n", "DLI-201", "schedule.timeout_seconds", ["integer"]),
    ("timeout-a-week-and-a-second", SCHEDULED + "  timeout_seconds: 604801\n", "DLI-201", "schedule.timeout_seconds", ["604800"]),
    ("timeout-yes", SCHEDULED + "  timeout_seconds: yes\n", "DLI-201", "schedule.timeout_seconds", ["whole number", "yes/no"]),
    ("retry-101", SCHEDULED + "  retry: {max_attempts: 101}\n", "DLI-201", "schedule.retry.max_attempts", ["100"]),
    ("retry-huge", SCHEDULED + "  retry: {max_attempts: 99999999999999999999}\n", "DLI-201", "schedule.retry.max_attempts", ["100"]),
    ("retry-yes", SCHEDULED + "  retry: {max_attempts: yes}\n", "DLI-201", "schedule.retry.max_attempts", ["got true"]),
    ("retry-delay-a-day-and-a-second", SCHEDULED + "  retry: {delay_seconds: 86401}\n", "DLI-201", "schedule.retry.delay_seconds", ["86400"]),
    ("retry-delay-off", SCHEDULED + "  retry: {delay_seconds: off}\n", "DLI-201", "schedule.retry.delay_seconds", ["got false"]),
    # crons that are valid but never fire: the DAG would never run, with no warning
    (
        "cron-feb-30",
        BASE + "schedule:\n  cron: '0 0 30 2 *'\n",
        "DLI-201",
        "schedule.cron",
        ["never fires", "day 30 of the month never comes in February"],
    ),
    ("cron-feb-31", BASE + "schedule:\n  cron: '0 0 31 2 *'\n", "DLI-201", "schedule.cron", ["day 31", "February"]),
    (
        "cron-31-in-short-months",
        BASE + "schedule:\n  cron: '0 0 31 4,6,9,11 *'\n",
        "DLI-201",
        "schedule.cron",
        ["April, June, September or November"],
    ),
    ("cron-30-31-feb", BASE + "schedule:\n  cron: '15 3 30,31 2 *'\n", "DLI-201", "schedule.cron", ["day 30", "February"]),
    # cron
    (
        "cron-4-fields",
        BASE + "schedule:\n  cron: '0 9 * *'\n",
        "DLI-201",
        "schedule.cron",
        ["4 fields", "use 5", "'0 9 * * *'"],
    ),
    ("cron-6-fields", BASE + "schedule:\n  cron: '0 0 9 * * *'\n", "DLI-201", "schedule.cron", ["6 fields", "use 5"]),
    (
        "cron-invalid-minute",
        BASE + "schedule:\n  cron: '61 9 * * *'\n",
        "DLI-201",
        "schedule.cron",
        ["not a valid cron"],
    ),
    ("cron-words", BASE + "schedule:\n  cron: 'every day at 9'\n", "DLI-201", "schedule.cron", []),
    ("cron-number", BASE + "schedule:\n  cron: 5\n", "DLI-201", "schedule.cron", []),
    (
        "schedule-without-cron-or-depends_on",
        BASE + "schedule:\n  timezone: UTC\n",
        "DLI-201",
        "schedule.cron",
        ["no cron", "depends_on"],
    ),
    # time zone
    (
        "timezone-typo",
        SCHEDULED + "  timezone: Asia/Seol\n",
        "DLI-201",
        "schedule.timezone",
        ["did you mean 'Asia/Seoul'?"],
    ),
    ("timezone-offset", SCHEDULED + "  timezone: '+09:00'\n", "DLI-201", "schedule.timezone", ["unknown time zone"]),
    # parameters
    (
        "param-type-int",
        BASE + "parameters:\n  - name: limit\n    type: int\n",
        "DLI-201",
        "parameters[0].type",
        ["'int' is not allowed", "did you mean 'integer'?"],
    ),
    ("param-no-name", BASE + "parameters:\n  - type: date\n", "DLI-201", "parameters[0].name", ["required"]),
    (
        "param-name-digit",
        BASE + "parameters:\n  - name: 1st\n",
        "DLI-201",
        "parameters[0].name",
        ["not a valid identifier"],
    ),
    ("param-name-params", BASE + "parameters:\n  - name: params\n", "DLI-201", "parameters[0].name", ["reserved"]),
    (
        "param-duplicate",
        BASE + "parameters:\n  - name: limit\n  - name: day\n  - name: limit\n",
        "DLI-201",
        "parameters[2].name",
        ["'limit' is declared twice"],
    ),
    (
        "param-default-not-integer",
        BASE + "parameters:\n  - name: limit\n    type: integer\n    default: lots\n",
        "DLI-201",
        "parameters[0].default",
        ["'lots' is not a valid integer"],
    ),
    (
        "param-default-not-date",
        BASE + "parameters:\n  - name: day\n    type: date\n    default: yesterday\n",
        "DLI-201",
        "parameters[0].default",
        ["not a valid date", "YYYY-MM-DD"],
    ),
    (
        "param-default-list",
        BASE + "parameters:\n  - name: label\n    default: [a, b]\n",
        "DLI-201",
        "parameters[0].default",
        ["not a valid string", "got a list"],
    ),
    (
        "param-default-timestamp-for-integer",
        BASE + "parameters:\n  - name: limit\n    type: integer\n    default: 2024-01-15 10:00:00\n",
        "DLI-201",
        "parameters[0].default",
        ["not a valid integer"],
    ),
    (
        "param-default-not-boolean",
        BASE + "parameters:\n  - name: flag\n    type: boolean\n    default: sometimes\n",
        "DLI-201",
        "parameters[0].default",
        ["not a valid boolean"],
    ),
    (
        "param-default-float-for-integer",
        BASE + "parameters:\n  - name: limit\n    type: integer\n    default: 1.5\n",
        "DLI-201",
        "parameters[0].default",
        ["whole number"],
    ),
    (
        "param-required-no-default-scheduled",
        SCHEDULED + "parameters:\n  - name: execution_date\n    type: date\n    required: true\n"
        "  - name: customer\n    required: true\n",
        "DLI-201",
        "parameters[1].required",
        ["'customer' is required and has no default", "schedule.enabled: false"],
    ),
    # query / query_file
    ("query-and-query_file", BASE + "query_file: daily.sql\n", "DLI-201", "query_file", ["both", "keep one"]),
    ("query-neither", "name: a\nowner: b\n", "DLI-201", "query", ["exactly one"]),
    ("query-empty", BASE.replace("SELECT 1", "'  '"), "DLI-201", "query", ["empty"]),
    # notifications
    (
        "email-without-to",
        SCHEDULED + "  notifications:\n    on_failure: [{type: email}]\n",
        "DLI-201",
        "schedule.notifications.on_failure[0].to",
        ["needs 'to:"],
    ),
    (
        "webhook-without-conn_id",
        SCHEDULED + "  notifications:\n    on_success: [{type: slack, channel: '#a'}, {type: webhook}]\n",
        "DLI-201",
        "schedule.notifications.on_success[1].conn_id",
        ["needs 'conn_id'"],
    ),
    (
        "notification-type-teams",
        SCHEDULED + "  notifications:\n    on_failure: [{type: teams}]\n",
        "DLI-201",
        "schedule.notifications.on_failure[0].type",
        ["'teams' is not allowed"],
    ),
    # engine, depends_on
    ("engine-typo", BASE + "engine: trinoo\n", "DLI-201", "engine", ["did you mean 'trino'?"]),
    ("engine-unknown", BASE + "engine: postgres\n", "DLI-201", "engine", ["'postgres' is not allowed"]),
    ("depends_on-self", BASE + "depends_on: [sales.daily]\n", "DLI-201", "depends_on", ["itself"]),
    ("depends_on-bad-name", BASE + "depends_on: [raw/clicks]\n", "DLI-201", "depends_on", ["not allowed"]),
    ("depends_on-twice", BASE + "depends_on: [raw.clicks, raw.clicks]\n", "DLI-201", "depends_on", ["twice"]),
    ("depends_on-reserved", BASE + "depends_on: [dli_sync]\n", "DLI-201", "depends_on", ["reserved"]),
    ("depends_on-dunder", BASE + "depends_on: [__file__]\n", "DLI-201", "depends_on", ["starts with '__'"]),
    ("depends_on-newline", BASE + 'depends_on: ["raw.clicks\\n"]\n', "DLI-201", "depends_on", ["not allowed"]),
    # YAML typed a text field's unquoted value: refused, saying to quote it
    ("team-number", BASE + "team: 2024\n", "DLI-201", "team", ["valid string", "put it in quotes"]),
    ("tag-boolean", BASE + "tags: [NO]\n", "DLI-201", "tags[0]", ["False", "boolean", "put it in quotes"]),
]


@pytest.mark.hostile(kind="yaml")
@pytest.mark.parametrize(
    ("text", "code", "field", "fragments"), [c[1:] for c in BAD_SPECS], ids=[c[0] for c in BAD_SPECS]
)
def test_bad_spec_names_code_file_and_field(text: str, code: str, field: str, fragments: list[str]) -> None:
    error = _raises(text)
    assert error.code == code
    assert isinstance(error, SpecValidationError)
    assert error.message.startswith(PATH + ":"), error.message
    assert [p.field for p in error.problems] == [field], error.to_dict()
    assert f"{field}:" in error.message
    assert all(p.file == PATH for p in error.problems)
    rendered = error.render()
    for fragment in fragments:
        assert fragment in rendered


def test_bad_spec_ids_are_unique() -> None:
    ids = [c[0] for c in BAD_SPECS]
    assert len(ids) == len(set(ids))


def test_several_problems_are_all_reported() -> None:
    error = _raises("name: a/b\nownr: x\nschedule:\n  cron: '0 9 *'\n  timezone: Asia/Seol\nquery: SELECT 1\n")
    fields = {p.field for p in error.problems}
    assert {"name", "ownr", "owner", "schedule.cron", "schedule.timezone"} <= fields
    assert "problems" in error.message
    rendered = error.render()
    assert "did you mean 'owner'?" in rendered and "did you mean 'Asia/Seoul'?" in rendered


# -- valid edge cases ---------------------------------------------------------------------------------------


def test_required_param_without_default_is_allowed_when_schedule_disabled() -> None:
    spec = load_spec(
        BASE
        + "parameters:\n  - name: customer\n    required: true\nschedule:\n  enabled: false\n  cron: '0 9 * * *'\n",
        PATH,
    )
    assert spec.parameter("customer").required and spec.schedule.enabled is False


def test_required_param_without_default_is_allowed_without_schedule() -> None:
    spec = load_spec(BASE + "parameters:\n  - name: customer\n    required: true\n", PATH)
    assert spec.schedule is None


def test_required_execution_date_without_default_is_allowed_on_a_schedule() -> None:
    spec = load_spec(SCHEDULED + "parameters:\n  - name: execution_date\n    type: date\n    required: true\n", PATH)
    assert spec.parameter("execution_date").default is None


def test_depends_on_without_cron_is_allowed() -> None:
    spec = load_spec(BASE + "depends_on: [raw.clicks]\nschedule:\n  timezone: Asia/Seoul\n", PATH)
    assert spec.schedule.cron is None and spec.depends_on == ["raw.clicks"]


def test_defaults_are_coerced_to_their_type() -> None:
    spec = load_spec(
        BASE + "parameters:\n"
        "  - {name: day, type: date, default: '2024-01-15'}\n"
        "  - {name: n, type: integer, default: '7'}\n"
        "  - {name: flag, type: boolean, default: 'yes'}\n"
        "  - {name: r, type: number, default: 1}\n",
        PATH,
    )
    assert [p.default for p in spec.parameters] == [date(2024, 1, 15), 7, True, 1]
    assert isinstance(spec.parameter("flag").default, bool)


def test_defaults_fill_in() -> None:
    spec = load_spec(SCHEDULED, PATH)
    assert spec.type == "Dataset"
    assert spec.schedule.timezone == "UTC"
    assert (spec.schedule.retry.max_attempts, spec.schedule.retry.delay_seconds) == (1, 300)
    assert spec.schedule.enabled is True
    assert spec.resolved_engine == "duckdb"


def test_default_engine_comes_from_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW__DLI__DEFAULT_ENGINE", "trino")
    assert load_spec(BASE, PATH).resolved_engine == "trino"
    assert load_spec(BASE + "engine: bigquery\n", PATH).resolved_engine == "bigquery"


def test_name_of_250_characters_is_allowed() -> None:
    assert load_spec(BASE.replace("sales.daily", "a" * 250), PATH).name == "a" * 250


@pytest.mark.parametrize("name", ["dli", "dli.sales", "dlix_sales", "a__b", "_private", "sales-daily", "x.dli_y", "a."])
def test_names_near_the_reserved_ones_are_allowed(name: str) -> None:
    assert load_spec(BASE.replace("sales.daily", f"'{name}'"), PATH).name == name


@pytest.mark.hostile(kind="names")
@pytest.mark.parametrize("name", ["__file__", "dli_sync", "DLI_spec_errors", ".hidden", "good.ds2\n"])
def test_a_reserved_name_is_refused_when_registering_a_dict_too(name: str) -> None:
    from dli_airflow.spec import validate_spec

    with pytest.raises(SpecValidationError) as info:
        validate_spec({"name": name, "owner": "me@example.com", "query": "SELECT 1"}, "<spec>")
    assert [p.field for p in info.value.problems] == ["name"]


@pytest.mark.parametrize("cron", ["0 0 29 2 *", "0 0 30 2 1", "0 0 L 2 *", "0 0 31 * *", "59 23 31 12 *"])
def test_crons_that_fire_rarely_are_fine(cron: str) -> None:
    assert load_spec(BASE + f"schedule:\n  cron: '{cron}'\n", PATH).schedule.cron == cron


def test_cron_extra_spaces_are_normalised() -> None:
    assert load_spec(BASE + "schedule:\n  cron: '0  9 * *   1-5'\n", PATH).schedule.cron == "0 9 * * 1-5"


def test_schema_alias_and_bom_and_crlf() -> None:
    data = ("\ufeff" + BASE + "engine: trino\nschema: analytics\ncatalog: iceberg\n").replace("\n", "\r\n").encode()
    spec = load_spec(data, PATH)
    assert spec.db_schema == "analytics" and spec.catalog == "iceberg"


def test_unicode_text_fields_load() -> None:
    spec = load_spec(BASE + "description: 캠페인별 일일 클릭 수\nteam: '@데이터'\n", PATH)
    assert spec.description == "캠페인별 일일 클릭 수"


def test_spec_is_frozen() -> None:
    spec = load_spec(BASE, PATH)
    with pytest.raises(Exception):  # noqa: B017 - pydantic's frozen error
        spec.name = "other"  # type: ignore[misc]


# -- unreadable YAML ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("name: a\nowner: [x\nquery: SELECT 1\n", 3),
        ("name: a\n  owner: x\nquery: SELECT 1\n", 2),
        ("name: a\n\towner: x\n", 2),
        ("name: a\nowner: x\nquery: 'SELECT 1\n", 4),
        ("name: a\nowner: x\nquery: SELECT 1\nquery_file: {a: b\n", 5),
    ],
    ids=["unclosed-bracket", "bad-indent", "tab-indent", "unclosed-quote", "unclosed-brace"],
)
def test_yaml_syntax_error_names_the_line(text: str, line: int) -> None:
    error = _raises(text)
    assert isinstance(error, SpecSyntaxError) and error.code == "DLI-202"
    assert error.message.startswith(f"{PATH}:{line}"), error.message
    assert "YAML syntax" in error.render()


@pytest.mark.hostile(kind="yaml")
@pytest.mark.parametrize("value", ["2024-13-45", "2024-02-30", "2023-02-29"])
def test_impossible_yaml_date_is_a_yaml_error_with_line(value: str) -> None:
    error = _raises(BASE + f"team: {value}\n")
    assert error.code == "DLI-202"
    assert error.message.startswith(f"{PATH}:4:"), error.message
    assert f"{value!r} is not a valid date" in error.message
    assert "YYYY-MM-DD" in error.render()


@pytest.mark.hostile(kind="yaml")
@pytest.mark.parametrize("value", ["2024-13-45", "2024-02-30", "2023-02-29"])
def test_impossible_date_default_names_the_parameter(value: str) -> None:
    # a parameter's default is read as written and checked against its type, so the field is named
    error = _raises(BASE + f"parameters:\n  - name: day\n    type: date\n    default: {value}\n")
    assert error.code == "DLI-201"
    assert [p.field for p in error.problems] == ["parameters[0].default"]
    assert f"default {value!r} is not a valid date" in error.message and "YYYY-MM-DD" in error.message


@pytest.mark.hostile(kind="files")
def test_non_utf8_bytes() -> None:
    error = _raises(b"name: a\nowner: caf\xe9\nquery: SELECT 1\n")
    assert error.code == "DLI-202"
    assert error.message.startswith(f"{PATH}:2:")
    assert "not UTF-8" in error.message and "0xe9" in error.message
    assert "UTF-8" in error.render()


@pytest.mark.hostile(kind="files")
def test_utf16_file_is_refused_not_misread() -> None:
    error = _raises(BASE.encode("utf-16"))
    assert error.code == "DLI-202" and "not UTF-8" in error.message


@pytest.mark.hostile(kind="yaml")
@pytest.mark.parametrize(
    "tag",
    [
        "!!python/object/apply:os.system ['touch {marker}']",
        "!!python/object/new:os.system ['touch {marker}']",
        "!!python/name:os.system",
        "!!python/object:builtins.object {{}}",
        "!!python/module:os",
    ],
    ids=["apply", "new", "name", "object", "module"],
)
def test_python_tags_are_refused_and_never_run(tmp_path: Path, tag: str) -> None:
    marker = tmp_path / "pwned"
    error = _raises(f"name: {tag.format(marker=marker)}\nowner: x\nquery: SELECT 1\n")
    assert error.code == "DLI-202"
    assert error.message.startswith(f"{PATH}:1")
    assert "!!python/object" in error.render()  # the hint says to remove such tags
    assert not marker.exists()


def _alias_bomb(levels: int = 9) -> str:
    lines = ["a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for i in range(1, levels):
        refs = ", ".join([f"*a{i - 1}"] * 10)
        lines.append(f"a{i}: &a{i} [{refs}]")
    return "\n".join(lines) + "\n"


@pytest.mark.hostile(kind="yaml")
def test_alias_bomb_fails_fast() -> None:
    started = time.monotonic()
    error = _raises(_alias_bomb())  # 10**9 nodes if expanded
    assert time.monotonic() - started < 1.0
    assert error.code == "DLI-202"
    assert "anchors and aliases" in error.message


def test_a_few_aliases_are_fine() -> None:
    spec = load_spec(
        BASE + "schedule:\n  cron: '0 9 * * *'\n  retry: &r {max_attempts: 2}\n"
        "  notifications:\n    on_failure: &n [{type: slack, channel: '#a'}]\n    on_success: *n\n",
        PATH,
    )
    assert spec.schedule.notifications.on_success == spec.schedule.notifications.on_failure


@pytest.mark.hostile(kind="yaml")
def test_deep_nesting_is_refused() -> None:
    error = _raises(BASE + "tags: " + "[" * 150 + "]" * 150 + "\n")
    assert error.code == "DLI-202" and "deeper" in error.message


@pytest.mark.parametrize(
    ("data", "fragment"),
    [(b"", "empty"), (b"  \n\n\t\n", "empty"), (b"# just a comment\n# another\n", "only comments")],
    ids=["empty", "whitespace", "comments-only"],
)
def test_empty_and_comment_only_files(data: bytes, fragment: str) -> None:
    error = _raises(data)
    assert error.code == "DLI-202"
    assert error.message.startswith(PATH) and fragment in error.message
    assert error.hint


@pytest.mark.hostile(kind="yaml")
@pytest.mark.parametrize(
    ("text", "kind"),
    [("- name: a\n  owner: b\n", "list"), ("just a sentence\n", "str"), ("42\n", "int"), ("null\n", "nothing")],
    ids=["list", "string", "number", "null"],
)
def test_not_a_mapping(text: str, kind: str) -> None:
    error = _raises(text)
    assert error.code == "DLI-201"
    assert error.message.startswith(PATH) and "mapping" in error.message and kind in error.message


@pytest.mark.hostile(kind="yaml")
def test_several_documents_in_one_file() -> None:
    error = _raises(BASE + "---\n" + BASE)
    assert error.code == "DLI-202" and "one YAML document" in error.render()


@pytest.mark.hostile(kind="files")
def test_ten_megabyte_file_is_refused_before_parsing() -> None:
    data = BASE.encode() + b"description: '" + b"x" * (10 * 1024 * 1024) + b"'\n"
    started = time.monotonic()
    error = _raises(data)
    assert time.monotonic() - started < 1.0
    assert error.code == "DLI-202"
    assert "10.5 MB" in error.message and "query_file" in error.render()


def test_load_spec_accepts_text() -> None:
    assert load_spec(BASE, PATH).name == "sales.daily"
    with pytest.raises(SpecSyntaxError):
        load_spec("", PATH)


# -- fixture files ------------------------------------------------------------------------------------------


def _expectation(path: Path) -> tuple[str, str | None]:
    first = path.read_text(encoding="utf-8").splitlines()[0]
    assert first.startswith("# expect: "), f"{path} has no '# expect: CODE FIELD' first line"
    code, field = first[len("# expect: ") :].split()
    return code, None if field == "-" else field


GOOD_FILES = sorted(p for p in (FIXTURES / "good").iterdir() if p.suffix in {".yaml", ".yml"})
BAD_FILES = sorted(p for p in (FIXTURES / "bad").iterdir() if p.suffix in {".yaml", ".yml"})


@pytest.mark.parametrize("path", GOOD_FILES, ids=[p.name for p in GOOD_FILES])
def test_good_fixture_loads(path: Path) -> None:
    from dli_airflow.catalog import load_entry
    from dli_airflow.store import SingleFileStore

    store = SingleFileStore.for_file(path)
    spec, sql, _ = load_entry(store, path.relative_to(store.root).as_posix())
    assert isinstance(spec, DatasetSpec) and sql.strip()


@pytest.mark.hostile(kind="yaml")
@pytest.mark.parametrize("path", BAD_FILES, ids=[p.name for p in BAD_FILES])
def test_bad_fixture_raises_its_expected_error(path: Path) -> None:
    from dli_airflow.catalog import load_entry
    from dli_airflow.store import SingleFileStore

    code, field = _expectation(path)
    store = SingleFileStore.for_file(path)
    with pytest.raises(DliError) as info:
        load_entry(store, path.name)
    error = info.value
    assert error.code == code, error.render()
    assert str(path) in error.message
    if field is not None:
        assert field in [p.field for p in error.problems], error.to_dict()


def test_fixture_full_spec_uses_every_top_level_field() -> None:
    document_keys = {
        line.split(":", 1)[0]
        for line in (FIXTURES / "good" / "full.yaml").read_text().splitlines()
        if line and not line.startswith((" ", "#", "-"))
    }
    model_keys = {f.alias or n for n, f in DatasetSpec.model_fields.items()} - {
        "catalog",
        "schema",
        "project",
        "location",
        "query",
    }
    assert model_keys <= document_keys


def test_json_schema_forbids_unknown_keys_everywhere() -> None:
    schema = json_schema()
    assert schema["additionalProperties"] is False
    for name, definition in schema["$defs"].items():
        if definition.get("type") == "object":
            assert definition.get("additionalProperties") is False, name
