"""A Microsoft Entra ID (Azure AD) compatible authority for the emulator's service principal.

It serves the OpenID configuration document that MSAL reads and a v2.0 token endpoint for the
client-credentials grant, and it checks the bearer tokens sent to the job API. A client
authenticates with the client secret, with an assertion signed by a registered certificate,
or with a federated assertion (an ID token of a trusted issuer whose issuer, subject and
audience match a registered federated credential). ``flink_task.emulator.assertions`` checks
the assertions. Tokens are
random opaque strings. Only their SHA-256 digests are kept, in memory and in a private state
file, so tokens stay valid across a restart while no usable token is ever written to disk.

Errors use the token endpoint's JSON error shape (`error`, `error_description` starting with
an AADSTS code, `error_codes`), so MSAL and azure-identity report them as they would report
Microsoft Entra ID's.
"""

from __future__ import annotations

import base64
import binascii
import collections
import datetime
import hashlib
import hmac
import logging
import os
import secrets
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from flink_task.emulator.assertions import FederatedCredential, verify_client_assertion
from flink_task.emulator.errors import ApiError
from flink_task.emulator.files import read_json, write_private_json, write_private_text

logger = logging.getLogger(__name__)

DEFAULT_TOKEN_LIFETIME = 3600
CLIENT_CERTIFICATE_LIFETIME = datetime.timedelta(days=365)
# Grants kept in memory for inspection, so that a long-running emulator does not grow.
MAX_GRANTS_KEPT = 10_000
CLIENT_CREDENTIALS = "client_credentials"
# Resources that tokens may be requested for besides the emulator's own base URL: the public
# cloud's Azure Resource Manager, so a client configured for Azure works unchanged.
MANAGEMENT_RESOURCES = ("https://management.azure.com", "https://management.core.windows.net")


@dataclass(frozen=True)
class ServicePrincipal:
    """The one application that may sign in: tenant, client id and its credentials.

    The client secret is always accepted. Certificates and federated credentials are
    accepted in addition when registered.
    """

    tenant_id: str
    client_id: str
    client_secret: str = field(repr=False)
    certificates: tuple[x509.Certificate, ...] = ()
    federated_credentials: tuple[FederatedCredential, ...] = ()


@dataclass(frozen=True)
class Grant:
    """One access token issued: how the client authenticated, and when (epoch seconds).

    ``method`` is ``secret``, ``certificate`` or ``federated``. ``subject`` is the
    federated credential's subject, or the client id for the other methods.
    """

    method: str
    subject: str
    issued_at: float
    expires_at: float


@dataclass(frozen=True)
class AuthorityResponse:
    """Status and JSON body of an authority endpoint's response."""

    status: int
    body: dict[str, Any]


class TokenError(Exception):
    """A token request that Microsoft Entra ID would reject, with its AADSTS code."""

    def __init__(self, status: int, error: str, aadsts: int, description: str) -> None:
        super().__init__(f"AADSTS{aadsts}: {description}")
        self.status = status
        self.error = error
        self.aadsts = aadsts
        self.description = description

    def response(self) -> AuthorityResponse:
        now = datetime.datetime.now(datetime.timezone.utc)
        trace_id = str(uuid.uuid4())
        timestamp = now.strftime("%Y-%m-%d %H:%M:%SZ")
        return AuthorityResponse(
            self.status,
            {
                "error": self.error,
                "error_description": (
                    f"AADSTS{self.aadsts}: {self.description} Trace ID: {trace_id} "
                    f"Timestamp: {timestamp}"
                ),
                "error_codes": [self.aadsts],
                "timestamp": timestamp,
                "trace_id": trace_id,
                "correlation_id": str(uuid.uuid4()),
            },
        )


class TokenStore:
    """Digests and expiry times of the tokens issued, persisted in a private JSON file."""

    def __init__(self, path: Path, clock: Any = time.time) -> None:
        self._path = path
        self._clock = clock
        self._lock = threading.Lock()
        stored = read_json(path) or {}
        self._expiries: dict[str, float] = {
            digest: float(expiry) for digest, expiry in stored.items()
        }

    def issue(self, lifetime: int) -> str:
        token = secrets.token_urlsafe(48)
        with self._lock:
            now = self._clock()
            self._expiries = {d: e for d, e in self._expiries.items() if e > now}
            self._expiries[_digest(token)] = now + lifetime
            write_private_json(self._path, self._expiries)
        return token

    def is_valid(self, token: str) -> bool:
        with self._lock:
            expiry = self._expiries.get(_digest(token))
        return expiry is not None and expiry > self._clock()


class Authority:
    """OpenID configuration, token endpoint and bearer-token check for one service principal.

    ``key_sets`` maps the ``iss`` of each trusted external issuer to its JSON Web Key Set,
    for example ``{issuer.issuer: issuer.jwks()}`` of an ``OidcIssuer``.
    """

    def __init__(
        self,
        principal: ServicePrincipal,
        tokens: TokenStore,
        *,
        token_lifetime: int = DEFAULT_TOKEN_LIFETIME,
        key_sets: dict[str, dict[str, Any]] | None = None,
        clock: Any = time.time,
    ) -> None:
        self.principal = principal
        self._tokens = tokens
        self._token_lifetime = token_lifetime
        self._key_sets = dict(key_sets or {})
        self._clock = clock
        self._base_url = ""
        self._grants: collections.deque[Grant] = collections.deque(maxlen=MAX_GRANTS_KEPT)
        self._grants_lock = threading.Lock()

    @property
    def grants(self) -> list[Grant]:
        """The last MAX_GRANTS_KEPT access tokens issued, oldest first (no token values)."""
        with self._grants_lock:
            return list(self._grants)

    def set_base_url(self, base_url: str) -> None:
        """Set the public URL of the server, known once the listening port is bound."""
        self._base_url = base_url

    def issuer(self) -> str:
        return f"{self._base_url}/{self.principal.tenant_id}/v2.0"

    def handles(self, path: str) -> bool:
        """Return whether `path` belongs to the authority rather than to the job API."""
        parts = path.strip("/").split("/")
        if len(parts) < 2 or parts[0].lower() == "subscriptions":
            return False
        return parts[1].lower() in ("v2.0", "oauth2", "discovery", ".well-known")

    def handle_get(self, path: str) -> AuthorityResponse:
        tenant, rest = _split_tenant(path)
        if rest in ("v2.0/.well-known/openid-configuration", ".well-known/openid-configuration"):
            return self._openid_configuration(tenant)
        if rest in ("discovery/v2.0/keys", "discovery/keys"):
            self._check_tenant(tenant)
            # Access tokens are opaque, so there is no signing key to publish.
            return AuthorityResponse(200, {"keys": []})
        raise ApiError(404, "NotFound", f"No authority endpoint at {path}.")

    def handle_post(
        self, path: str, form: dict[str, list[str]], authorization: str | None
    ) -> AuthorityResponse:
        tenant, rest = _split_tenant(path)
        if rest != "oauth2/v2.0/token":
            raise ApiError(404, "NotFound", f"No authority endpoint at {path}.")
        try:
            return self._token(tenant, form, authorization)
        except TokenError as error:
            logger.warning("token request rejected: AADSTS%s %s", error.aadsts, error.error)
            return error.response()

    def validate_bearer(self, authorization: str | None) -> None:
        """Raise ApiError 401 unless `authorization` carries a live token from this authority."""
        if not authorization:
            raise self._unauthorized(
                "AuthenticationFailed",
                "Authentication failed. The 'Authorization' header is missing.",
                "invalid_request",
            )
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise self._unauthorized(
                "AuthenticationFailed",
                "Authentication failed. The 'Authorization' header must be 'Bearer <token>'.",
                "invalid_request",
            )
        if not self._tokens.is_valid(token.strip()):
            raise self._unauthorized(
                "InvalidAuthenticationToken",
                "The access token is invalid or expired. Request a new token from "
                f"{self._base_url}/{self.principal.tenant_id}.",
                "invalid_token",
            )

    def _unauthorized(self, code: str, message: str, error: str) -> ApiError:
        challenge = (
            f'Bearer authorization_uri="{self._base_url}/{self.principal.tenant_id}", '
            f'error="{error}", error_description="{message}"'
        )
        return ApiError(401, code, message, headers={"WWW-Authenticate": challenge})

    def _openid_configuration(self, tenant: str) -> AuthorityResponse:
        try:
            self._check_tenant(tenant)
        except TokenError as error:
            return error.response()
        prefix = f"{self._base_url}/{self.principal.tenant_id}"
        return AuthorityResponse(
            200,
            {
                "issuer": self.issuer(),
                "authorization_endpoint": f"{prefix}/oauth2/v2.0/authorize",
                "token_endpoint": f"{prefix}/oauth2/v2.0/token",
                "jwks_uri": f"{prefix}/discovery/v2.0/keys",
                "response_types_supported": ["token"],
                "subject_types_supported": ["pairwise"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "grant_types_supported": [CLIENT_CREDENTIALS],
                "token_endpoint_auth_methods_supported": [
                    "client_secret_post",
                    "client_secret_basic",
                    "private_key_jwt",
                ],
                "scopes_supported": [".default"],
                "tenant_region_scope": None,
            },
        )

    def _token(
        self, tenant: str, form: dict[str, list[str]], authorization: str | None
    ) -> AuthorityResponse:
        self._check_tenant(tenant)
        grant_type = _required_parameter(form, "grant_type")
        if grant_type != CLIENT_CREDENTIALS:
            raise TokenError(
                400,
                "unsupported_grant_type",
                70003,
                f"The app requested an unsupported grant type '{grant_type}'. This authority "
                f"supports only '{CLIENT_CREDENTIALS}'.",
            )
        method, subject = self._authenticate_client(tenant, form, authorization)
        self._check_scope(_required_parameter(form, "scope"))
        token = self._tokens.issue(self._token_lifetime)
        now = self._clock()
        with self._grants_lock:
            self._grants.append(Grant(method, subject, now, now + self._token_lifetime))
        logger.info(
            "issued a token to client %s (%s, subject %s)",
            self.principal.client_id,
            method,
            subject,
        )
        return AuthorityResponse(
            200,
            {
                "token_type": "Bearer",
                "expires_in": self._token_lifetime,
                "ext_expires_in": self._token_lifetime,
                "access_token": token,
            },
        )

    def _check_tenant(self, tenant: str) -> None:
        if tenant.lower() != self.principal.tenant_id.lower():
            raise TokenError(
                400,
                "invalid_tenant",
                90002,
                f"Tenant '{tenant}' not found. Use the tenant id "
                f"'{self.principal.tenant_id}' in the authority path.",
            )

    def _authenticate_client(
        self, tenant: str, form: dict[str, list[str]], authorization: str | None
    ) -> tuple[str, str]:
        """Check the client id and its credential, and return the method and the subject.

        The credential is a client assertion (private_key_jwt, certificate or federated)
        when the form has one, else the client secret (client_secret_post or
        client_secret_basic). Raises TokenError with Entra ID's AADSTS code otherwise.
        """
        basic = _basic_credentials(authorization)
        client_id = basic[0] if basic else _first(form, "client_id")
        if not client_id:
            raise _missing_parameter("client_id")
        if client_id.lower() != self.principal.client_id.lower():
            raise TokenError(
                400,
                "unauthorized_client",
                700016,
                f"Application with identifier '{client_id}' was not found in the directory "
                f"'{self.principal.tenant_id}'. Check the client id.",
            )
        if _first(form, "client_assertion") or _first(form, "client_assertion_type"):
            return self._verify_assertion(tenant, form)
        secret = basic[1] if basic else _first(form, "client_secret")
        if not secret:
            raise TokenError(
                401,
                "invalid_client",
                7000218,
                "The request body must contain the following parameter: 'client_assertion' "
                "or 'client_secret'.",
            )
        if not hmac.compare_digest(secret.encode(), self.principal.client_secret.encode()):
            raise TokenError(
                401,
                "invalid_client",
                7000215,
                "Invalid client secret provided. Ensure the secret being sent in the request "
                f"is the client secret value of app '{self.principal.client_id}'.",
            )
        return "secret", self.principal.client_id

    def _verify_assertion(self, tenant: str, form: dict[str, list[str]]) -> tuple[str, str]:
        if not self.principal.certificates and not self.principal.federated_credentials:
            raise TokenError(
                401,
                "invalid_client",
                7000219,
                "No certificate or federated credential is registered for application "
                f"'{self.principal.client_id}', so it can authenticate with its client "
                "secret only.",
            )
        # MSAL puts the token endpoint of the authority it was given into a certificate
        # assertion's aud, with the tenant as the client wrote it.
        endpoints = {
            f"{self._base_url}/{tenant}/oauth2/v2.0/token",
            f"{self._base_url}/{self.principal.tenant_id}/oauth2/v2.0/token",
        }
        result = verify_client_assertion(
            {name: values[0] for name, values in form.items() if values},
            client_id=self.principal.client_id,
            token_endpoints=sorted(endpoints),
            certificates=self.principal.certificates,
            federated_credentials=self.principal.federated_credentials,
            key_sets=self._key_sets,
            now=self._clock(),
        )
        if not result.ok:
            raise TokenError(result.status, result.error, result.aadsts, result.description)
        return result.kind, result.subject

    def _check_scope(self, scope: str) -> None:
        scopes = scope.split()
        if len(scopes) != 1 or not scopes[0].endswith("/.default"):
            raise TokenError(
                400,
                "invalid_scope",
                1002012,
                f"The provided value for scope '{scope}' is not valid. Client credential flows "
                "must have one scope value with /.default suffixed to the resource identifier.",
            )
        resource = scopes[0].removesuffix("/.default").rstrip("/").lower()
        if resource not in self._accepted_resources():
            raise TokenError(
                400,
                "invalid_resource",
                500011,
                f"The resource principal named '{resource}' was not found in the tenant "
                f"'{self.principal.tenant_id}'. Request the scope '{self._base_url}/.default'.",
            )

    def _accepted_resources(self) -> set[str]:
        resources = {self._base_url.lower(), *MANAGEMENT_RESOURCES}
        port = urlsplit(self._base_url).port
        resources.add(f"https://localhost:{port}")
        resources.add(f"https://127.0.0.1:{port}")
        return resources


def ensure_client_certificate(path: Path, client_id: str) -> x509.Certificate:
    """Return the client certificate in ``path``, creating it with its key when missing.

    The file is a PEM with the RSA private key and the self-signed certificate, which is
    what ``clientCertificate`` of flink-task and azure-identity's CertificateCredential
    read. It is written with mode 0600 because it contains the private key. A file whose
    certificate has expired is replaced.
    """
    if path.exists():
        certificate = x509.load_pem_x509_certificate(path.read_bytes())
        if certificate.not_valid_after_utc > datetime.datetime.now(datetime.timezone.utc):
            os.chmod(path, 0o600)
            return certificate
        logger.info("the client certificate %s has expired; creating a new one", path)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = datetime.datetime.now(datetime.timezone.utc)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"flink-task client {client_id}")])
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + CLIENT_CERTIFICATE_LIFETIME)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    certificate_pem = certificate.public_bytes(serialization.Encoding.PEM)
    write_private_text(path, (key_pem + certificate_pem).decode("ascii"))
    logger.info("created the client certificate %s", path)
    return certificate


def _split_tenant(path: str) -> tuple[str, str]:
    tenant, _, rest = path.strip("/").partition("/")
    return unquote(tenant), rest


def _first(form: dict[str, list[str]], name: str) -> str | None:
    values = form.get(name)
    return values[0] if values else None


def _required_parameter(form: dict[str, list[str]], name: str) -> str:
    value = _first(form, name)
    if not value:
        raise _missing_parameter(name)
    return value


def _missing_parameter(name: str) -> TokenError:
    return TokenError(
        400,
        "invalid_request",
        900144,
        f"The request body must contain the following parameter: '{name}'.",
    )


def _basic_credentials(authorization: str | None) -> tuple[str, str] | None:
    if not authorization or not authorization.lower().startswith("basic "):
        return None
    try:
        decoded = base64.b64decode(authorization[6:].strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise TokenError(
            401, "invalid_client", 7000218, "The Basic authorization header is malformed."
        ) from None
    client_id, _, secret = decoded.partition(":")
    return unquote(client_id), unquote(secret)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()
