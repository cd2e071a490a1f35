"""Find secret-looking values in Flink configuration and program arguments.

Storage account keys, passwords and tokens are often passed to a job through its
configuration (``fs.azure.account.key.<account>.dfs.core.windows.net``,
``properties.sasl.jaas.config``) or its arguments (``--db-password ...``,
``--jdbc-url jdbc:postgresql://user:secret@host/db``). Their values are masked with the
pipeline and shown as ``***`` wherever the task prints a request or a job record.

Two rules find them:

* by name: the whole value of a configuration key or command line option whose name looks
  secret (``password``, ``token``, ``jaas``, an account key prefix, ...);
* by shape, inside any value: ``password=...``-style assignments (as in JAAS configurations
  and connection strings) and the password of a URL's user information.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from typing import Any

REDACTED = "***"

# A key is secret-looking when one of its dot-, dash- or underscore-separated words
# matches, or when it starts with an Azure or S3 storage key prefix.
_SECRET_WORDS = re.compile(
    r"(^|[._-])(secret|secrets|password|passwd|pwd|token|credential|credentials|"
    r"secret-key|access-key|accesskey|secretkey|sas|connection-string|connectionstring|"
    r"private-key|privatekey|api-key|apikey|jaas|keytab)($|[._-])",
    re.IGNORECASE,
)
_ACCOUNT_KEY_PREFIXES = ("fs.azure.account.key.", "fs.azure.sas.", "fs.s3a.secret.key")

# ``password="x"``, ``Password=x;``, ``SharedAccessKey=x`` inside a longer value.
_ASSIGNMENT = re.compile(
    r"(?i)(?:password|passwd|pwd|secret|token|api[-_]?key|accountkey|sharedaccesskey"
    r"|sharedaccesssignature|sig)\s*[=:]\s*(?:\"([^\"]*)\"|'([^']*)'|([^\s;&,\"']+))"
)
# ``scheme://user:password@host``.
_URL_PASSWORD = re.compile(r"(?i)\b[a-z][a-z0-9+.-]*://[^/\s:@]+:([^@\s/]+)@")


def is_secret_key(key: str) -> bool:
    """Return True for configuration keys and argument names whose values are secrets."""
    lowered = key.lower().lstrip("-")
    if lowered.startswith(_ACCOUNT_KEY_PREFIXES):
        return True
    return bool(_SECRET_WORDS.search(lowered))


def secrets_inside(text: str) -> list[str]:
    """Return the secret values embedded in a longer text (assignments, URL passwords)."""
    values = []
    for match in _ASSIGNMENT.finditer(text):
        values.append(next(group for group in match.groups() if group is not None))
    values.extend(match.group(1) for match in _URL_PASSWORD.finditer(text))
    return [value for value in values if value]


def secret_values_in_configuration(configuration: Mapping[str, str]) -> list[str]:
    values = []
    for key, value in configuration.items():
        if not value:
            continue
        if is_secret_key(key):
            values.append(value)
        else:
            values.extend(secrets_inside(value))
    return values


def secret_values_in_args(args: str) -> list[str]:
    """Return the secret values in program arguments (``--password x``, ``--token=x``, ...)."""
    words = _split(args)
    if words is None:
        return secrets_inside(args)
    values = [words[index] for index in _secret_option_values(words)]
    for word in words:
        name, sep, inline_value = word.partition("=")
        if sep and word.startswith("-") and is_secret_key(name):
            values.append(inline_value)
        else:
            values.extend(secrets_inside(word))
    return [value for value in values if value]


def redact_text(text: str) -> str:
    """Replace the secrets embedded in a text (assignments, URL passwords) with ``***``."""
    text = _ASSIGNMENT.sub(_redact_assignment, text)
    return _URL_PASSWORD.sub(lambda m: m.group(0).replace(m.group(1), REDACTED), text)


def redact_args(args: str) -> str:
    """Return program arguments with secret values replaced by ``***``.

    The arguments are split like a POSIX shell and joined again, so only whole arguments
    (or the value part of ``--name=value``) are replaced, never a substring elsewhere.
    """
    words = _split(args)
    if words is None:
        return redact_text(args)
    secret_positions = _secret_option_values(words)
    redacted = []
    for index, word in enumerate(words):
        name, sep, _ = word.partition("=")
        if index in secret_positions:
            redacted.append(REDACTED)
        elif sep and word.startswith("-") and is_secret_key(name):
            redacted.append(f"{shlex.quote(name)}={REDACTED}")
        else:
            redacted.append(shlex.quote(redact_text(word)))
    # A bare *** reads better than a quoted one, and the result is only ever displayed.
    return " ".join(redacted)


def redact_properties(properties: Mapping[str, Any]) -> dict[str, Any]:
    """Return a copy of ClusterJob properties with secret-looking values replaced."""
    result = dict(properties)
    configuration = properties.get("flinkConfiguration")
    if isinstance(configuration, Mapping):
        result["flinkConfiguration"] = {
            key: REDACTED if is_secret_key(key) else redact_text(str(value))
            for key, value in configuration.items()
        }
    if isinstance(properties.get("args"), str):
        result["args"] = redact_args(properties["args"])
    return result


def _split(args: str) -> list[str] | None:
    try:
        return shlex.split(args)
    except ValueError:
        return None


def _secret_option_values(words: list[str]) -> set[int]:
    """Return the positions of the values that follow secret-looking options."""
    positions = set()
    for index, word in enumerate(words[:-1]):
        if word.startswith("-") and "=" not in word and is_secret_key(word):
            if not words[index + 1].startswith("--"):
                positions.add(index + 1)
    return positions


def _redact_assignment(match: re.Match[str]) -> str:
    value = next(group for group in match.groups() if group is not None)
    if not value:
        return match.group(0)
    start = match.start(match.lastindex or 0) - match.start()
    whole = match.group(0)
    return whole[:start] + REDACTED + whole[start + len(value) :]
