"""The control plane's request and answer bodies (its OpenAPI page documents them)."""

from __future__ import annotations

from typing import Annotated, Any, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator

from dli_airflow._yaml import MAX_SPEC_BYTES
from dli_airflow.store import MAX_SQL_BYTES
from dli_airflow.workflow import WorkflowInfo, WorkflowPage


class WorkflowCopies(BaseModel):
    """A dataset's workflow: the active copy first, then the others (an overridden manual copy)."""

    workflow: WorkflowInfo
    copies: list[WorkflowInfo]


class ActionResult(BaseModel):
    dataset_name: str
    action: str
    message: str


class Overrides(BaseModel):
    """Schedule settings over the spec's (the keys of :data:`dli_airflow.registry.OVERRIDE_KEYS`)."""

    model_config = ConfigDict(extra="forbid")

    cron: Optional[str] = None
    timezone: Optional[str] = None
    enabled: Optional[bool] = None
    retry_max_attempts: Optional[int] = None
    retry_delay_seconds: Optional[int] = None


class RegisterBody(BaseModel):
    """``POST /workflows``: the spec (YAML text, or the same as a JSON object), its SQL when the spec names a
    ``query_file``, ``force`` (seed 003 §2.7) and schedule overrides (``cron``, ``timezone``, ``enabled``,
    ``retry_max_attempts``, ``retry_delay_seconds``)."""

    model_config = ConfigDict(extra="forbid")

    spec: Union[str, dict[str, Any]] = Field(json_schema_extra={
        "anyOf": [{"type": "string", "maxLength": MAX_SPEC_BYTES}, {"type": "object"}],
        "description": "the spec: YAML text, or the same as a JSON object"})
    sql: Optional[Annotated[str, Field(max_length=MAX_SQL_BYTES)]] = None
    force: bool = False
    overrides: Overrides = Field(default_factory=lambda: Overrides())

    @field_validator("spec", mode="plain")
    @classmethod
    def _text_or_object(cls, value: Any) -> Union[str, dict[str, Any]]:
        # one error at ``spec`` (a Union would report one per member, at locations named by pydantic's types)
        if isinstance(value, str):
            if len(value) > MAX_SPEC_BYTES:
                raise ValueError(f"the spec is longer than {MAX_SPEC_BYTES} characters")
            return value
        if isinstance(value, dict) and all(isinstance(k, str) for k in value):
            return value
        raise ValueError("the spec must be YAML text or a JSON object")


class BackfillBody(BaseModel):
    """``POST /workflows/{name}/backfills``: the dates (``YYYY-MM-DD``, inclusive, in the spec's time zone)
    and the parameters of every run (``execution_date`` is each scheduled date's)."""

    model_config = ConfigDict(extra="forbid")

    start: Annotated[str, Field(max_length=40)]
    end: Annotated[str, Field(max_length=40)]
    parameters: dict[str, Any] = Field(default_factory=dict)
    source: Optional[str] = None
    dry_run: bool = False


class RunBody(BaseModel):
    """``POST /workflows/{name}/runs``: the run's parameters (JSON values or text, coerced to their types)."""

    model_config = ConfigDict(extra="forbid")

    parameters: dict[str, Any] = Field(default_factory=dict)
    source: Optional[str] = None
    note: Optional[str] = Field(default=None, max_length=1000)
    dry_run: bool = False


__all__ = ["ActionResult", "BackfillBody", "Overrides", "RegisterBody", "RunBody", "WorkflowCopies", "WorkflowPage"]
