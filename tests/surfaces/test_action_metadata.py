"""action.yml: valid action metadata that maps every input and output of the task."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from flink_task.inputs import INPUTS
from tests.surfaces.conftest import REPO_ROOT, load_script

ACTION_PATH = REPO_ROOT / "action.yml"
generator = load_script("generate_surfaces")


@pytest.fixture(scope="module")
def action() -> dict[str, Any]:
    loaded = yaml.safe_load(ACTION_PATH.read_text(encoding="utf-8"))
    assert isinstance(loaded, dict)
    return loaded


def step_by_id(action: dict[str, Any], step_id: str) -> dict[str, Any]:
    return next(step for step in action["runs"]["steps"] if step.get("id") == step_id)


def test_action_validator_accepts(action_validator: Path) -> None:
    completed = subprocess.run(
        [str(action_validator), str(ACTION_PATH)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr


def test_action_validator_rejects_missing_shell(action_validator: Path, tmp_path: Path) -> None:
    broken = tmp_path / "action.yml"
    broken.write_text(ACTION_PATH.read_text().replace("shell: bash", "name: no shell"))
    completed = subprocess.run(
        [str(action_validator), str(broken)], capture_output=True, text=True, timeout=60
    )
    assert completed.returncode != 0


def test_top_level_keys(action: dict[str, Any]) -> None:
    assert action["name"]
    assert action["description"]
    assert set(action["branding"]) == {"icon", "color"}
    assert action["runs"]["using"] == "composite"


def test_every_input_declared(action: dict[str, Any]) -> None:
    assert list(action["inputs"]) == [spec.github_id for spec in INPUTS]


@pytest.mark.parametrize("spec", INPUTS, ids=lambda spec: spec.github_id)
def test_input_optional_and_empty(action: dict[str, Any], spec: Any) -> None:
    entry = action["inputs"][spec.github_id]
    assert entry["description"].startswith(spec.description)
    assert entry["required"] is False
    assert entry["default"] == ""


def test_run_step_maps_every_input(action: dict[str, Any]) -> None:
    env = step_by_id(action, "run")["env"]
    for spec in INPUTS:
        assert env[spec.env_var] == "${{ inputs." + spec.github_id + " }}"


def test_no_expression_in_scripts(action: dict[str, Any]) -> None:
    """Expressions go through env: only, so no input value is ever parsed as shell code."""
    for step in action["runs"]["steps"]:
        assert "${{" not in step.get("run", ""), step["id"]


def test_steps_use_bash(action: dict[str, Any]) -> None:
    for step in action["runs"]["steps"]:
        if "run" in step:
            assert step["shell"] == "bash", step["id"]


def test_run_step_execs_python(action: dict[str, Any]) -> None:
    """exec lets the runner's SIGINT reach Python instead of a waiting bash."""
    script = step_by_id(action, "run")["run"].strip()
    assert re.match(r'^exec "\$FLINK_TASK_VENV_PYTHON" -I -m flink_task run$', script)


def test_every_output_declared(action: dict[str, Any]) -> None:
    outputs = action["outputs"]
    assert list(outputs) == [output.github_id for output in generator.OUTPUTS]
    for output in generator.OUTPUTS:
        entry = outputs[output.github_id]
        assert entry["description"]
        assert entry["value"] == "${{ steps.run.outputs." + output.name + " }}"


def test_kebab_case_output_ids() -> None:
    ids = {output.name: output.github_id for output in generator.OUTPUTS}
    assert ids == {
        "jobId": "job-id",
        "status": "status",
        "actionResult": "action-result",
        "jobOutput": "job-output",
        "lastSavePoint": "last-save-point",
        "savepoints": "savepoints",
        "job": "job",
        "jobs": "jobs",
    }
