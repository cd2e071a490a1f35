"""Client for the Flink REST API (the 2.x request dialect, which Flink 1.20 also accepts)."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import requests

logger = logging.getLogger(__name__)

# Flink versions whose /jars/:jarid/run body takes programArgsList and claimMode. Flink 1.20
# introduced claimMode, and 2.0 removed the programArgs string, so older versions would silently
# start jobs without their arguments or with a different restore mode.
MIN_SUPPORTED_VERSION = (1, 20)
MAX_SUPPORTED_MAJOR = 2

# Submission errors that mean Flink already has a job with the requested id, so the job was
# submitted before.
# Flink 2.3 reports DuplicateApplicationSubmissionException, earlier versions
# DuplicateJobSubmissionException.
_DUPLICATE_MARKERS = ("DuplicateJobSubmissionException", "DuplicateApplicationSubmissionException")

_CAUSE_PREFIX = "Caused by: "
_MAX_ROOT_CAUSE = 2000
_RETRY_STATUSES_FOR_SUBMISSIONS = frozenset({502, 503, 504})


class FlinkRestError(Exception):
    """A failed Flink REST call with its HTTP status (None without a response) and root cause."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        errors: list[str] | None = None,
        root_cause: str = "",
    ) -> None:
        self.status = status
        self.errors = list(errors or [])
        self.root_cause = root_cause or message
        super().__init__(message)

    @property
    def is_duplicate_submission(self) -> bool:
        """Whether Flink rejected a run because a job with the requested id already exists."""
        return any(marker in text for text in self.errors for marker in _DUPLICATE_MARKERS)


class UnsupportedFlinkVersionError(FlinkRestError):
    """The cluster runs a Flink version whose REST dialect this client does not speak."""


def root_cause_of_stack(stack: str) -> str:
    """Return the innermost exception of a Java stack trace as ``class: message``.

    The message keeps its continuation lines but none of the ``at ...`` frames. Text without
    a stack trace is returned stripped.
    """
    text = stack.replace("<Exception on server side:", "").replace(
        "End of exception on server side>", ""
    )
    headers: list[list[str]] = []
    in_header = False
    for line in text.strip().splitlines():
        if line.startswith(_CAUSE_PREFIX):
            headers.append([line[len(_CAUSE_PREFIX) :]])
            in_header = True
        elif line.startswith("\t") or line.startswith("    at "):
            in_header = False
        elif not headers:
            headers.append([line])
            in_header = True
        elif in_header and line.strip():
            headers[-1].append(line)
    if not headers:
        return text.strip()
    cause = "\n".join(headers[-1]).strip()
    if len(cause) > _MAX_ROOT_CAUSE:
        cause = cause[:_MAX_ROOT_CAUSE] + " [...]"
    return cause


def root_cause_of_errors(errors: list[str]) -> str:
    """Return the root cause of a REST ``errors[]`` list (the entry with a stack trace wins)."""
    stacks = [text for text in errors if "\n" in text.strip()]
    if stacks:
        return root_cause_of_stack(stacks[-1])
    return "; ".join(text.strip() for text in errors if text.strip())


def parse_version(text: str) -> tuple[int, ...]:
    """Return the numeric prefix of a Flink version such as ``2.3.0`` or ``2.1-SNAPSHOT``."""
    numbers = re.findall(r"\d+", text.split("-")[0])
    return tuple(int(n) for n in numbers)


def check_supported_version(version: str) -> None:
    """Raise UnsupportedFlinkVersionError unless Flink ``version`` takes the 2.x run body."""
    parsed = parse_version(version)
    if (
        len(parsed) >= 2
        and MIN_SUPPORTED_VERSION <= parsed[:2]
        and parsed[0] <= MAX_SUPPORTED_MAJOR
    ):
        return
    raise UnsupportedFlinkVersionError(
        f"Flink {version or '(unknown version)'} is not supported: flink-task needs Flink 1.20 or "
        "2.x, whose /jars/:jarid/run accepts programArgsList and claimMode (older versions would "
        "drop the program arguments or restore with another claim mode). Upgrade the cluster.",
    )


class FlinkRestClient:
    """Calls Flink's REST API with retries for reads and id-based retries for submissions.

    Reads are retried on connection errors and 5xx responses. A run with a ``job_id`` and a
    savepoint trigger with a ``trigger_id`` are retried on connection errors and 502-504,
    because Flink deduplicates them by that id. Jar uploads are retried on connection errors
    only; a retried upload can leave an unused jar on the cluster.
    """

    def __init__(
        self,
        base_url: str,
        *,
        session: requests.Session | None = None,
        timeout: float = 30.0,
        upload_timeout: float = 300.0,
        attempts: int = 4,
        backoff: float = 0.5,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        # NOTE: one Session serves every thread of a caller such as the emulator. requests does
        # not promise that Session is thread-safe, although plain requests without shared
        # cookies or auth changes work in practice.
        self.session = session or requests.Session()
        self.timeout = timeout
        self.upload_timeout = upload_timeout
        self.attempts = max(1, attempts)
        self.backoff = backoff
        self._sleep = sleep
        self._version: str | None = None

    # --- transport -------------------------------------------------------------------------

    def _request(
        self,
        method: str,
        path: str,
        *,
        retry_statuses: frozenset[int] | None,
        retry_connection: bool = True,
        on_retry_response: Callable[[FlinkRestError, int], Any] | None = None,
        timeout: float | None = None,
        **kwargs: Any,
    ) -> Any:
        """Send one request with the given retry policy and return the decoded JSON body or None.

        ``retry_statuses`` None means every 5xx status is retried.
        """
        url = f"{self.base_url}{path}"
        for attempt in range(1, self.attempts + 1):
            try:
                response = self.session.request(
                    method, url, timeout=timeout or self.timeout, **kwargs
                )
            except (requests.ConnectionError, requests.Timeout) as exc:
                if not retry_connection or attempt == self.attempts:
                    raise FlinkRestError(
                        f"Flink REST {method} {path} failed: {type(exc).__name__}: {exc}",
                        root_cause=f"{type(exc).__name__}: no response from {self.base_url}",
                    ) from exc
                self._wait_before_retry(method, path, attempt, type(exc).__name__)
                continue
            if response.ok:
                return _json_or_none(response)
            error = _error_from_response(method, path, response)
            if attempt > 1 and on_retry_response is not None:
                return on_retry_response(error, attempt)
            retryable = (
                response.status_code >= 500
                if retry_statuses is None
                else (response.status_code in retry_statuses)
            )
            if not retryable or attempt == self.attempts:
                raise error
            self._wait_before_retry(method, path, attempt, f"HTTP {response.status_code}")
        raise AssertionError("unreachable")  # pragma: no cover

    def _wait_before_retry(self, method: str, path: str, attempt: int, reason: str) -> None:
        delay = self.backoff * 2 ** (attempt - 1)
        logger.warning(
            "Flink REST %s %s failed (%s), retry %d of %d in %.1f s",
            method,
            path,
            reason,
            attempt,
            self.attempts - 1,
            delay,
        )
        self._sleep(delay)

    def _get(self, path: str) -> Any:
        return self._request("GET", path, retry_statuses=None)

    # --- cluster ----------------------------------------------------------------------------

    def config(self) -> dict[str, Any]:
        """Return ``GET /config`` (web dashboard configuration, including ``flink-version``)."""
        return dict(self._get("/config") or {})

    def flink_version(self) -> str:
        """Return the cluster's Flink version, checked once and cached."""
        if self._version is None:
            version = str(self.config().get("flink-version", ""))
            check_supported_version(version)
            self._version = version
        return self._version

    def overview(self) -> dict[str, Any]:
        """Return the cluster overview (``GET /overview``: task managers, free slots, jobs)."""
        return dict(self._get("/overview") or {})

    def jobmanager_config(self) -> dict[str, str]:
        """Return the cluster configuration (``GET /jobmanager/config``) as a key-value map."""
        entries = self._get("/jobmanager/config") or []
        return {str(entry.get("key")): str(entry.get("value")) for entry in entries}

    # --- jars ---------------------------------------------------------------------------------

    def upload_jar(self, path: Path) -> str:
        """Upload a jar and return its Flink jar id (the basename of the stored ``filename``)."""
        self.flink_version()
        with path.open("rb") as stream:
            content = stream.read()
        files = {"jarfile": (path.name, content, "application/x-java-archive")}
        body = self._request(
            "POST",
            "/jars/upload",
            retry_statuses=frozenset(),
            files=files,
            timeout=self.upload_timeout,
        )
        filename = str((body or {}).get("filename", ""))
        if not filename:
            raise FlinkRestError(f"Flink accepted the upload of {path.name} but sent no filename")
        jar_id = filename.replace("\\", "/").rsplit("/", 1)[-1]
        logger.info("Uploaded %s to Flink as jar %s", path.name, jar_id)
        return jar_id

    def delete_jar(self, jar_id: str) -> None:
        """Delete an uploaded jar from the cluster."""
        self._request("DELETE", f"/jars/{jar_id}", retry_statuses=None)
        logger.info("Deleted jar %s from Flink", jar_id)

    def run_jar(
        self,
        jar_id: str,
        *,
        entry_class: str | None,
        program_args: list[str],
        parallelism: int | None,
        job_id: str | None,
        savepoint_path: str | None = None,
        allow_non_restored_state: bool = False,
        flink_configuration: Mapping[str, str] | None = None,
    ) -> str:
        """Run an uploaded jar and return the Flink job id.

        The restore always uses claimMode NO_CLAIM, so Flink never takes ownership of the
        savepoint and never deletes it. With a ``job_id``, a retry that gets a
        duplicate-submission error means an earlier attempt reached Flink, so the job id is
        returned.
        """
        self.flink_version()
        body: dict[str, Any] = {
            "programArgsList": list(program_args),
            "claimMode": "NO_CLAIM",
            "allowNonRestoredState": bool(allow_non_restored_state),
        }
        if entry_class:
            body["entryClass"] = entry_class
        if parallelism is not None:
            body["parallelism"] = parallelism
        if job_id:
            body["jobId"] = job_id
        if savepoint_path:
            body["savepointPath"] = savepoint_path
        if flink_configuration:
            body["flinkConfiguration"] = dict(flink_configuration)

        def accept_duplicate(error: FlinkRestError, attempt: int) -> Any:
            if job_id and error.is_duplicate_submission:
                logger.info("Job %s was already submitted by attempt %d", job_id, attempt - 1)
                return {"jobid": job_id}
            raise error

        result = self._request(
            "POST",
            f"/jars/{jar_id}/run",
            json=body,
            retry_statuses=_RETRY_STATUSES_FOR_SUBMISSIONS,
            retry_connection=bool(job_id),
            on_retry_response=accept_duplicate if job_id else None,
            timeout=self.upload_timeout,
        )
        return str((result or {}).get("jobid") or job_id or "")

    # --- jobs ---------------------------------------------------------------------------------

    def job(self, job_id: str) -> dict[str, Any]:
        """Return ``GET /jobs/:jobid``; an unknown job raises FlinkRestError with status 404."""
        return dict(self._get(f"/jobs/{job_id}") or {})

    def find_job(self, job_id: str) -> dict[str, Any] | None:
        """Return the job details, or None when Flink does not know the job id."""
        try:
            return self.job(job_id)
        except FlinkRestError as exc:
            if exc.status == 404:
                return None
            raise

    def find_job_once(self, job_id: str, *, timeout: float) -> dict[str, Any] | None:
        """Return the job details like ``find_job``, with one attempt and no retries."""
        try:
            return dict(
                self._request(
                    "GET",
                    f"/jobs/{job_id}",
                    retry_statuses=frozenset(),
                    retry_connection=False,
                    timeout=timeout,
                )
                or {}
            )
        except FlinkRestError as exc:
            if exc.status == 404:
                return None
            raise

    def jobs_overview(self) -> list[dict[str, Any]]:
        """Return the ``jobs`` list of ``GET /jobs/overview``."""
        return list((self._get("/jobs/overview") or {}).get("jobs", []))

    def cancel(self, job_id: str) -> None:
        """Cancel a job (``PATCH /jobs/:jobid?mode=cancel``)."""
        self._request("PATCH", f"/jobs/{job_id}", params={"mode": "cancel"}, retry_statuses=None)

    def checkpoints(self, job_id: str) -> dict[str, Any]:
        """Return the checkpoint statistics of a job (``GET /jobs/:jobid/checkpoints``)."""
        return dict(self._get(f"/jobs/{job_id}/checkpoints") or {})

    def checkpoint_config(self, job_id: str) -> dict[str, Any]:
        """Return the checkpointing configuration of a job, including ``externalization``."""
        return dict(self._get(f"/jobs/{job_id}/checkpoints/config") or {})

    def exceptions(self, job_id: str) -> dict[str, Any]:
        """Return the exception history of a job (``GET /jobs/:jobid/exceptions``)."""
        return dict(self._get(f"/jobs/{job_id}/exceptions") or {})

    def job_root_cause(self, job_id: str) -> str:
        """Return the root cause of the newest exception of a job, or an empty string."""
        history = self.exceptions(job_id)
        entries = (history.get("exceptionHistory") or {}).get("entries") or []
        if entries:
            newest = max(entries, key=lambda entry: entry.get("timestamp") or 0)
            return root_cause_of_stack(
                str(newest.get("stacktrace") or newest.get("exceptionName"))
            )
        root = history.get("root-exception")
        return root_cause_of_stack(str(root)) if root else ""

    # --- savepoints ---------------------------------------------------------------------------

    def stop_with_savepoint(
        self, job_id: str, *, target_directory: str, drain: bool, trigger_id: str
    ) -> str:
        """Trigger stop-with-savepoint and return the trigger id (repeating it is safe)."""
        body = {"targetDirectory": target_directory, "drain": drain, "triggerId": trigger_id}
        result = self._request(
            "POST",
            f"/jobs/{job_id}/stop",
            json=body,
            retry_statuses=_RETRY_STATUSES_FOR_SUBMISSIONS,
        )
        return str((result or {}).get("request-id") or trigger_id)

    def trigger_savepoint(self, job_id: str, *, target_directory: str, trigger_id: str) -> str:
        """Trigger a savepoint of a running job and return the trigger id."""
        body = {"target-directory": target_directory, "cancel-job": False, "triggerId": trigger_id}
        result = self._request(
            "POST",
            f"/jobs/{job_id}/savepoints",
            json=body,
            retry_statuses=_RETRY_STATUSES_FOR_SUBMISSIONS,
        )
        return str((result or {}).get("request-id") or trigger_id)

    def savepoint_status(self, job_id: str, trigger_id: str) -> dict[str, Any]:
        """Return ``GET /jobs/:jobid/savepoints/:triggerid`` (``status.id`` and ``operation``)."""
        return dict(self._get(f"/jobs/{job_id}/savepoints/{trigger_id}") or {})


def _json_or_none(response: requests.Response) -> Any:
    if not response.content:
        return None
    try:
        return response.json()
    except ValueError:
        return None


def _error_from_response(method: str, path: str, response: requests.Response) -> FlinkRestError:
    errors: list[str] = []
    try:
        body = response.json()
        errors = [str(item) for item in body.get("errors", [])]
    except (ValueError, AttributeError):
        errors = [response.text[:500]] if response.text else []
    root = root_cause_of_errors(errors) or response.reason or "no error text"
    return FlinkRestError(
        f"Flink REST {method} {path} returned HTTP {response.status_code}: {root}",
        status=response.status_code,
        errors=errors,
        root_cause=root,
    )
