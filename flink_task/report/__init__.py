"""Reporters: how a run's logs, outputs, summary, failures and secrets reach a pipeline.

``detect_reporter`` picks the reporter for the environment the process runs in:

* ``GITHUB_ACTIONS=true``: :class:`GitHubReporter`;
* ``TF_BUILD=True``: :class:`AzureDevOpsReporter`;
* otherwise :class:`ConsoleReporter`.

Both values are compared case-insensitively.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import TextIO

from flink_task.report.azure_devops import AzureDevOpsReporter
from flink_task.report.base import Reporter, remove_reporter_handlers
from flink_task.report.console import ConsoleReporter
from flink_task.report.github import GitHubReporter
from flink_task.report.redaction import MIN_SECRET_LENGTH, REDACTED
from flink_task.report.untrusted import neutralise_commands

__all__ = [
    "MIN_SECRET_LENGTH",
    "REDACTED",
    "AzureDevOpsReporter",
    "ConsoleReporter",
    "GitHubReporter",
    "Reporter",
    "detect_reporter",
    "neutralise_commands",
    "remove_reporter_handlers",
]


def detect_reporter(
    environ: Mapping[str, str],
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> Reporter:
    """Return the reporter for the pipeline named by ``environ``; it prints nothing yet."""
    out = stdout if stdout is not None else sys.stdout
    err = stderr if stderr is not None else sys.stderr
    if environ.get("GITHUB_ACTIONS", "").strip().lower() == "true":
        return GitHubReporter(environ=environ, stdout=out, stderr=err)
    if environ.get("TF_BUILD", "").strip().lower() == "true":
        return AzureDevOpsReporter(environ=environ, stdout=out, stderr=err)
    return ConsoleReporter(environ=environ, stdout=out, stderr=err)
