"""Provider metadata for Airflow's ``apache_airflow_provider`` entry point (a plain dict)."""

from __future__ import annotations

from typing import Any

from dli_airflow import __version__
from dli_airflow.config import OPTIONS


def get_provider_info() -> dict[str, Any]:
    return {
        "package-name": "dli-airflow",
        "name": "DLI Datasets",
        "description": "Dataset Spec YAML + SQL to scheduled Airflow DAGs on Trino, BigQuery or DuckDB.",
        "versions": [__version__],
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
