"""Airflow DAG file: one DAG per active dli Dataset Spec (see dli_airflow.factory).

The DAGs go in under names the package controls (dli_dag_0, dli_dag_1, ...), never under a dataset's name.
"""
from dli_airflow.factory import dag_file_globals

globals().update(dag_file_globals())
