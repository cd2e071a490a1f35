"""Job listing: statuses read again from Flink, and corrupt record files left out."""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests

from flink_task.engine import CorruptRecordError, Engine, FlinkRestClient, JarResolver, JobStore
from tests.engine.flinkchecks import wait_for_state

Request = Callable[..., dict[str, Any]]


def closed_port_url() -> str:
    """Return a loopback URL where nothing listens (the port was free a moment ago)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def write_record(store_dir: Path, name: str, **fields: Any) -> None:
    JobStore(store_dir).save({"jobName": name, "actionResult": "SUCCESS", **fields})


@pytest.mark.flink
def test_list_reads_cancelled_status(
    engine: Engine, job_request: Request, rest_url: str, store_dir: Path
) -> None:
    created = engine.run(job_request("cancelled-behind", "NEW"))
    assert created["actionResult"] == "SUCCESS", created["jobOutput"]
    job_id = created["jobId"]
    requests.patch(f"{rest_url}/jobs/{job_id}", params={"mode": "cancel"}, timeout=30)
    wait_for_state(rest_url, job_id, "CANCELED")

    listed = {job["jobName"]: job for job in engine.list_jobs()}
    fetched = engine.get_job("cancelled-behind")

    assert listed["cancelled-behind"]["status"] == "CANCELLED"
    assert fetched is not None
    assert fetched["status"] == "CANCELLED"
    stored = JobStore(store_dir).load("cancelled-behind")
    assert stored is not None
    assert stored["status"] == "CANCELLED"
    assert not (store_dir / "cancelled-behind.lock").exists()


@pytest.mark.flink
def test_list_marks_unknown_job_failed(engine: Engine, store_dir: Path) -> None:
    write_record(store_dir, "forgotten", status="RUNNING", jobId="0" * 32)

    listed = engine.list_jobs()

    assert [job["status"] for job in listed] == ["FAILED"]


@pytest.mark.flink
def test_list_skips_locked_record(engine: Engine, store_dir: Path) -> None:
    write_record(store_dir, "locked", status="RUNNING", jobId="0" * 32)
    store = JobStore(store_dir)

    with store.lock("locked", "test action"):
        listed = engine.list_jobs()

    assert [job["status"] for job in listed] == ["RUNNING"]
    stored = store.load("locked")
    assert stored is not None
    assert stored["status"] == "RUNNING"


def test_list_keeps_status_without_flink(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store_dir = tmp_path / "records"
    for index in range(3):
        write_record(store_dir, f"job-{index}", status="RUNNING", jobId=f"{index}" * 32)
    engine = Engine(
        flink=FlinkRestClient(closed_port_url(), attempts=1),
        store=JobStore(store_dir),
        jars=JarResolver(),
    )

    with caplog.at_level(logging.WARNING, logger="flink_task.engine.actions"):
        listed = engine.list_jobs()

    assert [job["status"] for job in listed] == ["RUNNING"] * 3
    warnings = [entry for entry in caplog.records if "Could not read Flink" in entry.message]
    assert len(warnings) == 1
    assert "3 RUNNING job(s)" in warnings[0].getMessage()


def test_list_skips_corrupt_record(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store_dir = tmp_path / "records"
    write_record(store_dir, "healthy", status="STOPPED")
    corrupt = store_dir / "broken.json"
    corrupt.write_text('{"jobName": "broken", garbage')
    wrong_shape = store_dir / "listed.json"
    wrong_shape.write_text("[]")
    engine = Engine(
        flink=FlinkRestClient(closed_port_url(), attempts=1),
        store=JobStore(store_dir),
        jars=JarResolver(),
    )

    with caplog.at_level(logging.ERROR, logger="flink_task.engine.actions"):
        listed = engine.list_jobs()

    assert [job["jobName"] for job in listed] == ["healthy"]
    errors = [entry.getMessage() for entry in caplog.records if entry.levelno == logging.ERROR]
    assert len(errors) == 1
    assert str(corrupt) in errors[0]
    assert str(wrong_shape) in errors[0]
    assert corrupt.read_text() == '{"jobName": "broken", garbage'
    assert wrong_shape.read_text() == "[]"
    with pytest.raises(CorruptRecordError, match=r"broken\.json"):
        engine.get_job("broken")
    assert engine.recover() == []
    assert corrupt.read_text() == '{"jobName": "broken", garbage'
