"""The emulator's Azure AD authority, signed in to with the real azure-identity classes."""

from __future__ import annotations

import base64
import logging
import stat
import time
from pathlib import Path

import pytest
import requests
from azure.core.exceptions import ClientAuthenticationError
from azure.identity import ClientSecretCredential

from flink_task.emulator import Emulator
from tests.emulator.conftest import ArmClient, credential_for, offline_cluster


def token_url(emulator: Emulator, tenant: str | None = None) -> str:
    return f"{emulator.base_url}/{tenant or emulator.tenant_id}/oauth2/v2.0/token"


def post_token(emulator: Emulator, **form: str) -> requests.Response:
    return requests.post(token_url(emulator), data=form, verify=str(emulator.ca_file), timeout=30)


def client_form(emulator: Emulator, **overrides: str) -> dict[str, str]:
    form = {
        "grant_type": "client_credentials",
        "client_id": emulator.client_id,
        "client_secret": emulator.client_secret,
        "scope": f"{emulator.base_url}/.default",
    }
    form.update(overrides)
    return form


def test_client_secret_credential_gets_token(offline_emulator: Emulator) -> None:
    credential = credential_for(offline_emulator)

    token = credential.get_token(f"{offline_emulator.base_url}/.default")

    assert token.token
    assert 500 < token.expires_on - time.time() <= 600


def test_issued_token_opens_job_api(offline_emulator: Emulator) -> None:
    token = credential_for(offline_emulator).get_token(f"{offline_emulator.base_url}/.default")
    arm = ArmClient(offline_emulator)
    arm.session.headers["Authorization"] = f"Bearer {token.token}"

    response = arm.list_jobs()

    assert response.status_code == 200, response.text
    assert response.json() == {"value": []}


def test_management_scope_accepted(offline_emulator: Emulator) -> None:
    credential = credential_for(offline_emulator)

    token = credential.get_token("https://management.azure.com/.default")

    assert token.token


def test_wrong_secret_rejected(offline_emulator: Emulator) -> None:
    credential = credential_for(offline_emulator, secret="not-the-secret")

    with pytest.raises(ClientAuthenticationError) as raised:
        credential.get_token(f"{offline_emulator.base_url}/.default")

    assert "AADSTS7000215" in str(raised.value)
    assert offline_emulator.client_secret not in str(raised.value)


def test_unknown_client_rejected(offline_emulator: Emulator) -> None:
    credential = ClientSecretCredential(
        offline_emulator.tenant_id,
        "00000000-1111-2222-3333-444444444444",
        offline_emulator.client_secret,
        authority=offline_emulator.base_url,
        disable_instance_discovery=True,
        connection_verify=str(offline_emulator.ca_file),
    )

    with pytest.raises(ClientAuthenticationError) as raised:
        credential.get_token(f"{offline_emulator.base_url}/.default")

    assert "AADSTS700016" in str(raised.value)


def test_unknown_tenant_rejected(offline_emulator: Emulator) -> None:
    credential = ClientSecretCredential(
        "99999999-8888-7777-6666-555555555555",
        offline_emulator.client_id,
        offline_emulator.client_secret,
        authority=offline_emulator.base_url,
        disable_instance_discovery=True,
        connection_verify=str(offline_emulator.ca_file),
    )

    with pytest.raises(ClientAuthenticationError) as raised:
        credential.get_token(f"{offline_emulator.base_url}/.default")

    # MSAL replaces the discovery error with its own message, as it does against Azure.
    assert "Unable to get authority configuration" in str(raised.value)


def test_unknown_tenant_aadsts_code(offline_emulator: Emulator) -> None:
    tenant = "99999999-8888-7777-6666-555555555555"
    discovery = requests.get(
        f"{offline_emulator.base_url}/{tenant}/v2.0/.well-known/openid-configuration",
        verify=str(offline_emulator.ca_file),
        timeout=30,
    )
    token = requests.post(
        token_url(offline_emulator, tenant),
        data=client_form(offline_emulator),
        verify=str(offline_emulator.ca_file),
        timeout=30,
    )

    assert discovery.status_code == 400
    assert discovery.json()["error_codes"] == [90002]
    assert token.status_code == 400
    assert token.json()["error"] == "invalid_tenant"
    assert token.json()["error_description"].startswith("AADSTS90002:")


def test_foreign_resource_scope_rejected(offline_emulator: Emulator) -> None:
    credential = credential_for(offline_emulator)

    with pytest.raises(ClientAuthenticationError) as raised:
        credential.get_token("https://vault.azure.net/.default")

    assert "AADSTS500011" in str(raised.value)


def test_scope_without_default_rejected(offline_emulator: Emulator) -> None:
    response = post_token(
        offline_emulator, **client_form(offline_emulator, scope="user_impersonation")
    )

    assert response.status_code == 400
    assert response.json()["error"] == "invalid_scope"
    assert response.json()["error_codes"] == [1002012]


def test_token_errors_table(offline_emulator: Emulator) -> None:
    cases = [
        ({"grant_type": "password"}, 400, "unsupported_grant_type", 70003),
        ({"grant_type": ""}, 400, "invalid_request", 900144),
        ({"client_id": ""}, 400, "invalid_request", 900144),
        ({"client_secret": ""}, 401, "invalid_client", 7000218),
        ({"scope": ""}, 400, "invalid_request", 900144),
        ({"client_assertion": "x.y.z"}, 401, "invalid_client", 7000219),
    ]
    for overrides, status, error, code in cases:
        response = post_token(offline_emulator, **client_form(offline_emulator, **overrides))

        assert response.status_code == status, overrides
        assert response.json()["error"] == error, overrides
        assert response.json()["error_codes"] == [code], overrides
        assert response.json()["error_description"].startswith(f"AADSTS{code}:"), overrides


def test_client_secret_basic_accepted(offline_emulator: Emulator) -> None:
    pair = f"{offline_emulator.client_id}:{offline_emulator.client_secret}".encode()
    response = requests.post(
        token_url(offline_emulator),
        data={
            "grant_type": "client_credentials",
            "scope": f"{offline_emulator.base_url}/.default",
        },
        headers={"Authorization": f"Basic {base64.b64encode(pair).decode()}"},
        verify=str(offline_emulator.ca_file),
        timeout=30,
    )

    assert response.status_code == 200, response.text
    assert response.json()["token_type"] == "Bearer"
    assert response.json()["expires_in"] == 600


def test_openid_configuration_document(offline_emulator: Emulator) -> None:
    base = offline_emulator.base_url
    tenant = offline_emulator.tenant_id
    response = requests.get(
        f"{base}/{tenant}/v2.0/.well-known/openid-configuration",
        verify=str(offline_emulator.ca_file),
        timeout=30,
    )

    document = response.json()
    assert response.status_code == 200
    assert document["issuer"] == f"{base}/{tenant}/v2.0"
    assert document["token_endpoint"] == f"{base}/{tenant}/oauth2/v2.0/token"
    assert document["authorization_endpoint"] == f"{base}/{tenant}/oauth2/v2.0/authorize"
    assert "client_credentials" in document["grant_types_supported"]


def test_job_api_without_token_401(offline_emulator: Emulator) -> None:
    arm = ArmClient(offline_emulator)
    del arm.session.headers["Authorization"]

    response = arm.list_jobs()

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "AuthenticationFailed"
    assert response.headers["WWW-Authenticate"].startswith("Bearer ")
    assert response.headers["x-ms-request-id"]


def test_job_api_foreign_token_401(offline_emulator: Emulator) -> None:
    arm = ArmClient(offline_emulator)
    for value in ("Bearer eyJ0eXAiOiJKV1QifQ.e30.c2ln", "Bearer ", "Basic dXNlcjpwYXNz"):
        arm.session.headers["Authorization"] = value

        response = arm.list_jobs()

        assert response.status_code == 401, value
        assert response.headers["WWW-Authenticate"].startswith("Bearer "), value
        assert response.json()["error"]["code"] in (
            "InvalidAuthenticationToken",
            "AuthenticationFailed",
        ), value


def test_operation_url_needs_token(offline_emulator: Emulator) -> None:
    arm = ArmClient(offline_emulator)
    url = f"{arm.cluster_url()}/operationresults/{'0' * 32}?api-version=2024-05-01"

    response = requests.get(url, verify=str(offline_emulator.ca_file), timeout=30)

    assert response.status_code == 401


def test_expired_token_rejected(tmp_path: Path) -> None:
    with Emulator(tmp_path, clusters=[offline_cluster()], token_lifetime=1) as emulator:
        arm = ArmClient(emulator)
        assert arm.list_jobs().status_code == 200
        time.sleep(1.5)

        response = arm.list_jobs()

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "InvalidAuthenticationToken"


def test_token_survives_restart(tmp_path: Path) -> None:
    first = Emulator(tmp_path, clusters=[offline_cluster()])
    with first:
        arm = ArmClient(first)
        port = first.port

    with Emulator(tmp_path, clusters=[offline_cluster()], port=port) as second:
        response = arm.list_jobs()
        same_identity = (second.tenant_id, second.client_id, second.client_secret)

    assert response.status_code == 200, response.text
    assert same_identity == (first.tenant_id, first.client_id, first.client_secret)


def test_secret_file_private(offline_emulator: Emulator) -> None:
    info = offline_emulator.info()
    secret_file = Path(info["clientSecretFile"])

    assert secret_file.read_text().strip() == offline_emulator.client_secret
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
    assert offline_emulator.client_secret not in str(info)


def test_secret_and_token_not_logged(
    offline_emulator: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="flink_task")
    credential = credential_for(offline_emulator)
    token = credential.get_token(f"{offline_emulator.base_url}/.default").token
    post_token(offline_emulator, **client_form(offline_emulator, client_secret="wrong-secret"))
    arm = ArmClient(offline_emulator)
    arm.list_jobs()

    logged = "\n".join(record.getMessage() for record in caplog.records)

    assert "/oauth2/v2.0/token -> 200" in logged
    assert offline_emulator.client_secret not in logged
    assert "wrong-secret" not in logged
    assert token not in logged


def test_stop_closes_open_connections(tmp_path: Path) -> None:
    emulator = Emulator(tmp_path, clusters=[offline_cluster()])
    with emulator:
        arm = ArmClient(emulator)
        assert arm.list_jobs().status_code == 200

    with pytest.raises(requests.ConnectionError):
        arm.list_jobs()
