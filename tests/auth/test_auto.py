"""authType auto: which method it picks from what is present, and why."""

from __future__ import annotations

import logging

import pytest

from flink_task.auth import plan_sign_in
from flink_task.inputs import collect_raw_inputs
from tests.auth.conftest import CLIENT_ID, TENANT_ID, CertificateFiles

CONNECTION = "3b0c5d2e-7a41-4f6e-9c8d-1e2f3a4b5c6d"
GITHUB = {
    "ACTIONS_ID_TOKEN_REQUEST_URL": "https://token.actions.example/token?api-version=2.0",
    "ACTIONS_ID_TOKEN_REQUEST_TOKEN": "github-request-token-1",
}
AZURE_SECRET = {
    "AZURE_TENANT_ID": TENANT_ID,
    "AZURE_CLIENT_ID": CLIENT_ID,
    "AZURE_CLIENT_SECRET": "ambient-secret-1",
}
ADO_OIDC = {
    "SYSTEM_OIDCREQUESTURI": "https://dev.azure.example/org/_apis/oidctoken",
    "SYSTEM_ACCESSTOKEN": "job-access-token-1",
}


def connection(scheme: str, **parameters: str) -> dict[str, str]:
    prefix = f"ENDPOINT_AUTH_PARAMETER_{CONNECTION.upper()}_"
    environ = {
        f"ENDPOINT_AUTH_SCHEME_{CONNECTION.upper()}": scheme,
        f"{prefix}SERVICEPRINCIPALID": CLIENT_ID,
        f"{prefix}TENANTID": TENANT_ID,
    }
    environ.update({prefix + key: value for key, value in parameters.items()})
    return environ


CASES = [
    pytest.param(
        {
            "INPUT_CLIENTSECRET": "input-secret",
            "INPUT_TENANTID": TENANT_ID,
            "INPUT_CLIENTID": CLIENT_ID,
        },
        "secret",
        "clientSecret is set as a task input",
        id="secret-input",
    ),
    pytest.param(
        {
            "INPUT_CLIENTSECRET": "input-secret",
            "INPUT_TENANTID": TENANT_ID,
            "INPUT_CLIENTID": CLIENT_ID,
            "INPUT_AZURESUBSCRIPTION": CONNECTION,
            **connection("WorkloadIdentityFederation"),
            **ADO_OIDC,
            **GITHUB,
        },
        "secret",
        "clientSecret is set as a task input",
        id="secret-input-beats-connection-and-github",
    ),
    pytest.param(
        {
            "INPUT_AZURESUBSCRIPTION": CONNECTION,
            **connection("WorkloadIdentityFederation"),
            **ADO_OIDC,
            **AZURE_SECRET,
        },
        "azure-devops-oidc",
        "service connection 3b0c5d2e-7a41-4f6e-9c8d-1e2f3a4b5c6d uses workloadidentityfederation",
        id="wif-connection-beats-azure-environment",
    ),
    pytest.param(
        {
            "INPUT_AZURESUBSCRIPTION": CONNECTION,
            **connection(
                "ServicePrincipal", AUTHENTICATIONTYPE="spnKey", SERVICEPRINCIPALKEY="k1"
            ),
        },
        "secret",
        "uses serviceprincipal",
        id="spn-key-connection",
    ),
    pytest.param(
        {"INPUT_AZURESUBSCRIPTION": CONNECTION, **connection("ManagedServiceIdentity")},
        "managed-identity",
        "uses managedserviceidentity",
        id="managed-identity-connection",
    ),
    pytest.param(
        {
            "AZURESUBSCRIPTION_SERVICE_CONNECTION_ID": CONNECTION,
            "AZURESUBSCRIPTION_CLIENT_ID": CLIENT_ID,
            "AZURESUBSCRIPTION_TENANT_ID": TENANT_ID,
            **ADO_OIDC,
        },
        "azure-devops-oidc",
        "uses workloadidentityfederation",
        id="azure-cli-task-script",
    ),
    pytest.param(
        {"INPUT_CLIENTID": CLIENT_ID, "INPUT_TENANTID": TENANT_ID, **GITHUB, **AZURE_SECRET},
        "github-oidc",
        "ACTIONS_ID_TOKEN_REQUEST_URL and clientId are set",
        id="github-beats-azure-environment",
    ),
    pytest.param(
        {**GITHUB, **AZURE_SECRET},
        "github-oidc",
        "ACTIONS_ID_TOKEN_REQUEST_URL and clientId are set",
        id="github-with-client-id-from-azure-environment",
    ),
    pytest.param(
        AZURE_SECRET,
        "secret",
        "AZURE_CLIENT_SECRET is set",
        id="azure-environment-secret",
    ),
    pytest.param(
        GITHUB,
        "default",
        "no other sign-in is configured",
        id="github-without-client-id",
    ),
    pytest.param({}, "default", "no other sign-in is configured", id="nothing"),
]


@pytest.mark.parametrize(("environ", "method", "reason"), CASES)
def test_auto_choice(
    environ: dict[str, str], method: str, reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="flink_task.auth")
    inputs = collect_raw_inputs(None, environ)
    plan = plan_sign_in(inputs, environ)
    assert plan.method == method
    assert reason in plan.reason
    assert plan.reason.startswith("auto: ")
    assert reason in caplog.text
    for secret in plan.secrets:
        assert secret not in caplog.text


def test_auto_certificate_from_environment(certificate_files: CertificateFiles) -> None:
    environ = {
        "AZURE_TENANT_ID": TENANT_ID,
        "AZURE_CLIENT_ID": CLIENT_ID,
        "AZURE_CLIENT_CERTIFICATE_PATH": str(certificate_files.pem_path),
    }
    plan = plan_sign_in(collect_raw_inputs(None, environ), environ)
    assert plan.method == "certificate"
    assert plan.reason == "auto: AZURE_CLIENT_CERTIFICATE_PATH is set"
    # A file path is not a secret; the file's content is never printed.
    assert plan.secrets == []


def test_auto_records_skipped_sources() -> None:
    plan = plan_sign_in({}, {})
    assert plan.skipped == (
        "task inputs clientSecret and clientCertificate: not set",
        "Azure DevOps service connection: azureSubscription not set",
        "GitHub OIDC: ACTIONS_ID_TOKEN_REQUEST_URL not set",
        "AZURE_CLIENT_SECRET and AZURE_CLIENT_CERTIFICATE_PATH: not set",
    )


def test_explicit_method_skips_nothing() -> None:
    plan = plan_sign_in({"authType": "azure-cli"}, {})
    assert plan.method == "azure-cli"
    assert plan.reason == "authType is azure-cli"
    assert plan.skipped == ()
