"""Run ``python -m flink_task`` as a child process and measure it with ``os.wait4``.

The parent reaps the child itself, so it learns the exit moment within a system call's
latency and gets the child's resource usage (maximum resident set size) from the kernel.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import IO, Any

logger = logging.getLogger(__name__)

# Environment variables that would make the task read other inputs or pick another reporter.
_FOREIGN_PREFIXES = ("INPUT_", "AZURE_", "GITHUB_", "TF_BUILD", "SYSTEM_", "AGENT_", "BUILD_")
_KILL_GRACE_SECONDS = 10.0


class BenchmarkError(Exception):
    """A benchmark could not complete. The message names the step that failed and why."""


class TaskRunError(BenchmarkError):
    """A task process exited with a code other than the expected one, or printed no record."""


@dataclass(frozen=True)
class TaskRun:
    """One finished task process.

    ``started_at`` and ``exited_at`` are ``time.time()`` values, comparable with the
    ``created`` time of log records in this process. ``wall_seconds`` comes from the
    monotonic clock. ``max_rss_bytes`` is the child's maximum resident set size.
    """

    label: str
    exit_code: int
    started_at: float
    exited_at: float
    wall_seconds: float
    max_rss_bytes: int
    stdout: str
    stderr: str

    def record(self) -> dict[str, Any]:
        """Return the job record that the task printed as JSON on stdout."""
        try:
            parsed = json.loads(self.stdout)
        except json.JSONDecodeError as error:
            raise TaskRunError(
                f"{self.label}: stdout is not a JSON job record ({error}): {self.stdout[:200]!r}"
            ) from None
        if not isinstance(parsed, dict):
            raise TaskRunError(f"{self.label}: stdout is JSON but not an object")
        return parsed


def base_environment() -> dict[str, str]:
    """Return this process's environment without pipeline, Azure and task input variables."""
    return {
        name: value for name, value in os.environ.items() if not name.startswith(_FOREIGN_PREFIXES)
    }


def run_task(
    label: str,
    arguments: Sequence[str],
    environment: Mapping[str, str],
    *,
    timeout_seconds: float,
    expected_exit_code: int = 0,
) -> TaskRun:
    """Run ``python -m flink_task ARGUMENTS`` to its end and return what was measured.

    The child's stdout and stderr go to temporary files, not pipes, so it never blocks on a
    full pipe while the parent waits. A child still running after ``timeout_seconds`` is
    killed. Raises TaskRunError when the exit code is not ``expected_exit_code``.
    """
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        run = _run_child(label, arguments, environment, out, err, timeout_seconds)
    if run.exit_code != expected_exit_code:
        tail = "\n".join(run.stderr.splitlines()[-15:])
        raise TaskRunError(
            f"{label}: the task exited with {run.exit_code}, expected {expected_exit_code}. "
            f"Last lines of its log:\n{tail}"
        )
    return run


def _run_child(
    label: str,
    arguments: Sequence[str],
    environment: Mapping[str, str],
    out: IO[bytes],
    err: IO[bytes],
    timeout_seconds: float,
) -> TaskRun:
    started_at = time.time()
    started = time.monotonic()
    process = subprocess.Popen(
        [sys.executable, "-m", "flink_task", *arguments],
        env=dict(environment),
        stdin=subprocess.DEVNULL,
        stdout=out,
        stderr=err,
    )

    killer = threading.Timer(timeout_seconds, _kill_on_timeout, args=(process, label))
    killer.daemon = True
    killer.start()
    try:
        _, status, usage = os.wait4(process.pid, 0)
    except BaseException:
        # Ctrl-C or SIGTERM in the parent: the child must not outlive the benchmark.
        _stop_child(process)
        raise
    finally:
        killer.cancel()

    exited_at = time.time()
    wall = time.monotonic() - started
    # os.wait4 reaped the child, so Popen must not wait for it again.
    process.returncode = os.waitstatus_to_exitcode(status)

    out.seek(0)
    err.seek(0)
    return TaskRun(
        label=label,
        exit_code=process.returncode,
        started_at=started_at,
        exited_at=exited_at,
        wall_seconds=wall,
        max_rss_bytes=usage.ru_maxrss * 1024,  # Linux reports kibibytes
        stdout=out.read().decode("utf-8", errors="replace"),
        stderr=err.read().decode("utf-8", errors="replace"),
    )


def _kill_on_timeout(process: subprocess.Popen[bytes], label: str) -> None:
    logger.error("%s: the task process %s timed out; killing it", label, process.pid)
    process.kill()


def _stop_child(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    logger.warning("stopping the task process %s", process.pid)
    process.terminate()
    try:
        process.wait(_KILL_GRACE_SECONDS)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(_KILL_GRACE_SECONDS)
