"""managed-identity, azure-cli and default through the real azure-identity classes.

``responses`` fakes the instance metadata endpoint (169.254.169.254), so nothing is sent
to it. The Azure CLI is a stand-in ``az`` program on PATH.
"""

from __future__ import annotations

import json
import sys
import textwrap
import time
from pathlib import Path

import pytest
import requests
import responses

from flink_task.auth import SignInError, plan_sign_in
from tests.auth.conftest import (
    CLIENT_ID,
    TENANT_ID,
    Clock,
    add_openid_configuration,
    add_token_response,
    form_of,
)

IMDS_TOKEN_URL = "http://169.254.169.254/metadata/identity/oauth2/token"
USER_ASSIGNED_ID = "5a4b3c2d-1e0f-4a9b-8c7d-6e5f4a3b2c1d"


def add_imds_token(mock: responses.RequestsMock, access_token: str, **query: str) -> None:
    expires_on = int(time.time()) + 3600
    mock.add(
        responses.GET,
        IMDS_TOKEN_URL,
        match=[
            responses.matchers.query_param_matcher(
                {"api-version": "2018-02-01", "resource": "https://management.azure.com", **query}
            ),
            responses.matchers.header_matcher({"Metadata": "true"}),
        ],
        json={
            "access_token": access_token,
            "expires_in": "3600",
            "expires_on": str(expires_on),
            "resource": "https://management.azure.com",
            "token_type": "Bearer",
        },
    )


def test_managed_identity_system_assigned(http_mock: responses.RequestsMock) -> None:
    add_imds_token(http_mock, "mi-token")
    plan = plan_sign_in({"authType": "managed-identity"}, {})

    assert plan.create_credential().get_token(plan.scope).token == "mi-token"
    assert plan.secrets == []


def test_managed_identity_user_assigned(http_mock: responses.RequestsMock) -> None:
    add_imds_token(http_mock, "mi-user-token", client_id=USER_ASSIGNED_ID)
    plan = plan_sign_in({"authType": "managed-identity", "clientId": USER_ASSIGNED_ID}, {})

    assert plan.create_credential().get_token(plan.scope).token == "mi-user-token"


def test_managed_identity_unavailable(http_mock: responses.RequestsMock) -> None:
    http_mock.add(
        responses.GET,
        IMDS_TOKEN_URL,
        status=400,
        json={"error": "invalid_request", "error_description": "Identity not found"},
    )
    plan = plan_sign_in({"authType": "managed-identity"}, {})

    with pytest.raises(SignInError) as caught:
        plan.create_credential().get_token(plan.scope)

    assert caught.value.message.startswith("Azure sign-in with managed-identity failed:")
    assert "Identity not found" in caught.value.message


def write_fake_az(directory: Path, *, exit_code: int = 0, stderr: str = "") -> Path:
    """Write an ``az`` that records its arguments and prints a get-access-token result."""
    log = directory / "az-calls.jsonl"
    script = directory / "az"
    script.write_text(
        textwrap.dedent(
            f"""\
            #!{sys.executable}
            import json, sys, time
            with open({str(log)!r}, "a") as log:
                log.write(json.dumps(sys.argv[1:]) + "\\n")
            if {exit_code}:
                sys.stderr.write({stderr!r})
                sys.exit({exit_code})
            expires_on = int(time.time()) + 3600
            print(json.dumps({{
                "accessToken": "cli-token-" + str(sum(1 for _ in open({str(log)!r}))),
                "expiresOn": time.strftime("%Y-%m-%d %H:%M:%S.000000", time.localtime(expires_on)),
                "expires_on": expires_on,
                "subscription": "9d8c7b6a-5f4e-4d3c-8b2a-1f0e9d8c7b6a",
                "tenant": {TENANT_ID!r},
                "tokenType": "Bearer",
            }}, indent=2))
            """
        )
    )
    script.chmod(0o755)
    return log


def az_calls(log: Path) -> list[list[str]]:
    return [json.loads(line) for line in log.read_text().splitlines()]


def test_azure_cli_token(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log = write_fake_az(tmp_path)
    monkeypatch.setenv("PATH", str(tmp_path))
    plan = plan_sign_in({"authType": "azure-cli", "tenantId": TENANT_ID}, {})

    token = plan.create_credential().get_token(plan.scope)

    assert token.token == "cli-token-1"
    calls = az_calls(log)
    assert len(calls) == 1
    assert calls[0][:4] == ["account", "get-access-token", "--output", "json"]
    assert calls[0][calls[0].index("--resource") + 1] == "https://management.azure.com"
    assert calls[0][calls[0].index("--tenant") + 1] == TENANT_ID


def test_azure_cli_renews_after_expiry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, clock: Clock
) -> None:
    log = write_fake_az(tmp_path)
    monkeypatch.setenv("PATH", str(tmp_path))
    plan = plan_sign_in({"authType": "azure-cli"}, {})
    credential = plan.create_credential()

    credential.get_token(plan.scope)
    clock.advance(3700)
    # The stand-in prints an expiry one real hour ahead, which the shifted clock has
    # passed, so azure-identity runs the CLI again on every call.
    credential.get_token(plan.scope)

    assert len(az_calls(log)) == 2
    assert "--tenant" not in az_calls(log)[0]


def test_azure_cli_federated_token_expired(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_fake_az(
        tmp_path,
        exit_code=1,
        stderr="ERROR: AADSTS700024: Client assertion is not within its valid time range. "
        "Current time: 2026-12-04T17:00:00Z, expiry time of assertion 2026-12-04T16:05:00Z.\n",
    )
    monkeypatch.setenv("PATH", str(tmp_path))
    plan = plan_sign_in({"authType": "azure-cli"}, {})

    with pytest.raises(SignInError) as caught:
        plan.create_credential().get_token(plan.scope)

    message = caught.value.message
    assert caught.value.aadsts_code == "AADSTS700024"
    assert (
        "Azure AD returned AADSTS700024: Client assertion is not within its valid time range"
        in message
    )
    assert "github-oidc or azure-devops-oidc" in message


def test_azure_cli_logs_hour_limit(caplog: pytest.LogCaptureFixture) -> None:
    plan_sign_in({"authType": "azure-cli"}, {})
    assert "AADSTS700024 after about 1 hour" in caplog.text


def test_default_uses_environment_credential(
    http_mock: responses.RequestsMock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AZURE_TENANT_ID", TENANT_ID)
    monkeypatch.setenv("AZURE_CLIENT_ID", CLIENT_ID)
    monkeypatch.setenv("AZURE_CLIENT_SECRET", "ambient-secret-3c9d")
    add_openid_configuration(http_mock)
    add_token_response(http_mock, "default-token")
    plan = plan_sign_in({"authType": "default", "clientSecret": "ambient-secret-3c9d"}, {})

    assert plan.create_credential().get_token(plan.scope).token == "default-token"
    assert form_of(http_mock.calls[1])["client_secret"] == "ambient-secret-3c9d"
    assert plan.secrets == ["ambient-secret-3c9d"]


def test_auto_lists_what_was_tried(
    http_mock: responses.RequestsMock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # DefaultAzureCredential probes the instance metadata endpoint. The fake probe fails to
    # connect, as on a machine outside Azure.
    http_mock.add(
        responses.GET,
        IMDS_TOKEN_URL,
        body=requests.exceptions.ConnectionError("no route to 169.254.169.254"),
    )
    empty_bin = tmp_path / "bin"
    empty_bin.mkdir()
    monkeypatch.setenv("PATH", str(empty_bin))
    monkeypatch.setenv("HOME", str(tmp_path))
    plan = plan_sign_in({}, {})

    with pytest.raises(SignInError) as caught:
        plan.create_credential().get_token(plan.scope)

    message = caught.value.message
    assert plan.method == "default"
    assert message.startswith("Azure sign-in with default failed:")
    assert "DefaultAzureCredential failed to retrieve a token" in message
    assert "EnvironmentCredential" in message
    assert "ManagedIdentityCredential" in message
    assert "AzureCliCredential" in message
    assert (
        "auto checked these first: task inputs clientSecret and clientCertificate: not set"
        in message
    )
    assert "GitHub OIDC: ACTIONS_ID_TOKEN_REQUEST_URL not set" in message
