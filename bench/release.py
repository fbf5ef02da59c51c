"""Release benchmark (issue 15): what readers of a published store cost, and what a publish costs.

For each N it generates N Dataset Specs with bench/parse.py's mix (typed parameters, notifications,
``depends_on`` chains, inline and ``query_file`` SQL, ~5 % manual specs and a few manual copies
overridden by code) into a local store, uploads its ``manual/`` to moto's S3 server by hand (as
registration would) and publishes its ``code/`` with ``dli spec publish`` (in-process). Every S3 request
goes through a counting proxy (tests/integration/s3_support.py). Processes are measured as bench/parse.py
does: a fresh interpreter building a DagBag of the DAG file, as the dag-processor and a task's worker do.

Rows, each a median of ``--runs``:

- ``bare Airflow``: a DagBag of an empty DAG file in a fresh process — the baseline of a worker start;
- ``floor one``: a hand-written DAG file building the cold worker's DAG (bench/parse.py's floor, one row):
  what building that DAG costs in Airflow, whoever writes it (its imports included);
- ``cold worker``: the DAG file with a fresh cache and Airflow's parsing context naming one code dataset
  (what every task start on the KubernetesExecutor, or on a restarted Celery worker, does);
- ``cold parse (release)`` vs ``cold parse (local folder)``: the whole DAG file with a fresh cache, from the
  published S3 store and from the same specs in a local folder;
- ``unchanged``: the same DAG file again with its cache (the dag-processor's steady state);
- ``one changed``: after a publish that changed one spec;
- ``publish``: the first publish of N specs, and one that changes ``--changed`` of them.

Nothing here asserts a time; CI does not run it (``--quick`` is a smoke test: N=50, one run).

Usage::

    python bench/release.py                     # N=1000 and 10000, 3 runs
    python bench/release.py --sizes 1000 --runs 5
    python bench/release.py --quick
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "bench"), str(ROOT / "tests" / "integration"), str(ROOT)]

import parse as parsebench  # noqa: E402  (bench/parse.py: the generator, moto, the measured child)
from s3_support import S3Proxy  # noqa: E402

BUCKET = "dli-bench-release"
KEY, SECRET, REGION = "testing", "testing-secret", "us-east-1"


def s3_client(endpoint: str) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client("s3", endpoint_url=endpoint, region_name=REGION, aws_access_key_id=KEY,
                        aws_secret_access_key=SECRET, config=Config(max_pool_connections=64))


def connection(endpoint: str) -> str:
    return json.dumps({"conn_type": "aws", "login": KEY, "password": SECRET,
                       "extra": {"endpoint_url": endpoint, "region_name": REGION}})


def kinds(proxy: S3Proxy) -> Counter[str]:
    """Requests the proxy saw, by kind: LIST, GET, PUT, DELETE, HEAD."""
    out: Counter[str] = Counter()
    for r in list(proxy.requests):
        out["LIST" if r.is_list else r.method] += 1
    return out


def fmt_kinds(counts: Counter[str]) -> str:
    total = sum(counts.values())
    parts = ", ".join(f"{k} {v:,}" for k, v in sorted(counts.items()))
    return f"{total:,} ({parts})" if parts else "0"


@dataclass
class Row:
    name: str
    seconds: list[float] = field(default_factory=list)
    requests: list[int] = field(default_factory=list)
    dags: list[int] = field(default_factory=list)
    note: str = ""

    @property
    def median(self) -> float:
        return statistics.median(self.seconds) if self.seconds else float("nan")

    @property
    def max_requests(self) -> int | None:
        return max(self.requests) if self.requests else None


def publish(src: Path, url: str, endpoint: str) -> tuple[float, Any]:
    from dli_airflow import publish as releases
    from dli_airflow.s3store import S3Store

    store = S3Store(url, client=s3_client(endpoint))
    started = time.perf_counter()
    plan = releases.plan(src, store)
    if not plan.ok:
        raise SystemExit(f"the generated specs do not validate: {plan.problems[0].render()}")
    releases.apply(plan, store)
    return time.perf_counter() - started, plan


def edit(src: Path, count: int, run: int) -> list[str]:
    """Change ``count`` specs (their description), so a publish has ``count`` changed files."""
    import yaml

    changed = []
    for spec in sorted(src.rglob("*.yaml"))[:count]:
        doc = yaml.safe_load(spec.read_text())
        doc["description"] = f"edited for release run {run}"
        spec.write_text(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True, width=120))
        changed.append(doc["name"])
    return changed


def one_dag_floor(root: Path, files: list[str], work: Path) -> Path:
    """A hand-written DAG file of one dataset's DAG (bench/parse.py's floor for that DAG alone): what Airflow
    costs a worker to build that DAG, whoever writes it. Its store is a copy of the dataset's own files."""
    for rel in files:
        target = work / "store" / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(root / rel, target)
    rows, _ = parsebench.dag_rows(work / "store")
    return parsebench.write_dag_files(work / "dags", rows, 0)["floor"]


def bench_n(n: int, args: argparse.Namespace, tmp: Path, moto: Any, proxy: S3Proxy) -> dict[str, Any]:
    log = (lambda m: None) if args.json else (lambda m: print(m, file=sys.stderr, flush=True))
    gen = parsebench.generate_store(tmp / f"store-{n}", n)
    src = gen.root / "code"
    url = f"s3://{BUCKET}/rel-{n}"
    direct = s3_client(moto.url)
    manual = [p for p in (gen.root / "manual").rglob("*") if p.is_file()]
    for path in manual:  # manual/ as registration writes it: by hand, not by publish
        direct.put_object(Bucket=BUCKET, Key=f"rel-{n}/{path.relative_to(gen.root).as_posix()}", Body=path.read_bytes())
    log(f"== N = {n:,}: {gen.files:,} files ({len(manual)} under manual/)")

    rows: dict[str, Row] = {}
    proxy.reset()
    seconds, plan = publish(src, url, proxy.url)
    rows["publish first"] = Row("publish (first)", [seconds], [len(proxy.requests)],
                                note=fmt_kinds(kinds(proxy)))
    log(f"  first publish: {seconds:.1f} s, {fmt_kinds(kinds(proxy))}")
    code_names = sorted(plan.index.datasets)

    env = parsebench.base_env(tmp / f"env-{n}")
    env["AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT"] = "1800"  # measuring cost, not Airflow's 30 s timeout
    empty = tmp / "empty" / "empty_dag.py"
    empty.parent.mkdir(exist_ok=True)
    empty.write_text("# a DAG file that defines nothing: the cost of airflow and a DagBag alone\nfrom airflow.sdk import DAG  # noqa\n")
    s3_env = dict(env, AIRFLOW__DLI__SPEC_STORE=url, AIRFLOW_CONN_AWS_DEFAULT=connection(proxy.url))
    local_env = dict(env, AIRFLOW__DLI__SPEC_STORE=str(gen.root))

    def run(row: str, path: Path, child_env: dict[str, str], *, expect: int | None = None, dag: str | None = None,
            title: str | None = None) -> parsebench.Sample:
        proxy.reset()
        sample = parsebench.measure(path, child_env, mode="processor")
        r = rows.setdefault(row, Row(title or row))
        r.seconds.append(sample.seconds)
        r.requests.append(len(proxy.requests))
        r.dags.append(sample.dags)
        r.note = fmt_kinds(kinds(proxy))
        if sample.errors or (expect is not None and sample.dags < expect):
            raise SystemExit(f"{row}: {sample.dags} DAGs, errors: {sample.errors[:2]}")
        return sample

    for i in range(args.runs):
        log(f"  run {i + 1}/{args.runs}")
        run("bare", empty, env, title="bare Airflow (DagBag of an empty file)")
        name = code_names[(i * 7919) % len(code_names)]
        run("floor one", one_dag_floor(gen.root, plan.index.datasets[name], tmp / f"one-{n}-{i}"), env,
            expect=1, title="the same one DAG, hand-written (floor)")
        worker = dict(s3_env, AIRFLOW__DLI__CACHE_DIR=str(tmp / f"cache-worker-{n}-{i}"),
                      _AIRFLOW_PARSING_CONTEXT_DAG_ID=name)
        sample = run("worker", parsebench.DAG_FILE, worker, title="cold worker (parsing context: one DAG)")
        if sample.dags != 1:
            raise SystemExit(f"the cold worker built {sample.dags} DAGs, not the one of {name}")
        if args.worker_only:
            continue
        processor_cache = tmp / f"cache-parse-{n}-{i}"
        run("cold release", parsebench.DAG_FILE, dict(s3_env, AIRFLOW__DLI__CACHE_DIR=str(processor_cache)),
            expect=gen.datasets, title="cold parse, published S3 store")
        run("cold local", parsebench.DAG_FILE, dict(local_env, AIRFLOW__DLI__CACHE_DIR=str(tmp / f"cache-local-{n}-{i}")),
            expect=gen.datasets, title="cold parse, local folder")
        run("unchanged", parsebench.DAG_FILE, dict(s3_env, AIRFLOW__DLI__CACHE_DIR=str(processor_cache)),
            expect=gen.datasets, title="unchanged published store")
        edit(src, 1, i)
        publish(src, url, proxy.url)
        run("one changed", parsebench.DAG_FILE, dict(s3_env, AIRFLOW__DLI__CACHE_DIR=str(processor_cache)),
            expect=gen.datasets, title="after publishing one changed spec")
        edit(src, args.changed, 100 + i)
        proxy.reset()
        seconds, _ = publish(src, url, proxy.url)
        r = rows.setdefault("publish changed", Row(f"publish ({args.changed} changed)"))
        r.seconds.append(seconds)
        r.requests.append(len(proxy.requests))
        r.note = fmt_kinds(kinds(proxy))
    bare, worker = rows["bare"].median, rows["worker"].median
    return {
        "n": n,
        "files": gen.files,
        "manual_files": len(manual),
        "rows": {k: {"name": r.name, "median_s": r.median, "seconds": r.seconds, "requests": r.requests,
                     "dags": r.dags, "last_requests": r.note} for k, r in rows.items()},
        "ratios": {
            "worker / bare": worker / bare,
            "floor one / bare": rows["floor one"].median / bare,
            "worker / floor one": worker / rows["floor one"].median,
            **({"cold release / cold local": rows["cold release"].median / rows["cold local"].median}
               if "cold release" in rows else {}),
        },
    }


def render(result: dict[str, Any]) -> str:
    n = result["n"]
    rows = result["rows"]
    lines = [f"\n-- N = {n:,} datasets ({result['files']:,} files, {result['manual_files']} under manual/; medians)",
             f"{'':44} {'seconds':>8} {'requests':>9}  requests (last run)"]
    for key in ("bare", "floor one", "worker", "cold release", "cold local", "unchanged", "one changed", "publish first",
                "publish changed"):
        if key not in rows:  # --worker-only
            continue
        r = rows[key]
        reqs = max(r["requests"]) if r["requests"] else 0
        lines.append(f"{r['name']:44} {r['median_s']:8.2f} {reqs:9,}  {r['last_requests']}")
    ratios = result["ratios"]
    w, c = ratios["worker / bare"], ratios.get("cold release / cold local")
    lines.append(f"cold worker / bare Airflow: {w:.2f} (target <= 1.2: {'PASS' if w <= 1.2 else 'over target'}); "
                 f"requests {max(rows['worker']['requests'])} (target <= 4); the same DAG hand-written / bare: "
                 f"{ratios['floor one / bare']:.2f}, cold worker / that floor: {ratios['worker / floor one']:.2f}")
    if c is None:  # --worker-only
        return "\n".join(lines)
    lines.append(f"cold parse release / local folder: {c:.2f} (target <= 1.2: {'PASS' if c <= 1.2 else 'over target'})")
    lines.append(f"unchanged: {max(rows['unchanged']['requests'])} requests per parse (target <= 2); one changed: "
                 f"{max(rows['one changed']['requests'])} (target <= 4)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1000,10000", help="dataset counts, comma-separated")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--changed", type=int, default=10, help="specs changed by the second publish")
    parser.add_argument("--quick", action="store_true", help="smoke: N=50, one run")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    parser.add_argument("--worker-only", action="store_true",
                        help="only the cold-worker rows (bare Airflow, the hand-written floor, the cold worker)")
    args = parser.parse_args(argv)
    sizes = [50] if args.quick else [int(s) for s in args.sizes.split(",")]
    if args.quick:
        args.runs, args.changed = 1, 5
    tmp = Path(tempfile.mkdtemp(prefix="dli-bench-release-"))
    moto = parsebench.MotoServer(tmp / "moto.log").start()
    proxy = S3Proxy(moto.port).start()
    try:
        s3_client(moto.url).create_bucket(Bucket=BUCKET)
        results = [bench_n(n, args, tmp, moto, proxy) for n in sizes]
    finally:
        proxy.stop()
        moto.stop()
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    if args.json:
        print(json.dumps({"machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
                          "results": results}, indent=2))
        return 0
    cmd = "python bench/release.py" + ("" if args.sizes == "1000,10000" else f" --sizes {args.sizes}") + (
        " --worker-only" if args.worker_only else "") + (f" --runs {args.runs}" if args.runs != 3 else "")
    print(f"bench/release.py: sizes {', '.join(f'{n:,}' for n in sizes)}; {args.runs} run(s); "
          f"Python {platform.python_version()}, {os.cpu_count()} cores")
    for result in results:
        print(render(result))
    print(f"\n(every figure from one run of `{cmd}`)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
