"""The S3 spec store against moto's real S3 server, requests counted by a proxy in front of it.

Covers resolution over S3 (override, fallback, conflicts, a broken code spec), the cost of a parse
(unchanged store: one LIST per prefix and no GET; a changed object: only it is fetched), outages
(server stopped, 500, 403, throttling, dropped connections, a hung server, a failing GET, a cold start)
with the DAG set unchanged and one warning, writes that never touch ``code/``, and the CLI.
"""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import textwrap
import time
from pathlib import Path

import pytest
from race_support import race
from s3_support import (  # noqa: F401  (fixtures)
    ACCESS_KEY,
    REGION,
    SECRET_KEY,
    MotoServer,
    S3Proxy,
    aws_connection,
    moto_server,
    s3_bucket,
    s3_env,
    s3_proxy,
    upload,
)

pytestmark = pytest.mark.integration


from dli_airflow.cache import load_snapshot  # noqa: E402
from dli_airflow.catalog import open_store, scan  # noqa: E402
from dli_airflow.errors import (  # noqa: E402
    DliError,
    SpecValidationError,
    StoreUnavailableError,
    WorkflowPermissionError,
    WorkflowRegistrationError,
)
from dli_airflow.factory import ERRORS_DAG_ID, build_dags  # noqa: E402
from dli_airflow.s3store import S3Store  # noqa: E402
from dli_airflow.release import INDEX_PATH  # noqa: E402
from dli_airflow.spec import DatasetStatus, SourceType  # noqa: E402

PREFIX = "dli/"


def spec(name: str, *, enabled: bool = True, query_file: str | None = None, extra: str = "") -> str:
    body = f"query_file: {query_file}" if query_file else "query: SELECT 1 AS x"
    return textwrap.dedent(
        f"""\
        name: {name}
        owner: tests@example.com
        {body}
        schedule:
          enabled: {str(enabled).lower()}
          cron: "0 9 * * *"
        """
    ) + extra


BASE_FILES = {
    "code/sales/orders.yaml": spec("sales.orders", query_file="orders.sql"),
    "code/sales/orders.sql": "SELECT 1 AS orders\n",
    "code/sales/returns.yaml": spec("sales.returns"),
    "manual/sales.orders.yaml": spec("sales.orders"),  # overridden by code
    "manual/adhoc.yaml": spec("reports.adhoc"),
    "manual/quiet.yaml": spec("reports.quiet", enabled=False),
}


@pytest.fixture
def store_url(moto_server: MotoServer, s3_bucket: str, s3_env: Path) -> str:
    upload(moto_server.client(), s3_bucket, BASE_FILES, prefix=PREFIX)
    return f"s3://{s3_bucket}/{PREFIX.rstrip('/')}"


def _statuses(snapshot) -> dict[tuple[str, str], str]:
    return {(e.name, e.source.value): e.status.value for e in snapshot.entries}


def _dataset_dags(dags: dict) -> set[str]:
    return {d for d in dags if d != ERRORS_DAG_ID}


# --------------------------------------------------------------------------- resolution


def test_resolution_over_s3_override_fallback_and_conflicts(store_url, moto_server, s3_bucket):
    snapshot = scan(open_store(store_url))
    assert snapshot.store == store_url
    assert _statuses(snapshot) == {
        ("sales.orders", "code"): "active",
        ("sales.orders", "manual"): "overridden",
        ("sales.returns", "code"): "active",
        ("reports.adhoc", "manual"): "active",
        ("reports.quiet", "manual"): "paused",
    }
    orders = snapshot.get("sales.orders")
    assert orders.source is SourceType.CODE and orders.sql == "SELECT 1 AS orders\n"
    assert snapshot.get("sales.orders", SourceType.MANUAL).overridden_by is SourceType.CODE

    client = moto_server.client()
    # code goes away: the manual copy is active again (fallback); a conflict in code/ schedules neither file
    client.delete_object(Bucket=s3_bucket, Key=f"{PREFIX}code/sales/orders.yaml")
    upload(client, s3_bucket, {"code/a/twin.yaml": spec("sales.twin"), "code/b/twin.yaml": spec("sales.twin")},
           prefix=PREFIX)
    # a broken code spec keeps its manual twin overridden (a bad deploy never swaps in an old copy)
    broken = "name: reports.adhoc\nowner: x\nquery: SELECT 1\nschedule: {cron: '0 9 * *'}\n"
    upload(client, s3_bucket, {"code/adhoc.yaml": broken}, prefix=PREFIX)
    snapshot = scan(open_store(store_url))
    statuses = _statuses(snapshot)
    assert statuses[("sales.orders", "manual")] == "active"
    assert ("sales.orders", "code") not in statuses
    assert not any(name == "sales.twin" for name, _ in statuses)
    assert statuses[("reports.adhoc", "manual")] == "overridden"
    messages = " ".join(p.message for p in snapshot.problems)
    assert f"{store_url}/code/a/twin.yaml" in messages and f"{store_url}/code/b/twin.yaml" in messages
    assert f"{store_url}/code/adhoc.yaml" in messages and "DLI-204" in {p.code for p in snapshot.problems}


def test_store_url_forms(s3_env):
    assert S3Store("s3://bucket").url == "s3://bucket"
    assert S3Store("s3://bucket/").key("code/a.yaml") == "code/a.yaml"
    assert S3Store("s3://bucket/a/b/").key("code/a.yaml") == "a/b/code/a.yaml"
    from dli_airflow.errors import ConfigError

    for bad in ("s3://", "s3:///x", "s3://b/../x", "s3://key:secret@bucket/x"):
        with pytest.raises(ConfigError) as info:
            S3Store(bad)
        assert "secret" not in info.value.message


# --------------------------------------------------------------------------- request counts


def test_unchanged_store_costs_one_list_per_prefix_and_no_get(store_url, s3_proxy: S3Proxy, s3_env):
    first = build_dags(store_url)
    assert _dataset_dags(first) == {"sales.orders", "sales.returns", "reports.adhoc", "reports.quiet"}
    cold = [r.key for r in s3_proxy.gets()]
    # a cold reader asks once for a release index (this store has none: 404, remembered in the cache) ...
    assert [k for k in cold if k.endswith(INDEX_PATH)] == [f"{PREFIX}{INDEX_PATH}"]
    # ... and reads every spec and SQL object once (the overridden manual spec too)
    assert len([k for k in cold if not k.endswith(INDEX_PATH)]) == 6
    for _ in range(3):
        s3_proxy.reset()
        again = build_dags(store_url)
        assert set(again) == set(first)
        lists = s3_proxy.lists()
        assert sorted(r.prefix for r in lists) == [f"{PREFIX}code/", f"{PREFIX}manual/"], s3_proxy.summary()
        assert s3_proxy.gets() == [] and len(s3_proxy.requests) == 2, s3_proxy.summary()


def test_changed_object_is_the_only_one_fetched(store_url, s3_proxy: S3Proxy, moto_server, s3_bucket):
    load_snapshot(store_url)
    client = moto_server.client()
    upload(client, s3_bucket, {"code/sales/orders.sql": "SELECT 2 AS orders\n"}, prefix=PREFIX)
    s3_proxy.reset()
    snapshot = load_snapshot(store_url)
    assert snapshot.get("sales.orders").sql == "SELECT 2 AS orders\n"
    assert [r.key for r in s3_proxy.gets()] == [f"{PREFIX}code/sales/orders.sql"]
    assert len(s3_proxy.lists()) == 2

    # a new dataset: only its objects; a deleted one: nothing to fetch
    upload(client, s3_bucket, {"manual/new.yaml": spec("reports.new")}, prefix=PREFIX)
    client.delete_object(Bucket=s3_bucket, Key=f"{PREFIX}manual/adhoc.yaml")
    s3_proxy.reset()
    snapshot = load_snapshot(store_url)
    assert [r.key for r in s3_proxy.gets()] == [f"{PREFIX}manual/new.yaml"]
    assert {e.name for e in snapshot.active} == {"sales.orders", "sales.returns", "reports.quiet", "reports.new"}


def test_listing_pages_are_one_paginated_list(s3_env, moto_server, s3_bucket, s3_proxy):
    files = {f"code/bulk/d{i:04d}.yaml": spec(f"bulk.d{i:04d}") for i in range(1050)}
    upload(moto_server.client(), s3_bucket, files)
    s3_proxy.reset()
    listed = S3Store(f"s3://{s3_bucket}").list_files(SourceType.CODE)
    assert len(listed) == 1050 and all(f.version for f in listed)
    lists = s3_proxy.lists()
    assert len(lists) == 2 and "continuation-token" in lists[1].query  # 1,000 keys a page


# --------------------------------------------------------------------------- outages


def _warnings(caplog) -> list[logging.LogRecord]:
    """Every warning dli logged (the outage must be said once, not once per file or per retry)."""
    found = [r for r in caplog.records if r.levelno >= logging.WARNING and r.name.startswith("dli_airflow")]
    assert all("last good copy" in r.getMessage() for r in found), [r.getMessage() for r in found]
    return found


@pytest.mark.parametrize(
    ("fault", "cause"),
    [
        (lambda p: p.fail(500), "HTTP 500"),
        (lambda p: p.fail(403), "access denied"),
        (lambda p: p.fail(503, "SlowDown"), "throttling"),
        (lambda p: p.fail(404, "NoSuchBucket"), "does not exist"),
        (lambda p: p.close_connections(), "connection"),
    ],
    ids=["http-500", "access-denied-403", "throttled-503", "no-such-bucket", "connection-dropped"],
)
def test_outage_serves_the_last_good_dags_with_one_warning(store_url, s3_proxy, caplog, fault, cause):
    before = build_dags(store_url)
    fault(s3_proxy)
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        started = time.monotonic()
        during = build_dags(store_url)
        elapsed = time.monotonic() - started
    assert set(during) == set(before) and ERRORS_DAG_ID not in during
    warnings = _warnings(caplog)
    assert len(warnings) == 1, [r.getMessage() for r in caplog.records]
    text = warnings[0].getMessage()
    assert store_url in text and cause in text and "DLI-503" in text
    assert SECRET_KEY not in caplog.text and ACCESS_KEY + ":" not in caplog.text
    assert elapsed < 25
    assert s3_proxy.faulted, "the fault was never hit"
    s3_proxy.heal()
    assert set(build_dags(store_url)) == set(before)


def test_a_stopped_server_serves_the_last_good_dags(tmp_path, s3_env, monkeypatch, caplog):
    private = MotoServer(tmp_path).start()
    try:
        monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", aws_connection(private.url))
        private.client().create_bucket(Bucket="stopping")
        upload(private.client(), "stopping", BASE_FILES)
        before = build_dags("s3://stopping")
        assert "sales.orders" in before
    finally:
        private.stop()
    with caplog.at_level(logging.WARNING):
        during = build_dags("s3://stopping")
    assert set(during) == set(before)
    (warning,) = _warnings(caplog)
    assert "s3://stopping" in warning.getMessage() and "cannot connect" in warning.getMessage()


def test_a_hung_server_is_given_up_in_bounded_time(store_url, s3_proxy, caplog):
    before = build_dags(store_url)
    s3_proxy.hang(60)
    with caplog.at_level(logging.WARNING):
        started = time.monotonic()
        during = build_dags(store_url)
        elapsed = time.monotonic() - started
    s3_proxy.heal()
    assert set(during) == set(before)
    assert elapsed < 25, f"a parse took {elapsed:.1f}s; the dag-processor kills it at 30s"
    (warning,) = _warnings(caplog)
    assert "did not answer" in warning.getMessage()


def test_a_failing_get_keeps_the_last_good_snapshot(store_url, s3_proxy, moto_server, s3_bucket, caplog):
    before = load_snapshot(store_url)
    upload(moto_server.client(), s3_bucket, {"code/sales/returns.yaml": spec("sales.returns", enabled=False)},
           prefix=PREFIX)
    s3_proxy.fail(500, match="returns.yaml")
    with caplog.at_level(logging.WARNING):
        during = load_snapshot(store_url)
    # the outage is not a broken spec: the old copy stands, nothing is reported against the file
    assert during.entries == before.entries and during.problems == ()
    assert len(_warnings(caplog)) == 1 and during.warnings
    s3_proxy.heal()
    after = load_snapshot(store_url)
    assert after.get("sales.returns").status is DatasetStatus.PAUSED


def test_a_first_load_cut_short_keeps_what_it_read(s3_env, moto_server, s3_bucket, s3_proxy):
    files = {f"code/many/d{i:02d}.yaml": spec(f"many.d{i:02d}") for i in range(40)}
    upload(moto_server.client(), s3_bucket, files)
    url = f"s3://{s3_bucket}"
    s3_proxy.fail(500, match="d39.yaml")  # the last object fails: the parse gives up (no DAGs yet)
    with pytest.raises(StoreUnavailableError):
        load_snapshot(url)
    first = {r.key for r in s3_proxy.gets()}
    assert len(first) >= 30
    s3_proxy.heal()
    s3_proxy.reset()
    snapshot = load_snapshot(url)
    assert len(snapshot.active) == 40
    again = {r.key for r in s3_proxy.gets()}
    assert "code/many/d39.yaml" in again and not (again & first), "objects read before the failure were kept"


def test_a_parse_killed_while_validating_keeps_its_downloads(s3_env, moto_server, s3_bucket, s3_proxy, monkeypatch):
    """The dag-processor's import timeout interrupts a big first load after the GETs, during validation
    (Airflow raises its timeout exception from a signal handler wherever the parse is): the next parse
    must not download everything again, or a store that big would never finish loading."""
    import dli_airflow.catalog as catalog

    files = {f"code/many/d{i:02d}.yaml": spec(f"many.d{i:02d}") for i in range(20)}
    upload(moto_server.client(), s3_bucket, files)
    url = f"s3://{s3_bucket}"

    class ImportTimeout(Exception):
        pass

    def timed_out(*args, **kwargs):
        raise ImportTimeout("DagBag import timeout")

    with monkeypatch.context() as patch:
        patch.setattr(catalog, "resolve", timed_out)
        with pytest.raises(ImportTimeout):
            load_snapshot(url)
    assert len([r for r in s3_proxy.gets() if not r.key.endswith(INDEX_PATH)]) == 20  # and the index probe
    s3_proxy.reset()
    assert len(load_snapshot(url).active) == 20
    assert s3_proxy.gets() == [], s3_proxy.summary()


def test_cold_start_without_store_emits_no_dataset_dags_and_says_why(store_url, s3_proxy):
    s3_proxy.fail(500)
    dags = build_dags(store_url)
    assert list(dags) == [ERRORS_DAG_ID]
    doc = dags[ERRORS_DAG_ID].doc_md
    assert "DLI-503" in doc and store_url in doc and "no last good copy" in doc
    with pytest.raises(StoreUnavailableError):
        load_snapshot(store_url, fallback=False)


# --------------------------------------------------------------------------- writes


@pytest.mark.hostile(kind="writes")
def test_register_and_unregister_write_only_under_manual(store_url, s3_proxy, moto_server, s3_bucket, tmp_path):
    from dli_airflow.registry import (
        delete_manual,
        manual_entry,
        prepare_registration,
        registration_warning,
        write_manual,
    )

    client = moto_server.client()

    def code_objects() -> dict[str, str]:
        page = client.list_objects_v2(Bucket=s3_bucket, Prefix=f"{PREFIX}code/")
        return {o["Key"]: o["ETag"] for o in page.get("Contents", [])}

    code_before = code_objects()
    store = open_store(store_url)
    s3_proxy.reset()

    # every public way of writing, aimed at code/, is refused before any request is made
    attempts = [
        lambda: store.create_manual("code/sales/orders.yaml", b"x"),
        lambda: store.replace_manual("code/sales/orders.yaml", b"x", "etag"),
        lambda: store.delete_manual("code/sales/orders.yaml"),
        lambda: store.create_manual("manual/../code/sales/orders.yaml", b"x"),
        lambda: store.delete_manual("manual/../code/sales/orders.sql"),
        lambda: store.create_manual("/code/x.yaml", b"x"),
        lambda: store.create_manual("manual", b"x"),
        lambda: store.create_manual("manual//x.yaml", b"x"),
        lambda: delete_manual(store, scan(open_store(store_url)).get("sales.returns", SourceType.CODE)),
    ]
    for attempt in attempts:
        with pytest.raises(WorkflowPermissionError):
            attempt()
    with pytest.raises(DliError):  # a name that would leave manual/ is not a dataset name
        write_manual(store, prepare_registration(spec={"name": "../code/x", "owner": "a", "query": "SELECT 1"}))
    with pytest.raises(WorkflowPermissionError):  # what the control plane's unregister does: code only is DLI-803
        manual_entry(scan(open_store(store_url)), "sales.returns")
    assert s3_proxy.writes() == []

    # registering (the control plane's write): the SQL to a key of its own first, the spec naming it last;
    # every PUT a conditional create
    spec_file = tmp_path / "weekly.yaml"
    spec_file.write_text(spec("reports.weekly", query_file="weekly.sql"))
    (tmp_path / "weekly.sql").write_text("SELECT 7 AS weekly\n")
    write_manual(store, prepare_registration(spec_path=spec_file))
    over_code = prepare_registration(spec={"name": "sales.returns", "owner": "a@b.c", "query": "SELECT 1"})
    assert registration_warning(scan(open_store(store_url)), "sales.returns", force=True)  # stored, overridden
    write_manual(store, over_code, force=True)
    puts = [r for r in s3_proxy.writes() if r.method == "PUT" and ".dli-probe-" not in r.key]
    assert [re.sub(r"\.[0-9a-f]{16}\.sql$", ".<key>.sql", r.key) for r in puts] == [
        f"{PREFIX}manual/reports.weekly.<key>.sql",
        f"{PREFIX}manual/reports.weekly.yaml",
        f"{PREFIX}manual/sales.returns.yaml",
    ]
    assert all(r.headers.get("if-none-match") == "*" for r in puts)
    snapshot = scan(open_store(store_url))
    assert snapshot.get("reports.weekly").sql == "SELECT 7 AS weekly\n"
    assert snapshot.get("reports.weekly").sql_path == puts[0].key[len(PREFIX):]
    assert snapshot.get("sales.returns", SourceType.MANUAL).status is DatasetStatus.OVERRIDDEN

    s3_proxy.reset()
    for name in ("reports.weekly", "sales.returns"):  # sales.returns: its manual copy only; the code one stays
        entry, _ = manual_entry(scan(open_store(store_url)), name)
        delete_manual(store, entry)
    deletes = [r for r in s3_proxy.writes() if ".dli-probe-" not in r.key]
    assert [r.key for r in deletes] == [
        f"{PREFIX}manual/reports.weekly.yaml",
        puts[0].key,
        f"{PREFIX}manual/sales.returns.yaml",
    ]
    assert all(r.method == "DELETE" for r in deletes)
    assert deletes[0].headers.get("if-match") and deletes[2].headers.get("if-match")  # only the version read
    assert code_objects() == code_before
    assert scan(open_store(store_url)).get("sales.returns").source is SourceType.CODE
    every = client.list_objects_v2(Bucket=s3_bucket, Prefix=PREFIX).get("Contents", [])
    assert not [o["Key"] for o in every if ".dli-probe-" in o["Key"]]  # the probe cleaned up after itself


def test_a_write_during_an_outage_is_a_clear_error(store_url, s3_proxy):
    s3_proxy.fail(403)
    with pytest.raises(StoreUnavailableError) as info:
        open_store(store_url).create_manual("manual/x.yaml", b"name: x\n")
    assert "access denied" in info.value.message and store_url in info.value.message
    assert SECRET_KEY not in info.value.render()


# --------------------------------------------------------------------------- hostile objects: bounded reads
# each object breaks one rule next to the base store; the listing's Size decides before any GET, a GET never
# transfers more than the limit plus one byte, and the rest of the store keeps resolving

MiB = 1024 * 1024
S3_READ_CASES = [
    # (id, objects, code, the path named, fragment, GET of the object allowed)
    ("spec-2MiB", {"code/big.yaml": b"name: x\n" + b"#" * (2 * MiB)}, "DLI-202", "code/big.yaml",
     "a spec may be at most 1024 KiB", False),
    ("sql-12MiB", {"code/q.yaml": spec("s.q", query_file="q.sql"), "code/q.sql": b"SELECT 1 --" + b"x" * (12 * MiB)},
     "DLI-201", "code/q.sql", "the limit is 10 MB", False),
    ("sql-exactly-10MiB-plus-1", {"code/q.yaml": spec("s.q", query_file="q.sql"),
                                  "code/q.sql": b"SELECT 1 --" + b"x" * (10 * MiB - 10)},
     "DLI-201", "code/q.sql", "the limit is 10 MB", False),
    ("empty-sql", {"code/q.yaml": spec("s.q", query_file="q.sql"), "code/q.sql": b""}, "DLI-201", "code/q.sql",
     "the SQL file is empty", True),
    ("empty-spec", {"code/e.yaml": b""}, "DLI-202", "code/e.yaml", "the file is empty", True),
    ("manual-spec-2MiB", {"manual/big.yaml": b"name: x\n" + b"#" * (2 * MiB)}, "DLI-202", "manual/big.yaml",
     "a spec may be at most 1024 KiB", False),
]


@pytest.mark.hostile(kind="files")
@pytest.mark.parametrize(("objects", "code", "where", "fragment", "fetched"), [c[1:] for c in S3_READ_CASES],
                         ids=[c[0] for c in S3_READ_CASES])
def test_a_hostile_object_is_one_problem_and_is_never_downloaded_whole(
    store_url, s3_proxy: S3Proxy, moto_server, s3_bucket, objects, code, where, fragment, fetched
):
    load_snapshot(store_url)  # a good parse first: what a hostile object may hold is then known (nothing)
    upload(moto_server.client(), s3_bucket, objects, prefix=PREFIX)
    s3_proxy.reset()
    snapshot = load_snapshot(store_url)
    assert {e.name for e in snapshot.active} == {"sales.orders", "sales.returns", "reports.adhoc", "reports.quiet"}
    [problem] = snapshot.problems
    assert problem.code == code and f"{store_url}/{where}" in problem.message and fragment in problem.message
    key = f"{PREFIX}{where}"
    gets = [r for r in s3_proxy.gets() if r.key == key]
    assert bool(gets) is fetched, s3_proxy.summary()
    assert all(r.headers.get("range", "").startswith("bytes=0-") or fetched for r in gets)
    assert s3_proxy.bytes_answered(key) <= 10 * MiB + 1


@pytest.mark.hostile(kind="files")
def test_a_get_without_a_listing_asks_for_a_bounded_range(store_url, s3_proxy: S3Proxy, moto_server, s3_bucket):
    """A 50 MB SQL object read by a store that never listed it: Range asks for the limit plus one byte."""
    upload(moto_server.client(), s3_bucket, {"code/huge.sql": b"SELECT 1 --" + b"x" * (50 * MiB)}, prefix=PREFIX)
    s3_proxy.reset()
    with pytest.raises(SpecValidationError, match="the SQL file is 52.4 MB; the limit is 10 MB"):
        S3Store(store_url).read_bytes("code/huge.sql")
    [get] = s3_proxy.gets()
    assert get.headers["range"] == f"bytes=0-{10 * MiB}"
    assert s3_proxy.bytes_answered("code/huge.sql") <= 10 * MiB + 1


@pytest.mark.hostile(kind="files")
def test_an_object_that_grew_past_its_limit_after_the_listing_keeps_its_last_good_copy(
    store_url, s3_proxy: S3Proxy, moto_server, s3_bucket
):
    good = load_snapshot(store_url)
    upload(moto_server.client(), s3_bucket, {"code/sales/orders.sql": b"SELECT 2 --" + b"x" * (11 * MiB)},
           prefix=PREFIX)
    snapshot = load_snapshot(store_url)
    assert snapshot.get("sales.orders").sql == good.get("sales.orders").sql  # the last good code copy runs
    assert snapshot.get("sales.orders", SourceType.MANUAL).status is DatasetStatus.OVERRIDDEN
    [problem] = snapshot.problems
    assert problem.code == "DLI-201" and "code/sales/orders.sql" in problem.message
    assert "sales.orders keeps running from the last good copy" in problem.message


# --------------------------------------------------------------------------- conditional writes on S3

ROUNDS = 20




@pytest.mark.hostile(kind="writes")
def test_two_writers_creating_one_object_exactly_one_wins_every_round(store_url, s3_proxy: S3Proxy):
    one, two = S3Store(store_url), S3Store(store_url)  # two clients, two connections
    for n in range(ROUNDS):
        key = f"manual/race{n}.yaml"
        results = race([lambda k=key: one.create_manual(k, b"A"), lambda k=key: two.create_manual(k, b"B")])
        assert sorted(results) == ["DLI-801", "ok"], results
        stored = one.read_manual(key)
        assert stored is not None and stored.data == (b"A" if results[0] == "ok" else b"B")
    conditional = [r for r in s3_proxy.writes() if r.method == "PUT" and "/manual/race" in r.key]
    assert len(conditional) == 2 * ROUNDS and all(r.headers.get("if-none-match") == "*" for r in conditional)


@pytest.mark.hostile(kind="writes")
def test_two_registrations_of_one_name_exactly_one_wins_and_keeps_its_own_sql(store_url, s3_proxy: S3Proxy):
    from dli_airflow.registry import prepare_registration, write_manual

    one, two, reader = S3Store(store_url), S3Store(store_url), S3Store(store_url)
    for n in range(ROUNDS):
        name = f"race.r{n}"
        a, b = [prepare_registration(spec={"name": name, "owner": "a@b.c", "query_file": "q.sql"},
                                     sql=f"SELECT '{w}{n}' AS w") for w in "AB"]
        results = race([lambda p=a: write_manual(one, p), lambda p=b: write_manual(two, p)])
        assert sorted(results) == ["DLI-801", "ok"], results
        entry = scan(reader).get(name)
        assert entry.sql == (a if results[0] == "ok" else b).sql  # never the other writer's SQL
    keys = [o.path for o in reader.list_files(SourceType.MANUAL) if o.path.startswith("manual/race.")]
    assert len(keys) == 2 * ROUNDS  # one spec and one SQL per name: the losers removed their SQL


@pytest.mark.hostile(kind="writes")
def test_a_forced_replacement_overtaken_after_its_read_fails(store_url, monkeypatch):
    from dli_airflow.registry import prepare_registration, write_manual

    store = S3Store(store_url)
    make = lambda sql: prepare_registration(spec={"name": "team.one", "owner": "a@b.c", "query_file": "q.sql"},  # noqa: E731
                                            sql=sql)
    write_manual(store, make("SELECT 0 AS v"))
    real_read = S3Store.read_manual
    overtaken: list[bool] = []

    def read_then_overtaken(self, path: str):
        current = real_read(self, path)
        if not overtaken:
            overtaken.append(True)
            write_manual(S3Store(store_url), make("SELECT 'B' AS v"), force=True)
        return current

    monkeypatch.setattr(S3Store, "read_manual", read_then_overtaken)
    with pytest.raises(WorkflowRegistrationError, match="changed or was removed since it was read") as info:
        write_manual(store, make("SELECT 'A' AS v"), force=True)
    assert info.value.code == "DLI-801"
    monkeypatch.setattr(S3Store, "read_manual", real_read)
    assert scan(S3Store(store_url)).get("team.one").sql == "SELECT 'B' AS v"
    sql_keys = [f.path for f in S3Store(store_url).list_files(SourceType.MANUAL) if f.path.endswith(".sql")]
    assert len(sql_keys) == 1  # B's; the first one and A's are gone


@pytest.mark.hostile(kind="writes")
def test_a_server_that_ignores_conditional_writes_is_refused_before_anything_is_written(
    store_url, s3_proxy: S3Proxy, moto_server, s3_bucket
):
    from dli_airflow.registry import prepare_registration, write_manual

    s3_proxy.ignore_conditions("PUT")
    before = {o["Key"] for o in moto_server.client().list_objects_v2(Bucket=s3_bucket).get("Contents", [])}
    with pytest.raises(WorkflowRegistrationError, match="ignores conditional writes") as info:
        write_manual(S3Store(store_url), prepare_registration(spec={"name": "reports.new", "owner": "a@b.c", "query": "SELECT 1"}))
    assert info.value.code == "DLI-801" and "If-None-Match" in info.value.message
    after = {o["Key"] for o in moto_server.client().list_objects_v2(Bucket=s3_bucket).get("Contents", [])}
    assert after == before  # nothing written, the probe object removed


@pytest.mark.hostile(kind="writes")
def test_a_server_without_conditional_deletes_still_unregisters_only_the_version_read(
    store_url, s3_proxy: S3Proxy, moto_server, s3_bucket
):
    from dli_airflow.registry import delete_manual

    s3_proxy.ignore_conditions("DELETE")
    store = S3Store(store_url)
    assert store.conditional_writes() == (True, True, False)
    entry = scan(store).get("reports.adhoc")
    current = store.read_manual(entry.path)
    assert current is not None
    upload(moto_server.client(), s3_bucket, {"manual/adhoc.yaml": spec("reports.adhoc", extra="# v2\n")},
           prefix=PREFIX)
    with pytest.raises(WorkflowRegistrationError, match="changed since it was read"):
        store.delete_manual(entry.path, current.version)  # checked by a GET first: a stale version is refused
    delete_manual(store, entry)  # reads the current version itself
    assert "reports.adhoc" not in {e.name for e in scan(store).entries}


# --------------------------------------------------------------------------- CLI


def _cli_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "AIRFLOW_CONN_", "AIRFLOW__DLI__"))}
    env.update(
        AIRFLOW_HOME=str(tmp_path / "cli_home"),
        AWS_EC2_METADATA_DISABLED="true",
        AWS_CONFIG_FILE=str(tmp_path / "none"),
        AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"),
    )
    env.update(extra)
    return env


def _aws_env(endpoint: str) -> dict[str, str]:
    return {"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY, "AWS_DEFAULT_REGION": REGION,
            "AWS_ENDPOINT_URL": endpoint}


def test_cli_lists_and_validates_an_s3_store_with_the_aws_environment(store_url, moto_server, dli_command, tmp_path):
    env = _cli_env(tmp_path, **_aws_env(moto_server.url))
    listed = subprocess.run([*dli_command, "spec", "list", "--store", store_url, "--format", "json"],
                            env=env, capture_output=True, text=True, timeout=120)
    assert listed.returncode == 0, listed.stderr
    data = json.loads(listed.stdout)
    assert data["store"] == store_url
    assert {(d["dataset"], d["source"], d["status"]) for d in data["datasets"]} >= {
        ("sales.orders", "code", "active"),
        ("sales.orders", "manual", "overridden"),
        ("reports.quiet", "manual", "paused"),
    }
    valid = subprocess.run([*dli_command, "spec", "validate", store_url], env=env, capture_output=True, text=True,
                           timeout=120)
    assert valid.returncode == 0, valid.stderr
    assert f"{store_url}/code/sales/orders.yaml" in valid.stdout and "5 valid, 0 errors" in valid.stdout


def test_cli_uses_the_airflow_connection_and_reports_errors(store_url, moto_server, s3_bucket, dli_command, tmp_path):
    # no AWS_* credentials at all: only the Airflow connection (with endpoint_url in its extra) can work
    env = _cli_env(tmp_path, AIRFLOW_CONN_AWS_DEFAULT=aws_connection(moto_server.url))
    upload(moto_server.client(), s3_bucket, {"code/broken.yaml": "name: x.broken\nowner: a\nquery: SELECT 1\n"
                                             "schedule: {cron: '0 9 * *'}\n"}, prefix=PREFIX)
    valid = subprocess.run([*dli_command, "spec", "validate", store_url, "--format", "json"], env=env,
                           capture_output=True, text=True, timeout=120)
    assert valid.returncode == 1, valid.stderr
    report = json.loads(valid.stdout)
    assert [e["code"] for e in report["errors"]] == ["DLI-201"]
    assert f"{store_url}/code/broken.yaml" in report["errors"][0]["message"]
    assert len(report["valid"]) == 5

    down = _cli_env(tmp_path, **_aws_env("http://127.0.0.1:9"))
    failed = subprocess.run([*dli_command, "spec", "list", "--store", store_url], env=down, capture_output=True,
                            text=True, timeout=120)
    assert failed.returncode == 1
    assert "DLI-503" in failed.stderr and store_url in failed.stderr and "Traceback" not in failed.stderr
    assert SECRET_KEY not in failed.stderr + failed.stdout


CLIENT_PROBE = r"""
import json, sys
from dli_airflow.catalog import open_store
from dli_airflow.cache import load_snapshot
names = sorted({e.name for e in load_snapshot(sys.argv[1]).entries})
print(json.dumps({"names": names, "aws_hook": "airflow.providers.amazon.aws.hooks.base_aws" in sys.modules}))
"""


@pytest.mark.parametrize("kind", ["plain", "profile"])
def test_a_plain_connection_skips_the_aws_hook_and_any_other_goes_through_it(store_url, moto_server, tmp_path, kind):
    """Keys, region and endpoint: dli makes the client itself (no AWS hook import). A profile (like a role, a
    web identity, per-service endpoints): Airflow's AWS hook makes it, and the store reads the same."""
    import sys

    if kind == "plain":
        connection = aws_connection(moto_server.url)
    else:
        profiles = tmp_path / "aws-config"
        profiles.write_text(f"[profile dli-ci]\naws_access_key_id = {ACCESS_KEY}\n"
                            f"aws_secret_access_key = {SECRET_KEY}\nregion = {REGION}\n")
        connection = json.dumps({"conn_type": "aws", "extra": {"profile_name": "dli-ci",
                                                               "endpoint_url": moto_server.url}})
    env = _cli_env(tmp_path, AIRFLOW_CONN_AWS_DEFAULT=connection, AIRFLOW__DLI__CACHE_DIR=str(tmp_path / "cache"))
    if kind == "profile":
        env["AWS_CONFIG_FILE"] = str(tmp_path / "aws-config")
    done = subprocess.run([sys.executable, "-c", CLIENT_PROBE, store_url], env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert "sales.orders" in found["names"], found
    assert found["aws_hook"] is (kind == "profile"), found
    assert SECRET_KEY not in done.stdout + done.stderr
