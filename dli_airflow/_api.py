"""The HTTP transport to Airflow's REST API v2, shared by :class:`~dli_airflow.client.WorkflowClient` and
``dli dev``'s readiness checks.

Three things live here and nowhere else, the way httpx itself splits them:

- :class:`AirflowJWTAuth`, an ``httpx.Auth`` that sends ``Authorization: Bearer <JWT>``: a static token,
  or one fetched from ``POST /auth/token`` with a username and password, fetched again once when Airflow
  answers 401 or 403 "Invalid JWT token" (Airflow's answer to an expired token);
- :func:`map_transport_error` and :func:`raise_for_response`, the one mapping of transport and HTTP
  errors to :class:`~dli_airflow.errors.DliError` (the cause kept with ``from exc``);
- :class:`ApiTransport.request`, with the bounded retry of idempotent requests (connection errors and
  5xx, backoff 0.25 s doubling to 2 s).

Imports no Airflow code. Tokens and passwords never reach a message, a log line or a repr.
"""

from __future__ import annotations

import os
import ssl
import threading
import time
from collections.abc import Callable, Generator, Mapping
from typing import Any

import httpx

from dli_airflow.errors import (
    DliError,
    ServerAuthError,
    ServerExecutionError,
    ServerUnreachableError,
    WorkflowExecutionError,
)

#: HTTP statuses an idempotent request is retried on.
RETRY_STATUSES = frozenset({500, 502, 503, 504})
#: The REST API's prefix under the Airflow URL.
API_PREFIX = "/api/v2"
#: dli's control plane in the api-server (the dli plugin), beside Airflow's ``/api/v2``
DLI_API = "/dli/api/v1"
#: workflows per page of the control plane's list (its largest)
PLANE_PAGE = 1000


def backoff(attempt: int) -> float:
    """Seconds to wait before retry ``attempt`` (1-based): 0.25, 0.5, 1, 2, 2, ..."""
    return min(0.25 * 2 ** (attempt - 1), 2.0)


def is_expired_token(response: httpx.Response) -> bool:
    """Whether Airflow refused the request's token (401, or 403 "Invalid JWT token" for an expired one)."""
    return response.status_code == 401 or (response.status_code == 403 and "Invalid JWT" in response.text)


def detail(response: httpx.Response) -> str:
    """The server's explanation of an error response, bounded (FastAPI's ``detail`` when there is one)."""
    try:
        data = response.json()
    except ValueError:
        return response.text[:300]
    found = data.get("detail", data) if isinstance(data, dict) else data
    if isinstance(found, list):
        return "; ".join(str(d.get("msg", d)) if isinstance(d, dict) else str(d) for d in found)[:500]
    return str(found)[:500]


def map_transport_error(exc: httpx.TransportError, url: str) -> ServerUnreachableError:
    """The DLI error for a request that never got an answer (refused, timed out, TLS)."""
    return ServerUnreachableError(
        f"Cannot connect to Airflow at {url} ({type(exc).__name__})",
        hint="check DLI_AIRFLOW_URL and that the Airflow api-server is running (`dli dev status` for a local one)",
    )


def dli_error_of(response: httpx.Response) -> DliError | None:
    """The DLI error a control-plane answer carries (``{"code": "DLI-…", "message", "hint", "problems"}``)."""
    try:
        data = response.json()
    except ValueError:
        return None
    code = data.get("code") if isinstance(data, dict) else None
    if not isinstance(code, str) or not code.startswith("DLI-"):
        return None
    from dli_airflow.errors import Problem, all_error_classes

    cls = next((c for c in all_error_classes() if c.code == code), DliError)
    problems = [
        Problem(str(p.get("message", "")), file=p.get("file"), field=p.get("field"), hint=p.get("hint"), line=p.get("line"))
        for p in data.get("problems") or [] if isinstance(p, dict)
    ]
    context = {k: str(data[k])[:1000] for k in ("dataset_name", "run_id", "path", "field") if data.get(k)}
    return cls(str(data.get("message", ""))[:2000], hint=data.get("hint"), problems=problems, **context)


def raise_for_response(response: httpx.Response, url: str, path: str) -> None:
    """Raise the DLI error for an HTTP error answer of the REST API.

    :param url: the Airflow URL (for the message)
    :param path: the API path asked for (for the message)
    """
    status = response.status_code
    dli = dli_error_of(response)
    if dli is not None:
        raise dli
    why = detail(response)
    if is_expired_token(response):
        raise ServerAuthError(
            f"Airflow at {url} refused the credentials (401): {why}",
            hint="set a valid DLI_AIRFLOW_TOKEN, or DLI_AIRFLOW_USERNAME and DLI_AIRFLOW_PASSWORD",
        )
    if status == 403:
        raise ServerAuthError(
            f"Airflow at {url} does not allow this ({path}): {why}",
            hint="ask an Airflow admin for access to the DAG, or use another user",
        )
    if status >= 500:
        raise ServerExecutionError(
            f"Airflow at {url} failed ({status}) on {path}: {why}",
            hint="retry in a moment; if it persists, check the api-server log",
        )
    raise WorkflowExecutionError(f"Airflow refused {path} ({status}): {why}")


def no_credentials() -> ServerAuthError:
    """The error for a request that needs credentials when none were given."""
    return ServerAuthError(
        "No Airflow credentials: set DLI_AIRFLOW_TOKEN, or DLI_AIRFLOW_USERNAME and DLI_AIRFLOW_PASSWORD",
        hint="a token from any auth manager works through DLI_AIRFLOW_TOKEN",
    )


def settings_from_env(**overrides: Any) -> dict[str, Any]:
    """A client's connection settings from ``DLI_AIRFLOW_URL``, ``DLI_AIRFLOW_TOKEN`` or
    ``DLI_AIRFLOW_USERNAME``/``_PASSWORD``, ``DLI_AIRFLOW_CA_BUNDLE`` and ``DLI_AIRFLOW_TIMEOUT``; keyword
    arguments that are not ``None`` override them. The keyword arguments of :class:`ApiTransport`."""
    env = os.environ
    settings: dict[str, Any] = {
        "url": env.get("DLI_AIRFLOW_URL"),
        "token": env.get("DLI_AIRFLOW_TOKEN") or None,
        "username": env.get("DLI_AIRFLOW_USERNAME") or None,
        "password": env.get("DLI_AIRFLOW_PASSWORD") or None,
    }
    if env.get("DLI_AIRFLOW_CA_BUNDLE"):
        settings["verify"] = env["DLI_AIRFLOW_CA_BUNDLE"]
    if env.get("DLI_AIRFLOW_TIMEOUT"):
        settings["timeout"] = float(env["DLI_AIRFLOW_TIMEOUT"])
    settings.update({k: v for k, v in overrides.items() if v is not None})
    return settings


def check_settings(url: str | None, token: str | None, username: str | None, password: str | None) -> str:
    """The URL, once there is one and credentials to go with it.

    :raises ServerUnreachableError: no URL
    :raises ServerAuthError: neither a token nor a username and password
    """
    if not url:
        raise ServerUnreachableError(
            "No Airflow URL: pass url= or set DLI_AIRFLOW_URL (e.g. http://127.0.0.1:8080)",
            hint="`dli dev status` shows the URL of a local Airflow",
        )
    if token is None and (username is None or password is None):
        raise no_credentials()
    return url


class AirflowJWTAuth(httpx.Auth):
    """Bearer-token authentication for Airflow's API server.

    Without any credentials only unauthenticated requests can be made (``/monitor/health``); the first
    authenticated one raises :class:`~dli_airflow.errors.ServerAuthError` saying what to set.

    :param url: the Airflow URL (token endpoint ``<url>/auth/token``; also named in errors)
    :param token: a JWT from any auth manager; it is never refreshed
    :param username: with ``password``: log in at ``/auth/token`` on first use and after expiry
    :param password: the password of ``username``
    """

    requires_response_body = True

    def __init__(
        self, url: str, *, token: str | None = None, username: str | None = None, password: str | None = None
    ) -> None:
        self.url = url.rstrip("/")
        self._token = token
        self._username = username
        self._password = password
        self._refreshable = token is None
        self.has_credentials = token is not None or (username is not None and password is not None)
        self._lock = threading.Lock()

    def __repr__(self) -> str:  # never show credentials
        return f"AirflowJWTAuth(url={self.url!r}, username={self._username!r})"

    def _token_request(self) -> httpx.Request:
        if not self.has_credentials:
            raise no_credentials()
        return httpx.Request(
            "POST", f"{self.url}/auth/token", json={"username": self._username, "password": self._password}
        )

    def _take_token(self, response: httpx.Response) -> str:
        if response.status_code in (401, 403):
            raise ServerAuthError(
                f"Airflow at {self.url} refused the login of user {self._username!r}",
                hint="check DLI_AIRFLOW_USERNAME and DLI_AIRFLOW_PASSWORD (or set DLI_AIRFLOW_TOKEN)",
            )
        if response.status_code >= 400:
            raise ServerExecutionError(f"Airflow at {self.url} answered {response.status_code} to /auth/token")
        try:
            token = response.json().get("access_token")
        except ValueError:
            token = None
        if not isinstance(token, str) or not token:
            raise ServerAuthError(f"Airflow at {self.url} returned no access_token from /auth/token")
        return token

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        if self._token is None:
            self._token = self._take_token((yield self._token_request()))
        sent_with = self._token
        request.headers["Authorization"] = f"Bearer {sent_with}"
        response = yield request
        if self._refreshable and is_expired_token(response):
            with self._lock:
                if self._token == sent_with:  # another thread may have logged in again meanwhile
                    self._token = None
            if self._token is None:
                self._token = self._take_token((yield self._token_request()))
            request.headers["Authorization"] = f"Bearer {self._token}"
            yield request

    def token(self, client: httpx.Client) -> str:
        """The current token, logging in first if there is none yet (``dli dev`` hands it to browsers)."""
        if not self.has_credentials:
            raise no_credentials()
        if self._token is None:
            self._token = self._take_token(client.send(client.build_request(
                "POST", "/auth/token", json={"username": self._username, "password": self._password}
            ), auth=None))
        return self._token


def tls_verify(url: str, verify: bool | str) -> bool | str | ssl.SSLContext:
    """``verify`` for httpx; for a plain-``http://`` Airflow without a proxy, a context that verifies
    against no CA at all instead of httpx's default, which loads every CA of certifi first (30 ms of each CLI
    command). No TLS is ever made on such a client (redirects are not followed), and if one were, it would be
    refused, never unverified."""
    if verify is not True or not url.lower().startswith("http://") or any(
        os.environ.get(name) for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy")
    ):
        return verify
    return ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # check_hostname and CERT_REQUIRED by default


class ApiTransport:
    """One ``httpx.Client`` to an Airflow API server, with :class:`AirflowJWTAuth`, the error mapping and
    the bounded retry.

    :param url: the Airflow URL, e.g. ``https://airflow.example.com``
    :param token: a JWT; or ``username``/``password`` for ``/auth/token``
    :param timeout: seconds per request
    :param verify: TLS verification: ``True``, ``False`` or a CA bundle path
    :param retries: attempts for idempotent requests on connection errors and 5xx (at least 1)
    :param transport: an httpx transport (tests inject ``httpx.MockTransport`` here)
    """

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        username: str | None = None,
        password: str | None = None,
        timeout: float = 30.0,
        verify: bool | str = True,
        retries: int = 3,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.auth = AirflowJWTAuth(self.url, token=token, username=username, password=password)
        self.retries = max(1, retries)
        self._http = httpx.Client(
            base_url=self.url, timeout=timeout, verify=tls_verify(self.url, verify), transport=transport,
            follow_redirects=False,
            auth=self.auth, event_hooks={"response": [self._count]},
        )
        #: HTTP requests answered so far, token requests and re-sent ones included (benchmarks count them)
        self.requests_made = 0

    def _count(self, response: httpx.Response) -> None:
        self.requests_made += 1

    def __repr__(self) -> str:
        return f"ApiTransport(url={self.url!r})"

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ApiTransport:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        ok: tuple[int, ...] = (200,),
        idempotent: bool | None = None,
        retry_statuses: tuple[int, ...] = (),
        authenticated: bool = True,
        prefix: str = API_PREFIX,
    ) -> httpx.Response:
        """Send one request to ``<prefix><path>`` (Airflow's ``/api/v2`` by default, or dli's control plane);
        return the response when its status is in ``ok``.

        :param idempotent: retried on connection errors and 5xx (default: GET and HEAD are)
        :param retry_statuses: statuses a non-idempotent request may be retried on (e.g. 503 for a write
            the server says it did not make)
        :param authenticated: False sends no token (``/monitor/health``)
        :raises DliError: the mapped error of the transport or of the answer
        """
        if idempotent is None:
            idempotent = method in ("GET", "HEAD")
        attempts = self.retries if idempotent else (max(self.retries, 6) if retry_statuses else 1)
        retryable = RETRY_STATUSES if idempotent else frozenset(retry_statuses)
        attempt = 0
        while True:
            attempt += 1
            try:
                response = self._http.request(
                    method, f"{prefix}{path}", json=json, params=params,
                    **({} if authenticated else {"auth": None}),
                )
            except httpx.TransportError as exc:
                if idempotent and attempt < attempts:
                    time.sleep(backoff(attempt))
                    continue
                raise map_transport_error(exc, self.url) from exc
            if response.status_code in retryable and attempt < attempts:
                time.sleep(backoff(attempt))
                continue
            if response.status_code in ok:
                return response
            raise_for_response(response, self.url, path)

    def get(self, path: str, **params: Any) -> Any:
        """GET ``path`` and return its JSON; ``None`` parameters are left out."""
        return self.request("GET", path, params={k: v for k, v in params.items() if v is not None}).json()

    def paginate(self, path: str, key: str, *, page_size: int = 100, **params: Any) -> list[dict[str, Any]]:
        """Every item of a ``limit``/``offset`` paginated collection (``key`` names its list).

        :param page_size: 100 is the api-server's default ``maximum_page_limit``
        """
        items: list[dict[str, Any]] = []
        offset = 0
        while True:
            page = self.get(path, limit=page_size, offset=offset, **params)
            batch = page.get(key) or []
            items.extend(batch)
            offset += len(batch)
            if not batch or offset >= int(page.get("total_entries") or 0):
                return items

    def token(self) -> str:
        """The bearer token (fetched now if needed)."""
        try:
            return self.auth.token(self._http)
        except httpx.TransportError as exc:
            raise map_transport_error(exc, self.url) from exc


def plane_list(
    api: ApiTransport, params: Mapping[str, Any], limit: int | None,
    decode: Callable[[bytes], tuple[list[Any], int, int]],
) -> tuple[list[Any], int, int] | None:
    """Every workflow of the control plane's ``GET /dli/api/v1/workflows`` (or the first ``limit``), paged
    by :data:`PLANE_PAGE`: ``(workflows, total, problems)``, or ``None`` when this Airflow has no control
    plane (Airflow's own 404). The first page doubles as the plane's probe (no ``/health`` round trip).

    :param params: the list's filters (``None`` values left out)
    :param decode: one page's bytes as ``(workflows, total_entries, problems)``: the client validates them
        into its models, ``dli workflow list`` reads plain JSON (no pydantic import on the CLI's hot path)
    """
    query = {k: v for k, v in params.items() if v is not None}
    found: list[Any] = []
    total = problems = 0
    while limit is None or len(found) < limit:
        size = PLANE_PAGE if limit is None else min(PLANE_PAGE, limit - len(found))
        response = api.request("GET", "/workflows", prefix=DLI_API, ok=(200, 404),
                               params={**query, "limit": size, "offset": len(found)})
        if response.status_code == 404:
            if dli_error_of(response) is not None:
                raise_for_response(response, api.url, "/workflows")
            return None  # Airflow's own 404: no dli plugin in this api-server
        workflows, total, problems = decode(response.content)
        found.extend(workflows)
        if not workflows or len(found) >= total:
            break
    return found, total, problems


__all__ = [
    "API_PREFIX",
    "DLI_API",
    "PLANE_PAGE",
    "AirflowJWTAuth",
    "ApiTransport",
    "RETRY_STATUSES",
    "backoff",
    "detail",
    "is_expired_token",
    "map_transport_error",
    "check_settings",
    "no_credentials",
    "plane_list",
    "raise_for_response",
    "settings_from_env",
]
