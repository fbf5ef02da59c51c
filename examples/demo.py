"""The main job on the embedded default: a real local Airflow 3 serving examples/store, one dataset run on DuckDB.

1. `dli dev up` (the same code): api-server, scheduler and dag-processor on 127.0.0.1, the DAG factory
   pointed at examples/store, until every active dataset's DAG is listed;
2. triggers `analytics.daily_clicks` with parameters through Airflow's REST API v2;
3. waits for the run and prints its state and result rows (the task's XCom summary).

Airflow is left running: open the printed URL to see the DAGs; stop it with `.venv/bin/dli dev down`.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import httpx

from dli_airflow import dev

ROOT = Path(__file__).resolve().parents[1]
DATASET = "analytics.daily_clicks"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", default=os.environ.get("DLI_DEV_HOME", str(Path.home() / ".dli" / "airflow")))
    parser.add_argument("--store", default=str(ROOT / "examples" / "store"))
    parser.add_argument("--port", type=int, default=None)
    parser.add_argument("--execution-date", default="2024-01-15")
    parser.add_argument("--min-clicks", type=int, default=20)
    args = parser.parse_args()

    started = time.monotonic()
    print(f"Starting Airflow 3 (home {args.home}) on the store {args.store} ...", flush=True)
    status = dev.up(
        store=args.store, home=Path(args.home), port=args.port, timeout=180,
        expected_dag_ids=dev.expected_dag_ids(args.store),
    )
    print(f"Airflow is up with every dataset DAG listed after {time.monotonic() - started:.1f}s: {status.url}")

    token = dev.get_token(status.url, status.username, status.password)
    conf = {"execution_date": args.execution_date, "min_clicks": args.min_clicks}
    run_id = f"{DATASET}__demo__{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}"
    with httpx.Client(base_url=f"{status.url}/api/v2", headers={"Authorization": f"Bearer {token}"}, timeout=30) as api:
        response = api.post(
            f"/dags/{DATASET}/dagRuns",
            json={"logical_date": None, "dag_run_id": run_id, "conf": conf, "note": "triggered by examples/demo.py"},
        )
        response.raise_for_status()
        print(f"Run started: {run_id} with {conf}", flush=True)
        deadline = time.monotonic() + 300
        state = "queued"
        while time.monotonic() < deadline:
            state = api.get(f"/dags/{DATASET}/dagRuns/{run_id}").json()["state"]
            if state in {"success", "failed"}:
                break
            time.sleep(1)
        print(f"Run {run_id}: {state.upper()}")
        if state != "success":
            logs = api.get(f"/dags/{DATASET}/dagRuns/{run_id}/taskInstances/run/logs/1").json()
            for entry in logs.get("content", [])[-15:]:
                print("  ", entry.get("event", entry) if isinstance(entry, dict) else entry)
            return 1
        summary = api.get(f"/dags/{DATASET}/dagRuns/{run_id}/taskInstances/run/xcomEntries/return_value").json()
    result = summary["value"]
    print(f"Result of {DATASET} ({result['statements']} statements, rows affected {result['rows_affected']}):")
    columns = result["columns"]
    widths = [max(len(str(c)), *(len(str(r[i])) for r in result["rows"])) for i, c in enumerate(columns)]
    print("  " + "  ".join(str(c).ljust(w) for c, w in zip(columns, widths)))
    for row in result["rows"]:
        print("  " + "  ".join(str(v).ljust(w) for v, w in zip(row, widths)))
    print()
    print(f"Airflow UI: {status.url}  (login: {status.username} / {status.password})")
    print(f"Stop it:    {Path(sys.executable).parent / 'dli'} dev down --home {args.home}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
