"""Find secret-looking values in Flink configuration and program arguments.

Storage account keys, passwords and tokens are often passed to a job through its
configuration (``fs.azure.account.key.<account>.dfs.core.windows.net``) or its
arguments (``--db-password ...``). Their values are masked with the pipeline and shown
as ``***`` wherever the task prints a request or a job record.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from typing import Any

REDACTED = "***"

# A key is secret-looking when one of its dot-, dash- or underscore-separated words
# matches, or when it starts with the Azure storage account key prefix.
_SECRET_WORDS = re.compile(
    r"(^|[._-])(secret|secrets|password|passwd|pwd|token|credential|credentials|"
    r"secret-key|access-key|accesskey|secretkey|sas|connection-string|connectionstring|"
    r"private-key|privatekey|api-key|apikey)($|[._-])",
    re.IGNORECASE,
)
_ACCOUNT_KEY_PREFIXES = ("fs.azure.account.key.", "fs.azure.sas.", "fs.s3a.secret.key")


def is_secret_key(key: str) -> bool:
    """Return True for configuration keys and argument names whose values are secrets."""
    lowered = key.lower().lstrip("-")
    if lowered.startswith(_ACCOUNT_KEY_PREFIXES):
        return True
    return bool(_SECRET_WORDS.search(lowered))


def secret_values_in_configuration(configuration: Mapping[str, str]) -> list[str]:
    return [value for key, value in configuration.items() if value and is_secret_key(key)]


def secret_values_in_args(args: str) -> list[str]:
    """Return the values of secret-looking options (``--password x``, ``--token=x``)."""
    try:
        words = shlex.split(args)
    except ValueError:
        return []
    values = []
    for index, word in enumerate(words):
        if not word.startswith("-"):
            continue
        name, sep, inline_value = word.partition("=")
        if not is_secret_key(name):
            continue
        if sep:
            values.append(inline_value)
        elif index + 1 < len(words) and not words[index + 1].startswith("--"):
            values.append(words[index + 1])
    return [value for value in values if value]


def redact_args(args: str) -> str:
    redacted = args
    for value in secret_values_in_args(args):
        redacted = redacted.replace(value, REDACTED)
    return redacted


def redact_properties(properties: Mapping[str, Any]) -> dict[str, Any]:
    """Return a copy of ClusterJob properties with secret-looking values replaced."""
    result = dict(properties)
    configuration = properties.get("flinkConfiguration")
    if isinstance(configuration, Mapping):
        result["flinkConfiguration"] = {
            key: REDACTED if is_secret_key(key) else value for key, value in configuration.items()
        }
    if isinstance(properties.get("args"), str):
        result["args"] = redact_args(properties["args"])
    return result
