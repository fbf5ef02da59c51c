"""What the stand-ins need to authenticate clients as the real servers do: test keys and certificates, TLS.

- :func:`make_pki` writes, with the ``cryptography`` package, a test certificate authority, a server
  certificate for ``127.0.0.1``/``localhost`` signed by it, a client certificate (its common name is the
  user a Trino coordinator maps it to), and an RSA key pair an "identity provider" signs JWTs with;
- :class:`TrinoAuth` is what a Trino coordinator's authenticators check (certificate, password, JWT, OAuth 2.0
  with its challenge, token server and login), for :mod:`trino_standin`;
- :class:`TlsHTTPServer` is a threaded HTTP server that speaks TLS with such a certificate, the handshake
  done in the request's own thread (a client that never finishes it does not block the others), asking for
  an optional client certificate when it is given a CA to check them with;
- :func:`sign_jwt` and :func:`service_account_key` make the credentials a test hands to the clients: a
  JWT as an OIDC provider issues it, a Google service-account key file pointing at a stand-in's token
  endpoint.

Nothing here is a real secret: every key is made for one test session and thrown away.
"""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import itertools
import json
import secrets
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

#: The user a Trino coordinator maps the test client certificate to (its subject's common name).
CLIENT_CERT_USER = "cert-user"
#: The Basic-auth user of the tests' Trino and its password (made up for the tests: dli never prints it).
TRINO_USER = "ana"
TRINO_PASSWORD = "Tr1no-Passw0rd-Not-For-Output"
#: The user a completed OAuth 2.0 login at the tests' Trino becomes.
OAUTH2_USER = "oauth-user"


@dataclass(frozen=True)
class Pki:
    """The test session's keys and certificates, as PEM files."""

    ca_cert: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    #: a client certificate its holder made itself: the CA did not sign it
    rogue_cert: Path
    rogue_key: Path
    #: the identity provider's RSA key pair (JWTs are signed RS256 with the private key)
    idp_private_key: Path
    idp_public_key: Path


def _key() -> Any:
    from cryptography.hazmat.primitives.asymmetric import rsa

    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _pem_key(key: Any) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _pem_public(key: Any) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _certificate(subject_cn: str, key: Any, issuer: tuple[Any, Any] | None, *, ca: bool = False,
                 server: bool = False) -> Any:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = dt.datetime.now(dt.timezone.utc)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject_cn)])
    issuer_cert, issuer_key = issuer if issuer is not None else (None, key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_cert.subject if issuer_cert is not None else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                          key_encipherment=False, data_encipherment=False, key_agreement=False,
                          encipher_only=False, decipher_only=False),
            critical=True,
        ).add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    else:
        usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        if issuer_cert is not None:
            builder = builder.add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False
            )
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
    return builder.sign(issuer_key, hashes.SHA256())


def make_pki(folder: Path) -> Pki:
    """Write a fresh test CA, server and client certificates and an identity provider's key pair."""
    from cryptography.hazmat.primitives import serialization

    folder.mkdir(parents=True, exist_ok=True)
    ca_key = _key()
    ca = _certificate("dli test CA", ca_key, None, ca=True)
    server_key = _key()
    server = _certificate("127.0.0.1", server_key, (ca, ca_key), server=True)
    client_key = _key()
    client = _certificate(CLIENT_CERT_USER, client_key, (ca, ca_key))
    rogue_key = _key()
    rogue = _certificate(CLIENT_CERT_USER, rogue_key, None)
    idp_key = _key()

    def write(name: str, data: bytes) -> Path:
        path = folder / name
        path.write_bytes(data)
        return path

    pem = serialization.Encoding.PEM
    return Pki(
        ca_cert=write("ca.pem", ca.public_bytes(pem)),
        server_cert=write("server.pem", server.public_bytes(pem)),
        server_key=write("server.key", _pem_key(server_key)),
        client_cert=write("client.pem", client.public_bytes(pem)),
        client_key=write("client.key", _pem_key(client_key)),
        rogue_cert=write("rogue.pem", rogue.public_bytes(pem)),
        rogue_key=write("rogue.key", _pem_key(rogue_key)),
        idp_private_key=write("idp.key", _pem_key(idp_key)),
        idp_public_key=write("idp.pub", _pem_public(idp_key)),
    )


def sign_jwt(private_key_pem: str | bytes, claims: dict[str, Any], *, lifetime: float = 3600,
             key_id: str | None = None) -> str:
    """A JWT signed RS256, as an OIDC provider issues it (``iat``/``exp`` added)."""
    import jwt

    now = int(time.time())
    body = {"iat": now, "exp": now + int(lifetime), **claims}
    headers = {"kid": key_id} if key_id else None
    return jwt.encode(body, private_key_pem, algorithm="RS256", headers=headers)


def service_account_key(folder: Path, email: str, project: str, token_uri: str) -> tuple[Path, str]:
    """A Google service-account key file (a fresh RSA key) whose ``token_uri`` is a stand-in's.

    :returns: the file, and the PEM public key the stand-in checks the signed assertions with
    """
    key = _key()
    info = {
        "type": "service_account",
        "project_id": project,
        "private_key_id": "standin-key-1",
        "private_key": _pem_key(key).decode(),
        "client_email": email,
        "client_id": "1234567890",
        "auth_uri": "https://accounts.example.invalid/o/oauth2/auth",
        "token_uri": token_uri,
    }
    path = folder / f"{email.split('@')[0]}.json"
    path.write_text(json.dumps(info))
    return path, _pem_public(key).decode()


class TlsHTTPServer(ThreadingHTTPServer):
    """A threaded HTTP server; with :meth:`use_tls`, HTTPS (the handshake in each request's thread).

    A client certificate is asked for, not required, when ``client_ca`` is given; the handler reads
    ``self.connection.getpeercert()`` (empty when none was presented or it did not verify).
    """

    daemon_threads = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.ssl_context: ssl.SSLContext | None = None
        #: handshakes that failed (what a client that does not trust the certificate causes)
        self.handshake_errors: list[str] = []

    def use_tls(self, cert: str | Path, key: str | Path, client_ca: str | Path | None = None) -> None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(str(cert), str(key))
        if client_ca is not None:
            context.load_verify_locations(str(client_ca))
            context.verify_mode = ssl.CERT_OPTIONAL
        self.ssl_context = context

    def finish_request(self, request: Any, client_address: Any) -> None:
        if self.ssl_context is None:
            super().finish_request(request, client_address)
            return
        request.settimeout(10)  # a client that stalls in the handshake gives up its thread
        try:
            secure = self.ssl_context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError) as exc:
            self.handshake_errors.append(f"{type(exc).__name__}: {exc}")
            return
        secure.settimeout(None)
        try:
            super().finish_request(secure, client_address)
        finally:
            try:
                secure.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            secure.close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that went away mid-request (a cancelled run) is not the server's failure


@dataclass
class OAuth2Login:
    """One OAuth 2.0 challenge: done when its redirect URL was visited; then the token is handed out."""

    id: str
    done: threading.Event = field(default_factory=threading.Event)
    token: str | None = None
    polls: int = 0


@dataclass
class TrinoAuth:
    """The authentication types a Trino stand-in is configured with, and their state (none: all let in).

    :param passwords: ``PASSWORD``: user → password (``Authorization: Basic``)
    :param jwt_public_key: ``JWT``: the PEM public key a bearer token's RS256 signature must verify with
    :param client_ca: ``CERTIFICATE``: the CA (PEM file) that signs accepted client certificates
    :param oauth2_user: ``OAUTH2``: the user a completed login becomes
    :param oauth2_wait: the longest one ``GET`` of the token server waits for the login to complete
    """

    passwords: dict[str, str] = field(default_factory=dict)
    jwt_public_key: str | None = None
    client_ca: str | Path | None = None
    oauth2_user: str | None = None
    oauth2_wait: float = 2.0
    logins: dict[str, OAuth2Login] = field(default_factory=dict)
    _tokens: dict[str, str] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _ids: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    @property
    def enabled(self) -> bool:
        return bool(self.passwords or self.jwt_public_key or self.client_ca or self.oauth2_user)

    def authenticate(self, headers: dict[str, str], peer_certificate: Any) -> tuple[str | None, str | None] | None:
        """``(kind, user)`` of a request's credentials — ``(None, None)`` when no authentication is configured —
        or ``None`` when they are missing or wrong (answer 401 with :meth:`challenges`).

        :param headers: the request's headers, names in lower case
        :param peer_certificate: the verified client certificate (``getpeercert()``), if any
        """
        if not self.enabled:
            return None, None
        if self.client_ca and peer_certificate:  # verified against client_ca in the handshake
            subject = dict(item for rdn in peer_certificate.get("subject", ()) for item in rdn)
            if subject.get("commonName"):
                return "certificate", subject["commonName"]
        scheme, _, credentials = (headers.get("authorization") or "").partition(" ")
        if scheme.lower() == "basic" and self.passwords:
            try:
                user, _, password = base64.b64decode(credentials, validate=True).decode().partition(":")
            except ValueError:
                return None
            return ("password", user) if password and self.passwords.get(user) == password else None
        if scheme.lower() == "bearer" and credentials:
            with self._lock:
                issued = self._tokens.get(credentials)
            if issued is not None:
                return "oauth2", issued
            if self.jwt_public_key:
                import jwt

                try:
                    claims = jwt.decode(credentials, self.jwt_public_key, algorithms=["RS256"],
                                        options={"require": ["exp", "sub"], "verify_aud": False})
                except jwt.PyJWTError:
                    return None
                return "jwt", str(claims["sub"])
        return None

    def challenges(self, base_url: str) -> list[str]:
        """The ``WWW-Authenticate`` values of a 401, one per configured kind (the OAuth 2.0 one a fresh login)."""
        values = []
        if self.passwords:
            values.append('Basic realm="Trino"')
        if self.jwt_public_key:
            values.append('Bearer realm="Trino", token_type="JWT"')
        if self.oauth2_user:
            login = OAuth2Login(id=f"login{next(self._ids):04d}")
            with self._lock:
                self.logins[login.id] = login
            values.append(f'Bearer x_redirect_server="{base_url}/oauth2/token/initiate/{login.id}", '
                          f'x_token_server="{base_url}/oauth2/token/{login.id}"')
        return values

    def oauth2_visit(self, login_id: str) -> bool:
        """The browser's visit of the redirect URL: the user logs in and a token is issued for them."""
        login = self.logins.get(login_id)
        if login is None or self.oauth2_user is None:
            return False
        with self._lock:
            if login.token is None:
                login.token = f"standin-oauth2-{login_id}-{secrets.token_hex(8)}"
                self._tokens[login.token] = self.oauth2_user
        login.done.set()
        return True

    def oauth2_token(self, login_id: str, base_url: str) -> dict[str, Any] | None:
        """The token server's answer: the token once the login is done, else (after a wait) ``nextUri``."""
        login = self.logins.get(login_id)
        if login is None:
            return None
        login.polls += 1
        if login.done.wait(self.oauth2_wait):
            return {"token": login.token}
        return {"nextUri": f"{base_url}/oauth2/token/{login_id}"}


#: The OAuth 2.0 grant types Google's token endpoint takes from google-auth.
JWT_BEARER_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
REFRESH_TOKEN_GRANT = "refresh_token"
#: The audience of a service account's assertion, as Google's token endpoint checks it.
GOOGLE_TOKEN_AUDIENCE = "https://oauth2.googleapis.com/token"


@dataclass
class GoogleAuth:
    """What Google's token endpoint and API front door check, for :mod:`bigquery_standin`.

    - a service account (key file, ``keyfile_dict``): google-auth posts a JWT assertion signed with the
      account's private key (``grant_type`` jwt-bearer; ``iss`` the account, ``aud`` Google's token endpoint,
      a ``scope``); it is checked with the account's public key;
    - an authorized user (application default credentials from ``gcloud auth application-default
      login``): google-auth posts its ``refresh_token`` with the OAuth client's id and secret;
    - either gets an opaque access token (``expires_in`` 3599); an API request must carry one as
      ``Authorization: Bearer`` — a JWT the account signed itself (google-auth's self-signed JWT access) is
      taken too.

    :param token_uri: the token endpoint's URL (where the key files point)
    """

    token_uri: str = ""
    service_accounts: dict[str, str] = field(default_factory=dict)
    authorized_users: dict[str, tuple[str, str, str]] = field(default_factory=dict)
    #: (grant type, principal or None when refused) of every token request, in order
    grants: list[tuple[str, str | None]] = field(default_factory=list)
    _tokens: dict[str, str] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add_service_account(self, email: str, public_key_pem: str) -> None:
        self.service_accounts[email] = public_key_pem

    def add_authorized_user(self, principal: str, client_id: str, client_secret: str, refresh_token: str) -> None:
        self.authorized_users[refresh_token] = (client_id, client_secret, principal)

    def token(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        """The token endpoint: ``(status, body)`` for a form-encoded token request."""
        grant = form.get("grant_type", "")
        principal = self._grant(grant, form)
        self.grants.append((grant, principal))
        if principal is None:
            return 400, {"error": "invalid_grant", "error_description": "Invalid grant: the credentials were refused"}
        access = f"ya29.standin-{secrets.token_hex(12)}"
        with self._lock:
            self._tokens[access] = principal
        return 200, {"access_token": access, "expires_in": 3599, "token_type": "Bearer"}

    def principal(self, authorization: str | None) -> str | None:
        """Who an API request's ``Authorization`` header is from, or ``None`` (answer 401)."""
        scheme, _, credentials = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not credentials:
            return None
        with self._lock:
            known = self._tokens.get(credentials)
        if known is not None:
            return known
        return self._self_signed(credentials)

    def _grant(self, grant: str, form: dict[str, str]) -> str | None:
        import jwt

        if grant == JWT_BEARER_GRANT:
            assertion = form.get("assertion", "")
            try:
                issuer = jwt.decode(assertion, options={"verify_signature": False}).get("iss")
                key = self.service_accounts.get(str(issuer))
                if key is None:
                    return None
                # google-auth addresses the assertion to Google's token endpoint whatever token_uri says
                audience = [GOOGLE_TOKEN_AUDIENCE, self.token_uri]
                claims = jwt.decode(assertion, key, algorithms=["RS256"], audience=audience,
                                    options={"require": ["exp", "iat", "iss", "aud"]})
            except jwt.PyJWTError:
                return None
            return str(claims["iss"]) if claims.get("scope") else None
        if grant == REFRESH_TOKEN_GRANT:
            known = self.authorized_users.get(form.get("refresh_token", ""))
            if known is None or (form.get("client_id"), form.get("client_secret")) != known[:2]:
                return None
            return known[2]
        return None

    def _self_signed(self, token: str) -> str | None:
        import jwt

        try:
            issuer = jwt.decode(token, options={"verify_signature": False}).get("iss")
            key = self.service_accounts.get(str(issuer))
            if key is None:
                return None
            jwt.decode(token, key, algorithms=["RS256"], options={"verify_aud": False, "require": ["exp"]})
        except jwt.PyJWTError:
            return None
        return str(issuer)
