"""Benchmark flink-task on a local Flink cluster that this script starts and stops itself.

Benchmarks (``--only NAME``, repeatable; all by default):

* ``lifecycle``: wall time of each lifecycle step through the task (one process per step)
  and the emulator, against the same steps sent directly with FlinkRestClient.
* ``notice``: delay from the engine recording an action's result to the task's exit.
* ``coldstart``: wall time of ``python -m flink_task --help`` and of a dry run.
* ``memory``: maximum resident set size of the task process, real actions and a dry run.

Prints Markdown tables and, with ``--json PATH``, writes the results as JSON. Flink, the
emulator and every task process run on loopback under a temporary folder, and all of them
are stopped on success, failure, Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from types import FrameType
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks import report, suites  # noqa: E402
from benchmarks.stack import Stack  # noqa: E402
from benchmarks.taskproc import BenchmarkError  # noqa: E402
from flink_task.errors import FlinkTaskError  # noqa: E402

logger = logging.getLogger("benchmarks")

BENCHMARKS = ("lifecycle", "notice", "coldstart", "memory")
NEEDS_FLINK = frozenset({"lifecycle", "notice", "memory"})
DEFAULT_RUNS = {"lifecycle": 1, "notice": 8, "coldstart": 10, "memory": 1}
EXIT_FAILED = 1
EXIT_INTERRUPTED = 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="benchmarks/run.py",
        description="Benchmark flink-task against a local Flink cluster and the emulator.",
    )
    parser.add_argument(
        "--only",
        action="append",
        choices=BENCHMARKS,
        metavar="NAME",
        help=f"Run only this benchmark; repeat for several. One of: {', '.join(BENCHMARKS)}.",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        metavar="N",
        help="Runs of each selected benchmark (default: "
        + ", ".join(f"{name} {runs}" for name, runs in DEFAULT_RUNS.items())
        + ").",
    )
    parser.add_argument(
        "--json", type=Path, metavar="PATH", help="Write the results as JSON to this file."
    )
    parser.add_argument(
        "--keep-workdir",
        action="store_true",
        help="Keep the temporary folder (logs, job records, savepoints) after a successful run; "
        "it is always kept after a failure.",
    )
    return parser


def configure_logging(log_file: Path) -> None:
    """Show the benchmark's progress and warnings on stderr; log everything else to a file."""
    console = logging.StreamHandler()
    console.setFormatter(logging.Formatter("[%(levelname)s] %(message)s"))
    console.addFilter(
        lambda record: record.name.startswith("benchmarks") or record.levelno >= logging.WARNING
    )
    to_file = logging.FileHandler(log_file, encoding="utf-8")
    to_file.setFormatter(logging.Formatter("%(asctime)s %(name)s [%(levelname)s] %(message)s"))
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    root.addHandler(console)
    root.addHandler(to_file)


def _raise_keyboard_interrupt(signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def run_selected(selected: list[str], repeat: int | None, workdir: Path) -> dict[str, Any]:
    """Start the stack if needed, run the selected benchmarks and return the report."""
    started = time.monotonic()
    results: dict[str, Any] = {}
    stack: Stack | None = None
    stop_error: str | None = None
    recorder = suites.EventRecorder()
    recorder.attach()
    try:
        if NEEDS_FLINK.intersection(selected):
            stack = Stack(workdir)
            stack.start()
        machine = report.describe_machine(stack.flink_version if stack else None)
        for name in selected:
            runs = repeat or DEFAULT_RUNS[name]
            logger.info("running the %s benchmark (%d run(s))", name, runs)
            results[name] = _run_one(name, runs, stack, recorder)
    finally:
        recorder.detach()
        if stack is not None:
            stop_error = stop_stack(stack)
    return {
        "machine": machine,
        "loadAverageAfter": [round(value, 2) for value in os.getloadavg()],
        "durationSeconds": time.monotonic() - started,
        "runs": {name: repeat or DEFAULT_RUNS[name] for name in selected},
        "results": results,
        "stopError": stop_error,
    }


def stop_stack(stack: Stack) -> str | None:
    """Stop the emulator and Flink; return the error message if stopping failed.

    A failed stop is logged instead of raised, so the results measured before are still
    printed, and an exception that is already propagating is not replaced.
    """
    logger.info("stopping the emulator and Flink")
    try:
        stack.stop()
    except FlinkTaskError as error:
        logger.error(
            "stopping the local Flink cluster failed: %s. Look for processes whose command "
            "line contains %s",
            error,
            stack.workdir,
        )
        return str(error)
    return None


def _run_one(
    name: str, runs: int, stack: Stack | None, recorder: suites.EventRecorder
) -> dict[str, Any]:
    if name == "coldstart":
        return suites.run_cold_start(runs)
    assert stack is not None
    if name == "lifecycle":
        return suites.run_lifecycle(stack, runs)
    if name == "notice":
        return suites.run_notice(stack, recorder, runs)
    return suites.run_memory(stack, runs)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.repeat is not None and args.repeat < 1:
        print("benchmarks/run.py: --repeat must be at least 1", file=sys.stderr)
        return 2
    selected = [name for name in BENCHMARKS if name in (args.only or BENCHMARKS)]
    workdir = Path(tempfile.mkdtemp(prefix="flink-task-bench-"))
    configure_logging(workdir / "benchmark.log")
    signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    try:
        result = run_selected(selected, args.repeat, workdir)
    except KeyboardInterrupt:
        logger.error("interrupted; every process was stopped. Logs: %s", workdir)
        return EXIT_INTERRUPTED
    except (BenchmarkError, FlinkTaskError) as error:
        logger.error("benchmark failed: %s. Logs: %s", error, workdir)
        return EXIT_FAILED
    print(report.render(result))
    exit_code = EXIT_FAILED if result["stopError"] else 0
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        logger.info("results written to %s", args.json)
    if args.keep_workdir or exit_code != 0:
        logger.info("kept %s", workdir)
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    return exit_code


if __name__ == "__main__":
    raise SystemExit(main())
