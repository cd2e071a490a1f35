from __future__ import annotations

import random

import pytest

from flink_task.report.untrusted import neutralise_commands
from tests.report.runners import all_commands, azure_commands, github_commands

PAYLOADS = [
    "::error::pwned",
    "::add-mask::x",
    "  ##vso[task.setvariable variable=x]y",
    "##[error]red",
    "::set-output name=jobId::evil",
    "\t::warning file=a,line=1::w",
    "\u00a0::error::nbsp indent",
    "\u3000::error::ideographic space indent",
    "text ##vso[task.complete result=Failed;]mid-line",
    "##VSO[task.setvariable variable=x]upper case",
    "###vso[task.setsecret]three hashes",
    "####[group]four hashes",
    "prefix ##[add-mask]legacy GitHub form",
    "#\u200b#vso[task.setvariable variable=x]zero-width space",
    "\u200b::error::zero-width space first",
    ":\u00ad:error::soft hyphen between colons",
    "#\x00#[error]NUL between hashes",
    "\ufeff::error::byte order mark",
    ":\ufe0f:error::variation selector",
    "first line\r::error::after carriage return",
    "first line\x0b##[error]after vertical tab",
    "java.lang.Exception: boom\n\tat ::error::stack frame\n##vso[task.setsecret]x",
    ":::error::three colons",
]

# Not commands for today's runners, but close enough to one that they must stay inert:
# line breaks .NET does not split on, and colons with no command name.
NEAR_MISSES = [
    "first line\x85::error::after next line",
    "first line\u2028::error::after line separator",
    "::",
    "::::",
]


@pytest.mark.parametrize("payload", PAYLOADS + NEAR_MISSES)
def test_payload_produces_no_command(payload):
    text = neutralise_commands(payload)
    assert all_commands(text) == [], text


@pytest.mark.parametrize("payload", PAYLOADS)
def test_payload_parsed_before_neutralising(payload):
    # Each payload is a command for at least one parser, so the test above is not vacuous.
    assert all_commands(payload), payload


@pytest.mark.parametrize("payload", PAYLOADS + NEAR_MISSES)
def test_neutralising_is_idempotent(payload):
    once = neutralise_commands(payload)
    assert neutralise_commands(once) == once


def test_plain_text_unchanged():
    text = (
        "Savepoint completed. Path: abfs://c@a.dfs.core.windows.net/sp/savepoint-1a2b\n"
        "Job 8e2f RUNNING at 2026-01-02T03:04:05Z\n\tat org.apache.flink.Foo(Foo.java:12)"
    )
    assert neutralise_commands(text) == text


def test_neutralised_forms_are_readable():
    assert neutralise_commands("::error::x") == ": :error::x"
    assert neutralise_commands("  ##vso[task.setvariable variable=x]y") == (
        "  **vso[task.setvariable variable=x]y"
    )
    assert neutralise_commands("##[error]x") == "**[error]x"
    assert neutralise_commands("a\u200bb") == "a\\u200bb"
    assert neutralise_commands("\x1b[31mred") == "\\x1b[31mred"


def test_line_breaks_become_line_feeds():
    assert neutralise_commands("a\r\nb\rc\x85d\u2029e") == "a\nb\nc\nd\ne"


def test_hashes_and_colons_inside_line_kept():
    assert neutralise_commands("a :: b # c ## d") == "a :: b # c ## d"
    assert neutralise_commands("ipv6 ::1") == "ipv6 ::1"


def test_no_hash_command_sequence_left():
    samples = ["#" * n + tail for n in range(1, 8) for tail in ("[", "vso[", "VsO[", "x[")]
    for sample in samples:
        text = neutralise_commands(sample).lower()
        assert "##[" not in text, sample
        assert "##vso[" not in text, sample


def test_github_parser_reads_real_commands():
    commands = github_commands("::error title=a%3Ab::x%0Ay\n  ::add-mask::s\n##[warning]w\n")
    assert [c.name for c in commands] == ["error", "add-mask", "warning"]
    assert commands[0].properties == {"title": "a:b"}
    assert commands[0].data == "x\ny"


def test_azure_parser_reads_real_commands():
    commands = azure_commands("x ##vso[task.logissue type=error;]m%0A\n##[group]g\n")
    assert [c.name for c in commands] == ["task.logissue", "group"]
    assert commands[0].properties == {"type": "error"}
    assert commands[0].data == "m\n"


def test_random_text_produces_no_command():
    alphabet = [":", "::", "#", "##", "[", "]", "vso", "VSO", " ", "\t", "\n", "\r", "\u200b"]
    alphabet += ["\x85", "\u2028", "\x00", "\u00a0", "a", "error", "task.setvariable "]
    generator = random.Random(20261204)
    for _ in range(5000):
        payload = "".join(generator.choice(alphabet) for _ in range(generator.randint(1, 12)))
        text = neutralise_commands(payload)
        assert all_commands(text) == [], repr(payload)
