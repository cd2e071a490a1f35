"""Run the surfaces the way their pipelines do, and read back what they report.

``CompositeAction`` runs the steps of ``action.yml`` like the GitHub Actions runner. Each
``run`` script goes into a file that ``bash --noprofile --norc -eo pipefail FILE``
executes. Its ``env:`` is evaluated from the inputs and earlier step outputs, and every
step gets fresh ``$GITHUB_OUTPUT`` and ``$GITHUB_STEP_SUMMARY`` files. The outputs are read
back with the runner's parsing rules for those files (``actions/runner``
``FileCommandManager.cs``).

``parse_vso_variables`` reads the ``##vso[task.setvariable ...]`` commands that an Azure
DevOps task prints, with the agent's unescaping.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

_EXPRESSION = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")
_INPUT_EXPRESSION = re.compile(r"inputs\.([A-Za-z_][A-Za-z0-9_-]*)")
_STEP_OUTPUT_EXPRESSION = re.compile(
    r"steps\.([A-Za-z_][A-Za-z0-9_-]*)\.outputs\.([A-Za-z0-9_-]+)"
)
# The agent's property and data unescaping (task-lib taskcommand.ts, agent CommandStringConvertor).
_VSO_UNESCAPES = (("%0D", "\r"), ("%0A", "\n"), ("%5D", "]"), ("%3B", ";"), ("%AZP25", "%"))


# Resolved once, so a step's own PATH (which a test may empty) does not hide the shell.
BASH = shutil.which("bash") or "bash"


class ExpressionError(ValueError):
    """An expression in action.yml that this runner does not evaluate."""


def parse_output_file(text: str) -> dict[str, str]:
    """Parse a ``$GITHUB_OUTPUT`` file: ``name=value`` lines and ``name<<DELIMITER`` blocks."""
    outputs: dict[str, str] = {}
    lines = text.splitlines()
    index = 0
    while index < len(lines):
        line = lines[index]
        index += 1
        if not line:
            continue
        equals = line.find("=")
        heredoc = line.find("<<")
        if equals >= 0 and (heredoc < 0 or equals < heredoc):
            name, value = line[:equals], line[equals + 1 :]
        elif heredoc >= 0:
            name, delimiter = line[:heredoc], line[heredoc + 2 :]
            if not name or not delimiter:
                raise ValueError(f"invalid heredoc line {line!r}")
            body: list[str] = []
            while True:
                if index >= len(lines):
                    raise ValueError(f"no closing delimiter {delimiter!r} for output {name!r}")
                current = lines[index]
                index += 1
                if current == delimiter:
                    break
                body.append(current)
            value = "\n".join(body)
        else:
            raise ValueError(f"invalid output line {line!r}")
        if not name:
            raise ValueError(f"output line without a name: {line!r}")
        outputs[name] = value
    return outputs


def assert_masked_before_shown(output: str, secret: str, mask_command: str) -> None:
    """Check that ``secret`` is registered with ``mask_command`` before any other line shows it.

    Runners and agents mask a value only from its registration on, so an earlier line
    would reach the log in clear text.
    """
    registered = False
    for line in output.splitlines():
        if line.startswith(mask_command) and secret in line:
            registered = True
        elif secret in line:
            assert registered, f"secret shown before {mask_command}: {line}"


def unescape_vso(text: str) -> str:
    for escaped, plain in _VSO_UNESCAPES:
        text = text.replace(escaped, plain)
    return text


def parse_vso_variables(stdout: str) -> dict[str, dict[str, Any]]:
    """Return each variable set with ``task.setvariable``: its value and properties."""
    variables: dict[str, dict[str, Any]] = {}
    for line in stdout.splitlines():
        match = re.match(r"^##vso\[task\.setvariable (?P<props>[^\]]*)\](?P<value>.*)$", line)
        if not match:
            continue
        properties = {}
        for item in match.group("props").split(";"):
            if "=" in item:
                key, value = item.split("=", 1)
                properties[key.strip().lower()] = unescape_vso(value)
        name = properties.pop("variable")
        variables[name] = {"value": unescape_vso(match.group("value")), **properties}
    return variables


@dataclass
class StepRun:
    """One executed step: its exit code, console output, outputs and summary."""

    step_id: str
    returncode: int
    stdout: str
    outputs: dict[str, str]
    summary: str


@dataclass
class ActionRun:
    """A run of the whole action: the steps that ran and the action's outputs."""

    steps: list[StepRun] = field(default_factory=list)
    outputs: dict[str, str] = field(default_factory=dict)

    @property
    def returncode(self) -> int:
        return self.steps[-1].returncode

    @property
    def stdout(self) -> str:
        return "".join(step.stdout for step in self.steps)


@dataclass
class Interrupt:
    """Send ``signal_number`` to a step's process once ``marker`` appears in its output."""

    step_id: str
    marker: str
    signal_number: int = signal.SIGINT
    marker_timeout: float = 120.0
    # Seconds from the signal to the step's exit, measured by the runner.
    elapsed: float | None = None


class CompositeAction:
    """Runs a composite action's steps from its folder, like the GitHub Actions runner."""

    def __init__(
        self, action_dir: Path, work_dir: Path, job_env: Mapping[str, str], timeout: float
    ) -> None:
        self.action_dir = action_dir
        self.work_dir = work_dir
        self.job_env = dict(job_env)
        self.timeout = timeout
        self.metadata = yaml.safe_load((action_dir / "action.yml").read_text(encoding="utf-8"))
        self._runs = 0

    def run(self, inputs: Mapping[str, str], interrupt: Interrupt | None = None) -> ActionRun:
        unknown = set(inputs) - set(self.metadata["inputs"])
        if unknown:
            raise ValueError(f"inputs not declared in action.yml: {sorted(unknown)}")
        self._runs += 1
        result = ActionRun()
        step_outputs: dict[str, dict[str, str]] = {}
        for index, step in enumerate(self.metadata["runs"]["steps"]):
            context = {"inputs": self._input_values(inputs), "steps": step_outputs}
            step_run = self._run_step(index, step, context, interrupt)
            result.steps.append(step_run)
            step_outputs[step["id"]] = step_run.outputs
            if step_run.returncode != 0:
                break
        context = {"inputs": self._input_values(inputs), "steps": step_outputs}
        for output_id, declaration in self.metadata["outputs"].items():
            result.outputs[output_id] = evaluate(declaration["value"], context)
        return result

    def _input_values(self, inputs: Mapping[str, str]) -> dict[str, str]:
        values = {
            name: str(spec.get("default", "")) for name, spec in self.metadata["inputs"].items()
        }
        values.update(inputs)
        return values

    def _run_step(
        self,
        index: int,
        step: dict[str, Any],
        context: dict[str, Any],
        interrupt: Interrupt | None,
    ) -> StepRun:
        assert step["shell"] == "bash", "only bash steps are supported"
        step_dir = self.work_dir / f"run{self._runs}-step{index}"
        step_dir.mkdir(parents=True)
        script = step_dir / "script.sh"
        script.write_text(step["run"], encoding="utf-8")
        output_file = step_dir / "output"
        summary_file = step_dir / "summary"
        output_file.touch()
        summary_file.touch()
        env = dict(self.job_env)
        env.update(
            {
                "GITHUB_ACTIONS": "true",
                "GITHUB_ACTION_PATH": str(self.action_dir),
                "GITHUB_OUTPUT": str(output_file),
                "GITHUB_STEP_SUMMARY": str(summary_file),
            }
        )
        for name, value in (step.get("env") or {}).items():
            env[name] = evaluate(str(value), context)
        log_file = step_dir / "console.log"
        with log_file.open("wb") as log:
            process = subprocess.Popen(
                [BASH, "--noprofile", "--norc", "-eo", "pipefail", str(script)],
                cwd=self.work_dir,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            if interrupt is not None and interrupt.step_id == step.get("id"):
                self._interrupt_when_ready(process, log_file, interrupt)
            returncode = process.wait(timeout=self.timeout)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
        return StepRun(
            step_id=step["id"],
            returncode=returncode,
            stdout=log_file.read_text(encoding="utf-8", errors="replace"),
            outputs=parse_output_file(output_file.read_text(encoding="utf-8")),
            summary=summary_file.read_text(encoding="utf-8"),
        )

    @staticmethod
    def _interrupt_when_ready(
        process: subprocess.Popen[bytes], log_file: Path, interrupt: Interrupt
    ) -> None:
        """Signal the step's own process (as the runner does), then time its exit."""
        deadline = time.monotonic() + interrupt.marker_timeout
        while interrupt.marker not in log_file.read_text(encoding="utf-8", errors="replace"):
            if process.poll() is not None:
                raise AssertionError(
                    f"step ended with {process.returncode} before printing {interrupt.marker!r}"
                )
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{interrupt.marker!r} not printed within {interrupt.marker_timeout} s"
                )
            time.sleep(0.05)
        started = time.monotonic()
        os.kill(process.pid, interrupt.signal_number)
        try:
            process.wait(timeout=30)
        finally:
            interrupt.elapsed = time.monotonic() - started


def evaluate(text: str, context: Mapping[str, Any]) -> str:
    """Replace ``${{ inputs.x }}`` and ``${{ steps.s.outputs.o }}``; reject anything else."""

    def replace(match: re.Match[str]) -> str:
        expression = match.group(1)
        input_match = _INPUT_EXPRESSION.fullmatch(expression)
        if input_match:
            return str(context["inputs"].get(input_match.group(1), ""))
        output_match = _STEP_OUTPUT_EXPRESSION.fullmatch(expression)
        if output_match:
            step_id, name = output_match.groups()
            return str(context["steps"].get(step_id, {}).get(name, ""))
        raise ExpressionError(f"unsupported expression {match.group(0)!r}")

    return _EXPRESSION.sub(replace, text)
