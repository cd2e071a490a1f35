"""Plain console: logs on stderr, the job record as JSON on stdout."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TextIO

from flink_task.report.base import Reporter


class ConsoleReporter(Reporter):
    """Reporter for a terminal or any CI system without its own conventions.

    Text is still neutralised, because the process may run inside a pipeline step
    whose environment did not reach it (a wrapper that passes an explicit
    environment), and the Azure DevOps agent reads stderr as well as stdout.
    """

    platform = "console"

    def log_stream(self) -> TextIO:
        return self.stderr

    def print_result(self, record: Mapping[str, Any]) -> None:
        """Print the record as indented JSON on stdout.

        JSON escapes line breaks inside strings, so each value stays on its own line.
        A ``##vso[`` or ``##[`` inside a value is still rewritten to ``**vso[`` or ``**[``,
        which keeps the JSON valid.
        """
        self._write_lines(self.stdout, self._lines(self.record_json(record)))
