"""The full lifecycle of a job on a real Flink cluster, with proof that state survives."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from flink_task.engine import Engine
from tests.engine.flinkchecks import (
    job_state,
    local_path,
    metric_at_least,
    restored_path,
    uploaded_jars,
    wait_for_completed_checkpoint,
    wait_for_state,
)

pytestmark = pytest.mark.flink


def test_full_lifecycle_keeps_state(
    engine: Engine, job_request: Callable[..., dict[str, Any]], rest_url: str
) -> None:
    name = "lifecycle"

    created = engine.run(job_request(name, "NEW"))
    assert created["actionResult"] == "SUCCESS", created["jobOutput"]
    assert created["status"] == "RUNNING"
    assert created["jobOutput"] == f"Job {created['jobId']} is RUNNING"
    assert uploaded_jars(rest_url) == []
    metric_at_least(rest_url, created["jobId"], "maxCount", 10)

    saved = engine.run({"jobName": name, "action": "SAVEPOINT"})
    assert saved["actionResult"] == "SUCCESS", saved["jobOutput"]
    assert saved["status"] == "RUNNING"
    first_savepoint = saved["lastSavePoint"]
    assert saved["jobOutput"] == f"Savepoint completed. Path: {first_savepoint}"

    count_before_stop = metric_at_least(rest_url, created["jobId"], "maxCount", 20)
    stopped = engine.run({"jobName": name, "action": "STOP"})
    assert stopped["actionResult"] == "SUCCESS", stopped["jobOutput"]
    assert stopped["status"] == "STOPPED"
    stop_savepoint = stopped["lastSavePoint"]
    assert stopped["jobOutput"] == f"Savepoint completed. Path: {stop_savepoint}"
    assert job_state(rest_url, created["jobId"]) == "FINISHED"

    listed = engine.run({"jobName": name, "action": "LIST_SAVEPOINT"})
    assert listed["actionResult"] == "SUCCESS"
    assert listed["jobOutput"].splitlines() == [stop_savepoint, first_savepoint]
    assert listed["status"] == "STOPPED"

    started = engine.run({"jobName": name, "action": "START"})
    assert started["actionResult"] == "SUCCESS", started["jobOutput"]
    assert started["status"] == "RUNNING"
    assert started["jobId"] != created["jobId"]
    assert restored_path(rest_url, started["jobId"]) == stop_savepoint
    assert metric_at_least(rest_url, started["jobId"], "restoredKeys", 1) >= 1
    assert metric_at_least(rest_url, started["jobId"], "maxCount", count_before_stop + 1)

    count_before_update = metric_at_least(rest_url, started["jobId"], "maxCount", 1)
    updated = engine.run(job_request(name, "UPDATE", version="v2"))
    assert updated["actionResult"] == "SUCCESS", updated["jobOutput"]
    assert updated["status"] == "RUNNING"
    assert updated["jarName"] == "flink-task-sample-v2.jar"
    update_savepoint = updated["lastSavePoint"]
    assert update_savepoint not in (stop_savepoint, first_savepoint)
    assert restored_path(rest_url, updated["jobId"]) == update_savepoint
    assert metric_at_least(rest_url, updated["jobId"], "version", 2) == 2
    assert metric_at_least(rest_url, updated["jobId"], "restoredKeys", 1) >= 1
    assert metric_at_least(rest_url, updated["jobId"], "maxCount", count_before_update + 1)
    assert uploaded_jars(rest_url) == []

    stateless = engine.run(job_request(name, "STATELESS_UPDATE", version="v1"))
    assert stateless["actionResult"] == "SUCCESS", stateless["jobOutput"]
    assert stateless["status"] == "RUNNING"
    assert restored_path(rest_url, stateless["jobId"], wait=0) is None
    assert job_state(rest_url, updated["jobId"]) == "CANCELED"
    assert metric_at_least(rest_url, stateless["jobId"], "version", 1) == 1

    cancelled = engine.run({"jobName": name, "action": "CANCEL"})
    assert cancelled["actionResult"] == "SUCCESS", cancelled["jobOutput"]
    assert cancelled["status"] == "CANCELLED"
    assert cancelled["jobOutput"] == f"Job {stateless['jobId']} is CANCELLED"
    assert job_state(rest_url, stateless["jobId"]) == "CANCELED"

    history = engine.savepoints(name)
    deleted = engine.run({"jobName": name, "action": "DELETE"})
    assert deleted["actionResult"] == "SUCCESS"
    assert engine.get_job(name) is None
    assert [job["jobName"] for job in engine.list_jobs()] == []
    assert history == [update_savepoint, stop_savepoint, first_savepoint]
    for path in history:
        assert local_path(path).is_dir(), f"savepoint {path} was deleted"


def test_last_state_update_uses_checkpoint(
    engine: Engine, job_request: Callable[..., dict[str, Any]], rest_url: str, tmp_path: Any
) -> None:
    retained = {
        "execution.checkpointing.dir": (tmp_path / "checkpoints").as_uri(),
        "execution.checkpointing.externalized-checkpoint-retention": "RETAIN_ON_CANCELLATION",
    }
    name = "last-state"
    args = "--rate 50 --keys 4 --checkpoint-interval 300"
    created = engine.run(job_request(name, "NEW", args=args, configuration=retained))
    assert created["actionResult"] == "SUCCESS", created["jobOutput"]
    metric_at_least(rest_url, created["jobId"], "maxCount", 10)
    wait_for_completed_checkpoint(rest_url, created["jobId"])

    updated = engine.run(
        job_request(name, "LAST_STATE_UPDATE", version="v2", args=args, configuration=retained)
    )

    assert updated["actionResult"] == "SUCCESS", updated["jobOutput"]
    assert updated["status"] == "RUNNING"
    assert updated.get("lastSavePoint") is None  # no savepoint was taken
    restored = restored_path(rest_url, updated["jobId"])
    assert restored is not None
    assert f"/{created['jobId']}/chk-" in restored
    retained = sorted((tmp_path / "checkpoints" / created["jobId"]).glob("chk-*"))
    assert [folder.name for folder in retained] == [restored.rsplit("/", 1)[1]]
    assert job_state(rest_url, created["jobId"]) == "CANCELED"
    assert metric_at_least(rest_url, updated["jobId"], "restoredKeys", 1) >= 1
    assert metric_at_least(rest_url, updated["jobId"], "version", 2) == 2


def test_re_launch_failed_job_from_checkpoint(
    engine: Engine, job_request: Callable[..., dict[str, Any]], rest_url: str, tmp_path: Any
) -> None:
    configuration = {
        "execution.checkpointing.dir": (tmp_path / "checkpoints").as_uri(),
        "execution.checkpointing.externalized-checkpoint-retention": "RETAIN_ON_CANCELLATION",
        "restart-strategy.type": "none",
    }
    name = "relaunch"
    args = "--rate 50 --keys 4 --checkpoint-interval 300 --fail-after 400"
    created = engine.run(job_request(name, "NEW", args=args, configuration=configuration))
    assert created["actionResult"] == "SUCCESS", created["jobOutput"]
    wait_for_state(rest_url, created["jobId"], "FAILED")

    relaunched = engine.run({"jobName": name, "action": "RE_LAUNCH"})

    assert relaunched["actionResult"] == "SUCCESS", relaunched["jobOutput"]
    assert relaunched["status"] == "RUNNING"
    assert relaunched["jobId"] != created["jobId"]
    restored = restored_path(rest_url, relaunched["jobId"])
    assert restored is not None
    assert f"/{created['jobId']}/chk-" in restored
