"""The one error tree of dli-airflow.

Every error has a stable code (``DLI-xyz``) that never changes meaning, a message that
says what failed and where, and a hint that says what to do next.

Ranges: 0xx config, 1xx not found, 2xx validation, 3xx transpile, 4xx execution,
5xx server, 8xx workflow.
"""

from __future__ import annotations

from dataclasses import dataclass


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


class DliError(Exception):
    """Base of every error dli-airflow raises on purpose."""

    code: str = "DLI-000"
    hint: str | None = None

    def __init__(self, message: str, *, hint: str | None = None, problems: list[Problem] | None = None) -> None:
        super().__init__(message)
        self.message = message
        if hint is not None:
            self.hint = hint
        self.problems: list[Problem] = list(problems or [])

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
        }


# 0xx configuration
class ConfigError(DliError):
    code = "DLI-001"
    hint = "check the [dli] section of airflow.cfg or the AIRFLOW__DLI__* environment variables"


# 1xx not found
class DatasetNotFoundError(DliError):
    code = "DLI-101"
    hint = "run `dli spec list` to see the datasets of the store"


class StoreNotFoundError(DliError):
    code = "DLI-102"
    hint = "set [dli] spec_store (AIRFLOW__DLI__SPEC_STORE) or pass --store to a folder holding code/ and manual/"


class SpecFileNotFoundError(DliError):
    code = "DLI-103"
    hint = "check the path; `dli spec validate` takes spec files and store folders"


# 2xx validation
class SpecValidationError(DliError):
    code = "DLI-201"
    hint = "fix the spec file; `dli spec schema` prints the JSON Schema your editor can check as you type"


class SpecSyntaxError(DliError):
    code = "DLI-202"
    hint = "fix the YAML syntax at the line shown (indentation, quotes, a missing ':')"


class ParameterError(DliError):
    code = "DLI-203"


class SpecConflictError(DliError):
    code = "DLI-204"
    hint = "rename one of the datasets or delete the duplicate file; neither is scheduled until then"


class TemplateError(DliError):
    code = "DLI-205"


# 3xx transpile
class TranspileError(DliError):
    code = "DLI-301"
    hint = "rewrite the construct in SQL DuckDB understands, or run the dataset on its own engine"


# 4xx execution
class ExecutionError(DliError):
    code = "DLI-401"


class ExecutionPermissionError(ExecutionError):
    code = "DLI-404"
    hint = "ask for access to the objects named above, or check the connection's user"


class SqlExecutionError(ExecutionError):
    code = "DLI-405"
    hint = "fix the SQL at the position shown; `dli dataset run NAME --local --dry-run` renders and parses it"


class ExecutionTimeoutError(ExecutionError):
    code = "DLI-406"
    hint = "raise schedule.timeout_seconds or make the query cheaper"


# 5xx server
class ServerUnreachableError(DliError):
    code = "DLI-501"


class ServerAuthError(DliError):
    code = "DLI-502"


class StoreUnavailableError(DliError):
    code = "DLI-503"
    hint = "check the store's server and credentials; DAGs are served from the last good copy meanwhile"


class ServerExecutionError(DliError):
    code = "DLI-504"


# 8xx workflow
class WorkflowNotFoundError(DliError):
    code = "DLI-800"
    hint = "register it first (`dli workflow register SPEC.yaml`) or check the name with `dli workflow list`"


class WorkflowRegistrationError(DliError):
    code = "DLI-801"


class WorkflowExecutionError(DliError):
    code = "DLI-802"


class WorkflowPermissionError(DliError):
    code = "DLI-803"


def all_error_classes() -> list[type[DliError]]:
    """Every concrete error class, in code order (used for the README table and tests)."""
    seen: list[type[DliError]] = []
    stack: list[type[DliError]] = [DliError]
    while stack:
        cls = stack.pop()
        for sub in cls.__subclasses__():
            seen.append(sub)
            stack.append(sub)
    return sorted(seen, key=lambda c: c.code)
