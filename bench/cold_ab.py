"""A cold parse of the packaged DAG file, before and after a change, interleaved in one run.

    git worktree add /tmp/base 283bd92      # or any checkout of the baseline
    python bench/cold_ab.py --baseline /tmp/base --n 1000 --runs 4

Each run imports ``dli_airflow/dag_files/dli_datasets.py`` of each tree in a fresh process (the way the
dag-processor does), with an empty snapshot cache, over one generated store of N specs (``bench/parse.py``'s
generator), alternating the trees so the machine's noise falls on both. Prints each run and the medians.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import parse as bench  # noqa: E402 - the parse benchmark's generator and measurement


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", type=Path, required=True, help="a checkout of the baseline")
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=4)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="dli-bench-ab-"))
    bench.generate_store(tmp / "store", args.n)
    (tmp / "dags").mkdir()
    trees = {"before": args.baseline.resolve(), "after": HERE.parent}
    samples: dict[str, list[bench.Sample]] = {name: [] for name in trees}
    for run in range(args.runs):
        for name, root in trees.items():
            env = bench.base_env(tmp)
            env.update(PYTHONPATH=str(root), AIRFLOW__DLI__SPEC_STORE=str(tmp / "store"),
                       AIRFLOW__DLI__CACHE_DIR=str(tmp / f"cache-{name}-{run}"))
            sample = bench.measure(root / "dli_airflow" / "dag_files" / "dli_datasets.py", env)
            samples[name].append(sample)
            print(f"{name:6} run {run + 1}: {sample.seconds:6.2f} s, CPU {sample.cpu_s:6.2f} s, "
                  f"peak RSS {sample.rss_mb:5.0f} MB, {sample.dags} DAGs", flush=True)
    medians = {name: statistics.median(s.seconds for s in runs) for name, runs in samples.items()}
    for name, runs in samples.items():
        print(f"{name:6} median {medians[name]:.2f} s, best {min(s.seconds for s in runs):.2f} s ({trees[name]})")
    print(f"after / before (medians): {medians['after'] / medians['before']:.2f}  (target <= 1.10)")


if __name__ == "__main__":
    main()
