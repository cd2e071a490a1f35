"""The README's main job through the task with target flink, on the session's real Flink.

Every step is a separate run of ``flink_task.cli.main`` with its inputs in ``INPUT_*``
variables, so the job record survives between runs only in ``stateDirectory``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from flink_task.samplejobs import ENTRY_CLASS, read_job_metric, wait_for_job_metric
from tests.e2e.test_task_lifecycle import restored_from, same_path
from tests.flinktarget.conftest import JOB

pytestmark = pytest.mark.flink


def test_lifecycle_keeps_state(
    make_task: Any,
    flink_url: str,
    jar_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    savepoints = tmp_path / "savepoints"
    task = make_task(flinkUrl=flink_url, stateDirectory=str(tmp_path / "state"), jobName=JOB)

    code, new, err = task.run(
        capsys,
        "NEW",
        jobJarDirectory=jar_dir.as_uri(),
        jarName="flink-task-sample-v1.jar",
        entryClass=ENTRY_CLASS,
        args="--rate 50 --keys 4 --label 'first version'",
        parallelism="1",
        savepointDirectory=savepoints.as_uri(),
    )
    assert code == 0, err
    assert new["status"] == "RUNNING"
    assert new["actionResult"] == "SUCCESS"
    wait_for_job_metric(flink_url, new["jobId"], "maxCount", lambda value: value >= 20)

    code, savepoint, err = task.run(capsys, "SAVEPOINT")
    assert code == 0, err
    assert savepoint["jobOutput"].startswith("Savepoint completed. Path: ")

    code, listed, err = task.run(capsys, "LIST_SAVEPOINT")
    assert code == 0, err
    assert savepoint["lastSavePoint"] in listed["jobOutput"].splitlines()

    code, stopped, err = task.run(capsys, "STOP")
    assert code == 0, err
    assert stopped["status"] == "STOPPED"
    stop_savepoint = stopped["lastSavePoint"]
    assert stopped["jobOutput"] == f"Savepoint completed. Path: {stop_savepoint}"

    code, started, err = task.run(capsys, "START")
    assert code == 0, err
    assert started["status"] == "RUNNING"
    restored = restored_from(flink_url, started["jobId"])
    assert restored is not None
    assert same_path(restored, stop_savepoint)
    wait_for_job_metric(flink_url, started["jobId"], "restoredKeys", lambda value: value >= 1)

    count_before_update = read_job_metric(flink_url, started["jobId"], "maxCount") or 0
    code, updated, err = task.run(
        capsys, "UPDATE", jarName="flink-task-sample-v2.jar", args="--rate 50 --keys 4"
    )
    assert code == 0, err
    assert updated["status"] == "RUNNING"
    update_savepoint = updated["lastSavePoint"]
    assert update_savepoint != stop_savepoint
    restored = restored_from(flink_url, updated["jobId"])
    assert restored is not None
    assert same_path(restored, update_savepoint)
    assert wait_for_job_metric(flink_url, updated["jobId"], "version", lambda value: value == 2)
    wait_for_job_metric(
        flink_url, updated["jobId"], "maxCount", lambda value: value > count_before_update
    )

    code, stateless, err = task.run(capsys, "STATELESS_UPDATE")
    assert code == 0, err
    assert restored_from(flink_url, stateless["jobId"]) is None

    code, jobs, err = task.run(capsys, "LIST", "jobs", "--json", jobName="")
    assert code == 0, err
    assert [(job["jobName"], job["flinkState"]) for job in jobs["jobs"]] == [(JOB, "RUNNING")]

    code, _, err = task.run(capsys, "LIST", "jobs", jobName="")
    assert code == 0, err
    header, row = task.stdout.splitlines()
    assert header.split() == ["jobName", "status", "flinkState", "action", "actionResult", "jobId"]
    assert row.split()[:3] == [JOB, "RUNNING", "RUNNING"]

    code, cancelled, err = task.run(capsys, "CANCEL")
    assert code == 0, err
    assert cancelled["status"] == "CANCELLED"

    code, deleted, err = task.run(capsys, "DELETE")
    assert code == 0, err
    assert deleted["actionResult"] == "SUCCESS"
    for path in (savepoint["lastSavePoint"], stop_savepoint, update_savepoint):
        assert Path(path.removeprefix("file:")).is_dir(), f"savepoint {path} was deleted"

    code, after, err = task.run(capsys, "LIST", jobName="")
    assert code == 0, err
    assert after["jobs"] == []


def test_failed_savepoint_keeps_job_running(
    make_task: Any,
    flink_url: str,
    jar_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Flink reports the savepoint COMPLETED with a failure cause; the action is FAILED."""
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the savepoint folder should be", encoding="utf-8")
    task = make_task(flinkUrl=flink_url, stateDirectory=str(tmp_path / "state"), jobName=JOB)
    code, new, err = task.run(
        capsys,
        "NEW",
        jobJarDirectory=str(jar_dir),
        jarName="flink-task-sample-v1.jar",
        entryClass=ENTRY_CLASS,
        parallelism="1",
    )
    assert code == 0, err

    code, failed, err = task.run(
        capsys, "SAVEPOINT", savepointDirectory=(blocker / "savepoints").as_uri()
    )

    assert code == 1
    assert failed["actionResult"] == "FAILED"
    assert failed["status"] == "RUNNING"
    assert failed["jobOutput"].startswith(f"Savepoint of job {new['jobId']} failed: ")
    assert "lastSavePoint" not in failed
    assert f"SAVEPOINT of job {JOB} FAILED" in err
