"""The engine: job actions (NEW, STOP, START, UPDATE, ...) over Flink's REST API."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import PurePosixPath
from typing import Any

from flink_task.engine import records as rec
from flink_task.engine.jars import JarError, JarResolver
from flink_task.engine.records import (
    CANCELLED,
    FAILED,
    IN_PROGRESS,
    RUNNING,
    STOPPED,
    SUCCESS,
    ActionConflictError,
    ActionFailure,
    EngineError,
    InvalidRequestError,
    JobNotFoundError,
    api_properties,
    utc_now,
)
from flink_task.engine.rest import FlinkRestClient, FlinkRestError
from flink_task.engine.savepoints import find_completed_savepoint, local_directory
from flink_task.engine.store import CorruptRecordError, JobLockedError, JobStore, StoreError
from flink_task.engine.waits import Timeouts, WaitTimeoutError
from flink_task.engine.watch import TERMINAL_STATES, JobEndedError, JobWatcher, savepoint_location

logger = logging.getLogger(__name__)

# Statuses of the job record that each action requires. LIST_SAVEPOINT and DELETE are checked
# separately (any status; not RUNNING).
_REQUIRED_STATUS: dict[str, frozenset[str]] = {
    "SAVEPOINT": frozenset({RUNNING}),
    "STOP": frozenset({RUNNING}),
    "START": frozenset({STOPPED, CANCELLED, FAILED}),
    "UPDATE": frozenset({RUNNING}),
    "STATELESS_UPDATE": frozenset({RUNNING, STOPPED}),
    "LAST_STATE_UPDATE": frozenset({RUNNING}),
    "RE_LAUNCH": frozenset({FAILED}),
    "CANCEL": frozenset({RUNNING}),
}

# Record status for each terminal Flink job state.
_STATUS_OF_TERMINAL = {"FAILED": FAILED, "CANCELED": CANCELLED, "FINISHED": STOPPED}
_EXECUTE_LOCK_WAIT = 10.0
# How long CANCEL of a starting job waits for the starting action to see the job end: one poll
# interval, two reads of Flink and a record write, with room for a busy cluster.
_CANCEL_STARTING_WAIT = 30.0
# Actions whose job CANCEL may cancel while they wait for its tasks to run. Updates are left
# out, because their failure starts a rollback that the cancel would interrupt.
_CANCELLABLE_STARTS = frozenset({"NEW", "START", "RE_LAUNCH"})
_SAVEPOINT_DIRECTORY_KEYS = ("execution.checkpointing.savepoint-dir", "state.savepoints.dir")


def new_flink_id() -> str:
    """Return a fresh 32-hex id, the format Flink uses for job ids and trigger ids."""
    return uuid.uuid4().hex


class Engine:
    """Runs job actions against one Flink cluster and keeps their records in a JobStore.

    ``begin`` checks a request and marks the record IN_PROGRESS. ``execute`` carries the
    action out and does not raise for an action that fails: the record ends FAILED with the
    root cause in jobOutput. Only a record that cannot be read or written raises StoreError.
    ``recover`` settles records that a stopped process left IN_PROGRESS.
    Public methods return records as ClusterJob API properties.
    """

    def __init__(
        self,
        *,
        flink: FlinkRestClient,
        store: JobStore,
        jars: JarResolver,
        default_savepoint_dir: str | None = None,
        timeouts: Timeouts | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.flink = flink
        self.store = store
        self.jars = jars
        self.default_savepoint_dir = default_savepoint_dir
        self.timeouts = timeouts or Timeouts()
        self.watch = JobWatcher(flink, self.timeouts, clock=clock, sleep=sleep)
        # Jobs whose action execute() is carrying out in this process right now.
        self._executing: set[str] = set()

    # --- public interface -------------------------------------------------------------------

    def begin(self, properties: Mapping[str, Any]) -> dict[str, Any]:
        """Check the action's precondition and mark the record IN_PROGRESS (durably).

        Raises InvalidRequestError (HTTP 400), JobNotFoundError (404) or ActionConflictError
        (409: an action is IN_PROGRESS on the job, NEW on an existing name, or a status that
        does not allow the action). Returns the record as ClusterJob properties.
        CANCEL of a NEW, START or RE_LAUNCH still waiting for its tasks first cancels that
        Flink job and waits for the starting action to end (see ``_cancel_starting``).
        """
        request = rec.validate_request(properties)
        name, action = request["jobName"], request["action"]
        current = self._load(name)
        # Only a start this process runs is aborted, because its wait notices the cancel
        # within a poll. Across processes (the Flink target) a second run is rejected at once.
        if (
            action == "CANCEL"
            and current is not None
            and name in self._executing
            and _is_waiting_to_start(current)
        ):
            return self._cancel_starting(request, current)
        # A running execute() holds the lock, so read the record first to name its action.
        _reject_in_progress(name, current)
        try:
            with self.store.lock(name, f"begin {action}"):
                record = self._load(name)
                record = self._check_precondition(action, name, record)
                self._mark_in_progress(record, request)
                self.store.save(record)
        except JobLockedError as exc:
            raise ActionConflictError(str(exc)) from None
        logger.info("Accepted %s on job %s (runId %s)", action, name, record["runId"])
        return api_properties(record)

    def _cancel_starting(self, request: dict[str, Any], record: dict[str, Any]) -> dict[str, Any]:
        """Cancel the Flink job of a NEW or START that waits for its tasks, then begin CANCEL.

        Only the Flink job is cancelled here: the starting action still owns the record and
        ends FAILED when its wait finds the job CANCELED. CANCEL then takes the lock and marks
        itself IN_PROGRESS as usual. Restores use claim mode NO_CLAIM, so the cancelled job
        cannot delete the savepoint it started from.
        """
        name, job_id = record["jobName"], str(record["pendingJobId"])
        logger.warning(
            "CANCEL of job %s: cancelling Flink job %s, which its %s action is still starting",
            name,
            job_id,
            record.get("action"),
        )
        self.watch.cancel_requested.add(job_id)
        try:
            self.flink.cancel(job_id)
        except FlinkRestError as exc:
            if exc.status not in (404, 409):
                raise ActionConflictError(
                    f"job {name} has a {record.get('action')} action in progress, and "
                    f"cancelling its Flink job {job_id} failed: {exc.root_cause}"
                ) from None
        try:
            with self.store.lock(name, "begin CANCEL", wait=_CANCEL_STARTING_WAIT):
                current = self._load(name)
                if current is None:
                    raise JobNotFoundError(f"job {name} not found; it was deleted meanwhile")
                record = current
                _reject_in_progress(name, record)
                self._mark_in_progress(record, request)
                self.store.save(record)
        except JobLockedError:
            raise ActionConflictError(
                f"Flink job {job_id} of job {name} was cancelled, but its "
                f"{record.get('action')} action did not end within "
                f"{_CANCEL_STARTING_WAIT:.0f} s; list the job to see its result"
            ) from None
        logger.info("Accepted CANCEL on job %s (runId %s)", name, record["runId"])
        return api_properties(record)

    def execute(self, job_name: str) -> dict[str, Any]:
        """Carry out the action recorded by ``begin`` and return the final record.

        An action that fails ends with actionResult FAILED and the root cause in jobOutput. For
        DELETE the returned record is the one removed, with actionResult SUCCESS.
        Raises JobNotFoundError when there is no record, and ActionConflictError when the record
        is not IN_PROGRESS or another process holds its lock.
        """
        try:
            # begin() of another request may hold the lock for a moment, so wait a little.
            with self.store.lock(job_name, "execute", wait=_EXECUTE_LOCK_WAIT):
                record = self._load(job_name)
                if record is None:
                    raise JobNotFoundError(f"job {job_name} has no record")
                if record.get("actionResult") != IN_PROGRESS:
                    raise ActionConflictError(
                        f"job {job_name} has no action in progress; call begin() first"
                    )
                self._executing.add(job_name)
                try:
                    self._run_action(record)
                finally:
                    self._executing.discard(job_name)
        except JobLockedError as exc:
            raise ActionConflictError(str(exc)) from None
        return api_properties(record)

    def run(self, properties: Mapping[str, Any]) -> dict[str, Any]:
        """Run one action to its end: ``begin`` and then ``execute``."""
        started = self.begin(properties)
        return self.execute(started["jobName"])

    def list_jobs(self) -> list[dict[str, Any]]:
        """Return every job record as ClusterJob properties, sorted by name.

        The status of RUNNING records is read again from Flink (see ``_refresh_listed``). A
        corrupt record file is left out with one logged error per listing, so it does not hide
        the other jobs. Other store errors raise StoreError.
        """
        jobs = []
        corrupt: list[str] = []
        probe = _StatusProbe(self.flink)
        for name in self.store.names():
            try:
                record = self._load(name)
            except CorruptRecordError as exc:
                corrupt.append(str(exc))
                continue
            if record is not None:
                jobs.append(api_properties(self._refresh_listed(record, probe)))
        if corrupt:
            logger.error(
                "Left %d corrupt job record(s) out of the job list: %s",
                len(corrupt),
                " | ".join(corrupt),
            )
        probe.log_unreachable()
        return jobs

    def get_job(self, job_name: str) -> dict[str, Any] | None:
        """Return the record of a job as ClusterJob properties, or None.

        The status of a RUNNING record is read again from Flink, as in ``list_jobs``.
        """
        record = self._load(job_name)
        if record is None:
            return None
        probe = _StatusProbe(self.flink)
        refreshed = self._refresh_listed(record, probe)
        probe.log_unreachable()
        return api_properties(refreshed)

    def get_record(self, job_name: str) -> dict[str, Any] | None:
        """Return the full record of a job, internal fields included, or None."""
        return self._load(job_name)

    def savepoints(self, job_name: str) -> list[str]:
        """Return the savepoint paths of a job, newest first."""
        record = self._load(job_name)
        return [entry["path"] for entry in (record or {}).get("savepoints", [])]

    def recover(self) -> list[str]:
        """Settle every record left IN_PROGRESS by a process that stopped; return their names.

        Each record is reconciled with what Flink reports. A running job submitted under the
        recorded id finishes the action, and a completed savepoint is added to the history.
        Anything else ends FAILED with a jobOutput naming the step where the action stopped.
        Records locked by a live process are skipped.
        """
        recovered = []
        for name in self.store.names():
            try:
                with self.store.lock(name, "recover"):
                    record = self._load(name)
                    if record is None or record.get("actionResult") != IN_PROGRESS:
                        continue
                    self._recover_record(record)
                    recovered.append(name)
            except JobLockedError:
                logger.info(
                    "Skipped recovery of job %s: its lock is held by a running action", name
                )
            except StoreError as exc:
                logger.error("Skipped recovery of job %s: %s", name, exc)
        return recovered

    def _refresh_listed(self, record: dict[str, Any], probe: _StatusProbe) -> dict[str, Any]:
        """Return the record with its status read again from Flink when it is RUNNING.

        A record with an action in progress, or locked by one, is returned as stored, because
        the action writes its status. A changed status is saved under the job's lock.
        """
        name, job_id = record["jobName"], record.get("jobId")
        if record.get("status") != RUNNING or not job_id:
            return record
        if record.get("actionResult") == IN_PROGRESS:
            return record
        status = probe.status_of(job_id)
        if status is None or status == RUNNING:
            return record
        try:
            with self.store.lock(name, "refresh status"):
                current = self._load(name)
                if current is None or current.get("actionResult") == IN_PROGRESS:
                    return current or record
                if current.get("jobId") != job_id or current.get("status") != RUNNING:
                    return current
                logger.info(
                    "Flink job %s of %s is not running any more; status %s -> %s",
                    job_id,
                    name,
                    RUNNING,
                    status,
                )
                current["status"] = status
                current["updatedAt"] = utc_now()
                self.store.save(current)
                return current
        except JobLockedError:
            return record

    # --- begin ------------------------------------------------------------------------------

    def _load(self, name: str) -> dict[str, Any] | None:
        try:
            return self.store.load(name)
        except ValueError as exc:
            raise InvalidRequestError(str(exc)) from None

    def _check_precondition(
        self, action: str, name: str, record: dict[str, Any] | None
    ) -> dict[str, Any]:
        if action == "NEW":
            if record is not None:
                raise ActionConflictError(
                    f"job {name} already exists (status {record.get('status')}); "
                    "use START, UPDATE or DELETE, or choose another jobName"
                )
            return {"jobName": name, "jobType": "FlinkJob", "createdAt": utc_now()}
        if record is None:
            raise JobNotFoundError(f"job {name} not found; create it with action NEW")
        _reject_in_progress(name, record)
        self._refresh_status(record)
        status = record.get("status")
        if action == "DELETE":
            if status == RUNNING:
                raise ActionConflictError(
                    f"job {name} is RUNNING; STOP or CANCEL it before DELETE"
                )
        elif action in _REQUIRED_STATUS and status not in _REQUIRED_STATUS[action]:
            allowed = " or ".join(sorted(_REQUIRED_STATUS[action]))
            raise ActionConflictError(
                f"{action} needs job {name} to be {allowed}, but it is {status or 'not started'}"
            )
        return record

    def _mark_in_progress(self, record: dict[str, Any], request: dict[str, Any]) -> None:
        action = request["action"]
        if action in rec.DEPLOYING_ACTIONS:
            for key in rec.SPEC_FIELDS:
                if key in request:
                    record[key] = request[key]
        elif "flinkConfiguration" in request:
            # SAVEPOINT, STOP and the like may name a savepoint directory for this action only.
            record["actionConfiguration"] = request["flinkConfiguration"]
        if action == "NEW" and not record.get("jarName"):
            raise InvalidRequestError("jarName: NEW needs the file name of the job jar")
        if action == "NEW" and not record.get("jobJarDirectory"):
            raise InvalidRequestError("jobJarDirectory: NEW needs the folder or URL of the jar")
        record.update(
            action=action,
            actionResult=IN_PROGRESS,
            jobOutput="",
            savePointName=request.get("savePointName"),
            runId=request.get("runId") or str(uuid.uuid4()),
            actionStartedAt=utc_now(),
            updatedAt=utc_now(),
            step="accepted",
        )
        if action not in rec.DEPLOYING_ACTIONS and "flinkConfiguration" not in request:
            record.pop("actionConfiguration", None)

    def _refresh_status(self, record: dict[str, Any]) -> None:
        """Update a RUNNING record whose Flink job has ended since the last action."""
        job_id = record.get("jobId")
        if record.get("status") != RUNNING or not job_id:
            return
        try:
            details = self.flink.find_job(job_id)
        except FlinkRestError as exc:
            logger.warning("Could not read the state of Flink job %s: %s", job_id, exc.root_cause)
            return
        if details is None:
            logger.warning(
                "Flink job %s of %s not found; marking it FAILED", job_id, record["jobName"]
            )
            record["status"] = FAILED
            return
        state = str(details.get("state"))
        if state in TERMINAL_STATES:
            logger.info("Flink job %s of %s is %s", job_id, record["jobName"], state)
            record["status"] = _STATUS_OF_TERMINAL[state]

    # --- execute ----------------------------------------------------------------------------

    def _run_action(self, record: dict[str, Any]) -> None:
        action = record["action"]
        handler: Callable[[dict[str, Any]], None] = getattr(self, f"_do_{action.lower()}")
        logger.info("Starting %s on job %s", action, record["jobName"])
        try:
            handler(record)
        except ActionFailure as exc:
            self._finish(record, FAILED, str(exc))
        except (FlinkRestError, JarError, WaitTimeoutError, EngineError) as exc:
            self._finish(record, FAILED, _cause_text(exc))
        except Exception as exc:  # execute() reports every failure in the record
            logger.exception("Unexpected error in %s on job %s", action, record["jobName"])
            self._finish(record, FAILED, f"Unexpected error: {type(exc).__name__}: {exc}")
        else:
            self._finish(record, SUCCESS, record.get("jobOutput", ""))

    def _finish(self, record: dict[str, Any], result: str, output: str) -> None:
        record.update(actionResult=result, jobOutput=output, updatedAt=utc_now(), step="done")
        for key in ("pendingJobId", "pendingTrigger", "pendingSpec", "pendingRestore"):
            record[key] = None
        record.pop("rollbackCause", None)
        if result == FAILED:
            self._settle_status_after_failure(record)
            if record["action"] in rec.DEPLOYING_ACTIONS and record.get("deployed"):
                # Keep describing the version that last ran, not the one that failed to start.
                record.update(record["deployed"])
        if record["action"] == "DELETE" and result == SUCCESS:
            self.store.delete(record["jobName"])
        else:
            self.store.save(record)
        log = logger.info if result == SUCCESS else logger.error
        log(
            "%s on job %s ended %s: %s",
            record["action"],
            record["jobName"],
            result,
            output.splitlines()[0] if output else "",
        )

    def _settle_status_after_failure(self, record: dict[str, Any]) -> None:
        """Make a failed action's status describe the Flink job as it really is."""
        job_id = record.get("jobId")
        if not job_id:
            record["status"] = record.get("status") or FAILED
            return
        try:
            details = self.flink.find_job(job_id)
        except FlinkRestError as exc:
            logger.warning(
                "Could not read Flink job %s, so status %s of %s is unchecked: %s",
                job_id,
                record.get("status"),
                record["jobName"],
                exc.root_cause,
            )
            return
        if details is None:
            if record.get("status") == RUNNING:
                record["status"] = FAILED
            return
        state = str(details.get("state"))
        if state in TERMINAL_STATES:
            if record.get("status") == RUNNING or state == "FAILED":
                record["status"] = _STATUS_OF_TERMINAL[state]
        else:
            record["status"] = RUNNING

    def _save_step(self, record: dict[str, Any], step: str) -> None:
        record["step"] = step
        record["updatedAt"] = utc_now()
        self.store.save(record)

    # --- actions ----------------------------------------------------------------------------

    def _do_new(self, record: dict[str, Any]) -> None:
        self._deploy(record, rec.spec_of(record), restore_path=None)

    def _do_savepoint(self, record: dict[str, Any]) -> None:
        job_id = record["jobId"]
        directory = self._savepoint_directory(record)
        trigger_id = self._record_trigger(record, job_id, "SAVEPOINT", directory)
        self.flink.trigger_savepoint(job_id, target_directory=directory, trigger_id=trigger_id)
        path = self.watch.await_savepoint(job_id, trigger_id)
        self._add_savepoint(record, path, "SAVEPOINT", job_id)
        record["jobOutput"] = f"Savepoint completed. Path: {path}"

    def _do_list_savepoint(self, record: dict[str, Any]) -> None:
        record["jobOutput"] = "\n".join(entry["path"] for entry in record.get("savepoints", []))

    def _do_stop(self, record: dict[str, Any]) -> None:
        path = self._stop_with_savepoint(record)
        record["jobOutput"] = f"Savepoint completed. Path: {path}"

    def _do_start(self, record: dict[str, Any]) -> None:
        restore_path = self._savepoint_to_start_from(record)
        self._deploy(record, rec.spec_of(record), restore_path=restore_path)

    def _do_update(self, record: dict[str, Any]) -> None:
        self._check_slots_before_stopping(record)
        previous = dict(record.get("deployed") or rec.spec_of(record))
        new_spec = rec.spec_of(record)
        try:
            path = self._stop_with_savepoint(record)
        except BaseException:
            record.update(previous)
            raise
        restore_path = self._named_savepoint(record) if record.get("savePointName") else path
        self._deploy_or_roll_back(record, new_spec, previous, restore_path)

    def _check_slots_before_stopping(self, record: dict[str, Any]) -> None:
        """Check the new parallelism before the running job is stopped for an update."""
        self.watch.check_slots(rec.parallelism_of(record.get("flinkConfiguration")))

    def _do_stateless_update(self, record: dict[str, Any]) -> None:
        self._check_slots_before_stopping(record)
        if record.get("status") == RUNNING:
            self._cancel_and_wait(record)
        self._deploy(record, rec.spec_of(record), restore_path=None)

    def _do_last_state_update(self, record: dict[str, Any]) -> None:
        self._check_slots_before_stopping(record)
        previous = dict(record.get("deployed") or rec.spec_of(record))
        new_spec = rec.spec_of(record)
        job_id = record["jobId"]
        retained = self.watch.checkpoints_retained_on_cancel(job_id)
        has_checkpoint = retained and self.watch.has_completed_checkpoint(job_id)
        if not has_checkpoint and not record.get("lastSavePoint"):
            record.update(previous)
            raise ActionFailure(
                f"LAST_STATE_UPDATE needs a retained checkpoint or a savepoint, and job {job_id} "
                "has neither: set execution.checkpointing.externalized-checkpoint-retention to "
                "RETAIN_ON_CANCELLATION (and execution.checkpointing.dir) and wait for a "
                "checkpoint, or use UPDATE, which takes a savepoint first. The job is still "
                "running."
            )
        self._cancel_and_wait(record)
        restore_path = self.watch.await_latest_checkpoint(job_id) if retained else None
        if restore_path is None:
            restore_path = record.get("lastSavePoint")
            if restore_path is None:
                raise ActionFailure(
                    f"Job {job_id} was cancelled, but Flink reports no retained checkpoint to "
                    "restore from, and the job has no savepoint. Look for the newest chk-* "
                    "folder in the checkpoint directory and run START with it as savePointName."
                )
            logger.warning(
                "No retained checkpoint of job %s; restoring from the last savepoint %s",
                job_id,
                restore_path,
            )
        self._deploy_or_roll_back(record, new_spec, previous, restore_path)

    def _do_re_launch(self, record: dict[str, Any]) -> None:
        restore_path = None
        job_id = record.get("jobId")
        if job_id and self.watch.checkpoints_externalized(job_id):
            restore_path = self.watch.await_latest_checkpoint(job_id)
        restore_path = restore_path or record.get("lastSavePoint")
        spec = dict(record.get("deployed") or rec.spec_of(record))
        self._deploy(record, spec, restore_path=restore_path)

    def _do_cancel(self, record: dict[str, Any]) -> None:
        self._cancel_and_wait(record)
        record["jobOutput"] = f"Job {record['jobId']} is {record['status']}"

    def _do_delete(self, record: dict[str, Any]) -> None:
        count = len(record.get("savepoints", []))
        record["jobOutput"] = (
            f"Job {record['jobName']} deleted; its {count} savepoint(s) stay on storage"
        )

    # --- deploying --------------------------------------------------------------------------

    def _deploy_or_roll_back(
        self,
        record: dict[str, Any],
        new_spec: dict[str, Any],
        previous: dict[str, Any],
        restore_path: str | None,
    ) -> None:
        """Run the new version; when it fails, run the previous one from the same state."""
        try:
            self._deploy(record, new_spec, restore_path=restore_path)
            return
        except (ActionFailure, FlinkRestError, JarError, WaitTimeoutError, EngineError) as exc:
            cause = _cause_text(exc)
        logger.error(
            "%s of job %s failed (%s); rolling back to jar %s",
            record["action"],
            record["jobName"],
            cause,
            previous.get("jarName"),
        )
        record.update(previous)
        record["rollbackCause"] = cause
        self._save_step(record, "rolling back")
        source = f"from {restore_path}" if restore_path else "without state"
        try:
            job_id = self._deploy(record, previous, restore_path=restore_path)
        except (ActionFailure, FlinkRestError, JarError, WaitTimeoutError, EngineError) as exc:
            raise ActionFailure(
                f"{record['action']} failed: {cause}\nRollback failed too: the previous "
                f"version (jar {previous.get('jarName')}) could not run again {source}: "
                f"{_cause_text(exc)}"
            ) from exc
        raise ActionFailure(
            f"{record['action']} failed: {cause}\nRolled back: the previous version (jar "
            f"{previous.get('jarName')}) is running again {source} as job {job_id}."
        )

    def _deploy(
        self, record: dict[str, Any], spec: Mapping[str, Any], *, restore_path: str | None
    ) -> str:
        """Upload the jar, run it under a job id recorded beforehand, and wait until it runs."""
        configuration = spec.get("flinkConfiguration") or {}
        self.watch.check_slots(rec.parallelism_of(configuration))
        jar_path = self.jars.resolve(spec.get("jobJarDirectory") or "", spec.get("jarName") or "")
        job_id = new_flink_id()
        record["pendingJobId"] = job_id
        record["pendingSpec"] = dict(spec)
        record["pendingRestore"] = restore_path
        self._save_step(record, "submitting")

        jar_id = self.flink.upload_jar(jar_path)
        try:
            self.flink.run_jar(
                jar_id,
                entry_class=spec.get("entryClass"),
                program_args=rec.program_arguments(spec.get("args")),
                parallelism=rec.parallelism_of(configuration),
                job_id=job_id,
                savepoint_path=restore_path,
                allow_non_restored_state=rec.allows_non_restored_state(configuration),
                flink_configuration=rec.flink_run_configuration(configuration),
            )
        except FlinkRestError as exc:
            if not exc.is_duplicate_submission:
                self._fail_submission(record, job_id, exc)
            logger.info("Flink already had job %s; the submission went through", job_id)
        finally:
            self._delete_jar(jar_id)

        record["jobOutput"] = (
            f"Waiting up to {self.timeouts.start:.0f} s for all tasks of job {job_id} to run"
        )
        self._save_step(record, "waiting for RUNNING")
        self._await_running(record, job_id)
        self._mark_running(record, job_id, spec, restore_path)
        return job_id

    def _fail_submission(self, record: dict[str, Any], job_id: str, error: FlinkRestError) -> None:
        """Raise the submission's root cause; a FAILED ghost job makes the record FAILED."""
        ghost = self.watch.find_job(job_id)
        if ghost is not None:
            record["jobId"] = job_id
            record["status"] = FAILED
            cause = self.watch.root_cause(job_id) or error.root_cause
            raise ActionFailure(f"Job {job_id} failed to start: {cause}")
        raise ActionFailure(error.root_cause)

    def _mark_running(
        self,
        record: dict[str, Any],
        job_id: str,
        spec: Mapping[str, Any],
        restore_path: str | None,
    ) -> None:
        record.update(
            jobId=job_id,
            status=RUNNING,
            deployed=dict(spec),
            restoredFrom=restore_path,
            pendingJobId=None,
            pendingSpec=None,
            pendingRestore=None,
            jobOutput=f"Job {job_id} is RUNNING",
        )
        self._save_step(record, "running")
        if restore_path:
            logger.info("Job %s of %s restored from %s", job_id, record["jobName"], restore_path)

    def _delete_jar(self, jar_id: str) -> None:
        try:
            self.flink.delete_jar(jar_id)
        except FlinkRestError as exc:
            logger.warning("Could not delete jar %s from Flink: %s", jar_id, exc.root_cause)

    def _await_running(self, record: dict[str, Any], job_id: str) -> None:
        try:
            self.watch.await_running(job_id)
        except JobEndedError as exc:
            record["jobId"] = job_id
            record["status"] = _STATUS_OF_TERMINAL[exc.state]
            raise

    def _savepoint_to_start_from(self, record: dict[str, Any]) -> str | None:
        if record.get("savePointName"):
            return self._named_savepoint(record)
        if record.get("lastSavePoint"):
            return str(record["lastSavePoint"])
        logger.info("Job %s has no savepoint; starting it without state", record["jobName"])
        return None

    def _named_savepoint(self, record: dict[str, Any]) -> str:
        """Return the savepoint that savePointName names: a full path or a known name."""
        name = str(record["savePointName"]).strip().rstrip("/")
        known = [entry["path"] for entry in record.get("savepoints", [])]
        for path in known:
            if path.rstrip("/") == name or PurePosixPath(path.rstrip("/")).name == name:
                return path
        if "/" in name:
            return name  # a full path outside the history; Flink checks that it exists
        listed = ", ".join(PurePosixPath(path).name for path in known) or "none"
        raise ActionFailure(
            f"Savepoint {name} not found among the savepoints of job {record['jobName']} "
            f"(known: {listed}); give a name from LIST_SAVEPOINT or a full savepoint path"
        )

    # --- stopping ---------------------------------------------------------------------------

    def _stop_with_savepoint(self, record: dict[str, Any]) -> str:
        """Stop the job with a savepoint, confirm it ended, and return the savepoint path."""
        job_id = record["jobId"]
        directory = self._savepoint_directory(record)
        configuration = {**(record.get("flinkConfiguration") or {})}
        configuration.update(record.get("actionConfiguration") or {})
        trigger_id = self._record_trigger(record, job_id, "STOP", directory)
        self.flink.stop_with_savepoint(
            job_id,
            target_directory=directory,
            drain=rec.drain_requested(configuration),
            trigger_id=trigger_id,
        )
        path = self.watch.await_savepoint(job_id, trigger_id)
        self._add_savepoint(record, path, "STOP", job_id)
        state = self.watch.await_terminal(job_id)
        record["status"] = STOPPED
        if state != "FINISHED":
            logger.warning("Job %s ended %s after its stop-with-savepoint", job_id, state)
        self._save_step(record, "stopped")
        return path

    def _cancel_and_wait(self, record: dict[str, Any]) -> str:
        job_id = record["jobId"]
        self._save_step(record, "cancelling")
        try:
            self.flink.cancel(job_id)
        except FlinkRestError as exc:
            if exc.status not in (404, 409):
                raise
            logger.info("Job %s was not running any more: %s", job_id, exc.root_cause)
        state = self.watch.await_terminal(job_id)
        record["status"] = _STATUS_OF_TERMINAL.get(state, CANCELLED)
        self._save_step(record, "cancelled")
        return state

    # --- savepoints -------------------------------------------------------------------------

    def _savepoint_directory(self, record: dict[str, Any]) -> str:
        """Return the action's, the job's, the engine's or the cluster's savepoint directory."""
        for configuration in (record.get("actionConfiguration"), record.get("flinkConfiguration")):
            directory = (configuration or {}).get(rec.SAVEPOINT_DIRECTORY_KEY)
            if directory:
                return str(directory)
        if self.default_savepoint_dir:
            return self.default_savepoint_dir
        cluster = self.flink.jobmanager_config()
        for key in _SAVEPOINT_DIRECTORY_KEYS:
            if cluster.get(key):
                return cluster[key]
        raise ActionFailure(
            f"No savepoint directory for job {record['jobName']}: set "
            "flinkConfiguration.savepoint.directory on the job, or "
            "execution.checkpointing.savepoint-dir on the cluster. The job is unchanged."
        )

    def _record_trigger(
        self, record: dict[str, Any], job_id: str, kind: str, directory: str
    ) -> str:
        trigger_id = new_flink_id()
        record["pendingTrigger"] = {
            "triggerId": trigger_id,
            "flinkJobId": job_id,
            "kind": kind,
            "directory": directory,
            "triggeredAt": utc_now(),
        }
        self._save_step(record, f"{kind.lower()} savepoint triggered")
        return trigger_id

    def _add_savepoint(self, record: dict[str, Any], path: str, kind: str, job_id: str) -> None:
        entry = {"path": path, "createdAt": utc_now(), "kind": kind, "flinkJobId": job_id}
        history = [item for item in record.get("savepoints", []) if item.get("path") != path]
        record["savepoints"] = [entry, *history]
        record["lastSavePoint"] = path
        record["pendingTrigger"] = None
        self._save_step(record, f"{kind.lower()} savepoint completed")
        logger.info("Savepoint of job %s completed: %s", record["jobName"], path)

    # --- recovery ---------------------------------------------------------------------------

    def _recover_record(self, record: dict[str, Any]) -> None:
        action = record.get("action", "?")
        logger.warning(
            "Recovering job %s: %s was interrupted at step %r",
            record["jobName"],
            action,
            record.get("step"),
        )
        savepoint_path = self._recover_savepoint(record)
        try:
            started = self._recover_submission(record)
        except ActionFailure as exc:
            self._finish(record, FAILED, f"The {action} action was interrupted: {exc}")
            return

        if started and record.get("rollbackCause"):
            self._finish(
                record,
                FAILED,
                f"{action} failed: {record['rollbackCause']}\nRolled back: the previous "
                f"version (jar {record.get('jarName')}) is running again as job "
                f"{record['jobId']}.",
            )
        elif started:
            self._finish(record, SUCCESS, f"Job {record['jobId']} is RUNNING")
        elif action == "SAVEPOINT" and savepoint_path:
            self._finish(record, SUCCESS, self._recovered_savepoint_output(record, savepoint_path))
        elif action == "STOP" and savepoint_path and self._recover_stop_state(record):
            self._finish(record, SUCCESS, f"Savepoint completed. Path: {savepoint_path}")
        elif action in ("LIST_SAVEPOINT", "DELETE"):
            self._run_action(record)
        else:
            self._finish(record, FAILED, self._interrupted_message(record, savepoint_path))

    def _recover_savepoint(self, record: dict[str, Any]) -> str | None:
        """Add the savepoint of an interrupted trigger to the history when it completed."""
        pending = record.get("pendingTrigger") or {}
        if not pending:
            return None
        try:
            status = self.flink.savepoint_status(pending["flinkJobId"], pending["triggerId"])
            if (status.get("status") or {}).get("id") != "COMPLETED":
                return None
            path = savepoint_location(pending["flinkJobId"], status.get("operation") or {})
        except ActionFailure as exc:
            logger.warning("Savepoint trigger %s failed: %s", pending["triggerId"], exc)
            return None
        except FlinkRestError as exc:
            # A Flink cluster that restarted has forgotten its triggers, but the savepoint
            # may have completed on storage before the restart.
            logger.warning(
                "Status of savepoint trigger %s is unavailable (%s); searching storage",
                pending["triggerId"],
                exc.root_cause,
            )
            pending["statusUnavailable"] = True
            found = self._savepoint_on_storage(record, pending)
            if found is None:
                return None
            path = found
        self._add_savepoint(record, path, pending.get("kind", "SAVEPOINT"), pending["flinkJobId"])
        return path

    def _savepoint_on_storage(
        self, record: dict[str, Any], pending: Mapping[str, Any]
    ) -> str | None:
        """Return the savepoint that an interrupted trigger completed on storage, if any."""
        directory = pending.get("directory")
        if not directory:
            try:
                directory = self._savepoint_directory(record)
            except (ActionFailure, FlinkRestError) as exc:
                logger.warning(
                    "No savepoint directory to search for %s: %s", record["jobName"], exc
                )
                return None
        # Records written before triggers carried their time fall back to the action's start.
        since_text = pending.get("triggeredAt") or record.get("actionStartedAt")
        if not since_text:
            logger.warning("Trigger %s has no time; storage not searched", pending["triggerId"])
            return None
        since = datetime.fromisoformat(str(since_text).replace("Z", "+00:00"))
        path = find_completed_savepoint(str(directory), pending["flinkJobId"], since)
        if path is None:
            logger.warning(
                "No complete savepoint of Flink job %s written after %s in %s",
                pending["flinkJobId"],
                since_text,
                directory,
            )
        else:
            logger.warning(
                "Found savepoint %s of interrupted trigger %s", path, pending["triggerId"]
            )
        return path

    def _recover_submission(self, record: dict[str, Any]) -> bool:
        """Adopt a job submitted under the recorded id; return whether it is running."""
        job_id = record.get("pendingJobId")
        if not job_id:
            return False
        details = self.watch.find_job(job_id)
        if details is None:
            logger.info("Flink never received job %s of %s", job_id, record["jobName"])
            return False
        state = str(details.get("state"))
        if state in TERMINAL_STATES:
            record["jobId"] = job_id
            record["status"] = _STATUS_OF_TERMINAL[state]
            return False
        logger.info("Flink has job %s of %s; waiting until it runs", job_id, record["jobName"])
        self._await_running(record, job_id)
        spec = dict(record.get("pendingSpec") or {})
        record.update(spec)
        self._mark_running(record, job_id, spec, record.get("pendingRestore"))
        return True

    def _recover_stop_state(self, record: dict[str, Any]) -> bool:
        """Set STOPPED once the job of an interrupted STOP has ended; return whether it did."""
        try:
            self.watch.await_terminal(record.get("jobId") or "")
        except (ActionFailure, FlinkRestError) as exc:
            logger.warning(
                "Job %s of %s did not end after its STOP: %s",
                record.get("jobId"),
                record["jobName"],
                exc,
            )
            return False
        record["status"] = STOPPED
        return True

    def _recovered_savepoint_output(self, record: dict[str, Any], path: str) -> str:
        """Return the output of a recovered SAVEPOINT, with the job's status checked in Flink."""
        self._refresh_status(record)
        output = f"Savepoint completed. Path: {path}"
        if record.get("status") != RUNNING:
            output += (
                f"\nFlink job {record.get('jobId')} is not running any more after the "
                f"interruption; the job is {record.get('status')}."
            )
        return output

    def _interrupted_message(self, record: dict[str, Any], savepoint_path: str | None) -> str:
        self._settle_status_after_failure(record)
        message = (
            f"The {record.get('action')} action was interrupted at step "
            f"{record.get('step')!r} because the process running it stopped. Flink job "
            f"{record.get('jobId') or '(none)'} is {record.get('status') or 'not running'}."
        )
        if savepoint_path:
            message += f" Savepoint {savepoint_path} completed and is kept."
        message += _unsearched_savepoint_hint(record.get("pendingTrigger") or {})
        return message + " Check the job, then run the action again."


class _StatusProbe:
    """Reads the record status of Flink jobs for one listing, one short REST read per job.

    After the first read that fails for a reason other than 404, Flink counts as unreachable
    for the rest of the listing: the remaining records keep their stored status, and one
    warning is logged at the end. Flink serves job details from a cache (web.refresh-interval,
    3 s by default), so a job that ended a moment ago can still read as RUNNING.
    """

    timeout = 5.0

    def __init__(self, flink: FlinkRestClient) -> None:
        self.flink = flink
        self.failure: str | None = None
        self.skipped = 0

    def status_of(self, job_id: str) -> str | None:
        """Return RUNNING, the status of an ended or unknown job, or None when unreadable."""
        if self.failure is not None:
            self.skipped += 1
            return None
        try:
            details = self.flink.find_job_once(job_id, timeout=self.timeout)
        except FlinkRestError as exc:
            self.failure = f"job {job_id}: {exc.root_cause}"
            self.skipped += 1
            return None
        if details is None:
            return FAILED  # a Flink cluster that restarted without HA has lost its jobs
        state = str(details.get("state"))
        return _STATUS_OF_TERMINAL[state] if state in TERMINAL_STATES else RUNNING

    def log_unreachable(self) -> None:
        if self.failure is not None:
            logger.warning(
                "Could not read Flink, so %d RUNNING job(s) keep their stored status (%s)",
                self.skipped,
                self.failure,
            )


def _unsearched_savepoint_hint(pending: Mapping[str, Any]) -> str:
    """Return a hint naming the remote directory where a savepoint may have completed."""
    directory = str(pending.get("directory") or "")
    if not pending.get("statusUnavailable") or not directory:
        return ""
    if local_directory(directory) is not None:
        return ""  # searched already
    prefix = str(pending.get("flinkJobId") or "")[:6]
    return (
        f" Its savepoint may have completed although Flink has no status for it: if {directory} "
        f"contains a savepoint-{prefix}-* folder with a _metadata file written after "
        f"{pending.get('triggeredAt')}, give its path to START as savePointName."
    )


def _is_waiting_to_start(record: Mapping[str, Any]) -> bool:
    return (
        record.get("actionResult") == IN_PROGRESS
        and record.get("action") in _CANCELLABLE_STARTS
        and record.get("step") == "waiting for RUNNING"
        and bool(record.get("pendingJobId"))
    )


def _reject_in_progress(name: str, record: Mapping[str, Any] | None) -> None:
    if record is not None and record.get("actionResult") == IN_PROGRESS:
        raise ActionConflictError(
            f"job {name} has a {record.get('action')} action in progress; "
            "wait until it ends, then retry"
        )


def _cause_text(exc: BaseException) -> str:
    if isinstance(exc, FlinkRestError):
        return exc.root_cause
    return str(exc)
