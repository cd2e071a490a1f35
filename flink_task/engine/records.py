"""Job records: field names, API view, request validation and the errors of the engine."""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

from flink_task.engine.store import check_job_name

ACTIONS = (
    "NEW",
    "SAVEPOINT",
    "LIST_SAVEPOINT",
    "STOP",
    "START",
    "UPDATE",
    "STATELESS_UPDATE",
    "LAST_STATE_UPDATE",
    "RE_LAUNCH",
    "CANCEL",
    "DELETE",
)

# Fields of the ClusterJob properties of the job API. Everything else in a record is internal.
API_FIELDS = (
    "jobType",
    "jobName",
    "jobId",
    "status",
    "actionResult",
    "jobOutput",
    "lastSavePoint",
    "runId",
    "action",
    "jobJarDirectory",
    "jarName",
    "entryClass",
    "args",
    "flinkConfiguration",
    "savePointName",
)

# Fields that describe what to deploy: the jar, its entry class, arguments and configuration.
SPEC_FIELDS = ("jobJarDirectory", "jarName", "entryClass", "args", "flinkConfiguration")

# Actions that take a new jar location, entry class, arguments or configuration.
DEPLOYING_ACTIONS = frozenset({"NEW", "START", "UPDATE", "STATELESS_UPDATE", "LAST_STATE_UPDATE"})

RUNNING = "RUNNING"
STOPPED = "STOPPED"
CANCELLED = "CANCELLED"
FAILED = "FAILED"
IN_PROGRESS = "IN_PROGRESS"
SUCCESS = "SUCCESS"

# flinkConfiguration keys that the job API itself reads. They are not sent to Flink.
PARALLELISM_KEY = "parallelism"
SAVEPOINT_DIRECTORY_KEY = "savepoint.directory"
API_CONFIGURATION_KEYS = frozenset({PARALLELISM_KEY, SAVEPOINT_DIRECTORY_KEY})
DEFAULT_PARALLELISM = 2
# Flink keys (old and 1.20+ names) whose "true" means allowNonRestoredState on restore.
IGNORE_UNCLAIMED_STATE_KEYS = (
    "execution.savepoint.ignore-unclaimed-state",
    "execution.state-recovery.ignore-unclaimed-state",
)
# flinkConfiguration key read by STOP and UPDATE: "true" drains the job (emits MAX_WATERMARK)
# before the savepoint. It is also passed to Flink, which ignores unknown keys.
DRAIN_KEY = "drain"


class EngineError(Exception):
    """A request the engine rejects before doing anything; ``http_status`` maps it to HTTP."""

    http_status = 500
    code = "InternalError"


class InvalidRequestError(EngineError):
    """The request is malformed: unknown action, invalid name, missing or invalid field."""

    http_status = 400
    code = "InvalidRequest"


class JobNotFoundError(EngineError):
    """The action needs an existing job record, and there is none with this name."""

    http_status = 404
    code = "JobNotFound"


class ActionConflictError(EngineError):
    """The job's state does not allow the action now (another action runs, or a precondition)."""

    http_status = 409
    code = "Conflict"


class ActionFailure(Exception):
    """An action that cannot complete; the message becomes the record's jobOutput."""


def api_properties(record: Mapping[str, Any]) -> dict[str, Any]:
    """Return only the ClusterJob API fields of a record, leaving out those without a value."""
    return {key: record[key] for key in API_FIELDS if record.get(key) is not None}


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def validate_request(properties: Mapping[str, Any]) -> dict[str, Any]:
    """Return the request fields that were given, checked; raise InvalidRequestError."""
    name = properties.get("jobName")
    try:
        check_job_name(str(name or ""))
    except ValueError as exc:
        raise InvalidRequestError(f"jobName: {exc}") from None

    action = str(properties.get("action") or "").upper()
    if action not in ACTIONS:
        raise InvalidRequestError(
            f"action: {properties.get('action')!r} is not a known action; "
            f"use one of {', '.join(ACTIONS)}"
        )
    request: dict[str, Any] = {"jobName": name, "action": action}

    for key in ("jobJarDirectory", "jarName", "entryClass", "args", "savePointName", "runId"):
        value = properties.get(key)
        if value is None or value == "":
            continue
        if not isinstance(value, str):
            raise InvalidRequestError(f"{key}: expected a string, got {type(value).__name__}")
        request[key] = value

    if "args" in request:
        program_arguments(request["args"])
    jar_name = request.get("jarName", "")
    if "/" in jar_name or "\\" in jar_name:
        raise InvalidRequestError(
            f"jarName: {jar_name!r} contains a path separator; "
            "put the folder in jobJarDirectory and only the file name in jarName"
        )

    configuration = properties.get("flinkConfiguration")
    if configuration is not None:
        request["flinkConfiguration"] = normalise_configuration(configuration)
    return request


def program_arguments(args: str | None) -> list[str]:
    """Split ``args`` like a POSIX shell; raise InvalidRequestError for unbalanced quotes."""
    if not args:
        return []
    try:
        return shlex.split(args)
    except ValueError as exc:
        raise InvalidRequestError(f"args: cannot split {args!r} into arguments: {exc}") from None


def normalise_configuration(configuration: Any) -> dict[str, str]:
    """Return flinkConfiguration as a string map; raise InvalidRequestError when invalid."""
    if not isinstance(configuration, Mapping):
        raise InvalidRequestError("flinkConfiguration: expected an object of string values")
    result: dict[str, str] = {}
    for key, value in configuration.items():
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, (str, int, float)):
            text = str(value)
        else:
            raise InvalidRequestError(
                f"flinkConfiguration.{key}: expected a string, got {type(value).__name__}"
            )
        result[str(key)] = text
    parallelism_of(result)
    return result


def parallelism_of(configuration: Mapping[str, str] | None) -> int:
    """Return the parallelism of a flinkConfiguration (default 2)."""
    text = (configuration or {}).get(PARALLELISM_KEY)
    if text is None or str(text).strip() == "":
        return DEFAULT_PARALLELISM
    try:
        value = int(str(text).strip())
    except ValueError:
        value = 0
    if value < 1:
        raise InvalidRequestError(
            f"flinkConfiguration.parallelism: {text!r} is not a positive whole number"
        )
    return value


def flink_run_configuration(configuration: Mapping[str, str] | None) -> dict[str, str]:
    """Return the keys of a flinkConfiguration that go to Flink's run body."""
    return {
        key: value
        for key, value in (configuration or {}).items()
        if key not in API_CONFIGURATION_KEYS
    }


def allows_non_restored_state(configuration: Mapping[str, str] | None) -> bool:
    values = configuration or {}
    return any(
        values.get(key, "").strip().lower() == "true" for key in IGNORE_UNCLAIMED_STATE_KEYS
    )


def drain_requested(configuration: Mapping[str, str] | None) -> bool:
    return (configuration or {}).get(DRAIN_KEY, "").strip().lower() == "true"


def spec_of(record: Mapping[str, Any]) -> dict[str, Any]:
    """Return the deployment fields of a record (jar, entry class, args, configuration)."""
    return {key: record.get(key) for key in SPEC_FIELDS}
