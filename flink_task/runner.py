"""One run of the task: inputs, validation, sign-in, the action, outputs and the exit code."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import traceback
from collections.abc import Mapping, Sequence
from typing import Any, TextIO

from azure.core.exceptions import AzureError

from flink_task import __version__
from flink_task.errors import (
    EXIT_ACTION_FAILED,
    EXIT_CANCELLED,
    EXIT_OK,
    EXIT_UNEXPECTED,
    CancelledError,
    FlinkTaskError,
)
from flink_task.inputs import INPUTS, add_input_flags, collect_raw_inputs
from flink_task.outputs import report_jobs, short_state, write_outputs
from flink_task.redact import redact_properties
from flink_task.report import Reporter, detect_reporter
from flink_task.request import RunRequest, build_run_request
from flink_task.waiting import Cancellation, Waiter, WaitTimeoutError

logger = logging.getLogger("flink_task")


def build_parser(command: str) -> argparse.ArgumentParser:
    prog = "flink-task jobs" if command == "jobs" else "flink-task run"
    description = (
        "List jobs and their status."
        if command == "jobs"
        else "Perform a Flink job action on a Flink cluster's REST API (target flink) or "
        "through the HDInsight on AKS job API (target hdinsight)."
    )
    parser = argparse.ArgumentParser(
        prog=prog,
        description=description,
        epilog="Every input can also be set in its environment variable; flags win. "
        "Secrets (clientSecret, clientCertificate, clientCertificatePassword, flinkToken, "
        "flinkPassword, flinkClientCertificate, flinkClientKey) are read from their "
        "environment variables only.",
    )
    parser.add_argument("--debug", action="store_true", help="Log debug details and tracebacks.")
    parser.add_argument("--version", action="version", version=f"flink-task {__version__}")
    if command == "jobs":
        parser.add_argument(
            "--json", action="store_true", help="Print the jobs as JSON instead of a table."
        )
    add_input_flags(parser)
    return parser


def main(command: str, argv: Sequence[str], environ: Mapping[str, str] | None = None) -> int:
    """Run ``flink-task run`` or ``flink-task jobs`` and return the exit code."""
    environ = os.environ if environ is None else environ
    parser = build_parser(command)
    flags = parser.parse_args(list(argv))
    reporter = detect_reporter(environ=environ, stdout=sys.stdout, stderr=sys.stderr)
    raw = collect_raw_inputs(flags, environ)
    for spec in INPUTS:
        if spec.secret and spec.name in raw:
            reporter.mask(raw[spec.name])
    debug = flags.debug or _pipeline_debug(environ)
    reporter.install_logging(logging.DEBUG if debug else logging.INFO)
    cancellation = Cancellation()
    try:
        with cancellation.handle_signals():
            exit_code = _run(command, flags, raw, environ, reporter, cancellation)
    except FlinkTaskError as error:
        reporter.fail(reporter.untrusted(str(error)))
        exit_code = error.exit_code
    except AzureError as error:
        # Network and service errors azure-core gave up on (nothing was submitted yet).
        reporter.fail(reporter.untrusted(f"request failed: {type(error).__name__}: {error}"))
        exit_code = EXIT_ACTION_FAILED
    except Exception as error:  # noqa: BLE001 - the last resort that maps to exit code 3
        if debug:
            logger.debug("%s", "".join(traceback.format_exception(error)))
        reporter.fail(
            reporter.untrusted(f"unexpected error: {type(error).__name__}: {error}")
            + ("" if debug else " (run with --debug for the traceback)")
        )
        exit_code = EXIT_UNEXPECTED
    reporter.finish(exit_code)
    reporter.uninstall_logging()
    return exit_code


def _pipeline_debug(environ: Mapping[str, str]) -> bool:
    """Return True when the pipeline run has debug logging on (RUNNER_DEBUG, SYSTEM_DEBUG)."""
    return environ.get("RUNNER_DEBUG") == "1" or environ.get("SYSTEM_DEBUG", "").lower() == "true"


def _run(
    command: str,
    flags: argparse.Namespace,
    raw: dict[str, str],
    environ: Mapping[str, str],
    reporter: Reporter,
    cancellation: Cancellation,
) -> int:
    from flink_task.auth import plan_sign_in
    from flink_task.request import choose_target

    if choose_target(raw) == "flink":
        from flink_task import flinktarget

        return flinktarget.run(command, flags, raw, environ, reporter, cancellation)
    sign_in = plan_sign_in(raw, environ)
    for secret in sign_in.secrets:
        reporter.mask(secret)
    raw = dict(raw)
    raw["managementEndpoint"] = sign_in.cloud.management_endpoint
    request = build_run_request(
        raw, command=command, subscription_fallback=sign_in.subscription_id
    )
    for secret in request.secret_values:
        reporter.mask(secret)
    logger.info(
        "flink-task %s: %s on cluster %s (pool %s, API version %s)",
        __version__,
        request.action + (f" of job {request.job_name}" if request.job_name else ""),
        request.target.cluster,
        request.target.cluster_pool,
        request.target.api_version,
    )
    if request.dry_run:
        _print_dry_run(request, reporter, sys.stdout)
        return EXIT_OK
    from flink_task.arm import JobApiClient

    credential = sign_in.create_credential(on_secret=reporter.mask)
    client = JobApiClient(request.target, credential, scope=sign_in.scope)
    try:
        if request.action == "LIST":
            return _list(request, client, reporter, command, flags)
        return _perform(request, client, reporter, cancellation)
    finally:
        client.close()
        close_credential = getattr(credential, "close", None)
        if callable(close_credential):
            close_credential()


def _perform(
    request: RunRequest, client: Any, reporter: Reporter, cancellation: Cancellation
) -> int:
    from flink_task import hdinsight

    waiter = Waiter(timeout_seconds=request.timeout_minutes * 60, cancellation=cancellation)
    try:
        outcome = hdinsight.run_action(request, client, waiter)
    except hdinsight.WaitInterruptedError as interrupted:
        record = interrupted.record if interrupted.record is not None else {}
        record = {**record, "actionResult": "IN_PROGRESS"}
        write_outputs(request, record, reporter)
        state = f"last known state: {short_state(record)}"
        subject = f"{request.action} of job {request.job_name}"
        still_running = "The action may still be running on the server"
        cause = interrupted.cause
        if isinstance(cause, CancelledError):
            reporter.fail(f"{subject} {cause}; {state}. {still_running}")
            return EXIT_CANCELLED
        if isinstance(cause, WaitTimeoutError):
            reporter.fail(
                f"{subject} {cause} (timeoutMinutes {request.timeout_minutes}); {state}. "
                f"{still_running}"
            )
            return EXIT_ACTION_FAILED
        reporter.fail(
            reporter.untrusted(f"waiting for {subject} failed: {cause}")
            + f"; {state}. It was submitted. {still_running}; list the jobs before retrying"
        )
        return EXIT_ACTION_FAILED
    record = outcome.record or {"jobName": request.job_name}
    if outcome.deleted:
        record = {**record, "action": "DELETE", "actionResult": "SUCCESS", "status": "DELETED"}
    write_outputs(request, record, reporter)
    result = record.get("actionResult")
    if result == "FAILED":
        output = reporter.untrusted(str(record.get("jobOutput") or "no output"))
        reporter.fail(f"{request.action} of job {request.job_name} FAILED: {output}")
        return EXIT_ACTION_FAILED
    if not outcome.finished:
        logger.info("%s submitted; not waiting for its result (wait=false)", request.action)
    else:
        logger.info("%s of job %s: %s", request.action, request.job_name, result)
    return EXIT_OK


def _list(
    request: RunRequest, client: Any, reporter: Reporter, command: str, flags: argparse.Namespace
) -> int:
    items = client.list_jobs(request.job_name)
    records = [redact_properties(item.get("properties") or {}) for item in items]
    if request.job_name is not None and not records:
        reporter.fail(f"job {request.job_name} was not found on cluster {request.target.cluster}")
        return EXIT_ACTION_FAILED
    report_jobs(
        request,
        records,
        reporter,
        title=f"Jobs on cluster {request.target.cluster}",
        describe=lambda r: f"{r.get('status') or '-'} ({r.get('actionResult') or '-'})",
        columns=("jobName", "status", "action", "actionResult", "jobId", "lastSavePoint"),
        as_table=command == "jobs" and not getattr(flags, "json", False),
    )
    return EXIT_OK


def _print_dry_run(request: RunRequest, reporter: Reporter, stream: TextIO) -> None:
    plan: dict[str, Any] = {
        "method": "GET" if request.body is None else "POST",
        "url": request.target.url("jobs" if request.body is None else "runJob"),
    }
    if request.body is not None:
        plan["body"] = {"properties": redact_properties(request.body["properties"])}
    stream.write(reporter.record_json(plan) + "\n")
    logger.info("Dry run: nothing was sent")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main("run", sys.argv[1:]))
