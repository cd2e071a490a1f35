"""Recovery after the process running an action stopped half-way (simulated on a real cluster)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests

from flink_task.engine import Engine, FlinkRestClient, JobStore
from flink_task.engine.actions import new_flink_id
from flink_task.engine.records import utc_now
from tests.engine.flinkchecks import (
    job_state,
    jobs_with_id,
    local_path,
    uploaded_jars,
    wait_for_state,
)

pytestmark = pytest.mark.flink

Request = Callable[..., dict[str, Any]]


class SimulatedCrash(BaseException):
    """Stands for the process being killed: execute() does not catch BaseException."""


class CrashingClient(FlinkRestClient):
    """A Flink client whose process "dies" on the first call of one method."""

    def __init__(self, base_url: str, crash_in: str) -> None:
        super().__init__(base_url)
        self.crash_in = crash_in

    def find_job(self, job_id: str) -> dict[str, Any] | None:
        if self.crash_in == "find_job":
            raise SimulatedCrash
        return super().find_job(job_id)

    def savepoint_status(self, job_id: str, trigger_id: str) -> dict[str, Any]:
        if self.crash_in == "savepoint_status":
            raise SimulatedCrash
        return super().savepoint_status(job_id, trigger_id)


def leave_stale_lock(store_dir: Path, name: str) -> None:
    """Write the lock file a killed process would leave: its pid no longer exists."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    lock = {"pid": process.pid, "host": socket.gethostname(), "expires": 4e9, "token": "killed"}
    (store_dir / f"{name}.lock").write_text(json.dumps(lock))


def test_recover_before_submission(
    make_engine: Callable[..., Engine], job_request: Request
) -> None:
    first = make_engine()
    first.begin(job_request("crash-early", "NEW"))

    second = make_engine()
    recovered = second.recover()

    assert recovered == ["crash-early"]
    record = second.get_job("crash-early")
    assert record is not None
    assert record["actionResult"] == "FAILED"
    assert record["jobOutput"].startswith("The NEW action was interrupted at step 'accepted'")
    assert record["status"] == "FAILED"
    assert second.recover() == []


def test_recover_adopts_submitted_job(
    make_engine: Callable[..., Engine],
    job_request: Request,
    rest_url: str,
    store_dir: Path,
) -> None:
    crashing = make_engine(client=CrashingClient(rest_url, "find_job"))
    crashing.begin(job_request("crash-submitted", "NEW"))
    with pytest.raises(SimulatedCrash):
        crashing.execute("crash-submitted")
    pending = crashing.get_record("crash-submitted")
    assert pending is not None
    assert pending["actionResult"] == "IN_PROGRESS"
    submitted_id = pending["pendingJobId"]
    leave_stale_lock(store_dir, "crash-submitted")

    second = make_engine()
    recovered = second.recover()

    assert recovered == ["crash-submitted"]
    record = second.get_job("crash-submitted")
    assert record is not None
    assert record["actionResult"] == "SUCCESS"
    assert record["status"] == "RUNNING"
    assert record["jobId"] == submitted_id
    assert record["jobOutput"] == f"Job {submitted_id} is RUNNING"
    assert len(jobs_with_id(rest_url, submitted_id)) == 1
    assert job_state(rest_url, submitted_id) == "RUNNING"
    assert uploaded_jars(rest_url) == []
    assert not (store_dir / "crash-submitted.lock").exists()


def test_recover_keeps_stop_savepoint(
    make_engine: Callable[..., Engine], job_request: Request, rest_url: str
) -> None:
    engine = make_engine()
    created = engine.run(job_request("crash-stop", "NEW"))
    assert created["actionResult"] == "SUCCESS", created["jobOutput"]
    crashing = make_engine(client=CrashingClient(rest_url, "savepoint_status"))
    crashing.begin({"jobName": "crash-stop", "action": "STOP"})
    with pytest.raises(SimulatedCrash):
        crashing.execute("crash-stop")
    wait_for_state(rest_url, created["jobId"], "FINISHED")

    second = make_engine()
    assert second.recover() == ["crash-stop"]

    record = second.get_job("crash-stop")
    assert record is not None
    assert record["actionResult"] == "SUCCESS"
    assert record["status"] == "STOPPED"
    assert record["jobOutput"] == f"Savepoint completed. Path: {record['lastSavePoint']}"
    assert second.savepoints("crash-stop") == [record["lastSavePoint"]]


def savepoint_by_flink(rest_url: str, job_id: str, directory: str, *, stop: bool) -> str:
    """Take a savepoint (or stop with one) through Flink's REST API and return its location."""
    if stop:
        body = {"targetDirectory": directory, "drain": False}
        response = requests.post(f"{rest_url}/jobs/{job_id}/stop", json=body, timeout=30)
    else:
        body = {"target-directory": directory, "cancel-job": False}
        response = requests.post(f"{rest_url}/jobs/{job_id}/savepoints", json=body, timeout=30)
    response.raise_for_status()
    trigger_id = response.json()["request-id"]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        status = requests.get(
            f"{rest_url}/jobs/{job_id}/savepoints/{trigger_id}", timeout=30
        ).json()
        if status["status"]["id"] == "COMPLETED":
            return str(status["operation"]["location"])
        time.sleep(0.3)
    raise TimeoutError(f"savepoint {trigger_id} of job {job_id} did not complete in 60 s")


def forget_trigger(store_dir: Path, name: str, kind: str, directory: str, since: str) -> None:
    """Record a savepoint trigger that Flink does not know, as after a Flink restart."""
    store = JobStore(store_dir)
    record = store.load(name)
    assert record is not None
    record["pendingTrigger"] = {
        "triggerId": new_flink_id(),
        "flinkJobId": record["jobId"],
        "kind": kind,
        "directory": directory,
        "triggeredAt": since,
    }
    record["step"] = f"{kind.lower()} savepoint triggered"
    store.save(record)


def test_recover_finds_stop_savepoint_on_storage(
    make_engine: Callable[..., Engine],
    job_request: Request,
    rest_url: str,
    store_dir: Path,
    savepoint_dir: Path,
) -> None:
    engine = make_engine()
    created = engine.run(job_request("lost-stop", "NEW"))
    assert created["actionResult"] == "SUCCESS", created["jobOutput"]
    job_id = created["jobId"]
    older = engine.run({"jobName": "lost-stop", "action": "SAVEPOINT"})
    assert older["actionResult"] == "SUCCESS", older["jobOutput"]
    time.sleep(0.05)
    triggered_at = utc_now()
    engine.begin({"jobName": "lost-stop", "action": "STOP"})
    location = savepoint_by_flink(rest_url, job_id, savepoint_dir.as_uri(), stop=True)
    wait_for_state(rest_url, job_id, "FINISHED")
    unfinished = savepoint_dir / f"savepoint-{job_id[:6]}-ffffffffffff"
    unfinished.mkdir()
    forget_trigger(store_dir, "lost-stop", "STOP", savepoint_dir.as_uri(), triggered_at)

    second = make_engine()
    assert second.recover() == ["lost-stop"]

    record = second.get_job("lost-stop")
    assert record is not None
    assert record["actionResult"] == "SUCCESS", record["jobOutput"]
    assert record["status"] == "STOPPED"
    assert local_path(record["lastSavePoint"]) == local_path(location)
    assert record["jobOutput"] == f"Savepoint completed. Path: {record['lastSavePoint']}"
    history = second.savepoints("lost-stop")
    assert len(history) == 2
    assert local_path(history[1]) == local_path(older["lastSavePoint"])
    assert (local_path(location) / "_metadata").is_file()


def test_recover_finds_savepoint_of_running_job(
    make_engine: Callable[..., Engine],
    job_request: Request,
    rest_url: str,
    store_dir: Path,
    savepoint_dir: Path,
) -> None:
    engine = make_engine()
    created = engine.run(job_request("lost-savepoint", "NEW"))
    assert created["actionResult"] == "SUCCESS", created["jobOutput"]
    triggered_at = utc_now()
    engine.begin({"jobName": "lost-savepoint", "action": "SAVEPOINT"})
    location = savepoint_by_flink(rest_url, created["jobId"], str(savepoint_dir), stop=False)
    forget_trigger(store_dir, "lost-savepoint", "SAVEPOINT", str(savepoint_dir), triggered_at)

    second = make_engine()
    assert second.recover() == ["lost-savepoint"]

    record = second.get_job("lost-savepoint")
    assert record is not None
    assert record["actionResult"] == "SUCCESS", record["jobOutput"]
    assert record["status"] == "RUNNING"
    assert local_path(record["lastSavePoint"]) == local_path(location)
    assert record["jobOutput"] == f"Savepoint completed. Path: {record['lastSavePoint']}"


def test_recover_names_remote_savepoint_directory(
    make_engine: Callable[..., Engine], store_dir: Path
) -> None:
    flink_job_id = new_flink_id()
    directory = "abfs://savepoints@account.dfs.core.windows.net/jobs"
    JobStore(store_dir).save(
        {
            "jobName": "remote-stop",
            "jobId": flink_job_id,
            "status": "RUNNING",
            "action": "STOP",
            "actionResult": "IN_PROGRESS",
            "step": "stop savepoint triggered",
            "pendingTrigger": {
                "triggerId": new_flink_id(),
                "flinkJobId": flink_job_id,
                "kind": "STOP",
                "directory": directory,
                "triggeredAt": "2026-12-04T12:00:00.000Z",
            },
        }
    )

    engine = make_engine()
    assert engine.recover() == ["remote-stop"]

    record = engine.get_job("remote-stop")
    assert record is not None
    assert record["actionResult"] == "FAILED"
    assert (
        f"if {directory} contains a savepoint-{flink_job_id[:6]}-* folder with a _metadata "
        "file written after 2026-12-04T12:00:00.000Z, give its path to START as savePointName."
    ) in record["jobOutput"]
    assert "lastSavePoint" not in record
