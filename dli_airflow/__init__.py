"""dli-airflow: Dataset Spec YAML + SQL to scheduled Airflow DAGs."""

from __future__ import annotations

__version__ = "0.1.0"
