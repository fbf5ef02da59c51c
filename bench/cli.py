"""CLI cold-start benchmark (issue 8 §3): ``dli`` commands against bare Python, in the same run.

Each command runs in a fresh process (``python -m dli_airflow.cli ...``, the clone's code first on
``PYTHONPATH``, a private empty ``AIRFLOW_HOME``) ``--runs`` times, interleaved with ``python -c pass``;
the table shows median wall times and the cost over bare Python. A separate, untimed run of each
command records which heavy packages it imported: commands that talk to Airflow's REST API must not
import Airflow (target: at most 0.3 s over bare Python). Nothing is asserted; the figures are printed.

Usage::

    python bench/cli.py                # 7 runs
    python bench/cli.py --runs 5 --json
    python bench/cli.py --importtime   # also the slowest imports of each dli command (python -X importtime)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
#: Target of issue 8: a command that talks to Airflow's API starts within this much of bare Python.
TARGET_OVER_PYTHON_S = 0.3
#: Packages whose presence after a command says what it paid for.
WATCHED = ("airflow", "pydantic", "yaml", "jinja2", "sqlglot", "duckdb", "httpx", "rich", "boto3")

COMMANDS: list[tuple[str, list[str], bool]] = [
    # label, arguments after `python`, talks to Airflow's API (so must not import Airflow)
    ("python -c pass", ["-c", "pass"], False),
    ("dli --help", ["-m", "dli_airflow.cli", "--help"], True),
    ("dli workflow list --help", ["-m", "dli_airflow.cli", "workflow", "list", "--help"], True),
    ("dli spec validate examples/store", ["-m", "dli_airflow.cli", "spec", "validate", "examples/store"], False),
]

#: Runs the CLI as ``python -m`` would and, at exit, writes which watched packages were imported.
PROBE = r"""
import atexit, json, runpy, sys
out, argv = sys.argv[1], sys.argv[2:]
watched = %r
def report():
    with open(out, "w") as fh:
        json.dump({name: name in sys.modules for name in watched}, fh)
atexit.register(report)
sys.argv = ["dli", *argv]
runpy.run_module("dli_airflow.cli", run_name="__main__", alter_sys=True)
"""


def environment(home: Path) -> dict[str, str]:
    """This machine's Airflow and dli settings left out; the clone's code first."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "_AIRFLOW", "DLI_", "PYTHON"))}
    env.update(AIRFLOW_HOME=str(home), PYTHONPATH=str(ROOT), NO_COLOR="1", COLUMNS="100")
    return env


def run_once(args: list[str], env: dict[str, str]) -> tuple[float, int]:
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, *args], env=env, cwd=str(ROOT), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL, check=False,
    )
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"`python {' '.join(args)}` exited with {proc.returncode}:\n{proc.stderr.decode()[-2000:]}")
    return elapsed, proc.returncode


def imported(args: list[str], env: dict[str, str], scratch: Path) -> dict[str, bool] | None:
    """Which watched packages a dli command imported (None for bare Python)."""
    if args[:2] != ["-m", "dli_airflow.cli"]:
        return None
    out = scratch / "modules.json"
    subprocess.run(
        [sys.executable, "-c", PROBE % (WATCHED,), str(out), *args[2:]], env=env, cwd=str(ROOT),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, check=False,
    )
    return json.loads(out.read_text())


def slowest_imports(args: list[str], env: dict[str, str], top: int) -> list[tuple[float, str]]:
    """The top-level imports with the largest cumulative time (``python -X importtime``), in seconds."""
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", *args], env=env, cwd=str(ROOT), capture_output=True, text=True, check=False
    )
    found: list[tuple[float, str]] = []
    for line in proc.stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        _self, cumulative, name = line[len("import time:"):].split("|", 2)
        name = name[1:]  # one space after the bar, then two more per level of nesting
        if not name.startswith(" "):  # only the imports made at the top, not the nested ones
            found.append((int(cumulative) / 1e6, name.strip()))
    return sorted(found, reverse=True)[:top]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=7, help="runs per command; medians (default 7, at least 5)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--importtime", action="store_true", help="also list each dli command's slowest imports")
    args = parser.parse_args(argv)

    scratch = Path(tempfile.mkdtemp(prefix="dli-bench-cli-"))
    try:
        env = environment(scratch / "airflow_home")
        for _, cmd, _ in COMMANDS:  # warm the OS page cache and bytecode; not timed
            run_once(cmd, env)
        times: dict[str, list[float]] = {label: [] for label, _, _ in COMMANDS}
        for _ in range(args.runs):
            for label, cmd, _ in COMMANDS:  # interleaved: load on the machine hits every command alike
                times[label].append(run_once(cmd, env)[0])
        base = statistics.median(times["python -c pass"])
        rows: list[dict[str, Any]] = []
        for label, cmd, api in COMMANDS:
            median = statistics.median(times[label])
            modules = imported(cmd, env, scratch)
            rows.append(
                {
                    "command": label,
                    "median_s": median,
                    "best_s": min(times[label]),
                    "over_python_s": median - base,
                    "runs": len(times[label]),
                    "imports_airflow": None if modules is None else modules["airflow"],
                    "imported": None if modules is None else sorted(k for k, v in modules.items() if v),
                    "talks_to_airflow_api": api,
                    "target": f"<= {TARGET_OVER_PYTHON_S} s over Python, no Airflow" if api else None,
                    "holds": (median - base <= TARGET_OVER_PYTHON_S and not modules["airflow"])
                    if api and modules
                    else None,
                    "slowest_imports": slowest_imports(cmd, env, 8) if args.importtime and modules is not None else None,
                }
            )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    info = {"python": platform.python_version(), "nproc": os.cpu_count(), "date": time.strftime("%Y-%m-%d %H:%M %Z"),
            "load_avg": [round(x, 2) for x in os.getloadavg()]}
    if args.json:
        print(json.dumps({"machine": info, "rows": rows}, indent=2))
        return 0
    print(f"CLI cold start: medians of {args.runs} runs, each a fresh process (Python {info['python']}, "
          f"{info['nproc']} CPU, load average {info['load_avg']})")
    print()
    print("| command | median s | best s | over bare Python s | imports airflow | heavy imports | target |")
    print("|---|---:|---:|---:|---|---|---|")
    for row in rows:
        target = ""
        if row["target"]:
            target = f"{row['target']}: {'holds' if row['holds'] else 'MISSED'}"
        airflow = "" if row["imports_airflow"] is None else ("yes" if row["imports_airflow"] else "no")
        heavy = ", ".join(row["imported"] or [])
        print(f"| {row['command']} | {row['median_s']:.3f} | {row['best_s']:.3f} | {row['over_python_s']:+.3f} "
              f"| {airflow} | {heavy} | {target} |")
    for row in rows:
        if row["slowest_imports"]:
            print()
            print(f"slowest imports of `{row['command']}` (cumulative s):")
            for seconds, name in row["slowest_imports"]:
                print(f"  {seconds:6.3f}  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
