"""The emulator's own certificate authority and HTTPS server certificate.

Both are created on first start in the state folder and reused afterwards, so a client keeps
trusting the same CA file across restarts. The server certificate is renewed when it is close
to expiry or does not name a host the server now listens on.
"""

from __future__ import annotations

import datetime
import ipaddress
import logging
import os
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

logger = logging.getLogger(__name__)

CA_LIFETIME = datetime.timedelta(days=3650)
SERVER_LIFETIME = datetime.timedelta(days=365)
# A server certificate with less than this left is replaced on start.
RENEW_BEFORE = datetime.timedelta(days=30)


@dataclass(frozen=True)
class TlsFiles:
    """Paths of the PEM files: the CA certificate clients trust, its key, the server certificate
    and its key."""

    ca_file: Path
    ca_key_file: Path
    server_cert_file: Path
    server_key_file: Path

    @classmethod
    def in_folder(cls, folder: Path) -> TlsFiles:
        return cls(
            ca_file=folder / "ca.pem",
            ca_key_file=folder / "ca-key.pem",
            server_cert_file=folder / "server.pem",
            server_key_file=folder / "server-key.pem",
        )


def ensure_certificates(folder: Path, hosts: list[str]) -> TlsFiles:
    """Create or reuse the CA and a server certificate whose SANs cover `hosts`."""
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    files = TlsFiles.in_folder(folder)
    now = datetime.datetime.now(datetime.timezone.utc)
    if not (files.ca_file.exists() and files.ca_key_file.exists()):
        _create_ca(files, now)
        logger.info("created the emulator CA %s", files.ca_file)
    if _server_certificate_needs_renewal(files, hosts, now):
        _create_server_certificate(files, hosts, now)
        logger.info("created the server certificate %s for %s", files.server_cert_file, hosts)
    return files


def server_context(files: TlsFiles) -> ssl.SSLContext:
    """Return a TLS 1.2+ server context that presents the emulator's server certificate."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(files.server_cert_file, files.server_key_file)
    return context


def _create_ca(files: TlsFiles, now: datetime.datetime) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "flink-task emulator CA")])
    public_key = key.public_key()
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + CA_LIFETIME)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(ca=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .sign(key, hashes.SHA256())
    )
    _write_private_key(files.ca_key_file, key)
    files.ca_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))


def _create_server_certificate(files: TlsFiles, hosts: list[str], now: datetime.datetime) -> None:
    ca_key = serialization.load_pem_private_key(files.ca_key_file.read_bytes(), password=None)
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise ValueError(
            f"{files.ca_key_file} is not an EC private key. Delete {files.ca_file.parent} to "
            "create a new CA, and give clients the new CA file."
        )
    ca_certificate = x509.load_pem_x509_certificate(files.ca_file.read_bytes())
    key = ec.generate_private_key(ec.SECP256R1())
    certificate = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]))
        .issuer_name(ca_certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + SERVER_LIFETIME)
        .add_extension(x509.SubjectAlternativeName(_general_names(hosts)), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(ca=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    _write_private_key(files.server_key_file, key)
    files.server_cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))


def _server_certificate_needs_renewal(
    files: TlsFiles, hosts: list[str], now: datetime.datetime
) -> bool:
    if not (files.server_cert_file.exists() and files.server_key_file.exists()):
        return True
    certificate = x509.load_pem_x509_certificate(files.server_cert_file.read_bytes())
    ca_certificate = x509.load_pem_x509_certificate(files.ca_file.read_bytes())
    if certificate.issuer != ca_certificate.subject:
        return True
    if certificate.not_valid_after_utc - now < RENEW_BEFORE:
        return True
    names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return not set(_general_names(hosts)) <= set(names)


def _general_names(hosts: list[str]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return names


def _key_usage(*, ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def _write_private_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(descriptor, 0o600)
    with os.fdopen(descriptor, "wb") as stream:
        stream.write(pem)
