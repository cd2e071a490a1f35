"""Both surfaces, run the way their pipelines run them, against the emulator on real Flink.

The GitHub Action's steps run with bash from a copy of the action folder, and the Azure
DevOps task runs with node from a staged task folder. Each creates its own cached virtual
environment on the first run (a dry run, which needs no server), then drives the emulator
with a service principal and a client secret. A second emulated cluster points at a
loopback server that never responds, so an action stays IN_PROGRESS long enough for a
cancellation test.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests

from flink_task.emulator.clusters import ClusterConfig
from flink_task.emulator.emulator import Emulator
from flink_task.samplejobs import ENTRY_CLASS
from tests.surfaces.conftest import REPO_ROOT
from tests.surfaces.pipelines import (
    CompositeAction,
    Interrupt,
    assert_masked_before_shown,
    parse_vso_variables,
)

pytestmark = pytest.mark.flink

CONNECTION_ID = "3b9c2d4e-5f60-4a7b-8c9d-0e1f2a3b4c5d"
STALLED_POOL = "pool-stalled"
STALLED_CLUSTER = "cluster-stalled"
# The GitHub runner sends SIGTERM 7.5 s after SIGINT; the task must be done by then.
CANCEL_GRACE_SECONDS = 7.5
STEP_TIMEOUT_SECONDS = 600
ACTION_FILES = ("action.yml", "pyproject.toml", "README.md", "LICENSE")
STALL_SECONDS = 120


class _StallingHandler(BaseHTTPRequestHandler):
    """Holds every request until the server is released, then responds with 503."""

    def _stall(self) -> None:
        self.server.release.wait(STALL_SECONDS)  # type: ignore[attr-defined]
        self.send_response(503)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_POST = do_PATCH = do_DELETE = _stall

    def log_message(self, format: str, *args: Any) -> None:
        return


@pytest.fixture(scope="module")
def stalled_flink() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _StallingHandler)
    server.daemon_threads = True
    server.release = threading.Event()  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, name="stalled-flink", daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.release.set()  # type: ignore[attr-defined]
        server.shutdown()
        server.server_close()
        thread.join(10)


@pytest.fixture(scope="module")
def storage(tmp_path_factory: pytest.TempPathFactory, sample_jars: dict[str, Path]) -> Path:
    root = tmp_path_factory.mktemp("surface-storage")
    (root / "jars").mkdir()
    for jar in sample_jars.values():
        shutil.copy2(jar, root / "jars")
    return root


@pytest.fixture(scope="module")
def emulator(
    tmp_path_factory: pytest.TempPathFactory,
    local_flink: Any,
    storage: Path,
    stalled_flink: ThreadingHTTPServer,
) -> Iterator[Emulator]:
    stalled_url = f"http://127.0.0.1:{stalled_flink.server_address[1]}"
    clusters = [
        ClusterConfig("pool-surfaces", "cluster-surfaces", local_flink.rest_url, storage),
        ClusterConfig(STALLED_POOL, STALLED_CLUSTER, stalled_url, storage),
    ]
    server = Emulator(
        tmp_path_factory.mktemp("surface-emulator"), clusters=clusters, shutdown_timeout=30
    )
    with server:
        try:
            yield server
        finally:
            # Let the stalled actions fail now, so the emulator's shutdown does not wait.
            stalled_flink.release.set()  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def client_secret(emulator: Emulator) -> str:
    return Path(emulator.info()["clientSecretFile"]).read_text(encoding="utf-8").strip()


@pytest.fixture(scope="module")
def tool_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("tool-cache")


PIPELINE_PREFIXES = (
    "INPUT_",
    "ENDPOINT_",
    "AZURE_",
    "ACTIONS_",
    "GITHUB_",
    "RUNNER_",
    "AGENT_",
    "SYSTEM_",
    "MSI_",
    "IDENTITY_",
)
PIPELINE_NAMES = {"TF_BUILD", "REQUESTS_CA_BUNDLE", "FLINK_TASK_PYTHON"}


def machine_environment() -> dict[str, str]:
    """The runner or agent machine's environment, without any pipeline's variables.

    Module fixtures call this before the per-test clean-up of the environment runs, so the
    filter is applied here too.
    """
    return {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(PIPELINE_PREFIXES) and name not in PIPELINE_NAMES
    }


# ---------------------------------------------------------------------------- GitHub


@pytest.fixture(scope="module")
def github_action(tmp_path_factory: pytest.TempPathFactory, tool_cache: Path) -> CompositeAction:
    """The action folder as the runner checks it out, with its environment installed."""
    action_dir = tmp_path_factory.mktemp("action")
    for name in ACTION_FILES:
        if (REPO_ROOT / name).is_file():
            shutil.copy2(REPO_ROOT / name, action_dir / name)
    shutil.copytree(
        REPO_ROOT / "flink_task",
        action_dir / "flink_task",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    (action_dir / "scripts").mkdir()
    shutil.copy2(REPO_ROOT / "scripts" / "bootstrap_venv.py", action_dir / "scripts")
    runner_temp = tmp_path_factory.mktemp("runner-temp")
    env = machine_environment()
    env.update({"RUNNER_TOOL_CACHE": str(tool_cache), "RUNNER_TEMP": str(runner_temp)})
    return CompositeAction(
        action_dir, tmp_path_factory.mktemp("workspace"), env, timeout=STEP_TIMEOUT_SECONDS
    )


def github_inputs(emulator: Emulator, secret: str, action: str, job: str) -> dict[str, str]:
    return {
        "action": action,
        "job-name": job,
        "subscription-id": emulator.subscription_id,
        "resource-group": emulator.resource_group,
        "cluster-pool": emulator.cluster_pool,
        "cluster": emulator.cluster,
        "management-endpoint": emulator.base_url,
        "authority-host": emulator.base_url,
        "auth-type": "secret",
        "tenant-id": emulator.tenant_id,
        "client-id": emulator.client_id,
        "client-secret": secret,
        "timeout-minutes": "5",
    }


def test_action_dry_run_installs(
    github_action: CompositeAction, emulator: Emulator, client_secret: str, tool_cache: Path
) -> None:
    inputs = github_inputs(emulator, client_secret, "STOP", "dry-run-job")
    inputs["dry-run"] = "true"
    started = time.monotonic()
    run = github_action.run(inputs)
    first = time.monotonic() - started
    assert run.returncode == 0, run.stdout
    assert [step.step_id for step in run.steps] == ["setup", "run"]
    python = run.steps[0].outputs["python"]
    assert Path(python).is_file()
    assert Path(python).is_relative_to(tool_cache / "flink-task")

    started = time.monotonic()
    again = github_action.run(inputs)
    second = time.monotonic() - started
    assert again.returncode == 0, again.stdout
    assert again.steps[0].outputs["python"] == python
    assert "reusing the virtual environment" in again.steps[0].stdout
    print(f"action with install: {first:.1f} s, with the cached environment: {second:.1f} s")


def test_action_lifecycle(
    github_action: CompositeAction,
    emulator: Emulator,
    client_secret: str,
    storage: Path,
) -> None:
    github_action.job_env["REQUESTS_CA_BUNDLE"] = str(emulator.ca_file)
    job = "orders-action"

    def run(action: str, **extra: str) -> Any:
        inputs = github_inputs(emulator, client_secret, action, job)
        inputs.update(extra)
        result = github_action.run(inputs)
        assert_masked_before_shown(result.stdout, client_secret, "::add-mask::")
        return result

    new = run(
        "NEW",
        **{
            "job-jar-directory": str(storage / "jars"),
            "jar-name": "flink-task-sample-v1.jar",
            "entry-class": ENTRY_CLASS,
            "args": "--rate 20 --keys 2 --label 'from the action'",
            "parallelism": "1",
        },
    )
    assert new.returncode == 0, new.stdout
    assert new.outputs["action-result"] == "SUCCESS"
    assert new.outputs["status"] == "RUNNING"
    assert new.outputs["job-id"]
    record = json.loads(new.outputs["job"])
    assert record["jobName"] == job
    assert record["jobId"] == new.outputs["job-id"]
    assert "NEW" in new.steps[-1].summary

    savepoint = run("SAVEPOINT")
    assert savepoint.returncode == 0, savepoint.stdout
    assert savepoint.outputs["action-result"] == "SUCCESS"
    assert savepoint.outputs["last-save-point"]
    assert savepoint.outputs["job-output"].startswith("Savepoint completed")

    listed = run("LIST_SAVEPOINT")
    assert listed.returncode == 0, listed.stdout
    assert savepoint.outputs["last-save-point"] in json.loads(listed.outputs["savepoints"])

    cancelled = run("CANCEL")
    assert cancelled.returncode == 0, cancelled.stdout
    assert cancelled.outputs["status"] == "CANCELLED"

    deleted = run("DELETE")
    assert deleted.returncode == 0, deleted.stdout


def test_action_invalid_input(
    github_action: CompositeAction, emulator: Emulator, client_secret: str
) -> None:
    inputs = github_inputs(emulator, client_secret, "NEW", "Not A Valid Name")
    run = github_action.run(inputs)
    assert run.returncode == 2, run.stdout
    assert "::error" in run.stdout


def test_action_sigint_during_wait(
    github_action: CompositeAction, emulator: Emulator, client_secret: str, storage: Path
) -> None:
    github_action.job_env["REQUESTS_CA_BUNDLE"] = str(emulator.ca_file)
    inputs = github_inputs(emulator, client_secret, "NEW", "stalled-action")
    inputs.update(
        {
            "cluster-pool": STALLED_POOL,
            "cluster": STALLED_CLUSTER,
            "job-jar-directory": str(storage / "jars"),
            "jar-name": "flink-task-sample-v1.jar",
            "entry-class": ENTRY_CLASS,
        }
    )
    interrupt = Interrupt(step_id="run", marker="runJob accepted")
    run = github_action.run(inputs, interrupt=interrupt)
    assert run.returncode == 130, run.stdout
    assert interrupt.elapsed is not None
    assert interrupt.elapsed < CANCEL_GRACE_SECONDS
    assert run.outputs["action-result"] == "IN_PROGRESS"
    assert "last known state" in run.stdout
    print(f"action ended {interrupt.elapsed:.2f} s after SIGINT")


FAKE_AZ = """#!/bin/sh
# Stands in for the Azure CLI that azure/login left signed in: it returns the token that
# the test stored in the CLI's configuration folder.
echo "$*" >> "$AZURE_CONFIG_DIR/calls.log"
exec cat "$AZURE_CONFIG_DIR/token.json"
"""


def test_action_after_azure_login(
    github_action: CompositeAction, emulator: Emulator, client_secret: str, tmp_path: Path
) -> None:
    """auth-type azure-cli uses the Azure CLI login of an earlier step in the same job."""
    response = requests.post(
        f"{emulator.base_url}/{emulator.tenant_id}/oauth2/v2.0/token",
        data={
            "grant_type": "client_credentials",
            "client_id": emulator.client_id,
            "client_secret": client_secret,
            "scope": f"{emulator.base_url}/.default",
        },
        verify=str(emulator.ca_file),
        timeout=30,
    )
    response.raise_for_status()
    config_dir = tmp_path / "azure"
    config_dir.mkdir()
    token = {
        "accessToken": response.json()["access_token"],
        "expires_on": int(time.time()) + 3000,
        "tokenType": "Bearer",
        "tenant": emulator.tenant_id,
    }
    (config_dir / "token.json").write_text(json.dumps(token))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "az").write_text(FAKE_AZ)
    (bin_dir / "az").chmod(0o755)

    saved = dict(github_action.job_env)
    github_action.job_env.update(
        {
            "PATH": f"{bin_dir}{os.pathsep}{saved['PATH']}",
            "AZURE_CONFIG_DIR": str(config_dir),
            "REQUESTS_CA_BUNDLE": str(emulator.ca_file),
        }
    )
    try:
        inputs = github_inputs(emulator, client_secret, "LIST", "")
        for name in ("client-secret", "client-id", "authority-host"):
            del inputs[name]
        inputs["auth-type"] = "azure-cli"
        run = github_action.run(inputs)
    finally:
        github_action.job_env.clear()
        github_action.job_env.update(saved)
    assert run.returncode == 0, run.stdout
    assert "get-access-token" in (config_dir / "calls.log").read_text()


# ---------------------------------------------------------------------- Azure DevOps


def connection_variables(emulator: Emulator, secret: str) -> dict[str, str]:
    return {
        f"ENDPOINT_URL_{CONNECTION_ID}": emulator.base_url,
        f"ENDPOINT_AUTH_SCHEME_{CONNECTION_ID}": "ServicePrincipal",
        f"ENDPOINT_AUTH_PARAMETER_{CONNECTION_ID}_SERVICEPRINCIPALID": emulator.client_id,
        f"ENDPOINT_AUTH_PARAMETER_{CONNECTION_ID}_TENANTID": emulator.tenant_id,
        f"ENDPOINT_AUTH_PARAMETER_{CONNECTION_ID}_AUTHENTICATIONTYPE": "spnKey",
        f"ENDPOINT_AUTH_PARAMETER_{CONNECTION_ID}_SERVICEPRINCIPALKEY": secret,
        f"ENDPOINT_DATA_{CONNECTION_ID}_SUBSCRIPTIONID": emulator.subscription_id,
        f"ENDPOINT_DATA_{CONNECTION_ID}_ACTIVEDIRECTORYAUTHORITY": emulator.base_url,
    }


class AzureDevOpsAgent:
    """Starts the task's Node entry point with the variables an agent sets."""

    def __init__(self, task_dir: Path, work_dir: Path, tool_cache: Path) -> None:
        self.task_dir = task_dir
        self.work_dir = work_dir
        self.tool_cache = tool_cache
        self.variables: dict[str, str] = {}
        self._runs = 0

    def environment(self, inputs: dict[str, str]) -> dict[str, str]:
        self._runs += 1
        agent_temp = self.work_dir / f"temp{self._runs}"
        agent_temp.mkdir()
        env = machine_environment()
        env.update(
            {
                "TF_BUILD": "True",
                "AGENT_TEMPDIRECTORY": str(agent_temp),
                "AGENT_TOOLSDIRECTORY": str(self.tool_cache),
            }
        )
        env.update(self.variables)
        env.update({f"INPUT_{name.upper()}": value for name, value in inputs.items()})
        return env

    def start(self, inputs: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
        with log_path.open("wb") as log:
            return subprocess.Popen(
                ["node", str(self.task_dir / "index.js")],
                cwd=self.work_dir,
                env=self.environment(inputs),
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def run(self, inputs: dict[str, str]) -> tuple[int, str]:
        completed = subprocess.run(
            ["node", str(self.task_dir / "index.js")],
            cwd=self.work_dir,
            env=self.environment(inputs),
            capture_output=True,
            text=True,
            timeout=STEP_TIMEOUT_SECONDS,
        )
        return completed.returncode, completed.stdout + completed.stderr


@pytest.fixture(scope="module")
def agent(
    staged_task: Path, tmp_path_factory: pytest.TempPathFactory, tool_cache: Path
) -> AzureDevOpsAgent:
    return AzureDevOpsAgent(staged_task, tmp_path_factory.mktemp("agent-work"), tool_cache)


def task_inputs(emulator: Emulator, action: str, job: str) -> dict[str, str]:
    return {
        "action": action,
        "jobName": job,
        "azureSubscription": CONNECTION_ID,
        "resourceGroup": emulator.resource_group,
        "clusterPool": emulator.cluster_pool,
        "cluster": emulator.cluster,
        "timeoutMinutes": "5",
    }


def test_task_dry_run_installs(
    agent: AzureDevOpsAgent, emulator: Emulator, tool_cache: Path
) -> None:
    inputs = task_inputs(emulator, "STOP", "dry-run-task")
    inputs["dryRun"] = "true"
    agent.variables = connection_variables(emulator, "not-used-in-a-dry-run")
    started = time.monotonic()
    code, output = agent.run(inputs)
    elapsed = time.monotonic() - started
    assert code == 0, output
    assert list(tool_cache.glob("flink-task/*/*/venv"))
    print(f"task with install: {elapsed:.1f} s")


def test_task_lifecycle(
    agent: AzureDevOpsAgent, emulator: Emulator, client_secret: str, storage: Path
) -> None:
    agent.variables = connection_variables(emulator, client_secret)
    agent.variables["REQUESTS_CA_BUNDLE"] = str(emulator.ca_file)
    job = "orders-task"

    def run(action: str, **extra: str) -> tuple[int, dict[str, dict[str, Any]], str]:
        inputs = task_inputs(emulator, action, job)
        inputs.update(extra)
        code, output = agent.run(inputs)
        assert_masked_before_shown(output, client_secret, "##vso[task.setsecret]")
        return code, parse_vso_variables(output), output

    code, variables, output = run(
        "NEW",
        jobJarDirectory=str(storage / "jars"),
        jarName="flink-task-sample-v1.jar",
        entryClass=ENTRY_CLASS,
        args="--rate 20 --keys 2",
        parallelism="1",
    )
    assert code == 0, output
    assert variables["actionResult"]["value"] == "SUCCESS"
    assert variables["actionResult"]["isoutput"] == "true"
    assert variables["status"]["value"] == "RUNNING"
    assert variables["jobId"]["value"]
    assert json.loads(variables["job"]["value"])["jobName"] == job
    assert "##vso[task.setsecret]" + client_secret in output

    code, variables, output = run("STOP")
    assert code == 0, output
    assert variables["status"]["value"] == "STOPPED"
    assert variables["lastSavePoint"]["value"]
    assert variables["jobOutput"]["value"].startswith("Savepoint completed")

    code, variables, output = run("DELETE")
    assert code == 0, output


def test_task_action_failure_exit_code(
    agent: AzureDevOpsAgent, emulator: Emulator, client_secret: str
) -> None:
    agent.variables = connection_variables(emulator, client_secret)
    agent.variables["REQUESTS_CA_BUNDLE"] = str(emulator.ca_file)
    code, output = agent.run(task_inputs(emulator, "STOP", "no-such-job"))
    assert code == 1, output
    assert "##vso[task.complete result=Failed;]flink-task exited with code 1" in output


def test_task_sigint_during_wait(
    agent: AzureDevOpsAgent,
    emulator: Emulator,
    client_secret: str,
    storage: Path,
    tmp_path: Path,
) -> None:
    agent.variables = connection_variables(emulator, client_secret)
    agent.variables["REQUESTS_CA_BUNDLE"] = str(emulator.ca_file)
    inputs = task_inputs(emulator, "NEW", "stalled-task")
    inputs.update(
        {
            "clusterPool": STALLED_POOL,
            "cluster": STALLED_CLUSTER,
            "jobJarDirectory": str(storage / "jars"),
            "jarName": "flink-task-sample-v1.jar",
            "entryClass": ENTRY_CLASS,
        }
    )

    log_path = tmp_path / "task.log"
    process = agent.start(inputs, log_path)
    try:
        deadline = time.monotonic() + 120
        while "runJob accepted" not in log_path.read_text(errors="replace"):
            assert process.poll() is None, log_path.read_text()
            assert time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.05)
        started = time.monotonic()
        process.send_signal(signal.SIGINT)
        process.wait(timeout=30)
        elapsed = time.monotonic() - started
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()

    output = log_path.read_text()
    assert process.returncode == 130, output
    assert elapsed < CANCEL_GRACE_SECONDS
    variables = parse_vso_variables(output)
    assert variables["actionResult"]["value"] == "IN_PROGRESS"
    assert "last known state" in output
    assert "##vso[task.complete result=Cancelled;]" in output
    print(f"task ended {elapsed:.2f} s after SIGINT")
