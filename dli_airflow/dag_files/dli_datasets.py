"""Airflow DAG file: one DAG per active dli Dataset Spec (see dli_airflow.factory)."""
from dli_airflow.factory import build_dags

globals().update(build_dags())
