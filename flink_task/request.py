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
from urllib.parse import SplitResult, quote, urlencode, urlsplit

from flink_task import apiversions, schemas
from flink_task.errors import InputError
from flink_task.inputs import (
    API_VERSIONS,
    DEFAULT_API_VERSION,
    DEFAULT_MANAGEMENT_ENDPOINT,
    TARGETS,
    TASK_ACTIONS,
    describe_inputs,
    parse_bool,
    parse_positive_int,
)
from flink_task.redact import secret_values_in_args, secret_values_in_configuration

JOB_NAME_PATTERN = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
DEFAULT_PARALLELISM = "2"
# Flink's upper limit for a job's maximum parallelism (2 to the power of 15).
MAX_PARALLELISM = 32768
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
# Inputs that only one target can use: giving one to the other target is an input error.
HDINSIGHT_ONLY_INPUTS = (*_CLUSTER_INPUTS, "apiVersion", "managementEndpoint")
FLINK_ONLY_INPUTS = (
    "flinkUrl",
    "stateDirectory",
    "flinkCaBundle",
    "flinkToken",
    "flinkUsername",
    "flinkPassword",
    "flinkClientCertificate",
    "flinkClientKey",
)
_LOOPBACK_HOSTS = ("127.0.0.1", "::1", "localhost")


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

    job_name = _require_job_name(job_name)
    _check_action_on_version(action, target)
    _reject_inputs_the_action_cannot_use(action, raw)
    run_id = _read_run_id(raw, target)
    properties = _build_properties(action, job_name, raw, run_id)
    body = {"properties": properties}
    schemas.validate_body(body)
    secrets = _secret_values(properties)
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


def _require_job_name(job_name: str | None) -> str:
    if job_name is None:
        raise InputError(
            "jobName", "missing required input", "Set " + describe_inputs(["jobName"])
        )
    return job_name


def _secret_values(properties: Mapping[str, Any]) -> list[str]:
    """Return the secret-looking values of a body's configuration and arguments."""
    secrets = secret_values_in_configuration(properties.get("flinkConfiguration", {}))
    return secrets + secret_values_in_args(properties.get("args", ""))


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
            continue  # an explicit "false" requests the default behaviour, which is harmless
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
        value = configuration[PARALLELISM_KEY]
        parallelism = parse_positive_int("flinkConfiguration", value, None)
        if parallelism is not None and parallelism > MAX_PARALLELISM:
            raise InputError(
                "parallelism",
                f"invalid value {parallelism} (Flink allows at most {MAX_PARALLELISM})",
                "Use a parallelism the cluster's task slots can run",
            )
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


# --- the Flink target -----------------------------------------------------------------------


def choose_target(raw: Mapping[str, str]) -> str:
    """Return ``flink`` or ``hdinsight`` for the inputs; raise InputError when it is unclear.

    Without ``target``, flinkUrl selects flink and any cluster input (or an Azure DevOps
    service connection) selects hdinsight. Inputs of the other target are rejected by name.
    """
    explicit = raw.get("target")
    if explicit is not None:
        target = explicit.strip().lower()
        if target not in TARGETS:
            raise InputError(
                "target", f"unknown target {explicit!r}", "Use one of " + ", ".join(TARGETS)
            )
    elif "flinkUrl" in raw:
        target = "flink"
    elif any(name in raw for name in (*HDINSIGHT_ONLY_INPUTS, "azureSubscription")):
        target = "hdinsight"
    else:
        raise InputError(
            "target",
            "no target: neither flinkUrl nor an HDInsight on AKS cluster is set",
            "Set " + describe_inputs(["flinkUrl", "stateDirectory"]) + " to run against your "
            "own Flink cluster, or " + describe_inputs(list(_CLUSTER_INPUTS)) + " for HDInsight "
            "on AKS",
        )
    foreign = HDINSIGHT_ONLY_INPUTS if target == "flink" else FLINK_ONLY_INPUTS
    given = [name for name in foreign if name in raw]
    if given:
        raise InputError(
            ", ".join(given),
            f"target {target} cannot use " + ", ".join(given),
            "Remove "
            + ("them" if len(given) > 1 else "it")
            + ", or set target to "
            + ("hdinsight" if target == "flink" else "flink"),
        )
    return target


@dataclass(frozen=True, kw_only=True)
class FlinkTarget:
    """A Flink cluster's REST API, how to reach it, and where the job records live."""

    url: str
    state_directory: str
    ca_bundle: str | None = None
    token: str | None = field(default=None, repr=False)
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    client_certificate: str | None = field(default=None, repr=False)
    client_key: str | None = field(default=None, repr=False)


@dataclass(frozen=True, kw_only=True)
class FlinkRunRequest:
    """One validated run of the Flink target: the action and its runJob-style properties."""

    action: str
    job_name: str | None
    properties: dict[str, Any] | None  # None for LIST
    target: FlinkTarget
    run_id: str | None
    timeout_minutes: int
    dry_run: bool
    secret_values: list[str] = field(default_factory=list, repr=False)


def build_flink_target(raw: Mapping[str, str]) -> FlinkTarget:
    """Check flinkUrl, stateDirectory and the proxy and TLS inputs of the Flink target."""
    url = raw.get("flinkUrl", "").rstrip("/")
    parts = _check_flink_url(url)

    state_directory = raw.get("stateDirectory")
    if not state_directory:
        raise InputError(
            "stateDirectory",
            "missing required input for target flink",
            "Set " + describe_inputs(["stateDirectory"]) + " to a folder that outlives the "
            "pipeline run (a local path, file:// URL or abfs:// URL), because Flink forgets "
            "finished jobs",
        )
    check_storage_location("stateDirectory", state_directory, allow_https=False)

    target = FlinkTarget(
        url=url,
        state_directory=state_directory,
        ca_bundle=raw.get("flinkCaBundle"),
        token=raw.get("flinkToken"),
        username=raw.get("flinkUsername"),
        password=raw.get("flinkPassword"),
        client_certificate=raw.get("flinkClientCertificate"),
        client_key=raw.get("flinkClientKey"),
    )
    _check_flink_credentials(target, parts.scheme, parts.hostname or "")
    return target


def _check_flink_url(url: str) -> SplitResult:
    if not url:
        raise InputError(
            "flinkUrl", "missing required input", "Set " + describe_inputs(["flinkUrl"])
        )
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InputError(
            "flinkUrl",
            f"invalid URL {url!r}",
            "Use the JobManager's REST endpoint, such as https://flink.example.com:8081",
        )
    if parts.username or parts.password or parts.query or parts.fragment:
        raise InputError(
            "flinkUrl",
            "the URL must not contain a user, password, query or fragment",
            "Give proxy credentials in flinkToken, or flinkUsername and flinkPassword",
        )
    return parts


def _check_flink_credentials(target: FlinkTarget, scheme: str, host: str) -> None:
    if target.token and (target.username or target.password):
        raise InputError(
            "flinkToken",
            "flinkToken and flinkUsername/flinkPassword are both set",
            "Use a bearer token or basic authentication, not both",
        )
    if bool(target.username) != bool(target.password):
        missing = "flinkPassword" if target.username else "flinkUsername"
        raise InputError(
            missing,
            "missing required input",
            "Basic authentication needs both a user and password",
        )
    if target.client_key and not target.client_certificate:
        raise InputError(
            "flinkClientCertificate",
            "missing required input",
            "flinkClientKey is set, so give the client certificate as well",
        )
    if scheme == "https":
        return
    tls_inputs = [
        name
        for name, value in (
            ("flinkCaBundle", target.ca_bundle),
            ("flinkClientCertificate", target.client_certificate),
        )
        if value
    ]
    if tls_inputs:
        raise InputError(
            tls_inputs[0], "flinkUrl is http://, so TLS settings cannot apply", "Use https://"
        )
    if (target.token or target.password) and host not in _LOOPBACK_HOSTS:
        raise InputError(
            "flinkUrl",
            "proxy credentials would be sent in clear text over http://",
            "Use an https:// flinkUrl",
        )


def check_storage_location(input_name: str, location: str, *, allow_https: bool) -> None:
    """Raise InputError unless ``location`` is a path, file://, abfs:// (or https:// URL)."""
    parts = urlsplit(location)
    if not parts.scheme or len(parts.scheme) == 1:  # a plain path, or a Windows drive
        return
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise InputError(input_name, f"file URL {location!r} names a host", "Use file:///path")
        return
    if parts.scheme in ("abfs", "abfss"):
        # NOTE: only the public cloud's dfs.core.windows.net; sovereign clouds are rejected.
        container, _, host = parts.netloc.partition("@")
        if not container or not host.endswith(".dfs.core.windows.net") or host.count(".") < 4:
            raise InputError(
                input_name,
                f"invalid ADLS Gen2 URL {location!r}",
                "Use abfs://container@account.dfs.core.windows.net/path",
            )
        return
    if allow_https and parts.scheme == "https" and parts.hostname:
        return
    allowed = "a local path, file://, abfs://" + (" or https://" if allow_https else "")
    raise InputError(input_name, f"unsupported location {location!r}", f"Use {allowed}")


def build_flink_run_request(raw: Mapping[str, str], *, command: str = "run") -> FlinkRunRequest:
    """Validate the inputs of a Flink target run, before any network call."""
    action = _read_action(raw, command)
    job_name = raw.get("jobName")
    if job_name is not None:
        _check_job_name(job_name)
    target = build_flink_target(raw)

    if not parse_bool("wait", raw.get("wait"), True):
        raise InputError(
            "wait",
            "the Flink target carries the action out in this process, so it always waits",
            "Remove wait and bound the run with timeoutMinutes",
        )
    timeout = parse_positive_int("timeoutMinutes", raw.get("timeoutMinutes"), None)
    dry_run = parse_bool("dryRun", raw.get("dryRun"), False)

    if action == "LIST":
        _reject_job_inputs_for_list(raw)
        return FlinkRunRequest(
            action=action,
            job_name=job_name,
            properties=None,
            target=target,
            run_id=None,
            timeout_minutes=timeout or DEFAULT_TIMEOUT_MINUTES,
            dry_run=dry_run,
        )
    job_name = _require_job_name(job_name)

    _reject_inputs_the_action_cannot_use(action, raw)
    if "jobJarDirectory" in raw:
        check_storage_location("jobJarDirectory", raw["jobJarDirectory"], allow_https=True)
    run_id = raw.get("runId") or str(uuid.uuid4())
    properties = _build_properties(action, job_name, raw, run_id)
    schemas.validate_body({"properties": properties})
    secrets = _secret_values(properties)
    jar_query = urlsplit(raw.get("jobJarDirectory", "")).query
    if jar_query:
        secrets.append(jar_query)  # a SAS token of an https:// jar folder
    return FlinkRunRequest(
        action=action,
        job_name=job_name,
        properties=properties,
        target=target,
        run_id=run_id,
        timeout_minutes=timeout or DEFAULT_TIMEOUT_MINUTES,
        dry_run=dry_run,
        secret_values=secrets,
    )
