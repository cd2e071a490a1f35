"""Reading Flink's savepoint results and task counts (pure functions, no cluster)."""

from __future__ import annotations

import pytest

from flink_task.engine.records import ActionFailure
from flink_task.engine.watch import all_tasks_running, savepoint_location, task_summary

JOB = "a" * 32


def test_location_of_completed_savepoint() -> None:
    operation = {"location": "file:/sp/savepoint-aaaaaa-1"}

    assert savepoint_location(JOB, operation) == "file:/sp/savepoint-aaaaaa-1"


def test_failure_cause_is_failure() -> None:
    operation = {
        "failure-cause": {
            "class": "java.util.concurrent.CompletionException",
            "stack-trace": (
                "java.util.concurrent.CompletionException: wrapped\n"
                "\tat org.example.A.run(A.java:1)\n"
                "Caused by: java.io.IOException: Failed to create savepoint directory\n"
                "\tat org.example.B.run(B.java:2)\n"
            ),
        }
    }

    with pytest.raises(ActionFailure) as raised:
        savepoint_location(JOB, operation)

    assert str(raised.value) == (
        f"Savepoint of job {JOB} failed: java.io.IOException: Failed to create savepoint directory"
    )


def test_failure_cause_without_stack() -> None:
    operation = {"failure-cause": {"class": "org.example.CheckpointException"}}

    with pytest.raises(ActionFailure, match=r"failed: org\.example\.CheckpointException"):
        savepoint_location(JOB, operation)


def test_savepoint_kept_when_stopping_failed() -> None:
    stack = (
        "org.apache.flink.runtime.scheduler.stopwithsavepoint.StopWithSavepointStoppingException:"
        " A savepoint has been created at: file:/sp/savepoint-aaaaaa-2, but the corresponding job"
        f" {JOB} failed during stopping. The savepoint is consistent.\n"
        "\tat org.example.C.run(C.java:3)\n"
    )
    operation = {"failure-cause": {"class": "x", "stack-trace": stack}}

    assert savepoint_location(JOB, operation) == "file:/sp/savepoint-aaaaaa-2"


def test_completed_without_location() -> None:
    with pytest.raises(ActionFailure, match="completed without a location"):
        savepoint_location(JOB, {})


def vertex(**tasks: int) -> dict[str, object]:
    counts = {"CREATED": 0, "SCHEDULED": 0, "DEPLOYING": 0, "RUNNING": 0, "FINISHED": 0}
    counts.update(tasks)
    return {"tasks": counts}


@pytest.mark.parametrize(
    ("vertices", "running"),
    [
        ([vertex(RUNNING=2), vertex(RUNNING=2)], True),
        ([vertex(RUNNING=2), vertex(FINISHED=1, RUNNING=1)], True),
        ([vertex(RUNNING=2), vertex(CREATED=2)], False),
        ([vertex(RUNNING=1, SCHEDULED=1)], False),
        ([vertex(RUNNING=1, DEPLOYING=1)], False),
        ([vertex()], False),
        ([], False),
    ],
)
def test_all_tasks_running(vertices: list[dict[str, object]], running: bool) -> None:
    assert all_tasks_running({"state": "RUNNING", "vertices": vertices}) is running


def test_task_summary() -> None:
    details = {"vertices": [vertex(RUNNING=2), vertex(CREATED=2, RUNNING=1)]}

    assert task_summary(details) == "CREATED 2, RUNNING 3"
    assert task_summary({}) == "none yet"
