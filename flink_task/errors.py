"""Exceptions that decide how a run ends, and the exit code of each."""

from __future__ import annotations

# Exit codes of every flink-task command.
EXIT_OK = 0
EXIT_ACTION_FAILED = 1
EXIT_INVALID_INPUT = 2
EXIT_UNEXPECTED = 3
EXIT_CANCELLED = 130


class FlinkTaskError(Exception):
    """Base class of the errors the command line reports as one plain line."""

    exit_code = EXIT_UNEXPECTED


class InputError(FlinkTaskError):
    """Invalid input or configuration, found before anything was sent."""

    exit_code = EXIT_INVALID_INPUT

    def __init__(self, input_name: str, message: str, fix: str = "") -> None:
        self.input_name = input_name
        self.fix = fix
        text = f"input {input_name}: {message}"
        if fix:
            text = f"{text}. {fix}"
        super().__init__(text)


class ActionFailedError(FlinkTaskError):
    """The server refused the action, or the action ended FAILED or timed out."""

    exit_code = EXIT_ACTION_FAILED


class ArmError(ActionFailedError):
    """An error response from Azure Resource Manager (or the emulator)."""

    def __init__(
        self,
        *,
        status: int,
        code: str,
        message: str,
        request_id: str | None,
        hint: str = "",
    ) -> None:
        self.status = status
        self.code = code
        self.message = message
        self.request_id = request_id
        self.hint = hint
        text = f"ARM returned HTTP {status} {code}: {message}"
        if request_id:
            text = f"{text} (x-ms-request-id {request_id})"
        if hint:
            text = f"{text}. {hint}"
        super().__init__(text)


class CancelledError(FlinkTaskError):
    """The run was interrupted by SIGINT or SIGTERM while waiting."""

    exit_code = EXIT_CANCELLED
