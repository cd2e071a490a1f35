"""Every sign-in method of the task, end to end against the emulator over HTTPS.

Each test runs ``flink_task.cli.main`` as a pipeline step would (``INPUT_*``, GitHub or
Azure DevOps variables, the emulator's CA in ``REQUESTS_CA_BUNDLE``) and checks from the
emulator's side how the task authenticated. In the OIDC tests the action outlasts both
the ID token and the access token. Such a run succeeds only when the task requests a fresh
ID token and a fresh access token in the middle of its wait.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from flink_task.emulator.authority import Grant
from flink_task.emulator.oidc_issuer import IssuedToken
from tests.e2e.conftest import (
    ACCESS_TOKEN_LIFETIME,
    CLIENT_SECRET,
    ID_TOKEN_LIFETIME,
    SignInEmulator,
    TaskRun,
    azure_devops_environment,
    cluster_inputs,
    endpoint_inputs,
    github_environment,
    run_task,
    service_connection,
)

GITHUB_MASK = "::add-mask::"
AZURE_DEVOPS_MASK = "##vso[task.setsecret]"
# Longer than both token lifetimes together, so at least one of each expires mid-wait.
SLOW_ACTION_SECONDS = ID_TOKEN_LIFETIME + ACCESS_TOKEN_LIFETIME + 2
SERVICE_PRINCIPAL_CONNECTION = "5e7d8c9b-2a3f-4b1c-9d0e-8f7a6b5c4d3e"


class Observed:
    """The grants and ID tokens that the emulator recorded during one run."""

    def __init__(self, running: SignInEmulator) -> None:
        self._running = running
        authority = running.emulator.authority
        issuer = running.emulator.oidc_issuer
        assert authority is not None
        assert issuer is not None
        self._grants_before = len(authority.grants)
        self._issued_before = len(issuer.issued)
        self._tokens_before = len(running.id_tokens)

    @property
    def grants(self) -> list[Grant]:
        authority = self._running.emulator.authority
        assert authority is not None
        return authority.grants[self._grants_before :]

    @property
    def issued(self) -> list[IssuedToken]:
        issuer = self._running.emulator.oidc_issuer
        assert issuer is not None
        return issuer.issued[self._issued_before :]

    @property
    def id_tokens(self) -> list[str]:
        return self._running.id_tokens[self._tokens_before :]


def list_savepoints(
    running: SignInEmulator,
    monkeypatch: pytest.MonkeyPatch,
    job_name: str,
    environment: dict[str, str],
) -> TaskRun:
    running.seed(job_name)
    inputs = cluster_inputs(running.emulator, job_name, "LIST_SAVEPOINT")
    return run_task(monkeypatch, {**inputs, **environment})


def assert_listed_savepoint(run: TaskRun, job_name: str) -> None:
    assert run.exit_code == 0, run.output
    record = run.record()
    assert record["jobName"] == job_name
    assert record["actionResult"] == "SUCCESS"
    assert record["jobOutput"] == f"file:/savepoints/{job_name}/savepoint-1"


def assert_masked_before_use(run: TaskRun, tokens: list[str], mask_prefix: str) -> None:
    """Check that each token's first appearance is its mask command, and its only one."""
    lines = run.output.splitlines()
    for number, token in enumerate(tokens, start=1):
        appearances = [line for line in lines if token in line]
        assert appearances, f"ID token {number} was never masked"
        assert appearances[0] == f"{mask_prefix}{token}", f"ID token {number} leaked first"
        assert set(appearances) == {f"{mask_prefix}{token}"}, f"ID token {number} leaked"
        for path, text in run.files.items():
            assert token not in text, f"ID token {number} is in {path}"


def assert_each_grant_follows_a_mask(run: TaskRun, mask_prefix: str) -> None:
    """Check that every federated token grant in the log comes after one more mask command.

    The task masks each ID token before it sends it, and the authority logs the grant after
    checking it, so masks must stay ahead of grants throughout the output.
    """
    masks = grants = 0
    for line in run.output.splitlines():
        if line.startswith(mask_prefix + "eyJ"):
            masks += 1
        elif "issued a token to client" in line and "(federated," in line:
            grants += 1
            assert masks >= grants, f"grant {grants} logged before its ID token was masked"
    assert grants >= 2


def assert_refreshed_mid_wait(run: TaskRun, observed: Observed, subject: str) -> None:
    """Check that the run outlived its first tokens and fetched new ones after they expired."""
    issued = observed.issued
    grants = observed.grants
    assert len(issued) >= 2, "the issuer signed only one ID token during the run"
    assert all(token.subject == subject for token in issued)
    first_id_token = issued[0]
    assert run.ended_at > first_id_token.expires_at
    assert any(token.issued_at >= first_id_token.expires_at for token in issued[1:])

    assert len(grants) >= 2
    assert {grant.method for grant in grants} == {"federated"}
    assert {grant.subject for grant in grants} == {subject}
    first_grant = grants[0]
    assert run.ended_at > first_grant.expires_at
    assert any(grant.issued_at >= first_grant.expires_at for grant in grants[1:])
    assert len(observed.id_tokens) == len(issued)


@pytest.fixture
def slow_actions(sign_in_emulator: SignInEmulator) -> Iterator[SignInEmulator]:
    sign_in_emulator.set_action_delay(SLOW_ACTION_SECONDS)
    try:
        yield sign_in_emulator
    finally:
        sign_in_emulator.set_action_delay(0)


def test_secret_signs_in(
    sign_in_emulator: SignInEmulator, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    emulator = sign_in_emulator.emulator
    observed = Observed(sign_in_emulator)
    environment = {
        **github_environment(tmp_path),
        **endpoint_inputs(emulator),
        "INPUT_AUTHTYPE": "secret",
        "INPUT_TENANTID": emulator.tenant_id,
        "INPUT_CLIENTID": emulator.client_id,
        "INPUT_CLIENTSECRET": CLIENT_SECRET,
    }

    run = list_savepoints(sign_in_emulator, monkeypatch, "signin-secret", environment)

    assert_listed_savepoint(run, "signin-secret")
    assert {grant.method for grant in observed.grants} == {"secret"}
    assert f"{GITHUB_MASK}{CLIENT_SECRET}" in run.output.splitlines()


@pytest.mark.parametrize("form", ["path", "pem-text"])
def test_certificate_signs_in(
    sign_in_emulator: SignInEmulator,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    form: str,
) -> None:
    emulator = sign_in_emulator.emulator
    assert emulator.client_certificate_file is not None
    certificate = str(emulator.client_certificate_file)
    if form == "pem-text":
        certificate = emulator.client_certificate_file.read_text(encoding="ascii")
    observed = Observed(sign_in_emulator)
    environment = {
        **github_environment(tmp_path),
        **endpoint_inputs(emulator),
        "INPUT_AUTHTYPE": "certificate",
        "INPUT_TENANTID": emulator.tenant_id,
        "INPUT_CLIENTID": emulator.client_id,
        "INPUT_CLIENTCERTIFICATE": certificate,
    }

    run = list_savepoints(sign_in_emulator, monkeypatch, f"signin-cert-{form}", environment)

    assert_listed_savepoint(run, f"signin-cert-{form}")
    assert {grant.method for grant in observed.grants} == {"certificate"}
    assert {grant.subject for grant in observed.grants} == {emulator.client_id}


@pytest.mark.parametrize("authentication_type", ["spnKey", "spnCertificate"])
def test_service_principal_connection_signs_in(
    sign_in_emulator: SignInEmulator,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    authentication_type: str,
) -> None:
    emulator = sign_in_emulator.emulator
    assert emulator.client_certificate_file is not None
    if authentication_type == "spnKey":
        credential = {"servicePrincipalKey": CLIENT_SECRET}
        expected_method = "secret"
    else:
        pem = emulator.client_certificate_file.read_text(encoding="ascii")
        credential = {"servicePrincipalCertificate": pem}
        expected_method = "certificate"
    connection = service_connection(
        emulator,
        SERVICE_PRINCIPAL_CONNECTION,
        "ServicePrincipal",
        authenticationType=authentication_type,
        **credential,
    )
    observed = Observed(sign_in_emulator)
    environment = {**azure_devops_environment(tmp_path), **connection}
    job_name = f"signin-connection-{authentication_type.lower()}"

    run = list_savepoints(sign_in_emulator, monkeypatch, job_name, environment)

    assert_listed_savepoint(run, job_name)
    assert {grant.method for grant in observed.grants} == {expected_method}
    assert f"Azure sign-in: {expected_method} (auto: service connection" in run.output


def test_github_oidc_outlives_tokens(
    slow_actions: SignInEmulator, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    emulator = slow_actions.emulator
    issuer = emulator.oidc_issuer
    assert issuer is not None
    observed = Observed(slow_actions)
    environment = {
        **github_environment(tmp_path),
        **endpoint_inputs(emulator),
        **issuer.github_environment(),
        "INPUT_AUTHTYPE": "github-oidc",
        "INPUT_TENANTID": emulator.tenant_id,
        "INPUT_CLIENTID": emulator.client_id,
    }

    run = list_savepoints(slow_actions, monkeypatch, "signin-github-oidc", environment)

    assert_listed_savepoint(run, "signin-github-oidc")
    assert run.seconds >= SLOW_ACTION_SECONDS
    assert_refreshed_mid_wait(run, observed, issuer.github_subject)
    assert_masked_before_use(run, observed.id_tokens, GITHUB_MASK)
    assert_each_grant_follows_a_mask(run, GITHUB_MASK)
    assert f"{GITHUB_MASK}{issuer.github_request_token}" in run.output.splitlines()


def test_azure_devops_oidc_outlives_tokens(
    slow_actions: SignInEmulator, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    emulator = slow_actions.emulator
    issuer = emulator.oidc_issuer
    assert issuer is not None
    connection_id = emulator.azure_devops_service_connection
    observed = Observed(slow_actions)
    environment = {
        **azure_devops_environment(tmp_path),
        **issuer.azure_devops_environment(),
        **service_connection(emulator, connection_id, "WorkloadIdentityFederation"),
    }

    run = list_savepoints(slow_actions, monkeypatch, "signin-ado-oidc", environment)

    assert_listed_savepoint(run, "signin-ado-oidc")
    assert "Azure sign-in: azure-devops-oidc (auto: service connection" in run.output
    assert run.seconds >= SLOW_ACTION_SECONDS
    assert_refreshed_mid_wait(run, observed, issuer.azure_devops_subject(connection_id))
    assert_masked_before_use(run, observed.id_tokens, AZURE_DEVOPS_MASK)
    assert_each_grant_follows_a_mask(run, AZURE_DEVOPS_MASK)
    access_token = issuer.azure_devops_access_token
    assert f"{AZURE_DEVOPS_MASK}{access_token}" in run.output.splitlines()
