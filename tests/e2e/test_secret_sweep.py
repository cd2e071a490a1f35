"""Known secrets never leave a run, except in the platform's mask registration commands.

Each scenario runs the task against the emulator with debug logging on. It collects what a
pipeline would keep or show: stdout and stderr in order, every log record at DEBUG (of the
task, azure-identity, MSAL and urllib3), ``$GITHUB_OUTPUT``, ``$GITHUB_STEP_SUMMARY`` and
the Azure DevOps summary files. The secrets are the client secret, the certificate's private
key, the pipeline's OIDC request credentials, every ID token and access token issued during
the runs, and secret-looking values in ``flinkConfiguration`` and ``args``. Any JWT outside a
mask command fails too, which catches the certificate assertions that MSAL signs.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from flink_task.emulator import Emulator
from flink_task.emulator.authority import TokenStore
from flink_task.report import MIN_SECRET_LENGTH
from tests.e2e.conftest import (
    CLIENT_SECRET,
    SignInEmulator,
    TaskRun,
    azure_devops_environment,
    cluster_inputs,
    debug_records,
    endpoint_inputs,
    github_environment,
    run_task,
    service_connection,
)

MASK_COMMAND = re.compile(r"^(::add-mask::|##vso\[task\.setsecret\])")
JWT = re.compile(r"eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
STORAGE_KEY = "c3dlZXAtc3RvcmFnZS1hY2NvdW50LWtleS0xMjM0NTY="
DATABASE_PASSWORD = "sweep-db-password-91e2c4"
API_TOKEN = "sweep-api-token-55aa0f3e"
WRONG_SECRET = "sweep-wrong-client-secret-3b8e77"
FLINK_CONFIGURATION = json.dumps(
    {
        "fs.azure.account.key.sweep.dfs.core.windows.net": STORAGE_KEY,
        "state.backend.db.password": DATABASE_PASSWORD,
        "taskmanager.numberOfTaskSlots": "1",
    }
)
ARGS = f"--rate 5 --db-password {DATABASE_PASSWORD} --api-token={API_TOKEN}"
SEEDED_JOB = "sweep-stopped"


@dataclass(frozen=True)
class Scenario:
    """One run: its platform, how it signs in, its action and inputs, and its exit code."""

    name: str
    platform: str  # github, azure-devops or console
    sign_in: str
    action: str
    exit_code: int
    inputs: tuple[tuple[str, str], ...] = ()


SCENARIOS = [
    Scenario("secret-list", "github", "secret", "LIST", 0),
    Scenario("secret-list-console", "console", "secret", "LIST", 0),
    Scenario("certificate-path", "github", "certificate-path", "LIST_SAVEPOINT", 0),
    Scenario("certificate-pem", "azure-devops", "certificate-pem", "LIST_SAVEPOINT", 0),
    Scenario("github-oidc", "github", "github-oidc", "LIST_SAVEPOINT", 0),
    Scenario("azure-devops-oidc", "azure-devops", "azure-devops-oidc", "LIST", 0),
    Scenario("connection-key", "azure-devops", "connection-key", "LIST_SAVEPOINT", 0),
    Scenario(
        "connection-certificate", "azure-devops", "connection-certificate", "LIST_SAVEPOINT", 0
    ),
    Scenario(
        "failed-action",
        "github",
        "secret",
        "START",
        1,
        (("flinkConfiguration", FLINK_CONFIGURATION), ("args", ARGS)),
    ),
    Scenario(
        "arm-error",
        "azure-devops",
        "azure-devops-oidc",
        "NEW",
        1,
        (
            ("jobJarDirectory", "abfs://jars@sweep.dfs.core.windows.net/jars"),
            ("jarName", "job.jar"),
            ("entryClass", "org.example.Job"),
            ("flinkConfiguration", FLINK_CONFIGURATION),
            ("args", ARGS),
        ),
    ),
    Scenario(
        "dry-run-github",
        "github",
        "github-oidc",
        "NEW",
        0,
        (
            ("dryRun", "true"),
            ("jobJarDirectory", "abfs://jars@sweep.dfs.core.windows.net/jars"),
            ("jarName", "job.jar"),
            ("entryClass", "org.example.Job"),
            ("flinkConfiguration", FLINK_CONFIGURATION),
            ("args", ARGS),
        ),
    ),
    Scenario(
        "dry-run-azure-devops",
        "azure-devops",
        "connection-key",
        "UPDATE",
        0,
        (("dryRun", "true"), ("flinkConfiguration", FLINK_CONFIGURATION), ("args", ARGS)),
    ),
    Scenario("wrong-secret", "github", "wrong-secret", "LIST", 1),
]


@pytest.fixture(scope="module")
def access_tokens() -> Iterator[list[str]]:
    """Record every access token the emulator issues while this module runs."""
    issued: list[str] = []
    issue = TokenStore.issue

    def issue_and_record(self: TokenStore, lifetime: int) -> str:
        token = issue(self, lifetime)
        issued.append(token)
        return token

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(TokenStore, "issue", issue_and_record)
        yield issued


def sign_in_environment(running: SignInEmulator, sign_in: str) -> dict[str, str]:
    emulator = running.emulator
    issuer = emulator.oidc_issuer
    assert issuer is not None
    assert emulator.client_certificate_file is not None
    pem = emulator.client_certificate_file.read_text(encoding="ascii")
    principal = {"INPUT_TENANTID": emulator.tenant_id, "INPUT_CLIENTID": emulator.client_id}
    builders: dict[str, Callable[[], dict[str, str]]] = {
        "secret": lambda: {**principal, "INPUT_CLIENTSECRET": CLIENT_SECRET},
        "wrong-secret": lambda: {**principal, "INPUT_CLIENTSECRET": WRONG_SECRET},
        "certificate-path": lambda: {
            **principal,
            "INPUT_CLIENTCERTIFICATE": str(emulator.client_certificate_file),
        },
        "certificate-pem": lambda: {**principal, "INPUT_CLIENTCERTIFICATE": pem},
        "github-oidc": lambda: {
            **principal,
            **issuer.github_environment(),
            "INPUT_AUTHTYPE": "github-oidc",
        },
        "azure-devops-oidc": lambda: {
            **issuer.azure_devops_environment(),
            **service_connection(
                emulator, emulator.azure_devops_service_connection, "WorkloadIdentityFederation"
            ),
        },
        "connection-key": lambda: service_connection(
            emulator,
            "7c1e2d3f-4a5b-4c6d-8e9f-0a1b2c3d4e5f",
            "ServicePrincipal",
            authenticationType="spnKey",
            servicePrincipalKey=CLIENT_SECRET,
        ),
        "connection-certificate": lambda: service_connection(
            emulator,
            "8d2f3e4a-5b6c-4d7e-9f0a-1b2c3d4e5f6a",
            "ServicePrincipal",
            authenticationType="spnCertificate",
            servicePrincipalCertificate=pem,
        ),
    }
    environment = builders[sign_in]()
    if "INPUT_AZURESUBSCRIPTION" not in environment:
        environment.update(endpoint_inputs(emulator))
    return environment


def platform_environment(platform: str, tmp_path: Path) -> dict[str, str]:
    if platform == "github":
        return {**github_environment(tmp_path), "RUNNER_DEBUG": "1"}
    if platform == "azure-devops":
        return {**azure_devops_environment(tmp_path), "SYSTEM_DEBUG": "true"}
    return {}


def known_secrets(emulator: Emulator, running: SignInEmulator, tokens: list[str]) -> list[str]:
    issuer = emulator.oidc_issuer
    assert issuer is not None
    assert emulator.client_certificate_file is not None
    pem = emulator.client_certificate_file.read_text(encoding="ascii")
    key_pem = pem.split("-----END PRIVATE KEY-----")[0]
    key_lines = [line for line in key_pem.splitlines() if not line.startswith("-----")]
    secrets = [
        CLIENT_SECRET,
        WRONG_SECRET,
        STORAGE_KEY,
        DATABASE_PASSWORD,
        API_TOKEN,
        issuer.github_request_token,
        issuer.azure_devops_access_token,
        *key_lines,
        *running.id_tokens,
        *tokens,
    ]
    assert all(len(secret) >= MIN_SECRET_LENGTH for secret in secrets)
    return secrets


def unmasked_texts(run: TaskRun, records: list[str]) -> dict[str, str]:
    """Return everything the run left, by source, without the mask commands of stdout."""
    output = "\n".join(line for line in run.output.splitlines() if not MASK_COMMAND.match(line))
    return {"output": output, "log records": "\n".join(records), **run.files}


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[scenario.name for scenario in SCENARIOS])
def test_secrets_stay_masked(
    sign_in_emulator: SignInEmulator,
    access_tokens: list[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    scenario: Scenario,
) -> None:
    emulator = sign_in_emulator.emulator
    sign_in_emulator.seed(SEEDED_JOB)
    environment = {
        **cluster_inputs(emulator, SEEDED_JOB, scenario.action),
        **platform_environment(scenario.platform, tmp_path),
        **sign_in_environment(sign_in_emulator, scenario.sign_in),
        **{f"INPUT_{name.upper()}": value for name, value in scenario.inputs},
    }
    if scenario.action == "LIST":
        environment["INPUT_JOBNAME"] = ""

    id_tokens_before = len(sign_in_emulator.id_tokens)
    access_tokens_before = len(access_tokens)

    with debug_records() as records:
        run = run_task(monkeypatch, environment)

    assert run.exit_code == scenario.exit_code, run.output
    sends_requests = ("dryRun", "true") not in scenario.inputs
    if sends_requests and scenario.sign_in.endswith("oidc"):
        assert len(sign_in_emulator.id_tokens) > id_tokens_before
    if sends_requests and scenario.sign_in != "wrong-secret":
        assert len(access_tokens) > access_tokens_before
    assert records, "no log record was collected"
    texts = unmasked_texts(run, records)
    secrets = known_secrets(emulator, sign_in_emulator, access_tokens)
    for source, text in texts.items():
        for number, secret in enumerate(secrets):
            assert secret not in text, f"secret {number} of the sweep appears in {source}"
        leaked_jwt = JWT.search(text)
        assert leaked_jwt is None, f"a JWT appears in {source}"
