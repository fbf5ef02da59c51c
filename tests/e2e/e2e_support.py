"""Helpers shared by the end-to-end tests (the real Airflow answers in its own time)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def wait_until(predicate: Callable[[], Any], timeout: float = 120.0, *, interval: float = 1.0,
               what: str = "condition") -> Any:
    """Poll ``predicate`` until it returns something truthy (returned), or fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}; last: {last!r}")


def query_duckdb(path: Any, sql: str, timeout: float = 60.0) -> list[tuple[Any, ...]]:
    """Rows of ``sql`` on the stack's DuckDB file, read-only. DuckDB lets one process write a file and no other
    process open it meanwhile, so while any task of the stack is running (a scheduled slot that a fresh
    stack runs at once, a retry) opening it fails with a lock error: wait for the writer, as a reader would."""
    import duckdb

    deadline = time.monotonic() + timeout
    while True:
        try:
            with duckdb.connect(str(path), read_only=True) as con:
                return con.execute(sql).fetchall()
        except duckdb.IOException as exc:
            if "lock" not in str(exc).lower() or time.monotonic() > deadline:
                raise
            time.sleep(0.5)
