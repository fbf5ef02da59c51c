"""The spec YAML loader (`dli_airflow._yaml`): duplicate keys and YAML 1.1 typing never change a spec silently.

Each hostile row names the code, the line and the key or value the message must name; the good rows show
what is still read as before (merges, quoted values, plain numbers).
"""

from __future__ import annotations

from datetime import date

import pytest

from dli_airflow._yaml import load_yaml
from dli_airflow.errors import SpecSyntaxError
from dli_airflow.spec import load_spec

pytestmark = pytest.mark.usefixtures("dli_isolated")

PATH = "code/sales/daily.yaml"
BASE = "name: sales.daily\nowner: me@example.com\nquery: SELECT 1\n"

# (id, YAML, line of the message, fragments the message must contain)
DUPLICATE_KEYS = [
    ("top-level", "a: 1\nb: 2\na: 3\n", 3, ["duplicate key 'a'", "first at line 1, again at line 3"]),
    (
        "second-schedule-re-enables",
        BASE + "schedule:\n  enabled: false\n  cron: '0 9 * * *'\nschedule:\n  cron: '0 9 * * *'\n",
        7,
        ["duplicate key 'schedule'", "first at line 4, again at line 7"],
    ),
    (
        "nested",
        BASE + "schedule:\n  enabled: false\n  cron: '0 9 * * *'\n  enabled: true\n",
        7,
        ["duplicate key 'schedule.enabled'", "first at line 5"],
    ),
    (
        "in-a-list-item",
        BASE + "parameters:\n  - name: a\n    default: x\n    default: y\n",
        7,
        ["duplicate key 'parameters[0].default'", "first at line 6"],
    ),
    ("flow-mapping", BASE + "schedule: {cron: '0 9 * * *', cron: '0 0 * * *'}\n", 4, ["'schedule.cron'"]),
    ("quoted-and-plain", BASE + '"owner": other@example.com\n', 4, ["duplicate key 'owner'", "first at line 2"]),
    ("query-twice", BASE + "query: DROP TABLE t\n", 4, ["duplicate key 'query'", "first at line 3"]),
]


@pytest.mark.hostile(kind="yaml")
@pytest.mark.parametrize(("text", "line", "fragments"), [c[1:] for c in DUPLICATE_KEYS], ids=[c[0] for c in DUPLICATE_KEYS])
def test_a_duplicate_key_is_refused_naming_the_key_and_both_lines(text: str, line: int, fragments: list[str]) -> None:
    with pytest.raises(SpecSyntaxError) as info:
        load_yaml(text.encode(), PATH)
    error = info.value
    assert error.code == "DLI-202"
    assert error.message.startswith(f"{PATH}:{line}: "), error.message
    for fragment in fragments:
        assert fragment in error.message
    assert "keep one" in error.render()


def test_a_merge_that_overrides_a_key_is_not_a_duplicate() -> None:
    text = BASE + "parameters:\n  - &p {name: a, type: string, default: x}\n  - {<<: *p, name: b}\n"
    spec = load_spec(text, PATH)
    assert [(p.name, p.default) for p in spec.parameters] == [("a", "x"), ("b", "x")]


# (id, value as written unquoted somewhere other than a parameter default, what YAML 1.1 reads)
AMBIGUOUS_NUMBERS = [
    ("octal", "010", "8"),
    ("negative-octal", "-010", "-8"),
    ("binary", "0b11", "3"),
    ("base-60", "1:30", "90"),
    ("time-as-base-60", "12:30:00", "45000"),
    ("leading-zero-float", "00.5", "0.5"),
]


@pytest.mark.hostile(kind="yaml")
@pytest.mark.parametrize(("value", "read"), [c[1:] for c in AMBIGUOUS_NUMBERS], ids=[c[0] for c in AMBIGUOUS_NUMBERS])
def test_an_ambiguous_unquoted_number_is_refused_with_quote_it(value: str, read: str) -> None:
    text = BASE + f"schedule:\n  cron: '0 9 * * *'\n  retry: {{max_attempts: {value}}}\n"
    with pytest.raises(SpecSyntaxError) as info:
        load_spec(text, PATH)
    error = info.value
    assert error.code == "DLI-202"
    assert error.message.startswith(f"{PATH}:6: "), error.message
    assert f"unquoted value {value} is ambiguous" in error.message and f"reads it as {read}" in error.message
    assert f"quote it to keep the text ('{value}')" in error.render()


@pytest.mark.parametrize("value", ["10", "0", "-3", "0x1F", "1_000", "0.5", "1.10", "1e3", ".5"])
def test_plain_numbers_read_as_before(value: str) -> None:
    import yaml

    assert load_yaml(f"a: {value}\n".encode(), PATH) == yaml.safe_load(f"a: {value}\n")


# (type, the default as written, the value it must become) — YAML 1.1 would have typed the text first
TEXT_DEFAULTS = [
    ("string", "NO", "NO"),
    ("string", "yes", "yes"),
    ("string", "off", "off"),
    ("string", "010", "010"),
    ("string", "12:30:00", "12:30:00"),
    ("string", "1.10", "1.10"),
    ("string", "0x1F", "0x1F"),
    ("string", "1_000", "1_000"),
    ("string", "2024-1-5", "2024-1-5"),
    ("string", "2024-01-15 10:00:00", "2024-01-15 10:00:00"),
    ("string", "'quoted'", "quoted"),
    ("string", "~", None),
    ("integer", "010", 10),
    ("boolean", "NO", False),
    ("number", "1.10", 1.1),
    ("date", "2024-01-15", date(2024, 1, 15)),
]


@pytest.mark.hostile(kind="yaml")
@pytest.mark.parametrize(("param_type", "written", "value"), TEXT_DEFAULTS, ids=[f"{t}-{w}" for t, w, _ in TEXT_DEFAULTS])
def test_a_parameter_default_is_read_as_written(param_type: str, written: str, value: object) -> None:
    spec = load_spec(BASE + f"parameters:\n  - name: p\n    type: {param_type}\n    default: {written}\n", PATH)
    default = spec.parameters[0].default
    assert default == value and type(default) is type(value)


@pytest.mark.hostile(kind="yaml")
def test_the_text_is_kept_in_merged_and_flow_parameters() -> None:
    text = BASE + "parameters:\n  - &p {name: a, default: NO}\n  - {<<: *p, name: b}\n  - {name: c, default: 010}\n"
    assert [p.default for p in load_spec(text, PATH).parameters] == ["NO", "NO", "010"]


# (id, typed default that no longer fits its type once read as written, field fragment)
TEXT_DEFAULT_REFUSALS = [
    ("hex-integer", "integer", "0x1F", "not a valid integer"),
    ("time-integer", "integer", "12:30:00", "not a valid integer"),
    ("short-date", "date", "2024-1-5", "not a valid date"),
    ("maybe-boolean", "boolean", "maybe", "not a valid boolean"),
]


@pytest.mark.hostile(kind="yaml")
@pytest.mark.parametrize(
    ("param_type", "written", "fragment"), [c[1:] for c in TEXT_DEFAULT_REFUSALS], ids=[c[0] for c in TEXT_DEFAULT_REFUSALS]
)
def test_a_default_that_does_not_fit_its_type_as_written_is_refused(param_type: str, written: str, fragment: str) -> None:
    from dli_airflow.errors import SpecValidationError

    with pytest.raises(SpecValidationError) as info:
        load_spec(BASE + f"parameters:\n  - name: p\n    type: {param_type}\n    default: {written}\n", PATH)
    assert [p.field for p in info.value.problems] == ["parameters[0].default"]
    assert f"default {written!r} is {fragment}" in info.value.message


@pytest.mark.hostile(kind="yaml")
@pytest.mark.parametrize(("field", "value"), [("team", "2024"), ("owner", "yes"), ("description", "2024-01-15")])
def test_a_text_field_given_a_typed_value_says_quote_it(field: str, value: str) -> None:
    from dli_airflow.errors import SpecValidationError

    text = "name: sales.daily\nowner: me@example.com\nquery: SELECT 1\n".replace(
        "owner: me@example.com\n", "" if field == "owner" else "owner: me@example.com\n"
    )
    with pytest.raises(SpecValidationError) as info:
        load_spec(text + f"{field}: {value}\n", PATH)
    assert [p.field for p in info.value.problems] == [field]
    assert "put it in quotes to keep the text as written" in info.value.message
