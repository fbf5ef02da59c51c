"""The ``dli`` command line (see :mod:`dli_airflow.cli._app`); one module per noun: ``spec``, ``dataset``,
``workflow``, ``dev``."""

from __future__ import annotations

from dli_airflow.cli._app import app, main, print_error

__all__ = ["app", "main", "print_error"]
