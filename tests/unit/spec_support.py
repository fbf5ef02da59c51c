"""Small spec builders shared by unit tests (imported by name: pytest puts tests/unit on sys.path)."""

from __future__ import annotations

from dli_airflow.spec import DatasetSpec, load_spec


def spec_with(parameters: str, schedule: str = "") -> DatasetSpec:
    """A spec ``sales.daily`` (inline ``SELECT 1``) declaring ``parameters`` (YAML list items, indented)."""
    return load_spec(
        f"name: sales.daily\nowner: me@example.com\nquery: SELECT 1\nparameters:\n{parameters}{schedule}", "s.yaml"
    )
