"""task.json and vss-extension.json: schema-valid, complete, and in step with the table."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from flink_task.inputs import INPUTS, INPUTS_BY_NAME
from flink_task.request import INPUT_ACTIONS
from tests.surfaces.conftest import REPO_ROOT, SCHEMA_PATH, TASK_DIR, load_script

generator = load_script("generate_surfaces")
TASK_PATH = TASK_DIR / "task.json"
EXTENSION_PATH = REPO_ROOT / "azure-devops" / "vss-extension.json"


@pytest.fixture(scope="module")
def task() -> dict[str, Any]:
    return json.loads(TASK_PATH.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def task_inputs(task: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {entry["name"]: entry for entry in task["inputs"]}


def test_schema_valid(task: dict[str, Any]) -> None:
    if not SCHEMA_PATH.is_file():
        pytest.skip(f"task manifest schema not found at {SCHEMA_PATH}")
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    validator = jsonschema.Draft4Validator(schema)
    errors = [f"{list(error.path)}: {error.message}" for error in validator.iter_errors(task)]
    assert errors == []


def test_schema_rejects_bad_input_name(task: dict[str, Any]) -> None:
    if not SCHEMA_PATH.is_file():
        pytest.skip(f"task manifest schema not found at {SCHEMA_PATH}")
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    broken = json.loads(json.dumps(task))
    broken["inputs"][0]["name"] = "job-name"
    assert not jsonschema.Draft4Validator(schema).is_valid(broken)


def test_node_handlers(task: dict[str, Any]) -> None:
    assert set(task["execution"]) == {"Node20_1", "Node24"}
    for handler in task["execution"].values():
        assert (TASK_DIR / handler["target"]).is_file()


def test_every_input_declared(task_inputs: dict[str, dict[str, Any]]) -> None:
    assert sorted(task_inputs) == sorted(spec.name for spec in INPUTS)


@pytest.mark.parametrize("spec", INPUTS, ids=lambda spec: spec.name)
def test_input_entry(task_inputs: dict[str, dict[str, Any]], spec: Any) -> None:
    entry = task_inputs[spec.name]
    assert re.fullmatch(r"[A-Za-z][A-Za-z0-9]*", entry["name"])
    assert entry["label"]
    assert entry["helpMarkDown"].startswith(spec.description)
    assert entry["groupName"] == spec.group
    expected_default = generator.ADO_CHECKBOX_DEFAULTS.get(spec.name, "")
    assert entry["defaultValue"] == expected_default
    assert entry["required"] is (spec.name == "action")


def test_input_types(task_inputs: dict[str, dict[str, Any]]) -> None:
    assert task_inputs["azureSubscription"]["type"] == "connectedService:AzureRM"
    for spec in INPUTS:
        entry = task_inputs[spec.name]
        if spec.kind == "choice":
            assert entry["type"] == "pickList"
            assert list(entry["options"]) == list(spec.choices)
        elif spec.kind == "boolean":
            assert entry["type"] == "boolean"
        elif spec.kind == "multiline":
            assert entry["type"] == "multiLine"


def test_checkbox_defaults_match_task_defaults() -> None:
    """A check box that starts checked must describe a task default of true."""
    for name, value in generator.ADO_CHECKBOX_DEFAULTS.items():
        spec = INPUTS_BY_NAME[name]
        assert spec.kind == "boolean"
        assert value == "true"
        assert "default true" in spec.description


def test_groups_cover_inputs(task: dict[str, Any]) -> None:
    names = [group["name"] for group in task["groups"]]
    assert len(names) == len(set(names))
    assert {entry["groupName"] for entry in task["inputs"]} == set(names)


def test_visible_rules_name_real_actions(task_inputs: dict[str, dict[str, Any]]) -> None:
    actions = set(INPUTS_BY_NAME["action"].choices)
    for entry in task_inputs.values():
        rule = entry.get("visibleRule")
        if rule is None:
            continue
        for clause in rule.split("||"):
            field, operator, value = clause.split()
            assert field == "action"
            assert operator in ("=", "!=")
            assert value in actions


def test_drain_visible_for_stop_only(task_inputs: dict[str, dict[str, Any]]) -> None:
    assert task_inputs["drain"]["visibleRule"] == "action = STOP"


def test_run_id_hidden_for_list(task_inputs: dict[str, dict[str, Any]]) -> None:
    assert task_inputs["runId"]["visibleRule"] == "action != LIST"


def test_visible_rules_follow_validation(task_inputs: dict[str, dict[str, Any]]) -> None:
    """An input is visible for exactly the actions that the task accepts it for."""
    all_actions = INPUTS_BY_NAME["action"].choices
    for name, entry in task_inputs.items():
        rule = entry.get("visibleRule")
        accepted = set(INPUT_ACTIONS.get(name, all_actions))
        if rule is None:
            assert accepted >= set(all_actions), name
            continue
        visible = {
            action
            for action in all_actions
            if any(
                (operator == "=" and action == value) or (operator == "!=" and action != value)
                for _field, operator, value in (clause.split() for clause in rule.split("||"))
            )
        }
        assert visible == accepted, name


def test_output_variables(task: dict[str, Any]) -> None:
    names = [entry["name"] for entry in task["outputVariables"]]
    assert names == [output.name for output in generator.OUTPUTS]
    for entry in task["outputVariables"]:
        assert re.fullmatch(r"[A-Za-z][A-Za-z0-9]*", entry["name"])
        assert entry["description"]


def test_extension_contributes_task(task: dict[str, Any]) -> None:
    extension = json.loads(EXTENSION_PATH.read_text(encoding="utf-8"))
    contribution = extension["contributions"][0]
    assert contribution["type"] == "ms.vss-distributed-task.task"
    assert contribution["properties"]["name"] == TASK_DIR.name == task["name"]
    assert {"path": TASK_DIR.name} in extension["files"]
    assert (REPO_ROOT / "azure-devops" / extension["content"]["details"]["path"]).is_file()
