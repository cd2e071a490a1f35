"""Keep every test on loopback: a connection to any other address fails the test.

Azure AD, ARM, the instance metadata address (169.254.169.254) and every other remote
address must be faked with ``responses`` or a local server, never reached.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterator
from typing import Any

import pytest

_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex
_real_create_connection = socket.create_connection


class NonLoopbackConnectionError(ConnectionRefusedError):
    """A test tried to reach an address outside the loopback range."""


def _check_address(address: Any) -> None:
    if isinstance(address, (str, bytes)):  # AF_UNIX path
        return
    host = address[0]
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        if host == "localhost":
            return
        raise NonLoopbackConnectionError(f"test tried to connect to {host!r}") from None
    if not ip.is_loopback:
        raise NonLoopbackConnectionError(f"test tried to connect to {host!r}")


def _guarded_connect(self: socket.socket, address: Any) -> None:
    if self.family in (socket.AF_INET, socket.AF_INET6):
        _check_address(address)
    return _real_connect(self, address)


def _guarded_connect_ex(self: socket.socket, address: Any) -> int:
    if self.family in (socket.AF_INET, socket.AF_INET6):
        _check_address(address)
    return _real_connect_ex(self, address)


@pytest.fixture(autouse=True, scope="session")
def _loopback_only() -> Iterator[None]:
    socket.socket.connect = _guarded_connect  # type: ignore[method-assign]
    socket.socket.connect_ex = _guarded_connect_ex  # type: ignore[method-assign]
    try:
        yield
    finally:
        socket.socket.connect = _real_connect  # type: ignore[method-assign]
        socket.socket.connect_ex = _real_connect_ex  # type: ignore[method-assign]


@pytest.fixture(autouse=True)
def _clean_pipeline_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Start every test without the variables of a real pipeline or Azure sign-in."""
    import os

    prefixes = (
        "INPUT_",
        "ENDPOINT_",
        "AZURE_",
        "ACTIONS_",
        "GITHUB_",
        "SYSTEM_",
        "MSI_",
        "IDENTITY_",
    )
    for name in list(os.environ):
        if name.startswith(prefixes) or name in {"TF_BUILD", "REQUESTS_CA_BUNDLE"}:
            monkeypatch.delenv(name, raising=False)
