"""The Flink target: one action carried out by the engine, in this process, on any Flink cluster.

The run calls the JobManager's REST API directly, optionally through a proxy that takes a
bearer token or basic authentication, and with a custom CA or a client certificate. It keeps
the job records in ``stateDirectory`` (local or ADLS Gen2) and downloads jars from local,
``abfs://`` or ``https://`` folders. The engine's waits sleep through the run's Waiter, so the
``timeoutMinutes`` deadline and SIGINT/SIGTERM stop them. An interrupted action leaves its
record IN_PROGRESS and unlocked; the next run reconciles it with Flink (``Engine.recover``)
before it does anything else.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import requests

from flink_task import __version__
from flink_task.engine import (
    Engine,
    EngineError,
    FlinkRestClient,
    FlinkRestError,
    JobStore,
    StoreError,
    Timeouts,
    UnsupportedFlinkVersionError,
)
from flink_task.engine.adls import ADLS_SCHEMES, AdlsJobStore, AdlsLocation, open_file_system
from flink_task.engine.sources import RemoteJarResolver
from flink_task.errors import (
    EXIT_ACTION_FAILED,
    EXIT_CANCELLED,
    EXIT_OK,
    ActionFailedError,
    CancelledError,
    InputError,
)
from flink_task.outputs import report_jobs, short_state, write_outputs
from flink_task.redact import redact_properties
from flink_task.report import Reporter
from flink_task.request import FlinkRunRequest, FlinkTarget, build_flink_run_request
from flink_task.waiting import Cancellation, Waiter, WaitTimeoutError

logger = logging.getLogger(__name__)

# Lock TTL beyond the run's own deadline: a single REST call can still block for up to the
# upload timeout (300 s) after the deadline passes.
LOCK_TTL_MARGIN_SECONDS = 600.0
# Engine waits: Flink's own defaults bound each wait, and the run's deadline bounds them all.
ENGINE_TIMEOUTS = Timeouts(poll_interval=0.5, log_interval=30.0)


class RunInterrupted(BaseException):
    """Raised from the engine's sleeps when the deadline passes or a signal arrives.

    It derives from BaseException so that the engine, which records every Exception of an
    action as FAILED, lets it through and leaves the record IN_PROGRESS for recovery.
    """

    def __init__(self, cause: Exception) -> None:
        super().__init__(str(cause))
        self.cause = cause


def interruptible_sleep(waiter: Waiter) -> Callable[[float], None]:
    """Return a sleep function that ends early, raising RunInterrupted, at the deadline.

    NOTE: a REST call in flight is not interrupted; the signal or deadline takes effect at
    the next sleep, up to one request timeout (30 s, 300 s for jar uploads) later.
    """

    def sleep(seconds: float) -> None:
        try:
            waiter.pause(seconds)
        except (CancelledError, WaitTimeoutError) as exc:
            raise RunInterrupted(exc) from exc

    return sleep


def run(
    command: str,
    flags: argparse.Namespace,
    raw: Mapping[str, str],
    environ: Mapping[str, str],
    reporter: Reporter,
    cancellation: Cancellation,
) -> int:
    """Validate the inputs of a Flink target run, carry the action out and return the exit code."""
    request = build_flink_run_request(raw, command=command)
    for secret in request.secret_values:
        reporter.mask(secret)
    target = request.target
    logger.info(
        "flink-task %s: %s on Flink at %s (job records in %s)",
        __version__,
        request.action + (f" of job {request.job_name}" if request.job_name else ""),
        target.url,
        target.state_directory,
    )
    if request.dry_run:
        plan: dict[str, Any] = {
            "target": "flink",
            "flinkUrl": target.url,
            "stateDirectory": target.state_directory,
            "action": request.action,
        }
        if request.properties is not None:
            plan["properties"] = redact_properties(request.properties)
        sys.stdout.write(reporter.record_json(plan) + "\n")
        logger.info("Dry run: nothing was sent")
        return EXIT_OK
    waiter = Waiter(timeout_seconds=request.timeout_minutes * 60, cancellation=cancellation)
    with contextlib.ExitStack() as stack:
        work_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="flink-task-")))
        engine = _build_engine(request, raw, environ, reporter, waiter, work_dir, stack)
        if request.action == "LIST":
            return _list(request, engine, reporter, command, flags)
        return _perform(request, engine, reporter)
    raise AssertionError("unreachable")  # pragma: no cover


# --- wiring -------------------------------------------------------------------------------------


def _build_engine(
    request: FlinkRunRequest,
    raw: Mapping[str, str],
    environ: Mapping[str, str],
    reporter: Reporter,
    waiter: Waiter,
    work_dir: Path,
    stack: contextlib.ExitStack,
) -> Engine:
    target = request.target
    sleep = interruptible_sleep(waiter)
    session = stack.enter_context(flink_session(target, work_dir))
    flink = FlinkRestClient(target.url, session=session, sleep=sleep)
    check_flink(flink, target)
    jar_directory = (request.properties or {}).get("jobJarDirectory", "")
    opener = _adls_opener(
        raw,
        environ,
        reporter,
        stack,
        needed=_is_adls(target.state_directory) or _is_adls(jar_directory),
    )
    lock_ttl = request.timeout_minutes * 60 + LOCK_TTL_MARGIN_SECONDS
    store = open_store(target.state_directory, opener, lock_ttl=lock_ttl)
    jars = RemoteJarResolver(work_dir / "jars", open_file_system=opener)
    return Engine(flink=flink, store=store, jars=jars, timeouts=ENGINE_TIMEOUTS, sleep=sleep)


@contextlib.contextmanager
def flink_session(target: FlinkTarget, work_dir: Path) -> Iterator[requests.Session]:
    """Yield a session to the Flink REST API with the target's TLS and proxy credentials."""
    session = _VerifyingSession(_verify_setting(target))
    try:
        if target.token:
            session.headers["Authorization"] = f"Bearer {target.token}"
        elif target.username and target.password:
            session.auth = (target.username, target.password)
        if target.client_certificate:
            session.cert = _client_certificate(target, work_dir)
        yield session
    finally:
        session.close()


class _VerifyingSession(requests.Session):
    """A Session whose TLS verification setting wins over ``REQUESTS_CA_BUNDLE``.

    requests lets the environment's CA bundle override ``Session.verify``; flinkCaBundle is
    meant for the Flink endpoint only, so it is passed with every request instead.
    """

    def __init__(self, verify: bool | str) -> None:
        super().__init__()
        self._verify_setting = verify

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("verify", self._verify_setting)
        return super().request(method, url, *args, **kwargs)


def _verify_setting(target: FlinkTarget) -> bool | str:
    if not target.ca_bundle:
        return True
    if not Path(target.ca_bundle).is_file():
        raise InputError(
            "flinkCaBundle", f"file {target.ca_bundle} not found", "Give the path of a PEM file"
        )
    return target.ca_bundle


def _client_certificate(target: FlinkTarget, work_dir: Path) -> str | tuple[str, str]:
    """Return the client certificate (and key) as files; PEM text is written to ``work_dir``."""
    certificate = _pem_file("flinkClientCertificate", target.client_certificate or "", work_dir)
    if not target.client_key:
        return certificate
    return certificate, _pem_file("flinkClientKey", target.client_key, work_dir)


def _pem_file(input_name: str, value: str, work_dir: Path) -> str:
    if "-----BEGIN" in value:
        path = work_dir / f"{input_name}.pem"
        descriptor = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as stream:
            stream.write(value.strip() + "\n")
        return str(path)
    if not Path(value).is_file():
        # The value is a secret input: name the input, never the value.
        raise InputError(input_name, "is neither PEM text nor the path of a file", "Fix it")
    return value


def check_flink(flink: FlinkRestClient, target: FlinkTarget) -> None:
    """Read the cluster's Flink version; raise InputError for an unsupported one."""
    try:
        version = flink.flink_version()
    except UnsupportedFlinkVersionError as exc:
        raise InputError("flinkUrl", str(exc)) from None
    except FlinkRestError as exc:
        hint = ""
        if exc.status in (401, 403):
            hint = ". Check flinkToken, or flinkUsername and flinkPassword"
        raise ActionFailedError(
            f"cannot read the Flink version at {target.url}: {exc}{hint}"
        ) from exc
    logger.info("Flink %s at %s", version, target.url)


def _is_adls(location: str) -> bool:
    return urlsplit(location or "").scheme in ADLS_SCHEMES


def _adls_opener(
    raw: Mapping[str, str],
    environ: Mapping[str, str],
    reporter: Reporter,
    stack: contextlib.ExitStack,
    *,
    needed: bool,
) -> Callable[[AdlsLocation], Any] | None:
    """Return a factory of ADLS clients signed in as the task signs in, or None if not needed."""
    if not needed:
        return None
    from flink_task.auth import plan_sign_in

    sign_in = plan_sign_in(raw, environ)
    for secret in sign_in.secrets:
        reporter.mask(secret)
    credential = sign_in.create_credential(on_secret=reporter.mask)
    close = getattr(credential, "close", None)
    if callable(close):
        stack.callback(close)
    clients: dict[tuple[str, str], Any] = {}

    def opener(location: AdlsLocation) -> Any:
        key = (location.host, location.container)
        if key not in clients:
            clients[key] = open_file_system(location, credential)
        return clients[key]

    return opener


def open_store(
    location: str,
    opener: Callable[[AdlsLocation], Any] | None,
    *,
    lock_ttl: float,
) -> JobStore:
    """Return the job store at a local path, ``file://`` URL or ``abfs://`` URL."""
    if _is_adls(location):
        assert opener is not None
        adls = AdlsLocation.parse(location)
        return AdlsJobStore(opener(adls), adls, lock_ttl=lock_ttl)
    parts = urlsplit(location)
    path = Path(unquote(parts.path)) if parts.scheme == "file" else Path(location)
    try:
        return JobStore(path, lock_ttl=lock_ttl)
    except OSError as exc:
        raise InputError("stateDirectory", f"cannot create {path}: {exc.strerror}") from None


# --- actions ------------------------------------------------------------------------------------


def _perform(request: FlinkRunRequest, engine: Engine, reporter: Reporter) -> int:

    assert request.properties is not None and request.job_name is not None
    name = request.job_name
    try:
        _recover(engine)
        started = engine.begin(request.properties)
        logger.info("%s of job %s started (runId %s)", request.action, name, started["runId"])
        record = engine.execute(name)
    except RunInterrupted as stop:
        return _interrupted(request, engine, reporter, stop)
    except (EngineError, StoreError) as exc:
        # EngineError: begin() rejected the action. StoreError: a record could not be read,
        # locked or written, before or during the action.
        raise ActionFailedError(f"{request.action} of job {name} failed: {exc}") from None
    if request.action == "DELETE" and record.get("actionResult") == "SUCCESS":
        record = {**record, "status": "DELETED"}
    write_outputs(request, record, reporter)
    if record.get("actionResult") == "FAILED":
        output = reporter.untrusted(str(record.get("jobOutput") or "no output"))
        reporter.fail(f"{request.action} of job {name} FAILED: {output}")
        return EXIT_ACTION_FAILED
    logger.info("%s of job %s: %s", request.action, name, record.get("actionResult"))
    return EXIT_OK


def _recover(engine: Engine) -> None:
    """Settle records that an interrupted run left IN_PROGRESS, before acting."""
    for name in engine.recover():
        record = engine.get_job(name) or {}
        logger.warning(
            "Reconciled job %s, left IN_PROGRESS by an interrupted run: %s %s",
            name,
            record.get("action"),
            record.get("actionResult"),
        )


def _interrupted(
    request: FlinkRunRequest, engine: Engine, reporter: Reporter, stop: RunInterrupted
) -> int:

    name = request.job_name or ""
    try:
        record = engine.get_job(name) or {"jobName": name}
    except (EngineError, StoreError) as exc:
        logger.error("Could not read the record of job %s: %s", name, exc)
        record = {"jobName": name}
    record = {**record, "actionResult": "IN_PROGRESS"}
    write_outputs(request, record, reporter)
    state = f"last known state: {short_state(record)}"
    leftover = "The record stays IN_PROGRESS; the next run reconciles it with Flink before acting"
    if isinstance(stop.cause, CancelledError):
        reporter.fail(f"{request.action} of job {name} {stop.cause}; {state}. {leftover}")
        return EXIT_CANCELLED
    reporter.fail(
        f"{request.action} of job {name} {stop.cause} (timeoutMinutes "
        f"{request.timeout_minutes}); {state}. {leftover}"
    )
    return EXIT_ACTION_FAILED


def _list(
    request: FlinkRunRequest,
    engine: Engine,
    reporter: Reporter,
    command: str,
    flags: argparse.Namespace,
) -> int:
    try:
        records = engine.list_jobs()
    except (EngineError, StoreError) as exc:
        raise ActionFailedError(f"cannot list the job records: {exc}") from None
    if request.job_name is not None:
        records = [record for record in records if record.get("jobName") == request.job_name]
        if not records:
            reporter.fail(
                f"job {request.job_name} has no record in {request.target.state_directory}"
            )
            return EXIT_ACTION_FAILED
    records = [redact_properties(_with_live_state(engine, record)) for record in records]
    report_jobs(
        request,
        records,
        reporter,
        title=f"Jobs in {request.target.state_directory}",
        describe=lambda r: f"{r.get('status') or '-'} (Flink: {r['flinkState']})",
        columns=("jobName", "status", "flinkState", "action", "actionResult", "jobId"),
        as_table=command == "jobs" and not getattr(flags, "json", False),
    )
    return EXIT_OK


def _with_live_state(engine: Engine, record: dict[str, Any]) -> dict[str, Any]:
    """Add ``flinkState``: the state Flink reports for the record's job id right now."""
    job_id = record.get("jobId")
    state = "NO_JOB"
    if job_id:
        try:
            details = engine.flink.find_job(str(job_id))
            state = str(details.get("state")) if details is not None else "NOT_FOUND"
        except FlinkRestError as exc:
            logger.warning("Could not read Flink job %s: %s", job_id, exc.root_cause)
            state = "UNKNOWN"
    return {**record, "flinkState": state}
