from __future__ import annotations

import os

import pytest

from flink_task.report import (
    AzureDevOpsReporter,
    ConsoleReporter,
    GitHubReporter,
    detect_reporter,
)


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch):
    monkeypatch.delenv("GITHUB_ACTIONS", raising=False)
    monkeypatch.delenv("TF_BUILD", raising=False)


@pytest.mark.parametrize(
    ("variables", "expected"),
    [
        ({"GITHUB_ACTIONS": "true"}, GitHubReporter),
        ({"GITHUB_ACTIONS": "TRUE"}, GitHubReporter),
        ({"TF_BUILD": "True"}, AzureDevOpsReporter),
        ({"TF_BUILD": "true"}, AzureDevOpsReporter),
        ({"TF_BUILD": "TRUE"}, AzureDevOpsReporter),
        ({"GITHUB_ACTIONS": "true", "TF_BUILD": "True"}, GitHubReporter),
        ({}, ConsoleReporter),
        ({"GITHUB_ACTIONS": "false"}, ConsoleReporter),
        ({"GITHUB_ACTIONS": ""}, ConsoleReporter),
        ({"TF_BUILD": "False"}, ConsoleReporter),
        ({"TF_BUILD": "1"}, ConsoleReporter),
    ],
)
def test_detect_reporter_choice(monkeypatch, streams, variables, expected):
    for name, value in variables.items():
        monkeypatch.setenv(name, value)

    reporter = detect_reporter(environ=os.environ, stdout=streams.stdout, stderr=streams.stderr)

    assert type(reporter) is expected
    assert reporter.stdout is streams.stdout
    assert reporter.stderr is streams.stderr


def test_detect_reporter_prints_nothing(monkeypatch, streams):
    monkeypatch.setenv("TF_BUILD", "True")

    detect_reporter(environ=os.environ, stdout=streams.stdout, stderr=streams.stderr)

    assert streams.both() == ""


def test_detect_reporter_default_streams(capsys):
    reporter = detect_reporter(environ={})
    reporter.fail("boom")

    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == "error: boom\n"
