"""Azure DevOps service connections and azure-devops-oidc through the real credential."""

from __future__ import annotations

import json

import pytest
import responses
from requests import PreparedRequest

from flink_task.auth import SignInError, plan_sign_in, read_service_connection
from flink_task.emulator.oidc_issuer import OidcIssuer
from tests.auth.conftest import (
    CLIENT_ID,
    TENANT_ID,
    CertificateFiles,
    Clock,
    add_openid_configuration,
    add_token_response,
    form_of,
)

CONNECTION = "3b0c5d2e-7a41-4f6e-9c8d-1e2f3a4b5c6d"
SUBSCRIPTION = "9d8c7b6a-5f4e-4d3c-8b2a-1f0e9d8c7b6a"
OIDC_URI = "https://dev.azure.example/org/project/_apis/distributedtask/hubs/build/plans/p/jobs/j/oidctoken"
JOB_TOKEN = "ado-job-access-token-44d0"
SPN_KEY = "connection-key-value-19af"


def connection_variables(
    scheme: str, connection_id: str = CONNECTION, **extra: str
) -> dict[str, str]:
    suffix = connection_id.upper()
    return {
        f"ENDPOINT_AUTH_SCHEME_{suffix}": scheme,
        f"ENDPOINT_AUTH_PARAMETER_{suffix}_SERVICEPRINCIPALID": CLIENT_ID,
        f"ENDPOINT_AUTH_PARAMETER_{suffix}_TENANTID": TENANT_ID,
        f"ENDPOINT_DATA_{suffix}_SUBSCRIPTIONID": SUBSCRIPTION,
        f"ENDPOINT_DATA_{suffix}_ENVIRONMENT": "AzureCloud",
        f"ENDPOINT_URL_{suffix}": "https://management.azure.com/",
        **{f"ENDPOINT_AUTH_PARAMETER_{suffix}_{key}": value for key, value in extra.items()},
    }


WIF_ENVIRONMENT = {
    **connection_variables("WorkloadIdentityFederation"),
    "SYSTEM_OIDCREQUESTURI": OIDC_URI,
    "ENDPOINT_AUTH_PARAMETER_SYSTEMVSSCONNECTION_ACCESSTOKEN": JOB_TOKEN,
}


def test_read_connection_matches_id_case_insensitively() -> None:
    environ = connection_variables("ServicePrincipal", SERVICEPRINCIPALKEY=SPN_KEY)
    connection = read_service_connection(CONNECTION.lower(), environ)
    assert connection is not None
    assert connection.scheme == "serviceprincipal"
    assert connection.authentication_type == "spnkey"
    assert connection.client_id == CLIENT_ID
    assert connection.tenant_id == TENANT_ID
    assert connection.client_secret == SPN_KEY
    assert connection.subscription_id == SUBSCRIPTION
    assert connection.environment == "AzureCloud"
    assert connection.management_endpoint == "https://management.azure.com/"
    assert SPN_KEY not in repr(connection)


def test_read_connection_from_json_variables() -> None:
    suffix = CONNECTION.upper()
    environ = {
        f"ENDPOINT_AUTH_{suffix}": json.dumps(
            {
                "scheme": "ServicePrincipal",
                "parameters": {
                    "serviceprincipalid": CLIENT_ID,
                    "tenantid": TENANT_ID,
                    "authenticationType": "spnKey",
                    "serviceprincipalkey": SPN_KEY,
                },
            }
        ),
        f"ENDPOINT_DATA_{suffix}": json.dumps(
            {"subscriptionId": SUBSCRIPTION, "environment": "AzureCloud"}
        ),
    }
    connection = read_service_connection(CONNECTION, environ)
    assert connection is not None
    assert connection.scheme == "serviceprincipal"
    assert connection.client_secret == SPN_KEY
    assert connection.subscription_id == SUBSCRIPTION


def test_read_connection_absent() -> None:
    assert read_service_connection(CONNECTION, {}) is None


def test_plan_takes_subscription_and_cloud_from_connection() -> None:
    environ = {
        **WIF_ENVIRONMENT,
        f"ENDPOINT_DATA_{CONNECTION.upper()}_ENVIRONMENT": "AzureUSGovernment",
        f"ENDPOINT_DATA_{CONNECTION.upper()}_ACTIVEDIRECTORYAUTHORITY": "https://login.microsoftonline.us/",
        f"ENDPOINT_URL_{CONNECTION.upper()}": "https://management.usgovcloudapi.net/",
    }
    plan = plan_sign_in({"azureSubscription": CONNECTION}, environ)
    assert plan.method == "azure-devops-oidc"
    assert plan.subscription_id == SUBSCRIPTION
    assert plan.cloud.name == "AzureUSGovernment"
    assert plan.cloud.authority_host == "https://login.microsoftonline.us"
    assert plan.scope == "https://management.usgovcloudapi.net/.default"
    assert plan.secrets == [JOB_TOKEN]
    assert SUBSCRIPTION not in plan.secrets
    assert TENANT_ID not in plan.secrets


def test_inputs_override_connection() -> None:
    inputs = {
        "azureSubscription": CONNECTION,
        "subscriptionId": "11111111-2222-3333-4444-555555555555",
        "managementEndpoint": "https://127.0.0.1:8443",
    }
    plan = plan_sign_in(inputs, WIF_ENVIRONMENT)
    assert plan.subscription_id == "11111111-2222-3333-4444-555555555555"
    assert plan.scope == "https://127.0.0.1:8443/.default"


def add_ado_token_service(
    mock: responses.RequestsMock, issuer: OidcIssuer, issued: list[str]
) -> None:
    def issue(request: PreparedRequest) -> tuple[int, dict[str, str], str]:
        token = issuer.issue(
            "api://AzureADTokenExchange", subject=issuer.azure_devops_subject(CONNECTION)
        )
        issued.append(token)
        return 200, {}, json.dumps({"oidcToken": token})

    mock.add_callback(
        responses.POST,
        OIDC_URI,
        callback=issue,
        content_type="application/json",
        match=[
            responses.matchers.query_param_matcher(
                {"api-version": "7.1", "serviceConnectionId": CONNECTION}
            ),
            responses.matchers.header_matcher(
                {"Authorization": f"Bearer {JOB_TOKEN}", "X-TFS-FedAuthRedirect": "Suppress"}
            ),
        ],
    )


def test_ado_oidc_fresh_token_after_expiry(
    http_mock: responses.RequestsMock, clock: Clock
) -> None:
    issuer = OidcIssuer(issuer="https://vstoken.dev.azure.example/org-id", lifetime_seconds=600)
    issued: list[str] = []
    masked: list[str] = []
    add_ado_token_service(http_mock, issuer, issued)
    add_token_response(http_mock, "access-token-1")
    add_token_response(http_mock, "access-token-2")
    plan = plan_sign_in({"azureSubscription": CONNECTION}, WIF_ENVIRONMENT)
    credential = plan.create_credential(on_secret=masked.append)

    first = credential.get_token(plan.scope)
    clock.advance(3700)
    second = credential.get_token(plan.scope)

    assert (first.token, second.token) == ("access-token-1", "access-token-2")
    assert len(issued) == 2
    assert issued[0] != issued[1]
    assert masked == issued
    assertions = [
        form_of(call)["client_assertion"]
        for call in http_mock.calls
        if call.request.method == "POST" and "oauth2" in str(call.request.url)
    ]
    assert assertions == issued
    assert form_of(http_mock.calls[1])["client_id"] == CLIENT_ID


def test_ado_oidc_with_azure_cli_task_variables(http_mock: responses.RequestsMock) -> None:
    issuer = OidcIssuer(issuer="https://vstoken.dev.azure.example/org-id")
    issued: list[str] = []
    add_ado_token_service(http_mock, issuer, issued)
    add_token_response(http_mock, "access-token-1")
    environ = {
        "AZURESUBSCRIPTION_SERVICE_CONNECTION_ID": CONNECTION,
        "AZURESUBSCRIPTION_CLIENT_ID": CLIENT_ID,
        "AZURESUBSCRIPTION_TENANT_ID": TENANT_ID,
        "SYSTEM_OIDCREQUESTURI": OIDC_URI,
        "SYSTEM_ACCESSTOKEN": JOB_TOKEN,
    }
    plan = plan_sign_in({}, environ)

    assert plan.create_credential().get_token(plan.scope).token == "access-token-1"
    assert plan.method == "azure-devops-oidc"
    assert plan.subscription_id is None


def test_ado_oidc_denied(http_mock: responses.RequestsMock) -> None:
    http_mock.add(responses.POST, OIDC_URI, status=401, body="TF400813: not authorized")
    plan = plan_sign_in({"azureSubscription": CONNECTION}, WIF_ENVIRONMENT)

    with pytest.raises(SignInError) as caught:
        plan.create_credential().get_token(plan.scope)

    message = caught.value.message
    assert "Azure DevOps OIDC token request failed with HTTP 401: TF400813" in message
    assert f"allowed to use service connection {CONNECTION}" in message
    assert JOB_TOKEN not in message


def test_spn_key_connection_signs_in_with_its_key(http_mock: responses.RequestsMock) -> None:
    add_openid_configuration(http_mock)
    add_token_response(http_mock, "access-token-spn")
    environ = connection_variables(
        "ServicePrincipal", AUTHENTICATIONTYPE="spnKey", SERVICEPRINCIPALKEY=SPN_KEY
    )
    plan = plan_sign_in({"azureSubscription": CONNECTION}, environ)

    assert plan.create_credential().get_token(plan.scope).token == "access-token-spn"
    assert plan.method == "secret"
    assert form_of(http_mock.calls[1])["client_secret"] == SPN_KEY
    assert plan.secrets == [SPN_KEY]


def test_spn_certificate_connection(
    http_mock: responses.RequestsMock, certificate_files: CertificateFiles
) -> None:
    add_openid_configuration(http_mock)
    add_token_response(http_mock, "access-token-cert")
    environ = connection_variables(
        "ServicePrincipal",
        AUTHENTICATIONTYPE="spnCertificate",
        SERVICEPRINCIPALCERTIFICATE=certificate_files.pem_text,
    )
    plan = plan_sign_in({"azureSubscription": CONNECTION}, environ)

    assert plan.create_credential().get_token(plan.scope).token == "access-token-cert"
    assert plan.method == "certificate"
    assert "client_assertion" in form_of(http_mock.calls[1])
    assert certificate_files.pem_text.strip() in plan.secrets


def test_managed_identity_connection_uses_msi_client_id() -> None:
    environ = {
        **connection_variables("ManagedServiceIdentity"),
        f"ENDPOINT_DATA_{CONNECTION.upper()}_MSICLIENTID": "5a4b3c2d-1e0f-4a9b-8c7d-6e5f4a3b2c1d",
    }
    plan = plan_sign_in({"azureSubscription": CONNECTION}, environ)
    assert plan.method == "managed-identity"
    assert plan.client_id == "5a4b3c2d-1e0f-4a9b-8c7d-6e5f4a3b2c1d"
