"""Federated sign-in end to end: the OIDC issuer on loopback HTTPS, assertions checked.

The pipeline's token service is the emulator's OIDC issuer, a real HTTPS server on
127.0.0.1. Azure AD's token endpoint is faked with ``responses``, but it checks each client
assertion with ``flink_task.emulator.assertions`` against the issuer's JWKS, as the emulator's
authority will.
"""

from __future__ import annotations

import json
import ssl
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qsl

import pytest
import responses
import trustme
from azure.identity import ClientAssertionCredential
from requests import PreparedRequest

from flink_task.auth import SignInError, plan_sign_in
from flink_task.emulator.assertions import FederatedCredential, verify_client_assertion
from flink_task.emulator.oidc_issuer import OidcIssuer
from tests.auth.conftest import CLIENT_ID, TENANT_ID, Clock, token_endpoint

CONNECTION = "3b0c5d2e-7a41-4f6e-9c8d-1e2f3a4b5c6d"


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> tuple[ssl.SSLContext, Path]:
    ca = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    ca_file = tmp_path_factory.mktemp("federated-ca") / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    return context, ca_file


@pytest.fixture
def issuer(
    tls: tuple[ssl.SSLContext, Path], monkeypatch: pytest.MonkeyPatch
) -> Iterator[OidcIssuer]:
    # Shorter than GitHub's 5 minutes, so any reuse of an old token is caught.
    running = OidcIssuer(lifetime_seconds=60)
    running.start(tls[0])
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tls[1]))
    try:
        yield running
    finally:
        running.stop()


def add_checking_token_endpoint(
    mock: responses.RequestsMock, issuer: OidcIssuer, subject: str, outcomes: list[str]
) -> None:
    def grant(request: PreparedRequest) -> tuple[int, dict[str, str], str]:
        body = request.body.decode() if isinstance(request.body, bytes) else str(request.body)
        result = verify_client_assertion(
            dict(parse_qsl(body)),
            client_id=CLIENT_ID,
            token_endpoints=[token_endpoint()],
            federated_credentials=[FederatedCredential(issuer=issuer.issuer, subject=subject)],
            key_sets={issuer.issuer: issuer.jwks()},
        )
        if not result.ok:
            outcomes.append(f"AADSTS{result.aadsts}")
            return result.status, {}, json.dumps(result.error_body())
        outcomes.append("ok")
        access = {
            "token_type": "Bearer",
            "expires_in": 3600,
            "access_token": f"at-{len(outcomes)}",
        }
        return 200, {}, json.dumps(access)

    mock.add_callback(
        responses.POST, token_endpoint(), callback=grant, content_type="application/json"
    )


def test_github_sign_in_survives_long_wait(
    http_mock: responses.RequestsMock, issuer: OidcIssuer, clock: Clock
) -> None:
    http_mock.add_passthru(issuer.base_url)
    outcomes: list[str] = []
    add_checking_token_endpoint(http_mock, issuer, issuer.github_subject, outcomes)
    masked: list[str] = []
    plan = plan_sign_in(
        {"tenantId": TENANT_ID, "clientId": CLIENT_ID}, issuer.github_environment()
    )
    with plan.create_credential(on_secret=masked.append) as credential:
        first = credential.get_token(plan.scope)
        clock.advance(3700)
        second = credential.get_token(plan.scope)

    assert plan.method == "github-oidc"
    assert outcomes == ["ok", "ok"]
    assert (first.token, second.token) == ("at-1", "at-2")
    assert [token.kind for token in issuer.issued] == ["github", "github"]
    assert len(masked) == 2
    assert masked[0] != masked[1]


def test_reused_github_token_is_rejected(
    http_mock: responses.RequestsMock, issuer: OidcIssuer, clock: Clock
) -> None:
    """What a fixed assertion (a token fetched once) runs into after a long wait."""
    outcomes: list[str] = []
    add_checking_token_endpoint(http_mock, issuer, issuer.github_subject, outcomes)
    fetched_once = issuer.issue("api://AzureADTokenExchange")
    with ClientAssertionCredential(TENANT_ID, CLIENT_ID, lambda: fetched_once) as credential:
        credential.get_token("https://management.azure.com/.default")
        clock.advance(3700)
        with pytest.raises(Exception, match="AADSTS700024"):
            credential.get_token("https://management.azure.com/.default")

    assert outcomes == ["ok", "AADSTS700024"]


def test_azure_devops_sign_in_survives_long_wait(
    http_mock: responses.RequestsMock, issuer: OidcIssuer, clock: Clock
) -> None:
    http_mock.add_passthru(issuer.base_url)
    outcomes: list[str] = []
    subject = issuer.azure_devops_subject(CONNECTION)
    add_checking_token_endpoint(http_mock, issuer, subject, outcomes)
    suffix = CONNECTION.upper()
    environ = {
        f"ENDPOINT_AUTH_SCHEME_{suffix}": "WorkloadIdentityFederation",
        f"ENDPOINT_AUTH_PARAMETER_{suffix}_SERVICEPRINCIPALID": CLIENT_ID,
        f"ENDPOINT_AUTH_PARAMETER_{suffix}_TENANTID": TENANT_ID,
        **issuer.azure_devops_environment(),
    }
    plan = plan_sign_in({"azureSubscription": CONNECTION}, environ)
    with plan.create_credential() as credential:
        credential.get_token(plan.scope)
        clock.advance(3700)
        credential.get_token(plan.scope)

    assert plan.method == "azure-devops-oidc"
    assert outcomes == ["ok", "ok"]
    assert [token.subject for token in issuer.issued] == [subject, subject]


def test_subject_mismatch_reported(http_mock: responses.RequestsMock, issuer: OidcIssuer) -> None:
    http_mock.add_passthru(issuer.base_url)
    outcomes: list[str] = []
    add_checking_token_endpoint(
        http_mock, issuer, "repo:contoso/flink-jobs:environment:prod", outcomes
    )
    plan = plan_sign_in(
        {"tenantId": TENANT_ID, "clientId": CLIENT_ID}, issuer.github_environment()
    )

    with pytest.raises(SignInError) as caught, plan.create_credential() as credential:
        credential.get_token(plan.scope)

    assert caught.value.aadsts_code == "AADSTS700213"
    assert "repo:contoso/flink-jobs:ref:refs/heads/main" in caught.value.message
    assert issuer.github_request_token not in caught.value.message
