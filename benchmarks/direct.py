"""The lifecycle as plain Flink REST calls with ``FlinkRestClient``: the floor to compare with.

Each step sends the calls that the emulator's engine sends for the same action and waits for
the same condition, but polls every ``POLL_SECONDS`` instead of the engine's 1 s. The engine
only reads the job's state for LIST_SAVEPOINT and sends nothing to Flink for DELETE of a
cancelled job, so both steps are one ``GET /jobs/:jobid`` here.
"""

from __future__ import annotations

import logging
import shlex
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from benchmarks.taskproc import BenchmarkError
from flink_task.engine.rest import FlinkRestClient

logger = logging.getLogger(__name__)

T = TypeVar("T")

POLL_SECONDS = 0.1
PROGRESS_LOG_SECONDS = 15.0
RUNNING_TIMEOUT_SECONDS = 300.0
SAVEPOINT_TIMEOUT_SECONDS = 300.0
TERMINAL_TIMEOUT_SECONDS = 120.0
TERMINAL_STATES = frozenset({"FAILED", "CANCELED", "FINISHED"})


class DirectLifecycle:
    """The lifecycle steps of one Flink job, each a method that returns when the step is done."""

    def __init__(
        self,
        flink: FlinkRestClient,
        jars: dict[str, Path],
        savepoint_directory: str,
        entry_class: str,
        arguments: dict[str, str],
    ) -> None:
        self.flink = flink
        self.jars = jars
        self.savepoint_directory = savepoint_directory
        self.entry_class = entry_class
        self.arguments = arguments
        self.job_id = ""
        self.last_savepoint = ""

    def steps(self) -> list[tuple[str, Callable[[], None]]]:
        """Return the steps in lifecycle order, named after the task's actions."""
        return [
            ("NEW", lambda: self._deploy("v1", restore_from=None)),
            ("SAVEPOINT", self._savepoint),
            ("LIST_SAVEPOINT", self._read_state),
            ("STOP", self._stop_with_savepoint),
            ("START", lambda: self._deploy("v1", restore_from=self.last_savepoint)),
            ("UPDATE", self._update),
            ("STATELESS_UPDATE", self._stateless_update),
            ("CANCEL", self._cancel),
            ("DELETE", self._read_state),
        ]

    def _deploy(self, version: str, *, restore_from: str | None) -> None:
        """Upload the jar, run it under a fresh job id, delete the jar and wait for RUNNING."""
        jar_id = self.flink.upload_jar(self.jars[version])
        job_id = uuid.uuid4().hex
        try:
            self.flink.run_jar(
                jar_id,
                entry_class=self.entry_class,
                program_args=shlex.split(self.arguments[version]),
                parallelism=1,
                job_id=job_id,
                savepoint_path=restore_from,
            )
        finally:
            self.flink.delete_jar(jar_id)
        self.job_id = job_id
        poll_until(f"all tasks of job {job_id} to run", self._all_running, RUNNING_TIMEOUT_SECONDS)

    def _savepoint(self) -> None:
        trigger_id = uuid.uuid4().hex
        self.flink.trigger_savepoint(
            self.job_id, target_directory=self.savepoint_directory, trigger_id=trigger_id
        )
        self.last_savepoint = self._await_savepoint(trigger_id)

    def _read_state(self) -> None:
        self.flink.find_job(self.job_id)

    def _stop_with_savepoint(self) -> None:
        trigger_id = uuid.uuid4().hex
        self.flink.stop_with_savepoint(
            self.job_id,
            target_directory=self.savepoint_directory,
            drain=False,
            trigger_id=trigger_id,
        )
        self.last_savepoint = self._await_savepoint(trigger_id)
        self._await_terminal()

    def _update(self) -> None:
        self._stop_with_savepoint()
        self._deploy("v2", restore_from=self.last_savepoint)

    def _stateless_update(self) -> None:
        self._cancel()
        self._deploy("v2", restore_from=None)

    def _cancel(self) -> None:
        self.flink.cancel(self.job_id)
        self._await_terminal()

    def _all_running(self) -> bool | None:
        details = self.flink.find_job(self.job_id) if self.job_id else None
        if details is None:
            return None
        state = str(details.get("state"))
        if state in TERMINAL_STATES:
            raise BenchmarkError(f"Flink job {self.job_id} ended {state} instead of running")
        return True if state == "RUNNING" and all_tasks_running(details) else None

    def _await_savepoint(self, trigger_id: str) -> str:
        job_id = self.job_id

        def location() -> str | None:
            status = self.flink.savepoint_status(job_id, trigger_id)
            if (status.get("status") or {}).get("id") != "COMPLETED":
                return None
            operation = status.get("operation") or {}
            if operation.get("failure-cause"):
                raise BenchmarkError(f"savepoint {trigger_id} of job {job_id} failed")
            return str(operation.get("location"))

        return poll_until(f"savepoint {trigger_id}", location, SAVEPOINT_TIMEOUT_SECONDS)

    def _await_terminal(self) -> None:
        job_id = self.job_id

        def terminal() -> str | None:
            details = self.flink.find_job(job_id)
            if details is None:
                return "CANCELED"
            state = str(details.get("state"))
            return state if state in TERMINAL_STATES else None

        poll_until(f"job {job_id} to end", terminal, TERMINAL_TIMEOUT_SECONDS)


def all_tasks_running(details: dict[str, Any]) -> bool:
    """Return whether every task of every vertex in ``GET /jobs/:jobid`` is RUNNING."""
    vertices = details.get("vertices") or []
    if not vertices:
        return False
    for vertex in vertices:
        tasks = vertex.get("tasks") or {}
        total = sum(int(count) for count in tasks.values())
        if total == 0 or int(tasks.get("RUNNING", 0)) < total:
            return False
    return True


def poll_until(what: str, check: Callable[[], T | None], timeout_seconds: float) -> T:
    """Call ``check`` every POLL_SECONDS until it returns a value.

    Raises BenchmarkError when ``timeout_seconds`` pass first.
    """
    started = time.monotonic()
    next_log = started + PROGRESS_LOG_SECONDS
    while True:
        result = check()
        if result is not None:
            return result
        now = time.monotonic()
        if now - started >= timeout_seconds:
            raise BenchmarkError(f"timed out after {timeout_seconds:.0f} s waiting for {what}")
        if now >= next_log:
            logger.info("still waiting for %s (%.0f s)", what, now - started)
            next_log = now + PROGRESS_LOG_SECONDS
        time.sleep(POLL_SECONDS)
