"""A local OIDC issuer that imitates the ID token services of GitHub and Azure DevOps.

It signs RS256 JWTs with an RSA key generated at start-up and publishes the public key as a
JWKS, so a token endpoint can check federated client assertions against it. As a loopback
HTTP(S) server it responds to the two requests that pipelines make:

- GitHub Actions: ``GET <ACTIONS_ID_TOKEN_REQUEST_URL>&audience=<aud>`` with
  ``Authorization: Bearer <ACTIONS_ID_TOKEN_REQUEST_TOKEN>``, answered with ``{"value": jwt}``.
- Azure DevOps: ``POST <SYSTEM_OIDCREQUESTURI>?api-version=7.1&serviceConnectionId=<id>``
  with ``Authorization: Bearer <System.AccessToken>``, answered with ``{"oidcToken": jwt}``.

It also serves ``/.well-known/openid-configuration`` and ``/.well-known/jwks``. The bearer
tokens it expects are random per instance; they and the JWTs it issues are secrets.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import secrets
import ssl
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

logger = logging.getLogger(__name__)

DEFAULT_LIFETIME_SECONDS = 300
DEFAULT_GITHUB_AUDIENCE = "api://AzureADTokenExchange"
# Azure DevOps takes no audience parameter and always issues this one.
AZURE_DEVOPS_AUDIENCE = "api://AzureADTokenExchange"
GITHUB_TOKEN_PATH = "/github/token"  # noqa: S105 - a URL path
AZURE_DEVOPS_TOKEN_PATH = "/azure-devops/oidctoken"  # noqa: S105 - a URL path
OPENID_CONFIGURATION_PATH = "/.well-known/openid-configuration"
JWKS_PATH = "/.well-known/jwks"
STOP_TIMEOUT_SECONDS = 10.0


def base64url_encode(data: bytes) -> str:
    """Encode bytes as unpadded base64url, the encoding of every JWT part."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def base64url_decode(text: str) -> bytes:
    """Decode unpadded base64url. Raises ValueError (binascii.Error) on invalid input."""
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def rsa_public_jwk(public_key: rsa.RSAPublicKey) -> dict[str, str]:
    """Return the public key as a JWK whose ``kid`` is its RFC 7638 thumbprint."""
    numbers = public_key.public_numbers()
    members = {
        "e": base64url_encode(_int_bytes(numbers.e)),
        "kty": "RSA",
        "n": base64url_encode(_int_bytes(numbers.n)),
    }
    # RFC 7638: SHA-256 over the required members, sorted, without whitespace.
    canonical = json.dumps(members, separators=(",", ":"), sort_keys=True).encode("ascii")
    kid = base64url_encode(hashlib.sha256(canonical).digest())
    return {**members, "kid": kid, "use": "sig", "alg": "RS256"}


def _int_bytes(value: int) -> bytes:
    return value.to_bytes((value.bit_length() + 7) // 8, "big")


@dataclass(frozen=True)
class IssuedToken:
    """Record of a signed token (subject, audience, times) for tests and logs, without the JWT."""

    kind: str  # "github", "azure-devops" or "direct"
    subject: str
    audience: str
    issued_at: int
    expires_at: int


class OidcIssuer:
    """Signs ID tokens like a pipeline's OIDC token service, optionally behind a server.

    ``issuer`` is the ``iss`` claim. When it is None, the issuer is the server's base URL,
    so ``issue`` works only after ``start``. ``clock`` returns seconds since the epoch and
    defaults to ``time.time``.
    """

    def __init__(
        self,
        *,
        issuer: str | None = None,
        github_subject: str = "repo:contoso/flink-jobs:ref:refs/heads/main",
        azure_devops_organization: str = "contoso",
        azure_devops_project: str = "flink-jobs",
        lifetime_seconds: int = DEFAULT_LIFETIME_SECONDS,
        clock: Callable[[], float] | None = None,
    ) -> None:
        if lifetime_seconds <= 0:
            raise ValueError(f"lifetime_seconds must be positive, got {lifetime_seconds}")
        self._issuer = issuer
        self.github_subject = github_subject
        self.azure_devops_organization = azure_devops_organization
        self.azure_devops_project = azure_devops_project
        self.lifetime_seconds = lifetime_seconds
        # time.time is looked up on each call, so a test that shifts it shifts the issuer too.
        self._clock = clock or (lambda: time.time())
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self._jwk = rsa_public_jwk(self._key.public_key())
        # Bearer tokens the two token services require, like the pipeline's own.
        self.github_request_token = secrets.token_urlsafe(32)
        self.azure_devops_access_token = secrets.token_urlsafe(32)
        self._issued: list[IssuedToken] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._base_url: str | None = None

    # -- signing ----------------------------------------------------------------------

    @property
    def issuer(self) -> str:
        if self._issuer is not None:
            return self._issuer
        if self._base_url is None:
            raise RuntimeError("the issuer URL is the server's URL: call start() first")
        return self._base_url

    @property
    def kid(self) -> str:
        return self._jwk["kid"]

    @property
    def public_key(self) -> rsa.RSAPublicKey:
        return self._key.public_key()

    def jwks(self) -> dict[str, Any]:
        """Return the JSON Web Key Set with the issuer's one signing key."""
        return {"keys": [dict(self._jwk)]}

    def issue(
        self,
        audience: str,
        *,
        subject: str | None = None,
        lifetime_seconds: int | None = None,
        extra_claims: Mapping[str, Any] | None = None,
        kind: str = "direct",
    ) -> str:
        """Sign and return an ID token for ``audience``. ``subject`` defaults to GitHub's."""
        now = int(self._clock())
        lifetime = self.lifetime_seconds if lifetime_seconds is None else lifetime_seconds
        claims: dict[str, Any] = {
            "jti": str(uuid.uuid4()),
            "iss": self.issuer,
            "sub": subject or self.github_subject,
            "aud": audience,
            "iat": now,
            "nbf": now,
            "exp": now + lifetime,
            **(extra_claims or {}),
        }
        token = self.sign(claims)
        record = IssuedToken(kind, claims["sub"], audience, now, claims["exp"])
        with self._lock:
            self._issued.append(record)
        logger.info(
            "issued a %s ID token: subject %s, audience %s", kind, record.subject, audience
        )
        return token

    def sign(self, claims: Mapping[str, Any]) -> str:
        """Return the claims as a JWT signed with RS256 by the issuer's key."""
        header = {"alg": "RS256", "typ": "JWT", "kid": self.kid}
        signing_input = ".".join(
            base64url_encode(json.dumps(part, separators=(",", ":")).encode("utf-8"))
            for part in (header, dict(claims))
        )
        signature = self._key.sign(
            signing_input.encode("ascii"), padding.PKCS1v15(), hashes.SHA256()
        )
        return f"{signing_input}.{base64url_encode(signature)}"

    def azure_devops_subject(self, service_connection_id: str) -> str:
        """Return the ``sub`` claim of a token for a service connection."""
        return (
            f"sc://{self.azure_devops_organization}/{self.azure_devops_project}/"
            f"{service_connection_id}"
        )

    @property
    def issued(self) -> list[IssuedToken]:
        """The tokens issued so far, oldest first."""
        with self._lock:
            return list(self._issued)

    # -- server -----------------------------------------------------------------------

    def start(self, ssl_context: ssl.SSLContext | None = None) -> None:
        """Serve the token services on a free loopback port (HTTPS with ``ssl_context``)."""
        if self._server is not None:
            raise RuntimeError("the OIDC issuer is already running")
        server = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(self))
        server.daemon_threads = True
        scheme = "http"
        if ssl_context is not None:
            server.socket = ssl_context.wrap_socket(server.socket, server_side=True)
            scheme = "https"
        self._server = server
        self._base_url = f"{scheme}://127.0.0.1:{server.server_address[1]}"
        self._thread = threading.Thread(
            target=server.serve_forever, args=(0.1,), name="oidc-issuer", daemon=True
        )
        self._thread.start()
        logger.info("OIDC issuer started at %s", self._base_url)

    def stop(self) -> None:
        """Stop the server and wait for its thread, at most STOP_TIMEOUT_SECONDS."""
        server, thread = self._server, self._thread
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if thread is not None:
            thread.join(STOP_TIMEOUT_SECONDS)
            if thread.is_alive():
                logger.warning("OIDC issuer thread still running after %s s", STOP_TIMEOUT_SECONDS)
        self._server = None
        self._thread = None
        logger.info("OIDC issuer at %s stopped", self._base_url)

    def __enter__(self) -> OidcIssuer:
        if self._server is None:
            self.start()
        return self

    def __exit__(self, *args: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        if self._base_url is None:
            raise RuntimeError("the OIDC issuer is not running: call start() first")
        return self._base_url

    @property
    def github_request_url(self) -> str:
        """The value for ACTIONS_ID_TOKEN_REQUEST_URL, which already has a query string."""
        return f"{self.base_url}{GITHUB_TOKEN_PATH}?api-version=2.0"

    @property
    def azure_devops_request_uri(self) -> str:
        """The value for SYSTEM_OIDCREQUESTURI."""
        return f"{self.base_url}{AZURE_DEVOPS_TOKEN_PATH}"

    def github_environment(self) -> dict[str, str]:
        """Return the variables GitHub Actions sets for a job with id-token: write."""
        return {
            "ACTIONS_ID_TOKEN_REQUEST_URL": self.github_request_url,
            "ACTIONS_ID_TOKEN_REQUEST_TOKEN": self.github_request_token,
        }

    def azure_devops_environment(self) -> dict[str, str]:
        """Return the variables an Azure Pipelines task gets for OIDC token requests."""
        return {
            "SYSTEM_OIDCREQUESTURI": self.azure_devops_request_uri,
            "ENDPOINT_AUTH_PARAMETER_SYSTEMVSSCONNECTION_ACCESSTOKEN": (
                self.azure_devops_access_token
            ),
        }

    def openid_configuration(self) -> dict[str, Any]:
        return {
            "issuer": self.issuer,
            "jwks_uri": f"{self.base_url}{JWKS_PATH}",
            "subject_types_supported": ["public"],
            "response_types_supported": ["id_token"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "claims_supported": ["sub", "aud", "exp", "iat", "iss", "jti", "nbf"],
        }

    # -- request handling -------------------------------------------------------------

    def handle_request(
        self, method: str, target: str, authorization: str | None
    ) -> tuple[int, dict[str, Any]]:
        """Handle one request and return the HTTP status and the JSON body."""
        parts = urlsplit(target)
        query = parse_qs(parts.query)
        if parts.path == OPENID_CONFIGURATION_PATH and method == "GET":
            return 200, self.openid_configuration()
        if parts.path == JWKS_PATH and method == "GET":
            return 200, self.jwks()
        if parts.path == GITHUB_TOKEN_PATH:
            return self._github_token(method, query, authorization)
        if parts.path == AZURE_DEVOPS_TOKEN_PATH:
            return self._azure_devops_token(method, query, authorization)
        return 404, {"message": f"no endpoint at {parts.path}"}

    def _github_token(
        self, method: str, query: dict[str, list[str]], authorization: str | None
    ) -> tuple[int, dict[str, Any]]:
        if method != "GET":
            return 405, {"message": "use GET"}
        if not _bearer_matches(authorization, self.github_request_token):
            return 401, {"message": "Bad credentials: invalid ACTIONS_ID_TOKEN_REQUEST_TOKEN"}
        audience = (query.get("audience") or [DEFAULT_GITHUB_AUDIENCE])[0]
        token = self.issue(audience, subject=self.github_subject, kind="github")
        return 200, {"count": 1, "value": token}

    def _azure_devops_token(
        self, method: str, query: dict[str, list[str]], authorization: str | None
    ) -> tuple[int, dict[str, Any]]:
        if method != "POST":
            return 405, {"message": "The requested resource does not support GET; use POST."}
        if not _bearer_matches(authorization, self.azure_devops_access_token):
            return 401, {"message": "TF400813: the job access token is not authorized."}
        if not query.get("api-version"):
            return 400, {"message": "The api-version query parameter is required."}
        connection_ids = query.get("serviceConnectionId")
        if not connection_ids:
            # Azure DevOps would issue a pipeline-scoped token here, but the emulator has none.
            return 400, {"message": "serviceConnectionId is required by this issuer."}
        subject = self.azure_devops_subject(connection_ids[0])
        token = self.issue(AZURE_DEVOPS_AUDIENCE, subject=subject, kind="azure-devops")
        return 200, {"oidcToken": token}


def _bearer_matches(authorization: str | None, expected: str) -> bool:
    if not authorization:
        return False
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(value.strip().encode(), expected.encode())


def _make_handler(issuer: OidcIssuer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "flink-task-oidc-issuer"

        def do_GET(self) -> None:
            self._respond("GET")

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            self._respond("POST")

        def _respond(self, method: str) -> None:
            status, body = issuer.handle_request(
                method, self.path, self.headers.get("Authorization")
            )
            if status >= 400:
                logger.warning(
                    "OIDC issuer rejected %s %s: HTTP %d %s",
                    method,
                    urlsplit(self.path).path,
                    status,
                    body.get("message"),
                )
            data = json.dumps(body).encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            # The request line has no secret (bearer tokens travel in headers).
            logger.debug("oidc issuer: %s", format % args)

    return Handler
