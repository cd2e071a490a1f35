"""Every misconfiguration found before any request: input name, fix, and no secret shown."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from flink_task.auth import plan_sign_in
from flink_task.errors import EXIT_INVALID_INPUT, InputError
from tests.auth.conftest import CLIENT_ID, TENANT_ID, CertificateFiles

SECRET = "client-secret-value-7f3a"
GITHUB_REQUEST_TOKEN = "github-request-token-91c2"
JOB_TOKEN = "ado-job-access-token-44d0"
CONNECTION = "3b0c5d2e-7a41-4f6e-9c8d-1e2f3a4b5c6d"
SECRETS = (SECRET, GITHUB_REQUEST_TOKEN, JOB_TOKEN)


def principal(**extra: str) -> dict[str, str]:
    return {"tenantId": TENANT_ID, "clientId": CLIENT_ID, **extra}


def wif_connection(**extra: str) -> dict[str, str]:
    return {
        f"ENDPOINT_AUTH_SCHEME_{CONNECTION.upper()}": "WorkloadIdentityFederation",
        f"ENDPOINT_AUTH_PARAMETER_{CONNECTION.upper()}_SERVICEPRINCIPALID": CLIENT_ID,
        f"ENDPOINT_AUTH_PARAMETER_{CONNECTION.upper()}_TENANTID": TENANT_ID,
        **extra,
    }


CASES = [
    pytest.param(
        {"authType": "password"}, {}, "authType", "Use auto, secret", id="unknown-auth-type"
    ),
    pytest.param(
        {"authType": "secret", "clientId": CLIENT_ID, "clientSecret": SECRET},
        {},
        "tenantId",
        "AZURE_TENANT_ID",
        id="secret-without-tenant",
    ),
    pytest.param(
        {"authType": "secret", "tenantId": TENANT_ID, "clientSecret": SECRET},
        {},
        "clientId",
        "AZURE_CLIENT_ID",
        id="secret-without-client",
    ),
    pytest.param(
        principal(authType="secret"), {}, "clientSecret", "AZURE_CLIENT_SECRET", id="no-secret"
    ),
    pytest.param(
        {
            "authType": "secret",
            "tenantId": "contoso/evil",
            "clientId": CLIENT_ID,
            "clientSecret": SECRET,
        },
        {},
        "tenantId",
        "directory (tenant) id",
        id="invalid-tenant",
    ),
    pytest.param(
        principal(authType="certificate"),
        {},
        "clientCertificate",
        "PEM or PKCS12",
        id="no-certificate",
    ),
    pytest.param(
        principal(authType="github-oidc"),
        {"ACTIONS_ID_TOKEN_REQUEST_TOKEN": GITHUB_REQUEST_TOKEN},
        "authType",
        "permissions: id-token: write",
        id="github-without-request-url",
    ),
    pytest.param(
        principal(authType="github-oidc"),
        {"ACTIONS_ID_TOKEN_REQUEST_URL": "https://token.actions.example/x?api-version=2.0"},
        "authType",
        "permissions: id-token: write",
        id="github-without-request-token",
    ),
    pytest.param(
        {"authType": "github-oidc", "clientId": CLIENT_ID},
        {
            "ACTIONS_ID_TOKEN_REQUEST_URL": "https://token.actions.example/x?api-version=2.0",
            "ACTIONS_ID_TOKEN_REQUEST_TOKEN": GITHUB_REQUEST_TOKEN,
        },
        "tenantId",
        "tenant",
        id="github-without-tenant",
    ),
    pytest.param(
        principal(authType="azure-devops-oidc"),
        {
            "SYSTEM_OIDCREQUESTURI": "https://dev.azure.example/oidctoken",
            "SYSTEM_ACCESSTOKEN": JOB_TOKEN,
        },
        "azureSubscription",
        "workload identity federation service connection",
        id="ado-without-connection",
    ),
    pytest.param(
        {"authType": "azure-devops-oidc", "azureSubscription": CONNECTION},
        {
            "SYSTEM_OIDCREQUESTURI": "https://dev.azure.example/oidctoken",
            "SYSTEM_ACCESSTOKEN": JOB_TOKEN,
        },
        "azureSubscription",
        "passes the ENDPOINT_* variables",
        id="ado-connection-not-found",
    ),
    pytest.param(
        {"authType": "azure-devops-oidc", "azureSubscription": CONNECTION},
        wif_connection(SYSTEM_ACCESSTOKEN=JOB_TOKEN),
        "azureSubscription",
        "SYSTEM_OIDCREQUESTURI: $(System.OidcRequestUri)",
        id="ado-without-oidc-uri",
    ),
    pytest.param(
        {"azureSubscription": CONNECTION},
        wif_connection(SYSTEM_OIDCREQUESTURI="https://dev.azure.example/oidctoken"),
        "azureSubscription",
        "SYSTEM_ACCESSTOKEN: $(System.AccessToken)",
        id="ado-without-job-token",
    ),
    pytest.param(
        {"azureSubscription": CONNECTION},
        {
            f"ENDPOINT_AUTH_SCHEME_{CONNECTION.upper()}": "ServicePrincipal",
            f"ENDPOINT_AUTH_PARAMETER_{CONNECTION.upper()}_SERVICEPRINCIPALID": CLIENT_ID,
            f"ENDPOINT_AUTH_PARAMETER_{CONNECTION.upper()}_TENANTID": TENANT_ID,
        },
        "azureSubscription",
        f"ENDPOINT_AUTH_PARAMETER_{CONNECTION.upper()}_SERVICEPRINCIPALKEY",
        id="spn-connection-without-key",
    ),
    pytest.param(
        {"azureSubscription": CONNECTION},
        {
            f"ENDPOINT_AUTH_SCHEME_{CONNECTION.upper()}": "ServicePrincipal",
            f"ENDPOINT_AUTH_PARAMETER_{CONNECTION.upper()}_AUTHENTICATIONTYPE": "spnCertificate",
            f"ENDPOINT_AUTH_PARAMETER_{CONNECTION.upper()}_SERVICEPRINCIPALID": CLIENT_ID,
            f"ENDPOINT_AUTH_PARAMETER_{CONNECTION.upper()}_TENANTID": TENANT_ID,
        },
        "azureSubscription",
        f"ENDPOINT_AUTH_PARAMETER_{CONNECTION.upper()}_SERVICEPRINCIPALCERTIFICATE",
        id="spn-connection-without-certificate",
    ),
    pytest.param(
        {"azureSubscription": CONNECTION},
        {f"ENDPOINT_AUTH_SCHEME_{CONNECTION.upper()}": "PublishProfile"},
        "azureSubscription",
        "Azure Resource Manager service connection",
        id="publish-profile-connection",
    ),
    pytest.param(
        principal(clientSecret=SECRET, cloud="AzureStack"),
        {},
        "cloud",
        "AzureChinaCloud or custom",
        id="unknown-cloud",
    ),
    pytest.param(
        principal(clientSecret=SECRET, cloud="custom", authorityHost="https://127.0.0.1:9443"),
        {},
        "managementEndpoint",
        "Set managementEndpoint and authorityHost",
        id="custom-cloud-without-endpoint",
    ),
    pytest.param(
        principal(clientSecret=SECRET, authorityHost="https://login.microsoftonline.com/common"),
        {},
        "authorityHost",
        "host only",
        id="authority-with-path",
    ),
]


@pytest.mark.parametrize(("inputs", "environ", "input_name", "fix"), CASES)
def test_misconfiguration_names_input_and_fix(
    inputs: dict[str, str], environ: dict[str, str], input_name: str, fix: str
) -> None:
    with pytest.raises(InputError) as caught:
        plan_sign_in(inputs, environ)
    message = str(caught.value)
    assert caught.value.input_name == input_name
    assert message.startswith(f"input {input_name}:")
    assert fix in message
    assert caught.value.exit_code == EXIT_INVALID_INPUT
    for secret in SECRETS:
        assert secret not in message


def test_unreadable_certificate_file(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-client.pem"
    with pytest.raises(InputError) as caught:
        plan_sign_in(principal(authType="certificate", clientCertificate=str(missing)), {})
    assert caught.value.input_name == "clientCertificate"
    assert "cannot read the certificate file" in str(caught.value)
    assert "No such file" in str(caught.value)
    # The input is a secret, so the message never repeats its value.
    assert str(missing) not in str(caught.value)


def test_certificate_without_private_key(certificate_files: CertificateFiles) -> None:
    public_only = certificate_files.certificate.public_bytes(serialization.Encoding.PEM).decode()
    with pytest.raises(InputError) as caught:
        plan_sign_in(principal(clientCertificate=public_only), {})
    assert caught.value.input_name == "clientCertificate"
    assert "no private key" in str(caught.value)
    assert public_only.splitlines()[1] not in str(caught.value)


def test_certificate_key_without_certificate(certificate_files: CertificateFiles) -> None:
    key_only = certificate_files.pem_text.split("-----BEGIN CERTIFICATE-----")[0]
    with pytest.raises(InputError) as caught:
        plan_sign_in(principal(clientCertificate=key_only), {})
    assert caught.value.input_name == "clientCertificate"
    assert "no certificate" in str(caught.value)


def test_encrypted_key_without_password(certificate_files: CertificateFiles) -> None:
    with pytest.raises(InputError) as caught:
        plan_sign_in(principal(clientCertificate=str(certificate_files.encrypted_pem_path)), {})
    assert caught.value.input_name == "clientCertificatePassword"
    assert "AZURE_CLIENT_CERTIFICATE_PASSWORD" in str(caught.value)


def test_wrong_certificate_password(certificate_files: CertificateFiles) -> None:
    wrong = "wrong-password-b8e1"
    for path in (certificate_files.encrypted_pem_path, certificate_files.pkcs12_path):
        with pytest.raises(InputError) as caught:
            plan_sign_in(
                principal(clientCertificate=str(path), clientCertificatePassword=wrong), {}
            )
        assert caught.value.input_name in ("clientCertificatePassword", "clientCertificate")
        assert "password" in str(caught.value)
        assert wrong not in str(caught.value)


def test_password_for_unencrypted_key(certificate_files: CertificateFiles) -> None:
    with pytest.raises(InputError) as caught:
        plan_sign_in(
            principal(
                clientCertificate=str(certificate_files.pem_path),
                clientCertificatePassword="unneeded-7d1",
            ),
            {},
        )
    assert caught.value.input_name == "clientCertificatePassword"
    assert "Remove clientCertificatePassword" in str(caught.value)


def test_certificate_with_ec_key(tmp_path: Path, certificate_files: CertificateFiles) -> None:
    ec_key = ec.generate_private_key(ec.SECP256R1())
    key_pem = ec_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    certificate_pem = certificate_files.certificate.public_bytes(serialization.Encoding.PEM)
    path = tmp_path / "ec.pem"
    path.write_bytes(key_pem + certificate_pem)
    with pytest.raises(InputError) as caught:
        plan_sign_in(principal(clientCertificate=str(path)), {})
    assert caught.value.input_name == "clientCertificate"
    assert "RSA" in str(caught.value)


def test_connection_with_invalid_url() -> None:
    environ = wif_connection(
        **{f"ENDPOINT_URL_{CONNECTION.upper()}": "http://management.example.com/"},
        SYSTEM_OIDCREQUESTURI="https://dev.azure.example/oidctoken",
        SYSTEM_ACCESSTOKEN=JOB_TOKEN,
    )
    with pytest.raises(InputError) as caught:
        plan_sign_in({"azureSubscription": CONNECTION}, environ)
    assert caught.value.input_name == "azureSubscription"
    assert "Set managementEndpoint to override it" in str(caught.value)
    assert JOB_TOKEN not in str(caught.value)
