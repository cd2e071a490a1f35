"""Command line entry point: ``flink-task [run|jobs|emulator|local-flink] ...``."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from flink_task.errors import EXIT_INVALID_INPUT

USAGE = """\
usage: flink-task [run] [options]      perform the action its inputs describe
       flink-task jobs [options]       list jobs and their status
       flink-task emulator [options]   serve the job API on loopback, backed by Flink
       flink-task local-flink {install,start,stop,status} [options]

Run 'flink-task COMMAND --help' for the options of a command.
"""


def main(argv: Sequence[str] | None = None) -> int:
    """Run one flink-task command and return its exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] in (["-h"], ["--help"], ["help"]):
        print(USAGE, end="")
        return 0
    command = args[0] if args and not args[0].startswith("-") else "run"
    rest = args[1:] if args and args[0] == command else args
    if command == "emulator":
        from flink_task.emulator.cli import main as emulator_main

        return emulator_main(rest)
    if command == "local-flink":
        from flink_task.localflink import main as local_flink_main

        return local_flink_main(rest)
    if command in ("run", "jobs"):
        from flink_task.runner import main as runner_main

        return runner_main(command, rest)
    print(f"flink-task: unknown command {command!r}\n\n{USAGE}", file=sys.stderr, end="")
    return EXIT_INVALID_INPUT


def console_main() -> None:
    raise SystemExit(main())
