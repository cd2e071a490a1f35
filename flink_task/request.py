"""Turn task inputs into a validated ``runJob`` request.

Everything here runs before any credential or network call: a problem found here is an
input error (exit code 2) that names the input, the bad value and the fix.
"""

from __future__ import annotations

import json
import re
import shlex
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlencode

from flink_task import apiversions, schemas
from flink_task.errors import InputError
from flink_task.inputs import (
    API_VERSIONS,
    DEFAULT_API_VERSION,
    DEFAULT_MANAGEMENT_ENDPOINT,
    TASK_ACTIONS,
    describe_inputs,
    parse_bool,
    parse_positive_int,
)
from flink_task.redact import secret_values_in_args, secret_values_in_configuration

JOB_NAME_PATTERN = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
DEFAULT_PARALLELISM = "2"
DEFAULT_TIMEOUT_MINUTES = 30

# Keys of flinkConfiguration that the task's own inputs set.
PARALLELISM_KEY = "parallelism"
SAVEPOINT_DIRECTORY_KEY = "savepoint.directory"
IGNORE_UNCLAIMED_STATE_KEY = "execution.savepoint.ignore-unclaimed-state"
# The job API has no field for draining, so STOP carries it as a configuration key.
DRAIN_KEY = "drain"

_JAR_ACTIONS = ("NEW", "UPDATE", "STATELESS_UPDATE", "LAST_STATE_UPDATE", "START")

# Actions that can use each job input. Giving an input to any other action is an error.
INPUT_ACTIONS: dict[str, tuple[str, ...]] = {
    "jobJarDirectory": _JAR_ACTIONS,
    "jarName": _JAR_ACTIONS,
    "entryClass": _JAR_ACTIONS,
    "args": _JAR_ACTIONS,
    "parallelism": _JAR_ACTIONS,
    "flinkConfiguration": _JAR_ACTIONS,
    "savepointDirectory": (*_JAR_ACTIONS, "STOP", "SAVEPOINT"),
    "savepointName": ("START", "UPDATE"),
    "drain": ("STOP",),
    "allowNonRestoredState": ("START", "UPDATE", "STATELESS_UPDATE", "LAST_STATE_UPDATE"),
    "runId": apiversions.BASE_ACTIONS + apiversions.NEWER_ACTIONS,
}

_CLUSTER_INPUTS = ("subscriptionId", "resourceGroup", "clusterPool", "cluster")


@dataclass(frozen=True, kw_only=True)
class ClusterTarget:
    """Location of the job API of one HDInsight on AKS Flink cluster."""

    subscription_id: str
    resource_group: str
    cluster_pool: str
    cluster: str
    api_version: str
    management_endpoint: str

    @property
    def cluster_path(self) -> str:
        return (
            f"/subscriptions/{self.subscription_id}/resourceGroups/{self.resource_group}"
            f"/providers/Microsoft.HDInsight/clusterpools/{self.cluster_pool}"
            f"/clusters/{self.cluster}"
        )

    @property
    def features(self) -> apiversions.ApiFeatures:
        return apiversions.features(self.api_version)

    def url(self, operation: str, **query: str) -> str:
        """Return the absolute URL of a job API operation (``runJob`` or ``jobs``)."""
        path = quote(f"{self.cluster_path}/{operation}")
        params = {"api-version": self.api_version, **query}
        return f"{self.management_endpoint}{path}?{urlencode(params, quote_via=quote)}"


@dataclass(frozen=True, kw_only=True)
class RunRequest:
    """One validated run of the task: the action, its body and how to wait for it."""

    action: str
    job_name: str | None
    body: dict[str, Any] | None  # None for LIST, which sends no runJob request
    target: ClusterTarget
    run_id: str | None
    wait: bool
    timeout_minutes: int
    dry_run: bool
    secret_values: list[str] = field(default_factory=list, repr=False)


def parse_flink_configuration(text: str) -> dict[str, str]:
    """Parse the flinkConfiguration input: a JSON object, or ``key=value`` lines.

    JSON numbers and booleans become strings, because the API takes only strings.
    Blank lines and lines starting with ``#`` are skipped in the ``key=value`` form.
    """
    stripped = text.strip()
    if stripped.startswith("{"):
        return _parse_configuration_json(stripped)
    if stripped.startswith("["):
        raise InputError(
            "flinkConfiguration",
            "a JSON array is not a configuration",
            'Use a JSON object such as {"parallelism": "4"} or key=value lines',
        )
    configuration: dict[str, str] = {}
    for number, line in enumerate(stripped.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep or not key.strip():
            raise InputError(
                "flinkConfiguration",
                f"line {number} {line!r} is not key=value",
                'Write one key=value per line, or a JSON object such as {"parallelism": "4"}',
            )
        configuration[key.strip()] = value.strip()
    return configuration


def _parse_configuration_json(text: str) -> dict[str, str]:
    try:
        parsed = json.loads(text)
    except json.JSONDecodeError as error:
        raise InputError(
            "flinkConfiguration",
            f"invalid JSON ({error.msg} at line {error.lineno} column {error.colno})",
            'Use a JSON object of strings such as {"parallelism": "4"}, or key=value lines',
        ) from None
    if not isinstance(parsed, dict):
        raise InputError("flinkConfiguration", "JSON value is not an object", "Use a JSON object")
    configuration: dict[str, str] = {}
    for key, value in parsed.items():
        if isinstance(value, bool):
            configuration[key] = "true" if value else "false"
        elif isinstance(value, (int, float, str)):
            configuration[key] = str(value)
        else:
            raise InputError(
                "flinkConfiguration",
                f"key {key!r} has a {type(value).__name__} value",
                "Give every key a string, number or boolean value",
            )
    return configuration


def build_target(
    raw: Mapping[str, str], *, subscription_fallback: str | None = None
) -> ClusterTarget:
    """Build the cluster target, or raise InputError listing every missing input."""
    values = dict(raw)
    if subscription_fallback and not values.get("subscriptionId"):
        values["subscriptionId"] = subscription_fallback
    missing = [name for name in _CLUSTER_INPUTS if not values.get(name)]
    if missing:
        raise InputError(
            ", ".join(missing),
            "missing required input" + ("s" if len(missing) > 1 else ""),
            "Set " + describe_inputs(missing),
        )
    for name in _CLUSTER_INPUTS:
        if "/" in values[name] or "?" in values[name] or "#" in values[name]:
            raise InputError(name, f"invalid value {values[name]!r}", "Give the bare name or id")
    api_version = values.get("apiVersion", DEFAULT_API_VERSION)
    if api_version not in API_VERSIONS:
        raise InputError(
            "apiVersion",
            f"unknown API version {api_version!r}",
            "Use one of " + ", ".join(API_VERSIONS),
        )
    endpoint = values.get("managementEndpoint", DEFAULT_MANAGEMENT_ENDPOINT).rstrip("/")
    if not endpoint.startswith("https://"):
        raise InputError(
            "managementEndpoint",
            f"invalid endpoint {endpoint!r}",
            "Use an https:// URL such as https://management.azure.com",
        )
    return ClusterTarget(
        subscription_id=values["subscriptionId"],
        resource_group=values["resourceGroup"],
        cluster_pool=values["clusterPool"],
        cluster=values["cluster"],
        api_version=api_version,
        management_endpoint=endpoint,
    )


def build_run_request(
    raw: Mapping[str, str], *, command: str = "run", subscription_fallback: str | None = None
) -> RunRequest:
    """Validate the inputs and build the request of one run."""
    action = _read_action(raw, command)
    job_name = raw.get("jobName")
    if job_name is not None:
        _check_job_name(job_name)
    target = build_target(raw, subscription_fallback=subscription_fallback)
    wait = parse_bool("wait", raw.get("wait"), True)
    timeout = parse_positive_int("timeoutMinutes", raw.get("timeoutMinutes"), None)
    dry_run = parse_bool("dryRun", raw.get("dryRun"), False)
    if action == "LIST":
        _reject_job_inputs_for_list(raw)
        return RunRequest(
            action=action,
            job_name=job_name,
            body=None,
            run_id=None,
            target=target,
            wait=wait,
            timeout_minutes=timeout or DEFAULT_TIMEOUT_MINUTES,
            dry_run=dry_run,
        )

    if job_name is None:
        raise InputError(
            "jobName", "missing required input", "Set " + describe_inputs(["jobName"])
        )
    _check_action_on_version(action, target)
    _reject_inputs_the_action_cannot_use(action, raw)
    run_id = _read_run_id(raw, target)
    properties = _build_properties(action, job_name, raw, run_id)
    body = {"properties": properties}
    schemas.validate_body(body)
    configuration = properties.get("flinkConfiguration", {})
    secrets = secret_values_in_configuration(configuration)
    secrets += secret_values_in_args(properties.get("args", ""))
    return RunRequest(
        action=action,
        job_name=job_name,
        body=body,
        run_id=run_id,
        target=target,
        wait=wait,
        timeout_minutes=timeout or DEFAULT_TIMEOUT_MINUTES,
        dry_run=dry_run,
        secret_values=secrets,
    )


def _read_action(raw: Mapping[str, str], command: str) -> str:
    if command == "jobs":
        return "LIST"
    action = raw.get("action")
    if action is None:
        raise InputError(
            "action",
            "missing required input",
            "Set " + describe_inputs(["action"]) + " to one of " + ", ".join(TASK_ACTIONS),
        )
    normalised = action.strip().upper().replace("-", "_")
    if normalised not in TASK_ACTIONS:
        raise InputError(
            "action", f"unknown action {action!r}", "Use one of " + ", ".join(TASK_ACTIONS)
        )
    return normalised


def _check_job_name(job_name: str) -> None:
    if JOB_NAME_PATTERN.fullmatch(job_name):
        return
    fix = (
        "Use lower-case letters, digits and hyphens, starting and ending with a letter "
        "or digit, at most 63 characters"
    )
    if job_name.lower() != job_name and JOB_NAME_PATTERN.fullmatch(job_name.lower()):
        fix = f"Job names are lower case: use {job_name.lower()!r}"
    raise InputError("jobName", f"invalid job name {job_name!r}", fix)


def _check_action_on_version(action: str, target: ClusterTarget) -> None:
    if action in target.features.actions:
        return
    raise InputError(
        "action",
        f"{action} is not available in API version {target.api_version}",
        "Set apiVersion to one of " + ", ".join(apiversions.versions_with_newer_actions()),
    )


def _reject_inputs_the_action_cannot_use(action: str, raw: Mapping[str, str]) -> None:
    for name, actions in INPUT_ACTIONS.items():
        if name not in raw or action in actions:
            continue
        if name in ("drain", "allowNonRestoredState") and raw[name].strip().lower() == "false":
            continue  # an explicit "false" asks for the default behaviour, which is harmless
        raise InputError(
            name,
            f"{action} cannot use {name} (value {raw[name]!r})",
            f"Remove it; {name} applies to " + ", ".join(actions),
        )


def _reject_job_inputs_for_list(raw: Mapping[str, str]) -> None:
    for name in INPUT_ACTIONS:
        if name in raw:
            raise InputError(name, f"LIST cannot use {name} (value {raw[name]!r})", "Remove it")


def _read_run_id(raw: Mapping[str, str], target: ClusterTarget) -> str | None:
    run_id = raw.get("runId")
    if not target.features.has_run_id:
        if run_id is not None:
            raise InputError(
                "runId",
                f"API version {target.api_version} has no runId (value {run_id!r})",
                "Remove runId, or set apiVersion to one of "
                + ", ".join(apiversions.versions_with_newer_actions()),
            )
        return None
    return run_id or str(uuid.uuid4())


def _build_properties(
    action: str, job_name: str, raw: Mapping[str, str], run_id: str | None
) -> dict[str, Any]:
    properties: dict[str, Any] = {"jobType": "FlinkJob", "jobName": job_name, "action": action}
    if run_id is not None:
        properties["runId"] = run_id
    for input_name, field_name in (
        ("jobJarDirectory", "jobJarDirectory"),
        ("jarName", "jarName"),
        ("entryClass", "entryClass"),
        ("savepointName", "savePointName"),
    ):
        if input_name in raw:
            properties[field_name] = raw[input_name]
    if "args" in raw:
        _check_args(raw["args"])
        properties["args"] = raw["args"]
    configuration = _build_configuration(action, raw)
    if configuration:
        properties["flinkConfiguration"] = configuration
    return properties


def _check_args(args: str) -> None:
    try:
        shlex.split(args)
    except ValueError as error:
        raise InputError(
            "args",
            f"cannot split {args!r} into arguments ({error})",
            "Close every quote, or escape a literal quote with a backslash",
        ) from None


def _build_configuration(action: str, raw: Mapping[str, str]) -> dict[str, str]:
    configuration: dict[str, str] = {}
    if "flinkConfiguration" in raw:
        configuration.update(parse_flink_configuration(raw["flinkConfiguration"]))
    _merge_input_into_configuration(
        configuration,
        "parallelism",
        PARALLELISM_KEY,
        _text(parse_positive_int("parallelism", raw.get("parallelism"), None)),
    )
    if PARALLELISM_KEY in configuration:
        parse_positive_int("flinkConfiguration", configuration[PARALLELISM_KEY], None)
    elif action == "NEW":
        configuration[PARALLELISM_KEY] = DEFAULT_PARALLELISM
    _merge_input_into_configuration(
        configuration, "savepointDirectory", SAVEPOINT_DIRECTORY_KEY, raw.get("savepointDirectory")
    )
    if parse_bool("drain", raw.get("drain"), False):
        configuration[DRAIN_KEY] = "true"
    if parse_bool("allowNonRestoredState", raw.get("allowNonRestoredState"), False):
        _merge_input_into_configuration(
            configuration, "allowNonRestoredState", IGNORE_UNCLAIMED_STATE_KEY, "true"
        )
    return configuration


def _merge_input_into_configuration(
    configuration: dict[str, str], input_name: str, key: str, value: str | None
) -> None:
    if value is None:
        return
    existing = configuration.get(key)
    if existing is not None and existing != value:
        raise InputError(
            input_name,
            f"value {value!r} conflicts with flinkConfiguration {key}={existing!r}",
            f"Set {key} in one place only",
        )
    configuration[key] = value


def _text(value: int | None) -> str | None:
    return None if value is None else str(value)
