"""The emulator's authority with client assertions: certificates and federated ID tokens.

The emulator runs with a generated client certificate and its OIDC issuer. azure-identity's
real credentials send the assertions, and the authority responds as Microsoft Entra ID does.
"""

from __future__ import annotations

import datetime
import json
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from azure.core.exceptions import ClientAuthenticationError
from azure.identity import CertificateCredential, ClientAssertionCredential
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from flink_task.emulator import Emulator
from flink_task.emulator.assertions import TOKEN_EXCHANGE_AUDIENCE
from flink_task.emulator.oidc_issuer import OidcIssuer
from tests.emulator.conftest import EmulatorProcess, offline_cluster, unused_loopback_port


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    running = Emulator(
        tmp_path_factory.mktemp("assertion-emulator"),
        clusters=[offline_cluster()],
        client_certificate=True,
        start_oidc_issuer=True,
    )
    running.start()
    try:
        yield running
    finally:
        running.stop()


def scope_of(emulator: Emulator) -> str:
    return f"{emulator.base_url}/.default"


def assertion_credential(emulator: Emulator, token: str) -> ClientAssertionCredential:
    return ClientAssertionCredential(
        emulator.tenant_id,
        emulator.client_id,
        lambda: token,
        authority=emulator.base_url,
        connection_verify=str(emulator.ca_file),
    )


def rejection_of(emulator: Emulator, token: str) -> str:
    """Return the error message of a token request with ``token`` as the assertion."""
    credential = assertion_credential(emulator, token)
    with pytest.raises(ClientAuthenticationError) as caught:
        credential.get_token(scope_of(emulator))
    credential.close()
    return str(caught.value)


def foreign_certificate_pem(tmp_path: Path) -> Path:
    """Write a valid certificate and key that the emulator's application does not know."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "unregistered client")])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    path = tmp_path / "foreign.pem"
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    path.write_bytes(key_pem + certificate.public_bytes(serialization.Encoding.PEM))
    return path


def test_registered_certificate_accepted(emulator: Emulator) -> None:
    assert emulator.client_certificate_file is not None
    credential = CertificateCredential(
        emulator.tenant_id,
        emulator.client_id,
        certificate_path=str(emulator.client_certificate_file),
        authority=emulator.base_url,
        disable_instance_discovery=True,
        connection_verify=str(emulator.ca_file),
    )

    token = credential.get_token(scope_of(emulator))

    assert token.token
    assert emulator.authority is not None
    assert emulator.authority.grants[-1].method == "certificate"


def test_unregistered_certificate_rejected(emulator: Emulator, tmp_path: Path) -> None:
    credential = CertificateCredential(
        emulator.tenant_id,
        emulator.client_id,
        certificate_path=str(foreign_certificate_pem(tmp_path)),
        authority=emulator.base_url,
        disable_instance_discovery=True,
        connection_verify=str(emulator.ca_file),
    )

    with pytest.raises(ClientAuthenticationError) as caught:
        credential.get_token(scope_of(emulator))

    assert "AADSTS700027" in str(caught.value)
    assert "is not registered" in str(caught.value)


def test_certificate_file_private_and_reused(emulator: Emulator, tmp_path: Path) -> None:
    path = emulator.client_certificate_file
    assert path is not None
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    text = path.read_text(encoding="ascii")
    assert "-----BEGIN PRIVATE KEY-----" in text
    assert "-----BEGIN CERTIFICATE-----" in text

    state = tmp_path / "state"
    with Emulator(state, clusters=[offline_cluster()], client_certificate=True) as first:
        assert first.client_certificate_file is not None
        first_pem = first.client_certificate_file.read_bytes()
    with Emulator(state, clusters=[offline_cluster()], client_certificate=True) as second:
        assert second.client_certificate_file is not None
        second_pem = second.client_certificate_file.read_bytes()
    assert first_pem == second_pem


def test_federated_token_of_issuer_accepted(emulator: Emulator) -> None:
    issuer = emulator.oidc_issuer
    assert issuer is not None
    token = issuer.issue(TOKEN_EXCHANGE_AUDIENCE, subject=issuer.github_subject)
    credential = assertion_credential(emulator, token)

    access = credential.get_token(scope_of(emulator))
    credential.close()

    assert access.token
    assert emulator.authority is not None
    grant = emulator.authority.grants[-1]
    assert grant.method == "federated"
    assert grant.subject == issuer.github_subject


def test_federated_subject_mismatch_rejected(emulator: Emulator) -> None:
    issuer = emulator.oidc_issuer
    assert issuer is not None
    token = issuer.issue(TOKEN_EXCHANGE_AUDIENCE, subject="repo:contoso/other:ref:refs/heads/x")

    message = rejection_of(emulator, token)

    assert "AADSTS700213" in message
    assert "repo:contoso/other:ref:refs/heads/x" in message


def test_federated_audience_mismatch_rejected(emulator: Emulator) -> None:
    issuer = emulator.oidc_issuer
    assert issuer is not None
    token = issuer.issue("api://SomethingElse", subject=issuer.github_subject)

    message = rejection_of(emulator, token)

    assert "AADSTS700212" in message


def test_expired_federated_token_rejected(emulator: Emulator) -> None:
    issuer = emulator.oidc_issuer
    assert issuer is not None
    connection = emulator.azure_devops_service_connection
    token = issuer.issue(
        TOKEN_EXCHANGE_AUDIENCE,
        subject=issuer.azure_devops_subject(connection),
        lifetime_seconds=1,
    )
    expires_at = issuer.issued[-1].expires_at
    while time.time() < expires_at:
        time.sleep(0.1)

    message = rejection_of(emulator, token)

    assert "AADSTS700024" in message


def test_token_of_other_key_rejected(emulator: Emulator) -> None:
    issuer = emulator.oidc_issuer
    assert issuer is not None
    impostor = OidcIssuer(issuer=issuer.issuer, github_subject=issuer.github_subject)
    token = impostor.issue(TOKEN_EXCHANGE_AUDIENCE)

    message = rejection_of(emulator, token)

    assert "AADSTS700027" in message


def test_cli_prints_issuer_and_files(tmp_path: Path) -> None:
    flink_url = f"http://127.0.0.1:{unused_loopback_port()}"
    process = EmulatorProcess(
        tmp_path / "state",
        "--flink-url",
        flink_url,
        "--client-certificate",
        "--oidc-issuer",
        "--id-token-lifetime",
        "5",
        "--github-subject",
        "repo:contoso/cli:ref:refs/heads/main",
    )
    try:
        info = process.start()
        oidc = info["oidcIssuer"]
        request_token = Path(oidc["githubRequestTokenFile"]).read_text().strip()
        response = requests.get(
            f"{oidc['githubRequestUrl']}&audience={TOKEN_EXCHANGE_AUDIENCE}",
            headers={"Authorization": f"Bearer {request_token}"},
            verify=info["caFile"],
            timeout=30,
        )
    finally:
        exit_code = process.stop()

    assert exit_code == 0
    assert response.status_code == 200, response.text
    assert oidc["idTokenLifetime"] == 5
    assert oidc["githubSubject"] == "repo:contoso/cli:ref:refs/heads/main"
    assert oidc["azureDevOpsSubject"].endswith(oidc["azureDevOpsServiceConnectionId"])
    secret_files = [
        Path(info["clientCertificateFile"]),
        Path(oidc["githubRequestTokenFile"]),
        Path(oidc["azureDevOpsAccessTokenFile"]),
    ]
    for path in secret_files:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    line = json.dumps(info)
    id_token = response.json()["value"]
    for secret in (request_token, Path(oidc["azureDevOpsAccessTokenFile"]).read_text().strip()):
        assert secret not in line
        assert secret not in process.log()
    assert id_token not in process.log()
    assert "PRIVATE KEY" not in line


def test_cli_rejects_zero_id_token_lifetime(tmp_path: Path) -> None:
    flink_url = f"http://127.0.0.1:{unused_loopback_port()}"
    arguments = ["--flink-url", flink_url, "--oidc-issuer", "--id-token-lifetime", "0"]
    process = EmulatorProcess(tmp_path / "state", *arguments)

    completed = subprocess.run(process.args, capture_output=True, text=True, timeout=60)

    assert completed.returncode == 2
    assert "ID token lifetime must be at least 1 s, got 0" in completed.stderr
