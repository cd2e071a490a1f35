"""The emulator's OIDC issuer: token claims, JWKS, and the two token services over HTTPS."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path

import jwt
import pytest
import requests
import trustme

from flink_task.emulator.oidc_issuer import OidcIssuer, base64url_decode, rsa_public_jwk

AUDIENCE = "api://AzureADTokenExchange"


def decode(issuer: OidcIssuer, token: str, audience: str = AUDIENCE) -> dict[str, object]:
    """Verify a token with PyJWT, an implementation independent of the issuer."""
    key = jwt.PyJWK(issuer.jwks()["keys"][0]).key
    return jwt.decode(
        token, key=key, algorithms=["RS256"], audience=audience, issuer=issuer.issuer
    )


def test_issued_token_claims() -> None:
    now = 1_800_000_000.0
    issuer = OidcIssuer(issuer="https://issuer.example", lifetime_seconds=120, clock=lambda: now)
    token = issuer.issue(AUDIENCE, subject="repo:contoso/app:environment:prod")

    header = jwt.get_unverified_header(token)
    claims = jwt.decode(token, options={"verify_signature": False})
    assert header["alg"] == "RS256"
    assert header["kid"] == issuer.kid
    assert claims["iss"] == "https://issuer.example"
    assert claims["sub"] == "repo:contoso/app:environment:prod"
    assert claims["aud"] == AUDIENCE
    assert claims["iat"] == 1_800_000_000
    assert claims["exp"] == 1_800_000_120
    assert issuer.issued[-1].subject == "repo:contoso/app:environment:prod"


def test_token_verifies_with_published_jwks() -> None:
    issuer = OidcIssuer(issuer="https://issuer.example")
    claims = decode(issuer, issuer.issue(AUDIENCE))
    assert claims["sub"] == "repo:contoso/flink-jobs:ref:refs/heads/main"


def test_expired_token_rejected_by_pyjwt() -> None:
    issuer = OidcIssuer(issuer="https://issuer.example", clock=lambda: 1_000_000.0)
    with pytest.raises(jwt.ExpiredSignatureError):
        decode(issuer, issuer.issue(AUDIENCE))


def test_jwk_kid_is_stable_thumbprint() -> None:
    issuer = OidcIssuer(issuer="https://issuer.example")
    again = rsa_public_jwk(issuer.public_key)
    assert again["kid"] == issuer.kid
    assert len(base64url_decode(issuer.kid)) == 32  # a SHA-256 digest
    other = OidcIssuer(issuer="https://issuer.example")
    assert other.kid != issuer.kid


def test_issuer_url_needs_server() -> None:
    issuer = OidcIssuer()
    with pytest.raises(RuntimeError, match="call start"):
        issuer.issue(AUDIENCE)


def test_invalid_lifetime() -> None:
    with pytest.raises(ValueError, match="lifetime_seconds must be positive"):
        OidcIssuer(lifetime_seconds=0)


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> tuple[ssl.SSLContext, Path]:
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_context)
    ca_file = tmp_path_factory.mktemp("oidc-ca") / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    return server_context, ca_file


@pytest.fixture
def running_issuer(tls: tuple[ssl.SSLContext, Path]) -> Iterator[OidcIssuer]:
    issuer = OidcIssuer(lifetime_seconds=60)
    issuer.start(tls[0])
    try:
        yield issuer
    finally:
        issuer.stop()


def test_github_token_service(
    running_issuer: OidcIssuer, tls: tuple[ssl.SSLContext, Path]
) -> None:
    response = requests.get(
        f"{running_issuer.github_request_url}&audience=api%3A%2F%2Fcustom",
        headers={"Authorization": f"Bearer {running_issuer.github_request_token}"},
        verify=str(tls[1]),
        timeout=10,
    )
    assert response.status_code == 200
    claims = decode(running_issuer, response.json()["value"], audience="api://custom")
    assert claims["iss"] == running_issuer.base_url
    assert running_issuer.base_url.startswith("https://127.0.0.1:")
    assert running_issuer.issued[-1].kind == "github"


@pytest.mark.parametrize(
    ("method", "bearer", "status"),
    [("GET", "wrong-token", 401), ("GET", None, 401), ("POST", "github", 405)],
)
def test_github_token_service_rejects(
    running_issuer: OidcIssuer,
    tls: tuple[ssl.SSLContext, Path],
    method: str,
    bearer: str | None,
    status: int,
) -> None:
    headers = {}
    if bearer is not None:
        value = running_issuer.github_request_token if bearer == "github" else bearer
        headers["Authorization"] = f"Bearer {value}"
    response = requests.request(
        method, running_issuer.github_request_url, headers=headers, verify=str(tls[1]), timeout=10
    )
    assert response.status_code == status
    assert running_issuer.issued == []


def test_azure_devops_token_service(
    running_issuer: OidcIssuer, tls: tuple[ssl.SSLContext, Path]
) -> None:
    response = requests.post(
        f"{running_issuer.azure_devops_request_uri}?api-version=7.1&serviceConnectionId=sc-1",
        headers={
            "Authorization": f"Bearer {running_issuer.azure_devops_access_token}",
            "Content-Type": "application/json",
        },
        verify=str(tls[1]),
        timeout=10,
    )
    assert response.status_code == 200
    claims = decode(running_issuer, response.json()["oidcToken"])
    assert claims["sub"] == "sc://contoso/flink-jobs/sc-1"
    assert claims["exp"] - claims["iat"] == 60  # type: ignore[operator]


@pytest.mark.parametrize(
    ("method", "query", "status"),
    [
        ("GET", "?api-version=7.1&serviceConnectionId=sc-1", 405),
        ("POST", "?serviceConnectionId=sc-1", 400),
        ("POST", "?api-version=7.1", 400),
    ],
)
def test_azure_devops_token_service_rejects(
    running_issuer: OidcIssuer,
    tls: tuple[ssl.SSLContext, Path],
    method: str,
    query: str,
    status: int,
) -> None:
    response = requests.request(
        method,
        f"{running_issuer.azure_devops_request_uri}{query}",
        headers={"Authorization": f"Bearer {running_issuer.azure_devops_access_token}"},
        verify=str(tls[1]),
        timeout=10,
    )
    assert response.status_code == status


def test_discovery_documents(running_issuer: OidcIssuer, tls: tuple[ssl.SSLContext, Path]) -> None:
    configuration = requests.get(
        f"{running_issuer.base_url}/.well-known/openid-configuration",
        verify=str(tls[1]),
        timeout=10,
    ).json()
    jwks = requests.get(configuration["jwks_uri"], verify=str(tls[1]), timeout=10).json()
    assert configuration["issuer"] == running_issuer.base_url
    assert jwks == running_issuer.jwks()


def test_stop_releases_port(tls: tuple[ssl.SSLContext, Path]) -> None:
    issuer = OidcIssuer()
    issuer.start()
    url = f"{issuer.base_url}/.well-known/jwks"
    assert url.startswith("http://127.0.0.1:")
    assert requests.get(url, timeout=10).status_code == 200
    issuer.stop()
    with pytest.raises(requests.ConnectionError):
        requests.get(url, timeout=10)
    issuer.stop()  # a second stop does nothing


def test_environment_helpers(running_issuer: OidcIssuer) -> None:
    github = running_issuer.github_environment()
    azure_devops = running_issuer.azure_devops_environment()
    assert github["ACTIONS_ID_TOKEN_REQUEST_URL"].endswith("/github/token?api-version=2.0")
    assert github["ACTIONS_ID_TOKEN_REQUEST_TOKEN"] == running_issuer.github_request_token
    assert azure_devops["SYSTEM_OIDCREQUESTURI"].endswith("/azure-devops/oidctoken")
    assert (
        azure_devops["ENDPOINT_AUTH_PARAMETER_SYSTEMVSSCONNECTION_ACCESSTOKEN"]
        == running_issuer.azure_devops_access_token
    )
