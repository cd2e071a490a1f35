"""describe_auth_error and the exit code of sign-in failures."""

from __future__ import annotations

import pytest
from azure.core.exceptions import ClientAuthenticationError
from azure.identity import CredentialUnavailableError

from flink_task.auth import SignInError, SignInFailedError, describe_auth_error, plan_sign_in
from flink_task.emulator.oidc_issuer import OidcIssuer
from flink_task.errors import EXIT_ACTION_FAILED, FlinkTaskError

MSAL_STYLE = (
    "Authentication failed: AADSTS700016: Application with identifier "
    "'0b9e4c7a-1f2d-4e3b-8a6c-5d4e3f2a1b0c' was not found in the directory 'contoso'.\r\n"
    "Trace ID: 0000aaaa-11bb-cccc-dd22-eeeeee333333\r\nCorrelation ID: "
    "aaaa0000-bb11-2222-33cc-444444dddddd\r\nTimestamp: 2026-01-09 02:02:12Z"
)
AAD_CLIENT_STYLE = (
    "Microsoft Entra ID error '(invalid_client) AADSTS70021: No matching federated identity "
    "record found for presented assertion. Assertion Issuer: 'https://token.actions."
    "githubusercontent.com'. Assertion Subject: 'repo:contoso/flink-jobs:pull_request'.'"
)


def test_msal_style_error() -> None:
    text = describe_auth_error(ClientAuthenticationError(message=MSAL_STYLE))
    assert text.startswith("Azure AD returned AADSTS700016: Application with identifier")
    assert "Trace ID: 0000aaaa-11bb-cccc-dd22-eeeeee333333" in text
    assert "Check clientId and tenantId" in text
    assert "\r" not in text
    assert "\n" not in text


def test_aad_client_style_error() -> None:
    text = describe_auth_error(ClientAuthenticationError(message=AAD_CLIENT_STYLE))
    assert text.startswith("Azure AD returned AADSTS70021: No matching federated identity")
    assert "Assertion Subject: 'repo:contoso/flink-jobs:pull_request'" in text
    assert "must equal the token's sub exactly" in text
    assert not text.endswith("'")


def test_error_without_aadsts_code() -> None:
    error = CredentialUnavailableError(message="Azure CLI not found on path")
    assert describe_auth_error(error) == "Azure CLI not found on path"


def test_secrets_and_tokens_removed() -> None:
    token = OidcIssuer(issuer="https://issuer.example").issue("api://AzureADTokenExchange")
    secret = "client-secret-value-7f3a"
    error = ClientAuthenticationError(
        message=f"AADSTS50027: JWT token is invalid: {token} sent with {secret}"
    )
    text = describe_auth_error(error, secrets=[secret])
    assert token not in text
    assert secret not in text
    assert "JWT token is invalid: *** sent with ***" in text


def test_multiline_secret_removed_line_by_line() -> None:
    pem = (
        "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----"
    )
    error = ClientAuthenticationError(message="bad key MIIEvQIBADANBgkqhkiG9w0BAQEFAASC")
    assert "MIIEvQIBADANBgkqhkiG9w0BAQEFAASC" not in describe_auth_error(error, secrets=[pem])


def test_sign_in_failed_error_exits_1() -> None:
    error = SignInFailedError.from_exception(ClientAuthenticationError(message=MSAL_STYLE))
    assert error.exit_code == EXIT_ACTION_FAILED
    assert str(error).startswith("Azure AD returned AADSTS700016")


def test_sign_in_error_keeps_its_message() -> None:
    error = SignInError("Azure sign-in with secret failed: x", method="secret", aadsts_code=None)
    assert describe_auth_error(error) == "Azure sign-in with secret failed: x"
    assert str(error) == "Azure sign-in with secret failed: x"


def test_sign_in_error_is_flink_task_error() -> None:
    error = SignInError("Azure sign-in with secret failed: x", method="secret", aadsts_code=None)
    assert isinstance(error, ClientAuthenticationError)
    assert isinstance(error, FlinkTaskError)
    assert error.exit_code == EXIT_ACTION_FAILED


def test_describe_plan_has_no_secret() -> None:
    plan = plan_sign_in(
        {
            "tenantId": "6f1c2a4e-8d0b-4c36-9a5e-2b7d1e3f4a50",
            "clientId": "0b9e4c7a-1f2d-4e3b-8a6c-5d4e3f2a1b0c",
            "clientSecret": "client-secret-value-7f3a",
            "subscriptionId": "9d8c7b6a-5f4e-4d3c-8b2a-1f0e9d8c7b6a",
        },
        {},
    )
    line = plan.describe()
    assert "client-secret-value-7f3a" not in line
    assert "client-secret-value-7f3a" not in repr(plan)
    assert "subscription 9d8c7b6a-5f4e-4d3c-8b2a-1f0e9d8c7b6a" in line
    assert line.startswith("Azure sign-in: secret (auto: clientSecret is set as a task input)")


@pytest.mark.parametrize("method", ["secret", "github-oidc"])
def test_credential_closes(method: str) -> None:
    environ = {
        "ACTIONS_ID_TOKEN_REQUEST_URL": "https://pipelines.actions.example/x?api-version=2.0",
        "ACTIONS_ID_TOKEN_REQUEST_TOKEN": "github-request-token-91c2",
    }
    inputs = {
        "authType": method,
        "tenantId": "6f1c2a4e-8d0b-4c36-9a5e-2b7d1e3f4a50",
        "clientId": "0b9e4c7a-1f2d-4e3b-8a6c-5d4e3f2a1b0c",
        "clientSecret": "client-secret-value-7f3a",
    }
    with plan_sign_in(inputs, environ).create_credential() as credential:
        assert hasattr(credential, "get_token_info")
