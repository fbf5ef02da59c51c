"""The two enums every part of dli shares — where a spec comes from and what state its dataset is in — in a
module of their own, so the client and the CLI get them without the spec models (pydantic, YAML).
``dli_airflow.spec`` re-exports both."""

from __future__ import annotations

from enum import Enum

#: Keys of a run's conf that dli itself writes (the backfill token); never a dataset parameter.
RESERVED_CONF_PREFIX = "__dli"
#: The DAG that lists the store's problems (built by the factory, run by ``dli_sync`` when they change).
ERRORS_DAG_ID = "dli_spec_errors"


class SourceType(str, Enum):
    CODE = "code"
    MANUAL = "manual"


class DatasetStatus(str, Enum):
    ACTIVE = "active"
    PAUSED = "paused"
    OVERRIDDEN = "overridden"


__all__ = ["ERRORS_DAG_ID", "RESERVED_CONF_PREFIX", "DatasetStatus", "SourceType"]
