"""JSON Schemas of the runJob request body, one per action, with shared definitions."""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError
from referencing import Registry, Resource

from flink_task.errors import InputError
from flink_task.inputs import describe_inputs

_BASE_URI = "https://flink-task.invalid/schemas/"

# The input that sets each body field, so a schema error can name what to change.
_FIELD_INPUTS = {
    "jobName": "jobName",
    "action": "action",
    "runId": "runId",
    "jobJarDirectory": "jobJarDirectory",
    "jarName": "jarName",
    "entryClass": "entryClass",
    "args": "args",
    "savePointName": "savepointName",
    "flinkConfiguration": "flinkConfiguration",
}
_CONFIGURATION_INPUTS = {
    "parallelism": "parallelism",
    "savepoint.directory": "savepointDirectory",
    "drain": "drain",
    "execution.savepoint.ignore-unclaimed-state": "allowNonRestoredState",
}


def load_schema(name: str) -> dict[str, Any]:
    """Load one schema file shipped in this package (``NEW``, ``definitions``, ...)."""
    text = resources.files(__package__).joinpath(f"{name}.json").read_text(encoding="utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


@cache
def _registry() -> Registry:
    definitions = load_schema("definitions")
    return Registry().with_resource(
        _BASE_URI + "definitions.json", Resource.from_contents(definitions)
    )


@cache
def validator_for(action: str) -> Draft202012Validator:
    return Draft202012Validator(load_schema(action), registry=_registry())


def validate_body(body: dict[str, Any]) -> None:
    """Validate a runJob body against its action's schema; raise InputError on the first error."""
    action = body.get("properties", {}).get("action")
    validator = validator_for(str(action))
    errors = sorted(validator.iter_errors(body), key=lambda e: list(e.absolute_path))
    if errors:
        raise _input_error(errors[0])


def _input_error(error: ValidationError) -> InputError:
    path = [str(part) for part in error.absolute_path]
    json_path = "$." + ".".join(path) if path else "$"
    input_name = "request"
    if len(path) >= 2 and path[0] == "properties":
        input_name = _FIELD_INPUTS.get(path[1], path[1])
        if path[1] == "flinkConfiguration" and len(path) >= 3:
            input_name = _CONFIGURATION_INPUTS.get(path[2], "flinkConfiguration")
    if error.validator == "additionalProperties" and len(path) <= 2:
        extra = _unexpected_keys(error)
        return InputError(
            _FIELD_INPUTS.get(extra, extra) if len(path) == 1 else input_name,
            f"{json_path} does not allow {extra!r}",
            "Remove it: this action cannot use it",
        )
    if error.validator == "required":
        missing = _missing_key(error)
        action = _body_action(error)
        if len(path) == 1 and missing in _FIELD_INPUTS:
            name = _FIELD_INPUTS[missing]
            return InputError(
                name,
                f"missing required input for {action}",
                "Set " + describe_inputs([name]),
            )
        return InputError(input_name, f"{json_path} is missing {missing!r}", "Add it")
    description = error.schema.get("description") if isinstance(error.schema, dict) else None
    if description:
        return InputError(
            input_name,
            f"invalid value {error.instance!r} at {json_path}",
            f"Expected: {description}",
        )
    return InputError(
        input_name, f"invalid value {error.instance!r} at {json_path}: {error.message}"
    )


def _unexpected_keys(error: ValidationError) -> str:
    allowed = set(error.schema.get("properties", {}))
    instance = error.instance if isinstance(error.instance, dict) else {}
    extras = sorted(key for key in instance if key not in allowed)
    return ", ".join(extras)


def _missing_key(error: ValidationError) -> str:
    required = error.validator_value if isinstance(error.validator_value, list) else []
    instance = error.instance if isinstance(error.instance, dict) else {}
    missing = [key for key in required if key not in instance]
    return missing[0] if missing else "?"


def _body_action(error: ValidationError) -> str:
    instance = error.instance if isinstance(error.instance, dict) else {}
    return str(instance.get("action", "this action"))
