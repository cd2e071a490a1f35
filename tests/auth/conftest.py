"""Fixtures for sign-in tests: a strict fake of Azure AD over HTTP, certificates, a clock."""

from __future__ import annotations

import datetime
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import responses
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

TENANT_ID = "6f1c2a4e-8d0b-4c36-9a5e-2b7d1e3f4a50"
CLIENT_ID = "0b9e4c7a-1f2d-4e3b-8a6c-5d4e3f2a1b0c"
PUBLIC_AUTHORITY = "https://login.microsoftonline.com"


@pytest.fixture
def http_mock() -> Iterator[responses.RequestsMock]:
    """Fake every HTTP request: each registered response must be used, nothing else sent.

    ``responses`` raises ConnectionError ("Connection refused by Responses") for an
    unregistered request. Code under test may catch that, so the fixture also fails the test
    when any recorded call went unmatched.
    """
    with responses.RequestsMock(assert_all_requests_are_fired=True) as mock:
        yield mock
        unmatched = [
            f"{call.request.method} {call.request.url}"
            for call in mock.calls
            if isinstance(call.response, Exception)
            and "Connection refused by Responses" in str(call.response)
        ]
        assert not unmatched, f"unexpected requests: {unmatched}"


def add_openid_configuration(
    mock: responses.RequestsMock, authority: str = PUBLIC_AUTHORITY, tenant: str = TENANT_ID
) -> None:
    """Register the OpenID configuration document that MSAL reads before its first token."""
    mock.add(
        responses.GET,
        f"{authority}/{tenant}/v2.0/.well-known/openid-configuration",
        json={
            "issuer": f"{authority}/{tenant}/v2.0",
            "authorization_endpoint": f"{authority}/{tenant}/oauth2/v2.0/authorize",
            "token_endpoint": f"{authority}/{tenant}/oauth2/v2.0/token",
        },
    )


def add_instance_discovery(mock: responses.RequestsMock) -> None:
    """Register MSAL's instance discovery, which msal 1.39 sends after a failed token request."""
    mock.add(
        responses.GET,
        "https://login.microsoftonline.com/common/discovery/instance",
        match=[
            responses.matchers.query_param_matcher(
                {
                    "api-version": "1.1",
                    "authorization_endpoint": (
                        "https://login.microsoftonline.com/common/oauth2/authorize"
                    ),
                }
            )
        ],
        json={
            "tenant_discovery_endpoint": (
                "https://login.microsoftonline.com/common/v2.0/.well-known/openid-configuration"
            ),
            "api-version": "1.1",
            "metadata": [
                {
                    "preferred_network": "login.microsoftonline.com",
                    "preferred_cache": "login.windows.net",
                    "aliases": [
                        "login.microsoftonline.com",
                        "login.windows.net",
                        "login.microsoft.com",
                        "sts.windows.net",
                    ],
                }
            ],
        },
    )


def token_endpoint(authority: str = PUBLIC_AUTHORITY, tenant: str = TENANT_ID) -> str:
    return f"{authority}/{tenant}/oauth2/v2.0/token"


def add_token_response(
    mock: responses.RequestsMock,
    access_token: str,
    *,
    authority: str = PUBLIC_AUTHORITY,
    tenant: str = TENANT_ID,
    expires_in: int = 3600,
) -> None:
    mock.add(
        responses.POST,
        token_endpoint(authority, tenant),
        json={"token_type": "Bearer", "expires_in": expires_in, "access_token": access_token},
    )


def add_token_error(
    mock: responses.RequestsMock,
    *,
    error: str,
    code: int,
    description: str,
    authority: str = PUBLIC_AUTHORITY,
    tenant: str = TENANT_ID,
    status: int = 401,
) -> None:
    """Register a token endpoint error in Azure AD's JSON shape."""
    text = (
        f"AADSTS{code}: {description}\r\nTrace ID: 0000aaaa-11bb-cccc-dd22-eeeeee333333\r\n"
        "Correlation ID: aaaa0000-bb11-2222-33cc-444444dddddd\r\nTimestamp: 2026-01-09 02:02:12Z"
    )
    mock.add(
        responses.POST,
        token_endpoint(authority, tenant),
        status=status,
        json={
            "error": error,
            "error_description": text,
            "error_codes": [code],
            "trace_id": "0000aaaa-11bb-cccc-dd22-eeeeee333333",
            "correlation_id": "aaaa0000-bb11-2222-33cc-444444dddddd",
        },
    )


def form_of(call: responses.Call) -> dict[str, str]:
    """Return the form fields of a recorded POST."""
    from urllib.parse import parse_qsl

    body = call.request.body or ""
    text = body.decode() if isinstance(body, bytes) else body
    return dict(parse_qsl(text))


@dataclass
class Clock:
    """Shifts time.time() so that tokens expire without waiting."""

    offset: float = 0.0

    def advance(self, seconds: float) -> None:
        self.offset += seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    real_time = time.time
    shifted = Clock()
    monkeypatch.setattr(time, "time", lambda: real_time() + shifted.offset)
    return shifted


@dataclass
class CertificateFiles:
    """A self-signed certificate with its RSA key, as files and PEM text."""

    certificate: x509.Certificate
    key: rsa.RSAPrivateKey
    pem_text: str
    pem_path: Path
    encrypted_pem_text: str
    encrypted_pem_path: Path
    password: str
    pkcs12_path: Path


def make_certificate(
    common_name: str = "flink-task-test",
) -> tuple[x509.Certificate, rsa.RSAPrivateKey]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    return certificate, key


@pytest.fixture(scope="session")
def certificate_pair() -> tuple[x509.Certificate, rsa.RSAPrivateKey]:
    return make_certificate()


@pytest.fixture
def certificate_files(
    tmp_path: Path, certificate_pair: tuple[x509.Certificate, rsa.RSAPrivateKey]
) -> CertificateFiles:
    from cryptography.hazmat.primitives.serialization import pkcs12

    certificate, key = certificate_pair
    certificate_pem = certificate.public_bytes(serialization.Encoding.PEM)
    plain_key = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    password = "cert-password-5e1b"
    encrypted_key = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(password.encode()),
    )
    pem_text = (plain_key + certificate_pem).decode()
    encrypted_pem_text = (encrypted_key + certificate_pem).decode()
    pem_path = tmp_path / "client.pem"
    pem_path.write_text(pem_text)
    encrypted_pem_path = tmp_path / "client-encrypted.pem"
    encrypted_pem_path.write_text(encrypted_pem_text)
    pkcs12_path = tmp_path / "client.pfx"
    pkcs12_path.write_bytes(
        pkcs12.serialize_key_and_certificates(
            b"client",
            key,
            certificate,
            None,
            serialization.BestAvailableEncryption(password.encode()),
        )
    )
    return CertificateFiles(
        certificate=certificate,
        key=key,
        pem_text=pem_text,
        pem_path=pem_path,
        encrypted_pem_text=encrypted_pem_text,
        encrypted_pem_path=encrypted_pem_path,
        password=password,
        pkcs12_path=pkcs12_path,
    )
