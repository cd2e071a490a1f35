"""The action's steps under the runner's rules, with a stand-in for the task.

FLINK_TASK_PYTHON points the setup step at a script that records the run step's
environment, so these tests need neither pip nor a job API.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

from flink_task.inputs import INPUTS
from tests.surfaces.conftest import REPO_ROOT
from tests.surfaces.pipelines import CompositeAction

RECORDER = """\
import json, os, sys
with open(os.environ["RECORD_PATH"], "w") as file:
    json.dump({"argv": sys.argv[1:], "env": dict(os.environ)}, file)
with open(os.environ["GITHUB_OUTPUT"], "a") as file:
    file.write("jobId<<EOF_1\\njob-123\\nEOF_1\\nstatus=RUNNING\\n")
"""


@pytest.fixture()
def action(tmp_path: Path) -> CompositeAction:
    action_dir = tmp_path / "action"
    action_dir.mkdir()
    shutil.copy2(REPO_ROOT / "action.yml", action_dir)
    work_dir = tmp_path / "work"
    work_dir.mkdir()
    env = {"PATH": str(Path(sys.executable).parent), "RECORD_PATH": str(tmp_path / "record.json")}
    return CompositeAction(action_dir, work_dir, env, timeout=60)


@pytest.fixture()
def recorder(tmp_path: Path) -> Path:
    script = tmp_path / "recorder"
    script.write_text(f"#!{sys.executable}\n{RECORDER}")
    script.chmod(0o755)
    return script


def test_every_input_reaches_env(action: CompositeAction, recorder: Path, tmp_path: Path) -> None:
    action.job_env["FLINK_TASK_PYTHON"] = str(recorder)
    inputs = {spec.github_id: f"value of {spec.name}" for spec in INPUTS}
    run = action.run(inputs)
    assert run.returncode == 0, run.stdout
    record = json.loads((tmp_path / "record.json").read_text())
    assert record["argv"] == ["-I", "-m", "flink_task", "run"]
    for spec in INPUTS:
        assert record["env"][spec.env_var] == f"value of {spec.name}"
    assert record["env"]["GITHUB_ACTIONS"] == "true"


def test_input_text_not_parsed_by_shell(
    action: CompositeAction, recorder: Path, tmp_path: Path
) -> None:
    """Input values pass through env: untouched, whatever shell syntax they contain."""
    action.job_env["FLINK_TASK_PYTHON"] = str(recorder)
    hostile = "$(touch pwned) `touch pwned` ${HOME} \"quoted\" 'single'\nsecond line; exit 3"
    run = action.run({"action": "NEW", "args": hostile, "flink-configuration": hostile})
    assert run.returncode == 0, run.stdout
    record = json.loads((tmp_path / "record.json").read_text())
    assert record["env"]["INPUT_ARGS"] == hostile
    assert record["env"]["INPUT_FLINKCONFIGURATION"] == hostile
    assert not (action.work_dir / "pwned").exists()


def test_unset_inputs_are_empty(action: CompositeAction, recorder: Path, tmp_path: Path) -> None:
    action.job_env["FLINK_TASK_PYTHON"] = str(recorder)
    run = action.run({"action": "LIST"})
    assert run.returncode == 0, run.stdout
    record = json.loads((tmp_path / "record.json").read_text())
    for spec in INPUTS:
        if spec.name != "action":
            assert record["env"][spec.env_var] == "", spec.name


def test_outputs_mapped_to_kebab_case(action: CompositeAction, recorder: Path) -> None:
    action.job_env["FLINK_TASK_PYTHON"] = str(recorder)
    run = action.run({"action": "STOP"})
    assert run.returncode == 0, run.stdout
    assert run.outputs["job-id"] == "job-123"
    assert run.outputs["status"] == "RUNNING"
    assert run.outputs["action-result"] == ""


def test_missing_python_reported(action: CompositeAction, tmp_path: Path) -> None:
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    action.job_env["PATH"] = str(empty)
    run = action.run({"action": "STOP"})
    assert run.returncode == 2
    assert [step.step_id for step in run.steps] == ["setup"]
    assert "::error title=flink-task::Python 3.10 or later was not found" in run.stdout
