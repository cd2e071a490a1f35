"""Client assertion checks, with assertions made by MSAL's own code and by the OIDC issuer."""

from __future__ import annotations

import json
import time

import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa
from msal.oauth2cli.assertion import JwtAssertionCreator

from flink_task.emulator.assertions import (
    JWT_BEARER_ASSERTION_TYPE,
    FederatedCredential,
    verify_certificate_assertion,
    verify_client_assertion,
    verify_federated_assertion,
)
from flink_task.emulator.oidc_issuer import OidcIssuer, base64url_decode, base64url_encode
from tests.auth.conftest import CLIENT_ID, make_certificate

ENDPOINT = "https://127.0.0.1:9443/6f1c2a4e-8d0b-4c36-9a5e-2b7d1e3f4a50/oauth2/v2.0/token"
GITHUB_ISSUER = "https://token.actions.githubusercontent.com"
GITHUB_SUBJECT = "repo:contoso/flink-jobs:ref:refs/heads/main"


@pytest.fixture(scope="module")
def registered() -> tuple[x509.Certificate, rsa.RSAPrivateKey]:
    return make_certificate("registered")


def msal_assertion(
    certificate: x509.Certificate,
    key: rsa.RSAPrivateKey,
    *,
    algorithm: str = "RS256",
    audience: str = ENDPOINT,
    issuer: str = CLIENT_ID,
    expires_in: int = 600,
    issued_at: int | None = None,
) -> str:
    """Make a certificate assertion exactly as MSAL does for a confidential client."""
    if algorithm == "PS256":
        creator = JwtAssertionCreator(
            key, "PS256", sha256_thumbprint=certificate.fingerprint(hashes.SHA256()).hex()
        )
    else:
        creator = JwtAssertionCreator(
            key,
            "RS256",
            sha1_thumbprint=certificate.fingerprint(hashes.SHA1()).hex(),  # noqa: S303 - x5t
        )
    now = int(time.time()) if issued_at is None else issued_at
    token = creator.create_normal_assertion(
        audience, issuer, expires_at=now + expires_in, issued_at=now
    )
    return token.decode() if isinstance(token, bytes) else token


def check_certificate(
    assertion: str, certificates: list[x509.Certificate], now: float | None = None
) -> tuple[bool, int]:
    result = verify_certificate_assertion(
        assertion,
        client_id=CLIENT_ID,
        token_endpoints=[ENDPOINT],
        certificates=certificates,
        now=now,
    )
    return result.ok, result.aadsts


@pytest.mark.parametrize("algorithm", ["RS256", "PS256"])
def test_msal_certificate_assertion_accepted(
    registered: tuple[x509.Certificate, rsa.RSAPrivateKey], algorithm: str
) -> None:
    certificate, key = registered
    result = verify_certificate_assertion(
        msal_assertion(certificate, key, algorithm=algorithm),
        client_id=CLIENT_ID,
        token_endpoints=[ENDPOINT],
        certificates=[make_certificate("other")[0], certificate],
    )
    assert result.ok
    assert result.kind == "certificate"
    assert result.subject == CLIENT_ID


def test_unregistered_certificate(registered: tuple[x509.Certificate, rsa.RSAPrivateKey]) -> None:
    other_certificate, other_key = make_certificate("unregistered")
    result = verify_certificate_assertion(
        msal_assertion(other_certificate, other_key),
        client_id=CLIENT_ID,
        token_endpoints=[ENDPOINT],
        certificates=[registered[0]],
    )
    assert not result.ok
    assert result.aadsts == 700027
    assert result.status == 401
    assert result.error == "invalid_client"
    assert "The key was not found" in result.description


def test_signature_by_wrong_key(registered: tuple[x509.Certificate, rsa.RSAPrivateKey]) -> None:
    certificate, _ = registered
    _, stranger_key = make_certificate("stranger")
    # The header names the registered certificate, but another key signed it.
    assert check_certificate(msal_assertion(certificate, stranger_key), [certificate]) == (
        False,
        700027,
    )


def test_wrong_audience(registered: tuple[x509.Certificate, rsa.RSAPrivateKey]) -> None:
    certificate, key = registered
    assertion = msal_assertion(certificate, key, audience="https://login.example/other/token")
    assert check_certificate(assertion, [certificate]) == (False, 700023)


def test_wrong_client(registered: tuple[x509.Certificate, rsa.RSAPrivateKey]) -> None:
    certificate, key = registered
    assertion = msal_assertion(certificate, key, issuer="another-client")
    assert check_certificate(assertion, [certificate]) == (False, 700021)


def test_expired_certificate_assertion(
    registered: tuple[x509.Certificate, rsa.RSAPrivateKey],
) -> None:
    certificate, key = registered
    assertion = msal_assertion(certificate, key, expires_in=600)
    assert check_certificate(assertion, [certificate], now=time.time() + 601) == (False, 700024)
    assert check_certificate(assertion, [certificate], now=time.time() + 599) == (True, 0)


def test_certificate_outside_validity(
    registered: tuple[x509.Certificate, rsa.RSAPrivateKey],
) -> None:
    certificate, key = registered
    later = time.time() + 60 * 86400
    assertion = msal_assertion(certificate, key, issued_at=int(later))
    assert check_certificate(assertion, [certificate], now=later) == (False, 700027)


def test_unsupported_algorithm(registered: tuple[x509.Certificate, rsa.RSAPrivateKey]) -> None:
    certificate, key = registered
    parts = msal_assertion(certificate, key).split(".")
    header = json.loads(base64url_decode(parts[0]))
    header["alg"] = "HS256"
    forged = ".".join([base64url_encode(json.dumps(header).encode()), parts[1], parts[2]])
    ok, code = check_certificate(forged, [certificate])
    assert (ok, code) == (False, 700027)


@pytest.mark.parametrize("token", ["not-a-jwt", "a.b.c", "e30.e30"])
def test_malformed_assertion(token: str) -> None:
    result = verify_certificate_assertion(
        token, client_id=CLIENT_ID, token_endpoints=[ENDPOINT], certificates=[]
    )
    assert not result.ok
    assert result.aadsts == 50027
    assert result.status == 400


@pytest.fixture(scope="module")
def github() -> OidcIssuer:
    return OidcIssuer(issuer=GITHUB_ISSUER)


def check_federated(
    token: str,
    issuer: OidcIssuer,
    credentials: list[FederatedCredential] | None = None,
    now: float | None = None,
) -> tuple[bool, int]:
    result = verify_federated_assertion(
        token,
        federated_credentials=credentials
        or [FederatedCredential(issuer=GITHUB_ISSUER, subject=GITHUB_SUBJECT)],
        key_sets={GITHUB_ISSUER: issuer.jwks()},
        now=now,
    )
    return result.ok, result.aadsts


def test_federated_token_accepted(github: OidcIssuer) -> None:
    credentials = [
        FederatedCredential(issuer=GITHUB_ISSUER, subject="repo:contoso/flink-jobs:pull_request"),
        FederatedCredential(issuer=GITHUB_ISSUER, subject=GITHUB_SUBJECT, name="main"),
    ]
    result = verify_federated_assertion(
        github.issue("api://AzureADTokenExchange"),
        federated_credentials=credentials,
        key_sets={GITHUB_ISSUER: github.jwks()},
    )
    assert result.ok
    assert result.kind == "federated"
    assert result.subject == GITHUB_SUBJECT


def test_federated_unknown_issuer(github: OidcIssuer) -> None:
    credentials = [
        FederatedCredential(issuer="https://vstoken.dev.azure.com/org", subject=GITHUB_SUBJECT)
    ]
    token = github.issue("api://AzureADTokenExchange")
    assert check_federated(token, github, credentials) == (False, 700211)


def test_federated_wrong_subject(github: OidcIssuer) -> None:
    token = github.issue(
        "api://AzureADTokenExchange", subject="repo:contoso/flink-jobs:pull_request"
    )
    assert check_federated(token, github) == (False, 700213)


def test_federated_wrong_audience(github: OidcIssuer) -> None:
    assert check_federated(github.issue("api://other"), github) == (False, 700212)


def test_federated_expired_token(github: OidcIssuer) -> None:
    token = github.issue("api://AzureADTokenExchange", lifetime_seconds=300)
    result = verify_federated_assertion(
        token,
        federated_credentials=[FederatedCredential(issuer=GITHUB_ISSUER, subject=GITHUB_SUBJECT)],
        key_sets={GITHUB_ISSUER: github.jwks()},
        now=time.time() + 301,
    )
    assert not result.ok
    assert result.aadsts == 700024
    assert result.error == "invalid_client"
    assert result.error_description.startswith(
        "AADSTS700024: Client assertion is not within its valid time range."
    )
    assert check_federated(token, github, now=time.time() + 299) == (True, 0)


def test_federated_token_not_yet_valid(github: OidcIssuer) -> None:
    token = github.issue("api://AzureADTokenExchange")
    assert check_federated(token, github, now=time.time() - 120) == (False, 700024)


def test_federated_token_from_impostor(github: OidcIssuer) -> None:
    # Same issuer name, different signing key: the published JWKS does not verify it.
    impostor = OidcIssuer(issuer=GITHUB_ISSUER)
    token = impostor.issue("api://AzureADTokenExchange")
    assert check_federated(token, github) == (False, 700027)


def test_federated_forged_kid(github: OidcIssuer) -> None:
    stranger_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    claims = {
        "iss": GITHUB_ISSUER,
        "sub": GITHUB_SUBJECT,
        "aud": "api://AzureADTokenExchange",
        "iat": int(time.time()),
        "exp": int(time.time()) + 300,
    }
    # Signed by another key but naming the real issuer's key id.
    token = jwt.encode(claims, stranger_key, algorithm="RS256", headers={"kid": github.kid})
    assert check_federated(token, github) == (False, 700027)


def form(assertion: str, assertion_type: str = JWT_BEARER_ASSERTION_TYPE) -> dict[str, str]:
    return {
        "grant_type": "client_credentials",
        "client_id": CLIENT_ID,
        "client_assertion_type": assertion_type,
        "client_assertion": assertion,
        "scope": "https://127.0.0.1:9443/.default",
    }


def test_client_assertion_dispatch(
    registered: tuple[x509.Certificate, rsa.RSAPrivateKey], github: OidcIssuer
) -> None:
    certificate, key = registered
    options = {
        "client_id": CLIENT_ID,
        "token_endpoints": [ENDPOINT],
        "certificates": [certificate],
        "federated_credentials": [
            FederatedCredential(issuer=GITHUB_ISSUER, subject=GITHUB_SUBJECT)
        ],
        "key_sets": {GITHUB_ISSUER: github.jwks()},
    }
    by_certificate = verify_client_assertion(form(msal_assertion(certificate, key)), **options)  # type: ignore[arg-type]
    federated = verify_client_assertion(
        form(github.issue("api://AzureADTokenExchange")), **options
    )  # type: ignore[arg-type]
    assert (by_certificate.ok, by_certificate.kind) == (True, "certificate")
    assert (federated.ok, federated.kind) == (True, "federated")


def test_client_assertion_type_required() -> None:
    missing = verify_client_assertion(
        {"client_assertion": "x.y.z"}, client_id=CLIENT_ID, token_endpoints=[ENDPOINT]
    )
    wrong = verify_client_assertion(
        form("x.y.z", assertion_type="urn:ietf:params:oauth:client-assertion-type:saml2-bearer"),
        client_id=CLIENT_ID,
        token_endpoints=[ENDPOINT],
    )
    assert (missing.ok, missing.status, missing.aadsts) == (False, 400, 900144)
    assert "'client_assertion_type'" in missing.description
    assert (wrong.ok, wrong.error) == (False, "invalid_request")
    assert missing.error_body() == {
        "error": "invalid_request",
        "error_description": missing.error_description,
        "error_codes": [900144],
    }
