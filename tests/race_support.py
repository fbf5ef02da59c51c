"""Concurrent-writer helper shared by the store, registry and S3 tests (imported by name: tests/ is on sys.path)."""

from __future__ import annotations

import threading
from collections.abc import Callable


def race(calls: list[Callable[[], object]]) -> list[str]:
    """Run ``calls`` at the same instant in threads; 'ok' or the DLI code of each (concurrent-writer tests)."""
    from dli_airflow.errors import DliError

    barrier = threading.Barrier(len(calls))
    results: list[str] = [""] * len(calls)

    def run(i: int) -> None:
        barrier.wait()
        try:
            calls[i]()
            results[i] = "ok"
        except DliError as exc:
            results[i] = exc.code

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results
