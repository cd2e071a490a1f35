from __future__ import annotations

import itertools
import json
import logging
from pathlib import Path

import pytest

from flink_task.report import GitHubReporter
from flink_task.report.github import format_command
from tests.report.runners import github_commands, parse_github_output_file

OUTPUT_VALUES = {
    "multiLine": "first line\nsecond line\n\nlast line",
    "looksLikeDelimiter": "before\nghadelimiter_00000000-0000-0000-0000-000000000000\nafter",
    "empty": "",
    "unicode": "savepoint-\u00e9\u4e2d\u6587-\U0001f600 \u2028 end",
    "percentAndEscapes": "100% %0A %25 ::error:: a=b <<EOF",
    "trailingNewline": "value\n",
    "carriageReturn": "a\r\nb\rc",
    "onlyNewline": "\n",
}


def read(path: str) -> str:
    # newline="" keeps carriage returns as the runner reads them.
    with open(path, encoding="utf-8", newline="") as file:
        return file.read()


def test_outputs_round_trip(github, github_env):
    github.set_outputs(OUTPUT_VALUES)

    parsed = parse_github_output_file(read(github_env["GITHUB_OUTPUT"]))

    assert parsed == OUTPUT_VALUES


def test_outputs_every_value_heredoc(github, github_env):
    github.set_outputs({"a": "1", "b": "2"})

    lines = read(github_env["GITHUB_OUTPUT"]).split("\n")
    headers = [line for line in lines if "<<" in line]
    delimiters = {header.partition("<<")[2] for header in headers}
    assert len(headers) == 2
    assert len(delimiters) == 2
    assert all(delimiter.startswith("ghadelimiter_") for delimiter in delimiters)
    assert not any("=" in line for line in lines)


def test_outputs_delimiter_collision_retried(github_env, streams):
    candidates = iter(["ghadelimiter_taken", "ghadelimiter_free"])
    reporter = GitHubReporter(
        environ=github_env,
        stdout=streams.stdout,
        stderr=streams.stderr,
        delimiter_factory=lambda: next(candidates),
    )

    reporter.set_outputs({"value": "x\nghadelimiter_taken\ny"})

    text = read(github_env["GITHUB_OUTPUT"])
    assert text.startswith("value<<ghadelimiter_free\n")
    assert parse_github_output_file(text) == {"value": "x\nghadelimiter_taken\ny"}


def test_outputs_delimiter_always_taken(github_env, streams):
    reporter = GitHubReporter(
        environ=github_env,
        stdout=streams.stdout,
        stderr=streams.stderr,
        delimiter_factory=itertools.repeat("ghadelimiter_same").__next__,
    )

    with pytest.raises(RuntimeError, match="delimiter"):
        reporter.set_outputs({"value": "ghadelimiter_same"})

    assert read(github_env["GITHUB_OUTPUT"]) == ""


def test_outputs_appended_to_existing_file(github, github_env):
    Path(github_env["GITHUB_OUTPUT"]).write_text("earlier=1\n", encoding="utf-8")

    github.set_outputs({"later": "2"})

    assert parse_github_output_file(read(github_env["GITHUB_OUTPUT"])) == {
        "earlier": "1",
        "later": "2",
    }


def test_outputs_written_as_utf8(github, github_env):
    github.set_outputs({"name": "\u00e9"})

    raw = Path(github_env["GITHUB_OUTPUT"]).read_bytes()
    assert "\u00e9".encode() in raw
    assert not raw.startswith(b"\xef\xbb\xbf")


def test_outputs_non_string_values(github, github_env):
    github.set_outputs({"flag": True, "count": 3, "missing": None, "items": ["a", "b"]})

    assert parse_github_output_file(read(github_env["GITHUB_OUTPUT"])) == {
        "flag": "true",
        "count": "3",
        "missing": "",
        "items": '["a","b"]',
    }


@pytest.mark.parametrize("name", ["", "job id", "a=b", "a<<b", "x\ny", "1abc"])
def test_outputs_invalid_name_rejected(github, github_env, name):
    with pytest.raises(ValueError, match="invalid GitHub output name"):
        github.set_outputs({"good": "1", name: "2"})

    assert read(github_env["GITHUB_OUTPUT"]) == ""


def test_outputs_without_output_file(github_env, streams):
    environ = {key: value for key, value in github_env.items() if key != "GITHUB_OUTPUT"}
    reporter = GitHubReporter(environ=environ, stdout=streams.stdout, stderr=streams.stderr)
    reporter.install_logging(logging.INFO)

    reporter.set_outputs({"jobId": "::error::x"})

    commands = github_commands(streams.stdout.getvalue())
    assert [command.name for command in commands] == ["warning"]
    assert commands[0].data == "GITHUB_OUTPUT is not set, so the outputs jobId are not written"
    assert "set-output" not in streams.both()
    assert "::error::x" not in streams.both()


def test_log_records_formatted(github, streams):
    github.install_logging(logging.INFO)
    log = logging.getLogger("flink_task.test")

    log.debug("hidden at INFO")
    log.info("plain %s", "line")
    log.warning("careful: %d%% sure\nsecond line", 100)
    log.error("broken")

    out = streams.stdout.getvalue()
    assert "hidden" not in out
    assert out.split("\n")[0] == "plain line"
    commands = github_commands(out)
    assert [(c.name, c.data) for c in commands] == [
        ("warning", "careful: 100% sure\nsecond line"),
        ("error", "broken"),
    ]
    assert streams.stderr.getvalue() == ""


def test_debug_records_at_debug_level(github, streams):
    github.install_logging(logging.DEBUG)

    logging.getLogger("flink_task.test").debug("details\nmore")

    assert streams.stdout.getvalue() == "[debug] details\n[debug] more\n"


def test_log_record_with_command_text(github, streams):
    github.install_logging(logging.INFO)
    log = logging.getLogger("flink_task.test")

    log.info("Flink says:\n::add-mask::x\n##[error]y")
    log.warning("ARM says ##vso[task.setvariable variable=a]b\n::error::z")

    commands = github_commands(streams.stdout.getvalue(), ignore_invisible=True)
    assert [command.name for command in commands] == ["warning"]
    assert commands[0].data == "ARM says **vso[task.setvariable variable=a]b\n: :error::z"


def test_exception_traceback_plain_lines(github, streams):
    github.install_logging(logging.INFO)

    try:
        raise ValueError("::error::inside exception\n::add-mask::second line")
    except ValueError:
        logging.getLogger("flink_task.test").exception("run failed")

    out = streams.stdout.getvalue()
    commands = github_commands(out)
    assert [(c.name, c.data) for c in commands] == [("error", "run failed")]
    assert "Traceback (most recent call last):" in out
    assert "ValueError: ::error::inside exception\n: :add-mask::second line\n" in out


def test_group_commands(github, streams):
    with github.group("Submit 100%\nrunJob"):
        with github.group("inner"):
            pass

    out = streams.stdout.getvalue()
    assert out == "::group::Submit 100%25 runJob\ninner\n::endgroup::\n"
    commands = github_commands(out)
    assert [(c.name, c.data) for c in commands] == [
        ("group", "Submit 100% runJob"),
        ("endgroup", ""),
    ]


def test_finish_closes_open_group(github, streams):
    group = github.group("never closed")
    group.__enter__()

    github.finish(1)

    assert streams.stdout.getvalue() == "::group::never closed\n::endgroup::\n"


def test_fail_escapes_message(github, streams):
    github.fail("action FAILED: 100% lost\r\nsecond ::error:: ##vso[x.y]z")

    commands = github_commands(streams.stdout.getvalue())
    assert len(commands) == 1
    assert commands[0].name == "error"
    assert commands[0].data == "action FAILED: 100% lost\nsecond ::error:: **vso[x.y]z"
    assert github.failed


def test_format_command_properties_round_trip():
    line = format_command("error", "a%b\nc", {"title": "x:y,z%\n", "file": "a.py"})

    commands = github_commands(line + "\n")
    assert len(commands) == 1
    assert commands[0].properties == {"title": "x:y,z%\n", "file": "a.py"}
    assert commands[0].data == "a%b\nc"


def test_summary_appended(github, github_env):
    Path(github_env["GITHUB_STEP_SUMMARY"]).write_text("earlier step", encoding="utf-8")

    github.summary("flink-task NEW orders", [("status", "RUNNING")], "Job abc is RUNNING")

    text = read(github_env["GITHUB_STEP_SUMMARY"])
    assert text.startswith("earlier step\n\n### flink-task NEW orders\n")
    assert "| status | `RUNNING` |\n" in text
    assert "```text\nJob abc is RUNNING\n```\n" in text


def test_summary_into_empty_file(github, github_env):
    github.summary("title", [("a", "b")], None)

    assert read(github_env["GITHUB_STEP_SUMMARY"]) == (
        "### title\n\n| Field | Value |\n|---|---|\n| a | `b` |\n\n"
    )


def test_summary_without_file(github_env, streams):
    environ = {k: v for k, v in github_env.items() if k != "GITHUB_STEP_SUMMARY"}
    reporter = GitHubReporter(environ=environ, stdout=streams.stdout, stderr=streams.stderr)

    reporter.summary("title", [("a", "b")], None)

    assert streams.both() == ""


def test_print_result_in_group(github, streams):
    record = {"jobName": "orders", "jobOutput": "line1\nline2", "actionResult": "SUCCESS"}

    github.print_result(record)

    lines = streams.stdout.getvalue().split("\n")
    assert lines[0] == "::group::Job record"
    assert lines[-2] == "::endgroup::"
    assert json.loads("\n".join(lines[1:-2])) == record
