"""Provider metadata for Airflow's ``apache_airflow_provider`` entry point (a plain dict).

Airflow calls this while it discovers providers, before its configuration is loaded: importing Airflow
here (even indirectly) fails with a circular ``airflow.configuration`` import. Only light dli modules are
imported: the ``[dli]`` option table and the hooks package's ``__init__`` (no hook class loads).
The keys follow Airflow's ``provider_info.schema.json``.
"""

from __future__ import annotations

from typing import Any

from dli_airflow import __version__
from dli_airflow.config import OPTIONS
from dli_airflow.hooks import AIRFLOW_API_CONN_TYPE, AIRFLOW_API_FIELD_BEHAVIOUR, AIRFLOW_API_HOOK_NAME

#: The integration the hooks, notifier and connection type belong to.
INTEGRATION = "DLI Datasets"


def get_provider_info() -> dict[str, Any]:
    """What Airflow's providers manager reads: the ``[dli]`` config, hooks, connection type, notifier.

    Only the ``dli_airflow_api`` connection type is declared: the Trino and BigQuery hooks subclass the
    providers' hooks and use their connection types (``trino``, ``google_cloud_platform``), which those
    providers register; declaring them again would clash.
    """
    behaviour = AIRFLOW_API_FIELD_BEHAVIOUR
    return {
        "package-name": "dli-airflow",
        "name": INTEGRATION,
        "description": "Dataset Spec YAML + SQL to scheduled Airflow DAGs on Trino, BigQuery or DuckDB.",
        "versions": [__version__],
        "integrations": [{"integration-name": INTEGRATION, "tags": ["software"]}],
        "hooks": [
            {
                "integration-name": INTEGRATION,
                "python-modules": [
                    "dli_airflow.hooks.airflow_api",
                    "dli_airflow.hooks.trino",
                    "dli_airflow.hooks.bigquery",
                ],
            }
        ],
        "connection-types": [
            {
                "connection-type": AIRFLOW_API_CONN_TYPE,
                "hook-class-name": "dli_airflow.hooks.airflow_api.AirflowApiHook",
                "hook-name": AIRFLOW_API_HOOK_NAME,
                # declared here so the UI builds the form without importing the hook (Airflow >= 3.2;
                # older versions call AirflowApiHook.get_ui_field_behaviour, which returns the same)
                "ui-field-behaviour": {
                    "hidden-fields": list(behaviour["hidden_fields"]),
                    "relabeling": dict(behaviour["relabeling"]),
                    "placeholders": dict(behaviour["placeholders"]),
                },
            }
        ],
        "notifications": ["dli_airflow.notifiers.DatasetNotifier"],
        "config": {
            "dli": {
                "description": "Settings of the dli-airflow DAG factory, operators and CLI.",
                "options": {
                    option.name: {
                        "description": option.description,
                        "version_added": "0.1.0",
                        "type": option.type,
                        "example": option.example,
                        "default": option.default,
                    }
                    for option in OPTIONS.values()
                },
            }
        },
    }
