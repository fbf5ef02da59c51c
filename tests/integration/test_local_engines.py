"""``dli dataset run NAME --local`` on the dataset's own engine, end to end through the CLI, over the wire.

The unmodified trino and google-cloud-bigquery clients, through the engines and provider hooks the operator
uses, talk to the stand-ins: Trino over TLS (a test CA made for the session) with each authentication the
trino client has — password, JWT, client certificate, OAuth 2.0 with Trino's challenge and token server —
and BigQuery with Google's token endpoint (a service-account key file, application default credentials,
a key inside the connection). Connections come from ``AIRFLOW_CONN_*`` and from a dli connections file; no
Airflow database exists. Each test asserts what the user sees (rows, messages, exit status) and what the
server received (who was authenticated, the values bound apart from the SQL, the cancel).
"""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from standin_auth import CLIENT_CERT_USER, OAUTH2_USER, TRINO_PASSWORD, TRINO_USER, service_account_key, sign_jwt
from typer.testing import CliRunner

from dli_airflow.cli import app

pytestmark = pytest.mark.integration

#: A value that would end the statement if it were spliced into the SQL.
HOSTILE = "o'brien'); DROP TABLE orders; --"

TRINO_SPEC = """\
name: lake.orders
owner: me@example.com
engine: trino
{conn_line}catalog: memory
schema: main
query_file: orders.sql
parameters:
  - {{name: execution_date, type: date, required: true}}
  - {{name: customer, type: string, required: true}}
"""

TRINO_SQL = """\
CREATE TABLE IF NOT EXISTS orders (customer varchar, order_date date);
INSERT INTO orders VALUES ({{ customer }}, {{ execution_date }});
SELECT customer, order_date, count(*) OVER () AS n FROM orders WHERE customer = {{ customer }}
"""

BIGQUERY_SPEC = """\
name: sales.orders
owner: me@example.com
engine: bigquery
{conn_line}project: standin-project
location: US
query: SELECT {{{{ customer }}}} AS customer, {{{{ execution_date }}}} AS order_date, 6 * 7 AS answer
parameters:
  - {{name: execution_date, type: date, required: true}}
  - {{name: customer, type: string, required: true}}
"""

PARAMS = ["-p", "execution_date=2024-01-15", "-p", f"customer={HOSTILE}"]
SA_EMAIL = "dli-local@standin-project.iam.gserviceaccount.com"


@pytest.fixture
def local_env(airflow_env: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No connection or credential from the machine; ``REQUESTS_CA_BUNDLE`` set to the public CAs (as on many
    laptops and this CI), which a connection's own ``verify`` bundle must win over. A connections file sets
    ``AIRFLOW_CONN_*`` in this process: they are removed again after the test."""
    import certifi

    for key in list(os.environ):
        if key.startswith("AIRFLOW_CONN_") or key in ("DLI_CONNECTIONS_FILE", "GOOGLE_APPLICATION_CREDENTIALS"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", certifi.where())
    monkeypatch.setenv("CURL_CA_BUNDLE", certifi.where())
    before = set(os.environ)
    yield
    for key in set(os.environ) - before:
        del os.environ[key]


@pytest.fixture
def trino_store(make_store: Callable[..., Path]) -> Callable[..., Path]:
    def make(conn_id: str | None = None, sql: str = TRINO_SQL) -> Path:
        conn_line = f"conn_id: {conn_id}\n" if conn_id else ""
        return make_store({"code/orders.yaml": TRINO_SPEC.format(conn_line=conn_line), "code/orders.sql": sql})

    return make


@pytest.fixture
def bigquery_store(make_store: Callable[..., Path]) -> Callable[..., Path]:
    def make(conn_id: str | None = "bq_local", query: str | None = None) -> Path:
        text = BIGQUERY_SPEC.format(conn_line=f"conn_id: {conn_id}\n" if conn_id else "")
        if query is not None:
            text = re.sub(r"(?m)^query: .*$", f"query: {query}", text)
        return make_store({"code/orders.yaml": text})

    return make


def trino_connection(standin: Any, pki: Any, *, extra: dict[str, Any] | None = None, **fields: Any) -> dict[str, Any]:
    """An Airflow connection to the secure stand-in: HTTPS, the test CA as the bundle to verify with."""
    return {
        "conn_type": "trino", "host": "127.0.0.1", "port": standin.port, "schema": "main",
        "extra": {"protocol": "https", "verify": str(pki.ca_cert), "catalog": "memory", **(extra or {})},
        **fields,
    }


def dli(*args: str) -> Any:
    return CliRunner().invoke(app, list(args))


def run_json(store: Path, *extra: str) -> Any:
    return dli("dataset", "run", "lake.orders", "--local", "--store", str(store), *PARAMS, "-f", "json", *extra)


def rows_of(result: Any) -> list[dict[str, Any]]:
    assert result.exit_code == 0, result.stdout + result.stderr
    [run] = json.loads(result.stdout)["runs"]
    return run["rows"]


def assert_bound_not_spliced(standin: Any, kind: str, principal: str) -> None:
    """Every query the stand-in ran was authenticated as ``principal``; the values travelled apart."""
    sent = [q for q in standin.queries.values() if q.statement != "SELECT 1"]  # not the client's probe
    assert len(sent) == 3 and {(q.authentication, q.principal, q.user) for q in sent} == {(kind, principal, principal)}
    insert = sent[1]
    assert insert.sql.startswith("EXECUTE IMMEDIATE '") and HOSTILE not in insert.statement
    assert insert.parameters == ["'" + HOSTILE.replace("'", "''") + "'", "CAST('2024-01-15' AS DATE)"]
    assert standin.execute("SELECT count(*) FROM memory.main.orders") == [(1,)]  # nothing dropped


# -- Trino: each authentication ------------------------------------------------------------------------------


def test_password_from_airflow_conn_runs_on_trino_and_prints_the_rows(trino_secure, pki, trino_store, local_env,
                                                                      monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_TRINO_DEFAULT", json.dumps(
        trino_connection(trino_secure, pki, login=TRINO_USER, password=TRINO_PASSWORD)))
    store = trino_store()  # no conn_id: trino_default
    result = dli("dataset", "run", "lake.orders", "--local", "--store", str(store), *PARAMS)
    assert result.exit_code == 0, result.stdout + result.stderr
    out = result.stdout
    assert "lake.orders" in out and "(on trino, connection trino_default)" in out
    assert re.search(r"statement 3: ok.*\(query \d{8}_\d{6}_\d{5}_standin\)", out)
    assert "o'brien'); DROP TABLE orders; --" in out and "2024-01-15" in out  # the row, in the table
    assert "transpiled" not in out
    assert_bound_not_spliced(trino_secure, "password", TRINO_USER)
    assert TRINO_PASSWORD not in out + result.stderr


@pytest.mark.parametrize("form", ["jwt__token", "jwt__file"])
def test_a_jwt_from_a_connections_file_runs_as_its_subject(trino_secure, pki, trino_store, local_env, tmp_path, form):
    token = sign_jwt(pki.idp_private_key.read_bytes(), {"sub": "jwt-user", "iss": "https://idp.example.com"})
    extra: dict[str, Any] = {"auth": "jwt"}
    if form == "jwt__token":
        extra["jwt__token"] = token
    else:
        (tmp_path / "token.jwt").write_text(token)
        extra["jwt__file"] = str(tmp_path / "token.jwt")
    connections = tmp_path / "connections.json"
    connections.write_text(json.dumps({"trino_jwt": trino_connection(trino_secure, pki, extra=extra)}))
    result = run_json(trino_store("trino_jwt"), "--connections", str(connections))
    assert rows_of(result) == [{"customer": HOSTILE, "order_date": "2024-01-15", "n": 1}]
    assert_bound_not_spliced(trino_secure, "jwt", "jwt-user")  # Trino takes the user from the token's sub
    assert token not in result.stdout + result.stderr


def test_a_client_certificate_from_the_dli_connections_file_env_var(trino_secure, pki, trino_store, local_env,
                                                                    tmp_path, monkeypatch):
    connections = tmp_path / "connections.yaml"
    connections.write_text(
        "# dli connections: conn_id -> Airflow connection fields\n"
        "trino_cert:\n"
        "  conn_type: trino\n"
        "  host: 127.0.0.1\n"
        f"  port: {trino_secure.port}\n"
        "  schema: main\n"
        "  extra:\n"
        "    protocol: https\n"
        f"    verify: {pki.ca_cert}\n"
        "    catalog: memory\n"
        "    auth: certs\n"
        f"    certs__client_cert_path: {pki.client_cert}\n"
        f"    certs__client_key_path: {pki.client_key}\n"
    )
    monkeypatch.setenv("DLI_CONNECTIONS_FILE", str(connections))
    result = run_json(trino_store("trino_cert"))
    assert rows_of(result) == [{"customer": HOSTILE, "order_date": "2024-01-15", "n": 1}]
    assert_bound_not_spliced(trino_secure, "certificate", CLIENT_CERT_USER)


@pytest.mark.hostile(kind="cli-and-secrets")
def test_oauth2_prints_the_login_url_and_runs_once_the_browser_logged_in(trino_secure, pki, trino_store, local_env,
                                                                         dli_command, tmp_path):
    """Trino's OAuth 2.0 flow, played through: the server's 401 challenge, the login URL on stderr, the
    client polling the token server while "the browser" (this test) visits the URL, then the queries with the
    token — of both dates of the range, on one login. The identity provider's own pages are not played:
    visiting the URL is the login."""
    env = {**os.environ, "AIRFLOW_CONN_TRINO_DEFAULT": json.dumps(
        trino_connection(trino_secure, pki, extra={"auth": "oauth2"}))}
    proc = subprocess.Popen(
        [*dli_command, "dataset", "run", "lake.orders", "--local", "--store", str(trino_store()),
         "--start", "2024-01-15", "--end", "2024-01-16", "-p", f"customer={HOSTILE}", "-f", "json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path,
    )
    lines: queue.Queue[str] = queue.Queue()
    err: list[str] = []

    def read_stderr() -> None:
        for line in proc.stderr:  # type: ignore[union-attr]
            err.append(line)
            lines.put(line)

    reader = threading.Thread(target=read_stderr, daemon=True)
    reader.start()
    url = None
    deadline = time.monotonic() + 60
    while url is None and time.monotonic() < deadline:
        try:
            found = re.search(r"open (https://\S+) in a browser", lines.get(timeout=1))
        except queue.Empty:
            continue
        url = found.group(1) if found else None
    assert url is not None, "no login URL on stderr: " + "".join(err)
    assert url.startswith(f"{trino_secure.url}/oauth2/token/initiate/")
    browser = ssl.create_default_context(cafile=str(pki.ca_cert))
    assert httpx.get(url, verify=browser).status_code == 200  # the user logs in
    out, _ = proc.communicate(timeout=60)
    reader.join(5)
    assert proc.returncode == 0, "".join(err)
    first, second = json.loads(out)["runs"]
    assert first["rows"] == [{"customer": HOSTILE, "order_date": "2024-01-15", "n": 1}]
    assert [r["order_date"] for r in second["rows"]] == ["2024-01-15", "2024-01-16"]
    sent = [q for q in trino_secure.queries.values() if q.statement != "SELECT 1"]
    assert len(sent) == 6 and {(q.authentication, q.principal) for q in sent} == {("oauth2", OAUTH2_USER)}
    assert all(HOSTILE not in q.statement for q in sent)
    [login] = [entry for entry in trino_secure.auth.logins.values() if entry.token]  # one login for both dates
    assert login.polls >= 1  # the client waited on Trino's token server
    assert login.token not in out + "".join(err)  # the token is never printed


def test_a_connections_file_wins_over_the_environment_and_takes_a_uri(trino_secure, pki, trino_store, local_env,
                                                                       tmp_path, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_TRINO_DEFAULT", json.dumps(
        trino_connection(trino_secure, pki, login=TRINO_USER, password="wrong-password")))
    uri = (f"trino://{TRINO_USER}:{TRINO_PASSWORD}@127.0.0.1:{trino_secure.port}/main"
           f"?protocol=https&catalog=memory&verify={pki.ca_cert}")
    connections = tmp_path / "connections.yaml"
    connections.write_text(f"trino_default: '{uri}'\n")
    result = run_json(trino_store(), "--connections", str(connections))
    assert rows_of(result)[0]["customer"] == HOSTILE
    assert_bound_not_spliced(trino_secure, "password", TRINO_USER)


# -- Trino: what is refused, and never printed ---------------------------------------------------------------


@pytest.mark.hostile(kind="cli-and-secrets")
@pytest.mark.parametrize("kind", ["password", "jwt"])
def test_refused_credentials_exit_5_and_are_never_printed_even_with_v(trino_secure, pki, trino_store, local_env,
                                                                       monkeypatch, kind):
    if kind == "password":
        secret = "Wr0ng-Passw0rd-Never-Shown"
        connection = trino_connection(trino_secure, pki, login=TRINO_USER, password=secret)
    else:  # signed by a key the server does not trust
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa

        other = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        secret = sign_jwt(other, {"sub": "jwt-user"})
        connection = trino_connection(trino_secure, pki, extra={"auth": "jwt", "jwt__token": secret})
    monkeypatch.setenv("AIRFLOW_CONN_TRINO_DEFAULT", json.dumps(connection))
    result = dli("-v", "dataset", "run", "lake.orders", "--local", "--store", str(trino_store()), *PARAMS)
    assert result.exit_code == 5, result.stdout + result.stderr
    assert "Error [DLI-404]" in result.stderr and "refused the credentials of connection 'trino_default'" in result.stderr
    assert "Traceback" in result.stderr  # -v
    assert secret not in result.stdout + result.stderr
    assert (None, None, 401) in trino_secure.authentications and not trino_secure.queries


@pytest.mark.hostile(kind="cli-and-secrets")
@pytest.mark.parametrize(
    ("fields", "refusal"),
    [({"login": TRINO_USER, "password": TRINO_PASSWORD}, "TLS/SSL is required for authentication"),
     ({"extra": {"auth": "oauth2"}}, "TLS/SSL is required for OAuth 2.0 authentication")],
    ids=["password", "oauth2"],
)
def test_authentication_over_plain_http_is_refused_before_anything_is_sent(trino_secure, pki, trino_store, local_env,
                                                                           monkeypatch, fields, refusal):
    connection = trino_connection(trino_secure, pki, **fields)
    connection["extra"]["protocol"] = "http"
    monkeypatch.setenv("AIRFLOW_CONN_TRINO_DEFAULT", json.dumps(connection))
    result = dli("-v", "dataset", "run", "lake.orders", "--local", "--store", str(trino_store()), *PARAMS)
    assert result.exit_code == 5
    assert "Error [DLI-401]" in result.stderr and refusal in " ".join(result.stderr.split())
    assert TRINO_PASSWORD not in result.stdout + result.stderr
    assert trino_secure.requests == [] or all(path == "/v1/info" for _, path in trino_secure.requests)


def test_a_server_certificate_of_an_untrusted_ca_is_refused(trino_secure, pki, trino_store, local_env, monkeypatch):
    connection = trino_connection(trino_secure, pki, login=TRINO_USER, password=TRINO_PASSWORD)
    del connection["extra"]["verify"]  # the public CAs (REQUESTS_CA_BUNDLE) do not know the test CA
    monkeypatch.setenv("AIRFLOW_CONN_TRINO_DEFAULT", json.dumps(connection))
    result = dli("dataset", "run", "lake.orders", "--local", "--store", str(trino_store()), *PARAMS)
    assert result.exit_code == 5
    assert "Error [DLI-401]" in result.stderr and "CERTIFICATE_VERIFY_FAILED" in result.stderr
    assert not trino_secure.queries


def test_without_a_connection_the_error_says_exactly_what_to_do(trino_store, local_env):
    result = dli("dataset", "run", "lake.orders", "--local", "--store", str(trino_store()), *PARAMS)
    assert result.exit_code == 1
    err = " ".join(result.stderr.split())
    assert "Error [DLI-001]" in err and "the Airflow connection 'trino_default'" in err
    assert "export AIRFLOW_CONN_TRINO_DEFAULT='{\"conn_type\": \"trino\"" in err
    assert "--connections FILE" in err and "DLI_CONNECTIONS_FILE" in err and "--engine duckdb" in err


@pytest.mark.hostile(kind="cli-and-secrets")
def test_an_airflow_conn_that_airflow_cannot_read_is_named_and_not_shown(trino_store, local_env, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_TRINO_DEFAULT", '{"conn_type": "trino", "password": "Half-Written-Pw-1"')
    result = dli("dataset", "run", "lake.orders", "--local", "--store", str(trino_store()), *PARAMS)
    assert result.exit_code == 1
    err = " ".join(result.stderr.split())
    assert "AIRFLOW_CONN_TRINO_DEFAULT is set, but Airflow cannot read it as a connection" in err
    assert "it is not valid JSON (Expecting ',' delimiter at line 1, column" in err
    assert "Half-Written-Pw-1" not in result.stdout + result.stderr


def test_engine_duckdb_runs_the_trino_sql_transpiled_on_this_machine(trino_store, local_env, tmp_path):
    store = trino_store()
    result = run_json(store, "--engine", "duckdb", "--duckdb", str(tmp_path / "w.duckdb"))
    assert rows_of(result) == [{"customer": HOSTILE, "order_date": "2024-01-15", "n": 1}]
    [run] = json.loads(result.stdout)["runs"]
    assert run["ran_on"] == "duckdb" and run["transpiled_from"] == "trino" and run["conn_id"] is None


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--engine", "bigquery"], "'lake.orders' is a trino dataset; its SQL runs on trino or duckdb"),
        (["--duckdb", "w.duckdb"], "--duckdb is the file of DuckDB runs, and lake.orders runs on trino"),
        (["--timeout", "0"], "--timeout 0 is not a number of seconds above 0"),
    ],
    ids=["other-engine", "duckdb-file", "timeout-zero"],
)
def test_options_that_do_not_fit_are_invalid_input(trino_store, local_env, args, fragment):
    result = dli("dataset", "run", "lake.orders", "--local", "--store", str(trino_store()), *PARAMS, *args)
    assert result.exit_code == 1 and "Error [DLI-203]" in result.stderr
    assert fragment in " ".join(result.stderr.split())


def test_a_dry_run_renders_and_parses_as_trino_without_a_connection(trino_store, local_env):
    result = dli("dataset", "run", "lake.orders", "--local", "--store", str(trino_store()), *PARAMS, "--dry-run")
    assert result.exit_code == 0, result.stderr
    assert "dry run ok: 3 statement(s)" in result.stdout and "transpiled" not in result.stdout
    assert "'o''brien''); DROP TABLE orders; --'" in result.stdout  # the values inlined for reading


def test_invalid_parameters_exit_1_and_nothing_reaches_trino(trino_secure, pki, trino_store, local_env,
                                                             monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_TRINO_DEFAULT", json.dumps(
        trino_connection(trino_secure, pki, login=TRINO_USER, password=TRINO_PASSWORD)))
    result = dli("dataset", "run", "lake.orders", "--local", "--store", str(trino_store()),
                 "-p", "execution_date=2024-13-01", "-p", "customer=x")
    assert result.exit_code == 1 and "Error [DLI-203]" in result.stderr
    assert not trino_secure.queries


def test_a_sql_error_exits_3_with_the_position(trino_secure, pki, trino_store, local_env, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_TRINO_DEFAULT", json.dumps(
        trino_connection(trino_secure, pki, login=TRINO_USER, password=TRINO_PASSWORD)))
    store = trino_store(sql="SELECT {{ customer }} AS c, {{ execution_date }} AS d;\nSELECT amount\nFROM no_such_table")
    result = dli("dataset", "run", "lake.orders", "--local", "--store", str(store), *PARAMS)
    assert result.exit_code == 3
    err = " ".join(result.stderr.split())
    assert "Error [DLI-405]" in err and "statement 2 of 2" in err and "TABLE_NOT_FOUND" in err
    assert "line 2, column 6" in err


@pytest.mark.hostile(kind="cli-and-secrets")
@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("trino_default:\n  conn_type: trino\n  password: 0123456\n", "quote it"),
        ("trino_default:\n  conn_type: trino\n  password: no\n", "password must be text, and YAML read it as a bool"),
        ("trino_default:\n  conn_type: trino\n  passwrd: S3cret-Typo-Value\n", "unknown field(s) passwrd"),
        ("trino_default:\n  conn_type: trino\n  password: 'S3cret-Unclosed\n", "YAML syntax error"),
        ("- trino_default\n", "a connections file maps connection ids to connections"),
    ],
    ids=["ambiguous-number", "yaml-bool", "unknown-field", "syntax", "not-a-mapping"],
)
def test_a_bad_connections_file_is_invalid_input_and_shows_no_value(trino_store, local_env, tmp_path, text, fragment):
    connections = tmp_path / "connections.yaml"
    connections.write_text(text)
    result = dli("dataset", "run", "lake.orders", "--local", "--store", str(trino_store()), *PARAMS,
                 "--connections", str(connections))
    assert result.exit_code == 1 and "Error [DLI-001]" in result.stderr
    err = " ".join(result.stderr.split())
    assert str(connections) in err and fragment in err
    for value in ("0123456", "S3cret-Typo-Value", "S3cret-Unclosed"):
        assert value not in result.stdout + result.stderr


# -- Trino: timeout and Ctrl-C cancel the query on the server ------------------------------------------------


def test_timeout_cancels_the_query_on_trino_and_exits_4(trino_secure, pki, trino_store, local_env, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_TRINO_DEFAULT", json.dumps(
        trino_connection(trino_secure, pki, login=TRINO_USER, password=TRINO_PASSWORD)))
    store = trino_store(sql="SELECT count(*) FROM memory.main.slow_numbers\n"
                            "WHERE {{ customer }} <> '' AND {{ execution_date }} IS NOT NULL")
    started = time.monotonic()
    result = dli("dataset", "run", "lake.orders", "--local", "--store", str(store), *PARAMS, "--timeout", "2.5")
    assert result.exit_code == 4, result.stdout + result.stderr
    assert time.monotonic() - started < 15  # counting the view takes minutes: it was stopped
    err = " ".join(result.stderr.split())
    assert "Error [DLI-406]" in err and "took longer than 2.5s and was cancelled on Trino" in err
    assert "statement 1 of 1" in err and "--timeout SECONDS" in err
    query = trino_secure.last_query("slow_numbers")
    assert query.id in trino_secure.cancelled  # DELETE nextUri reached the server
    assert query.state == "FAILED" and query.error["errorName"] == "USER_CANCELED"


@pytest.mark.hostile(kind="cli-and-secrets")
def test_ctrl_c_cancels_the_query_on_trino_and_exits_130(trino_secure, pki, trino_store, local_env, dli_command,
                                                         tmp_path):
    env = {**os.environ, "AIRFLOW_CONN_TRINO_DEFAULT": json.dumps(
        trino_connection(trino_secure, pki, login=TRINO_USER, password=TRINO_PASSWORD))}
    store = trino_store(sql="SELECT {{ customer }}, {{ execution_date }};\nSELECT count(*) FROM memory.main.slow_numbers")
    proc = subprocess.Popen(
        [*dli_command, "dataset", "run", "lake.orders", "--local", "--store", str(store), *PARAMS],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # as from a terminal
    )
    try:
        query = trino_secure.wait_running("slow_numbers", timeout=60)
        time.sleep(0.3)  # the client polls nextUri by now
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "cancelled" in err and "Traceback" not in err and TRINO_PASSWORD not in out + err
    assert query.id in trino_secure.cancelled and query.error["errorName"] == "USER_CANCELED"


# -- BigQuery ------------------------------------------------------------------------------------------------


def bigquery_connection(standin: Any, **extra: Any) -> str:
    return json.dumps({"conn_type": "google_cloud_platform",
                       "extra": {"project": "standin-project", "api_endpoint": standin.url, **extra}})


def run_bigquery(store: Path, *extra: str) -> Any:
    return dli("dataset", "run", "sales.orders", "--local", "--store", str(store), *PARAMS, "-f", "json", *extra)


def assert_bigquery_job(standin: Any, principal: str) -> None:
    [job] = standin.jobs.values()
    assert job.principal == principal and job.parameter_mode == "NAMED"
    assert job.parameters == {"dli_1": HOSTILE, "dli_2": __import__("datetime").date(2024, 1, 15)}
    assert HOSTILE not in job.sql and "@dli_1" in job.sql and job.job_id.startswith("dli_")
    assert standin.auth.grants == [("urn:ietf:params:oauth:grant-type:jwt-bearer", principal)]


def test_bigquery_with_a_key_file_from_airflow_conn(bigquery_secure, bigquery_store, local_env, tmp_path,
                                                    monkeypatch):
    key, public = service_account_key(tmp_path, SA_EMAIL, "standin-project", bigquery_secure.auth.token_uri)
    bigquery_secure.auth.add_service_account(SA_EMAIL, public)
    monkeypatch.setenv("AIRFLOW_CONN_BQ_LOCAL", bigquery_connection(bigquery_secure, key_path=str(key)))
    result = run_bigquery(bigquery_store())
    assert rows_of(result) == [{"customer": HOSTILE, "order_date": "2024-01-15", "answer": 42}]
    [run] = json.loads(result.stdout)["runs"]
    assert run["ran_on"] == "bigquery" and run["conn_id"] == "bq_local" and run["query_ids"][0].startswith("dli_")
    assert_bigquery_job(bigquery_secure, SA_EMAIL)


def test_bigquery_with_application_default_credentials(bigquery_secure, bigquery_store, local_env, tmp_path,
                                                       monkeypatch):
    email = "adc-user@standin-project.iam.gserviceaccount.com"
    key, public = service_account_key(tmp_path, email, "standin-project", bigquery_secure.auth.token_uri)
    bigquery_secure.auth.add_service_account(email, public)
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(key))  # google.auth.default() finds it
    monkeypatch.setenv("AIRFLOW_CONN_GOOGLE_CLOUD_DEFAULT", bigquery_connection(bigquery_secure))  # no key: ADC
    result = run_bigquery(bigquery_store(conn_id=None))
    assert rows_of(result) == [{"customer": HOSTILE, "order_date": "2024-01-15", "answer": 42}]
    assert json.loads(result.stdout)["runs"][0]["conn_id"] == "google_cloud_default"
    assert_bigquery_job(bigquery_secure, email)


def test_bigquery_with_the_key_inside_a_connections_file(bigquery_secure, bigquery_store, local_env, tmp_path):
    key, public = service_account_key(tmp_path, SA_EMAIL, "standin-project", bigquery_secure.auth.token_uri)
    bigquery_secure.auth.add_service_account(SA_EMAIL, public)
    connections = tmp_path / "connections.json"
    connections.write_text(json.dumps({"bq_local": json.loads(
        bigquery_connection(bigquery_secure, keyfile_dict=json.loads(key.read_text())))}))
    key.unlink()  # only the connections file holds the key
    result = run_bigquery(bigquery_store(), "--connections", str(connections))
    assert rows_of(result)[0]["answer"] == 42
    assert_bigquery_job(bigquery_secure, SA_EMAIL)


@pytest.mark.hostile(kind="cli-and-secrets")
def test_a_bigquery_key_google_refuses_exits_5_and_is_never_printed(bigquery_secure, bigquery_store, local_env,
                                                                     tmp_path):
    key, _ = service_account_key(tmp_path, "stranger@elsewhere.iam.gserviceaccount.com", "standin-project",
                                 bigquery_secure.auth.token_uri)  # not an account the server knows
    info = json.loads(key.read_text())
    connections = tmp_path / "connections.yaml"
    connections.write_text(json.dumps({"bq_local": json.loads(bigquery_connection(bigquery_secure,
                                                                                  keyfile_dict=info))}))
    result = dli("-v", "dataset", "run", "sales.orders", "--local", "--store", str(bigquery_store()), *PARAMS,
                 "--connections", str(connections))
    assert result.exit_code == 5, result.stdout + result.stderr
    assert "Error [DLI-401]" in result.stderr and "cannot get Google credentials from connection 'bq_local'" in result.stderr
    private = "".join(info["private_key"].splitlines()[1:-1])
    for piece in (private[:40], private[-40:], info["private_key"].splitlines()[1]):
        assert piece not in result.stdout + result.stderr
    assert bigquery_secure.auth.grants == [("urn:ietf:params:oauth:grant-type:jwt-bearer", None)]
    assert not bigquery_secure.jobs


def test_a_bigquery_sql_error_exits_3(bigquery_secure, bigquery_store, local_env, tmp_path, monkeypatch):
    key, public = service_account_key(tmp_path, SA_EMAIL, "standin-project", bigquery_secure.auth.token_uri)
    bigquery_secure.auth.add_service_account(SA_EMAIL, public)
    monkeypatch.setenv("AIRFLOW_CONN_BQ_LOCAL", bigquery_connection(bigquery_secure, key_path=str(key)))
    store = bigquery_store(query="'SELECT amount FROM sales.no_such_table WHERE d = {{ execution_date }} "
                                 "AND c = {{ customer }}'")
    result = dli("dataset", "run", "sales.orders", "--local", "--store", str(store), *PARAMS)
    assert result.exit_code == 3, result.stdout + result.stderr
    assert "Error [DLI-405]" in result.stderr and "no_such_table" in result.stderr


def test_timeout_cancels_the_bigquery_job_and_exits_4(bigquery_secure, bigquery_store, local_env, tmp_path,
                                                      monkeypatch):
    key, public = service_account_key(tmp_path, SA_EMAIL, "standin-project", bigquery_secure.auth.token_uri)
    bigquery_secure.auth.add_service_account(SA_EMAIL, public)
    monkeypatch.setenv("AIRFLOW_CONN_BQ_LOCAL", bigquery_connection(bigquery_secure, key_path=str(key)))
    store = bigquery_store(query="'SELECT COUNT(*) AS n FROM slow_numbers WHERE {{ execution_date }} IS NOT NULL "
                                 "AND {{ customer }} IS NOT NULL'")
    started = time.monotonic()
    result = dli("dataset", "run", "sales.orders", "--local", "--store", str(store), *PARAMS, "--timeout", "2.5")
    assert result.exit_code == 4, result.stdout + result.stderr
    assert time.monotonic() - started < 15
    err = " ".join(result.stderr.split())
    assert "Error [DLI-406]" in err and "took longer than 2.5s and was cancelled on BigQuery" in err
    job = bigquery_secure.last_job("slow_numbers")
    assert job.job_id in bigquery_secure.cancelled  # jobs.cancel reached the server
    assert job.error["reason"] == "stopped"


@pytest.mark.hostile(kind="cli-and-secrets")
def test_ctrl_c_cancels_the_bigquery_job_and_exits_130(bigquery_secure, bigquery_store, local_env, tmp_path,
                                                       dli_command):
    key, public = service_account_key(tmp_path, SA_EMAIL, "standin-project", bigquery_secure.auth.token_uri)
    bigquery_secure.auth.add_service_account(SA_EMAIL, public)
    env = {**os.environ, "AIRFLOW_CONN_BQ_LOCAL": bigquery_connection(bigquery_secure, key_path=str(key))}
    store = bigquery_store(query="'SELECT COUNT(*) AS n FROM slow_numbers WHERE {{ execution_date }} IS NOT NULL "
                                 "AND {{ customer }} IS NOT NULL'")
    proc = subprocess.Popen(
        [*dli_command, "dataset", "run", "sales.orders", "--local", "--store", str(store), *PARAMS],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        job = bigquery_secure.wait_running("slow_numbers", timeout=60)
        time.sleep(0.3)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "cancelled" in err and "Traceback" not in err
    assert job.job_id in bigquery_secure.cancelled
