"""The Celery tier: CeleryExecutor + PostgreSQL 15 + Redis + two Celery workers + moto S3, all real, on 127.0.0.1.

The store is published to S3 with ``dli spec publish`` (``manual/`` written by hand, as registration does);
each worker has its own cache folder, empty at start, like a pod. Checks: a run lands on a worker and
completes; a 5-date backfill runs in order across both workers; stop → KILLED with the task process gone;
a publish of a changed release is picked up and no DAG disappears meanwhile; a 60 s store outage keeps
every DAG; what the nine services (with the triggerer dli dev up starts) cost in memory.
"""

from __future__ import annotations

import shutil
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from celery_support import Postgres, Redis, Workers, pss_mib
from e2e_support import query_duckdb, wait_until

from dli_airflow import dev
from dli_airflow.client import WorkflowClient
from dli_airflow.workflow import RunStatus

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO / "tests" / "integration"))
from s3_support import ACCESS_KEY, REGION, SECRET_KEY, MotoServer, S3Proxy, aws_connection, upload  # noqa: E402

BUCKET = "dli-celery"
PREFIX = "prod"
WORKERS = ("w1", "w2")


@dataclass
class CeleryStack:
    url: str
    home: Path
    username: str
    password: str
    src: Path
    store_url: str
    moto: MotoServer
    proxy: S3Proxy
    workers: Workers
    postgres: Postgres
    redis: Redis
    processes: dict[str, int]

    def client(self) -> WorkflowClient:
        return WorkflowClient(url=self.url, username=self.username, password=self.password)

    def api(self) -> httpx.Client:
        token = dev.get_token(self.url, self.username, self.password)
        return httpx.Client(base_url=f"{self.url}/api/v2", headers={"Authorization": f"Bearer {token}"}, timeout=30)

    def dag_ids(self) -> set[str]:
        with self.api() as api:
            dags = api.get("/dags", params={"limit": 100}).raise_for_status().json()["dags"]
        return {d["dag_id"] for d in dags}

    def hostnames(self, dag_id: str, run_id: str) -> list[str]:
        with self.api() as api:
            tis = api.get(f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances").raise_for_status().json()
        return [ti["hostname"] for ti in tis["task_instances"]]


def _publish(src: Path, store_url: str, endpoint: str) -> Any:
    import boto3

    from dli_airflow import publish as releases
    from dli_airflow.s3store import S3Store

    client = boto3.client("s3", endpoint_url=endpoint, region_name=REGION, aws_access_key_id=ACCESS_KEY,
                          aws_secret_access_key=SECRET_KEY)
    store = S3Store(store_url, client=client)
    plan = releases.plan(src, store)
    assert plan.ok, [p.render() for p in plan.problems]
    releases.apply(plan, store)
    return plan


@pytest.fixture(scope="module")
def celery(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CeleryStack]:
    root = tmp_path_factory.mktemp("celery")
    local = root / "store"
    shutil.copytree(REPO / "examples" / "store", local)
    shutil.copytree(HERE / "store", local, dirs_exist_ok=True)
    postgres = Postgres(root / "pg", dev.free_port())
    redis = Redis(root / "redis", dev.free_port())
    (root / "moto").mkdir()
    moto = MotoServer(root / "moto")
    proxy: S3Proxy | None = None
    workers: Workers | None = None
    home = root / "home"
    started = False
    try:
        postgres.start()
        redis.start()
        moto.start()
        proxy = S3Proxy(moto.port).start()
        moto.client().create_bucket(Bucket=BUCKET)
        store_url = f"s3://{BUCKET}/{PREFIX}"
        _publish(local / "code", store_url, moto.url)
        upload(moto.client(), BUCKET, {p.relative_to(local).as_posix(): p.read_bytes()
                                       for p in (local / "manual").rglob("*") if p.is_file()}, prefix=f"{PREFIX}/")
        extra = {
            "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": postgres.url,
            "AIRFLOW__CELERY__BROKER_URL": redis.url,
            "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + postgres.url,  # psycopg2 named: SQLAlchemy 2.1 defaults to psycopg 3
            "AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__VISIBILITY_TIMEOUT": "3600",
            "AIRFLOW_CONN_AWS_DEFAULT": aws_connection(proxy.url),
            "AIRFLOW__DLI__CACHE_DIR": str(root / "cache-control"),
            "AWS_EC2_METADATA_DISABLED": "true",
        }
        status = dev.up(store=store_url, home=home, port=dev.free_port(), timeout=300,
                        expected_dag_ids=dev.expected_dag_ids(str(local)), extra_env=extra)
        from dli_airflow.dev._home import _airflow_env, _load_state, _Paths

        paths = _Paths(home)
        env = _airflow_env(paths, _load_state(paths), store_url, extra, "celery-tier")
        workers = Workers(home, env)
        for name in WORKERS:  # each worker its own, empty cache: a fresh pod
            workers.env = dict(env, AIRFLOW__DLI__CACHE_DIR=str(root / f"cache-{name}"))
            workers.start(name)
        processes = dict(dev.status(home).processes)
        stack = CeleryStack(
            url=status.url, home=home, username=status.username, password=status.password, src=local / "code",
            store_url=store_url, moto=moto, proxy=proxy, workers=workers, postgres=postgres, redis=redis,
            processes={name: p.pid for name, p in processes.items()},
        )
        started = True
        yield stack
    except Exception:
        if not started:
            sys.stderr.write(f"\nthe Celery tier did not start; logs under {root}:\n{dev.log_tails(home, lines=40)}\n"
                             f"{workers.logs() if workers else ''}\n")
        raise
    finally:
        if workers is not None:
            workers.stop()
        dev.down(home)
        if proxy is not None:
            proxy.stop()
        moto.stop()
        redis.stop()
        postgres.stop()


def _final(client: WorkflowClient, run_id: str, timeout: float = 240):
    return list(client.watch(run_id, poll=1.0, timeout=timeout))[-1]


def test_a_run_lands_on_a_celery_worker_and_completes(celery: CeleryStack) -> None:
    with celery.client() as client:
        result = client.run("e2e.daily", {"execution_date": "2023-06-01", "label": "celery"})
        final = _final(client, result.run_id)
    assert final.status is RunStatus.COMPLETED, final
    assert celery.hostnames("e2e.daily", result.run_id)[0] in WORKERS


def test_a_backfill_runs_in_order_across_both_workers(celery: CeleryStack) -> None:
    with celery.client() as client:
        result = client.backfill("e2e.daily", "2024-05-01", "2024-05-05", {"label": "celery-bf"})
        runs = client.wait_backfill(result, poll=1.0, timeout=400)
    assert [r.status for r in runs] == [RunStatus.COMPLETED] * 5
    days = query_duckdb(celery.home / "dli.duckdb", "SELECT d FROM e2e_daily_log WHERE label = 'celery-bf' ORDER BY ts")
    assert [d[0].isoformat() for d in days] == [f"2024-05-0{i}" for i in range(1, 6)]
    hosts = [h for r in runs for h in celery.hostnames("e2e.daily", r.run_id)]
    # Redis serves blocked workers in turn, and runs of a backfill go one at a time: both take part
    assert set(hosts) == set(WORKERS), hosts


def test_stop_is_killed_and_the_task_process_is_gone(celery: CeleryStack) -> None:
    with celery.client() as client:
        result = client.run("e2e.slow")

        def running_pid() -> int | None:
            status = client.get_status(result.run_id)
            task = status.tasks[0] if status.tasks else None
            return task.pid if task is not None and task.state == "running" and task.pid else None

        pid = wait_until(running_pid, 180, interval=0.5, what="the slow task to run on a worker")
        assert Path(f"/proc/{pid}").exists()
        stopped = client.stop(result.run_id, wait=20)
        assert stopped.run_status is RunStatus.KILLED
        wait_until(lambda: not Path(f"/proc/{pid}").exists(), 40, interval=0.5, what=f"task process {pid} to be gone")
        assert client.get_status(result.run_id).status is RunStatus.KILLED


def test_a_published_release_is_picked_up_with_no_dag_lost_meanwhile(celery: CeleryStack) -> None:
    before = celery.dag_ids()
    seen: list[set[str]] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            seen.append(celery.dag_ids())
            time.sleep(1)

    (celery.src / "e2e" / "released.yaml").write_text(
        "name: e2e.released\nowner: tests@example.com\nquery: SELECT 42 AS answer\n"
    )
    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        plan = _publish(celery.src, celery.store_url, celery.moto.url)
        assert plan.datasets_added == ("e2e.released",)
        wait_until(lambda: "e2e.released" in celery.dag_ids(), 120, interval=1, what="the published DAG")
    finally:
        stop.set()
        watcher.join(10)
    assert all(before <= ids for ids in seen), "a DAG disappeared while the release was published"
    with celery.client() as client:
        final = _final(client, client.run("e2e.released").run_id)
    assert final.status is RunStatus.COMPLETED


def test_a_60_s_store_outage_keeps_every_dag(celery: CeleryStack) -> None:
    before = celery.dag_ids()
    celery.proxy.fail(500)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert celery.dag_ids() == before
            time.sleep(5)
        # the DAG file's own log (the dag-processor writes one per file) names the outage and the last good copy
        logs = "".join(p.read_text(errors="replace")
                       for p in (celery.home / "logs" / "dag_processor").rglob("dli_datasets.py.log"))
        assert "serving the last good copy" in logs
    finally:
        celery.proxy.heal()
    with celery.client() as client:  # a worker whose cache holds the DAG runs it right after
        final = _final(client, client.run("e2e.daily", {"execution_date": "2023-06-02"}).run_id)
    assert final.status is RunStatus.COMPLETED
    assert celery.dag_ids() == before


def test_the_nine_services_fit_the_machine(celery: CeleryStack, capsys: pytest.CaptureFixture[str]) -> None:
    services = {**celery.processes, **{f"celery worker {n}": p for n, p in celery.workers.pids().items()},
                "postgres": celery.postgres.proc.pid, "redis": celery.redis.proc.pid, "moto": celery.moto.proc.pid}
    memory = {name: pss_mib(pid) for name, pid in services.items()}
    total = sum(memory.values())
    with capsys.disabled():
        print("\nCelery tier memory (PSS, MiB, each with its children): "
              + ", ".join(f"{n} {m:.0f}" for n, m in memory.items()) + f"; total {total:.0f}")
    assert len(memory) == 9 and all(m > 1 for m in memory.values()), memory  # the triggerer came with dev up
    assert total < 12 * 1024  # half of the machine's 24 GiB
