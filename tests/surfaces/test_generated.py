"""The generated parts of action.yml and task.json match the input table."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml

from flink_task.inputs import INPUTS, Input
from flink_task.outputs import OUTPUT_NAMES
from tests.surfaces.conftest import REPO_ROOT, load_script

generator = load_script("generate_surfaces")


def test_surfaces_up_to_date() -> None:
    stale = [str(path.relative_to(REPO_ROOT)) for path in generator.stale_files()]
    assert stale == [], "run python scripts/generate_surfaces.py"


def test_check_mode_reports_up_to_date() -> None:
    completed = subprocess.run(
        [sys.executable, str(REPO_ROOT / "scripts" / "generate_surfaces.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr


def test_outputs_match_runner() -> None:
    assert tuple(output.name for output in generator.OUTPUTS) == OUTPUT_NAMES


def test_new_input_reaches_both_surfaces(monkeypatch: pytest.MonkeyPatch) -> None:
    """An input added to the table (here in a new group) appears on both surfaces."""
    added = Input(
        "exampleEndpoint",
        "An example endpoint that no release has.",
        group="example",
    )
    monkeypatch.setattr(generator, "INPUTS", (*INPUTS, added))
    action = yaml.safe_load(generator.render_action_yml(generator.ACTION_YML.read_text()))
    task = json.loads(generator.render_task_json(generator.TASK_JSON.read_text(), "1.2.3"))

    assert action["inputs"]["example-endpoint"]["default"] == ""
    run_step = next(step for step in action["runs"]["steps"] if step["id"] == "run")
    assert run_step["env"]["INPUT_EXAMPLEENDPOINT"] == "${{ inputs.example-endpoint }}"
    task_input = next(entry for entry in task["inputs"] if entry["name"] == "exampleEndpoint")
    assert task_input["groupName"] == "example"
    assert {"name": "example", "displayName": "Example", "isExpanded": True} in task["groups"]
    assert task["version"] == {"Major": 1, "Minor": 2, "Patch": 3}


def test_hand_written_parts_kept() -> None:
    text = generator.ACTION_YML.read_text().replace("color: blue", "color: green")
    assert "color: green" in generator.render_action_yml(text)
    manifest = json.loads(generator.TASK_JSON.read_text())
    manifest["friendlyName"] = "Renamed"
    rendered = json.loads(generator.render_task_json(json.dumps(manifest), "0.1.0"))
    assert rendered["friendlyName"] == "Renamed"
    assert list(rendered) == list(manifest)


def test_missing_marker_rejected() -> None:
    text = generator.ACTION_YML.read_text().replace("# END GENERATED env", "# end")
    with pytest.raises(SystemExit, match="GENERATED env"):
        generator.render_action_yml(text)


def test_version_must_have_three_numbers() -> None:
    with pytest.raises(SystemExit, match=r"MAJOR\.MINOR\.PATCH"):
        generator.split_version("1.2")
