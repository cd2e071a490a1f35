"""Job records of the Flink target in a local stateDirectory, on the session's real Flink.

Concurrent, cancelled and killed runs are real processes (``python -m flink_task``) that talk
to Flink through a loopback proxy. The proxy reports the new job as INITIALIZING until the
test clears ``hold_jobs``, so the first run stays in its wait for RUNNING as long as needed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from flink_task.samplejobs import ENTRY_CLASS
from tests.flinktarget.conftest import JOB
from tests.flinktarget.proxy import FlinkProxy

pytestmark = pytest.mark.flink

_WAIT_SECONDS = 60.0


def new_inputs(jar_dir: Path, savepoints: Path) -> dict[str, str]:
    return {
        "jobJarDirectory": str(jar_dir),
        "jarName": "flink-task-sample-v1.jar",
        "entryClass": ENTRY_CLASS,
        "args": "--rate 50 --keys 4",
        "parallelism": "1",
        "savepointDirectory": savepoints.as_uri(),
    }


class TaskProcess:
    """``python -m flink_task`` in its own process, with INPUT_* variables and log files."""

    def __init__(self, folder: Path, inputs: dict[str, str]) -> None:
        env = {name: value for name, value in os.environ.items() if not name.startswith("INPUT_")}
        env.update({f"INPUT_{name.upper()}": value for name, value in inputs.items()})
        self.stdout_path = folder / "task.out"
        self.stderr_path = folder / "task.err"
        with self.stdout_path.open("wb") as out, self.stderr_path.open("wb") as err:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "flink_task"], env=env, stdout=out, stderr=err
            )

    def wait(self, timeout: float = _WAIT_SECONDS) -> int:
        return self.process.wait(timeout=timeout)

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text(encoding="utf-8")

    @property
    def record(self) -> dict[str, Any]:
        return dict(json.loads(self.stdout_path.read_text(encoding="utf-8")))

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=30)


@pytest.fixture
def processes() -> Iterator[list[TaskProcess]]:
    started: list[TaskProcess] = []
    yield started
    for process in started:
        process.stop()


def read_record(state: Path) -> dict[str, Any]:
    return dict(json.loads((state / f"{JOB}.json").read_text(encoding="utf-8")))


def wait_for_step(state: Path, step: str, process: TaskProcess) -> dict[str, Any]:
    """Wait until the record of JOB is at ``step`` and return it."""
    deadline = time.monotonic() + _WAIT_SECONDS
    record: dict[str, Any] = {}
    while time.monotonic() < deadline:
        if process.process.poll() is not None:
            pytest.fail(f"the task ended with {process.process.returncode}: {process.stderr}")
        try:
            record = read_record(state)
        except (FileNotFoundError, ValueError):
            record = {}
        if record.get("step") == step:
            return record
        time.sleep(0.05)
    pytest.fail(f"record never reached step {step!r}: {record.get('step')}")


def flink_jobs_with_id(flink_url: str, job_id: str) -> list[dict[str, Any]]:
    jobs = requests.get(f"{flink_url}/jobs/overview", timeout=30).json()["jobs"]
    return [job for job in jobs if job["jid"] == job_id]


def start_held_new(
    tmp_path: Path,
    proxy: FlinkProxy,
    jar_dir: Path,
    processes: list[TaskProcess],
) -> tuple[TaskProcess, dict[str, Any]]:
    """Start NEW in another process and return it once it waits for its job to run."""
    state = tmp_path / "state"
    proxy.hold_jobs = True
    inputs = {
        "action": "NEW",
        "jobName": JOB,
        "flinkUrl": proxy.url,
        "stateDirectory": str(state),
        "timeoutMinutes": "2",
        **new_inputs(jar_dir, tmp_path / "savepoints"),
    }
    process = TaskProcess(tmp_path, inputs)
    processes.append(process)
    return process, wait_for_step(state, "waiting for RUNNING", process)


def test_second_run_rejected_while_first_runs(
    make_task: Any,
    flink_url: str,
    jar_dir: Path,
    tmp_path: Path,
    processes: list[TaskProcess],
    capsys: pytest.CaptureFixture[str],
) -> None:
    state = tmp_path / "state"
    with FlinkProxy(flink_url) as proxy:
        first, held = start_held_new(tmp_path, proxy, jar_dir, processes)
        before = (state / f"{JOB}.json").read_bytes()

        task = make_task(flinkUrl=flink_url, stateDirectory=str(state), jobName=JOB)
        code, _, err = task.run(capsys, "CANCEL")

        assert code == 1
        assert f"job {JOB} has a NEW action in progress" in err
        assert (state / f"{JOB}.json").read_bytes() == before
        proxy.hold_jobs = False
        assert first.wait() == 0, first.stderr
    assert first.record["status"] == "RUNNING"
    assert first.record["jobId"] == held["pendingJobId"]
    assert not (state / f"{JOB}.lock").exists()


def test_killed_run_reconciled(
    make_task: Any,
    flink_url: str,
    jar_dir: Path,
    tmp_path: Path,
    processes: list[TaskProcess],
    capsys: pytest.CaptureFixture[str],
) -> None:
    state = tmp_path / "state"
    with FlinkProxy(flink_url) as proxy:
        first, held = start_held_new(tmp_path, proxy, jar_dir, processes)
        first.process.kill()
        first.wait()
    assert (state / f"{JOB}.lock").exists()
    assert read_record(state)["actionResult"] == "IN_PROGRESS"

    task = make_task(flinkUrl=flink_url, stateDirectory=str(state), jobName=JOB)
    code, record, err = task.run(capsys, "CANCEL")

    assert code == 0, err
    assert "Took over the stale lock" in err
    assert f"Reconciled job {JOB}" in err
    assert record["jobId"] == held["pendingJobId"]
    assert record["status"] == "CANCELLED"
    assert len(flink_jobs_with_id(flink_url, held["pendingJobId"])) == 1
    assert not (state / f"{JOB}.lock").exists()


def test_sigterm_exits_130_and_next_run_reconciles(
    make_task: Any,
    flink_url: str,
    jar_dir: Path,
    tmp_path: Path,
    processes: list[TaskProcess],
    capsys: pytest.CaptureFixture[str],
) -> None:
    state = tmp_path / "state"
    with FlinkProxy(flink_url) as proxy:
        first, held = start_held_new(tmp_path, proxy, jar_dir, processes)
        first.process.send_signal(signal.SIGTERM)
        assert first.wait() == 130, first.stderr
    assert first.record["actionResult"] == "IN_PROGRESS"
    assert "cancelled by SIGTERM" in first.stderr
    assert "the next run reconciles it" in first.stderr
    assert not (state / f"{JOB}.lock").exists()
    assert read_record(state)["actionResult"] == "IN_PROGRESS"

    task = make_task(flinkUrl=flink_url, stateDirectory=str(state), jobName=JOB)
    code, record, err = task.run(capsys, "LIST_SAVEPOINT")

    assert code == 0, err
    assert record["jobId"] == held["pendingJobId"]
    assert record["status"] == "RUNNING"
    assert read_record(state)["actionResult"] == "SUCCESS"


def test_deadline_leaves_record_in_progress(
    make_task: Any,
    flink_url: str,
    jar_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import flink_task.flinktarget as flinktarget

    state = tmp_path / "state"
    with FlinkProxy(flink_url) as proxy:
        proxy.hold_jobs = True
        # A deadline of 3 s instead of timeoutMinutes minutes, so the test stays short.
        real_waiter = flinktarget.Waiter
        monkeypatch.setattr(
            flinktarget,
            "Waiter",
            lambda *, timeout_seconds, cancellation: real_waiter(
                timeout_seconds=3.0, cancellation=cancellation
            ),
        )
        task = make_task(flinkUrl=proxy.url, stateDirectory=str(state), jobName=JOB)
        code, record, err = task.run(capsys, "NEW", **new_inputs(jar_dir, tmp_path / "savepoints"))
    assert code == 1
    assert record["actionResult"] == "IN_PROGRESS"
    assert "timed out after 3 s (timeoutMinutes 5)" in err
    assert read_record(state)["step"] == "waiting for RUNNING"


def test_corrupt_record_rejected_unchanged(
    make_task: Any,
    flink_url: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    state = tmp_path / "state"
    state.mkdir()
    task = make_task(flinkUrl=flink_url, stateDirectory=state.as_uri(), jobName=JOB)
    cases = {
        "truncated": b'{"jobName": "orders-flink", "status": "RUN',
        "other job": json.dumps({"jobName": "payments", "status": "RUNNING"}).encode(),
        "bad savepoints": json.dumps({"jobName": JOB, "savepoints": "sp-1"}).encode(),
    }
    for case, content in cases.items():
        (state / f"{JOB}.json").write_bytes(content)

        code, _, err = task.run(capsys, "SAVEPOINT")

        assert code == 1, case
        assert f"{JOB}.json" in err, case
        assert "left unchanged" in err, case
        assert (state / f"{JOB}.json").read_bytes() == content, case
        assert not (state / f"{JOB}.lock").exists(), case


def test_records_survive_between_runs(
    make_task: Any,
    flink_url: str,
    jar_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    state = tmp_path / "state"
    task = make_task(flinkUrl=flink_url, stateDirectory=str(state), jobName=JOB)
    code, new, err = task.run(capsys, "NEW", **new_inputs(jar_dir, tmp_path / "savepoints"))
    assert code == 0, err

    code, _, err = task.run(capsys, "NEW", **new_inputs(jar_dir, tmp_path / "savepoints"))
    assert code == 1
    assert f"job {JOB} already exists (status RUNNING)" in err

    code, cancelled, err = task.run(capsys, "CANCEL")
    assert code == 0, err
    assert cancelled["jobId"] == new["jobId"]
    assert read_record(state)["status"] == "CANCELLED"
