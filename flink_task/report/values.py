"""Conversion of output values to the strings that pipelines store."""

from __future__ import annotations

import json
from typing import Any


def output_value(value: Any) -> str:
    """Return an output value as a string.

    Strings are kept and None becomes an empty string. Booleans become ``true`` or
    ``false``, the spelling both platforms use in conditions. Lists and mappings become
    compact JSON, and anything else goes through ``str``.
    """
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(value, separators=(",", ":"))
    return str(value)
