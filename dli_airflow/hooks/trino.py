"""``DliTrinoHook``: the Trino provider's ``TrinoHook`` with a dataset's catalog and schema, and OAuth 2.0.

``TrinoHook.get_conn`` maps a connection's password and its extra ``auth`` (``jwt`` with ``jwt__token`` or
``jwt__file``, ``certs`` with ``certs__client_cert_path``/``certs__client_key_path``, ``kerberos``) to the trino
client's authentication classes; this subclass adds ``auth: oauth2``, the client's own
``OAuth2Authentication`` (Trino's browser login, for a person at a terminal: ``dli dataset run --local``),
and makes a CA bundle given as the extra's ``verify`` win over ``REQUESTS_CA_BUNDLE``/``CURL_CA_BUNDLE``
(``requests`` lets those replace a session's ``verify`` on every request).
"""

from __future__ import annotations

import copy
import json
import sys
import threading
import webbrowser
from typing import Any, ClassVar

import requests
from airflow.providers.trino.hooks.trino import TrinoHook


class DliTrinoHook(TrinoHook):
    """``TrinoHook`` whose connection carries the spec's catalog and schema, and that knows ``auth: oauth2``.

    ``TrinoHook.get_conn`` reads the catalog only from the connection's extra and the schema only from
    the connection, so the override is applied to (a copy of) the connection it reads.

    With ``"auth": "oauth2"`` in the extra, the connection authenticates with Trino's OAuth 2.0 flow: the
    server answers the first request with its challenge, the login URL is printed on stderr (and opened in
    a browser when stderr is a terminal), and the client polls Trino's token server until the login is
    done. The token is kept for the rest of the process (one login per server and user), never printed.

    :param catalog: the catalog over the connection's ``extra.catalog``
    :param db_schema: the schema over the connection's schema
    """

    #: One OAuth 2.0 authentication (and so one token) per (host, port, user) in this process.
    _oauth2: ClassVar[dict[tuple[str, int, str | None], Any]] = {}
    _oauth2_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, *args: Any, catalog: str | None = None, db_schema: str | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.catalog_override = catalog
        self.schema_override = db_schema

    def get_connection(self, conn_id: str) -> Any:  # type: ignore[override]
        """The connection ``conn_id``, with the overrides applied to a copy."""
        connection = super().get_connection(conn_id)
        if not (self.catalog_override or self.schema_override):
            return connection
        connection = copy.copy(connection)
        if self.schema_override:
            connection.schema = self.schema_override
        if self.catalog_override:
            connection.extra = json.dumps({**connection.extra_dejson, "catalog": self.catalog_override})
        return connection

    def get_conn(self) -> Any:
        """A ``trino.dbapi`` connection; ``auth: oauth2`` gets the client's ``OAuth2Authentication``.

        :raises TrinoAuthError: OAuth 2.0 over plain HTTP (the client refuses any authentication there)
        :raises ValueError: OAuth 2.0 together with a password
        """
        from trino.exceptions import TrinoAuthError

        connection = self.get_connection(self.get_conn_id())
        extra = connection.extra_dejson
        if extra.get("auth") != "oauth2":
            return _pin_ca_bundle(super().get_conn(), extra.get("verify"))
        if connection.password:
            raise ValueError("Multiple authentication methods specified: password, oauth2. Only one is allowed.")
        conn = super().get_conn()  # TrinoHook knows no "oauth2": the connection comes without authentication
        if conn.http_scheme != "https":
            conn.close()
            raise TrinoAuthError(
                "TLS/SSL is required for OAuth 2.0 authentication: set \"protocol\": \"https\" in the connection's extra"
            )
        conn.auth = self._oauth2_for(conn.host, conn.port, conn.user)
        return _pin_ca_bundle(conn, extra.get("verify"))

    @classmethod
    def _oauth2_for(cls, host: str, port: int, user: str | None) -> Any:
        from trino.auth import OAuth2Authentication

        with cls._oauth2_lock:
            key = (host, port, user)
            if key not in cls._oauth2:
                cls._oauth2[key] = OAuth2Authentication(redirect_auth_url_handler=_show_login_url)  # type: ignore[arg-type]
            return cls._oauth2[key]


class _CaBundleSession(requests.Session):
    """A session whose ``verify`` (a CA bundle) is not replaced by ``REQUESTS_CA_BUNDLE``/``CURL_CA_BUNDLE``."""

    def merge_environment_settings(self, url: Any, proxies: Any, stream: Any, verify: Any, cert: Any) -> Any:
        settings = super().merge_environment_settings(url, proxies, stream, verify, cert)
        if verify is None or verify is True:  # nothing given for this request: the session's own bundle
            settings["verify"] = self.verify
        return settings


def _pin_ca_bundle(conn: Any, verify: Any) -> Any:
    """``conn`` with the connection's CA bundle kept over the environment's (a path; a bool is left alone)."""
    session = getattr(conn, "_http_session", None)
    if isinstance(verify, str) and verify.lower() not in ("true", "false") and isinstance(session, requests.Session):
        pinned = _CaBundleSession()
        pinned.verify = verify
        conn._http_session = pinned  # the trino client builds its session in connect() and has no setter
        session.close()
    return conn


def _show_login_url(url: str) -> None:
    """Trino's OAuth 2.0 redirect handler: the login URL on stderr (stdout carries the rows), in a browser
    when a person is at the terminal."""
    print(f"Trino asks for a login: open {url} in a browser; waiting for it...", file=sys.stderr, flush=True)
    if sys.stderr.isatty():
        webbrowser.open(url)
