"""Parse benchmark: ``dli_airflow/dag_files/dli_datasets.py`` against the floor and against dag-factory (issue 8).

For each N it generates N Dataset Specs (typed parameters with a required ``execution_date``, retries,
timeouts, Slack/e-mail/webhook notifications, ``depends_on`` chains, inline and ``query_file`` SQL,
paused datasets, manual specs and manual copies overridden by code) into a temporary local store, then
imports DAG files the way the dag-processor does (``SourceFileLoader`` + ``exec_module`` in a fresh
process, DAG objects collected from the module's globals) and records the wall time of the whole
process and its peak RSS (``VmHWM``). Rows:

- ``import``: the fixed cost, a file that only imports ``airflow.sdk`` and the operator modules (and runs
  Airflow's one-time provider discovery that the first asset of any variant triggers);
- ``floor``: one generated file building the same DAGs (same operator, Params, timetables, tags,
  outlets, callbacks, docs) straight from a JSON list of dicts: no YAML, no validation, no store;
- ``dli local cold`` / ``dli local unchanged``: the DAG file on the local store with an empty cache dir,
  and with the store unchanged since the last parse (the steady state: the dag-processor re-parses
  every 30 s);
- ``dli local 1 changed``: one spec file edited since the last parse (a deploy of one change);
- ``dli S3 cold`` / ``dli S3 unchanged``: the same on a moto S3 server on 127.0.0.1;
- ``dag-factory``: its ``load_yaml_dags`` on one YAML file per DAG describing the same DAGs with the
  same ``DatasetQueryOperator`` (built through dag-factory's ``__type__`` casts), so the DAG objects
  are identical and only the loading differs;
- with ``--shards K``: the factory split over K DAG files (datasets hashed to files), each in its own
  process, as the dag-processor would parse them in parallel.

Per-DAG cost is ``(time - import) / N``. Ratios are to baselines measured in the same run. Nothing here
asserts a time: CI runs ``--quick`` once as a smoke test.

Usage::

    python bench/parse.py                      # N=1000, 5 runs
    python bench/parse.py --n 100 1000 10000 --runs 5
    python bench/parse.py --quick              # N=20, 1 run (smoke test)
    python bench/parse.py --n 10000 --shards 4 --runs 3
    python bench/parse.py --n 1000 --profile   # where an unchanged and a cold dli parse spend their time
    python bench/parse.py --json > parse.json
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DAG_FILE = ROOT / "dli_airflow" / "dag_files" / "dli_datasets.py"
#: Airflow's default ``[core] dagbag_import_timeout``.
IMPORT_TIMEOUT_S = 30.0
#: Seconds one measured process may take before it is killed (and reported as such).
CHILD_TIMEOUT_S = 600.0
#: Parses a cold S3 load may take before the benchmark gives up on it.
MAX_COLD_PARSES = 20
HOST = "127.0.0.1"
BUCKET = "dli-bench"
S3_PREFIX = "store"

DOMAINS = ("sales", "marketing", "finance", "ops", "product", "growth", "risk", "support")
ZONES = ("UTC", "Asia/Seoul", "Europe/Berlin", "America/New_York")
CRONS = ("0 9 * * *", "30 6 * * *", "0 */4 * * *", "15 2 * * 1", "0 0 1 * *", "*/30 * * * *")

# --------------------------------------------------------------------------------------------- the store


@dataclass
class Generated:
    """A generated store: where it is, how many datasets become DAGs, how many files it holds."""

    root: Path
    datasets: int
    files: int
    spec_bytes: int


def _sql(name: str, params: list[dict[str, Any]], rng: random.Random) -> str:
    """A dataset's SQL template using every declared parameter (typed literals, never quoted)."""
    table = name.replace(".", "_")
    cols = [f"  sum(metric_{k}) AS metric_{k}" for k in range(rng.randint(3, 25))]
    names = {p["name"] for p in params}
    where = ["WHERE event_date = {{ execution_date }}"]
    if "country" in names:
        where.append("{% if country %}  AND country = {{ country }}{% endif %}")
    if "since" in names:
        where.append("  AND event_date >= {{ since }}")
    if "include_test" in names:
        where.append("{% if not include_test %}  AND NOT is_test{% endif %}")
    having = "HAVING count(*) >= {{ min_rows }}" if "min_rows" in names else ""
    sample = "  AND random() < {{ ratio }}" if "ratio" in names else ""
    return "\n".join(
        [
            f"-- {name}: generated for the dli parse benchmark",
            f"CREATE TABLE IF NOT EXISTS {table} (day DATE, campaign VARCHAR, clicks BIGINT);",
            f"DELETE FROM {table} WHERE day = {{{{ execution_date }}}};",
            f"INSERT INTO {table}",
            "SELECT {{ execution_date }} AS day, campaign, count(*) AS clicks,",
            ",\n".join(cols),
            "FROM raw_events",
            *where,
            *([sample] if sample else []),
            "GROUP BY 1, 2",
            having,
            ";",
            "",
        ]
    )


def _spec(i: int, rng: random.Random, earlier: list[str]) -> tuple[str, dict[str, Any]]:
    """One realistic spec document (and the domain folder it lives in)."""
    domain = DOMAINS[i % len(DOMAINS)]
    name = f"{domain}.ds_{i:05d}"
    params: list[dict[str, Any]] = [
        {
            "name": "execution_date",
            "type": "date",
            "required": True,
            "description": "The day to compute (a scheduled run gets the local date of its scheduled time).",
        }
    ]
    extras = [
        {"name": "country", "type": "string", "default": "KR", "description": "Only this country (all when empty)."},
        {"name": "min_rows", "type": "integer", "default": rng.randint(1, 100), "description": "Drop small groups."},
        {"name": "include_test", "type": "boolean", "default": False},
        {"name": "ratio", "type": "number", "default": 0.5, "description": "Sampling ratio."},
        {"name": "since", "type": "date", "default": "2024-01-01", "description": "First day to read."},
    ]
    params += rng.sample(extras, rng.randint(0, 3))
    doc: dict[str, Any] = {
        "name": name,
        "type": "Dataset",
        "owner": f"{domain}-owner{i % 7}@example.com",
        "team": f"@{domain}-analytics",
        "description": f"Clicks per campaign and day for {domain}, variant {i} (generated).",
    }
    engine = rng.random()
    if engine < 0.3:
        doc.update(engine="trino", catalog="hive", schema=domain)
    elif engine < 0.45:
        doc.update(engine="bigquery", project="acme-analytics", location="US")
    doc["parameters"] = params
    depends: list[str] = []
    if earlier and rng.random() < 0.2:
        depends = rng.sample(earlier[-200:], min(len(earlier[-200:]), rng.randint(1, 2)))
        doc["depends_on"] = depends
    if rng.random() < 0.9 or depends:
        schedule: dict[str, Any] = {}
        if rng.random() < 0.05:
            schedule["enabled"] = False
        if not depends or rng.random() < 0.75:
            schedule["cron"] = rng.choice(CRONS)
            schedule["timezone"] = rng.choice(ZONES)
        schedule["retry"] = {"max_attempts": rng.randint(0, 3), "delay_seconds": rng.choice((60, 120, 300, 600))}
        if rng.random() < 0.3:
            schedule["timeout_seconds"] = rng.choice((600, 1800, 3600))
        notifications: dict[str, Any] = {}
        roll = rng.random()
        if roll < 0.25:
            notifications["on_failure"] = [{"type": "slack", "channel": f"#{domain}-alerts"}]
        elif roll < 0.32:
            notifications["on_failure"] = [{"type": "webhook", "conn_id": "dli_alerts_webhook"}]
        if rng.random() < 0.1:
            notifications["on_success"] = [{"type": "email", "to": [doc["owner"]]}]
        if notifications:
            schedule["notifications"] = notifications
        doc["schedule"] = schedule
    if rng.random() < 0.5:
        doc["tags"] = rng.sample(["daily", "finance-report", "pii", "gold", "silver", "kpi"], rng.randint(1, 2))
    return domain, doc


def _plain_spec(i: int) -> tuple[str, dict[str, Any]]:
    """The plain corpus: two parameters, inline SQL, a cron schedule, no notifications, tags or dependencies."""
    domain = DOMAINS[i % len(DOMAINS)]
    name = f"{domain}.ds_{i:05d}"
    return domain, {
        "name": name,
        "owner": f"{domain}-owner@example.com",
        "parameters": [{"name": "execution_date", "type": "date", "required": True},
                       {"name": "min_rows", "type": "integer", "default": 10}],
        "query": f"SELECT {{{{ execution_date }}}} AS day, count(*) AS n FROM raw_{domain} "
                 "GROUP BY 1 HAVING count(*) >= {{ min_rows }}",
        "schedule": {"cron": CRONS[i % len(CRONS)], "timezone": ZONES[i % len(ZONES)]},
    }


#: ``mix``: bench/parse.py's realistic mix; ``plain``: :func:`_plain_spec` (the per-DAG floor comparison).
CORPORA = ("mix", "plain")


def generate_store(root: Path, n: int, seed: int = 8, corpus: str = "mix") -> Generated:
    """Write ``n`` datasets (about 5 % under ``manual/``, 1 % extra manual copies overridden by code); the
    plain corpus is all under ``code/``."""
    import yaml

    rng = random.Random(seed)
    names: list[str] = []
    files = 0
    size = 0
    for i in range(n):
        if corpus == "plain":
            domain, doc = _plain_spec(i)
            folder = root / "code" / domain
            folder.mkdir(parents=True, exist_ok=True)
            text = yaml.safe_dump(doc, sort_keys=False, width=120)
            (folder / f"{doc['name'].split('.', 1)[1]}.yaml").write_text(text, encoding="utf-8")
            files += 1
            size += len(text)
            continue
        domain, doc = _spec(i, rng, names)
        names.append(doc["name"])
        prefix = "manual" if rng.random() < 0.05 else "code"
        folder = root / prefix / domain
        folder.mkdir(parents=True, exist_ok=True)
        stem = doc["name"].split(".", 1)[1]
        sql = _sql(doc["name"], doc["parameters"], rng)
        if rng.random() < 0.4:
            doc["query_file"] = f"{stem}.sql"
            (folder / f"{stem}.sql").write_text(sql, encoding="utf-8")
            files += 1
            size += len(sql)
        else:
            doc["query"] = sql
        text = yaml.safe_dump(doc, sort_keys=False, allow_unicode=True, width=120)
        (folder / f"{stem}.yaml").write_text(text, encoding="utf-8")
        files += 1
        size += len(text)
        if prefix == "code" and rng.random() < 0.01:  # an old manual copy, overridden by the code spec
            copy = dict(doc, description="An old manual copy (overridden by code).")
            copy.pop("query_file", None)
            copy["query"] = sql
            (root / "manual" / domain).mkdir(parents=True, exist_ok=True)
            (root / "manual" / domain / f"{stem}.yaml").write_text(yaml.safe_dump(copy, sort_keys=False), "utf-8")
            files += 1
    return Generated(root=root, datasets=n, files=files, spec_bytes=size)


# ------------------------------------------------------------------------------- floor and dag-factory


def dag_rows(store: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Every DAG the factory builds for ``store``, as plain data: what the floor and dag-factory rebuild.

    The DAG-level values (Params, tags, default_args, doc) are read back from the DAGs the factory
    builds, so the floor stays the same DAGs when the factory changes; the schedule comes from the spec.
    """
    from dli_airflow.catalog import scan
    from dli_airflow.factory import build_dags
    from dli_airflow.store import LocalStore

    snapshot = scan(LocalStore(store))
    if snapshot.problems:
        raise SystemExit(f"the generated store has problems: {[p.render() for p in snapshot.problems[:3]]}")
    entries = {e.name: e for e in snapshot.active}
    rows = []
    dags = build_dags(snapshot=snapshot, maintenance=False)
    for dag_id, dag in sorted(dags.items()):
        entry = entries[dag_id]
        spec = entry.spec
        task = dag.get_task("run")
        default_args = dict(dag.default_args)
        callbacks = {}
        for kwarg in ("on_failure_callback", "on_success_callback"):
            found = getattr(task, kwarg, None) or []
            callbacks[kwarg] = [
                {"dataset": c.dataset, "event": c.event, "target": c.target.model_dump(mode="json")} for c in found
            ]
        rows.append(
            {
                "dag_id": dag_id,
                "cron": spec.schedule.cron if spec.schedule else None,
                "timezone": spec.schedule.timezone if spec.schedule else "UTC",
                "scheduled": spec.schedule is not None,
                "depends_on": list(spec.depends_on),
                "owner": default_args["owner"],
                "retries": default_args["retries"],
                "retry_delay_s": default_args["retry_delay"].total_seconds(),
                "timeout_s": default_args["execution_timeout"].total_seconds()
                if "execution_timeout" in default_args
                else None,
                "tags": sorted(dag.tags),
                "params": {
                    k: {"default": p.value, "description": p.description, **p.schema} for k, p in dag.params.items()
                },
                "doc_md": dag.doc_md,
                "description": dag.description,
                "paused": dag.is_paused_upon_creation,
                "spec": spec.model_dump(mode="json", by_alias=True, exclude_none=True),
                "sql_template": task.sql_template,
                "source": task.source,
                "sql_path": task.sql_path,
                **callbacks,
            }
        )
    return rows, dags


FLOOR_PY = '''\
"""Parse-benchmark floor: the dli factory's DAGs built straight from a list of dicts (no YAML, no validation)."""
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

from airflow.sdk import DAG, Asset, AssetAll, AssetOrTimeSchedule, CronTriggerTimetable, Param

from dli_airflow.notifiers import DatasetNotifier
from dli_airflow.operators import DatasetQueryOperator
from dli_airflow.spec import DatasetSpec, NotificationSpec

START = datetime(2000, 1, 1, tzinfo=timezone.utc)


def _asset(name):
    return Asset(name=name, uri=f"x-dli://dataset/{name}", group="dli")


def _schedule(row):
    if not row["scheduled"]:
        return None
    timetable = CronTriggerTimetable(row["cron"], timezone=row["timezone"]) if row["cron"] else None
    if not row["depends_on"]:
        return timetable
    assets = [_asset(name) for name in row["depends_on"]]
    if timetable is None:
        return assets
    return AssetOrTimeSchedule(timetable=timetable, assets=AssetAll(*assets))


def _build(rows):
    dags = {}
    for row in rows:
        default_args = {"owner": row["owner"], "retries": row["retries"],
                        "retry_delay": timedelta(seconds=row["retry_delay_s"])}
        if row["timeout_s"]:
            default_args["execution_timeout"] = timedelta(seconds=row["timeout_s"])
        dag = DAG(
            dag_id=row["dag_id"], schedule=_schedule(row), start_date=START, catchup=False, max_active_runs=1,
            is_paused_upon_creation=row["paused"], default_args=default_args, tags=row["tags"],
            params={k: Param(p.pop("default"), **p) for k, p in row["params"].items()},
            doc_md=row["doc_md"], description=row["description"], auto_register=False,
        )
        callbacks = {
            kwarg: [DatasetNotifier(dataset=c["dataset"], event=c["event"],
                                    target=NotificationSpec.model_construct(**c["target"])) for c in row[kwarg]]
            for kwarg in ("on_failure_callback", "on_success_callback") if row[kwarg]
        }
        DatasetQueryOperator(
            task_id="run", dag=dag, spec=DatasetSpec.model_construct(**row["spec"]),
            sql_template=row["sql_template"], source=row["source"], sql_path=row["sql_path"],
            outlets=[_asset(row["dag_id"])], **callbacks,
        )
        dags[row["dag_id"]] = dag
    return dags


globals().update(_build(json.loads(Path(__file__).with_suffix(".json").read_text(encoding="utf-8"))))
'''

DAGFACTORY_PY = '''\
"""Parse benchmark: dag-factory loading one YAML file per DAG (the same DAGs as the dli factory).

An airflow DAG file: the words "airflow" and "dag" let the DagBag's safe mode import it.
"""
from pathlib import Path

from dagfactory import load_yaml_dags

_YAML = Path(__file__).with_name("dagfactory_yaml")
load_yaml_dags(globals_dict=globals(), dags_folder=str(_YAML), defaults_config_path=str(_YAML))
'''

IMPORT_ONLY_PY = '''\
"""Parse benchmark: the fixed cost (Airflow's SDK and the operator modules; builds nothing).

It also runs Airflow's one-time provider discovery for asset URI handlers, which the first ``Asset`` with a
non-``file`` URI triggers in every variant (about 1 s here): a fixed cost, not a per-DAG one.
"""
import airflow.sdk
from airflow.sdk import DAG, Asset, AssetAll, AssetOrTimeSchedule, CronTriggerTimetable, Param  # noqa: F401
from airflow.sdk.providers_manager_runtime import ProvidersManagerTaskRuntime

import dli_airflow.notifiers  # noqa: F401
import dli_airflow.operators  # noqa: F401

ProvidersManagerTaskRuntime().asset_uri_handlers
'''

SHARD_PY = '''\
"""Parse benchmark: shard {shard} of {shards} of the dli factory (the datasets whose name hashes to it)."""
from dli_airflow.factory import dag_file_globals

globals().update(dag_file_globals(shard={shard}, shards={shards}))
'''


def _typed(path: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
    """A dag-factory ``__type__`` node: dag-factory imports ``path`` and calls it with these arguments."""
    node: dict[str, Any] = {"__type__": path, **kwargs}
    if args:
        node["__args__"] = list(args)
    return node


def _df_asset(name: str) -> dict[str, Any]:
    return _typed("airflow.sdk.Asset", name=name, uri=f"x-dli://dataset/{name}", group="dli")


def _df_schedule(row: dict[str, Any]) -> Any:
    if not row["scheduled"]:
        return "None"
    timetable = _typed("airflow.sdk.CronTriggerTimetable", row["cron"], timezone=row["timezone"]) if row["cron"] else None
    if not row["depends_on"]:
        return timetable
    assets = [_df_asset(n) for n in row["depends_on"]]
    if timetable is None:
        return assets
    return _typed("airflow.sdk.AssetOrTimeSchedule", timetable=timetable, assets=_typed("airflow.sdk.AssetAll", *assets))


def dagfactory_config(row: dict[str, Any]) -> dict[str, Any]:
    """The dag-factory YAML of one DAG: the same DAG as the dli factory builds for it."""
    default_args: dict[str, Any] = {
        "owner": row["owner"],
        "retries": row["retries"],
        "retry_delay": _typed("datetime.timedelta", seconds=row["retry_delay_s"]),
    }
    if row["timeout_s"]:
        default_args["execution_timeout"] = _typed("datetime.timedelta", seconds=row["timeout_s"])
    task: dict[str, Any] = {
        "operator": "dli_airflow.operators.DatasetQueryOperator",
        "spec": _typed("dli_airflow.spec.DatasetSpec", **row["spec"]),
        "sql_template": row["sql_template"],
        "source": row["source"],
        "sql_path": row["sql_path"],
        "outlets": [_df_asset(row["dag_id"])],
    }
    for kwarg in ("on_failure_callback", "on_success_callback"):
        # dag-factory takes one notifier per callback (a dict); the generator never emits more than one
        for callback in row[kwarg][:1]:
            task[kwarg] = {
                "callback": "dli_airflow.notifiers.DatasetNotifier",
                "dataset": callback["dataset"],
                "event": callback["event"],
                "target": _typed("dli_airflow.spec.NotificationSpec", **callback["target"]),
            }
    params = {}
    for key, p in row["params"].items():
        schema = {k: v for k, v in p.items() if k != "default"}
        params[key] = _typed("airflow.sdk.Param", p["default"], **schema)
    return {
        row["dag_id"]: {
            "default_args": default_args,
            "start_date": "2000-01-01",
            "catchup": False,
            "max_active_runs": 1,
            "is_paused_upon_creation": row["paused"],
            "schedule": _df_schedule(row),
            "tags": list(row["tags"]),
            "params": params,
            "doc_md": row["doc_md"],
            "description": row["description"],
            "tasks": {"run": task},
        }
    }


def write_dag_files(dags_dir: Path, rows: list[dict[str, Any]], shards: int) -> dict[str, Path]:
    """The benchmark's own DAG files (floor, dag-factory, import-only, shards)."""
    import yaml

    dags_dir.mkdir(parents=True, exist_ok=True)
    files = {"import": dags_dir / "bench_import_only.py", "floor": dags_dir / "bench_floor.py"}
    files["import"].write_text(IMPORT_ONLY_PY, encoding="utf-8")
    files["floor"].write_text(FLOOR_PY, encoding="utf-8")
    (dags_dir / "bench_floor.json").write_text(json.dumps(rows), encoding="utf-8")
    yaml_dir = dags_dir / "dagfactory_yaml"
    yaml_dir.mkdir(exist_ok=True)
    for row in rows:
        text = yaml.safe_dump(dagfactory_config(row), sort_keys=False, allow_unicode=True, width=120)
        (yaml_dir / f"{row['dag_id']}.yaml").write_text(text, encoding="utf-8")
    files["dag-factory"] = dags_dir / "bench_dagfactory.py"
    files["dag-factory"].write_text(DAGFACTORY_PY, encoding="utf-8")
    for shard in range(shards):
        path = dags_dir / f"bench_dli_shard{shard}.py"
        path.write_text(SHARD_PY.format(shard=shard, shards=shards), encoding="utf-8")
        files[f"shard{shard}"] = path
    return files


def _comparable(dag: Any, dagfactory: bool = False) -> dict[str, Any]:
    from airflow.serialization.serialized_objects import DagSerialization

    data = DagSerialization.to_dict(dag)["dag"]
    for key in ("fileloc", "relative_fileloc", "_processor_dags_folder"):
        data.pop(key, None)
    if dagfactory:  # what dag-factory always adds: its tag, and the YAML appended to the doc
        data["tags"] = [t for t in data.get("tags", []) if t != "dagfactory"]
        data.pop("doc_md", None)
    return data


def check_equivalent(files: dict[str, Path], rows: list[dict[str, Any]], dli_dags: dict[str, Any], k: int = 25) -> list[str]:
    """The floor's and dag-factory's DAGs serialize exactly like the factory's (a sample of ``k``), so the
    rows compare the same DAGs. Differences are returned as text (and printed as warnings)."""
    import copy

    problems: list[str] = []
    sample = rows[:k]
    namespace: dict[str, Any] = {"__file__": str(files["floor"]), "__name__": "bench_floor_check"}
    exec(FLOOR_PY.rsplit("\nglobals().update", 1)[0], namespace)  # noqa: S102 - our own generated code
    floor = namespace["_build"](copy.deepcopy(sample))
    others = {"floor": floor}
    if importlib.util.find_spec("dagfactory") is not None:
        import logging

        from dagfactory import load_yaml_dags

        logging.getLogger().setLevel(logging.WARNING)
        yaml_dir = files["dag-factory"].with_name("dagfactory_yaml")
        built: dict[str, Any] = {}
        for row in sample:
            load_yaml_dags(globals_dict=built, config_filepath=str(yaml_dir / f"{row['dag_id']}.yaml"),
                           defaults_config_path=str(yaml_dir))
        others["dag-factory"] = built
    for label, dags in others.items():
        for row in sample:
            dag_id = row["dag_id"]
            if dag_id not in dags:
                problems.append(f"{label}: {dag_id} was not built")
                continue
            want = _comparable(dli_dags[dag_id], dagfactory=label == "dag-factory")
            got = _comparable(dags[dag_id], dagfactory=label == "dag-factory")
            if want != got:
                keys = sorted(k for k in set(want) | set(got) if want.get(k) != got.get(k))
                problems.append(f"{label}: {dag_id} differs from the dli factory's DAG in {keys}")
    return problems


# ------------------------------------------------------------------------------------------- moto S3


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


class MotoServer:
    """``moto_server`` on 127.0.0.1 and a free port, in its own process group, for the S3 rows."""

    def __init__(self, log: Path) -> None:
        self.port = free_port()
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def start(self, deadline_s: float = 30.0) -> MotoServer:
        import http.client

        exe = Path(sys.executable).with_name("moto_server")
        cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "moto.server"]
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [*cmd, "-H", HOST, "-p", str(self.port)],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
            )
        deadline = time.monotonic() + deadline_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                conn = http.client.HTTPConnection(HOST, self.port, timeout=1)
                conn.request("GET", "/")
                conn.getresponse().read()
                conn.close()
                return self
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"moto_server did not start: {self.log.read_text(errors='replace')[-2000:]}")

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.proc = None

    def connection(self) -> str:
        """``AIRFLOW_CONN_AWS_DEFAULT``: test credentials, ``endpoint_url`` in the extra."""
        return json.dumps(
            {"conn_type": "aws", "login": "testing", "password": "testing-secret",
             "extra": {"endpoint_url": self.url, "region_name": "us-east-1"}}
        )

    def upload(self, store: Path, prefix: str) -> int:
        """Copy a local store under ``s3://dli-bench/<prefix>/``; the number of objects."""
        import boto3
        from botocore.config import Config

        client = boto3.client(
            "s3", endpoint_url=self.url, region_name="us-east-1", config=Config(max_pool_connections=16),
            aws_access_key_id="testing", aws_secret_access_key="testing-secret",
        )
        try:
            client.create_bucket(Bucket=BUCKET)
        except client.exceptions.BucketAlreadyOwnedByYou:
            pass
        paths = [p for p in store.rglob("*") if p.is_file()]

        def put(path: Path) -> None:
            client.put_object(Bucket=BUCKET, Key=f"{prefix}/{path.relative_to(store).as_posix()}", Body=path.read_bytes())

        with ThreadPoolExecutor(max_workers=16) as pool:
            list(pool.map(put, paths))
        return len(paths)


# ------------------------------------------------------------------------------------------ measuring

#: The child: imports one DAG file as the dag-processor does (a SourceFileLoader under a unique module
#: name, then the DAG objects of its globals plus auto-registered ones); writes its result as JSON.
RUNNER = r'''
import json, os, sys, time
t0 = time.perf_counter()
path, out, mode, profile = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
import importlib.machinery, importlib.util, hashlib

def load():
    name = "unusual_prefix_" + hashlib.sha1(path.encode()).hexdigest() + "_" + os.path.basename(path)[:-3]
    loader = importlib.machinery.SourceFileLoader(name, path)
    spec = importlib.util.spec_from_loader(name, loader)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    loader.exec_module(module)
    from airflow.sdk import DAG
    from airflow.sdk.definitions._internal.contextmanager import DagContext
    found = {id(o): o for o in module.__dict__.values() if isinstance(o, DAG)}
    found.update((id(d), d) for d in list(DagContext.autoregistered_dags) if isinstance(d, DAG))
    return sorted(d.dag_id for d in found.values()), []

def processor():
    from pathlib import Path
    from airflow.dag_processing.dagbag import BundleDagBag
    from airflow.serialization.serialized_objects import DagSerialization
    bag = BundleDagBag(dag_folder=path, bundle_path=Path(path).parent, bundle_name="bench", load_op_links=False)
    for dag in bag.dags.values():
        DagSerialization.to_dict(dag)
    return sorted(bag.dags), sorted(str(v)[:300] for v in bag.import_errors.values())

def sampled(run, interval=0.001):
    # Wall-clock stack sampling of the main thread. Each sample goes to the innermost dli_airflow or airflow
    # frame of the stack: a yaml or jinja2 call made by dli counts as ours, a jsonschema call made by an
    # Airflow Param as Airflow's. For Airflow, the entry point called from outside Airflow is kept as well.
    import collections, signal
    samples = collections.Counter()
    def owner(code):
        name = code.co_filename
        if "/dli_airflow/" in name:
            return "dli", name[name.index("/dli_airflow/") + 1:] + ":" + code.co_name
        if "/airflow/" in name or name.startswith("<attrs generated methods airflow"):
            short = name[name.index("/airflow/") + 1:] if "/airflow/" in name else name
            return "airflow", short + ":" + code.co_name
        return None
    def handler(signum, frame):
        chain = []
        f = frame
        while f is not None:
            chain.append(owner(f.f_code))
            f = f.f_back
        inner = next((i for i, o in enumerate(chain) if o), None)
        if inner is None:
            samples[("other", "", "")] += 1
            return
        kind, where = chain[inner]
        entry = where
        if kind == "airflow":  # walk out to the outermost airflow frame before a non-airflow owner
            for o in chain[inner:]:
                if o is None:
                    continue
                if o[0] != "airflow":
                    break
                entry = o[1]
        samples[(kind, where, entry)] += 1
    signal.signal(signal.SIGALRM, handler)
    signal.setitimer(signal.ITIMER_REAL, interval, interval)
    try:
        result = run()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0, 0)
    with open(profile, "w") as fh:
        json.dump({"interval": interval, "samples": [[k, w, e, c] for (k, w, e), c in samples.items()]}, fh)
    return result

run = processor if mode == "processor" else load
if profile.endswith(".samples.json"):
    dag_ids, errors = sampled(run)
elif profile:
    import cProfile
    prof = cProfile.Profile()
    dag_ids, errors = prof.runcall(run)
    prof.dump_stats(profile)
else:
    dag_ids, errors = run()
elapsed = time.perf_counter() - t0
hwm = 0
with open("/proc/self/status") as fh:
    for line in fh:
        if line.startswith("VmHWM:"):
            hwm = int(line.split()[1])
with open(out, "w") as fh:
    json.dump({"dags": len(dag_ids), "dag_ids_head": dag_ids[:3], "errors": errors,
               "in_process_s": elapsed, "vmhwm_kb": hwm}, fh)
'''


@dataclass
class Sample:
    seconds: float
    rss_mb: float
    dags: int
    cpu_s: float = 0.0
    errors: list[str] = field(default_factory=list)
    #: parses it took (a cold S3 store larger than one parse's read budget loads over several)
    parses: int = 1
    longest_s: float = 0.0


class ChildError(RuntimeError):
    """A measured process failed (its stderr tail is the message)."""


PER_DAG_PY = r"""
import contextlib, gc, json, statistics, sys, time
from pathlib import Path

floor_path, runs, out = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
source = floor_path.read_text(encoding="utf-8")
floor_ns = {"__file__": str(floor_path), "__name__": "bench_floor"}
exec(compile(source.rsplit("globals().update(", 1)[0], str(floor_path), "exec"), floor_ns)
rows_text = floor_path.with_suffix(".json").read_text(encoding="utf-8")

from dli_airflow import factory
from dli_airflow.cache import load_snapshot
from dli_airflow.notifiers import task_callbacks
from dli_airflow.operators import DatasetQueryOperator


def floor():
    return floor_ns["_build"](json.loads(rows_text))


def dli():
    return factory.dag_file_globals()


def floor_frozen():
    rows = json.loads(rows_text)
    with factory._older_objects_frozen():
        return floor_ns["_build"](rows)


def dli_collector_on():
    real = factory._older_objects_frozen
    factory._older_objects_frozen = lambda: contextlib.nullcontext(lambda: None)
    try:
        return factory.dag_file_globals()
    finally:
        factory._older_objects_frozen = real


def cpu(fn):
    gc.collect()
    start = time.process_time()
    fn()
    return time.process_time() - start


dli()  # the snapshot cache is warm (an unchanged store), bytecode and Airflow's lazy imports are loaded
floor()
samples = {"floor": [], "dli": [], "dli, collector scanning Airflow's objects and the snapshot": [],
           "floor, with the factory's gc.freeze": []}
for _ in range(runs):  # interleaved: a burst of load hits every variant alike
    samples["floor"].append(cpu(floor))
    samples["dli"].append(cpu(dli))
    samples["dli, collector scanning Airflow's objects and the snapshot"].append(cpu(dli_collector_on))
    samples["floor, with the factory's gc.freeze"].append(cpu(floor_frozen))

entries = load_snapshot().active
n = len(entries)
spec_free = [e.spec.model_construct(name=e.spec.name, owner=e.spec.owner) for e in entries]
pieces = {
    "load the unchanged snapshot (listing + unpickle)": lambda: load_snapshot(),
    "doc header (_doc)": lambda: [factory._doc(e, "duckdb") for e in entries],
    "Param objects from the spec (param_for)": lambda: [[factory.param_for(p) for p in e.spec.parameters] for e in entries],
    "schedule objects (_schedule)": lambda: [factory._schedule(e.spec) for e in entries],
    "notification callbacks (task_callbacks)": lambda: [task_callbacks(e.spec) for e in entries],
    "outlet asset (asset_for)": lambda: [factory.asset_for(e.name) for e in entries],
}
parts = {k: statistics.median(cpu(f) for _ in range(max(3, runs))) / n * 1000 for k, f in pieces.items()}
# what carrying the whole validated spec costs the operator: the same operator given a bare spec
from airflow.sdk import DAG


def operators(specs):
    dag = DAG(dag_id="bench_ops", schedule=None, auto_register=False)
    for i, (e, spec) in enumerate(zip(entries, specs)):
        DatasetQueryOperator(task_id=f"t{i}", dag=dag, spec=spec, sql_template=e.sql, source="code")


full = statistics.median(cpu(lambda: operators([e.spec for e in entries])) for _ in range(max(3, runs)))
bare = statistics.median(cpu(lambda: operators(spec_free)) for _ in range(max(3, runs)))
parts["operator carrying the whole spec (vs a two-field spec)"] = (full - bare) / n * 1000
result = {k: statistics.median(v) / n * 1000 for k, v in samples.items()}
Path(out).write_text(json.dumps({"n": n, "runs": runs, "ms_per_dag": result, "pieces_ms_per_dag": parts}))
"""


def per_dag_in_process(floor: Path, env: dict[str, str], runs: int) -> dict[str, Any]:
    """CPU ms per DAG of the floor and of the factory (unchanged store), built again and again in one process.

    The fresh-process rows divide (time - import) by N, so an import that varies by 0.3 s moves a per-DAG
    figure by 0.3 ms at N = 1,000; here the fixed cost is paid once, before anything is measured. Also what
    each part of the factory's own per-DAG work costs (doc, Params, schedule, callbacks, asset, snapshot).
    """
    with tempfile.TemporaryDirectory(prefix="dli-bench-perdag-") as scratch:
        out = Path(scratch) / "result.json"
        proc = subprocess.run(
            [sys.executable, "-c", PER_DAG_PY, str(floor), str(runs), str(out)],
            env=env, cwd=str(ROOT), stdin=subprocess.DEVNULL, capture_output=True, text=True,
            timeout=CHILD_TIMEOUT_S,
        )
        if proc.returncode != 0 or not out.exists():
            raise ChildError(f"the in-process per-DAG child exited with {proc.returncode}:\n{proc.stderr[-3000:]}")
        return json.loads(out.read_text())


def base_env(tmp: Path) -> dict[str, str]:
    """The children's environment: this machine's Airflow and AWS settings left out, a private AIRFLOW_HOME."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AIRFLOW", "AWS_", "_AIRFLOW", "DLI_", "PYTHON"))
    }
    home = tmp / "airflow_home"
    home.mkdir(parents=True, exist_ok=True)
    env.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__CORE__DAGS_FOLDER=str(tmp / "dags"),
        AIRFLOW__CORE__UNIT_TEST_MODE="False",
        # dag-factory: no telemetry from a benchmark
        AIRFLOW__DAG_FACTORY__ENABLE_TELEMETRY="False",
        DO_NOT_TRACK="true",
        SCARF_NO_ANALYTICS="true",
        AWS_EC2_METADATA_DISABLED="true",
        AWS_CONFIG_FILE=str(tmp / "no-aws-config"),
        AWS_SHARED_CREDENTIALS_FILE=str(tmp / "no-aws-credentials"),
        # the clone's code, whether or not it is pip-installed
        PYTHONPATH=str(ROOT),
    )
    return env


def measure(path: Path, env: dict[str, str], *, mode: str = "import", profile: Path | None = None) -> Sample:
    """Import one DAG file in a fresh process: wall time of the process, its peak RSS (VmHWM), DAGs found."""
    with tempfile.TemporaryDirectory(prefix="dli-bench-child-") as scratch:
        out = Path(scratch) / "result.json"
        err_path = Path(scratch) / "stderr"
        with open(err_path, "wb") as err, open(os.devnull, "wb") as devnull:
            start = time.perf_counter()
            proc = subprocess.Popen(
                [sys.executable, "-c", RUNNER, str(path), str(out), mode, str(profile or "")],
                env=env, stdout=devnull, stderr=err, stdin=subprocess.DEVNULL, cwd=str(ROOT),
            )
            deadline = start + CHILD_TIMEOUT_S
            while True:
                pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
                if pid:
                    break
                if time.perf_counter() > deadline:
                    proc.kill()
                    _, status, usage = os.wait4(proc.pid, 0)
                    break
                time.sleep(0.002)
            seconds = time.perf_counter() - start
            proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0 or not out.exists():
            tail = err_path.read_text(errors="replace")[-3000:]
            raise ChildError(f"{path.name} exited with {proc.returncode}:\n{tail}")
        result = json.loads(out.read_text())
    # The child's own VmHWM, not wait4's ru_maxrss: Linux folds the RSS the forked (vforked) child had before
    # exec, i.e. this parent's, into ru_maxrss, so every row would show at least the parent's size.
    rss_kb = result["vmhwm_kb"] or usage.ru_maxrss
    # CPU time (user + system) of the child alone: far less sensitive than wall time to other load on the machine
    cpu = usage.ru_utime + usage.ru_stime
    return Sample(seconds=seconds, rss_mb=rss_kb / 1024, dags=result["dags"], cpu_s=cpu, errors=result["errors"])


# ------------------------------------------------------------------------------------------- the run


@dataclass
class Row:
    """One measured variant at one N: medians over the runs, or why it is not available."""

    name: str
    n: int
    seconds: float | None = None
    best_s: float | None = None
    cpu_s: float | None = None
    rss_mb: float | None = None
    dags: int | None = None
    runs: int = 0
    per_dag_ms: float | None = None
    note: str = ""
    samples: list[float] = field(default_factory=list)
    parses: int = 1
    longest_s: float | None = None


def _median_row(name: str, n: int, samples: list[Sample], note: str = "") -> Row:
    return Row(
        name=name,
        n=n,
        seconds=statistics.median(s.seconds for s in samples),
        best_s=min(s.seconds for s in samples),
        cpu_s=statistics.median(s.cpu_s for s in samples),
        rss_mb=statistics.median(s.rss_mb for s in samples),
        dags=samples[-1].dags,
        runs=len(samples),
        note=note,
        samples=[round(s.seconds, 3) for s in samples],
        parses=max(s.parses for s in samples),
        longest_s=max(s.longest_s or s.seconds for s in samples),
    )


def _log(message: str, quiet: bool) -> None:
    if not quiet:
        print(message, file=sys.stderr, flush=True)


@dataclass
class Variant:
    """One thing to measure: a DAG file, its environment, and the state of its dli cache before each run.

    ``cache``: ``none`` (not dli), ``cold`` (an empty cache dir every run), ``warm`` (the cache dir ``key``,
    primed once and left unchanged), ``changed`` (like warm, but one spec file of the store is edited
    before every run, as a deploy of one change does).
    """

    name: str
    path: Path
    env: dict[str, str]
    cache: str = "none"
    key: str = ""
    edit: Path | None = None


def _edit_one(spec_file: Path, run: int) -> None:
    """Change one spec's description (a new version: the cache's listing no longer matches)."""
    import yaml

    doc = yaml.safe_load(spec_file.read_text(encoding="utf-8"))
    doc["description"] = f"Edited by the benchmark (run {run})."
    spec_file.write_text(yaml.safe_dump(doc, sort_keys=False, width=120), encoding="utf-8")


def bench_n(n: int, args: argparse.Namespace, tmp: Path, moto: MotoServer | None, moto_note: str) -> dict[str, Any]:
    """Every row for one N."""
    quiet = False  # progress goes to stderr
    work = tmp / f"n{n}"
    store = work / "store"
    _log(f"[N={n}] generating {n} specs in {store}", quiet)
    generated = generate_store(store, n, corpus=args.corpus)
    rows_data, dli_dags = dag_rows(store)
    files = write_dag_files(work / "dags", rows_data, args.shards)
    problems = check_equivalent(files, rows_data, dli_dags)
    for problem in problems:
        _log(f"warning: not the same DAGs: {problem}", quiet)
    if not problems:
        _log(f"[N={n}] floor and dag-factory DAGs serialize like the factory's (first 25 checked)", quiet)
    del dli_dags
    env = base_env(work)
    env["AIRFLOW__CORE__DAGS_FOLDER"] = str(work / "dags")
    local_env = dict(env, AIRFLOW__DLI__SPEC_STORE=str(store))
    # a copy of the store for the "one changed" row, so the other rows' store stays unchanged
    edited_store = work / "store-edited"
    shutil.copytree(store, edited_store)
    code_specs = sorted((edited_store / "code").rglob("*.yaml"))
    edited_file = code_specs[len(code_specs) // 2]

    if args.per_dag_only:
        _log(f"[N={n}] per-DAG build in one process ({max(args.runs, 3)} interleaved runs)", quiet)
        return {
            "n": n, "runs": args.runs, "mode": "in-process",
            "store": {"datasets": generated.datasets, "files": generated.files,
                      "spec_and_sql_mb": generated.spec_bytes / 1e6},
            "rows": [], "ratios": {}, "shards": None,
            "per_dag": per_dag_in_process(files["floor"], dict(local_env, AIRFLOW__DLI__CACHE_DIR=str(work / "cache")),
                                          max(args.runs, 3)),
        }

    variants = [
        Variant("import", files["import"], env),
        Variant("floor", files["floor"], env),
        Variant("dli local cold", DAG_FILE, local_env, "cold"),
        Variant("dli local unchanged", DAG_FILE, local_env, "warm", "local"),
        Variant("dli local 1 changed", DAG_FILE, dict(env, AIRFLOW__DLI__SPEC_STORE=str(edited_store)), "changed",
                "edited", edited_file),
    ]
    unavailable: dict[str, str] = {}
    if moto is not None:
        s3_env = dict(env, AIRFLOW__DLI__SPEC_STORE=f"s3://{BUCKET}/{S3_PREFIX}/n{n}",
                      AIRFLOW_CONN_AWS_DEFAULT=moto.connection())
        _log(f"[N={n}] uploading the store to {moto.url}", quiet)
        moto.upload(store, f"{S3_PREFIX}/n{n}")
        variants += [Variant("dli S3 cold", DAG_FILE, s3_env, "cold"),
                     Variant("dli S3 unchanged", DAG_FILE, s3_env, "warm", "s3")]
    else:
        unavailable["dli S3 cold"] = unavailable["dli S3 unchanged"] = moto_note
    dagfactory_note = _dagfactory_missing()
    if dagfactory_note:
        unavailable["dag-factory"] = dagfactory_note
    elif args.no_dagfactory:
        unavailable["dag-factory"] = "skipped (--no-dagfactory)"
    else:
        variants.append(Variant("dag-factory", files["dag-factory"], env))
    shards = [Variant(f"dli shard {i}/{args.shards}", files[f"shard{i}"], local_env, "warm", "local")
              for i in range(args.shards)]

    def cache_dir(variant: Variant, run: int) -> Path:
        if variant.cache == "cold":
            path = work / f"cache-cold-{_slug(variant.name)}-{run}"
            shutil.rmtree(path, ignore_errors=True)
            return path
        return work / f"cache-{variant.key or 'none'}"

    def run_one(variant: Variant, run: int) -> Sample:
        if variant.edit is not None and run >= 0:
            _edit_one(variant.edit, run)
        env = dict(variant.env, AIRFLOW__DLI__CACHE_DIR=str(cache_dir(variant, run)))
        sample = measure(variant.path, env, mode=args.mode)
        if "S3" not in variant.name:
            return sample
        # a cold S3 store bigger than one parse's read budget loads over several parses (each keeps what it
        # read; until the load is whole, the parse shows only dli_spec_errors): time them all
        parses = [sample]
        while sample.dags < n and not sample.errors and len(parses) < MAX_COLD_PARSES:
            sample = measure(variant.path, env, mode=args.mode)
            parses.append(sample)
        return Sample(
            seconds=sum(p.seconds for p in parses), rss_mb=max(p.rss_mb for p in parses), dags=sample.dags,
            cpu_s=sum(p.cpu_s for p in parses), errors=sample.errors, parses=len(parses),
            longest_s=max(p.seconds for p in parses),
        )

    # one unmeasured parse of each: bytecode caches written, warm caches primed, failures found early
    for variant in [*variants, *shards]:
        try:
            sample = run_one(variant, -1)
        except ChildError as exc:
            note = _first_line_of_error(str(exc))
            if "S3" in variant.name:
                note = f"n/a (S3 store not available: {note})"
            unavailable[variant.name] = note
            _log(f"[N={n}] {variant.name}: {note}\n{textwrap.indent(str(exc)[-1500:], '    ')}", quiet)
            continue
        # the DAG file also emits dli_sync; the import-only file builds nothing
        expected = 0 if variant.name == "import" else n + (1 if variant.path == DAG_FILE else 0)
        if variant in shards or sample.dags != expected or sample.errors:
            _check_dags(variant.name, sample, expected, unavailable, quiet)
    variants = [v for v in variants if v.name not in unavailable]
    shards = [v for v in shards if v.name not in unavailable]

    samples: dict[str, list[Sample]] = {v.name: [] for v in [*variants, *shards]}
    shard_walls: list[float] = []
    for run in range(args.runs):
        _log(f"[N={n}] run {run + 1}/{args.runs}", quiet)
        for variant in variants:  # interleaved, so a burst of load on the machine hits every row alike
            samples[variant.name].append(run_one(variant, run))
        if shards:
            start = time.perf_counter()
            with ThreadPoolExecutor(max_workers=args.parallel) as pool:
                futures = [(v.name, pool.submit(run_one, v, run)) for v in shards]
                for name, future in futures:
                    samples[name].append(future.result())
            shard_walls.append(time.perf_counter() - start)

    per_dag = None
    if "floor" in samples and "dli local unchanged" in samples:
        _log(f"[N={n}] per-DAG build in one process ({max(args.runs, 3)} interleaved runs)", quiet)
        per_dag = per_dag_in_process(files["floor"], dict(local_env, AIRFLOW__DLI__CACHE_DIR=str(work / "cache-local")),
                                     max(args.runs, 3))

    rows = [_median_row(name, n, s) for name, s in samples.items() if s]
    rows += [Row(name=name, n=n, note=note) for name, note in unavailable.items()]
    base = next((r for r in rows if r.name == "import" and r.seconds is not None), None)
    for row in rows:
        if base and row.seconds is not None and row.name != "import" and not row.name.startswith("dli shard"):
            row.per_dag_ms = (row.seconds - base.seconds) / n * 1000
    shard_summary = None
    shard_rows = [r for r in rows if r.name.startswith("dli shard") and r.seconds is not None]
    if shard_rows and shard_walls:
        shard_summary = {
            "shards": args.shards,
            "parallel": args.parallel,
            "slowest_shard_s": max(r.seconds for r in shard_rows),
            "sum_s": sum(r.seconds for r in shard_rows),
            "wall_s": statistics.median(shard_walls),
            "peak_rss_mb": max(r.rss_mb for r in shard_rows),
        }
    return {
        "n": n,
        "runs": args.runs,
        "mode": args.mode,
        "store": {"datasets": generated.datasets, "files": generated.files, "spec_and_sql_mb": generated.spec_bytes / 1e6},
        "rows": [asdict(r) for r in _ordered(rows)],
        "ratios": ratios(rows, n),
        "shards": shard_summary,
        "per_dag": per_dag,
    }


def _check_dags(name: str, sample: Sample, expected: int, unavailable: dict[str, str], quiet: bool) -> None:
    """Warn when a variant did not build the DAGs it should; drop it when it built under half of them."""
    if name.startswith("dli shard"):
        if sample.errors:
            _log(f"warning: {name}: import errors: {sample.errors[:2]}", quiet)
        return
    problem = f"built {sample.dags} DAG(s), expected {expected}"
    if sample.errors:
        problem += f"; import errors: {sample.errors[:2]}"
    if sample.dags < expected // 2 or (expected == 0 and sample.dags):
        unavailable[name] = f"n/a ({problem})"
    _log(f"warning: {name}: {problem}", quiet)


def _first_line_of_error(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    for line in reversed(lines):
        if "Error" in line or "error" in line:
            return line[:200]
    return (lines[-1] if lines else "failed")[:200]


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name)


def _dagfactory_missing() -> str:
    import importlib.util

    if importlib.util.find_spec("dagfactory") is None:
        return "n/a (dag-factory not installed: pip install dag-factory)"
    return ""


ORDER = ("import", "floor", "dli local cold", "dli local unchanged", "dli local 1 changed", "dli S3 cold",
         "dli S3 unchanged", "dag-factory")


def _ordered(rows: list[Row]) -> list[Row]:
    return sorted(rows, key=lambda r: (ORDER.index(r.name) if r.name in ORDER else len(ORDER), r.name))


def ratios(rows: list[Row], n: int) -> dict[str, float | None]:
    """The ratios issue 8 judges, from medians of this run (``*_cpu``: the same from CPU time)."""
    by = {r.name: r for r in rows if r.seconds is not None}
    base = by.get("import")

    def value(name: str, attr: str) -> float | None:
        row = by.get(name)
        if row is None:
            return None
        if attr == "per_dag_cpu":
            return (row.cpu_s - base.cpu_s) / n if base and row.cpu_s is not None and base.cpu_s is not None else None
        return getattr(row, attr)

    def ratio(a: str, b: str, attr: str) -> float | None:
        top, bottom = value(a, attr), value(b, attr)
        return top / bottom if top is not None and bottom else None

    out: dict[str, float | None] = {}
    for key, a, b, attr in (
        ("dli_unchanged_over_floor_time", "dli local unchanged", "floor", "seconds"),
        ("dli_unchanged_over_floor_rss", "dli local unchanged", "floor", "rss_mb"),
        ("dli_cold_over_floor_time", "dli local cold", "floor", "seconds"),
        ("dli_cold_over_floor_rss", "dli local cold", "floor", "rss_mb"),
        ("dli_unchanged_over_floor_per_dag", "dli local unchanged", "floor", "per_dag_ms"),
        ("dagfactory_over_dli_unchanged_per_dag", "dag-factory", "dli local unchanged", "per_dag_ms"),
        ("dagfactory_over_dli_cold_per_dag", "dag-factory", "dli local cold", "per_dag_ms"),
        ("s3_unchanged_over_local_unchanged_time", "dli S3 unchanged", "dli local unchanged", "seconds"),
        ("s3_cold_over_local_cold_time", "dli S3 cold", "dli local cold", "seconds"),
        ("one_changed_over_unchanged_time", "dli local 1 changed", "dli local unchanged", "seconds"),
    ):
        out[key] = ratio(a, b, attr)
        cpu_attr = "per_dag_cpu" if attr == "per_dag_ms" else ("cpu_s" if attr == "seconds" else None)
        if cpu_attr:
            out[key + "_cpu"] = ratio(a, b, cpu_attr)
    return out


# ------------------------------------------------------------------------------------------ printing


def _fmt(value: float | None, spec: str) -> str:
    return "" if value is None else format(value, spec)


def table(result: dict[str, Any]) -> str:
    n = result["n"]
    store = result["store"]
    if not result["rows"]:  # --per-dag-only
        lines = [f"N = {n:,} datasets ({store['files']:,} files, {store['spec_and_sql_mb']:.1f} MB of YAML and SQL)"]
        judged = n >= 1000 and result.get("runs", 0) >= 5
        return "\n".join(lines + _per_dag_lines(result, judged))
    lines = [
        f"N = {n:,} datasets ({store['files']:,} files, {store['spec_and_sql_mb']:.1f} MB of YAML and SQL). "
        "time: median wall time of the whole process; best: fastest run; CPU: median user+system time; "
        "per-DAG = (time - import) / N; ratios from median wall times (CPU-time ratio in brackets)",
        "",
        "| variant | time s | best s | CPU s | peak RSS MB | per-DAG ms | DAGs | runs |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in result["rows"]:
        if row["seconds"] is None:
            lines.append(f"| {row['name']} | {row['note']} | | | | | | |")
            continue
        name = row["name"]
        if row.get("parses", 1) > 1:
            name += f" ({row['parses']} parses, longest {row['longest_s']:.2f} s)"
        lines.append(
            f"| {name} | {row['seconds']:.2f} | {row['best_s']:.2f} | {row['cpu_s']:.2f} | {row['rss_mb']:.0f} "
            f"| {_fmt(row['per_dag_ms'], '.2f')} "
            f"| {row['dags']} | {row['runs']} |"
        )
    r = result["ratios"]
    lines += ["", "| ratio | value | target |", "|---|---:|---|"]
    targets = [
        ("dli unchanged / floor, time", "dli_unchanged_over_floor_time", "<= 1.3", lambda v: v <= 1.3),
        ("dli unchanged / floor, peak RSS", "dli_unchanged_over_floor_rss", "<= 1.2", lambda v: v <= 1.2),
        ("dli cold / floor, time", "dli_cold_over_floor_time", "(info)", None),
        ("dli cold / floor, peak RSS", "dli_cold_over_floor_rss", "(info)", None),
        ("dli unchanged / floor, per-DAG", "dli_unchanged_over_floor_per_dag", "(info)", None),
        ("dag-factory / dli unchanged, per-DAG", "dagfactory_over_dli_unchanged_per_dag", ">= 2.5", lambda v: v >= 2.5),
        ("dag-factory / dli cold, per-DAG", "dagfactory_over_dli_cold_per_dag", "(info)", None),
        ("S3 unchanged / local unchanged, time", "s3_unchanged_over_local_unchanged_time", "<= 1.2", lambda v: v <= 1.2),
        ("S3 cold / local cold, time", "s3_cold_over_local_cold_time", "(info)", None),
        ("1 spec changed / unchanged, time", "one_changed_over_unchanged_time", "(info)", None),
    ]
    judged = n >= 1000 and result.get("runs", 0) >= 5
    for label, key, target, check in targets:
        value = r.get(key)
        verdict = ""
        if value is not None and check is not None:
            verdict = (" holds" if check(value) else " MISSED") if judged else " (not judged: N < 1000 or < 5 runs)"
        cpu = r.get(key + "_cpu")
        shown = _fmt(value, ".2f") + (f" ({cpu:.2f})" if cpu is not None else "")
        lines.append(f"| {label} | {shown} | {target}{verdict} |")
    by = {row["name"]: row for row in result["rows"]}
    worst = max(
        (row["longest_s"] if row.get("parses", 1) > 1 else row["seconds"]) or 0
        for name, row in by.items() if name.startswith("dli")
    )
    floor = by.get("floor", {}).get("seconds")
    lines.append(
        f"| slowest dli parse / import timeout ({IMPORT_TIMEOUT_S:.0f} s) | {worst / IMPORT_TIMEOUT_S:.2f} | "
        f"well inside{' (floor ' + format(floor / IMPORT_TIMEOUT_S, '.2f') + ')' if floor else ''} |"
    )
    lines += _per_dag_lines(result, judged)
    shards = result.get("shards")
    if shards:
        lines += [
            "",
            f"Sharded over {shards['shards']} DAG files (unchanged local store), {shards['parallel']} parsed at a time: "
            f"slowest shard {shards['slowest_shard_s']:.2f} s, sum {shards['sum_s']:.2f} s, "
            f"wall {shards['wall_s']:.2f} s, peak RSS per shard {shards['peak_rss_mb']:.0f} MB.",
        ]
    return "\n".join(lines)


def _per_dag_lines(result: dict[str, Any], judged: bool) -> list[str]:
    """The in-process per-DAG table (issue 15's warm per-DAG target) and what each part of dli's work costs."""
    per_dag = result.get("per_dag")
    if not per_dag:
        return []
    ms = per_dag["ms_per_dag"]
    ratio = ms["dli"] / ms["floor"]
    verdict = (" holds" if ratio <= 1.1 else " MISSED") if judged else " (not judged: N < 1000 or < 5 runs)"
    return [
        "",
        f"Per-DAG build in one process (CPU ms per DAG, medians of {per_dag['runs']} interleaved builds of all "
        f"{per_dag['n']:,} DAGs; unchanged store; the fixed import paid before measuring):",
        "",
        "| build | ms per DAG |",
        "|---|---:|",
        *(f"| {k} | {v:.3f} |" for k, v in ms.items()),
        f"| **dli / floor** | **{ratio:.2f}** (target <= 1.1{verdict}) |",
        "",
        "| part of dli's own per-DAG work | ms per DAG |",
        "|---|---:|",
        *(f"| {k} | {v:.3f} |" for k, v in per_dag["pieces_ms_per_dag"].items()),
    ]


def render(document: dict[str, Any], *, tables: bool = True) -> str:
    """The tables, the machine line and the profile of a whole result document."""
    info = document["machine"]
    parts = [table(result) + "\n" for result in document["results"]] if tables else []
    parts.append(
        f"Machine: {info['nproc']} CPU ({info['cpu']}), Python {info['python']}, Airflow {info['airflow']}, "
        f"dag-factory {info['dag_factory']}, {info['date']}, load average at start {info['load_avg']}; "
        f"mode {document['mode']}, {document['runs']} run(s)"
    )
    if document.get("profile"):
        parts += ["", document["profile"]]
    return "\n".join(parts)


def machine() -> dict[str, Any]:
    model = ""
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
    except OSError:
        pass
    airflow = dagfactory = None
    try:
        from importlib.metadata import version

        airflow = version("apache-airflow")
        dagfactory = version("dag-factory")
    except Exception:
        pass
    return {
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "nproc": os.cpu_count(),
        "cpu": model or platform.processor(),
        "python": platform.python_version(),
        "airflow": airflow,
        "dag_factory": dagfactory,
        "load_avg": [round(x, 2) for x in os.getloadavg()],
    }


# ------------------------------------------------------------------------------------------ profiling


def profile(n: int, tmp: Path, top: int, mode: str = "import", corpus: str = "mix") -> str:
    """Where the dli DAG file's parse goes, on an unchanged and on a cold local store.

    Two profiled parses of each: a wall-clock stack sampler that splits the time between ours (the
    innermost ``dli_airflow`` frame, with the yaml/jinja2/pydantic calls it makes) and Airflow's (the
    innermost ``airflow`` frame, with the jsonschema calls it makes), and cProfile for exact call counts
    of our functions.
    """
    import pstats

    work = tmp / f"profile-n{n}"
    store = work / "store"
    generate_store(store, n, corpus=corpus)
    env = base_env(work)
    env["AIRFLOW__DLI__SPEC_STORE"] = str(store)
    warm_cache = work / "cache-warm"
    measure(DAG_FILE, dict(env, AIRFLOW__DLI__CACHE_DIR=str(warm_cache)))  # prime
    out: list[str] = []
    for label, cache in (("unchanged", warm_cache), ("cold", work / "cache-cold")):
        shutil.rmtree(work / "cache-cold", ignore_errors=True)
        sample_file = work / f"{label}.samples.json"
        plain = measure(DAG_FILE, dict(env, AIRFLOW__DLI__CACHE_DIR=str(cache)), mode=mode)
        shutil.rmtree(work / "cache-cold", ignore_errors=True)
        measure(DAG_FILE, dict(env, AIRFLOW__DLI__CACHE_DIR=str(cache)), mode=mode, profile=sample_file)
        data = json.loads(sample_file.read_text())
        step = data["interval"]
        by_kind: dict[str, int] = {}
        ours: dict[str, int] = {}
        entries: dict[str, int] = {}
        leaves: dict[str, int] = {}
        for kind, where, entry, count in data["samples"]:
            by_kind[kind] = by_kind.get(kind, 0) + count
            if kind == "dli":
                ours[where] = ours.get(where, 0) + count
            elif kind == "airflow":
                entries[entry] = entries.get(entry, 0) + count
                leaves[where] = leaves.get(where, 0) + count
        total = sum(by_kind.values()) or 1
        out.append(f"### dli DAG file, N={n:,}, {label} store ({plain.seconds:.2f} s unprofiled, whole process)")
        out.append(
            "sampled after interpreter start: "
            + ", ".join(f"{k} {v * step:.2f} s ({100 * v / total:.0f} %)" for k, v in sorted(by_kind.items(), key=lambda kv: -kv[1]))
        )
        out.append("")
        out.append("ours: innermost dli_airflow function (with the library calls it makes), seconds")
        out += [f"  {v * step:6.2f}  {k}" for k, v in sorted(ours.items(), key=lambda kv: -kv[1])[:top]]
        out.append("Airflow's, by entry point (the outermost Airflow frame), seconds")
        out += [f"  {v * step:6.2f}  {_short(k)}" for k, v in sorted(entries.items(), key=lambda kv: -kv[1])[:top]]
        out.append("Airflow's, by innermost Airflow function, seconds")
        out += [f"  {v * step:6.2f}  {_short(k)}" for k, v in sorted(leaves.items(), key=lambda kv: -kv[1])[:top]]
        prof = work / f"{label}.prof"
        shutil.rmtree(work / "cache-cold", ignore_errors=True)
        measure(DAG_FILE, dict(env, AIRFLOW__DLI__CACHE_DIR=str(cache)), mode=mode, profile=prof)
        stats = pstats.Stats(str(prof)).stats  # type: ignore[attr-defined]
        mine = sorted(
            ((ct, tt, nc, f"{file[file.index('dli_airflow/'):]}:{func}")
             for (file, _line, func), (_cc, nc, tt, ct, _c) in stats.items() if "/dli_airflow/" in file),
            reverse=True,
        )[:top]
        out.append("cProfile, our functions by cumulative time (profiler overhead included): cum s | self s | calls")
        out += [f"  {ct:7.3f} | {tt:6.3f} | {nc:6d} | {name}" for ct, tt, nc, name in mine]
        out.append("")
    return "\n".join(out)


def _short(file: str) -> str:
    for marker in ("site-packages/", "dist-packages/"):
        if marker in file:
            return file.split(marker, 1)[1]
    return file


# ---------------------------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, nargs="+", default=[1000], help="dataset counts (default 1000)")
    parser.add_argument("--runs", type=int, default=5, help="measured runs per variant; medians (default 5)")
    parser.add_argument("--quick", action="store_true", help="smoke test: N=20, 1 run (CI; no judging of time)")
    parser.add_argument("--no-dagfactory", action="store_true", help="skip the dag-factory row (the slowest)")
    parser.add_argument("--no-s3", action="store_true", help="skip the S3 rows")
    parser.add_argument("--corpus", choices=CORPORA, default="mix",
                        help="mix: the realistic mix (default); plain: two parameters, inline SQL, no notifications")
    parser.add_argument("--shards", type=int, default=0, help="also measure the factory sharded over K DAG files")
    parser.add_argument("--parallel", type=int, default=os.cpu_count() or 2, help="shards parsed at a time (default nproc)")
    parser.add_argument(
        "--mode", choices=("import", "processor"), default="import",
        help="import: the DAG file's import (default); processor: Airflow's DagBag import and DAG serialization, "
        "the whole parse the dag-processor does",
    )
    parser.add_argument("--per-dag-only", action="store_true",
                        help="only the in-process per-DAG comparison with the floor (no fresh-process rows)")
    parser.add_argument("--profile", action="store_true", help="also profile the dli DAG file (unchanged and cold store)")
    parser.add_argument("--profile-n", type=int, default=1000, help="datasets in the profiled store (default 1000)")
    parser.add_argument("--profile-top", type=int, default=15)
    parser.add_argument("--json", action="store_true", help="print the results as JSON instead of tables")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (stores, DAG files, caches)")
    parser.add_argument("--from-json", type=Path, metavar="FILE", help="print the tables of a saved --json result")
    args = parser.parse_args(argv)
    if args.from_json:
        text = args.from_json.read_text(encoding="utf-8")
        start = 0 if text.startswith("{") else text.index("\n{") + 1  # skip log lines of a redirected run
        print(render(json.loads(text[start:])))
        return 0
    if args.quick:
        args.n, args.runs, args.profile_n = [20], 1, 20
    if args.shards == 1 or args.shards < 0:
        parser.error("--shards needs 2 or more")

    # Airflow, imported here to build the floor's data, logs to stdout: results go to the real stdout,
    # everything else (progress, Airflow's and dag-factory's logs) to stderr
    out = sys.stdout
    sys.stdout = sys.stderr
    tmp = Path(tempfile.mkdtemp(prefix="dli-bench-parse-"))
    moto: MotoServer | None = None
    moto_note = "skipped (--no-s3)"
    results: list[dict[str, Any]] = []
    try:
        if not args.no_s3:
            try:
                import boto3  # noqa: F401

                import dli_airflow.s3store  # noqa: F401

                moto = MotoServer(tmp / "moto.log").start()
            except ImportError as exc:
                moto_note = f"n/a (S3 store not available: {exc})"
            except RuntimeError as exc:
                moto_note = f"n/a (moto server did not start: {str(exc)[:120]})"
        info = machine()
        _log(f"machine: {info}", False)
        # one unmeasured Airflow import: bytecode and AIRFLOW_HOME set up before anything is timed
        warm = base_env(tmp / "warmup")
        (tmp / "warmup" / "dags").mkdir(parents=True, exist_ok=True)
        probe = tmp / "warmup" / "dags" / "bench_import_only.py"
        probe.write_text(IMPORT_ONLY_PY, encoding="utf-8")
        measure(probe, warm)
        for n in args.n:
            result = bench_n(n, args, tmp, moto, moto_note)
            results.append(result)
            # the tables as each N finishes (on stderr with --json, so stdout stays one JSON document)
            print(table(result) + "\n", file=sys.stderr if args.json else out, flush=True)
        prof_text = profile(args.profile_n, tmp, args.profile_top, args.mode, args.corpus) if args.profile else None
        document = {"machine": info, "mode": args.mode, "runs": args.runs, "results": results, "profile": prof_text}
        if args.json:
            print(json.dumps(document, indent=2), file=out)
        else:
            print(render(document, tables=False), file=out)
    finally:
        if moto is not None:
            moto.stop()
        if args.keep:
            _log(f"kept {tmp}", False)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
