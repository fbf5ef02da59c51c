"""Request count and time of WorkflowClient.list_workflows and history against 200 DAGs and 1,000 runs.

Starts a real local Airflow (``dli dev up``) on a generated store of N paused datasets, triggers R runs in all
(they stay queued because the DAGs are paused, so nothing executes), then measures each call several times and
prints medians, with the number of HTTP requests each call made. Stops Airflow at the end.

    python bench/client.py                 # N=200 datasets, R=1000 runs
    python bench/client.py --n 20 --runs 100 --repeat 3
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dli_airflow import dev  # noqa: E402
from dli_airflow.client import WorkflowClient  # noqa: E402


def make_store(root: Path, n: int) -> None:
    code = root / "code" / "bench"
    code.mkdir(parents=True)
    (root / "manual").mkdir()
    for i in range(n):
        (code / f"ds_{i:04d}.yaml").write_text(
            f"name: bench.ds_{i:04d}\nowner: bench@example.com\nteam: '@bench'\n"
            "query: SELECT {{ execution_date }} AS d\n"
            "parameters: [{name: execution_date, type: date, required: true}]\n"
            "schedule: {enabled: false, cron: '0 6 * * *'}\n"
        )


def measure(label: str, fn, client: WorkflowClient, repeat: int) -> tuple[str, float, int, int]:
    times, counts, size = [], [], 0
    for _ in range(repeat):
        before = client.requests_made
        started = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - started)
        counts.append(client.requests_made - before)
        size = result.total_count
    return label, statistics.median(times), int(statistics.median(counts)), size


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200, help="datasets (DAGs)")
    parser.add_argument("--runs", type=int, default=1000, help="runs in all")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="dli-bench-client-") as tmp:
        store, home = Path(tmp) / "store", Path(tmp) / "home"
        make_store(store, args.n)
        names = [f"bench.ds_{i:04d}" for i in range(args.n)]
        started = time.perf_counter()
        status = dev.up(store=str(store), home=home, port=dev.free_port(), timeout=600, expected_dag_ids=names)
        print(f"dli dev up with {args.n} DAGs listed: {time.perf_counter() - started:.1f}s", flush=True)
        try:
            with WorkflowClient(url=status.url, username=status.username, password=status.password,
                                timeout=120) as client:
                started = time.perf_counter()
                for k in range(args.runs):
                    name = names[k % args.n]
                    client._request("POST", f"/dags/{name}/dagRuns", json={
                        "logical_date": None, "dag_run_id": f"{name}__adhoc__bench{k:05d}",
                        "conf": {"execution_date": "2024-01-01"},
                    })
                print(f"triggered {args.runs} queued runs in {time.perf_counter() - started:.1f}s", flush=True)
                rows = [
                    measure("list_workflows()", client.list_workflows, client, args.repeat),
                    measure("list_workflows(running_only=True)", lambda: client.list_workflows(running_only=True),
                            client, args.repeat),
                    measure("history(limit=20)", lambda: client.history(limit=20), client, args.repeat),
                    measure("history(limit=1000)", lambda: client.history(limit=1000), client, args.repeat),
                    measure("history(dataset_name=…, limit=100)",
                            lambda: client.history(dataset_name=names[0], limit=100), client, args.repeat),
                ]
        finally:
            dev.down(home)
    print(f"\n{args.n} DAGs, {args.runs} runs; medians of {args.repeat}")
    print(f"{'call':40} {'seconds':>8} {'requests':>9} {'results':>8}")
    for label, seconds, count, size in rows:
        print(f"{label:40} {seconds:8.3f} {count:9d} {size:8d}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
