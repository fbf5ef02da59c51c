"""Which Airflow AWS connections dli makes into an S3 client itself (keys, region, endpoint straight into
botocore: no AWS hook import on a worker's cold start) and which go through Airflow's AWS hook: only the
plain ones, field for field what the hook's connection wrapper would read; anything else is the hook's."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dli_airflow.s3store import PLAIN_EXTRA_KEYS, plain_connection


def conn(extra: dict | str | None = None, **fields):
    from airflow.sdk import Connection

    fields.setdefault("conn_type", "aws")
    text = extra if isinstance(extra, str) or extra is None else json.dumps(extra)
    return Connection(conn_id="aws_default", extra=text, **fields)


PLAIN = [
    ("keys, region, endpoint", conn({"endpoint_url": "http://s3.local:9000", "region_name": "eu-west-1"},
                                    login="AKIA", password="s3cret"),
     {"access_key": "AKIA", "secret_key": "s3cret", "region": "eu-west-1", "endpoint_url": "http://s3.local:9000"}),
    ("no keys: botocore's default chain", conn({"region_name": "us-east-1"}),
     {"access_key": None, "secret_key": None, "region": "us-east-1", "endpoint_url": None}),
    ("nothing at all", conn(), {"access_key": None, "region": None}),
    ("a session token", conn({"aws_session_token": "tok"}, login="A", password="B"), {"token": "tok"}),
    ("verify and config_kwargs", conn({"verify": False, "config_kwargs": {"signature_version": "s3v4"}}),
     {"verify": False, "config_kwargs": {"signature_version": "s3v4"}}),
    # Airflow's Connection logs a malformed extra and reads it as {} — for the hook's wrapper just the same
    ("a malformed extra, as Airflow reads it", conn("{not json"), {"access_key": None, "endpoint_url": None}),
]


@pytest.mark.parametrize(("why", "connection", "expected"), PLAIN, ids=[p[0] for p in PLAIN])
def test_a_plain_connection_is_read_field_for_field(why, connection, expected):
    got = plain_connection(connection)
    assert got is not None, why
    for key, value in expected.items():
        assert got[key] == value, (why, key)


HOOKS = [
    ("assumes a role", conn({"role_arn": "arn:aws:iam::1:role/r"}, login="A", password="B")),
    ("a profile", conn({"profile_name": "ci"})),
    ("per-service endpoints", conn({"service_config": {"s3": {"endpoint_url": "http://x"}}})),
    ("keys in the extra", conn({"aws_access_key_id": "A", "aws_secret_access_key": "B"})),
    ("session kwargs", conn({"session_kwargs": {"profile_name": "x"}})),
    ("web identity", conn({"assume_role_method": "assume_role_with_web_identity"})),
    ("a host", conn(host="s3.example.com")),
    ("a schema", conn(schema="x")),
    ("half a key pair", conn(login="AKIA")),
    ("another connection type", conn(conn_type="http")),
    ("an extra that is a list", conn("[1, 2]")),
    ("config_kwargs not a mapping", conn({"config_kwargs": "retries=3"})),
]


@pytest.mark.parametrize(("why", "connection"), HOOKS, ids=[h[0] for h in HOOKS])
def test_anything_else_goes_through_the_aws_hook(why, connection):
    assert plain_connection(connection) is None, why


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.text(min_size=1, max_size=30), st.one_of(st.none(), st.booleans(), st.text(max_size=20)),
                       max_size=6))
def test_no_extra_key_outside_the_plain_set_is_read_by_dli(extra):
    """Whatever the extra holds: dli reads it only when every key is one it reads the hook's way."""
    got = plain_connection(conn(extra, login="A", password="B"))
    if set(extra) - PLAIN_EXTRA_KEYS or (extra.get("config_kwargs") is not None
                                          and not isinstance(extra.get("config_kwargs"), dict)):
        assert got is None
    else:
        assert got is not None and got["access_key"] == "A"
