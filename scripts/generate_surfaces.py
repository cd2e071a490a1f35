#!/usr/bin/env python3
"""Regenerate the inputs, outputs and version of action.yml and the Azure DevOps task.

Everything here is derived from ``flink_task.inputs.INPUTS``, the ``OUTPUTS`` table below
and the ``[project] version`` of pyproject.toml. In ``action.yml`` and the task's
``index.js`` only the text between ``BEGIN GENERATED <part>`` and ``END GENERATED <part>``
comment lines is replaced. In the JSON manifests only the keys ``groups``, ``inputs``,
``outputVariables`` and ``version`` are replaced, so every hand-written key keeps its
value and position.

Usage:
    python scripts/generate_surfaces.py           rewrite the files that are out of date
    python scripts/generate_surfaces.py --check   exit 1 and name them instead
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from flink_task.inputs import INPUTS, TASK_ACTIONS, Input  # noqa: E402
from flink_task.request import INPUT_ACTIONS  # noqa: E402

ACTION_YML = ROOT / "action.yml"
TASK_JSON = ROOT / "azure-devops" / "FlinkTask" / "task.json"
EXTENSION_JSON = ROOT / "azure-devops" / "vss-extension.json"
WRAPPER_JS = ROOT / "azure-devops" / "FlinkTask" / "index.js"
PYPROJECT = ROOT / "pyproject.toml"

# The step of action.yml that runs the task and writes the outputs.
RUN_STEP_ID = "run"
# The step of action.yml whose output "python" is the interpreter to run the task with.
SETUP_STEP_ID = "setup"


@dataclass(frozen=True)
class Output:
    """One output of the task: its Azure DevOps variable name and its meaning."""

    name: str
    description: str

    @property
    def github_id(self) -> str:
        return re.sub(r"(?<!^)(?=[A-Z])", "-", self.name).lower()


OUTPUTS: tuple[Output, ...] = (
    Output("jobId", "Flink job id of the job record."),
    Output("status", "Job status after the action: RUNNING, STOPPED, CANCELLED or FAILED."),
    Output(
        "actionResult",
        "Result of the action: SUCCESS, FAILED, or IN_PROGRESS when the task did not wait "
        "or its deadline came first.",
    ),
    Output(
        "jobOutput",
        "Message of the action, for example the savepoint path, or the root cause of a failure.",
    ),
    Output("lastSavePoint", "Path of the job's last savepoint."),
    Output("savepoints", "The job's savepoints as a JSON array, newest first."),
    Output("job", "The whole job record as JSON."),
    Output("jobs", "LIST only: every listed job record as a JSON array."),
)

# Display names of the Azure DevOps input groups, in the order the editor shows them.
GROUP_DISPLAY_NAMES = {
    "job": "Job",
    "cluster": "Cluster",
    "auth": "Sign-in",
    "run": "Waiting and dry run",
}
COLLAPSED_GROUPS = {"run"}

# Editor labels that read better than the split camelCase name.
LABELS = {
    "action": "Action",
    "jobJarDirectory": "Jar directory",
    "jarName": "Jar file name",
    "args": "Program arguments",
    "runId": "Run id",
    "apiVersion": "API version",
    "azureSubscription": "Azure Resource Manager connection",
    "authType": "Sign-in method",
    "tenantId": "Tenant id",
    "clientId": "Client id",
    "subscriptionId": "Subscription id",
    "timeoutMinutes": "Timeout (minutes)",
    "dryRun": "Dry run",
    "allowNonRestoredState": "Allow non-restored state",
}

# Actions that can use each job input, from the task's own validation: an input given to
# another action is an input error. Inputs not listed apply to every action.
ACTIONS_USING_INPUT: dict[str, tuple[str, ...]] = dict(INPUT_ACTIONS)

# Azure DevOps shows a boolean input as a check box, which cannot show "not set". An input
# whose task default is true therefore starts checked, so the editor shows what happens.
# The value equals the task's own default, so no action receives anything new.
ADO_CHECKBOX_DEFAULTS = {"wait": "true"}


# ----------------------------------------------------------------------------- common


def read_version() -> str:
    text = PYPROJECT.read_text(encoding="utf-8")
    project = re.search(r"^\[project\]\s*$(.*?)(?=^\[|\Z)", text, re.MULTILINE | re.DOTALL)
    match = re.search(r'^version\s*=\s*"([^"]+)"', project.group(1) if project else "", re.M)
    if not match:
        raise SystemExit(f"no [project] version found in {PYPROJECT}")
    return match.group(1)


def split_version(version: str) -> tuple[int, int, int]:
    match = re.fullmatch(r"(\d+)\.(\d+)\.(\d+)", version)
    if not match:
        raise SystemExit(
            f"version {version!r} in {PYPROJECT} must be MAJOR.MINOR.PATCH, "
            "because Azure DevOps task versions are three numbers"
        )
    major, minor, patch = (int(part) for part in match.groups())
    return major, minor, patch


def label_for(spec: Input) -> str:
    if spec.name in LABELS:
        return LABELS[spec.name]
    words = re.sub(r"(?<!^)(?=[A-Z])", " ", spec.name).lower()
    return words[:1].upper() + words[1:]


def choices_sentence(spec: Input) -> str:
    return "One of: " + ", ".join(spec.choices) + "."


# ------------------------------------------------------------------------- action.yml


def yaml_string(text: str) -> str:
    """Quote text as a YAML double-quoted scalar (JSON strings are valid YAML)."""
    return json.dumps(text, ensure_ascii=False)


def used_by_sentence(spec: Input) -> str | None:
    actions = ACTIONS_USING_INPUT.get(spec.name)
    if not actions or set(actions) >= set(TASK_ACTIONS):
        return None
    return "Used by: " + ", ".join(actions) + "."


def github_description(spec: Input) -> str:
    parts = [spec.description]
    if spec.kind == "choice":
        parts.append(choices_sentence(spec))
    if spec.secret:
        parts.append("Pass it from a secret, never as plain text in the workflow.")
    used_by = used_by_sentence(spec)
    if used_by:
        parts.append(used_by)
    return " ".join(parts)


def render_action_inputs() -> list[str]:
    lines = []
    for spec in INPUTS:
        lines += [
            f"{spec.github_id}:",
            f"  description: {yaml_string(github_description(spec))}",
            "  required: false",
            '  default: ""',
        ]
    return lines


def render_action_outputs() -> list[str]:
    """Map each step output, named as the task writes it (camelCase), to a kebab-case id."""
    lines = []
    for output in OUTPUTS:
        lines += [
            f"{output.github_id}:",
            f"  description: {yaml_string(output.description)}",
            f"  value: ${{{{ steps.{RUN_STEP_ID}.outputs.{output.name} }}}}",
        ]
    return lines


def render_action_env() -> list[str]:
    return [f"{spec.env_var}: ${{{{ inputs.{spec.github_id} }}}}" for spec in INPUTS]


ACTION_PARTS = {
    "inputs": render_action_inputs,
    "outputs": render_action_outputs,
    "env": render_action_env,
}


def replace_marked_block(text: str, part: str, body: Iterable[str], file_name: str) -> str:
    """Replace the lines between the BEGIN and END markers of ``part``, indented like them.

    A marker is a ``#`` (YAML) or ``//`` (JavaScript) comment line.
    """
    pattern = re.compile(
        rf"^(?P<indent>[ \t]*)(?P<comment>#|//) BEGIN GENERATED {part}\b.*?\n"
        rf"(?P<body>.*?)"
        rf"^(?P=indent)(?P=comment) END GENERATED {part}\b",
        re.MULTILINE | re.DOTALL,
    )
    matches = list(pattern.finditer(text))
    if len(matches) != 1:
        raise SystemExit(
            f"{file_name}: expected one 'BEGIN GENERATED {part}' ... "
            f"'END GENERATED {part}' block, found {len(matches)}"
        )
    match = matches[0]
    indent = match.group("indent")
    new_body = "".join(f"{indent}{line}\n" for line in body)
    return text[: match.start("body")] + new_body + text[match.end("body") :]


def render_action_yml(text: str) -> str:
    for part, render in ACTION_PARTS.items():
        text = replace_marked_block(text, part, render(), ACTION_YML.name)
    return text


# ------------------------------------------------------------------- task wrapper (JS)


def render_wrapper_js(text: str) -> str:
    """Write the names of the secret inputs into the wrapper, which masks their values."""
    names = [spec.name for spec in INPUTS if spec.secret]
    body = ["const SECRET_INPUTS = [", *[f"  '{name}'," for name in names], "];"]
    return replace_marked_block(text, "secret-inputs", body, WRAPPER_JS.name)


# -------------------------------------------------------------------------- task.json


def ado_visible_rule(spec: Input) -> str | None:
    """Return the editor rule that shows an input only for the actions that can use it."""
    actions = ACTIONS_USING_INPUT.get(spec.name)
    if not actions or set(actions) >= set(TASK_ACTIONS):
        return None
    hidden = [action for action in TASK_ACTIONS if action not in actions]
    if len(hidden) == 1:
        return f"action != {hidden[0]}"
    return " || ".join(f"action = {action}" for action in actions)


def ado_help(spec: Input) -> str:
    parts = [spec.description]
    if spec.secret:
        parts.append("Pass it from a secret variable, for example `$(clientSecret)`.")
    used_by = used_by_sentence(spec)
    if used_by:
        parts.append(used_by)
    parts.append(f"Environment variable: `{spec.env_var}`.")
    return " ".join(parts)


def ado_input(spec: Input) -> dict[str, object]:
    entry: dict[str, object] = {"name": spec.name, "label": label_for(spec)}
    properties: dict[str, object] = {}
    if spec.name == "azureSubscription":
        entry["type"] = "connectedService:AzureRM"
    elif spec.kind == "boolean":
        entry["type"] = "boolean"
    elif spec.kind == "multiline":
        entry["type"] = "multiLine"
        properties = {"resizable": True, "rows": "4"}
    elif spec.kind == "choice":
        entry["type"] = "pickList"
        properties = {"EditableOptions": "False"}
    else:
        entry["type"] = "string"
    entry["defaultValue"] = ADO_CHECKBOX_DEFAULTS.get(spec.name, "")
    # The action decides which other inputs apply, so the editor needs one.
    entry["required"] = spec.name == "action"
    entry["groupName"] = spec.group
    rule = ado_visible_rule(spec)
    if rule:
        entry["visibleRule"] = rule
    if spec.kind == "choice":
        entry["options"] = {choice: choice for choice in spec.choices}
    if properties:
        entry["properties"] = properties
    entry["helpMarkDown"] = ado_help(spec)
    return entry


def ado_groups() -> list[dict[str, object]]:
    names = list(GROUP_DISPLAY_NAMES)
    names += [spec.group for spec in INPUTS if spec.group not in names]
    used = {spec.group for spec in INPUTS}
    groups = []
    for name in names:
        if name not in used:
            continue
        groups.append(
            {
                "name": name,
                "displayName": GROUP_DISPLAY_NAMES.get(name, name.replace("-", " ").title()),
                "isExpanded": name not in COLLAPSED_GROUPS,
            }
        )
    return groups


def ado_inputs() -> list[dict[str, object]]:
    """Return the task inputs, grouped in the order of the groups, each group in table order."""
    order = [group["name"] for group in ado_groups()]
    ordered = sorted(INPUTS, key=lambda spec: order.index(spec.group))
    return [ado_input(spec) for spec in ordered]


def render_task_json(text: str, version: str) -> str:
    manifest = json.loads(text)
    major, minor, patch = split_version(version)
    manifest["version"] = {"Major": major, "Minor": minor, "Patch": patch}
    manifest["groups"] = ado_groups()
    manifest["inputs"] = ado_inputs()
    manifest["outputVariables"] = [
        {"name": output.name, "description": output.description} for output in OUTPUTS
    ]
    return json.dumps(manifest, indent=2, ensure_ascii=False) + "\n"


def render_extension_json(text: str, version: str) -> str:
    manifest = json.loads(text)
    split_version(version)
    manifest["version"] = version
    return json.dumps(manifest, indent=2, ensure_ascii=False) + "\n"


# ------------------------------------------------------------------------------- main


def rendered_files() -> dict[Path, str]:
    """Return the generated text of every surface file, keyed by path."""
    version = read_version()
    return {
        ACTION_YML: render_action_yml(ACTION_YML.read_text(encoding="utf-8")),
        TASK_JSON: render_task_json(TASK_JSON.read_text(encoding="utf-8"), version),
        EXTENSION_JSON: render_extension_json(EXTENSION_JSON.read_text(encoding="utf-8"), version),
        WRAPPER_JS: render_wrapper_js(WRAPPER_JS.read_text(encoding="utf-8")),
    }


def stale_files() -> list[Path]:
    return [
        path for path, text in rendered_files().items() if path.read_text(encoding="utf-8") != text
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--check",
        action="store_true",
        help="change nothing; exit 1 when a file is out of date",
    )
    args = parser.parse_args(argv)
    rendered = rendered_files()
    stale = [path for path, text in rendered.items() if path.read_text(encoding="utf-8") != text]
    for path in stale:
        relative = path.relative_to(ROOT)
        if args.check:
            print(f"{relative} is out of date: run python scripts/generate_surfaces.py")
        else:
            path.write_text(rendered[path], encoding="utf-8", newline="\n")
            print(f"rewrote {relative}")
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
