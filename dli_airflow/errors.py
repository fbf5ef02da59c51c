"""The one error tree of dli-airflow.

Every error has a stable code (``DLI-xyz``) that never changes meaning, a message that
says what failed and where, and a hint that says what to do next.

Ranges: 0xx config, 1xx not found, 2xx validation, 3xx transpile, 4xx execution,
5xx server, 8xx workflow.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum
from typing import TypeVar

_E = TypeVar("_E", bound=Enum)

#: Credentials as they appear in text: user info in URLs, ``password=...``-style pairs, bearer tokens.
_SECRETS = (
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/@\s'\"]+@"), r"\1***@"),
    (re.compile(r"(?i)\b(password|passwd|pwd|token|access_token|secret|secret_key|aws_secret_access_key|"
                r"api_key|apikey|x-amz-security-token|session_token)(['\"]?\s*[=:]\s*['\"]?)[^\s'\",;&)]+"),
     r"\1\2***"),
    (re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{8,}"), r"\1 ***"),
)


#: Secret values this process holds (a connection's password, token or key), masked wherever they appear.
_KNOWN_SECRETS: set[str] = set()
#: Shorter values are not masked: they would garble every message that happens to contain them.
MIN_SECRET_LENGTH = 4


def add_secret(value: str) -> None:
    """Mask ``value`` in everything :func:`scrub` cleans from now on (as Airflow's ``mask_secret`` does)."""
    if isinstance(value, str) and len(value.strip()) >= MIN_SECRET_LENGTH:
        _KNOWN_SECRETS.add(value.strip())


def scrub(text: str) -> str:
    """``text`` with credentials replaced by ``***``: what every output and log line goes through."""
    for secret in sorted(_KNOWN_SECRETS, key=len, reverse=True):
        text = text.replace(secret, "***")
    for pattern, replacement in _SECRETS:
        text = pattern.sub(replacement, text)
    return text


@dataclass(frozen=True)
class Problem:
    """One thing wrong with one input: a file, a field path, what is wrong, how to fix it."""

    message: str
    file: str | None = None
    field: str | None = None
    hint: str | None = None
    line: int | None = None

    def __str__(self) -> str:
        where = self.file or ""
        if self.line is not None and where:
            where = f"{where}:{self.line}"
        if self.field:
            where = f"{where}: {self.field}" if where else self.field
        text = f"{where}: {self.message}" if where else self.message
        if self.hint:
            text = f"{text}; {self.hint}"
        return text


class ErrorCode(str, Enum):
    """Every code a :class:`DliError` carries: ``e.code.value == "DLI-800"``, and ``e.code`` is also the string
    itself (``str(e.code) == e.code == "DLI-800"``, as in logs, JSON and ``startswith``)."""

    DLI_000 = "DLI-000"
    DLI_001 = "DLI-001"
    DLI_010 = "DLI-010"
    DLI_101 = "DLI-101"
    DLI_102 = "DLI-102"
    DLI_103 = "DLI-103"
    DLI_201 = "DLI-201"
    DLI_202 = "DLI-202"
    DLI_203 = "DLI-203"
    DLI_204 = "DLI-204"
    DLI_205 = "DLI-205"
    DLI_301 = "DLI-301"
    DLI_401 = "DLI-401"
    DLI_404 = "DLI-404"
    DLI_405 = "DLI-405"
    DLI_406 = "DLI-406"
    DLI_501 = "DLI-501"
    DLI_502 = "DLI-502"
    DLI_503 = "DLI-503"
    DLI_504 = "DLI-504"
    DLI_800 = "DLI-800"
    DLI_801 = "DLI-801"
    DLI_802 = "DLI-802"
    DLI_803 = "DLI-803"
    DLI_804 = "DLI-804"

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)

    # equal to its string, so it must hash like it (a dict keyed by codes is looked up with JSON's strings)
    __hash__ = str.__hash__


class DliError(Exception):
    """Base of every error dli-airflow raises on purpose."""

    code: ErrorCode = ErrorCode.DLI_000
    hint: str | None = None
    #: The CLI's exit status for this error: 1, unless the command gives it another (``dli dataset run``).
    exit_code: int = 1

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        own = cls.__dict__.get("code")
        if own is not None and not isinstance(own, ErrorCode):
            cls.code = ErrorCode(own)  # a subclass writes code = "DLI-xyz": one of ErrorCode's, or it fails here

    def __init__(
        self,
        message: str,
        *,
        hint: str | None = None,
        problems: list[Problem] | None = None,
        dataset_name: str | None = None,
        run_id: str | None = None,
        path: str | None = None,
        field: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if hint is not None:
            self.hint = hint
        self.problems: list[Problem] = list(problems or [])
        first = self.problems[0] if self.problems else None
        #: what the error is about, where it applies (seed 001 §3.3): the dataset, the run, the file and field
        self.dataset_name = dataset_name
        self.run_id = run_id
        self.path = path if path is not None else (first.file if first else None)
        self.field = field if field is not None else (first.field if first else None)

    def __str__(self) -> str:
        return self.message

    def render(self) -> str:
        """The message with its hint, as the CLI prints it after ``Error [DLI-xyz]:``."""
        text = self.message
        if self.problems and len(self.problems) > 1:
            text += "".join(f"\n  - {p}" for p in self.problems)
        if self.hint:
            text += f"\n  Fix: {self.hint}"
        return text

    def to_dict(self) -> dict[str, object]:
        return {
            "code": self.code,
            "message": self.message,
            "hint": self.hint,
            "problems": [
                {"file": p.file, "field": p.field, "line": p.line, "message": p.message, "hint": p.hint}
                for p in self.problems
            ],
            # the context, so that a client gets e.dataset_name (seed 001 §3.3) across the wire too
            "dataset_name": self.dataset_name,
            "run_id": self.run_id,
            "path": self.path,
            "field": self.field,
        }


# 0xx configuration
class ConfigError(DliError):
    """A [dli] setting is missing or wrong."""

    code = "DLI-001"
    hint = "check the [dli] section of airflow.cfg or the AIRFLOW__DLI__* environment variables"


class DevError(DliError):
    """The local dev Airflow (`dli dev`) could not be started, checked or stopped."""

    code = "DLI-010"
    hint = "see the logs under <home>/logs; `dli dev down --home HOME` stops whatever is left"


# 1xx not found
class DatasetNotFoundError(DliError):
    """No dataset of that name in the store."""

    code = "DLI-101"
    hint = "run `dli spec list` to see the datasets of the store"


class StoreNotFoundError(DliError):
    """The spec store does not exist or is not configured."""

    code = "DLI-102"
    hint = "set [dli] spec_store (AIRFLOW__DLI__SPEC_STORE) or pass --store to a folder holding code/ and manual/"


class SpecFileNotFoundError(DliError):
    """A spec file or folder given on the command line does not exist."""

    code = "DLI-103"
    hint = "check the path; `dli spec validate` takes spec files and store folders"


# 2xx validation
class SpecValidationError(DliError):
    """A spec file is valid YAML but not a valid Dataset Spec (field, type, rule)."""

    code = "DLI-201"
    hint = "fix the spec file; `dli spec schema` prints the JSON Schema your editor can check as you type"


class SpecSyntaxError(DliError):
    """A spec file cannot be read as YAML (syntax, encoding, size, tags, alias bombs)."""

    code = "DLI-202"
    hint = "fix the YAML syntax at the line shown (indentation, quotes, a missing ':')"


class ParameterError(DliError):
    """A run parameter is unknown, missing or of the wrong type."""

    code = "DLI-203"


class SpecConflictError(DliError):
    """Two files of one prefix declare the same dataset name."""

    code = "DLI-204"
    hint = "rename one of the datasets or delete the duplicate file; neither is scheduled until then"


class TemplateError(DliError):
    """The SQL template is invalid (syntax, hand-quoted placeholder, undeclared name)."""

    code = "DLI-205"


# 3xx transpile
class TranspileError(DliError):
    """SQL written for Trino/BigQuery cannot be run faithfully on DuckDB."""

    code = "DLI-301"
    hint = "rewrite the construct in SQL DuckDB understands, or run the dataset on its own engine"


# 4xx execution
class ExecutionError(DliError):
    """The engine could not run the SQL (connection, lock, cancellation)."""

    code = "DLI-401"


class ExecutionPermissionError(ExecutionError):
    """The engine refused the SQL for lack of permission."""

    code = "DLI-404"
    hint = "ask for access to the objects named above, or check the connection's user"


class SqlExecutionError(ExecutionError):
    """The engine rejected the SQL (syntax, missing table, type error)."""

    code = "DLI-405"
    hint = "fix the SQL at the position shown; `dli dataset run NAME --local --dry-run` renders and parses it"


class ExecutionTimeoutError(ExecutionError):
    """The query ran past schedule.timeout_seconds and was cancelled."""

    code = "DLI-406"
    hint = "raise schedule.timeout_seconds or make the query cheaper"


# 5xx server
class ServerUnreachableError(DliError):
    """The Airflow API (or another server) cannot be reached."""

    code = "DLI-501"


class ServerAuthError(DliError):
    """The server refused the credentials."""

    code = "DLI-502"


class StoreUnavailableError(DliError):
    """The spec store cannot be read right now."""

    code = "DLI-503"
    hint = "check the store's server and credentials; DAGs are served from the last good copy meanwhile"


class ServerExecutionError(DliError):
    """The server failed while running the request."""

    code = "DLI-504"


# 8xx workflow
class WorkflowNotFoundError(DliError):
    """No Airflow workflow of that name."""

    code = "DLI-800"
    hint = "register it first (`dli workflow register SPEC.yaml`) or check the name with `dli workflow list`"


class WorkflowRegistrationError(DliError):
    """A spec cannot be registered (or unregistered)."""

    code = "DLI-801"


class WorkflowExecutionError(DliError):
    """A workflow run cannot be started, stopped or found."""

    code = "DLI-802"


class WorkflowPermissionError(DliError):
    """Not allowed: a code-managed workflow, or an overridden one."""

    code = "DLI-803"


class ReleaseConflictError(DliError):
    """Another ``dli spec publish`` switched the store's release while this one was uploading."""

    code = "DLI-804"
    hint = ("nothing of this release was switched on: run `dli spec publish` again (it plans against the new "
            "release), and run one publish per store at a time (a CI concurrency group)")


def parse_choice(enum: type[_E], value: object, option: str) -> _E | None:
    """``value`` as a member of ``enum`` (by value, case-insensitively), ``None`` for no value.

    :param option: how the caller names the value (``--source``), for the message
    :raises ParameterError: naming the allowed values
    """
    if value is None or value == "":
        return None
    if isinstance(value, enum):
        return value
    wanted = str(value).strip().lower()
    for member in enum:
        if str(member.value).lower() == wanted:
            return member
    allowed = ", ".join(str(m.value) for m in enum)
    raise ParameterError(f"{option} {value!r} is not one of {allowed}", hint=f"pass {option} with one of: {allowed}")


def all_error_classes() -> list[type[DliError]]:
    """Every concrete error class, in code order (used for the README table and tests)."""
    seen: list[type[DliError]] = []
    stack: list[type[DliError]] = [DliError]
    while stack:
        cls = stack.pop()
        for sub in cls.__subclasses__():
            if sub.__module__ == __name__:
                seen.append(sub)
            stack.append(sub)
    return sorted(seen, key=lambda c: c.code)


def markdown_table() -> str:
    """The README's error table, generated from the classes above."""
    lines = ["| code | error | meaning | what to do (default hint) |", "| --- | --- | --- | --- |"]
    for cls in all_error_classes():
        meaning = (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""
        hint = (cls.hint or "the message says").replace("|", "\\|")
        lines.append(f"| `{cls.code}` | `{cls.__name__}` | {meaning} | {hint} |")
    return "\n".join(lines)


if __name__ == "__main__":  # python -m dli_airflow.errors > table
    print(markdown_table())
