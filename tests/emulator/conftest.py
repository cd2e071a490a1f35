"""Helpers for the emulator tests: start an emulator, sign in, call the job API, seed records."""

from __future__ import annotations

import json
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
from azure.identity import ClientSecretCredential
from azure.mgmt.hdinsightcontainers import HDInsightContainersMgmtClient

from flink_task.emulator import ClusterConfig, Emulator
from flink_task.engine import JobStore

REPOSITORY_ROOT = Path(__file__).resolve().parents[2]
SPEC_EXAMPLES = REPOSITORY_ROOT.parent / "shared" / "cases" / "spec-examples"
ALL_VERSIONS = (
    "2023-06-01-preview",
    "2023-11-01-preview",
    "2024-04-01-preview",
    "2024-05-01-preview",
    "2024-05-01",
)
NINE_ACTION_VERSIONS = ("2023-06-01-preview", "2024-04-01-preview")
ELEVEN_ACTION_VERSIONS = ("2023-11-01-preview", "2024-05-01-preview", "2024-05-01")
LRO_DEADLINE = 120.0


def unused_loopback_port() -> int:
    """Return a loopback port that nothing listens on (a Flink URL no test may reach)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def offline_cluster(
    pool: str = "pool1", cluster: str = "cluster1", **kwargs: Any
) -> ClusterConfig:
    """Return a cluster whose Flink URL is closed: for requests that never reach Flink."""
    flink_url = f"http://127.0.0.1:{unused_loopback_port()}"
    return ClusterConfig(pool, cluster, flink_url=flink_url, **kwargs)


def credential_for(
    emulator: Emulator | ProcessConnection, secret: str | None = None
) -> ClientSecretCredential:
    """Return the credential a pipeline would build, pointed at the emulator's authority."""
    return ClientSecretCredential(
        emulator.tenant_id,
        emulator.client_id,
        secret if secret is not None else emulator.client_secret,
        authority=emulator.base_url,
        disable_instance_discovery=True,
        connection_verify=str(emulator.ca_file),
    )


def sdk_client(
    emulator: Emulator, api_version: str | None = None
) -> HDInsightContainersMgmtClient:
    """Return the official SDK client pointed at the emulator.

    The SDK waits for the Retry-After of each 202 (1 s) rather than `polling_interval`.
    """
    options: dict[str, Any] = {}
    if api_version is not None:
        options["api_version"] = api_version
    return HDInsightContainersMgmtClient(
        credential_for(emulator),
        emulator.subscription_id,
        base_url=emulator.base_url,
        credential_scopes=[f"{emulator.base_url}/.default"],
        polling_interval=0.1,
        connection_verify=str(emulator.ca_file),
        **options,
    )


class ArmClient:
    """Raw HTTPS calls to the job API of one emulator, with a bearer token from its authority."""

    def __init__(self, emulator: Emulator | ProcessConnection) -> None:
        self.emulator = emulator
        self.session = requests.Session()
        token = credential_for(emulator).get_token(f"{emulator.base_url}/.default").token
        self.session.headers["Authorization"] = f"Bearer {token}"

    def request(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        # verify goes with each request because requests prefers $CURL_CA_BUNDLE and
        # $REQUESTS_CA_BUNDLE over Session.verify.
        kwargs.setdefault("timeout", 30)
        return self.session.request(method, url, verify=str(self.emulator.ca_file), **kwargs)

    def cluster_url(self, pool: str | None = None, cluster: str | None = None) -> str:
        emulator = self.emulator
        return (
            f"{emulator.base_url}/subscriptions/{emulator.subscription_id}/resourceGroups/"
            f"{emulator.resource_group}/providers/Microsoft.HDInsight/clusterpools/"
            f"{pool or emulator.cluster_pool}/clusters/{cluster or emulator.cluster}"
        )

    def run_job(
        self, properties: dict[str, Any], api_version: str = "2024-05-01-preview", **kwargs: Any
    ) -> requests.Response:
        body = {"properties": {"jobType": "FlinkJob", **properties}}
        return self.request(
            "POST",
            f"{self.cluster_url()}/runJob",
            params={"api-version": api_version},
            json=body,
            **kwargs,
        )

    def list_jobs(
        self, api_version: str = "2024-05-01-preview", **params: str
    ) -> requests.Response:
        return self.request(
            "GET", f"{self.cluster_url()}/jobs", params={"api-version": api_version, **params}
        )

    def wait_for_operation(self, accepted: requests.Response) -> requests.Response:
        """Poll the `location` of a 202 response until the status is no longer 202."""
        assert accepted.status_code == 202, accepted.text
        location = accepted.headers["location"]
        deadline = time.monotonic() + LRO_DEADLINE
        while time.monotonic() < deadline:
            response = self.request("GET", location)
            if response.status_code != 202:
                return response
            time.sleep(0.2)
        pytest.fail(f"operation {location} still running after {LRO_DEADLINE} s")

    def run_to_end(self, properties: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        """Run one action through `runJob` and return the final ClusterJob."""
        final = self.wait_for_operation(self.run_job(properties, **kwargs))
        assert final.status_code == 200, final.text
        return dict(final.json())


def seed_record(emulator: Emulator, record: dict[str, Any]) -> None:
    """Write a job record straight into the emulator's job store, as an earlier action would."""
    full = {"jobType": "FlinkJob", "actionResult": "SUCCESS", **record}
    JobStore(emulator.jobs_directory()).save(full)


def stopped_record(name: str, **fields: Any) -> dict[str, Any]:
    """Return the record of a stopped job with one savepoint, which needs no Flink to act on."""
    record = {
        "jobName": name,
        "status": "STOPPED",
        "action": "STOP",
        "jobJarDirectory": "/srv/jars",
        "jarName": f"{name}.jar",
        "entryClass": "org.example.Job",
        "jobId": "a" * 32,
        "jobOutput": f"Savepoint completed. Path: file:/savepoints/{name}/savepoint-1",
        "lastSavePoint": f"file:/savepoints/{name}/savepoint-1",
        "savepoints": [{"path": f"file:/savepoints/{name}/savepoint-1", "kind": "STOP"}],
        "runId": f"run-{name}",
    }
    record.update(fields)
    return record


@pytest.fixture(scope="module")
def offline_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    """An emulator whose Flink is unreachable, for tests that never start a Flink job."""
    emulator = Emulator(
        tmp_path_factory.mktemp("emulator-state"),
        clusters=[offline_cluster(), offline_cluster("pool2", "other")],
        token_lifetime=600,
    )
    emulator.start()
    try:
        yield emulator
    finally:
        emulator.stop()


@pytest.fixture(scope="module")
def arm(offline_emulator: Emulator) -> ArmClient:
    return ArmClient(offline_emulator)


class EmulatorProcess:
    """`flink-task emulator` in a child process, with its JSON line parsed into `info`."""

    def __init__(self, state_dir: Path, *args: str) -> None:
        self.state_dir = state_dir
        self.args = [sys.executable, "-m", "flink_task", "emulator", "--state-dir", str(state_dir)]
        self.args.extend(args)
        self.process: subprocess.Popen[str] | None = None
        self.info: dict[str, Any] = {}
        self.log_file = state_dir.parent / f"{state_dir.name}-emulator.log"

    def start(self, timeout: float = 60.0) -> dict[str, Any]:
        """Start the process and return its JSON line; fail with its log on a timeout."""
        with self.log_file.open("a") as log:
            self.process = subprocess.Popen(
                self.args, stdout=subprocess.PIPE, stderr=log, text=True
            )
        assert self.process.stdout is not None
        ready, _, _ = select.select([self.process.stdout], [], [], timeout)
        line = self.process.stdout.readline() if ready else ""
        if not line:
            self.kill()
            pytest.fail(f"emulator printed no JSON line within {timeout} s:\n{self.log()}")
        self.info = json.loads(line)
        return self.info

    def stop(self, signum: int = signal.SIGTERM, timeout: float = 120.0) -> int:
        """Send `signum` and return the exit code; kill the process if it outlives `timeout`."""
        assert self.process is not None
        self.process.send_signal(signum)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"emulator still running {timeout} s after signal {signum}:\n{self.log()}")
        finally:
            self._close_pipe()

    def kill(self) -> None:
        """Stop the process at once with SIGKILL, as a crash would."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(30)
        self._close_pipe()

    def _close_pipe(self) -> None:
        if self.process is not None and self.process.stdout is not None:
            self.process.stdout.close()

    def log(self) -> str:
        return self.log_file.read_text() if self.log_file.exists() else ""

    def arm_client(self) -> ArmClient:
        return ArmClient(ProcessConnection.from_info(self.info))


@dataclass(frozen=True)
class ProcessConnection:
    """The connection attributes of an `Emulator`, read from a child process's JSON line."""

    base_url: str
    ca_file: Path
    tenant_id: str
    client_id: str
    client_secret: str = field(repr=False)
    subscription_id: str
    resource_group: str
    cluster_pool: str
    cluster: str

    @classmethod
    def from_info(cls, info: dict[str, Any], secret: str | None = None) -> ProcessConnection:
        if secret is None:
            secret = Path(info["clientSecretFile"]).read_text().strip()
        return cls(
            base_url=info["baseUrl"],
            ca_file=Path(info["caFile"]),
            tenant_id=info["tenantId"],
            client_id=info["clientId"],
            client_secret=secret,
            subscription_id=info["subscriptionId"],
            resource_group=info["resourceGroup"],
            cluster_pool=info["clusters"][0]["clusterPool"],
            cluster=info["clusters"][0]["cluster"],
        )
