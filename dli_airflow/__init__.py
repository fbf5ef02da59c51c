"""dli-airflow: Dataset Spec YAML + SQL to scheduled Airflow DAGs, a client and the ``dli`` command.

The public names are exported lazily, the way ``airflow.sdk`` does it: ``from dli_airflow import
WorkflowClient`` imports the client (and httpx) only, never Airflow; ``DatasetQueryOperator`` and
``build_dags`` import Airflow when they are first asked for.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

#: Public name -> the module that defines it (imported on first access).
_LAZY: dict[str, str] = {
    # the client and its results
    "WorkflowClient": "dli_airflow.client",
    "FakeWorkflowClient": "dli_airflow.testing",
    "RunStatus": "dli_airflow.workflow",
    "TaskLog": "dli_airflow.workflow",
    "TaskRun": "dli_airflow.workflow",
    "WorkflowHistoryResult": "dli_airflow.workflow",
    "WorkflowInfo": "dli_airflow.workflow",
    "WorkflowListResult": "dli_airflow.workflow",
    "WorkflowRegisterResult": "dli_airflow.workflow",
    "WorkflowRun": "dli_airflow.workflow",
    "WorkflowRunResult": "dli_airflow.workflow",
    "WorkflowStatus": "dli_airflow.workflow",
    "WorkflowStatusResult": "dli_airflow.workflow",
    # the spec
    "DatasetSpec": "dli_airflow.spec",
    "DatasetStatus": "dli_airflow.spec",
    "NotificationSpec": "dli_airflow.spec",
    "ParameterSpec": "dli_airflow.spec",
    "RetrySpec": "dli_airflow.spec",
    "ScheduleSpec": "dli_airflow.spec",
    "SourceType": "dli_airflow.spec",
    "load_spec": "dli_airflow.spec",
    # the store
    "SpecEntry": "dli_airflow.catalog",
    "StoreSnapshot": "dli_airflow.catalog",
    "open_store": "dli_airflow.catalog",
    "scan": "dli_airflow.catalog",
    # Airflow (importing these imports Airflow)
    "DatasetNotifier": "dli_airflow.notifiers",
    "DatasetQueryOperator": "dli_airflow.operators",
    "build_dags": "dli_airflow.factory",
    # errors
    **{
        name: "dli_airflow.errors"
        for name in (
            "ConfigError", "DatasetNotFoundError", "DevError", "DliError", "ErrorCode", "ExecutionError",
            "ExecutionPermissionError", "ExecutionTimeoutError", "ParameterError", "Problem",
            "ReleaseConflictError", "ServerAuthError",
            "ServerExecutionError", "ServerUnreachableError", "SpecConflictError", "SpecFileNotFoundError",
            "SpecSyntaxError", "SpecValidationError", "SqlExecutionError", "StoreNotFoundError",
            "StoreUnavailableError", "TemplateError", "TranspileError", "WorkflowExecutionError",
            "WorkflowNotFoundError", "WorkflowPermissionError", "WorkflowRegistrationError",
        )
    },
}

__all__ = [
    "__version__",
    "ConfigError",
    "DatasetNotFoundError",
    "DatasetNotifier",
    "DatasetQueryOperator",
    "DatasetSpec",
    "DatasetStatus",
    "DevError",
    "DliError",
    "ErrorCode",
    "ExecutionError",
    "ExecutionPermissionError",
    "ExecutionTimeoutError",
    "FakeWorkflowClient",
    "NotificationSpec",
    "ParameterError",
    "ParameterSpec",
    "Problem",
    "ReleaseConflictError",
    "RetrySpec",
    "RunStatus",
    "ScheduleSpec",
    "ServerAuthError",
    "ServerExecutionError",
    "ServerUnreachableError",
    "SourceType",
    "SpecConflictError",
    "SpecEntry",
    "SpecFileNotFoundError",
    "SpecSyntaxError",
    "SpecValidationError",
    "SqlExecutionError",
    "StoreNotFoundError",
    "StoreSnapshot",
    "StoreUnavailableError",
    "TaskLog",
    "TaskRun",
    "TemplateError",
    "TranspileError",
    "WorkflowClient",
    "WorkflowExecutionError",
    "WorkflowHistoryResult",
    "WorkflowInfo",
    "WorkflowListResult",
    "WorkflowNotFoundError",
    "WorkflowPermissionError",
    "WorkflowRegisterResult",
    "WorkflowRegistrationError",
    "WorkflowRun",
    "WorkflowRunResult",
    "WorkflowStatus",
    "WorkflowStatusResult",
    "build_dags",
    "load_spec",
    "open_store",
    "scan",
]


def __getattr__(name: str) -> Any:
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'dli_airflow' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value  # the next access is a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


if TYPE_CHECKING:  # for type checkers and IDEs: the same names, eagerly
    from dli_airflow.catalog import SpecEntry, StoreSnapshot, open_store, scan
    from dli_airflow.client import WorkflowClient
    from dli_airflow.errors import (
        ConfigError,
        DatasetNotFoundError,
        DevError,
        DliError,
        ExecutionError,
        ExecutionPermissionError,
        ExecutionTimeoutError,
        ParameterError,
        Problem,
        ReleaseConflictError,
        ServerAuthError,
        ServerExecutionError,
        ServerUnreachableError,
        SpecConflictError,
        SpecFileNotFoundError,
        SpecSyntaxError,
        SpecValidationError,
        SqlExecutionError,
        StoreNotFoundError,
        StoreUnavailableError,
        TemplateError,
        TranspileError,
        WorkflowExecutionError,
        WorkflowNotFoundError,
        WorkflowPermissionError,
        WorkflowRegistrationError,
    )
    from dli_airflow.factory import build_dags
    from dli_airflow.notifiers import DatasetNotifier
    from dli_airflow.operators import DatasetQueryOperator
    from dli_airflow.spec import (
        DatasetSpec,
        DatasetStatus,
        NotificationSpec,
        ParameterSpec,
        RetrySpec,
        ScheduleSpec,
        SourceType,
        load_spec,
    )
    from dli_airflow.testing import FakeWorkflowClient
    from dli_airflow.workflow import (
        RunStatus,
        TaskLog,
        TaskRun,
        WorkflowHistoryResult,
        WorkflowInfo,
        WorkflowListResult,
        WorkflowRegisterResult,
        WorkflowRun,
        WorkflowRunResult,
        WorkflowStatus,
        WorkflowStatusResult,
    )
