from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest

from flink_task.report import AzureDevOpsReporter
from flink_task.report.azure_devops import format_command
from tests.report.runners import azure_commands, azure_output_variables

OUTPUT_VALUES = {
    "percent": "100% done %AZP25 %25 %0A %3B %5D",
    "semicolonBracket": "a;b]c;]",
    "multiLine": "first\nsecond\r\nthird\rfourth\n",
    "empty": "",
    "unicode": "\u00e9\u4e2d\U0001f600",
    "commandLike": "##vso[task.setvariable variable=x]y ::error::z",
}


def test_outputs_round_trip(azure, streams):
    azure.set_outputs(OUTPUT_VALUES)

    out = streams.stdout.getvalue()
    assert azure_output_variables(out) == OUTPUT_VALUES
    assert len(out.split("\n")) == len(OUTPUT_VALUES) + 1


def test_outputs_command_form(azure, streams):
    azure.set_outputs({"jobId": "a;b"})

    assert streams.stdout.getvalue() == (
        "##vso[task.setvariable variable=jobId;isoutput=true;]a;b\n"
    )


@pytest.mark.parametrize("name", ["", "job-id", "job_id", "1job", "a;b", "a]b"])
def test_outputs_invalid_name_rejected(azure, streams, name):
    with pytest.raises(ValueError, match="invalid Azure DevOps output variable name"):
        azure.set_outputs({"good": "1", name: "2"})

    assert streams.stdout.getvalue() == ""


def test_property_escaping_round_trip():
    line = format_command("task.logissue", "m%;]\n", {"type": "error", "code": "a;b]c%\r\n"})

    commands = azure_commands(line + "\n")
    assert len(commands) == 1
    assert commands[0].properties == {"type": "error", "code": "a;b]c%\r\n"}
    assert commands[0].data == "m%;]\n"


def test_mask_uses_setsecret(azure, streams):
    azure.mask("s3cr%t-value")

    commands = azure_commands(streams.stdout.getvalue())
    assert [(c.name, c.data) for c in commands] == [("task.setsecret", "s3cr%t-value")]


def test_fail_logs_issue_and_completes(azure, streams):
    azure.fail("UPDATE FAILED: 50%\nrolled back")
    azure.finish(1)

    commands = azure_commands(streams.stdout.getvalue())
    assert [(c.name, c.properties, c.data) for c in commands] == [
        ("task.logissue", {"type": "error"}, "UPDATE FAILED: 50%\nrolled back"),
        ("task.complete", {"result": "Failed"}, "UPDATE FAILED: 50%\nrolled back"),
    ]


def test_finish_fails_unreported_exit(azure, streams):
    azure.finish(3)

    commands = azure_commands(streams.stdout.getvalue())
    assert [(c.name, c.properties, c.data) for c in commands] == [
        ("task.complete", {"result": "Failed"}, "flink-task exited with code 3"),
    ]


def test_finish_success_prints_nothing(azure, streams):
    azure.finish(0)

    assert streams.both() == ""


def test_log_records_formatted(azure, streams):
    azure.install_logging(logging.DEBUG)
    log = logging.getLogger("flink_task.test")

    log.debug("polling")
    log.info("plain")
    log.warning("careful\nsecond")
    log.error("broken")

    assert streams.stdout.getvalue() == (
        "##[debug]polling\nplain\n##[warning]careful\n##[warning]second\n##[error]broken\n"
    )


def test_log_record_with_command_text(azure, streams):
    azure.install_logging(logging.INFO)

    logging.getLogger("flink_task.test").info(
        "Flink: ##vso[task.setvariable variable=x]y\n  ##vso[task.complete result=Failed;]\n"
        "##[error]fake\n::error::gh"
    )

    assert azure_commands(streams.stdout.getvalue(), ignore_invisible=True) == []


def test_group_commands(azure, streams):
    with azure.group("Wait for ##vso[x.y] job"):
        pass

    assert streams.stdout.getvalue() == "##[group]Wait for **vso[x.y] job\n##[endgroup]\n"


def test_summary_uploaded(azure, azure_env, streams):
    azure.summary("flink-task STOP orders", [("status", "STOPPED")], "Savepoint completed.")

    commands = azure_commands(streams.stdout.getvalue())
    assert [command.name for command in commands] == ["task.uploadsummary"]
    path = Path(commands[0].data)
    assert path.is_absolute()
    assert path.parent == Path(azure_env["AGENT_TEMPDIRECTORY"])
    assert path.suffix == ".md"
    text = path.read_text(encoding="utf-8")
    assert text.startswith("### flink-task STOP orders\n")
    assert "| status | `STOPPED` |\n" in text
    assert "```text\nSavepoint completed.\n```\n" in text


def test_summary_without_agent_temp(streams, monkeypatch, tmp_path):
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr("tempfile.tempdir", None)
    reporter = AzureDevOpsReporter(
        environ={"TF_BUILD": "True"}, stdout=streams.stdout, stderr=streams.stderr
    )

    reporter.summary("title", [("a", "b")])

    commands = azure_commands(streams.stdout.getvalue())
    path = Path(commands[0].data)
    assert path.is_file()
    assert path.is_relative_to(tmp_path)
    assert os.path.isabs(commands[0].data)


def test_summary_path_with_percent(streams, tmp_path):
    folder = tmp_path / "100% temp"
    folder.mkdir()
    reporter = AzureDevOpsReporter(
        environ={"AGENT_TEMPDIRECTORY": str(folder)}, stdout=streams.stdout, stderr=streams.stderr
    )

    reporter.summary("title", [])

    commands = azure_commands(streams.stdout.getvalue())
    assert Path(commands[0].data).parent == folder
    assert Path(commands[0].data).is_file()


def test_print_result_in_group(azure, streams):
    record = {"jobName": "orders", "savepoints": ["a", "b"]}

    azure.print_result(record)

    lines = streams.stdout.getvalue().split("\n")
    assert lines[0] == "##[group]Job record"
    assert lines[-2] == "##[endgroup]"
    assert json.loads("\n".join(lines[1:-2])) == record
