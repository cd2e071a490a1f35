"""Fixtures for tests that need a real Flink cluster, and helpers that drive its REST API.

Load with ``pytest_plugins = ["tests.plugins.flink"]``. Tests that use the cluster are marked
``@pytest.mark.flink``.

- ``flink_home`` (session): the Flink home from ``localflink.install()``.
- ``local_flink`` (session): one running ``LocalFlink`` with ``LOCAL_FLINK_SLOTS`` slots and no
  savepoint directory, stopped at the end of the session. A watchdog stops it if the test
  process dies. Tests cancel the jobs they start, so the slots are free for the next test.
- ``sample_jars`` (session): ``{"v1": Path, "v2": Path}``, the sample job jars in a session
  folder (copies of a build cached under the flink-task cache folder).
"""

from __future__ import annotations

import os
import shutil
import time
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from flink_task.localflink import LocalFlink, default_cache_dir, install
from flink_task.samplejobs import ENTRY_CLASS, build_sample_jars

LOCAL_FLINK_SLOTS = 6
TERMINAL_JOB_STATES = frozenset({"FAILED", "CANCELED", "FINISHED"})
_REQUEST_TIMEOUT = 30


@pytest.fixture(scope="session")
def flink_home() -> Path:
    return install()


@pytest.fixture(scope="session")
def local_flink(
    flink_home: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalFlink]:
    cluster = LocalFlink(
        tmp_path_factory.mktemp("local-flink"),
        flink_home=flink_home,
        slots=LOCAL_FLINK_SLOTS,
        owner_pid=os.getpid(),
    )
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def sample_jars(flink_home: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    cached = build_sample_jars(flink_home, default_cache_dir() / "sample-jars")
    session_dir = tmp_path_factory.mktemp("sample-jars")
    return {version: Path(shutil.copy2(jar, session_dir)) for version, jar in cached.items()}


# --------------------------------------------------------------------------------------------
# REST helpers for tests. Each waits with a deadline and fails the test with the last response.


def upload_jar(rest_url: str, jar: Path) -> str:
    """Upload a jar and return its jar id (the basename of the stored file)."""
    with jar.open("rb") as handle:
        response = requests.post(
            f"{rest_url}/jars/upload",
            files={"jarfile": (jar.name, handle, "application/x-java-archive")},
            timeout=_REQUEST_TIMEOUT,
        )
    response.raise_for_status()
    return Path(response.json()["filename"]).name


def run_jar(
    rest_url: str, jar_id: str, args: Iterable[str] = (), **fields: Any
) -> requests.Response:
    """Send ``POST /jars/:jarid/run`` with the sample entry class and return the raw response."""
    body = {"entryClass": ENTRY_CLASS, "programArgsList": list(args), "parallelism": 1}
    body.update(fields)
    return requests.post(f"{rest_url}/jars/{jar_id}/run", json=body, timeout=120)


def job_details(rest_url: str, job_id: str) -> dict[str, Any]:
    response = requests.get(f"{rest_url}/jobs/{job_id}", timeout=_REQUEST_TIMEOUT)
    response.raise_for_status()
    return dict(response.json())


def wait_for_job_state(
    rest_url: str, job_id: str, states: Iterable[str], timeout: float = 60
) -> dict[str, Any]:
    """Wait until the job is in one of ``states`` and return its details."""
    expected_states = set(states)
    deadline = time.monotonic() + timeout
    details: dict[str, Any] = {}
    while time.monotonic() < deadline:
        details = job_details(rest_url, job_id)
        if details["state"] in expected_states:
            return details
        time.sleep(0.5)
    pytest.fail(
        f"job {job_id} not in {sorted(expected_states)} within {timeout} s: {details.get('state')}"
    )


def wait_for_tasks_running(rest_url: str, job_id: str, timeout: float = 60) -> dict[str, Any]:
    """Wait until the job is RUNNING and every task of every vertex is RUNNING."""
    deadline = time.monotonic() + timeout
    details: dict[str, Any] = {}
    while time.monotonic() < deadline:
        details = job_details(rest_url, job_id)
        all_running = all(
            vertex["tasks"].get("RUNNING", 0) == vertex["parallelism"]
            for vertex in details["vertices"]
        )
        if details["state"] == "RUNNING" and all_running:
            return details
        if details["state"] in TERMINAL_JOB_STATES:
            break
        time.sleep(0.5)
    tasks = [vertex["tasks"] for vertex in details.get("vertices", [])]
    pytest.fail(f"job {job_id} tasks not all RUNNING: {details.get('state')} {tasks}")


def stop_with_savepoint(rest_url: str, job_id: str, target_dir: Path, timeout: float = 60) -> str:
    """Stop the job with a savepoint into ``target_dir`` and return the savepoint location."""
    trigger = requests.post(
        f"{rest_url}/jobs/{job_id}/stop",
        json={"targetDirectory": str(target_dir), "drain": False, "triggerId": uuid.uuid4().hex},
        timeout=_REQUEST_TIMEOUT,
    )
    assert trigger.status_code == 202, trigger.text
    request_id = trigger.json()["request-id"]
    deadline = time.monotonic() + timeout
    result: dict[str, Any] = {}
    while time.monotonic() < deadline:
        result = requests.get(
            f"{rest_url}/jobs/{job_id}/savepoints/{request_id}", timeout=_REQUEST_TIMEOUT
        ).json()
        if result["status"]["id"] == "COMPLETED":
            operation = result["operation"]
            assert "failure-cause" not in operation, operation
            return str(operation["location"])
        time.sleep(0.5)
    pytest.fail(f"savepoint of job {job_id} not completed within {timeout} s: {result}")


def cancel_job(rest_url: str, job_id: str) -> None:
    """Cancel the job unless it already ended, and wait until it is terminal."""
    response = requests.patch(
        f"{rest_url}/jobs/{job_id}", params={"mode": "cancel"}, timeout=_REQUEST_TIMEOUT
    )
    if response.status_code not in (202, 409):
        response.raise_for_status()
    wait_for_job_state(rest_url, job_id, TERMINAL_JOB_STATES)
