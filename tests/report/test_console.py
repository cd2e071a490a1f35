from __future__ import annotations

import json
import logging

import pytest

from tests.report.runners import all_commands


def test_print_result_json_on_stdout(console, streams):
    record = {"jobName": "orders", "status": "RUNNING", "savepoints": [], "runId": None}

    console.print_result(record)

    assert json.loads(streams.stdout.getvalue()) == record
    assert streams.stdout.getvalue().startswith("{\n  ")
    assert streams.stderr.getvalue() == ""


def test_print_result_command_text_neutralised(console, streams):
    record = {"jobOutput": "##vso[task.setvariable variable=x]y\n::error::z", "x": "##[error]"}

    console.print_result(record)

    out = streams.stdout.getvalue()
    assert all_commands(out) == []
    assert json.loads(out) == {
        "jobOutput": "**vso[task.setvariable variable=x]y\n::error::z",
        "x": "**[error]",
    }


def test_logs_on_stderr(console, streams):
    console.install_logging(logging.INFO)
    log = logging.getLogger("flink_task.test")

    log.debug("hidden")
    log.info("Submitting %s", "NEW")
    log.warning("two\nlines")

    assert streams.stderr.getvalue() == ("[INFO] Submitting NEW\n[WARNING] two\n[WARNING] lines\n")
    assert streams.stdout.getvalue() == ""


def test_fail_on_stderr(console, streams):
    console.fail("input jobName: missing\n::error::x")

    assert streams.stderr.getvalue() == "error: input jobName: missing\nerror: : :error::x\n"
    assert streams.stdout.getvalue() == ""
    assert console.failed


def test_outputs_not_printed(console, streams):
    console.set_outputs({"jobId": "1"})
    console.finish(0)

    assert streams.both() == ""


def test_summary_on_stderr(console, streams):
    console.summary("flink-task NEW orders", [("status", "RUNNING")], "Job 1 is RUNNING")

    assert streams.stderr.getvalue() == (
        "flink-task NEW orders\n  status: RUNNING\nJob 1 is RUNNING\n"
    )
    assert streams.stdout.getvalue() == ""


def test_azure_logger_warning_level(console, streams):
    console.install_logging(logging.INFO)

    logging.getLogger("azure.core.pipeline").info("request headers")
    logging.getLogger("azure.identity").warning("token failed")

    assert streams.stderr.getvalue() == "[WARNING] token failed\n"


def test_azure_logger_debug_level(console, streams):
    console.install_logging("DEBUG")

    logging.getLogger("azure.core.pipeline").debug("request headers")

    assert streams.stderr.getvalue() == "[DEBUG] request headers\n"


def test_root_warnings_through_reporter(console, streams):
    console.mask("root-secret")
    console.install_logging(logging.INFO)

    logging.getLogger("urllib3.connectionpool").warning("retry with root-secret")

    assert streams.stderr.getvalue() == "[WARNING] retry with ***\n"


def test_install_logging_replaces_handler(console, github, streams):
    github.install_logging(logging.INFO)
    console.install_logging(logging.INFO)

    logging.getLogger("flink_task.test").warning("once")

    assert streams.stderr.getvalue() == "[WARNING] once\n"
    assert streams.stdout.getvalue() == ""


def test_uninstall_logging_restores_propagation(console, streams):
    console.install_logging(logging.INFO)
    console.uninstall_logging()

    logging.getLogger("flink_task.test").warning("after")

    assert streams.both() == ""
    assert logging.getLogger("flink_task").propagate
    assert logging.getLogger("azure").propagate


def test_invalid_log_level(console):
    with pytest.raises(ValueError, match="invalid log level 'LOUD'"):
        console.install_logging("LOUD")
