from __future__ import annotations

import io
import subprocess
import sys
import textwrap

from flink_task.report import ConsoleReporter, GitHubReporter
from tests.report.runners import runner_lines

CHILD = textwrap.dedent(
    """
    import os, sys
    from flink_task.report import detect_reporter

    reporter = detect_reporter(environ=os.environ, stdout=sys.stdout, stderr=sys.stderr)
    reporter.mask("child-process-secret")
    # A Java or shell child writes to the inherited descriptor, past Python's buffer.
    os.write(1, b"direct write child-process-secret\\n")
    reporter.install_logging("INFO")
    reporter.fail("failed with child-process-secret")
    reporter.finish(1)
    """
)


def test_mask_reaches_pipe_before_direct_writes(tmp_path):
    environ = {"GITHUB_ACTIONS": "true", "PATH": "/usr/bin:/bin"}

    result = subprocess.run(
        [sys.executable, "-c", CHILD],
        cwd=tmp_path,
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    assert runner_lines(result.stdout) == [
        "::add-mask::child-process-secret",
        "direct write child-process-secret",
        "::error::failed with ***",
    ]


def test_unencodable_text_replaced():
    raw = io.BytesIO()
    stdout = io.TextIOWrapper(raw, encoding="ascii", newline="")
    reporter = GitHubReporter(environ={}, stdout=stdout, stderr=io.StringIO())

    reporter.fail("savepoint \u00e9t\u00e9 \U0001f600")

    assert raw.getvalue() == b"::error::savepoint ?t? ?\n"


def test_finish_tolerates_closed_stream():
    stdout = io.StringIO()
    stderr = io.StringIO()
    reporter = ConsoleReporter(environ={}, stdout=stdout, stderr=stderr)
    stdout.close()

    reporter.finish(0)

    assert stderr.getvalue() == ""
