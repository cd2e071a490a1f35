"""secret and certificate methods through the real azure-identity and MSAL classes."""

from __future__ import annotations

import pytest
import responses
from azure.core.exceptions import ClientAuthenticationError

from flink_task.auth import SignInError, plan_sign_in
from flink_task.emulator.assertions import JWT_BEARER_ASSERTION_TYPE, verify_certificate_assertion
from tests.auth.conftest import (
    CLIENT_ID,
    TENANT_ID,
    CertificateFiles,
    Clock,
    add_instance_discovery,
    add_openid_configuration,
    add_token_error,
    add_token_response,
    form_of,
    token_endpoint,
)

SECRET = "client-secret-value-7f3a"


def test_secret_sign_in_sends_client_secret(http_mock: responses.RequestsMock) -> None:
    add_openid_configuration(http_mock)
    add_token_response(http_mock, "access-token-1")
    plan = plan_sign_in({"tenantId": TENANT_ID, "clientId": CLIENT_ID, "clientSecret": SECRET}, {})

    token = plan.create_credential().get_token(plan.scope)

    assert token.token == "access-token-1"
    form = form_of(http_mock.calls[1])
    assert form["grant_type"] == "client_credentials"
    assert form["client_id"] == CLIENT_ID
    assert form["client_secret"] == SECRET
    assert form["scope"] == "https://management.azure.com/.default"
    assert plan.secrets == [SECRET]


def test_secret_token_renewed_after_expiry(
    http_mock: responses.RequestsMock, clock: Clock
) -> None:
    add_openid_configuration(http_mock)
    add_token_response(http_mock, "access-token-1", expires_in=3600)
    add_token_response(http_mock, "access-token-2", expires_in=3600)
    plan = plan_sign_in({"tenantId": TENANT_ID, "clientId": CLIENT_ID, "clientSecret": SECRET}, {})
    credential = plan.create_credential()

    first = credential.get_token(plan.scope)
    cached = credential.get_token(plan.scope)
    clock.advance(3700)
    renewed = credential.get_token(plan.scope)

    assert first.token == "access-token-1"
    assert cached.token == "access-token-1"
    assert renewed.token == "access-token-2"


def test_secret_rejected_shows_aadsts(http_mock: responses.RequestsMock) -> None:
    add_openid_configuration(http_mock)
    add_token_error(
        http_mock,
        error="invalid_client",
        code=7000215,
        description="Invalid client secret provided. Ensure the secret being sent in the "
        "request is the client secret value, not the client secret ID.",
    )
    add_instance_discovery(http_mock)
    plan = plan_sign_in({"tenantId": TENANT_ID, "clientId": CLIENT_ID, "clientSecret": SECRET}, {})

    with pytest.raises(SignInError) as caught:
        plan.create_credential().get_token(plan.scope)

    message = caught.value.message
    assert isinstance(caught.value, ClientAuthenticationError)
    assert caught.value.aadsts_code == "AADSTS7000215"
    assert message.startswith("Azure sign-in with secret failed: Azure AD returned AADSTS7000215:")
    assert "Invalid client secret provided" in message
    assert "update clientSecret" in message
    assert "\r" not in message
    assert "\n" not in message
    assert SECRET not in message


@pytest.mark.parametrize("source", ["path", "pem", "encrypted-pem", "pkcs12"])
def test_certificate_sign_in_sends_signed_assertion(
    http_mock: responses.RequestsMock, certificate_files: CertificateFiles, source: str
) -> None:
    value, password = {
        "path": (str(certificate_files.pem_path), None),
        "pem": (certificate_files.pem_text, None),
        "encrypted-pem": (certificate_files.encrypted_pem_text, certificate_files.password),
        "pkcs12": (str(certificate_files.pkcs12_path), certificate_files.password),
    }[source]
    inputs = {"tenantId": TENANT_ID, "clientId": CLIENT_ID, "clientCertificate": value}
    if password:
        inputs["clientCertificatePassword"] = password
    add_openid_configuration(http_mock)
    add_token_response(http_mock, "access-token-cert")
    plan = plan_sign_in(inputs, {})

    token = plan.create_credential().get_token(plan.scope)

    assert token.token == "access-token-cert"
    form = form_of(http_mock.calls[1])
    assert form["client_assertion_type"] == JWT_BEARER_ASSERTION_TYPE
    assert "client_secret" not in form
    result = verify_certificate_assertion(
        form["client_assertion"],
        client_id=CLIENT_ID,
        token_endpoints=[token_endpoint()],
        certificates=[certificate_files.certificate],
    )
    assert result.ok, result.error_description
    assert result.kind == "certificate"


def test_certificate_secrets(certificate_files: CertificateFiles) -> None:
    from_text = plan_sign_in(
        {
            "tenantId": TENANT_ID,
            "clientId": CLIENT_ID,
            "clientCertificate": certificate_files.encrypted_pem_text,
            "clientCertificatePassword": certificate_files.password,
        },
        {},
    )
    from_file = plan_sign_in(
        {
            "tenantId": TENANT_ID,
            "clientId": CLIENT_ID,
            "clientCertificate": str(certificate_files.pem_path),
        },
        {},
    )
    assert certificate_files.password in from_text.secrets
    assert certificate_files.encrypted_pem_text.strip() in from_text.secrets
    assert from_file.secrets == []
    assert certificate_files.password not in from_text.describe()
    assert TENANT_ID in from_text.describe()


def test_loopback_authority_skips_instance_discovery(http_mock: responses.RequestsMock) -> None:
    authority = "https://127.0.0.1:9443"
    add_openid_configuration(http_mock, authority)
    add_token_response(http_mock, "emulator-token", authority=authority)
    plan = plan_sign_in(
        {
            "tenantId": TENANT_ID,
            "clientId": CLIENT_ID,
            "clientSecret": SECRET,
            "cloud": "custom",
            "authorityHost": authority,
            "managementEndpoint": "https://127.0.0.1:9443",
        },
        {},
    )

    token = plan.create_credential().get_token(plan.scope)

    assert token.token == "emulator-token"
    assert form_of(http_mock.calls[1])["scope"] == "https://127.0.0.1:9443/.default"
    # Only the two registered requests: no instance discovery at login.microsoftonline.com.
    assert len(http_mock.calls) == 2


def test_sovereign_cloud_uses_its_authority(http_mock: responses.RequestsMock) -> None:
    authority = "https://login.microsoftonline.us"
    add_openid_configuration(http_mock, authority)
    add_token_response(http_mock, "gov-token", authority=authority)
    plan = plan_sign_in(
        {
            "tenantId": TENANT_ID,
            "clientId": CLIENT_ID,
            "clientSecret": SECRET,
            "cloud": "AzureUSGovernment",
        },
        {},
    )

    assert plan.create_credential().get_token(plan.scope).token == "gov-token"
    assert form_of(http_mock.calls[1])["scope"] == "https://management.usgovcloudapi.net/.default"
