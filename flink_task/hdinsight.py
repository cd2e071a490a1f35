"""The HDInsight target: submit an action through runJob and wait for its result.

Right after a submission the jobs list can still show the previous action's SUCCESS.
This is how the result of *this* action is distinguished from it:

* API versions with ``runId`` (2023-11-01-preview, 2024-05-01-preview, 2024-05-01): a fresh
  run id is sent, and only a record carrying that id is accepted.
* Versions without ``runId``: the task reads the job's record before submitting. After
  the submission a final result counts once the runJob operation has completed and the
  record shows this action happened. That is the case when ``IN_PROGRESS`` was seen, when
  the record differs from the one read before (action, job id, status, result, output or
  last savepoint), or when the operation's final body carried the result itself. If none
  of these shows within ``SETTLE_SECONDS`` after the operation completed, the record is
  taken as the result (an action that changes nothing, such as a second LIST_SAVEPOINT),
  with a warning.
* DELETE is done when the record is gone from the list.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TypeVar

from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    ServiceRequestError,
    ServiceResponseError,
)

from flink_task.arm import JobApiClient, response_json
from flink_task.errors import ActionFailedError, ArmError, CancelledError, FlinkTaskError
from flink_task.request import RunRequest
from flink_task.waiting import Waiter, WaitTimeoutError

logger = logging.getLogger(__name__)
T = TypeVar("T")

SETTLE_SECONDS = 10.0
TERMINAL_RESULTS = frozenset({"SUCCESS", "FAILED"})
_COMPARED_FIELDS = ("action", "jobId", "status", "actionResult", "jobOutput", "lastSavePoint")


@dataclass
class Outcome:
    """Result of a run: the job record as last seen and how the wait ended."""

    record: dict[str, Any] | None
    finished: bool = True  # False: the deadline came first, or the run did not wait
    deleted: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def action_result(self) -> str:
        if self.deleted:
            return "SUCCESS"
        if self.record is None:
            return "IN_PROGRESS"
        return str(self.record.get("actionResult") or "IN_PROGRESS")


class WaitInterruptedError(Exception):
    """A wait ended early (deadline, cancellation or an error); carries the last known record."""

    def __init__(self, cause: Exception, record: dict[str, Any] | None) -> None:
        super().__init__(str(cause))
        self.cause = cause
        self.record = record


@dataclass
class _Tracker:
    """Evidence the wait has collected about the submitted action so far."""

    before: dict[str, Any] | None
    run_id: str | None
    operation_done: bool = False
    operation_done_at: float | None = None
    saw_in_progress: bool = False
    final_from_operation: dict[str, Any] | None = None
    last: dict[str, Any] | None = None


def run_action(request: RunRequest, client: JobApiClient, waiter: Waiter) -> Outcome:
    """Submit the request's action and wait for its result, unless the request sets wait=false."""
    assert request.body is not None and request.job_name is not None
    before = client.find_job(request.job_name)
    tracker = _Tracker(before=before, run_id=request.run_id, last=before)
    logger.info(
        "Submitting %s for job %s on cluster %s (API version %s%s)",
        request.action,
        request.job_name,
        request.target.cluster,
        request.target.api_version,
        f", run id {request.run_id}" if request.run_id else "",
    )
    response = client.submit(request.body)
    logger.info("runJob accepted with HTTP %s", response.status_code)
    if not request.wait:
        record = _submitted_record(request, before, response_json(response))
        return Outcome(record=record, finished=record.get("actionResult") in TERMINAL_RESULTS)
    try:
        _follow_operation(client, request.job_name, response, tracker, waiter)
        return _wait_for_record(request, client, tracker, waiter)
    except (WaitTimeoutError, CancelledError, FlinkTaskError, AzureError) as error:
        # The action was submitted: whatever ends the wait, the outputs get the last state.
        raise WaitInterruptedError(error, tracker.last) from error


class _Unavailable:
    """Marker of a read that failed for a reason worth retrying at the next poll."""


UNAVAILABLE = _Unavailable()
_TRANSIENT_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


def _read(what: str, read: Callable[[], T], waiter: Waiter) -> T | _Unavailable:
    """Run one read of the wait; a network or server error is logged and retried later.

    azure-core has already retried the request a few times. An outage longer than that
    must not end the wait: the action may be running fine on the server, so the wait goes on
    until its deadline.
    """
    try:
        return read()
    except ClientAuthenticationError:
        raise
    except (ServiceRequestError, ServiceResponseError, ArmError) as error:
        if isinstance(error, ArmError) and error.status not in _TRANSIENT_STATUSES:
            raise
        logger.warning(
            "Reading %s failed (%s); retrying until the deadline (%.0f s left)",
            what,
            _short_error(error),
            max(waiter.remaining(), 0.0),
        )
        return UNAVAILABLE


def _short_error(error: Exception) -> str:
    text = str(error).splitlines()[0] if str(error) else ""
    return f"{type(error).__name__}: {text[:200]}" if text else type(error).__name__


def _follow_operation(
    client: JobApiClient, job_name: str, response: Any, tracker: _Tracker, waiter: Waiter
) -> None:
    """Poll the runJob long-running operation until it completes.

    Between two polls of the operation (spaced by its ``Retry-After`` header) the jobs list is
    read on the task's own faster schedule when the API version has ``runId``: a final record
    carrying this run's id ends the action without waiting for the operation's next poll.
    """
    url = client.operation_url(response)
    if response.status_code == 202 and url is None:
        logger.info("runJob returned 202 without an operation URL; watching the jobs list")
    while response.status_code == 202 and url is not None:
        next_poll_at = waiter.elapsed + (_retry_after(response) or waiter.next_interval())
        while tracker.run_id is not None and waiter.elapsed < next_poll_at:
            listed = _read("the jobs list", lambda: client.find_job(job_name), waiter)
            if not isinstance(listed, _Unavailable) and _run_is_final(listed, tracker):
                return
            waiter.pause(min(waiter.next_interval(), next_poll_at - waiter.elapsed))
        if waiter.elapsed < next_poll_at:
            waiter.pause(next_poll_at - waiter.elapsed)
        try:
            polled = _read("the runJob operation", partial(client.poll, url), waiter)
        except ArmError as error:
            if error.status != 404:
                raise
            logger.warning(
                "The runJob operation is no longer found (%s); watching the jobs list",
                _short_error(error),
            )
            break
        if isinstance(polled, _Unavailable):
            continue
        response = polled
        url = client.operation_url(response) or url  # a poll may move the operation
        if waiter.progress_due():
            logger.info("runJob operation still running (%.0f s)", waiter.elapsed)
    body = response_json(response) if response.status_code != 202 else None
    if body is not None:
        properties = body.get("properties") if isinstance(body.get("properties"), dict) else None
        if properties is not None:
            tracker.final_from_operation = properties
    tracker.operation_done = True
    tracker.operation_done_at = waiter.elapsed
    waiter.reset_interval()


def _run_is_final(record: dict[str, Any] | None, tracker: _Tracker) -> bool:
    if record is None or record.get("runId") != tracker.run_id:
        return False
    tracker.last = record
    return record.get("actionResult") in TERMINAL_RESULTS


def _retry_after(response: Any) -> float | None:
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, min(float(value), 60.0))
    except ValueError:
        return None


def _wait_for_record(
    request: RunRequest, client: JobApiClient, tracker: _Tracker, waiter: Waiter
) -> Outcome:
    assert request.job_name is not None
    job_name = request.job_name
    last_state: tuple[Any, ...] | None = None
    while True:
        listed = _read("the jobs list", lambda: client.find_job(job_name), waiter)
        if isinstance(listed, _Unavailable):
            waiter.pause()
            continue
        record = listed
        if request.action == "DELETE":
            if record is None:
                logger.info("Job %s is no longer listed: DELETE done", request.job_name)
                return Outcome(record=tracker.final_from_operation or tracker.last, deleted=True)
        if record is not None:
            tracker.last = record
            if record.get("actionResult") == "IN_PROGRESS" and _is_ours(record, tracker):
                tracker.saw_in_progress = True
        state = _state_of(record)
        if state != last_state:
            logger.info("Job %s: %s", request.job_name, _describe(record))
            last_state = state
        elif waiter.progress_due():
            logger.info(
                "Still waiting for %s on job %s (%.0f s): %s",
                request.action,
                request.job_name,
                waiter.elapsed,
                _describe(record),
            )
        outcome = _result_if_final(request, record, tracker, waiter)
        if outcome is not None:
            return outcome
        waiter.pause()


def _result_if_final(
    request: RunRequest, record: dict[str, Any] | None, tracker: _Tracker, waiter: Waiter
) -> Outcome | None:
    if record is None:
        if request.action != "DELETE" and tracker.operation_done and tracker.before is not None:
            raise ActionFailedError(
                f"job {request.job_name} disappeared from the jobs list during {request.action}"
            )
        return None
    if record.get("actionResult") not in TERMINAL_RESULTS or not _is_ours(record, tracker):
        return None
    if tracker.run_id is not None and record.get("runId") == tracker.run_id:
        return Outcome(record=record)
    if not tracker.operation_done:
        return None
    if tracker.saw_in_progress or _differs(tracker.before, record):
        return Outcome(record=record)
    final = tracker.final_from_operation
    if final and final.get("actionResult") in TERMINAL_RESULTS:
        return Outcome(record=record)
    assert tracker.operation_done_at is not None
    if waiter.elapsed - tracker.operation_done_at >= SETTLE_SECONDS:
        note = (
            f"The record of job {request.job_name} did not change after {request.action}; "
            "taking it as this action's result"
        )
        logger.warning(note)
        return Outcome(record=record, notes=[note])
    return None


def _is_ours(record: dict[str, Any], tracker: _Tracker) -> bool:
    """Return False for a record that provably belongs to another submission."""
    record_run_id = record.get("runId")
    if tracker.run_id is None or record_run_id is None:
        return True
    return bool(record_run_id == tracker.run_id)


def _differs(before: dict[str, Any] | None, after: dict[str, Any]) -> bool:
    if before is None:
        return True
    return any(before.get(name) != after.get(name) for name in _COMPARED_FIELDS)


def _state_of(record: dict[str, Any] | None) -> tuple[Any, ...] | None:
    if record is None:
        return None
    return tuple(record.get(name) for name in ("runId", "status", "actionResult", "action"))


def _describe(record: dict[str, Any] | None) -> str:
    if record is None:
        return "not listed"
    return (
        f"status {record.get('status') or '-'}, action {record.get('action') or '-'}, "
        f"actionResult {record.get('actionResult') or '-'}"
    )


def _submitted_record(
    request: RunRequest, before: dict[str, Any] | None, body: dict[str, Any] | None
) -> dict[str, Any]:
    """Describe a submission the run does not wait for: IN_PROGRESS unless the body is final."""
    record = dict(before or {})
    record.update({"jobName": request.job_name, "action": request.action})
    if request.run_id:
        record["runId"] = request.run_id
    properties = body.get("properties") if body else None
    if isinstance(properties, dict) and properties.get("actionResult") in TERMINAL_RESULTS:
        record.update(properties)
    else:
        record["actionResult"] = "IN_PROGRESS"
        record["jobOutput"] = f"{request.action} submitted; the task did not wait (wait=false)"
    return record
