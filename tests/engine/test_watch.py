"""Reading Flink's savepoint results and task counts (pure functions, no cluster)."""

from __future__ import annotations

import socket

import pytest

from flink_task.engine.records import ActionFailure
from flink_task.engine.rest import FlinkRestClient
from flink_task.engine.waits import Timeouts
from flink_task.engine.watch import (
    JobWatcher,
    all_tasks_running,
    savepoint_location,
    task_summary,
)

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


def checkpoint(number: int, *, discarded: bool = False, status: str = "COMPLETED") -> dict:
    return {
        "id": number,
        "status": status,
        "external_path": f"file:/cp/job/chk-{number}",
        "discarded": discarded,
    }


class StatisticsClient:
    """Serves a list of checkpoint statistics, one per call, as Flink's cache would."""

    def __init__(self, replies: list[dict]) -> None:
        self.replies = replies

    def checkpoints(self, job_id: str) -> dict:
        return self.replies.pop(0) if len(self.replies) > 1 else self.replies[0]


def watcher(replies: list[dict]) -> JobWatcher:
    clock = {"now": 0.0}

    def sleep(seconds: float) -> None:
        clock["now"] += seconds

    timeouts = Timeouts(poll_interval=1.0, log_interval=100.0)
    client = StatisticsClient(replies)
    return JobWatcher(client, timeouts, clock=lambda: clock["now"], sleep=sleep)  # type: ignore[arg-type]


def test_newest_checkpoint_from_history() -> None:
    statistics = {
        "latest": {"completed": checkpoint(10, discarded=True)},
        "history": [checkpoint(12, status="IN_PROGRESS"), checkpoint(11), checkpoint(10)],
    }

    assert watcher([statistics]).latest_checkpoint(JOB) == "file:/cp/job/chk-11"


def test_discarded_checkpoint_waits_for_fresh_statistics() -> None:
    stale = {"latest": {"completed": checkpoint(10, discarded=True)}}
    fresh = {"latest": {"completed": checkpoint(11)}}

    assert watcher([stale, stale, fresh]).await_latest_checkpoint(JOB) == "file:/cp/job/chk-11"


def test_unaddressable_checkpoint_is_not_restorable() -> None:
    in_memory = checkpoint(3)
    in_memory["external_path"] = "<checkpoint-not-externally-addressable>"

    assert watcher([{"latest": {"completed": in_memory}}]).await_latest_checkpoint(JOB) is None


def test_running_job_with_discarded_newest_has_checkpoint() -> None:
    subsumed = {
        "counts": {"completed": 4},
        "latest": {"completed": checkpoint(10, discarded=True)},
        "history": [checkpoint(11, status="IN_PROGRESS"), checkpoint(10, discarded=True)],
    }

    assert watcher([subsumed]).has_completed_checkpoint(JOB)
    assert watcher([subsumed]).latest_checkpoint(JOB) is None


def test_job_without_checkpoints_has_none() -> None:
    empty = {"counts": {"completed": 0}, "latest": {"completed": None}, "history": []}

    assert not watcher([empty]).has_completed_checkpoint(JOB)


class ClusterClient:
    """Serves a fixed /overview and /jobmanager/config, as a cluster of that kind would."""

    def __init__(self, overview: dict, configuration: dict[str, str]) -> None:
        self._overview = overview
        self._configuration = configuration

    def overview(self) -> dict:
        return self._overview

    def jobmanager_config(self) -> dict[str, str]:
        return self._configuration


def slot_watcher(overview: dict, configuration: dict[str, str] | None = None) -> JobWatcher:
    client = ClusterClient(overview, configuration or {})
    return JobWatcher(client, Timeouts())  # type: ignore[arg-type]


STANDALONE = {"taskmanagers": 1, "slots-total": 4, "slots-available": 4}


def test_parallelism_above_standalone_slots() -> None:
    with pytest.raises(ActionFailure, match="Requested parallelism 50 exceeds the 4 task slot"):
        slot_watcher(STANDALONE).check_slots(50)


def test_parallelism_within_slots_accepted() -> None:
    slot_watcher(STANDALONE).check_slots(4)


@pytest.mark.parametrize(
    "configuration",
    [
        {"execution.target": "kubernetes-session"},
        {"execution.target": "yarn-session"},
        {"kubernetes.cluster-id": "flink-session"},
        {"yarn.application.id": "application_1_0001"},
        {"scheduler-mode": "reactive"},
        {"jobmanager.scheduler": "adaptive"},
    ],
)
def test_growing_cluster_not_checked(configuration: dict[str, str]) -> None:
    slot_watcher(STANDALONE, configuration).check_slots(50)


def test_cluster_without_task_managers_warns(caplog: pytest.LogCaptureFixture) -> None:
    slot_watcher({"taskmanagers": 0, "slots-total": 0}).check_slots(50)

    assert "Could not tell the cluster's task slots" in caplog.text


def test_unreachable_cluster_warns(caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = FlinkRestClient(f"http://127.0.0.1:{port}", attempts=1)

    JobWatcher(client, Timeouts()).check_slots(50)

    assert "Could not read the cluster's task slots" in caplog.text
