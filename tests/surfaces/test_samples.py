"""The sample workflows and pipelines are valid and use only inputs the surfaces declare."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.surfaces.conftest import REPO_ROOT, TASK_DIR

GITHUB_SAMPLES = sorted((REPO_ROOT / "samples" / "github").glob("*.yml"))
AZURE_SAMPLES = sorted((REPO_ROOT / "samples" / "azure-pipelines").glob("*.yml"))


def load_yaml(path: Path) -> dict[str, Any]:
    loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(loaded, dict)
    return loaded


def workflow_steps(workflow: dict[str, Any]) -> list[dict[str, Any]]:
    return [step for job in workflow["jobs"].values() for step in job.get("steps", [])]


@pytest.mark.parametrize("path", GITHUB_SAMPLES, ids=lambda path: path.name)
def test_workflow_validates(path: Path, action_validator: Path) -> None:
    completed = subprocess.run(
        [str(action_validator), str(path)], capture_output=True, text=True, timeout=60
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr


@pytest.mark.parametrize("path", GITHUB_SAMPLES, ids=lambda path: path.name)
def test_workflow_uses_declared_inputs(path: Path) -> None:
    declared = set(load_yaml(REPO_ROOT / "action.yml")["inputs"])
    steps = [
        step
        for step in workflow_steps(load_yaml(path))
        if str(step.get("uses", "")).split("@")[0].endswith("/flink-task")
    ]
    assert steps
    for step in steps:
        assert set(step["with"]) <= declared


@pytest.mark.parametrize("path", GITHUB_SAMPLES, ids=lambda path: path.name)
def test_workflow_scripts_have_no_step_outputs(path: Path) -> None:
    """Task outputs (server text) reach scripts through env:, never pasted into the script."""
    for step in workflow_steps(load_yaml(path)):
        assert "steps." not in step.get("run", ""), step.get("name")
        assert "inputs." not in step.get("run", ""), step.get("name")


def test_oidc_samples_request_id_token() -> None:
    for path in GITHUB_SAMPLES:
        text = path.read_text(encoding="utf-8")
        if "auth-type: github-oidc" in text:
            assert load_yaml(path)["permissions"]["id-token"] == "write", path.name


@pytest.mark.parametrize("path", AZURE_SAMPLES, ids=lambda path: path.name)
def test_pipeline_uses_declared_inputs(path: Path) -> None:
    task = json.loads((TASK_DIR / "task.json").read_text(encoding="utf-8"))
    declared = {entry["name"] for entry in task["inputs"]}
    steps = [
        step
        for step in load_yaml(path)["steps"]
        if str(step.get("task", "")).startswith("FlinkTask@")
    ]
    assert steps
    for step in steps:
        assert set(step["inputs"]) <= declared
        assert step["inputs"]["azureSubscription"]
