"""GitHub Actions: workflow commands on stdout, outputs and summary in the runner's files.

Command syntax and escaping follow ``actions/toolkit`` ``packages/core/src/command.ts``
and the output file format follows ``file-command.ts`` (``name<<delimiter`` blocks);
the runner that reads them is ``actions/runner`` (``ActionCommand.cs``,
``FileCommandManager.cs``).
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TextIO

from flink_task.report.base import Reporter

logger = logging.getLogger(__name__)

# Output names follow the rule for action input ids (a letter or "_", then letters,
# digits, "_" or "-"), so no name can break a ``name<<delimiter`` line.
_OUTPUT_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")
_MAX_DELIMITER_ATTEMPTS = 10


def escape_data(text: str) -> str:
    """Escape a command's message: ``%``, carriage return and line feed."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(text: str) -> str:
    """Escape a command property value: as data, plus ``:`` and ``,``."""
    return escape_data(text).replace(":", "%3A").replace(",", "%2C")


def format_command(name: str, data: str = "", properties: Mapping[str, str] | None = None) -> str:
    """Return one workflow command line, ``::name key=value,...::data``."""
    props = ",".join(
        f"{key}={escape_property(value)}" for key, value in (properties or {}).items()
    )
    head = f"{name} {props}" if props else name
    return f"::{head}::{escape_data(data)}"


def new_delimiter() -> str:
    """Return a random heredoc delimiter, in the form ``actions/toolkit`` uses."""
    return f"ghadelimiter_{uuid.uuid4()}"


class GitHubReporter(Reporter):
    """Reporter for a step of a GitHub Actions job (``GITHUB_ACTIONS=true``)."""

    platform = "github"

    def __init__(
        self,
        *,
        environ: Mapping[str, str],
        stdout: TextIO,
        stderr: TextIO,
        delimiter_factory: Callable[[], str] = new_delimiter,
    ) -> None:
        super().__init__(environ=environ, stdout=stdout, stderr=stderr)
        self._new_delimiter = delimiter_factory

    def _register_secret(self, value: str) -> None:
        self._write_lines(self.stdout, [format_command("add-mask", value)])

    def format_record(self, record: logging.LogRecord, message: str, details: str) -> list[str]:
        if record.levelno >= logging.ERROR:
            lines = [format_command("error", message)]
        elif record.levelno >= logging.WARNING:
            lines = [format_command("warning", message)]
        elif record.levelno >= logging.INFO:
            lines = message.split("\n")
        else:
            # Plain lines, because the runner hides ::debug:: lines unless step debug
            # logging is on, and DEBUG records only get here when that level was requested.
            lines = [f"[debug] {line}" for line in message.split("\n")]
        if details:
            lines.extend(details.split("\n"))
        return lines

    def _start_group(self, title: str, outermost: bool) -> list[str]:
        return [format_command("group", title)] if outermost else [title]

    def _end_group(self, outermost: bool) -> list[str]:
        return [format_command("endgroup")] if outermost else []

    def set_outputs(self, outputs: Mapping[str, Any]) -> None:
        """Append every output to ``$GITHUB_OUTPUT`` as a ``name<<delimiter`` block."""
        for name in outputs:
            if not _OUTPUT_NAME.match(name):
                raise ValueError(
                    f"invalid GitHub output name {name!r}: use letters, digits, _ or -"
                )
        path = self.environ.get("GITHUB_OUTPUT")
        if not path:
            logger.warning(
                "GITHUB_OUTPUT is not set, so the outputs %s are not written",
                ", ".join(outputs),
            )
            return
        blocks = [self._output_block(name, value) for name, value in outputs.items()]
        # newline="" keeps "\n" as written on Windows, where the runner also accepts it.
        with open(path, "a", encoding="utf-8", errors="replace", newline="") as file:
            file.write("".join(blocks))
        logger.debug("Wrote the outputs %s to GITHUB_OUTPUT", ", ".join(outputs))

    def _output_block(self, name: str, value: Any) -> str:
        text = self.redacted_output(name, value)
        delimiter = self._delimiter_for(name, text)
        return f"{name}<<{delimiter}\n{text}\n{delimiter}\n"

    def _delimiter_for(self, name: str, text: str) -> str:
        for _ in range(_MAX_DELIMITER_ATTEMPTS):
            delimiter = self._new_delimiter()
            if delimiter not in text:
                return delimiter
        raise RuntimeError(
            f"failed to find a delimiter that does not occur in the value of output {name} "
            f"after {_MAX_DELIMITER_ATTEMPTS} attempts"
        )

    def summary(
        self, title: str, rows: Sequence[tuple[str, str]], details: str | None = None
    ) -> None:
        """Append the summary to ``$GITHUB_STEP_SUMMARY`` (nothing when it is not set)."""
        path = self.environ.get("GITHUB_STEP_SUMMARY")
        if not path:
            logger.debug("GITHUB_STEP_SUMMARY is not set, so no job summary is written")
            return
        markdown = self.summary_markdown(title, rows, details)
        with open(path, "a", encoding="utf-8", errors="replace", newline="") as file:
            # A blank line ends whatever an earlier step left unfinished.
            file.write(f"\n\n{markdown}" if file.tell() > 0 else markdown)

    def fail(self, message: str) -> None:
        """Print ``::error::message``. The non-zero exit code is what fails the step."""
        self.failed = True
        self._write_lines(self.stdout, [format_command("error", self.untrusted(message))])
