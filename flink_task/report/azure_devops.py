"""Azure DevOps: ``##vso[...]`` logging commands on stdout and a summary attachment.

Command syntax and escaping follow ``azure-pipelines-task-lib`` (``node/taskcommand.ts``).
The agent (``azure-pipelines-agent``) finds ``##vso[`` anywhere in a line. Its
``Agent.Sdk.CommandStringConvertor`` decodes ``%3B``, ``%0D``, ``%0A`` and ``%5D``
first and ``%AZP25`` last (when the ``DECODE_PERCENTS`` knob is on, the default), so
a value escaped here comes back unchanged.
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from flink_task.report.base import Reporter

logger = logging.getLogger(__name__)

# Output variable names must match the pattern task.json allows for them.
_VARIABLE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9]*$")


def escape_data(text: str) -> str:
    """Escape a command's message: ``%``, carriage return and line feed."""
    return text.replace("%", "%AZP25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(text: str) -> str:
    """Escape a command property value: as data, plus ``]`` and ``;``."""
    return escape_data(text).replace("]", "%5D").replace(";", "%3B")


def format_command(
    area_event: str, data: str = "", properties: Mapping[str, str] | None = None
) -> str:
    """Return one logging command line, ``##vso[area.event key=value;...]data``."""
    props = "".join(
        f"{key}={escape_property(value)};" for key, value in (properties or {}).items()
    )
    head = f"{area_event} {props}" if props else area_event
    return f"##vso[{head}]{escape_data(data)}"


class AzureDevOpsReporter(Reporter):
    """Reporter for an Azure Pipelines task (``TF_BUILD=True``)."""

    platform = "azure-devops"

    def _register_secret(self, value: str) -> None:
        self._write_lines(self.stdout, [format_command("task.setsecret", value)])

    def format_record(self, record: logging.LogRecord, message: str, details: str) -> list[str]:
        # ##[error], ##[warning] and ##[debug] only format the line in the log viewer.
        # fail() is what records an issue on the run.
        if record.levelno >= logging.ERROR:
            prefix = "##[error]"
        elif record.levelno >= logging.WARNING:
            prefix = "##[warning]"
        elif record.levelno >= logging.INFO:
            prefix = ""
        else:
            prefix = "##[debug]"
        lines = [f"{prefix}{line}" for line in message.split("\n")]
        if details:
            lines.extend(details.split("\n"))
        return lines

    def _start_group(self, title: str, outermost: bool) -> list[str]:
        return [f"##[group]{title}"] if outermost else [title]

    def _end_group(self, outermost: bool) -> list[str]:
        return ["##[endgroup]"] if outermost else []

    def set_outputs(self, outputs: Mapping[str, Any]) -> None:
        """Set each output as an output variable of the task (``isoutput=true``)."""
        for name in outputs:
            if not _VARIABLE_NAME.match(name):
                raise ValueError(
                    f"invalid Azure DevOps output variable name {name!r}: "
                    "use letters and digits, starting with a letter"
                )
        lines = [
            format_command(
                "task.setvariable",
                self.redacted_output(name, value),
                {"variable": name, "isoutput": "true"},
            )
            for name, value in outputs.items()
        ]
        self._write_lines(self.stdout, lines)

    def summary(
        self, title: str, rows: Sequence[tuple[str, str]], details: str | None = None
    ) -> None:
        """Write the summary to a Markdown file and attach it with ``task.uploadsummary``.

        The file goes to ``$AGENT_TEMPDIRECTORY``, which the agent empties after the
        job, or else to a new temporary folder that is left in place, because the agent
        uploads the attachment after the step.
        """
        markdown = self.summary_markdown(title, rows, details)
        folder = self.environ.get("AGENT_TEMPDIRECTORY") or tempfile.mkdtemp(prefix="flink-task-")
        path = os.path.abspath(os.path.join(folder, f"flink-task-summary-{uuid.uuid4()}.md"))
        with open(path, "w", encoding="utf-8", errors="replace", newline="") as file:
            file.write(markdown)
        self._write_lines(self.stdout, [format_command("task.uploadsummary", path)])

    def fail(self, message: str) -> None:
        """Log an error issue and set the task result to Failed, both with the message."""
        self.failed = True
        text = self.untrusted(message)
        self._write_lines(
            self.stdout,
            [
                format_command("task.logissue", text, {"type": "error"}),
                format_command("task.complete", text, {"result": "Failed"}),
            ],
        )

    def finish(self, exit_code: int) -> None:
        """Set the task result to Failed for a non-zero exit code that fail() did not report."""
        self._close_groups()
        if exit_code != 0 and not self.failed:
            self.failed = True
            self._write_lines(
                self.stdout,
                [
                    format_command(
                        "task.complete",
                        f"flink-task exited with code {exit_code}",
                        {"result": "Failed"},
                    )
                ],
            )
        self._flush()
