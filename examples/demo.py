"""The main job on the embedded default: a real local Airflow 3 serving examples/store, one dataset run on DuckDB.

1. `dli dev up` (the same code): api-server, scheduler and dag-processor on 127.0.0.1, the DAG factory
   pointed at examples/store, until every active dataset's DAG is listed;
2. triggers `analytics.daily_clicks` with parameters through the WorkflowClient (Airflow's REST API v2);
3. waits for the run and prints its state and result rows (the task's XCom summary).

Airflow is left running: open the printed URL to see the DAGs; stop it with `.venv/bin/dli dev down`.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from dli_airflow import config, dev
from dli_airflow.client import WorkflowClient

ROOT = Path(__file__).resolve().parents[1]
DATASET = "analytics.daily_clicks"


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--home", default=str(config.dev_home()))
    parser.add_argument("--store", default=None,
                        help="the store to serve (default: a copy of examples/store in the home, so nothing the "
                             "walkthrough registers is written into the checkout)")
    parser.add_argument("--port", type=int, default=None)
    parser.add_argument("--execution-date", default="2024-01-15")
    parser.add_argument("--min-clicks", type=int, default=20)
    args = parser.parse_args()

    if args.store is None:
        args.store = str(dev.scratch_store(ROOT / "examples" / "store", Path(args.home)))
    started = time.monotonic()
    print(f"Starting Airflow 3 (home {args.home}) on the store {args.store} ...", flush=True)
    status = dev.up(
        store=args.store, home=Path(args.home), port=args.port, timeout=180,
        expected_dag_ids=dev.expected_dag_ids(args.store),
    )
    print(f"Airflow is up, every dataset DAG listed, after {time.monotonic() - started:.1f}s: {status.url}")

    params = {"execution_date": args.execution_date, "min_clicks": args.min_clicks}
    with WorkflowClient(url=status.url, username=status.username, password=status.password) as client:
        run = client.run(DATASET, params)
        print(f"{run.message} with {params}", flush=True)
        final = list(client.watch(run.run_id, poll=1.0, timeout=300))[-1]
    print(f"Run {final.run_id}: {final.status.value} in {final.duration_seconds or 0:.1f}s")
    if final.result is None:
        print(f"  error: {final.error_message}")
        return 1
    result = final.result
    print(f"Result ({result['statements']} statements, rows affected {result['rows_affected']}):")
    columns, rows = result["columns"], result["rows"]
    widths = [max(len(str(c)), *(len(str(r[i])) for r in rows)) for i, c in enumerate(columns)]
    print("  " + "  ".join(str(c).ljust(w) for c, w in zip(columns, widths)))
    for row in rows:
        print("  " + "  ".join(str(v).ljust(w) for v, w in zip(row, widths)))
    print()
    print(f"Airflow UI: {status.url}  (login: {status.username} / {status.password})")
    print(f"Stop it:    {Path(sys.executable).parent / 'dli'} dev down --home {args.home}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
