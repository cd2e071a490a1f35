"""The four benchmarks: lifecycle overhead, notice delay, cold start and peak memory.

Each function runs its own job from NEW to DELETE, so any of them can run alone, and returns
a JSON-ready dict of raw samples and their summary.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from benchmarks.direct import DirectLifecycle
from benchmarks.report import summarize
from benchmarks.stack import TASK_TIMEOUT_MINUTES, Stack
from benchmarks.taskproc import BenchmarkError, TaskRun, base_environment, run_task
from flink_task.samplejobs import ENTRY_CLASS

logger = logging.getLogger(__name__)

TASK_TIMEOUT_SECONDS = TASK_TIMEOUT_MINUTES * 60 + 60
COLD_START_TIMEOUT_SECONDS = 120.0
JOB_ARGUMENTS = {
    "v1": "--rate 20 --keys 8 --label 'first version'",
    "v2": "--rate 20 --keys 8 --label 'second version'",
}
LIFECYCLE_ACTIONS = (
    "NEW",
    "SAVEPOINT",
    "LIST_SAVEPOINT",
    "STOP",
    "START",
    "UPDATE",
    "STATELESS_UPDATE",
    "CANCEL",
    "DELETE",
)
NOTICE_ACTIONS = ("LIST_SAVEPOINT", "SAVEPOINT")
MEMORY_ACTIONS = ("NEW", "SAVEPOINT", "LIST_SAVEPOINT", "CANCEL", "DELETE")
# Inputs of a dry run. The endpoints are a closed loopback port: a dry run sends nothing, and
# if it ever did, the request could not leave the machine.
DRY_RUN_INPUTS = {
    "INPUT_ACTION": "SAVEPOINT",
    "INPUT_JOBNAME": "bench-dry-run",
    "INPUT_SUBSCRIPTIONID": "00000000-0000-0000-0000-000000000000",
    "INPUT_RESOURCEGROUP": "bench",
    "INPUT_CLUSTERPOOL": "bench-pool",
    "INPUT_CLUSTER": "bench-cluster",
    "INPUT_MANAGEMENTENDPOINT": "https://127.0.0.1:9",
    "INPUT_AUTHORITYHOST": "https://127.0.0.1:9",
    "INPUT_TENANTID": "00000000-0000-0000-0000-000000000001",
    "INPUT_CLIENTID": "00000000-0000-0000-0000-000000000002",
    "INPUT_DRYRUN": "true",
    "AZURE_CLIENT_SECRET": "not-a-real-secret",
}

# Log lines of the emulator's engine and HTTP server, as flink_task formats them.
_ENGINE_LOGGER = "flink_task.engine.actions"
_SERVER_LOGGER = "flink_task.emulator.server"
_ENDED_PATTERN = re.compile(r"^(?P<action>\S+) on job (?P<job>\S+) ended (?P<result>[A-Z_]+)")
_REQUEST_PATTERN = re.compile(r"^(?P<method>[A-Z]+) (?P<path>\S+) -> (?P<status>\d+) in ")


@dataclass(frozen=True)
class LogEvent:
    """A log record of the emulator: when it was created, which logger, the message."""

    created: float
    logger_name: str
    message: str


class EventRecorder(logging.Handler):
    """Keeps the engine's "ended" lines and the server's request lines with their times."""

    def __init__(self) -> None:
        super().__init__(level=logging.INFO)
        self._events: list[LogEvent] = []
        self._events_lock = threading.Lock()

    def attach(self) -> None:
        for name in (_ENGINE_LOGGER, _SERVER_LOGGER):
            logging.getLogger(name).addHandler(self)

    def detach(self) -> None:
        for name in (_ENGINE_LOGGER, _SERVER_LOGGER):
            logging.getLogger(name).removeHandler(self)

    def emit(self, record: logging.LogRecord) -> None:
        event = LogEvent(record.created, record.name, record.getMessage())
        with self._events_lock:
            self._events.append(event)

    def between(self, start: float, end: float) -> list[LogEvent]:
        """Return the events created from ``start`` to ``end`` (``time.time()`` values)."""
        with self._events_lock:
            return [event for event in self._events if start <= event.created <= end]


# --- helpers ---------------------------------------------------------------------------------


def _step_inputs(stack: Stack, action: str, version: str = "v1") -> dict[str, str]:
    """Return the inputs a pipeline sets for ``action`` in the sample lifecycle."""
    if action == "NEW":
        return {
            "jobJarDirectory": str(stack.jar_dir),
            "jarName": stack.jars["v1"].name,
            "entryClass": ENTRY_CLASS,
            "args": JOB_ARGUMENTS["v1"],
            "parallelism": "1",
        }
    if action == "UPDATE":
        return {"jarName": stack.jars["v2"].name, "args": JOB_ARGUMENTS["v2"]}
    if action == "STATELESS_UPDATE":
        return {"jarName": stack.jars["v2"].name}
    return {}


def _run_step(stack: Stack, action: str, job_name: str) -> TaskRun:
    """Run one task step through the emulator and check that it ended SUCCESS."""
    environment = stack.task_environment(action, job_name, _step_inputs(stack, action))
    run = run_task(
        f"{action} of {job_name}", [], environment, timeout_seconds=TASK_TIMEOUT_SECONDS
    )
    result = run.record().get("actionResult")
    if result != "SUCCESS":
        raise BenchmarkError(f"{action} of {job_name} ended {result}, expected SUCCESS")
    logger.info("%s of %s: %.2f s", action, job_name, run.wall_seconds)
    return run


# --- lifecycle overhead ----------------------------------------------------------------------


def run_lifecycle(stack: Stack, runs: int) -> dict[str, Any]:
    """Time each lifecycle step through the task and as direct REST calls, ``runs`` times."""
    task_seconds: dict[str, list[float]] = defaultdict(list)
    direct_seconds: dict[str, list[float]] = defaultdict(list)
    savepoints = stack.workdir / "direct-savepoints"
    for index in range(1, runs + 1):
        job_name = f"bench-lifecycle-{index}"
        logger.info("lifecycle run %d of %d through the task", index, runs)
        for action in LIFECYCLE_ACTIONS:
            task_seconds[action].append(_run_step(stack, action, job_name).wall_seconds)
        logger.info("lifecycle run %d of %d as direct Flink REST calls", index, runs)
        direct = DirectLifecycle(
            stack.rest_client(), stack.jars, savepoints.as_uri(), ENTRY_CLASS, JOB_ARGUMENTS
        )
        for action, step in direct.steps():
            started = time.monotonic()
            step()
            direct_seconds[action].append(time.monotonic() - started)
            logger.info("direct %s: %.2f s", action, direct_seconds[action][-1])
    return _lifecycle_result(runs, task_seconds, direct_seconds)


def _lifecycle_result(
    runs: int, task_seconds: dict[str, list[float]], direct_seconds: dict[str, list[float]]
) -> dict[str, Any]:
    steps = []
    for action in LIFECYCLE_ACTIONS:
        task = summarize(task_seconds[action])["median"]
        direct = summarize(direct_seconds[action])["median"]
        steps.append(
            {
                "action": action,
                "taskSeconds": task_seconds[action],
                "directSeconds": direct_seconds[action],
                "taskMedian": task,
                "directMedian": direct,
                "ratio": task / direct,
            }
        )
    task_totals = [sum(task_seconds[a][i] for a in LIFECYCLE_ACTIONS) for i in range(runs)]
    direct_totals = [sum(direct_seconds[a][i] for a in LIFECYCLE_ACTIONS) for i in range(runs)]
    task_total = summarize(task_totals)["median"]
    direct_total = summarize(direct_totals)["median"]
    return {
        "runs": runs,
        "steps": steps,
        "total": {
            "taskMedian": task_total,
            "directMedian": direct_total,
            "ratio": task_total / direct_total,
        },
    }


# --- notice delay ----------------------------------------------------------------------------


def run_notice(stack: Stack, recorder: EventRecorder, runs: int) -> dict[str, Any]:
    """Measure how long after the engine records a result the task process exits."""
    job_name = "bench-notice"
    _run_step(stack, "NEW", job_name)
    actions: dict[str, Any] = {}
    for action in NOTICE_ACTIONS:
        samples = [
            _notice_sample(_run_step(stack, action, job_name), recorder, action, job_name)
            for _ in range(runs)
        ]
        actions[action] = {
            "runs": runs,
            "samples": samples,
            "delay": summarize([s["delay"] for s in samples]),
            "pollWait": summarize([s["pollWait"] for s in samples]),
            "startToSubmit": summarize([s["startToSubmit"] for s in samples]),
            "wall": summarize([s["wall"] for s in samples]),
        }
    _run_step(stack, "CANCEL", job_name)
    _run_step(stack, "DELETE", job_name)
    return {"actions": actions}


def _notice_sample(
    run: TaskRun, recorder: EventRecorder, action: str, job_name: str
) -> dict[str, float]:
    """Split one run's notice delay at the first poll after the engine recorded the result.

    The task learns the result from whichever it reads first: the runJob operation or, on
    API versions with runId, the jobs list it reads between operation polls. ``pollWait``
    is from the engine's "ended" line to the response of that first poll, ``delay`` from the
    same line to the moment this process reaped the task. ``startToSubmit`` is from starting
    the process to the emulator's 202 response to runJob: process start, imports, sign-in
    and the jobs list read before submitting.
    """
    events = recorder.between(run.started_at, run.exited_at)
    ended = _first_ended(events, action, job_name)
    if ended is None:
        raise BenchmarkError(
            f"no '{action} on job {job_name} ended' line from {_ENGINE_LOGGER} during the run; "
            "the engine's log message may have changed"
        )
    submitted = _first_request(
        events, after=run.started_at, method="POST", path_part="/runjob", status="202"
    )
    polls = [
        _first_request(events, after=ended, method="GET", path_part=part, status="200")
        for part in ("/operationresults/", "/jobs")
    ]
    seen = [moment for moment in polls if moment is not None]
    if submitted is None or not seen:
        raise BenchmarkError(
            f"{action} of {job_name}: the emulator's request log has no runJob response "
            "with HTTP 202, or no poll answered with HTTP 200 after the action ended"
        )
    result_seen = min(seen)
    requests_after = [
        event.created
        for event in events
        if event.logger_name == _SERVER_LOGGER and event.created >= result_seen
    ]
    return {
        "delay": run.exited_at - ended,
        "pollWait": result_seen - ended,
        "lastRequestToExit": run.exited_at - max(requests_after),
        "requestsAfterResult": float(len(requests_after)),
        "startToSubmit": submitted - run.started_at,
        "wall": run.wall_seconds,
    }


def _first_ended(events: list[LogEvent], action: str, job_name: str) -> float | None:
    for event in events:
        if event.logger_name != _ENGINE_LOGGER:
            continue
        match = _ENDED_PATTERN.match(event.message)
        if match and match["action"] == action and match["job"] == job_name:
            return event.created
    return None


def _first_request(
    events: list[LogEvent], *, after: float, method: str, path_part: str, status: str
) -> float | None:
    """Return when the emulator responded to the first matching request after ``after``."""
    for event in events:
        if event.logger_name != _SERVER_LOGGER or event.created < after:
            continue
        match = _REQUEST_PATTERN.match(event.message)
        if (
            match
            and match["method"] == method
            and path_part in match["path"].lower()
            and match["status"] == status
        ):
            return event.created
    return None


# --- cold start ------------------------------------------------------------------------------


def _dry_run_environment() -> dict[str, str]:
    environment = base_environment()
    environment.update(DRY_RUN_INPUTS)
    return environment


def _run_cold(label: str, arguments: list[str]) -> TaskRun:
    """Run the task with ``arguments``, or a dry run without them, and check its output."""
    environment = base_environment() if arguments else _dry_run_environment()
    run = run_task(label, arguments, environment, timeout_seconds=COLD_START_TIMEOUT_SECONDS)
    if not arguments and run.record().get("method") != "POST":
        raise BenchmarkError(f"{label}: the dry run printed no POST request: {run.stdout[:200]!r}")
    if arguments and "usage:" not in run.stdout:
        raise BenchmarkError(f"{label}: no usage text on stdout: {run.stdout[:200]!r}")
    return run


def run_cold_start(runs: int) -> dict[str, Any]:
    """Time ``python -m flink_task --help`` and a dry run, ``runs`` times each, interleaved."""
    commands = {
        "`python -m flink_task --help`": ["--help"],
        "`python -m flink_task`, SAVEPOINT with `INPUT_DRYRUN=true`": [],
    }
    seconds: dict[str, list[float]] = defaultdict(list)
    for _ in range(runs):
        for command, arguments in commands.items():
            seconds[command].append(_run_cold(command, arguments).wall_seconds)
    logger.info(
        "cold start medians: %s",
        ", ".join(f"{c} {summarize(s)['median']:.2f} s" for c, s in seconds.items()),
    )
    return {
        "commands": [
            {"command": command, "runs": runs, "seconds": samples, "wall": summarize(samples)}
            for command, samples in seconds.items()
        ]
    }


# --- peak memory -----------------------------------------------------------------------------


def run_memory(stack: Stack, runs: int) -> dict[str, Any]:
    """Record the maximum RSS of task processes: real actions on the emulator and a dry run."""
    rss: dict[str, list[int]] = defaultdict(list)
    for index in range(1, runs + 1):
        job_name = f"bench-memory-{index}"
        for action in MEMORY_ACTIONS:
            rss[action].append(_run_step(stack, action, job_name).max_rss_bytes)
        rss["SAVEPOINT, dry run"].append(_run_cold("dry run", []).max_rss_bytes)
    return {
        "processes": [
            {"process": process, "runs": len(values), "maxRssBytes": max(values)}
            for process, values in rss.items()
        ]
    }
