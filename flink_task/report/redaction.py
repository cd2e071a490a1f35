"""Secrets registered with a reporter, and their removal from printed text."""

from __future__ import annotations

import json
import re
import threading
import urllib.parse
from collections.abc import Mapping
from typing import Any

REDACTED = "***"

# Values shorter than this are neither registered with the runner nor redacted. The
# runner replaces a masked value everywhere in the rest of the job log, so masking
# "abc" or "42" would also hide every ordinary word and number that contains it, and
# a value that short can be guessed anyway. Blank lines of a secret are skipped too.
MIN_SECRET_LENGTH = 4


def secret_lines(secret: str) -> list[str]:
    """Split a secret into the values to register: each line without surrounding blanks.

    Lines shorter than MIN_SECRET_LENGTH are left out. The runners match log output
    line by line, so a multi-line value (a PEM key) is only masked line by line.
    """
    lines = []
    for line in secret.splitlines():
        stripped = line.strip()
        if len(stripped) >= MIN_SECRET_LENGTH and stripped not in lines:
            lines.append(stripped)
    return lines


class SecretRegistry:
    """The registered secrets and the forms in which they are redacted locally."""

    def __init__(self) -> None:
        self._values: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        self._lock = threading.Lock()

    def add(self, value: str) -> bool:
        """Register one single-line value. Return False if it was registered before."""
        with self._lock:
            if value in self._values:
                return False
            self._values.add(value)
            forms = {form for value in self._values for form in _encoded_forms(value)}
            # Longest first, so that a secret containing another is replaced whole.
            ordered = sorted(forms, key=len, reverse=True)
            self._pattern = re.compile("|".join(re.escape(form) for form in ordered))
            return True

    def redact(self, text: str) -> str:
        pattern = self._pattern
        if pattern is None:
            return text
        return pattern.sub(REDACTED, text)

    def redact_data(self, data: Any) -> Any:
        """Return a copy of JSON-like data with registered secrets redacted in every string."""
        if isinstance(data, str):
            return self.redact(data)
        if isinstance(data, Mapping):
            return {self.redact_data(key): self.redact_data(item) for key, item in data.items()}
        if isinstance(data, (list, tuple)):
            return [self.redact_data(item) for item in data]
        return data


def _encoded_forms(value: str) -> set[str]:
    """Return the value as written plain, inside JSON and Python string literals, URL-encoded."""
    forms = {
        value,
        json.dumps(value)[1:-1],
        json.dumps(value, ensure_ascii=False)[1:-1],
        repr(value)[1:-1],
        value.encode("unicode_escape").decode("ascii"),
        urllib.parse.quote(value, safe=""),
        urllib.parse.quote_plus(value, safe=""),
    }
    return {form for form in forms if len(form) >= MIN_SECRET_LENGTH}
