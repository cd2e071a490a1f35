"""Parsers that read reporter output the way the GitHub runner and Azure DevOps agent do.

They follow the runners' sources: ``ActionCommand.cs`` and ``FileCommandManager.cs``
in ``actions/runner``, ``Command.cs`` and ``CommandStringConvertor`` in
``azure-pipelines-agent``. Where it makes a test harder to pass they are stricter:
every command name counts as registered, ``##vso[`` is matched in any letter case,
and ``##[`` formatting commands count anywhere in a line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from flink_task.report.untrusted import _is_invisible


@dataclass
class Command:
    """One command a runner would act on."""

    platform: str
    name: str
    properties: dict[str, str] = field(default_factory=dict)
    data: str = ""


def runner_lines(text: str) -> list[str]:
    """Split output like .NET ``StreamReader.ReadLine``, on ``\\r\\n``, ``\\r`` and ``\\n``."""
    if not text:
        return []
    lines = re.split(r"\r\n|\r|\n", text)
    if lines and lines[-1] == "":
        lines.pop()
    return lines


def without_ignorables(line: str) -> str:
    """Drop characters a culture-sensitive .NET comparison may skip."""
    return "".join(character for character in line if not _is_invisible(character))


def _dotnet_trim_start(line: str) -> str:
    """Trim like .NET ``TrimStart()``, whose whitespace set Python's contains."""
    return line.lstrip()


# GitHub Actions


def _github_unescape_data(text: str) -> str:
    return text.replace("%0D", "\r").replace("%0A", "\n").replace("%25", "%")


def _github_unescape_property(text: str) -> str:
    return (
        text.replace("%0D", "\r")
        .replace("%0A", "\n")
        .replace("%3A", ":")
        .replace("%2C", ",")
        .replace("%25", "%")
    )


def parse_github_line(line: str) -> Command | None:
    """Return the command in one line, trying ``::name::`` and then ``##[name]``."""
    return _parse_github_v2(line) or _parse_github_v1(line)


def _parse_github_v2(line: str) -> Command | None:
    message = _dotnet_trim_start(line)
    if not message.startswith("::"):
        return None
    end = message.find("::", 2)
    if end < 0:
        return None
    info = message[2:end]
    name, _, props = info.partition(" ")
    if not name:
        return None
    properties = {}
    for pair in props.strip().split(","):
        key, sep, value = pair.partition("=")
        if sep and key and value:
            properties[key] = _github_unescape_property(value)
    return Command("github", name, properties, _github_unescape_data(message[end + 2 :]))


def _parse_github_v1(line: str) -> Command | None:
    start = line.find("##[")
    if start < 0:
        return None
    close = line.find("]", start)
    if close < 0:
        return None
    name = line[start + 3 : close].partition(" ")[0]
    if not name:
        return None
    return Command("github", name, {}, line[close + 1 :])


def github_commands(text: str, *, ignore_invisible: bool = False) -> list[Command]:
    """Return every command the GitHub runner would find in the output."""
    commands = []
    for line in runner_lines(text):
        if ignore_invisible:
            line = without_ignorables(line)
        command = parse_github_line(line)
        if command is not None:
            commands.append(command)
    return commands


def parse_github_output_file(text: str) -> dict[str, str]:
    """Read a ``$GITHUB_OUTPUT`` file like the runner does on Linux."""
    outputs: dict[str, str] = {}
    index = 0

    def read_line() -> tuple[str | None, int]:
        nonlocal index
        if index >= len(text):
            return None, 0
        newline = text.find("\n", index)
        if newline < 0:
            line, index = text[index:], len(text)
            return line, 0
        line, index = text[index:newline], newline + 1
        return line, 1

    while True:
        line, _ = read_line()
        if line is None:
            return outputs
        if not line:
            continue
        equals, heredoc = line.find("="), line.find("<<")
        if equals >= 0 and (heredoc < 0 or equals < heredoc):
            name, _, value = line.partition("=")
            outputs[name] = value
            continue
        if heredoc < 0:
            raise ValueError(f"invalid output line {line!r}")
        name, _, delimiter = line.partition("<<")
        if not name or not delimiter:
            raise ValueError(f"invalid output line {line!r}")
        start = end = index
        while True:
            value_line, newline_length = read_line()
            if value_line is None:
                raise ValueError(f"matching delimiter not found {delimiter!r}")
            if value_line == delimiter:
                break
            end = index - newline_length
        outputs[name] = text[start:end] if end > start else ""


# Azure DevOps

_AZURE_SPECIALS = (("%3B", ";"), ("%0D", "\r"), ("%0A", "\n"), ("%5D", "]"))


def azure_unescape(text: str) -> str:
    """Decode like the agent: ``%3B``, ``%0D``, ``%0A``, ``%5D`` first, ``%AZP25`` last."""
    for escaped, character in _AZURE_SPECIALS:
        text = text.replace(escaped, character)
    return text.replace("%AZP25", "%")


def parse_azure_line(line: str) -> Command | None:
    """Return the ``##vso[area.event]`` command or ``##[name]`` formatting in one line."""
    lowered = line.lower()
    start = lowered.find("##vso[")
    if start >= 0:
        close = line.find("]", start)
        if close >= 0:
            info = line[start + 6 : close]
            name, _, props = info.partition(" ")
            if len([part for part in name.split(".") if part]) == 2:
                properties = {}
                for pair in props.split(";"):
                    key, sep, value = pair.partition("=")
                    if sep and key and value:
                        properties[key] = azure_unescape(value)
                return Command("azure", name, properties, azure_unescape(line[close + 1 :]))
    start = line.find("##[")
    if start >= 0:
        close = line.find("]", start)
        if close >= 0:
            return Command("azure-format", line[start + 3 : close], {}, line[close + 1 :])
    return None


def azure_commands(text: str, *, ignore_invisible: bool = False) -> list[Command]:
    """Return every command the Azure DevOps agent (or its log viewer) would act on."""
    commands = []
    for line in runner_lines(text):
        if ignore_invisible:
            line = without_ignorables(line)
        command = parse_azure_line(line)
        if command is not None:
            commands.append(command)
    return commands


def azure_output_variables(text: str) -> dict[str, str]:
    """Return the output variables that ``task.setvariable`` commands in the text set."""
    variables = {}
    for command in azure_commands(text):
        if command.name.lower() != "task.setvariable":
            continue
        assert command.properties.get("isoutput") == "true", command
        variables[command.properties["variable"]] = command.data
    return variables


def all_commands(text: str) -> list[Command]:
    """Return what either runner would act on, reading the text plainly or culture-aware."""
    commands = []
    for ignore_invisible in (False, True):
        commands.extend(github_commands(text, ignore_invisible=ignore_invisible))
        commands.extend(azure_commands(text, ignore_invisible=ignore_invisible))
    return commands
