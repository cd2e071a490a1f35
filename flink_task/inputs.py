"""The table of task inputs, and how they are read from flags and the environment.

Every input is defined once here. Its Azure DevOps name is camelCase (``jobName``);
the GitHub input id is the kebab-case form (``job-name``); the environment variable is
``INPUT_`` plus the upper-cased camelCase name (``INPUT_JOBNAME``), which is what the
Azure DevOps agent sets and what ``action.yml`` maps each GitHub input to; the command
line flag is ``--job-name``. Secrets have no flag, so they never appear in a process list.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from flink_task.errors import InputError

ACTIONS_ALL = (
    "NEW",
    "UPDATE",
    "STATELESS_UPDATE",
    "STOP",
    "START",
    "CANCEL",
    "SAVEPOINT",
    "LIST_SAVEPOINT",
    "DELETE",
    "LAST_STATE_UPDATE",
    "RE_LAUNCH",
)
# LIST is the task's own action: it lists jobs and sends no runJob request.
TASK_ACTIONS = (*ACTIONS_ALL, "LIST")

API_VERSIONS = (
    "2023-06-01-preview",
    "2023-11-01-preview",
    "2024-04-01-preview",
    "2024-05-01-preview",
    "2024-05-01",
)
DEFAULT_API_VERSION = "2024-05-01-preview"
DEFAULT_MANAGEMENT_ENDPOINT = "https://management.azure.com"
# Targets of an action: the HDInsight on AKS job API, or a Flink cluster's REST API directly.
TARGETS = ("hdinsight", "flink")

_TRUE = {"true", "yes", "1", "on"}
_FALSE = {"false", "no", "0", "off"}


@dataclass(frozen=True)
class Input:
    """One task input: its names on every surface, its default and its help text."""

    name: str
    description: str
    default: str = ""
    kind: str = "string"  # string, boolean, integer, multiline or choice
    choices: tuple[str, ...] = ()
    secret: bool = False
    group: str = "job"

    @property
    def github_id(self) -> str:
        return re.sub(r"(?<!^)(?=[A-Z])", "-", self.name).lower()

    @property
    def env_var(self) -> str:
        return "INPUT_" + self.name.upper()

    @property
    def flag(self) -> str | None:
        return None if self.secret else "--" + self.github_id


INPUTS: tuple[Input, ...] = (
    Input(
        "action",
        "Job action to perform, or LIST to list jobs and their status.",
        kind="choice",
        choices=TASK_ACTIONS,
    ),
    Input(
        "jobName",
        "Name of the Flink job: lower-case letters, digits and hyphens, at most 63 characters.",
    ),
    Input(
        "jobJarDirectory",
        "Directory that holds the job jar, for example "
        "abfs://container@account.dfs.core.windows.net/jars.",
    ),
    Input("jarName", "File name of the job jar in jobJarDirectory."),
    Input("entryClass", "Fully qualified main class of the job."),
    Input("args", "Program arguments as one string, split like a POSIX shell would."),
    Input(
        "parallelism",
        "Default parallelism of the job (a positive integer); NEW uses 2 when none is given.",
        kind="integer",
    ),
    Input("savepointDirectory", "Directory where the job's savepoints are written."),
    Input(
        "savepointName",
        "Savepoint to start from (START, UPDATE); the last savepoint when empty.",
    ),
    Input(
        "flinkConfiguration",
        "More Flink configuration: a JSON object of strings, or key=value lines.",
        kind="multiline",
    ),
    Input(
        "runId",
        "Run id sent with the action (API versions 2023-11-01-preview and later); "
        "a fresh id is generated when empty.",
    ),
    Input(
        "drain",
        "STOP only: emit the maximum watermark before the savepoint, "
        "firing all event-time timers.",
        kind="boolean",
    ),
    Input(
        "allowNonRestoredState",
        "START and the updates: skip savepoint state that maps to no operator of the new job.",
        kind="boolean",
    ),
    Input(
        "wait",
        "Wait until the action's result is SUCCESS or FAILED (default true).",
        default="",
        kind="boolean",
        group="run",
    ),
    Input(
        "timeoutMinutes",
        "Minutes to wait for the action to finish (default 30).",
        kind="integer",
        group="run",
    ),
    Input(
        "dryRun",
        "Print the request that would be sent and send nothing.",
        kind="boolean",
        group="run",
    ),
    Input(
        "target",
        "Where the action runs: flink (a Flink cluster's REST API, the default when flinkUrl "
        "is set) or hdinsight (the HDInsight on AKS job API, the default when subscriptionId "
        "and cluster are set).",
        kind="choice",
        choices=TARGETS,
        group="cluster",
    ),
    Input(
        "flinkUrl",
        "Flink target: REST endpoint of the JobManager, an http:// or https:// URL.",
        group="cluster",
    ),
    Input(
        "stateDirectory",
        "Flink target: where job records are kept between runs: a local path, a file:// URL "
        "or abfs://container@account.dfs.core.windows.net/path.",
        group="cluster",
    ),
    Input(
        "flinkCaBundle",
        "Flink target: PEM file of the CA certificates that sign the https flinkUrl "
        "(default: the system trust store).",
        group="cluster",
    ),
    Input("subscriptionId", "Azure subscription id of the cluster.", group="cluster"),
    Input("resourceGroup", "Resource group of the cluster pool.", group="cluster"),
    Input("clusterPool", "Name of the HDInsight on AKS cluster pool.", group="cluster"),
    Input("cluster", "Name of the Flink cluster in the pool.", group="cluster"),
    Input(
        "apiVersion",
        f"Job API version (default {DEFAULT_API_VERSION}).",
        kind="choice",
        choices=API_VERSIONS,
        group="cluster",
    ),
    Input(
        "managementEndpoint",
        f"Azure Resource Manager endpoint (default {DEFAULT_MANAGEMENT_ENDPOINT}).",
        group="cluster",
    ),
    Input(
        "azureSubscription",
        "Azure DevOps only: the Azure Resource Manager service connection to sign in with.",
        group="auth",
    ),
    Input(
        "authType",
        "How to sign in to Azure: auto (the default) picks from what is present.",
        kind="choice",
        choices=(
            "auto",
            "secret",
            "certificate",
            "github-oidc",
            "azure-devops-oidc",
            "managed-identity",
            "azure-cli",
            "default",
        ),
        group="auth",
    ),
    Input(
        "cloud",
        "Azure cloud: AzureCloud (default), AzureUSGovernment, AzureChinaCloud, or custom "
        "with managementEndpoint and authorityHost.",
        kind="choice",
        choices=("AzureCloud", "AzureUSGovernment", "AzureChinaCloud", "custom"),
        group="auth",
    ),
    Input("tenantId", "Microsoft Entra tenant id of the service principal.", group="auth"),
    Input("clientId", "Application (client) id of the service principal.", group="auth"),
    Input(
        "clientSecret",
        "Client secret of the service principal (secret input or environment variable only).",
        secret=True,
        group="auth",
    ),
    Input(
        "clientCertificate",
        "Client certificate of the service principal: a PEM file path or the PEM text, "
        "private key included (secret input or environment variable only).",
        secret=True,
        group="auth",
    ),
    Input(
        "clientCertificatePassword",
        "Password of the client certificate's private key, if it has one.",
        secret=True,
        group="auth",
    ),
    Input(
        "audience",
        "Audience of the OIDC token requested from the pipeline (default api://AzureADTokenExchange).",
        group="auth",
    ),
    Input(
        "flinkToken",
        "Flink target: bearer token for a proxy in front of the Flink REST API "
        "(secret input or environment variable only).",
        secret=True,
        group="auth",
    ),
    Input(
        "flinkUsername",
        "Flink target: user name for basic authentication at a proxy in front of Flink.",
        group="auth",
    ),
    Input(
        "flinkPassword",
        "Flink target: password for basic authentication (secret input or environment "
        "variable only).",
        secret=True,
        group="auth",
    ),
    Input(
        "flinkClientCertificate",
        "Flink target: client certificate for mutual TLS, a PEM file path or the PEM text, "
        "with its unencrypted private key unless flinkClientKey is given.",
        secret=True,
        group="auth",
    ),
    Input(
        "flinkClientKey",
        "Flink target: unencrypted private key of flinkClientCertificate, a PEM file path or "
        "the PEM text.",
        secret=True,
        group="auth",
    ),
    Input(
        "authorityHost",
        "Microsoft Entra authority, for example https://login.microsoftonline.com.",
        group="auth",
    ),
)

INPUTS_BY_NAME: dict[str, Input] = {spec.name: spec for spec in INPUTS}

# Variables of azure-identity's EnvironmentCredential, read when the inputs are empty.
AZURE_ENV_FALLBACKS = {
    "tenantId": "AZURE_TENANT_ID",
    "clientId": "AZURE_CLIENT_ID",
    "clientSecret": "AZURE_CLIENT_SECRET",
    "authorityHost": "AZURE_AUTHORITY_HOST",
    "clientCertificate": "AZURE_CLIENT_CERTIFICATE_PATH",
    "clientCertificatePassword": "AZURE_CLIENT_CERTIFICATE_PASSWORD",
}


def add_input_flags(parser: argparse.ArgumentParser) -> None:
    """Add one flag per non-secret input; every flag defaults to None (not given)."""
    for group_name in ("job", "run", "cluster", "auth"):
        group = parser.add_argument_group(f"{group_name} inputs")
        for spec in INPUTS:
            if spec.group != group_name or spec.flag is None:
                continue
            help_text = f"{spec.description} Environment variable: {spec.env_var}."
            if spec.kind == "boolean":
                group.add_argument(
                    spec.flag,
                    dest=spec.name,
                    nargs="?",
                    const="true",
                    default=None,
                    metavar="true|false",
                    help=help_text,
                )
            else:
                group.add_argument(spec.flag, dest=spec.name, default=None, help=help_text)


def collect_raw_inputs(
    flags: argparse.Namespace | None, environ: Mapping[str, str]
) -> dict[str, str]:
    """Merge flags over environment variables; empty values count as not given."""
    raw: dict[str, str] = {}
    for spec in INPUTS:
        value = getattr(flags, spec.name, None) if flags is not None else None
        if value is None:
            value = environ.get(spec.env_var, "")
        if not value and spec.name in AZURE_ENV_FALLBACKS:
            value = environ.get(AZURE_ENV_FALLBACKS[spec.name], "")
        value = value if spec.kind == "multiline" else value.strip()
        if value.strip():
            raw[spec.name] = value
    return raw


def parse_bool(name: str, value: str | None, default: bool) -> bool:
    if value is None or value == "":
        return default
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise InputError(name, f"invalid boolean {value!r}", "Use true or false")


def parse_positive_int(name: str, value: str | None, default: int | None) -> int | None:
    if value is None or value == "":
        return default
    text = value.strip()
    if not re.fullmatch(r"[0-9]+", text) or int(text) == 0:
        raise InputError(
            name, f"invalid value {value!r}", "Use a positive whole number, for example 2"
        )
    return int(text)


def describe_inputs(names: Sequence[str]) -> str:
    """Describe inputs for an error message: the name and where it can be set."""
    parts = []
    for name in names:
        spec = INPUTS_BY_NAME[name]
        where = f"{spec.flag} or {spec.env_var}" if spec.flag else spec.env_var
        parts.append(f"{name} ({where})")
    return ", ".join(parts)
