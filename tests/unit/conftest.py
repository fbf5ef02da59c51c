"""Fixtures of the unit tests: no network, no Airflow database."""

from __future__ import annotations

import pytest
from spec_support import spec_with

from dli_airflow.spec import DatasetSpec


@pytest.fixture
def spec() -> DatasetSpec:
    """A spec with one parameter of each type: execution_date (required), limit, customer, ratio, flag."""
    return spec_with(
        "  - {name: execution_date, type: date, required: true}\n"
        "  - {name: limit, type: integer, default: 100}\n"
        "  - {name: customer, type: string}\n"
        "  - {name: ratio, type: number}\n"
        "  - {name: flag, type: boolean}\n"
    )
