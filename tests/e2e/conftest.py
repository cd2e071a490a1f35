"""Run the task as a pipeline step against an emulator that accepts every sign-in method.

The emulator serves the job API and its authority on loopback HTTPS, accepts the client
secret, a generated client certificate and federated ID tokens of its own OIDC issuer, and
issues access tokens that live ACCESS_TOKEN_LIFETIME seconds. Its cluster's Flink URL is
closed, so only actions that need no Flink job run on it: LIST, LIST_SAVEPOINT and DELETE
of seeded STOPPED records, and actions that fail before reaching Flink.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import flink_task.emulator.emulator as emulator_module
from flink_task.cli import main
from flink_task.emulator import Emulator
from flink_task.emulator.jobapi import JobEngine
from flink_task.engine import JobStore
from tests.emulator.conftest import offline_cluster, stopped_record

# Short enough that a wait of a few seconds outlives both tokens.
ACCESS_TOKEN_LIFETIME = 2
ID_TOKEN_LIFETIME = 3
# The emulator's client secret, chosen here so the tests know it.
CLIENT_SECRET = "e2e-client-secret-4f9a1c7d2b"
# Environment variables that a pipeline sets; none of the host's may reach a run.
PIPELINE_VARIABLE_PREFIXES = (
    "INPUT_",
    "GITHUB_",
    "ACTIONS_",
    "RUNNER_",
    "SYSTEM_",
    "ENDPOINT_",
    "AGENT_",
    "AZURE_",
    "AZURESUBSCRIPTION_",
    "BUILD_",
    "TF_BUILD",
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
)


class DelayedEngine:
    """A real job engine whose actions start ``delay`` seconds after they are accepted.

    Real operations of HDInsight on AKS take tens of seconds, and the task must keep
    signing in while it waits. The delay gives the emulator that pace without Flink.
    """

    def __init__(self, engine: JobEngine) -> None:
        self._engine = engine
        self.delay = 0.0

    def begin(self, properties: Mapping[str, Any]) -> dict[str, Any]:
        return self._engine.begin(properties)

    def execute(self, job_name: str) -> dict[str, Any]:
        time.sleep(self.delay)
        return self._engine.execute(job_name)

    def list_jobs(self) -> list[dict[str, Any]]:
        return self._engine.list_jobs()

    def get_job(self, job_name: str) -> dict[str, Any] | None:
        return self._engine.get_job(job_name)

    def recover(self) -> list[str]:
        return self._engine.recover()


@dataclass
class SignInEmulator:
    """The running emulator, its delayed engines and the ID tokens its issuer signed."""

    emulator: Emulator
    engines: list[DelayedEngine]
    id_tokens: list[str] = field(default_factory=list, repr=False)

    def set_action_delay(self, seconds: float) -> None:
        for engine in self.engines:
            engine.delay = seconds

    def seed(self, job_name: str) -> None:
        """Write a STOPPED record with one savepoint, ready for LIST_SAVEPOINT or DELETE."""
        record = {"jobType": "FlinkJob", "actionResult": "SUCCESS", **stopped_record(job_name)}
        JobStore(self.emulator.jobs_directory()).save(record)


@pytest.fixture(scope="session")
def sign_in_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SignInEmulator]:
    engines: list[DelayedEngine] = []
    build_engine = emulator_module.build_engine

    def build_delayed_engine(*args: Any, **kwargs: Any) -> DelayedEngine:
        engine = DelayedEngine(build_engine(*args, **kwargs))
        engines.append(engine)
        return engine

    emulator = Emulator(
        tmp_path_factory.mktemp("sign-in-emulator"),
        clusters=[offline_cluster("pool-sign-in", "cluster-sign-in")],
        client_secret=CLIENT_SECRET,
        token_lifetime=ACCESS_TOKEN_LIFETIME,
        client_certificate=True,
        start_oidc_issuer=True,
        id_token_lifetime=ID_TOKEN_LIFETIME,
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(emulator_module, "build_engine", build_delayed_engine)
        emulator.start()
    try:
        running = SignInEmulator(emulator, engines)
        _record_id_tokens(running)
        yield running
    finally:
        emulator.stop()


def _record_id_tokens(running: SignInEmulator) -> None:
    issuer = running.emulator.oidc_issuer
    assert issuer is not None
    sign = issuer.issue

    def issue_and_record(*args: Any, **kwargs: Any) -> str:
        token = sign(*args, **kwargs)
        running.id_tokens.append(token)
        return token

    # The token services call self.issue, so the instance attribute catches every token.
    issuer.issue = issue_and_record  # type: ignore[method-assign]


@dataclass
class TaskRun:
    """What one run of the task produced, with the times it started and ended."""

    exit_code: int
    output: str  # stdout and stderr, in the order they were written
    started_at: float
    ended_at: float
    files: dict[str, str]  # GITHUB_OUTPUT, GITHUB_STEP_SUMMARY and ADO summaries, by path

    @property
    def seconds(self) -> float:
        return self.ended_at - self.started_at

    def record(self) -> dict[str, Any]:
        """Return the last JSON object printed on its own lines (the job record)."""
        lines = self.output.splitlines()
        for end in range(len(lines) - 1, -1, -1):
            if lines[end].strip() != "}":
                continue
            for start in range(end, -1, -1):
                if lines[start].strip() == "{":
                    return dict(json.loads("\n".join(lines[start : end + 1])))
        raise AssertionError(f"no JSON record in the output:\n{self.output}")


def github_environment(tmp_path: Path) -> dict[str, str]:
    """Return the variables of a GitHub Actions step, with its output and summary files."""
    return {
        "GITHUB_ACTIONS": "true",
        "GITHUB_OUTPUT": str(tmp_path / "github-output"),
        "GITHUB_STEP_SUMMARY": str(tmp_path / "github-step-summary"),
    }


def azure_devops_environment(tmp_path: Path) -> dict[str, str]:
    """Return the variables of an Azure Pipelines task, with its temporary folder."""
    agent_temp = tmp_path / "agent-temp"
    agent_temp.mkdir(exist_ok=True)
    return {"TF_BUILD": "True", "AGENT_TEMPDIRECTORY": str(agent_temp)}


def cluster_inputs(emulator: Emulator, job_name: str, action: str) -> dict[str, str]:
    """Return the INPUT_* variables that name the emulator's cluster and the action."""
    return {
        "INPUT_ACTION": action,
        "INPUT_JOBNAME": job_name,
        "INPUT_SUBSCRIPTIONID": emulator.subscription_id,
        "INPUT_RESOURCEGROUP": emulator.resource_group,
        "INPUT_CLUSTERPOOL": emulator.cluster_pool,
        "INPUT_CLUSTER": emulator.cluster,
        "INPUT_TIMEOUTMINUTES": "2",
        "REQUESTS_CA_BUNDLE": str(emulator.ca_file),
    }


def endpoint_inputs(emulator: Emulator) -> dict[str, str]:
    """Return the inputs that point the task at the emulator instead of Azure."""
    return {
        "INPUT_MANAGEMENTENDPOINT": emulator.base_url,
        "INPUT_AUTHORITYHOST": emulator.base_url,
    }


def service_connection(
    emulator: Emulator, connection_id: str, scheme: str, **auth_parameters: str
) -> dict[str, str]:
    """Return the ENDPOINT_* variables the agent sets for an Azure Resource Manager connection.

    The connection's URL and authority are the emulator's, as for an Azure Stack
    connection, so the task takes the cloud from the connection alone.
    """
    suffix = connection_id.upper()
    variables = {
        "INPUT_AZURESUBSCRIPTION": connection_id,
        f"ENDPOINT_AUTH_SCHEME_{suffix}": scheme,
        f"ENDPOINT_AUTH_PARAMETER_{suffix}_TENANTID": emulator.tenant_id,
        f"ENDPOINT_AUTH_PARAMETER_{suffix}_SERVICEPRINCIPALID": emulator.client_id,
        f"ENDPOINT_URL_{suffix}": emulator.base_url + "/",
        f"ENDPOINT_DATA_{suffix}_ENVIRONMENT": "AzureStack",
        f"ENDPOINT_DATA_{suffix}_ACTIVEDIRECTORYAUTHORITY": emulator.base_url + "/",
        f"ENDPOINT_DATA_{suffix}_SUBSCRIPTIONID": emulator.subscription_id,
    }
    for name, value in auth_parameters.items():
        variables[f"ENDPOINT_AUTH_PARAMETER_{suffix}_{name.upper()}"] = value
    return variables


def run_task(
    monkeypatch: pytest.MonkeyPatch, environment: Mapping[str, str], *args: str
) -> TaskRun:
    """Run ``flink-task`` in this process with only ``environment`` as pipeline variables."""
    combined = io.StringIO()
    with monkeypatch.context() as patch:
        for name in list(os.environ):
            if name.upper().startswith(PIPELINE_VARIABLE_PREFIXES):
                patch.delenv(name)
        for name, value in environment.items():
            patch.setenv(name, value)
        started_at = time.time()
        with contextlib.redirect_stdout(combined), contextlib.redirect_stderr(combined):
            exit_code = main(list(args))
        ended_at = time.time()
    files = _written_files(environment)
    return TaskRun(exit_code, combined.getvalue(), started_at, ended_at, files)


def _written_files(environment: Mapping[str, str]) -> dict[str, str]:
    files: dict[str, str] = {}
    for name in ("GITHUB_OUTPUT", "GITHUB_STEP_SUMMARY"):
        path = Path(environment.get(name, ""))
        if environment.get(name) and path.is_file():
            files[str(path)] = path.read_text(encoding="utf-8")
    agent_temp = environment.get("AGENT_TEMPDIRECTORY")
    if agent_temp:
        for path in sorted(Path(agent_temp).glob("*")):
            files[str(path)] = path.read_text(encoding="utf-8")
    return files


@contextlib.contextmanager
def debug_records() -> Iterator[list[str]]:
    """Collect every log record at DEBUG, of the task and of the libraries, as text.

    The handler goes on the root logger and on the two loggers the task's reporter stops
    from propagating (``flink_task`` and ``azure``).
    """
    texts: list[str] = []
    formatter = logging.Formatter()

    class Collector(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            text = record.getMessage()
            if record.exc_info:
                text += "\n" + formatter.formatException(record.exc_info)
            texts.append(f"{record.name}: {text}")

    collector = Collector(logging.DEBUG)
    loggers = [logging.getLogger(name) for name in (None, "flink_task", "azure")]
    root = logging.getLogger()
    root_level = root.level
    root.setLevel(logging.DEBUG)
    for named in loggers:
        named.addHandler(collector)
    try:
        yield texts
    finally:
        for named in loggers:
            named.removeHandler(collector)
        root.setLevel(root_level)
