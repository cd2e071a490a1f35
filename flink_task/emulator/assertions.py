"""Verify client assertions of the client-credentials grant, as Microsoft Entra ID does.

A client that authenticates with an assertion sends ``client_assertion_type`` =
``urn:ietf:params:oauth:client-assertion-type:jwt-bearer`` and ``client_assertion`` = a
JWT (RFC 7523). Two kinds are checked:

- A certificate assertion, signed by the client with the private key of a certificate
  registered on the application. MSAL and azure-identity set ``iss`` = ``sub`` = the client
  id, ``aud`` = the token endpoint, and name the certificate in the header: ``x5t`` (SHA-1
  thumbprint) with RS256, or ``x5t#S256`` (SHA-256 thumbprint) with PS256.
- A federated assertion: an ID token from an external issuer (GitHub, Azure DevOps, or the
  emulator's OIDC issuer). Its signature is checked against the issuer's JWKS, and its
  ``iss``, ``sub`` and ``aud`` must match a federated credential of the application.

The functions are pure: they take the registered credentials and keys and return an
``AssertionResult``. A rejection carries the HTTP status, the OAuth ``error`` and an AADSTS
code with a description, in the shape of the token endpoint's error response.

NOTE: the AADSTS codes are those Entra ID returns for the same faults as far as known.
The code for an unsupported ``client_assertion_type`` is not confirmed.
"""

from __future__ import annotations

import binascii
import datetime
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from flink_task.emulator.oidc_issuer import base64url_decode, base64url_encode

JWT_BEARER_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
TOKEN_EXCHANGE_AUDIENCE = "api://AzureADTokenExchange"  # noqa: S105 - an audience


@dataclass(frozen=True)
class FederatedCredential:
    """A federated identity credential of an application: the token it trusts."""

    issuer: str
    subject: str
    audiences: tuple[str, ...] = (TOKEN_EXCHANGE_AUDIENCE,)
    name: str = "federated-credential"


@dataclass(frozen=True)
class AssertionResult:
    """The outcome of a check: accepted (``ok``), or an Entra ID style rejection."""

    ok: bool
    kind: str = ""  # "certificate" or "federated" when accepted
    subject: str = ""
    status: int = 200
    error: str = ""
    aadsts: int = 0
    description: str = ""

    @property
    def error_description(self) -> str:
        return f"AADSTS{self.aadsts}: {self.description}"

    def error_body(self) -> dict[str, Any]:
        """Return the token endpoint's JSON error body for a rejection."""
        return {
            "error": self.error,
            "error_description": self.error_description,
            "error_codes": [self.aadsts],
        }


@dataclass(frozen=True)
class _Jwt:
    header: dict[str, Any]
    claims: dict[str, Any]
    signing_input: bytes
    signature: bytes


class _Rejected(Exception):
    def __init__(self, status: int, error: str, aadsts: int, description: str) -> None:
        super().__init__(description)
        self.result = AssertionResult(
            ok=False, status=status, error=error, aadsts=aadsts, description=description
        )


def verify_client_assertion(
    form: Mapping[str, str],
    *,
    client_id: str,
    token_endpoints: Sequence[str],
    certificates: Sequence[x509.Certificate] = (),
    federated_credentials: Sequence[FederatedCredential] = (),
    key_sets: Mapping[str, Mapping[str, Any]] | None = None,
    now: float | None = None,
    clock_skew_seconds: int = 0,
) -> AssertionResult:
    """Check the client assertion of a token request for the application ``client_id``.

    ``form`` contains the request's form fields (first value of each). An assertion whose
    ``iss`` is the client id is checked as a certificate assertion, any other as federated.
    ``key_sets`` maps an issuer to its JWKS. ``token_endpoints`` are the URLs a certificate
    assertion's ``aud`` may name.
    """
    assertion_type = form.get("client_assertion_type")
    assertion = form.get("client_assertion")
    if not assertion_type or not assertion:
        missing = "client_assertion_type" if not assertion_type else "client_assertion"
        return _reject_now(
            400,
            "invalid_request",
            900144,
            f"The request body must contain the following parameter: '{missing}'.",
        )
    if assertion_type != JWT_BEARER_ASSERTION_TYPE:
        return _reject_now(
            400,
            "invalid_request",
            900144,
            f"client_assertion_type must be '{JWT_BEARER_ASSERTION_TYPE}'.",
        )
    try:
        issuer = _parse(assertion).claims.get("iss")
    except _Rejected as rejected:
        return rejected.result
    if isinstance(issuer, str) and issuer.lower() == client_id.lower():
        return verify_certificate_assertion(
            assertion,
            client_id=client_id,
            token_endpoints=token_endpoints,
            certificates=certificates,
            now=now,
            clock_skew_seconds=clock_skew_seconds,
        )
    return verify_federated_assertion(
        assertion,
        federated_credentials=federated_credentials,
        key_sets=key_sets or {},
        now=now,
        clock_skew_seconds=clock_skew_seconds,
    )


def verify_certificate_assertion(
    assertion: str,
    *,
    client_id: str,
    token_endpoints: Sequence[str],
    certificates: Sequence[x509.Certificate],
    now: float | None = None,
    clock_skew_seconds: int = 0,
) -> AssertionResult:
    """Check an assertion signed with a certificate registered on application ``client_id``."""
    current = time.time() if now is None else now
    try:
        jwt = _parse(assertion)
        certificate = _find_certificate(jwt.header, certificates)
        _check_certificate_dates(certificate, current)
        _verify_signature(jwt, certificate.public_key(), ("RS256", "PS256"))
        _check_client_claims(jwt.claims, client_id)
        _check_audience_is_endpoint(jwt.claims, token_endpoints)
        _check_lifetime(jwt.claims, current, clock_skew_seconds)
    except _Rejected as rejected:
        return rejected.result
    return AssertionResult(ok=True, kind="certificate", subject=str(jwt.claims["sub"]))


def verify_federated_assertion(
    assertion: str,
    *,
    federated_credentials: Sequence[FederatedCredential],
    key_sets: Mapping[str, Mapping[str, Any]],
    now: float | None = None,
    clock_skew_seconds: int = 0,
) -> AssertionResult:
    """Check an external ID token against the application's federated credentials.

    The issuer's key must be in ``key_sets[iss]`` (a JWKS). Expired tokens are rejected
    with AADSTS700024.
    """
    current = time.time() if now is None else now
    try:
        jwt = _parse(assertion)
        issuer = _string_claim(jwt.claims, "iss")
        candidates = [c for c in federated_credentials if c.issuer == issuer]
        if not candidates:
            raise _Rejected(
                401,
                "invalid_client",
                700211,
                f"No matching federated identity record found for presented assertion "
                f"issuer '{issuer}'.",
            )
        key = _find_jwks_key(jwt.header, key_sets.get(issuer))
        _verify_signature(jwt, key, ("RS256",))
        _check_lifetime(jwt.claims, current, clock_skew_seconds)
        credential = _match_federated_credential(jwt.claims, candidates)
    except _Rejected as rejected:
        return rejected.result
    return AssertionResult(ok=True, kind="federated", subject=credential.subject)


def certificate_thumbprints(certificate: x509.Certificate) -> tuple[str, str]:
    """Return the base64url SHA-1 (``x5t``) and SHA-256 (``x5t#S256``) thumbprints."""
    sha1 = certificate.fingerprint(hashes.SHA1())  # noqa: S303 - x5t is defined as SHA-1
    sha256 = certificate.fingerprint(hashes.SHA256())
    return base64url_encode(sha1), base64url_encode(sha256)


# ----------------------------------------------------------------------------------------


def _reject_now(status: int, error: str, aadsts: int, description: str) -> AssertionResult:
    return _Rejected(status, error, aadsts, description).result


def _malformed(reason: str) -> _Rejected:
    return _Rejected(
        400, "invalid_request", 50027, f"JWT token is invalid or malformed: {reason}."
    )


def _parse(token: str) -> _Jwt:
    parts = token.split(".")
    if len(parts) != 3:
        raise _malformed("it does not have three parts")
    try:
        header = json.loads(base64url_decode(parts[0]))
        claims = json.loads(base64url_decode(parts[1]))
        signature = base64url_decode(parts[2])
    except (ValueError, binascii.Error):
        raise _malformed("a part is not base64url-encoded JSON") from None
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise _malformed("the header or the claims are not a JSON object")
    signing_input = f"{parts[0]}.{parts[1]}".encode("ascii")
    return _Jwt(header, claims, signing_input, signature)


def _find_certificate(
    header: Mapping[str, Any], certificates: Sequence[x509.Certificate]
) -> x509.Certificate:
    # MSAL keeps the base64 padding in x5t and x5t#S256 (msal 1.39), RFC 7515 omits it.
    sha1 = str(header.get("x5t") or "").rstrip("=")
    sha256 = str(header.get("x5t#S256") or "").rstrip("=")
    if not sha1 and not sha256:
        raise _Rejected(
            401,
            "invalid_client",
            700027,
            "Client assertion failed signature validation: the header names no certificate "
            "(x5t or x5t#S256).",
        )
    for certificate in certificates:
        known_sha1, known_sha256 = certificate_thumbprints(certificate)
        if (sha256 and sha256 == known_sha256) or (not sha256 and sha1 == known_sha1):
            return certificate
    thumbprint = sha256 or sha1
    raise _Rejected(
        401,
        "invalid_client",
        700027,
        "The certificate with identifier used to sign the client assertion is not registered "
        f"on application. [Reason - The key was not found., Thumbprint of key used by client: "
        f"'{thumbprint}']",
    )


def _check_certificate_dates(certificate: x509.Certificate, now: float) -> None:
    moment = datetime.datetime.fromtimestamp(now, tz=datetime.timezone.utc)
    if not certificate.not_valid_before_utc <= moment <= certificate.not_valid_after_utc:
        raise _Rejected(
            401,
            "invalid_client",
            700027,
            "The certificate used to sign the client assertion is outside its validity period "
            f"(valid until {certificate.not_valid_after_utc:%Y-%m-%d %H:%M:%SZ}).",
        )


def _verify_signature(jwt: _Jwt, key: Any, algorithms: Sequence[str]) -> None:
    algorithm = jwt.header.get("alg")
    if algorithm not in algorithms:
        raise _Rejected(
            401,
            "invalid_client",
            700027,
            f"Client assertion failed signature validation: algorithm {algorithm!r} is not "
            f"supported (use {' or '.join(algorithms)}).",
        )
    if not isinstance(key, rsa.RSAPublicKey):
        raise _Rejected(
            401, "invalid_client", 700027, "The key that signed the assertion is not an RSA key."
        )
    signature_padding: padding.AsymmetricPadding = padding.PKCS1v15()
    if algorithm == "PS256":
        signature_padding = padding.PSS(
            mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.AUTO
        )
    try:
        key.verify(jwt.signature, jwt.signing_input, signature_padding, hashes.SHA256())
    except InvalidSignature:
        raise _Rejected(
            401, "invalid_client", 700027, "Client assertion failed signature validation."
        ) from None


def _check_client_claims(claims: Mapping[str, Any], client_id: str) -> None:
    for name in ("iss", "sub"):
        value = _string_claim(claims, name)
        if value.lower() != client_id.lower():
            raise _Rejected(
                401,
                "invalid_client",
                700021,
                f"Client assertion application identifier doesn't match 'client_id' parameter: "
                f"the {name} claim is '{value}'.",
            )


def _check_audience_is_endpoint(claims: Mapping[str, Any], token_endpoints: Sequence[str]) -> None:
    accepted = {endpoint.rstrip("/").lower() for endpoint in token_endpoints}
    audiences = _audiences(claims)
    if not any(audience.rstrip("/").lower() in accepted for audience in audiences):
        raise _Rejected(
            401,
            "invalid_client",
            700023,
            f"Client assertion audience claim does not match Realm issuer: the aud claim is "
            f"{', '.join(audiences) or 'missing'}; expected the token endpoint "
            f"{', '.join(token_endpoints)}.",
        )


def _check_lifetime(claims: Mapping[str, Any], now: float, skew: int) -> None:
    expires = claims.get("exp")
    if not isinstance(expires, (int, float)) or isinstance(expires, bool):
        raise _malformed("the exp claim is missing or not a number")
    not_before = claims.get("nbf", claims.get("iat"))
    too_early = isinstance(not_before, (int, float)) and now + skew < not_before
    if now - skew >= expires or too_early:
        raise _Rejected(
            401,
            "invalid_client",
            700024,
            "Client assertion is not within its valid time range. "
            f"Current time: {_utc(now)}, assertion valid from {_utc(not_before)}, "
            f"expiry time of assertion {_utc(expires)}.",
        )


def _find_jwks_key(header: Mapping[str, Any], jwks: Mapping[str, Any] | None) -> Any:
    keys = jwks.get("keys", []) if jwks else []
    kid = header.get("kid")
    for jwk in keys:
        if not isinstance(jwk, dict) or jwk.get("kty") != "RSA":
            continue
        if kid is None or jwk.get("kid") == kid:
            return _rsa_key_from_jwk(jwk)
    raise _Rejected(
        401,
        "invalid_client",
        700027,
        f"Client assertion failed signature validation: the issuer publishes no key '{kid}'.",
    )


def _rsa_key_from_jwk(jwk: Mapping[str, Any]) -> rsa.RSAPublicKey:
    try:
        modulus = int.from_bytes(base64url_decode(str(jwk["n"])), "big")
        exponent = int.from_bytes(base64url_decode(str(jwk["e"])), "big")
        return rsa.RSAPublicNumbers(exponent, modulus).public_key()
    except (KeyError, ValueError, binascii.Error):
        raise _Rejected(
            401, "invalid_client", 700027, "The issuer's signing key is not a valid RSA JWK."
        ) from None


def _match_federated_credential(
    claims: Mapping[str, Any], candidates: Sequence[FederatedCredential]
) -> FederatedCredential:
    subject = _string_claim(claims, "sub")
    by_subject = [c for c in candidates if c.subject == subject]
    if not by_subject:
        raise _Rejected(
            401,
            "invalid_client",
            700213,
            f"No matching federated identity record found for presented assertion subject "
            f"'{subject}'. Check the federated credential's subject, audience and issuer "
            "against the presented assertion.",
        )
    audiences = _audiences(claims)
    for credential in by_subject:
        if any(audience in credential.audiences for audience in audiences):
            return credential
    raise _Rejected(
        401,
        "invalid_client",
        700212,
        f"No matching federated identity record found for presented assertion audience "
        f"'{', '.join(audiences)}'.",
    )


def _string_claim(claims: Mapping[str, Any], name: str) -> str:
    value = claims.get(name)
    if not isinstance(value, str) or not value:
        raise _malformed(f"the {name} claim is missing")
    return value


def _audiences(claims: Mapping[str, Any]) -> list[str]:
    value = claims.get("aud")
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [item for item in value if isinstance(item, str)]
    return []


def _utc(timestamp: Any) -> str:
    if not isinstance(timestamp, (int, float)):
        return "(not set)"
    moment = datetime.datetime.fromtimestamp(timestamp, tz=datetime.timezone.utc)
    return moment.strftime("%m/%d/%Y %H:%M:%S")
