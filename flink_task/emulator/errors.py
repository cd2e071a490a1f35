"""Error responses of the emulator, in the Azure Resource Manager `ErrorResponse` shape."""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """A request the emulator rejects, sent as `{"error": {"code", "message", "target"}}`."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        target: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(f"HTTP {status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.target = target
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        detail: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.target is not None:
            detail["target"] = self.target
        return {"error": detail}


def invalid_content(message: str, target: str) -> ApiError:
    """Return the 400 error for a request body that breaks the job API's schema."""
    return ApiError(400, "InvalidRequestContent", message, target=target)
