"""Validation of `runJob` request bodies against the schema of each API version."""

from __future__ import annotations

import json
import re
from typing import Any

from flink_task.apiversions import ApiFeatures
from flink_task.emulator.errors import ApiError, invalid_content

# Lower-case letters, digits and hyphens, starting and ending with a letter or digit. A job
# name is also a file and folder name in the job store, so nothing else may pass.
JOB_NAME_PATTERN = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")

# Writable string properties of FlinkJobProperties, besides jobType, jobName, action and runId.
_OPTIONAL_STRINGS = ("jobJarDirectory", "jarName", "entryClass", "args", "savePointName")

# Read-only properties. Like Azure Resource Manager, the emulator ignores them in a request.
_READ_ONLY = ("jobId", "status", "jobOutput", "actionResult", "lastSavePoint")

# Read-only top-level ClusterJob properties, also ignored in a request.
_READ_ONLY_TOP_LEVEL = ("id", "name", "type", "systemData")

MAX_RUN_ID_LENGTH = 128
_CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f]")


def parse_json_body(raw: bytes) -> Any:
    """Decode a request body as JSON, raising ApiError 400 when it is not."""
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ApiError(
            400,
            "InvalidRequestContent",
            f"The request body is not valid JSON: {error}. Send a ClusterJob object.",
        ) from None


def validate_run_job_body(body: Any, version: ApiFeatures) -> dict[str, Any]:
    """Check a `runJob` body for `version` and return its writable properties.

    Raises ApiError 400 naming the JSON path of the first invalid field. Read-only fields are
    dropped. Unknown fields are rejected, so that a misspelt property cannot go unnoticed.
    """
    if not isinstance(body, dict):
        raise invalid_content("The request body must be a ClusterJob JSON object.", "$")
    for key in body:
        if key != "properties" and key not in _READ_ONLY_TOP_LEVEL:
            raise invalid_content(f"Unknown ClusterJob property '{key}'.", key)
    properties = body.get("properties")
    if not isinstance(properties, dict):
        raise invalid_content(
            "The ClusterJob must have a 'properties' object with jobType FlinkJob.",
            "properties",
        )
    return _validate_properties(properties, version)


def _validate_properties(properties: dict[str, Any], version: ApiFeatures) -> dict[str, Any]:
    _check_known_keys(properties, version)
    _check_job_type(properties.get("jobType"))
    _check_action(properties.get("action"), version)
    _check_job_name(properties.get("jobName"))
    if "runId" in properties:
        _check_run_id(properties["runId"])
    for key in _OPTIONAL_STRINGS:
        if key in properties and not isinstance(properties[key], str):
            raise invalid_content(f"'{key}' must be a string.", f"properties.{key}")
    if "flinkConfiguration" in properties:
        _check_flink_configuration(properties["flinkConfiguration"])
    return {key: value for key, value in properties.items() if key not in _READ_ONLY}


def _check_known_keys(properties: dict[str, Any], version: ApiFeatures) -> None:
    known = {"jobType", "jobName", "action", "flinkConfiguration", *_OPTIONAL_STRINGS}
    if version.has_run_id:
        known.add("runId")
    for key in properties:
        if key in known or key in _READ_ONLY:
            continue
        if key == "runId":
            raise invalid_content(
                f"'runId' is not part of api-version {version.version}. Use api-version "
                "2023-11-01-preview or later, or leave runId out.",
                "properties.runId",
            )
        raise invalid_content(f"Unknown FlinkJob property '{key}'.", f"properties.{key}")


def _check_job_type(job_type: Any) -> None:
    if job_type != "FlinkJob":
        raise invalid_content(
            f"'jobType' must be 'FlinkJob', got {json.dumps(job_type)}.", "properties.jobType"
        )


def _check_action(action: Any, version: ApiFeatures) -> None:
    if action is None:
        raise invalid_content("'action' is required.", "properties.action")
    if action not in version.actions:
        raise invalid_content(
            f"'action' {json.dumps(action)} is not an action of api-version {version.version}. "
            f"Allowed values: {', '.join(version.actions)}.",
            "properties.action",
        )


def _check_job_name(job_name: Any) -> None:
    if job_name is None:
        raise invalid_content("'jobName' is required.", "properties.jobName")
    if not isinstance(job_name, str) or not JOB_NAME_PATTERN.fullmatch(job_name):
        raise invalid_content(
            f"'jobName' {json.dumps(job_name)} is invalid. Use 1 to 63 lower-case letters, "
            "digits and hyphens, starting and ending with a letter or digit.",
            "properties.jobName",
        )


def _check_run_id(run_id: Any) -> None:
    if (
        not isinstance(run_id, str)
        or not run_id
        or len(run_id) > MAX_RUN_ID_LENGTH
        or _CONTROL_CHARACTERS.search(run_id)
    ):
        raise invalid_content(
            f"'runId' must be a string of 1 to {MAX_RUN_ID_LENGTH} printable characters.",
            "properties.runId",
        )


def _check_flink_configuration(configuration: Any) -> None:
    target = "properties.flinkConfiguration"
    if not isinstance(configuration, dict):
        raise invalid_content("'flinkConfiguration' must be an object of strings.", target)
    for key, value in configuration.items():
        if not isinstance(value, str):
            raise invalid_content(
                f"flinkConfiguration value of '{key}' must be a string, got "
                f'{json.dumps(value)}. Quote it, for example "{value}".',
                f"{target}.{key}",
            )
