"""Failed actions and Flink's traps on a real cluster: each ends FAILED with a clear cause."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests

from flink_task.engine import ActionConflictError, Engine, JobStore, Timeouts
from tests.engine.flinkchecks import (
    job_state,
    jobs_with_id,
    metric_at_least,
    restored_path,
    uploaded_jars,
)

pytestmark = pytest.mark.flink

Request = Callable[..., dict[str, Any]]


def start_job(engine: Engine, job_request: Request, name: str, **fields: Any) -> dict[str, Any]:
    created = engine.run(job_request(name, "NEW", **fields))
    assert created["actionResult"] == "SUCCESS", created["jobOutput"]
    return created


def test_savepoint_failure_cause_is_failure(
    engine: Engine, job_request: Request, rest_url: str
) -> None:
    created = start_job(engine, job_request, "savepoint-fails")

    # Flink accepts the trigger, then reports COMPLETED with a failure-cause: /proc is read-only.
    result = engine.run(
        {
            "jobName": "savepoint-fails",
            "action": "SAVEPOINT",
            "flinkConfiguration": {"savepoint.directory": "file:///proc/flink-task-savepoints"},
        }
    )

    assert result["actionResult"] == "FAILED"
    assert result["jobOutput"].startswith(f"Savepoint of job {created['jobId']} failed: ")
    assert "at org.apache" not in result["jobOutput"]
    assert result["status"] == "RUNNING"
    assert "lastSavePoint" not in result
    assert engine.savepoints("savepoint-fails") == []
    assert job_state(rest_url, created["jobId"]) == "RUNNING"


def test_stop_without_savepoint_directory(
    engine: Engine, job_request: Request, rest_url: str
) -> None:
    created = start_job(
        engine, job_request, "no-directory", configuration={"savepoint.directory": None}
    )

    result = engine.run({"jobName": "no-directory", "action": "STOP"})

    assert result["actionResult"] == "FAILED"
    assert result["jobOutput"].startswith("No savepoint directory for job no-directory")
    assert result["status"] == "RUNNING"
    assert job_state(rest_url, created["jobId"]) == "RUNNING"


def test_stop_uses_engine_default_directory(
    make_engine: Callable[..., Engine], job_request: Request, tmp_path: Path
) -> None:
    default = tmp_path / "default-savepoints"
    engine = make_engine(default_savepoint_dir=default.as_uri())
    start_job(engine, job_request, "default-dir", configuration={"savepoint.directory": None})

    stopped = engine.run({"jobName": "default-dir", "action": "STOP"})

    assert stopped["actionResult"] == "SUCCESS", stopped["jobOutput"]
    assert stopped["lastSavePoint"].startswith(f"file:{default}/savepoint-")


def test_start_unknown_savepoint_name(engine: Engine, job_request: Request) -> None:
    start_job(engine, job_request, "unknown-name")
    stopped = engine.run({"jobName": "unknown-name", "action": "STOP"})
    assert stopped["actionResult"] == "SUCCESS", stopped["jobOutput"]

    result = engine.run(
        {"jobName": "unknown-name", "action": "START", "savePointName": "savepoint-000000-none"}
    )

    assert result["actionResult"] == "FAILED"
    assert result["jobOutput"].startswith("Savepoint savepoint-000000-none not found")
    assert result["status"] == "STOPPED"
    assert result["lastSavePoint"] == stopped["lastSavePoint"]


def test_start_from_savepoint_by_name(engine: Engine, job_request: Request, rest_url: str) -> None:
    start_job(engine, job_request, "by-name")
    first = engine.run({"jobName": "by-name", "action": "SAVEPOINT"})["lastSavePoint"]
    stopped = engine.run({"jobName": "by-name", "action": "STOP"})
    assert stopped["actionResult"] == "SUCCESS", stopped["jobOutput"]

    started = engine.run(
        {"jobName": "by-name", "action": "START", "savePointName": Path(first).name}
    )

    assert started["actionResult"] == "SUCCESS", started["jobOutput"]
    assert restored_path(rest_url, started["jobId"]) == first


def test_failed_restore_reports_ghost_job(
    engine: Engine, job_request: Request, rest_url: str, savepoint_dir: Path
) -> None:
    start_job(engine, job_request, "ghost")
    stopped = engine.run({"jobName": "ghost", "action": "STOP"})
    assert stopped["actionResult"] == "SUCCESS", stopped["jobOutput"]
    missing = (savepoint_dir / "savepoint-000000-missing").as_uri()

    result = engine.run({"jobName": "ghost", "action": "START", "savePointName": missing})

    assert result["actionResult"] == "FAILED"
    assert "FileNotFoundException" in result["jobOutput"]
    assert "at org.apache" not in result["jobOutput"]
    assert result["status"] == "FAILED"
    assert job_state(rest_url, result["jobId"]) == "FAILED"
    assert result["lastSavePoint"] == stopped["lastSavePoint"]
    assert uploaded_jars(rest_url) == []


def test_update_with_incompatible_state_rolls_back(
    engine: Engine, job_request: Request, rest_url: str
) -> None:
    created = start_job(engine, job_request, "rollback")
    saved = engine.run({"jobName": "rollback", "action": "SAVEPOINT"})
    metric_at_least(rest_url, created["jobId"], "maxCount", 5)

    result = engine.run(
        job_request("rollback", "UPDATE", version="v2", args="--rate 50 --state-uid other")
    )

    assert result["actionResult"] == "FAILED"
    output = result["jobOutput"]
    assert output.startswith("UPDATE failed: Job ")
    assert "IllegalStateException" in output
    assert "Rolled back: the previous version (jar flink-task-sample-v1.jar)" in output
    assert result["status"] == "RUNNING"
    assert result["jarName"] == "flink-task-sample-v1.jar"
    assert result["args"] == "--rate 50 --keys 4"
    update_savepoint = result["lastSavePoint"]
    assert engine.savepoints("rollback") == [update_savepoint, saved["lastSavePoint"]]
    assert restored_path(rest_url, result["jobId"]) == update_savepoint
    assert metric_at_least(rest_url, result["jobId"], "version", 1) == 1
    assert metric_at_least(rest_url, result["jobId"], "restoredKeys", 1) >= 1
    assert uploaded_jars(rest_url) == []


def test_update_ignoring_unclaimed_state_succeeds(
    engine: Engine, job_request: Request, rest_url: str
) -> None:
    start_job(engine, job_request, "ignore-state")
    ignore = {"execution.savepoint.ignore-unclaimed-state": "true"}

    result = engine.run(
        job_request(
            "ignore-state",
            "UPDATE",
            version="v2",
            args="--rate 50 --state-uid other",
            configuration=ignore,
        )
    )

    assert result["actionResult"] == "SUCCESS", result["jobOutput"]
    assert result["status"] == "RUNNING"
    assert restored_path(rest_url, result["jobId"]) == result["lastSavePoint"]
    assert metric_at_least(rest_url, result["jobId"], "version", 2) == 2
    metric_at_least(rest_url, result["jobId"], "maxCount", 5)
    assert metric_at_least(rest_url, result["jobId"], "restoredKeys", 0) == 0


def test_new_with_missing_jar(engine: Engine, job_request: Request, rest_url: str) -> None:
    result = engine.run(job_request("missing-jar", "NEW", jarName="no-such-job.jar"))

    assert result["actionResult"] == "FAILED"
    assert result["jobOutput"].startswith("jar no-such-job.jar not found in ")
    assert result["status"] == "FAILED"
    assert "jobId" not in result
    assert uploaded_jars(rest_url) == []


def test_new_with_missing_class(engine: Engine, job_request: Request, rest_url: str) -> None:
    result = engine.run(
        job_request("missing-class", "NEW", entryClass="io.flinktask.samples.Missing")
    )

    assert result["actionResult"] == "FAILED"
    assert "ClassNotFoundException: io.flinktask.samples.Missing" in result["jobOutput"]
    assert "at org.apache" not in result["jobOutput"]
    assert result["status"] == "FAILED"
    assert uploaded_jars(rest_url) == []


def test_parallelism_above_slots_rejected(
    engine: Engine, job_request: Request, rest_url: str
) -> None:
    slots = requests.get(f"{rest_url}/overview", timeout=30).json()["slots-total"]
    jobs_before = requests.get(f"{rest_url}/jobs/overview", timeout=30).json()["jobs"]
    too_many = {"parallelism": str(slots + 1)}

    started = time.monotonic()
    result = engine.run(job_request("too-parallel", "NEW", configuration=too_many))
    elapsed = time.monotonic() - started

    assert result["actionResult"] == "FAILED"
    assert result["jobOutput"] == (
        f"Requested parallelism {slots + 1} exceeds the {slots} task slot(s) of the cluster "
        "(1 task manager(s)), so the job could never run. Lower flinkConfiguration.parallelism "
        "or add task managers. Nothing was submitted."
    )
    assert result["status"] == "FAILED"
    assert elapsed < 10
    jobs_after = requests.get(f"{rest_url}/jobs/overview", timeout=30).json()["jobs"]
    assert len(jobs_after) == len(jobs_before)
    assert uploaded_jars(rest_url) == []


def test_job_without_free_slots_fails(
    make_engine: Callable[..., Engine], job_request: Request, rest_url: str
) -> None:
    slots = requests.get(f"{rest_url}/overview", timeout=30).json()["slots-total"]
    start_job(
        make_engine(), job_request, "slot-hog", configuration={"parallelism": str(slots - 1)}
    )
    engine = make_engine(timeouts=Timeouts(start=8, terminal=30, poll_interval=0.2))

    result = engine.run(job_request("no-slots", "NEW", configuration={"parallelism": "2"}))

    assert result["actionResult"] == "FAILED"
    assert "did not get all tasks RUNNING within 8 s" in result["jobOutput"]
    assert "0 free task slot" in result["jobOutput"]
    assert "the job was cancelled" in result["jobOutput"]
    assert result["status"] == "FAILED"
    job_id = result["jobOutput"].split()[1]
    assert [job["state"] for job in jobs_with_id(rest_url, job_id)] in (
        [["CANCELLING"], ["CANCELED"]]
    )


def test_restarting_job_fails_fast(engine: Engine, job_request: Request, rest_url: str) -> None:
    restarts = {
        "restart-strategy.type": "fixed-delay",
        "restart-strategy.fixed-delay.attempts": "1000",
        "restart-strategy.fixed-delay.delay": "1 s",
    }

    started = time.monotonic()
    result = engine.run(
        job_request("restarts", "NEW", configuration=restarts, args="--rate 50 --fail-after 0")
    )
    elapsed = time.monotonic() - started

    assert result["actionResult"] == "FAILED"
    assert (
        "failed while starting and was restarting (the job was cancelled and is CANCELED)"
        in (result["jobOutput"])
    )
    assert "failing on open as requested by --fail-after 0" in result["jobOutput"]
    assert result["status"] == "FAILED"
    assert elapsed < 30
    job_id = result["jobOutput"].split()[1]
    assert result["jobId"] == job_id
    assert [job["state"] for job in jobs_with_id(rest_url, job_id)] in (
        [["CANCELLING"], ["CANCELED"]]
    )


def test_second_action_while_in_progress(engine: Engine, job_request: Request) -> None:
    start_job(engine, job_request, "busy")
    engine.begin({"jobName": "busy", "action": "SAVEPOINT"})

    with pytest.raises(ActionConflictError, match="SAVEPOINT action in progress"):
        engine.begin({"jobName": "busy", "action": "STOP"})

    saved = engine.execute("busy")
    assert saved["actionResult"] == "SUCCESS", saved["jobOutput"]
    stopped = engine.run({"jobName": "busy", "action": "STOP"})
    assert stopped["actionResult"] == "SUCCESS", stopped["jobOutput"]


def test_stop_on_stopped_job_rejected(engine: Engine, job_request: Request) -> None:
    start_job(engine, job_request, "stopped-twice")
    assert engine.run({"jobName": "stopped-twice", "action": "STOP"})["status"] == "STOPPED"

    with pytest.raises(ActionConflictError, match="STOP needs job stopped-twice to be RUNNING"):
        engine.begin({"jobName": "stopped-twice", "action": "STOP"})


def test_delete_running_job_rejected(engine: Engine, job_request: Request) -> None:
    start_job(engine, job_request, "still-running")

    with pytest.raises(ActionConflictError, match="STOP or CANCEL it before DELETE"):
        engine.begin({"jobName": "still-running", "action": "DELETE"})


def test_cancel_of_starving_new(
    make_engine: Callable[..., Engine], job_request: Request, rest_url: str, store_dir: Path
) -> None:
    slots = requests.get(f"{rest_url}/overview", timeout=30).json()["slots-total"]
    start_job(make_engine(), job_request, "slot-hog", configuration={"parallelism": str(slots)})
    engine = make_engine(timeouts=Timeouts(start=120, terminal=30, poll_interval=0.2))
    engine.begin(job_request("starving", "NEW", configuration={"parallelism": "2"}))
    outcome: dict[str, Any] = {}
    worker = threading.Thread(target=lambda: outcome.update(engine.execute("starving")))
    started = time.monotonic()
    worker.start()
    try:
        deadline = time.monotonic() + 60
        waiting = JobStore(store_dir).load("starving") or {}
        while waiting.get("step") != "waiting for RUNNING" and time.monotonic() < deadline:
            time.sleep(0.2)
            waiting = JobStore(store_dir).load("starving") or {}
        assert waiting.get("step") == "waiting for RUNNING", waiting
        assert waiting["jobOutput"].startswith("Waiting up to 120 s for all tasks of job")

        cancel = engine.begin({"jobName": "starving", "action": "CANCEL"})
    finally:
        worker.join(timeout=90)

    assert not worker.is_alive()
    assert time.monotonic() - started < 60
    assert outcome["actionResult"] == "FAILED"
    job_id = waiting["pendingJobId"]
    assert outcome["jobOutput"] == f"Job {job_id} was cancelled by CANCEL before all its tasks ran"
    assert cancel["action"] == "CANCEL"
    assert cancel["actionResult"] == "IN_PROGRESS"
    cancelled = engine.execute("starving")
    assert cancelled["actionResult"] == "SUCCESS", cancelled["jobOutput"]
    assert cancelled["status"] == "CANCELLED"
    assert cancelled["jobId"] == job_id
    assert job_state(rest_url, job_id) == "CANCELED"
