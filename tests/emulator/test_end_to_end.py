"""Job lifecycles through the emulator on the session's real Flink cluster.

The jar folder is served as `abfs://jars@emulator.dfs.core.windows.net/`, as a pipeline would
name it on Azure. Savepoints go to the emulator's default savepoint directory.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests

from flink_task.emulator import ClusterConfig, Emulator
from flink_task.engine import JobStore
from flink_task.samplejobs import ENTRY_CLASS
from tests.emulator.conftest import ArmClient, EmulatorProcess, sdk_client
from tests.engine.flinkchecks import restored_path, wait_for_state

pytestmark = pytest.mark.flink

JAR_PREFIX = "abfs://jars@emulator.dfs.core.windows.net/"
TERMINAL_STATES = frozenset({"FAILED", "CANCELED", "FINISHED"})


@pytest.fixture(scope="module")
def jar_folder(sample_jars: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("abfs-jars") / "releases"
    folder.mkdir()
    for version, jar in sample_jars.items():
        (folder / f"counting-{version}.jar").write_bytes(jar.read_bytes())
    return folder.parent


@pytest.fixture(scope="module")
def flink_url(local_flink: Any) -> Iterator[str]:
    """Return the session cluster's REST URL, and cancel the jobs this module left running."""
    url = str(local_flink.rest_url).rstrip("/")
    before = {job["jid"] for job in flink_jobs(url)}
    yield url
    for job in flink_jobs(url):
        if job["jid"] not in before and job["state"] not in TERMINAL_STATES:
            requests.patch(f"{url}/jobs/{job['jid']}", params={"mode": "cancel"}, timeout=30)


def flink_jobs(url: str) -> list[dict[str, Any]]:
    return list(requests.get(f"{url}/jobs/overview", timeout=30).json()["jobs"])


def cluster_config(flink_url: str, jar_folder: Path) -> ClusterConfig:
    return ClusterConfig(
        "pool1", "cluster1", flink_url=flink_url, storage_mappings={JAR_PREFIX: jar_folder}
    )


@pytest.fixture(scope="module")
def flink_emulator(
    flink_url: str, jar_folder: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Emulator]:
    emulator = Emulator(
        tmp_path_factory.mktemp("flink-emulator"),
        clusters=[cluster_config(flink_url, jar_folder)],
    )
    with emulator:
        yield emulator


def new_job(name: str, version: str = "v1") -> dict[str, Any]:
    return {
        "jobName": name,
        "action": "NEW",
        "jobJarDirectory": f"{JAR_PREFIX}releases",
        "jarName": f"counting-{version}.jar",
        "entryClass": ENTRY_CLASS,
        "args": "--rate 50 --keys 4",
        "flinkConfiguration": {"parallelism": "1"},
    }


def savepoint_file(path: str) -> Path:
    return Path(urlsplit(path).path)


def assert_succeeded(job: dict[str, Any], status: str) -> dict[str, Any]:
    properties = dict(job["properties"])
    assert properties["actionResult"] == "SUCCESS", properties.get("jobOutput")
    assert properties["status"] == status
    return properties


def test_new_then_savepoint(flink_emulator: Emulator, flink_url: str) -> None:
    client = sdk_client(flink_emulator)
    arm = ArmClient(flink_emulator)

    created = client.cluster_jobs.begin_run_job(
        flink_emulator.resource_group,
        flink_emulator.cluster_pool,
        flink_emulator.cluster,
        {"properties": {"jobType": "FlinkJob", **new_job("orders")}},
    ).result()
    saved = assert_succeeded(
        arm.run_to_end({"jobName": "orders", "action": "SAVEPOINT"}), "RUNNING"
    )

    assert created.properties.action_result == "SUCCESS", created.properties.job_output
    assert created.properties.status == "RUNNING"
    assert created.properties.job_output == f"Job {created.properties.job_id} is RUNNING"
    assert {job["jid"]: job["state"] for job in flink_jobs(flink_url)}[
        created.properties.job_id
    ] == "RUNNING"
    path = saved["lastSavePoint"]
    assert saved["jobOutput"] == f"Savepoint completed. Path: {path}"
    assert savepoint_file(path).is_dir()
    default_directory = flink_emulator.state_dir / "clusters" / "pool1" / "cluster1" / "storage"
    assert savepoint_file(path).is_relative_to(default_directory)
    listed = arm.list_jobs(**{"$filter": "jobName eq 'orders'"}).json()["value"]
    assert listed[0]["properties"]["lastSavePoint"] == path


def test_jobs_list_reads_flink_status(flink_emulator: Emulator, flink_url: str) -> None:
    arm = ArmClient(flink_emulator)
    created = assert_succeeded(arm.run_to_end(new_job("cancelled-outside")), "RUNNING")
    job_id = created["jobId"]
    requests.patch(f"{flink_url}/jobs/{job_id}", params={"mode": "cancel"}, timeout=30)
    # GET /jobs/:jobid, which the listing reads, is served from Flink's cache of job details
    # (web.refresh-interval, 3 s by default), so the wait reads that endpoint too.
    wait_for_state(flink_url, job_id, "CANCELED")

    listed = arm.list_jobs(**{"$filter": "jobName eq 'cancelled-outside'"}).json()["value"]
    stop = arm.run_job({"jobName": "cancelled-outside", "action": "STOP"})

    assert listed[0]["properties"]["status"] == "CANCELLED"
    assert stop.status_code == 409, stop.text
    assert "but it is CANCELLED" in stop.json()["error"]["message"]


def test_second_action_while_running_409(flink_emulator: Emulator) -> None:
    arm = ArmClient(flink_emulator)
    assert_succeeded(arm.run_to_end(new_job("busy")), "RUNNING")

    first = arm.run_job({"jobName": "busy", "action": "SAVEPOINT"})
    second = arm.run_job({"jobName": "busy", "action": "STOP"})

    assert first.status_code == 202, first.text
    assert second.status_code == 409, second.text
    assert second.json()["error"]["code"] == "Conflict"
    final = arm.wait_for_operation(first)
    assert_succeeded(final.json(), "RUNNING")
    assert_succeeded(arm.run_to_end({"jobName": "busy", "action": "CANCEL"}), "CANCELLED")


def test_restart_between_actions(flink_url: str, jar_folder: Path, tmp_path: Path) -> None:
    config = cluster_config(flink_url, jar_folder)
    with Emulator(tmp_path, clusters=[config]) as first:
        arm = ArmClient(first)
        accepted = arm.run_job(new_job("restarted"))
        created = assert_succeeded(arm.wait_for_operation(accepted).json(), "RUNNING")
        port = first.port

    with Emulator(tmp_path, clusters=[config], port=port) as second:
        old_operation = arm.request("GET", accepted.headers["location"])
        saved = assert_succeeded(
            arm.run_to_end({"jobName": "restarted", "action": "SAVEPOINT"}), "RUNNING"
        )
        stopped = assert_succeeded(
            arm.run_to_end({"jobName": "restarted", "action": "STOP"}), "STOPPED"
        )
        listing = arm.run_to_end({"jobName": "restarted", "action": "LIST_SAVEPOINT"})
        second_base_url = second.base_url

    assert second_base_url == f"https://127.0.0.1:{port}"
    assert old_operation.status_code == 200
    assert old_operation.json()["properties"]["jobId"] == created["jobId"]
    assert saved["jobId"] == created["jobId"]
    assert listing["properties"]["jobOutput"].splitlines() == [
        stopped["lastSavePoint"],
        saved["lastSavePoint"],
    ]


def start_process(state: Path, flink_url: str, jar_folder: Path, *extra: str) -> EmulatorProcess:
    process = EmulatorProcess(
        state,
        "--flink-url",
        flink_url,
        "--storage-mapping",
        f"{JAR_PREFIX}={jar_folder}",
        "--cluster-pool",
        "pool1",
        "--cluster",
        "cluster1",
        *extra,
    )
    process.start()
    return process


def wait_for_step_after_accepted(state: Path, job_name: str, timeout: float = 30.0) -> str:
    """Wait until the engine has moved the action past its first step; return the step."""
    store = JobStore(state / "clusters" / "pool1" / "cluster1" / "jobs")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        record = store.load(job_name) or {}
        if record.get("step") != "accepted" or record.get("actionResult") != "IN_PROGRESS":
            return str(record.get("step"))
        time.sleep(0.02)
    pytest.fail(f"the action on {job_name} stayed at step 'accepted' for {timeout} s")


@pytest.mark.parametrize("kill_point", ["accepted", "savepoint-triggered"])
def test_crash_during_action_settles(
    flink_url: str, jar_folder: Path, tmp_path: Path, kill_point: str
) -> None:
    state = tmp_path / "state"
    first = start_process(state, flink_url, jar_folder)
    try:
        arm = first.arm_client()
        assert_succeeded(arm.run_to_end(new_job("crashed")), "RUNNING")
        accepted = arm.run_job({"jobName": "crashed", "action": "STOP"})
        if kill_point == "savepoint-triggered":
            wait_for_step_after_accepted(state, "crashed")
    finally:
        first.kill()
    assert accepted.status_code == 202, accepted.text
    port = first.info["baseUrl"].rsplit(":", 1)[1]

    second = start_process(state, flink_url, jar_folder, "--port", port)
    try:
        arm = second.arm_client()
        operation = arm.request("GET", accepted.headers["location"])
        listed = arm.list_jobs().json()["value"]
        if listed[0]["properties"]["status"] == "RUNNING":
            arm.run_to_end({"jobName": "crashed", "action": "CANCEL"})
    finally:
        second.stop()

    assert operation.status_code == 200, operation.text
    result = operation.json()["properties"]
    assert result["actionResult"] in ("SUCCESS", "FAILED")
    assert listed[0]["properties"]["actionResult"] == result["actionResult"]
    if result["actionResult"] == "SUCCESS":
        assert result["status"] == "STOPPED"
        assert result["jobOutput"].startswith("Savepoint completed. Path: ")
    else:
        assert "interrupted" in result["jobOutput"]


def test_sigterm_finishes_running_action(flink_url: str, jar_folder: Path, tmp_path: Path) -> None:
    # UPDATE stops with a savepoint and starts the new jar, which takes seconds, so the
    # SIGTERM sent right after the 202 arrives while the action runs.
    state = tmp_path / "state"
    first = start_process(state, flink_url, jar_folder)
    try:
        arm = first.arm_client()
        created = assert_succeeded(arm.run_to_end(new_job("drained")), "RUNNING")
        update = {**new_job("drained", version="v2"), "action": "UPDATE"}
        accepted = arm.run_job(update)
    finally:
        exit_code = first.stop(signal.SIGTERM)
    port = first.info["baseUrl"].rsplit(":", 1)[1]

    second = start_process(state, flink_url, jar_folder, "--port", port)
    try:
        arm = second.arm_client()
        operation = arm.request("GET", accepted.headers["location"])
        restored_from = restored_path(flink_url, operation.json()["properties"]["jobId"])
        cancelled = arm.run_to_end({"jobName": "drained", "action": "CANCEL"})
    finally:
        second.stop()

    assert accepted.status_code == 202, accepted.text
    assert exit_code == 0
    assert "waiting for the running action action-drained-UPDATE" in first.log()
    assert operation.status_code == 200, operation.text
    updated = assert_succeeded(operation.json(), "RUNNING")
    assert updated["jarName"] == "counting-v2.jar"
    assert updated["jobId"] != created["jobId"]
    assert restored_from == updated["lastSavePoint"]
    assert_succeeded(cancelled, "CANCELLED")
