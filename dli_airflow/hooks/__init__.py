"""Airflow hooks of dli-airflow: one module per hook, as Airflow's own providers keep them.

- :class:`~dli_airflow.hooks.trino.DliTrinoHook`: the Trino provider's hook with the spec's catalog and schema;
- :class:`~dli_airflow.hooks.bigquery.DliBigQueryHook`: the Google provider's BigQuery hook with an
  ``api_endpoint`` from the connection (needs the ``bigquery`` extra);
- :class:`~dli_airflow.hooks.airflow_api.AirflowApiHook`: the ``dli_airflow_api`` connection to Airflow's
  REST API, through which ``dli_sync`` pauses and unpauses DAGs.

A package, not one module: each hook imports its provider at module level, and the BigQuery provider is
an optional extra. This ``__init__`` imports no Airflow (``get_provider_info`` reads the form fields below);
the hooks load on first attribute access.
"""

from __future__ import annotations

import importlib
from typing import Any

#: The Airflow connection ``dli_sync`` reaches the REST API through.
AIRFLOW_API_CONN_ID = "dli_airflow_api"
#: The connection type of :class:`~dli_airflow.hooks.airflow_api.AirflowApiHook`.
AIRFLOW_API_CONN_TYPE = "dli_airflow_api"
#: How the UI names that connection type.
AIRFLOW_API_HOOK_NAME = "dli: Airflow REST API"
#: Its connection form in the UI (Airflow's ``get_ui_field_behaviour`` shape; also declared to the
#: providers manager by ``get_provider_info`` so the UI needs no hook import).
AIRFLOW_API_FIELD_BEHAVIOUR: dict[str, Any] = {
    "hidden_fields": ["extra"],
    "relabeling": {
        "host": "Airflow API URL",
        "schema": "Scheme (when the URL has none)",
        "login": "Username",
        "password": "Password, or a token when Username is empty",
    },
    "placeholders": {
        "host": "https://airflow.example.com",
        "schema": "http or https",
        "port": "the port, when the URL has none",
        "login": "leave empty to authenticate with a token",
        "password": "the user's password, or a JWT",
    },
}

_LAZY = {
    "AirflowApiHook": "dli_airflow.hooks.airflow_api",
    "DliBigQueryHook": "dli_airflow.hooks.bigquery",
    "DliTrinoHook": "dli_airflow.hooks.trino",
}

__all__ = [
    "AIRFLOW_API_CONN_ID",
    "AIRFLOW_API_CONN_TYPE",
    "AIRFLOW_API_FIELD_BEHAVIOUR",
    "AIRFLOW_API_HOOK_NAME",
    "AirflowApiHook",
    "DliBigQueryHook",
    "DliTrinoHook",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
