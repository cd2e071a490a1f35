"""Waits on one Flink job with deadlines: tasks running, job ended, savepoint completed."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Mapping
from typing import Any

from flink_task.engine.records import RUNNING, ActionFailure
from flink_task.engine.rest import FlinkRestClient, FlinkRestError, root_cause_of_stack
from flink_task.engine.waits import Poller, Timeouts, WaitTimeoutError, parse_duration

logger = logging.getLogger(__name__)

TERMINAL_STATES = frozenset({"FAILED", "CANCELED", "FINISHED"})
_NO_RESOURCE_EXCEPTION = "NoResourceAvailableException"
_CHECKPOINT_TIMEOUT_KEY = "execution.checkpointing.timeout"
_DEFAULT_CHECKPOINT_TIMEOUT = 600.0  # Flink's default execution.checkpointing.timeout
# Longer than Flink's default checkpoint statistics cache of 3 s, with room for a busy cluster.
_CHECKPOINT_STATISTICS_WAIT = 15.0
# Flink raises this when the savepoint of a stop exists but the job failed while stopping. Its
# message template in flink-dist 2.3.0 is "A savepoint has been created at: %s, but the
# corresponding job %s failed during stopping. ..."
# NOTE: never produced on a live cluster here; only the message template was checked.
_STOPPING_EXCEPTION = "StopWithSavepointStoppingException"
_STOPPING_FAILED_SAVEPOINT = re.compile(r"savepoint has been created at: (\S+?),? but ")


class JobEndedError(ActionFailure):
    """A job ended, or restarted and was cancelled, while the engine waited for it to run.

    ``state`` is the terminal Flink state that the record's status is set from.
    """

    def __init__(self, message: str, state: str) -> None:
        super().__init__(message)
        self.state = state


class JobWatcher:
    """Reads the state of Flink jobs and waits on them, each wait with its own deadline."""

    def __init__(
        self,
        flink: FlinkRestClient,
        timeouts: Timeouts,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.flink = flink
        self.timeouts = timeouts
        # Ids of starting jobs that a CANCEL action of this process cancelled.
        self.cancel_requested: set[str] = set()
        self._poller = Poller(
            clock=clock,
            sleep=sleep,
            poll_interval=timeouts.poll_interval,
            log_interval=timeouts.log_interval,
        )

    def find_job(self, job_id: str) -> dict[str, Any] | None:
        """Return the job's details, or None when it is unknown or Flink cannot be read."""
        if not job_id:
            return None
        try:
            return self.flink.find_job(job_id)
        except FlinkRestError as exc:
            logger.warning("Could not read Flink job %s: %s", job_id, exc.root_cause)
            return None

    def root_cause(self, job_id: str) -> str:
        """Return the root cause of the job's newest exception, or an empty string."""
        try:
            return self.flink.job_root_cause(job_id)
        except FlinkRestError as exc:
            logger.warning("Could not read the exceptions of job %s: %s", job_id, exc.root_cause)
            return ""

    def await_running(self, job_id: str) -> None:
        """Wait until every task of the job is RUNNING (state RUNNING alone is not enough).

        Raises JobEndedError with the root cause when the job ends first, and ActionFailure,
        after cancelling the job, when the tasks do not all run before the start deadline (for
        example because the cluster lacks free slots).
        """
        last: dict[str, Any] = {}

        def check() -> bool | None:
            details = self.flink.find_job(job_id)
            if details is None:
                return None
            last.clear()
            last.update(details)
            state = str(details.get("state"))
            if state == "CANCELED" and job_id in self.cancel_requested:
                self.cancel_requested.discard(job_id)
                raise JobEndedError(
                    f"Job {job_id} was cancelled by CANCEL before all its tasks ran", state
                )
            if state in TERMINAL_STATES:
                cause = self.root_cause(job_id) or f"the job ended {state}"
                raise JobEndedError(f"Job {job_id} failed to start: {cause}", state)
            if state == "RESTARTING":
                # A job that fails while starting (NoResourceAvailableException after Flink's
                # slot.request.timeout, or an exception in the job) would restart until the
                # deadline under a restart strategy, so it is cancelled and fails now.
                raise JobEndedError(self._restarting_message(job_id), "FAILED")
            return True if state == RUNNING and all_tasks_running(details) else None

        try:
            self._poller.wait(
                f"all tasks of job {job_id} to run (start deadline {self.timeouts.start:.0f} s)",
                check,
                self.timeouts.start,
                progress=lambda: task_summary(last),
            )
        except WaitTimeoutError:
            raise ActionFailure(self._not_running_message(job_id, last)) from None

    def check_slots(self, parallelism: int) -> None:
        """Raise ActionFailure when a standalone cluster has fewer slots than ``parallelism``.

        Clusters whose slots can grow (native Kubernetes or YARN resource managers) or whose
        scheduler adapts the parallelism to the slots (adaptive scheduler, reactive mode) are
        not checked. When the cluster cannot be read, only a warning is logged.
        NOTE: a job whose code sets its operators' parallelism itself, or puts them in
        several slot sharing groups, needs a different number of slots than ``parallelism``.
        A standalone task manager that is still starting is not counted either.
        """
        try:
            overview = self.flink.overview()
            configuration = self.flink.jobmanager_config()
        except FlinkRestError as exc:
            logger.warning(
                "Could not read the cluster's task slots before submitting: %s", exc.root_cause
            )
            return
        growth = _slot_growth_reason(configuration)
        if growth:
            logger.info("Task slots not checked before submitting: %s", growth)
            return
        total = overview.get("slots-total")
        managers = overview.get("taskmanagers")
        if not isinstance(total, int) or not isinstance(managers, int) or managers < 1:
            logger.warning(
                "Could not tell the cluster's task slots (slots-total %s, taskmanagers %s); "
                "submitting with parallelism %d",
                total,
                managers,
                parallelism,
            )
            return
        if parallelism > total:
            raise ActionFailure(
                f"Requested parallelism {parallelism} exceeds the {total} task slot(s) of the "
                f"cluster ({managers} task manager(s)), so the job could never run. Lower "
                "flinkConfiguration.parallelism or add task managers. Nothing was submitted."
            )

    def _restarting_message(self, job_id: str) -> str:
        cause = self.root_cause(job_id) or "no exception reported yet"
        try:
            self.flink.cancel(job_id)
            # Wait for the end, so the record's status is settled from a terminal state.
            cancelled = f"the job was cancelled and is {self.await_terminal(job_id)}"
        except FlinkRestError as exc:
            cancelled = f"cancelling it failed: {exc.root_cause}"
        except ActionFailure as exc:
            cancelled = f"the job was cancelled, but {exc}"
        hint = ""
        if _NO_RESOURCE_EXCEPTION in cause:
            hint = " The cluster has too few free task slots for the parallelism."
        return (
            f"Job {job_id} failed while starting and was restarting ({cancelled}): {cause}.{hint}"
        )

    def _not_running_message(self, job_id: str, details: Mapping[str, Any]) -> str:
        cause = self.root_cause(job_id)
        slots = ""
        try:
            free = self.flink.overview().get("slots-available")
            slots = f"; the cluster has {free} free task slot(s)"
        except FlinkRestError as exc:
            logger.warning("Could not read the cluster overview: %s", exc.root_cause)
        try:
            self.flink.cancel(job_id)
            cancelled = "; the job was cancelled"
        except FlinkRestError as exc:
            cancelled = f"; cancelling it failed: {exc.root_cause}"
        message = (
            f"Job {job_id} did not get all tasks RUNNING within {self.timeouts.start:.0f} s "
            f"(state {details.get('state', 'unknown')}, tasks {task_summary(details)}){slots}"
            f"{cancelled}. Check that the cluster has enough free slots for the parallelism"
        )
        if cause:
            message += f". Last exception: {cause}"
        return message

    def await_terminal(self, job_id: str) -> str:
        """Wait until the job is FAILED, CANCELED or FINISHED and return that state."""

        def check() -> str | None:
            details = self.flink.find_job(job_id)
            if details is None:
                return "CANCELED"
            state = str(details.get("state"))
            return state if state in TERMINAL_STATES else None

        try:
            return self._poller.wait(f"job {job_id} to end", check, self.timeouts.terminal)
        except WaitTimeoutError:
            raise ActionFailure(
                f"Job {job_id} did not reach a terminal state within "
                f"{self.timeouts.terminal:.0f} s"
            ) from None

    def savepoint_timeout(self) -> float:
        """Return the savepoint deadline: the configured one, else the cluster's timeout."""
        if self.timeouts.savepoint is not None:
            return self.timeouts.savepoint
        try:
            text = self.flink.jobmanager_config().get(_CHECKPOINT_TIMEOUT_KEY, "")
        except FlinkRestError:
            text = ""
        seconds = parse_duration(text) or _DEFAULT_CHECKPOINT_TIMEOUT
        return seconds + self.timeouts.savepoint_margin

    def await_savepoint(self, job_id: str, trigger_id: str) -> str:
        """Wait for a savepoint trigger and return its location; raise its failure cause."""

        def check() -> str | None:
            status = self.flink.savepoint_status(job_id, trigger_id)
            if (status.get("status") or {}).get("id") != "COMPLETED":
                return None
            return savepoint_location(job_id, status.get("operation") or {})

        timeout = self.savepoint_timeout()
        try:
            return self._poller.wait(f"savepoint {trigger_id} of job {job_id}", check, timeout)
        except WaitTimeoutError:
            raise ActionFailure(
                f"Savepoint of job {job_id} did not complete within {timeout:.0f} s "
                f"(trigger {trigger_id}). The job keeps running unless Flink completes the "
                "stop later. Raise execution.checkpointing.timeout or look for backpressure"
            ) from None

    def checkpoints_externalized(self, job_id: str) -> bool:
        """Return whether the job keeps its checkpoints after it fails (False when unknown)."""
        try:
            config = self.flink.checkpoint_config(job_id)
        except FlinkRestError as exc:
            logger.info("No checkpoint configuration for job %s: %s", job_id, exc.root_cause)
            return False
        return bool((config.get("externalization") or {}).get("enabled"))

    def checkpoints_retained_on_cancel(self, job_id: str) -> bool:
        """Return whether the job's checkpoints are externalized and kept after a cancel."""
        externalization = self.flink.checkpoint_config(job_id).get("externalization") or {}
        enabled = bool(externalization.get("enabled"))
        return enabled and not externalization.get("delete_on_cancellation", True)

    def latest_checkpoint(self, job_id: str) -> str | None:
        """Return the path of the job's latest retained checkpoint or savepoint, if any."""
        try:
            statistics = self.flink.checkpoints(job_id)
        except FlinkRestError as exc:
            logger.info("No checkpoint statistics for job %s: %s", job_id, exc.root_cause)
            return None
        newest = _newest_checkpoint(statistics)
        return str(newest["external_path"]) if newest and _is_restorable(newest) else None

    def has_completed_checkpoint(self, job_id: str) -> bool:
        """Return whether a running job has completed at least one checkpoint.

        The newest checkpoint of a running job can be reported as discarded a moment later,
        when the next one subsumes it, so this counts completed checkpoints instead of
        judging the newest one. Which checkpoint to restore is decided after the job ended.
        """
        try:
            statistics = self.flink.checkpoints(job_id)
        except FlinkRestError as exc:
            logger.info("No checkpoint statistics for job %s: %s", job_id, exc.root_cause)
            return False
        completed = (statistics.get("counts") or {}).get("completed") or 0
        return int(completed) > 0 or _newest_checkpoint(statistics) is not None

    def await_latest_checkpoint(self, job_id: str) -> str | None:
        """Return the latest retained checkpoint of an ended job, waiting for fresh statistics.

        Flink serves checkpoint statistics from a cache (``rest.cache.checkpoint-statistics
        .timeout``, by default the web refresh interval of 3 s). Right after a cancel, the
        newest checkpoint can still be one that the final checkpoint has replaced and
        discarded, so the statistics are read again until the newest one is restorable.
        """

        def check() -> str | None:
            return self.latest_checkpoint(job_id)

        try:
            return self._poller.wait(
                f"a retained checkpoint of job {job_id}", check, _CHECKPOINT_STATISTICS_WAIT
            )
        except WaitTimeoutError:
            return None


def _slot_growth_reason(configuration: Mapping[str, str]) -> str:
    """Return why the cluster's slots can grow or need not match, or an empty string."""
    target = str(configuration.get("execution.target") or "")
    if target.startswith(("kubernetes", "yarn")):
        return f"execution.target is {target}, so Flink requests task managers as needed"
    for key in ("kubernetes.cluster-id", "yarn.application.id"):
        if configuration.get(key):
            return f"{key} is set, so task managers can be added"
    if str(configuration.get("scheduler-mode") or "").lower() == "reactive":
        return "reactive mode adapts the parallelism to the slots"
    if str(configuration.get("jobmanager.scheduler") or "").lower() == "adaptive":
        return "the adaptive scheduler adapts the parallelism to the slots"
    return ""


def _newest_checkpoint(statistics: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """Return the completed checkpoint or savepoint with the highest id in the statistics."""
    latest = statistics.get("latest") or {}
    candidates = [latest.get("completed"), latest.get("savepoint")]
    candidates += [item for item in statistics.get("history") or [] if item]
    completed = [
        item for item in candidates if item and str(item.get("status", "COMPLETED")) == "COMPLETED"
    ]
    if not completed:
        return None
    return max(completed, key=lambda item: int(item.get("id") or 0))


def _is_restorable(checkpoint: Mapping[str, Any]) -> bool:
    # Flink reports "<checkpoint-not-externally-addressable>" for checkpoints kept only in the
    # JobManager's memory, and "discarded" for those deleted since.
    path = str(checkpoint.get("external_path") or "")
    return ":" in path and not path.startswith("<") and not checkpoint.get("discarded")


def savepoint_location(job_id: str, operation: Mapping[str, Any]) -> str:
    """Return a completed savepoint's location; raise ActionFailure for a failure-cause.

    A stop-with-savepoint whose savepoint was written but whose job then failed while stopping
    also reports a failure-cause (StopWithSavepointStoppingException). That savepoint is
    complete, so its location, taken from the exception message, is returned.
    """
    failure = operation.get("failure-cause")
    if failure:
        stack = str(failure.get("stack-trace") or failure.get("class") or "unknown failure")
        created = _STOPPING_FAILED_SAVEPOINT.search(stack)
        if created and _STOPPING_EXCEPTION in stack:
            logger.warning(
                "Job %s failed while stopping, after its savepoint %s was created",
                job_id,
                created.group(1),
            )
            return created.group(1)
        raise ActionFailure(f"Savepoint of job {job_id} failed: {root_cause_of_stack(stack)}")
    location = operation.get("location")
    if not location:
        raise ActionFailure(f"Savepoint of job {job_id} completed without a location")
    return str(location)


def all_tasks_running(details: Mapping[str, Any]) -> bool:
    """Return whether every task of every vertex is RUNNING (or FINISHED, for bounded parts)."""
    vertices = details.get("vertices") or []
    if not vertices:
        return False
    for vertex in vertices:
        tasks = vertex.get("tasks") or {}
        total = sum(int(count) for count in tasks.values())
        running = int(tasks.get("RUNNING", 0)) + int(tasks.get("FINISHED", 0))
        if total == 0 or running < total:
            return False
    return True


def task_summary(details: Mapping[str, Any]) -> str:
    """Return the job's task counts per state, such as ``CREATED 2, RUNNING 2``."""
    counts: dict[str, int] = {}
    for vertex in details.get("vertices") or []:
        for state, count in (vertex.get("tasks") or {}).items():
            if int(count):
                counts[state] = counts.get(state, 0) + int(count)
    return ", ".join(f"{state} {count}" for state, count in sorted(counts.items())) or "none yet"
