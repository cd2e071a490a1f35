"""HTTP request and response values passed between the server and the API handlers."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs


@dataclass(frozen=True)
class Request:
    """One parsed HTTP request: method, path without query, query, headers and body."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes = b""

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    def form(self) -> dict[str, list[str]]:
        """Return the body parsed as `application/x-www-form-urlencoded`."""
        try:
            text = self.body.decode("utf-8")
        except UnicodeDecodeError:
            return {}
        return parse_qs(text, keep_blank_values=True)


@dataclass
class Response:
    """Status, JSON body (None for an empty body) and extra headers of a response."""

    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)

    def encoded_body(self) -> bytes:
        if self.body is None:
            return b""
        return json.dumps(self.body).encode("utf-8")
