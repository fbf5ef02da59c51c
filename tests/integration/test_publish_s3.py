"""``dli spec publish`` to moto's real S3 server, every request counted at a proxy in front of it.

What it costs readers afterwards (an unchanged store: the index's conditional GET, answered 304, and the
``manual/`` listing; a cold reader: the index and the bundle; a worker: the index and its dataset's two
objects), that the switch is one conditional ``PutObject`` (a lost race is DLI-804), that the publish's
writes stay under ``code/``, and the CLI with plain AWS credentials (what a CI job has).
"""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
from pathlib import Path

import pytest
from s3_support import (  # noqa: F401  (fixtures)
    ACCESS_KEY,
    REGION,
    SECRET_KEY,
    MotoServer,
    S3Proxy,
    moto_server,
    s3_bucket,
    s3_env,
    s3_proxy,
    upload,
)

from dli_airflow import publish as releases
from dli_airflow.cache import load_snapshot
from dli_airflow.catalog import open_store
from dli_airflow.errors import ReleaseConflictError
from dli_airflow.factory import build_dags
from dli_airflow.release import BUNDLE_DIR, INDEX_PATH

pytestmark = pytest.mark.integration
PREFIX = "dli/"


def spec(name: str, *, sql_file: str | None = None) -> str:
    body = f"query_file: {sql_file}" if sql_file else "query: SELECT 1 AS x"
    return textwrap.dedent(
        f"""\
        name: {name}
        owner: tests@example.com
        {body}
        schedule:
          cron: "0 9 * * *"
        """
    )


def make_source(root: Path, count: int, *, version: int = 1) -> Path:
    for n in range(count):
        folder = root / f"team{n % 3}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"ds{n}.yaml").write_text(spec(f"team{n % 3}.ds{n}", sql_file=f"ds{n}.sql"))
        (folder / f"ds{n}.sql").write_text(f"SELECT {version} AS v{n}\n")
    return root


@pytest.fixture
def store_url(moto_server: MotoServer, s3_bucket: str, s3_env: Path) -> str:
    upload(moto_server.client(), s3_bucket, {"manual/adhoc.yaml": spec("reports.adhoc"),
                                             "manual/team0.ds0.yaml": spec("team0.ds0")}, prefix=PREFIX)
    return f"s3://{s3_bucket}/{PREFIX.rstrip('/')}"


def publish(src: Path, url: str) -> releases.Plan:
    store = open_store(url)
    plan = releases.plan(src, store)
    assert plan.ok, [p.render() for p in plan.problems]
    releases.apply(plan, store)
    return plan


def test_readers_of_a_published_store_pay_o1_requests(tmp_path, store_url, s3_proxy: S3Proxy, s3_env: Path):
    src = make_source(tmp_path / "src", 30)
    plan = publish(src, store_url)
    assert plan.overridden == ("team0.ds0",)
    writes = s3_proxy.writes()
    keys = [r.key for r in writes if r.method == "PUT"]
    assert all(k.startswith(f"{PREFIX}code/") for k in keys), keys
    # SQL before specs, then the bundle, then the index: the switch is the last write
    puts = [k[len(PREFIX):] for k in keys if ".dli-probe" not in k]
    assert puts[-1] == INDEX_PATH and puts[-2].startswith(BUNDLE_DIR)
    sql_at = [i for i, k in enumerate(puts) if k.endswith(".sql")]
    spec_at = [i for i, k in enumerate(puts) if k.endswith(".yaml")]
    assert len(sql_at) == len(spec_at) == 30 and max(sql_at) < min(spec_at) and len(puts) == 62

    # a cold dag-processor: the index, the bundle, the manual/ listing and the two manual specs
    s3_proxy.reset()
    snapshot = load_snapshot(store_url)
    assert len(snapshot.active) == 31 and snapshot.get("team0.ds0").source.value == "code"
    gets = [r.key[len(PREFIX):] for r in s3_proxy.gets()]
    assert gets[:2] == [INDEX_PATH, plan.index.bundle] and sorted(gets[2:]) == ["manual/adhoc.yaml",
                                                                                  "manual/team0.ds0.yaml"]
    assert [r.prefix for r in s3_proxy.lists()] == [f"{PREFIX}manual/"], s3_proxy.summary()

    # unchanged: the index's conditional GET (304) and the manual/ listing, nothing else
    for _ in range(2):
        s3_proxy.reset()
        assert load_snapshot(store_url).entries == snapshot.entries
        assert len(s3_proxy.requests) == 2, s3_proxy.summary()
        (index_get,) = s3_proxy.gets()
        assert index_get.key.endswith(INDEX_PATH) and index_get.headers.get("if-none-match")
        assert s3_proxy.bytes_answered(INDEX_PATH) == 0  # 304: not transferred again

    # one changed spec published: the index, and that spec's changed object only
    (src / "team1/ds1.sql").write_text("SELECT 99 AS v1\n")
    publish(src, store_url)
    s3_proxy.reset()
    assert load_snapshot(store_url).get("team1.ds1").sql == "SELECT 99 AS v1\n"
    assert len(s3_proxy.requests) <= 4, s3_proxy.summary()
    assert [r.key[len(PREFIX):] for r in s3_proxy.gets()] == [INDEX_PATH, "code/team1/ds1.sql"]


def test_a_cold_worker_reads_the_index_and_its_dataset_only(tmp_path, store_url, s3_proxy, s3_env, monkeypatch):
    publish(make_source(tmp_path / "src", 30), store_url)
    monkeypatch.setenv("_AIRFLOW_PARSING_CONTEXT_DAG_ID", "team2.ds5")
    s3_proxy.reset()
    dags = build_dags(store_url)
    assert set(dags) == {"team2.ds5"}
    gets = [r.key[len(PREFIX):] for r in s3_proxy.gets()]
    assert gets[0] == INDEX_PATH and sorted(gets[1:]) == ["code/team2/ds5.sql", "code/team2/ds5.yaml"], gets
    assert len(s3_proxy.requests) == 3
    # a manual dataset: the index, the manual/ listing and its spec
    monkeypatch.setenv("_AIRFLOW_PARSING_CONTEXT_DAG_ID", "reports.adhoc")
    for cache in (s3_env / "fresh",):
        monkeypatch.setenv("AIRFLOW__DLI__CACHE_DIR", str(cache))
        s3_proxy.reset()
        assert "reports.adhoc" in build_dags(store_url)
        assert len(s3_proxy.requests) <= 4, s3_proxy.summary()


def test_a_lost_switch_is_dli_804_and_the_winner_stays(tmp_path, store_url, s3_proxy, s3_env):
    publish(make_source(tmp_path / "one", 3), store_url)
    store = open_store(store_url)
    mine = releases.plan(make_source(tmp_path / "two", 3, version=2), store)
    theirs = releases.plan(make_source(tmp_path / "three", 3, version=3), store)
    releases.apply(theirs, store)
    with pytest.raises(ReleaseConflictError):
        releases.apply(mine, store)
    assert load_snapshot(store_url).get("team0.ds0").sql == "SELECT 3 AS v0\n"


def test_cli_publishes_with_the_aws_environment_and_writes_only_code(tmp_path, store_url, moto_server, s3_bucket,
                                                                     dli_command):
    src = make_source(tmp_path / "src", 4)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "AIRFLOW_CONN_", "AIRFLOW__DLI__"))}
    env.update(AIRFLOW_HOME=str(tmp_path / "home"), AWS_EC2_METADATA_DISABLED="true",
               AWS_CONFIG_FILE=str(tmp_path / "none"), AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"),
               AWS_ACCESS_KEY_ID=ACCESS_KEY, AWS_SECRET_ACCESS_KEY=SECRET_KEY, AWS_DEFAULT_REGION=REGION,
               AWS_ENDPOINT_URL=moto_server.url, GITHUB_SHA="0123abc")
    client = moto_server.client()
    manual_before = {o["Key"]: o["ETag"] for o in client.list_objects_v2(Bucket=s3_bucket,
                                                                        Prefix=f"{PREFIX}manual/")["Contents"]}
    dry = subprocess.run([*dli_command, "spec", "publish", str(src), "--store", store_url, "--dry-run",
                          "--format", "json"], env=env, capture_output=True, text=True, timeout=120)
    assert dry.returncode == 0, dry.stderr
    assert json.loads(dry.stdout)["datasets"]["added"] == sorted(f"team{n % 3}.ds{n}" for n in range(4))
    assert "Contents" not in client.list_objects_v2(Bucket=s3_bucket, Prefix=f"{PREFIX}code/")
    done = subprocess.run([*dli_command, "spec", "publish", str(src), "--store", store_url], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "Published release" in done.stdout and "team0.ds0" in done.stdout
    index = json.loads(client.get_object(Bucket=s3_bucket, Key=f"{PREFIX}{INDEX_PATH}")["Body"].read())
    assert index["source"] == "0123abc" and len(index["datasets"]) == 4
    manual_after = {o["Key"]: o["ETag"] for o in client.list_objects_v2(Bucket=s3_bucket,
                                                                       Prefix=f"{PREFIX}manual/")["Contents"]}
    assert manual_after == manual_before
    (src / "team0/ds0.yaml").write_text("name: team0.ds0\nowner: x\nquery: SELECT 1\nschedule: {cron: '0 9 * *'}\n")
    bad = subprocess.run([*dli_command, "spec", "publish", str(src), "--store", store_url], env=env,
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 1 and "ds0.yaml" in bad.stderr and "schedule.cron" in bad.stderr
    assert json.loads(client.get_object(Bucket=s3_bucket, Key=f"{PREFIX}{INDEX_PATH}")["Body"].read()) == index


def test_a_hand_written_store_costs_what_it_did_until_its_first_publish(tmp_path, store_url, s3_proxy, s3_env,
                                                                        moto_server, s3_bucket):
    upload(moto_server.client(), s3_bucket, {"code/hand/a.yaml": spec("hand.a")}, prefix=PREFIX)
    load_snapshot(store_url)  # a cold reader asks for an index once (404) and remembers there is none
    s3_proxy.reset()
    assert {e.name for e in load_snapshot(store_url).active} == {"hand.a", "reports.adhoc", "team0.ds0"}
    assert s3_proxy.gets() == [] and len(s3_proxy.lists()) == 2, s3_proxy.summary()  # as before releases
    publish(make_source(tmp_path / "src", 3), store_url)
    s3_proxy.reset()
    snapshot = load_snapshot(store_url)  # the code/ listing shows the new index: readers switch to it
    assert "hand.a" not in {e.name for e in snapshot.active} and "team2.ds2" in {e.name for e in snapshot.active}
    assert [r.key[len(PREFIX):] for r in s3_proxy.gets()][:1] == [INDEX_PATH]
    s3_proxy.reset()
    load_snapshot(store_url)
    assert len(s3_proxy.requests) == 2 and [r.prefix for r in s3_proxy.lists()] == [f"{PREFIX}manual/"]


WORKER_PROBE = r"""
import json, sys
from dli_airflow.factory import build_dags
dags = build_dags(sys.argv[1])
name = sys.argv[2]
found = {"dags": sorted(dags), "sqlglot": "sqlglot" in sys.modules,
         "aws_hook": "airflow.providers.amazon.aws.hooks.base_aws" in sys.modules, "boto3": "boto3" in sys.modules}
task = dags[name].tasks[0]
try:
    task._render({"params": {}, "dag_run": None, "logical_date": None})
    found["render"] = "rendered"
except Exception as exc:
    found["render"] = getattr(exc, "code", None) and exc.code.value
    found["message"] = str(exc)
print(json.dumps(found))
"""


@pytest.mark.hostile(kind="injection")
def test_a_cold_worker_builds_its_dag_without_sqlglot_or_the_aws_hook_and_its_render_still_checks(
    tmp_path, store_url, s3_proxy, s3_env, monkeypatch
):
    """A task's worker builds its one DAG from the release without importing sqlglot (the template check is
    its render's, which runs before any SQL) or Airflow's AWS hook (a plain connection: keys, region and
    endpoint go straight to botocore). A release whose template a laxer publisher let through (an older dli,
    say) still never runs: the render refuses it with DLI-205, naming the file."""
    import sys

    from dli_airflow import render

    src = make_source(tmp_path / "src", 4)
    (src / "team1" / "ds1.yaml").write_text(spec("team1.ds1", sql_file="ds1.sql").replace(
        "schedule:", "parameters:\n  - name: who\n    type: string\n    default: x\nschedule:"))
    (src / "team1" / "ds1.sql").write_text("SELECT '{{ who }}' AS v\n")  # a placeholder inside a string
    with monkeypatch.context() as lax:
        lax.setattr(render, "check_template", lambda sql, spec, path: None)
        publish(src, store_url)
    env = {**os.environ, "_AIRFLOW_PARSING_CONTEXT_DAG_ID": "team1.ds1"}
    for name, rendered in (("team1.ds1", "DLI-205"), ("team2.ds2", "rendered")):
        env.update(_AIRFLOW_PARSING_CONTEXT_DAG_ID=name, AIRFLOW__DLI__CACHE_DIR=str(tmp_path / f"cache-{name}"))
        s3_proxy.reset()
        done = subprocess.run([sys.executable, "-c", WORKER_PROBE, store_url, name], env=env, capture_output=True,
                              text=True, timeout=120)
        assert done.returncode == 0, done.stderr[-2000:]
        found = json.loads(done.stdout.strip().splitlines()[-1])
        assert found["dags"] == [name] and found["render"] == rendered, found
        assert not found["sqlglot"] and not found["aws_hook"] and not found["boto3"], found
        assert len(s3_proxy.requests) <= 4, s3_proxy.summary()
        if rendered == "DLI-205":
            assert "ds1.sql" in found["message"] and "string" in found["message"], found
    # the dag-processor (no parsing context) checks every template: the laxly published one is a problem
    env.pop("_AIRFLOW_PARSING_CONTEXT_DAG_ID")
    env["AIRFLOW__DLI__CACHE_DIR"] = str(tmp_path / "cache-processor")
    probe = "import sys; from dli_airflow.factory import build_dags; print(sorted(build_dags(sys.argv[1])))"
    listed = subprocess.run([sys.executable, "-c", probe, store_url], env=env, capture_output=True, text=True,
                            timeout=120)
    assert "team1.ds1" not in listed.stdout and "team2.ds2" in listed.stdout, listed.stdout + listed.stderr[-1500:]
