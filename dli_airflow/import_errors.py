"""Opt-in (``[dli] import_errors = True``): each broken spec also shows in Airflow's own *Dag Import Errors*
view, keyed to the spec file, next to the ``dli_spec_errors`` DAG (which stays the supported path).

Airflow records import errors only for the files it parses, so this reaches into its private internals,
checked on Airflow :data:`CHECKED_ON` (``tests/unit/test_import_errors.py`` pins the version): for each
problem the DAG file registers a DAG whose module ``__file__`` is the spec's path (through the Task SDK's
auto-registration set) and whose serialization fails with the problem's text, which the dag-processor records
as an import error of that path. The DAG itself never reaches Airflow's database. What users should know
(the README says it too): the entries go at each bundle refresh (Airflow drops import errors of files that
are not in the bundle) and come back at the next parse, so they flicker; a fixed spec's entry goes at the
next bundle refresh, not at once. The error is never keyed to the DAG file itself: that would mark every
DAG of the file stale.
"""

from __future__ import annotations

import hashlib
import types
from collections.abc import Iterable
from datetime import datetime, timezone
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dli_airflow.errors import DliError

#: The Airflow version this was checked on.
CHECKED_ON = "3.3.2"
#: The prefix of the DAGs that carry the problems (reserved for dli: no dataset can be named so).
DAG_PREFIX = "dli_spec_problem_"


class _Report:
    """A DAG's ``doc_md`` that cannot be serialized: turning it into text raises the problem, so the
    dag-processor's record of the failure is the problem's own text."""

    def __init__(self, text: str) -> None:
        self.text = text

    def endswith(self, suffix: str) -> bool:  # the DAG asks whether doc_md names a .md file to read
        return False

    def __str__(self) -> str:
        raise ValueError(self.text)


def problem_file(problem: DliError, store: str) -> str | None:
    """Where a problem is, as the import-errors view should name it: the spec's absolute path in a local
    store, its URL in an S3 store; ``None`` for a problem of no one file (an outage)."""
    path = problem.path
    if not path:
        return None
    if path.startswith(("/", "s3://")):
        return path
    return f"{store.rstrip('/')}/{path}"


def register(problems: Iterable[DliError], store: str) -> list[str]:
    """Register one failing DAG per problem file (see the module's docstring); returns their DAG ids."""
    from airflow.sdk import DAG
    from airflow.sdk.definitions._internal.contextmanager import DagContext

    by_file: dict[str, list[str]] = {}
    for problem in problems:
        where = problem_file(problem, store)
        if where is not None:
            by_file.setdefault(where, []).append(f"[{problem.code}] {problem.render()}")
    made = []
    for where, texts in sorted(by_file.items()):
        dag_id = DAG_PREFIX + hashlib.sha256(where.encode("utf-8")).hexdigest()[:12]
        module = types.ModuleType(dag_id)
        module.__file__ = where
        report = "dli spec problem(s) in this file (dli spec validate shows the same):\n" + "\n".join(texts)
        dag = DAG(dag_id=dag_id, schedule=None, start_date=datetime(2000, 1, 1, tzinfo=timezone.utc),
                  doc_md=_Report(report), auto_register=False, tags=["dli:errors"])
        DagContext.autoregistered_dags.add((dag, module))
        made.append(dag_id)
    return made


__all__ = ["CHECKED_ON", "DAG_PREFIX", "problem_file", "register"]
