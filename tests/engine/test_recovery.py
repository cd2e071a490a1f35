"""Recovery after the process running an action stopped half-way (simulated on a real cluster)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from flink_task.engine import Engine, FlinkRestClient
from tests.engine.flinkchecks import job_state, jobs_with_id, uploaded_jars, wait_for_state

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
