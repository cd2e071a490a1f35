from __future__ import annotations

import io
from collections.abc import Iterator

import pytest

from flink_task.report import (
    AzureDevOpsReporter,
    ConsoleReporter,
    GitHubReporter,
    Reporter,
    remove_reporter_handlers,
)


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    yield
    remove_reporter_handlers()


class Streams:
    """The stdout and stderr a reporter writes to."""

    def __init__(self) -> None:
        self.stdout = io.StringIO()
        self.stderr = io.StringIO()

    def both(self) -> str:
        return self.stdout.getvalue() + self.stderr.getvalue()


@pytest.fixture
def streams() -> Streams:
    return Streams()


@pytest.fixture
def github_env(tmp_path) -> dict[str, str]:
    output = tmp_path / "github_output"
    summary = tmp_path / "step_summary"
    output.write_text("")
    summary.write_text("")
    return {
        "GITHUB_ACTIONS": "true",
        "GITHUB_OUTPUT": str(output),
        "GITHUB_STEP_SUMMARY": str(summary),
    }


@pytest.fixture
def azure_env(tmp_path) -> dict[str, str]:
    temp = tmp_path / "agent_temp"
    temp.mkdir()
    return {"TF_BUILD": "True", "AGENT_TEMPDIRECTORY": str(temp)}


@pytest.fixture
def github(github_env, streams) -> GitHubReporter:
    return GitHubReporter(environ=github_env, stdout=streams.stdout, stderr=streams.stderr)


@pytest.fixture
def azure(azure_env, streams) -> AzureDevOpsReporter:
    return AzureDevOpsReporter(environ=azure_env, stdout=streams.stdout, stderr=streams.stderr)


@pytest.fixture
def console(streams) -> ConsoleReporter:
    return ConsoleReporter(environ={}, stdout=streams.stdout, stderr=streams.stderr)


@pytest.fixture(params=["github", "azure", "console"])
def any_reporter(request, github_env, azure_env, streams) -> Reporter:
    if request.param == "github":
        return GitHubReporter(environ=github_env, stdout=streams.stdout, stderr=streams.stderr)
    if request.param == "azure":
        return AzureDevOpsReporter(environ=azure_env, stdout=streams.stdout, stderr=streams.stderr)
    return ConsoleReporter(environ={}, stdout=streams.stdout, stderr=streams.stderr)
