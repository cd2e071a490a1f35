"""How the Flink target reaches Flink and its jars: retries, proxy credentials, TLS, https jars.

Everything runs on loopback: the session's real Flink, a proxy in front of it, an HTTPS file
server for jars, and certificates from a throwaway CA (trustme).
"""

from __future__ import annotations

import base64
import functools
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests
import trustme

from flink_task.engine.jars import JarError
from flink_task.engine.sources import RemoteJarResolver
from flink_task.samplejobs import ENTRY_CLASS
from tests.flinktarget.conftest import JOB
from tests.flinktarget.proxy import FlinkProxy

TOKEN = "proxy-token-5f1c2e"
PASSWORD = "proxy-password-9a7b"


def jobs_with_id(flink_url: str, job_id: str) -> list[dict[str, Any]]:
    jobs = requests.get(f"{flink_url}/jobs/overview", timeout=30).json()["jobs"]
    return [job for job in jobs if job["jid"] == job_id]


def new_inputs(jar_directory: str) -> dict[str, str]:
    return {
        "jobJarDirectory": jar_directory,
        "jarName": "flink-task-sample-v1.jar",
        "entryClass": ENTRY_CLASS,
        "parallelism": "1",
    }


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def ca_file(ca: trustme.CA, tmp_path: Path) -> Path:
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return path


def server_context(ca: trustme.CA, *, client_certificates: bool = False) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    if client_certificates:
        ca.configure_trust(context)
        context.verify_mode = ssl.CERT_REQUIRED
    return context


class JarServer:
    """An HTTPS file server on loopback for the jars of a folder."""

    def __init__(self, folder: Path, context: ssl.SSLContext) -> None:
        handler = functools.partial(_QuietFiles, directory=str(folder))
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.url = f"https://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=10)


class _QuietFiles(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def jar_server(jar_dir: Path, ca: trustme.CA) -> Iterator[JarServer]:
    server = JarServer(jar_dir.parent, server_context(ca))
    yield server
    server.close()


# --- submissions ------------------------------------------------------------------------------


@pytest.mark.flink
def test_dropped_submission_starts_one_job(
    make_task: Any, flink_url: str, jar_dir: Path, tmp_path: Path, capsys: Any
) -> None:
    with FlinkProxy(flink_url, drop_first_run=True) as proxy:
        task = make_task(flinkUrl=proxy.url, stateDirectory=str(tmp_path / "s"), jobName=JOB)
        code, record, err = task.run(capsys, "NEW", **new_inputs(str(jar_dir)))
        runs = proxy.runs

    assert code == 0, err
    assert runs == 2
    assert record["status"] == "RUNNING"
    assert len(jobs_with_id(flink_url, record["jobId"])) == 1
    running = [
        job
        for job in requests.get(f"{flink_url}/jobs/overview", timeout=30).json()["jobs"]
        if job["state"] == "RUNNING"
    ]
    assert [job["jid"] for job in running] == [record["jobId"]]


# --- proxy credentials ----------------------------------------------------------------------


@pytest.mark.flink
@pytest.mark.parametrize(
    ("inputs", "header"),
    [
        ({"flinkToken": TOKEN}, f"Bearer {TOKEN}"),
        (
            {"flinkUsername": "deployer", "flinkPassword": PASSWORD},
            "Basic " + base64.b64encode(f"deployer:{PASSWORD}".encode()).decode(),
        ),
    ],
)
def test_proxy_credentials_sent_and_masked(
    inputs: dict[str, str],
    header: str,
    make_task: Any,
    flink_url: str,
    jar_dir: Path,
    tmp_path: Path,
    capsys: Any,
) -> None:
    with FlinkProxy(flink_url, authorization=header) as proxy:
        task = make_task(flinkUrl=proxy.url, stateDirectory=str(tmp_path / "s"), jobName=JOB)
        code, record, err = task.run(capsys, "NEW", **new_inputs(str(jar_dir)), **inputs)
        rejected = proxy.rejected

    assert code == 0, err
    assert record["status"] == "RUNNING"
    assert rejected == 0
    assert TOKEN not in err
    assert PASSWORD not in err


@pytest.mark.flink
def test_wrong_token_exits_1_with_hint(
    make_task: Any, flink_url: str, tmp_path: Path, capsys: Any
) -> None:
    with FlinkProxy(flink_url, authorization=f"Bearer {TOKEN}") as proxy:
        task = make_task(flinkUrl=proxy.url, stateDirectory=str(tmp_path / "s"))
        code, _, err = task.run(capsys, "LIST", flinkToken="wrong-token-value")

    assert code == 1
    assert "HTTP 401" in err
    assert "Check flinkToken" in err
    assert "wrong-token-value" not in err


# --- TLS ----------------------------------------------------------------------------------------


@pytest.mark.flink
def test_mutual_tls_with_custom_ca(
    make_task: Any,
    flink_url: str,
    ca: trustme.CA,
    ca_file: Path,
    tmp_path: Path,
    capsys: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    client = ca.issue_cert("flink-task@example.com")
    pem = client.private_key_and_cert_chain_pem.bytes().decode()
    other_ca = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other_ca))
    # flinkCaBundle must win over a REQUESTS_CA_BUNDLE meant for other hosts.
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(other_ca))
    context = server_context(ca, client_certificates=True)
    with FlinkProxy(flink_url, tls=context) as proxy:
        task = make_task(
            flinkUrl=proxy.url, stateDirectory=str(tmp_path / "s"), flinkCaBundle=str(ca_file)
        )
        code, listed, err = task.run(capsys, "LIST", flinkClientCertificate=pem)
        assert code == 0, err
        assert listed["jobs"] == []
        assert "PRIVATE KEY" not in err

        code, _, err = task.run(capsys, "LIST")
        assert code == 1
        assert "cannot read the Flink version" in err

        certificate_file = tmp_path / "client.pem"
        key_file = tmp_path / "client.key"
        client.cert_chain_pems[0].write_to_path(str(certificate_file))
        client.private_key_pem.write_to_path(str(key_file))
        code, _, err = task.run(
            capsys,
            "LIST",
            flinkClientCertificate=str(certificate_file),
            flinkClientKey=str(key_file),
        )
        assert code == 0, err


@pytest.mark.flink
def test_untrusted_flink_certificate_rejected(
    make_task: Any, flink_url: str, ca: trustme.CA, tmp_path: Path, capsys: Any
) -> None:
    with FlinkProxy(flink_url, tls=server_context(ca)) as proxy:
        task = make_task(flinkUrl=proxy.url, stateDirectory=str(tmp_path / "s"))
        code, _, err = task.run(capsys, "LIST")
    assert code == 1
    assert "SSLError" in err or "CERTIFICATE_VERIFY_FAILED" in err


def test_unsupported_flink_version_exits_2(make_task: Any, tmp_path: Path, capsys: Any) -> None:
    class OldFlink(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b'{"flink-version": "1.18.1"}'
            self.send_response(200 if self.path == "/config" else 404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), OldFlink)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        task = make_task(flinkUrl=url, stateDirectory=str(tmp_path / "s"), jobName=JOB)
        code, _, err = task.run(capsys, "STOP")
    finally:
        server.shutdown()
        server.server_close()
    assert code == 2
    assert "Flink 1.18.1 is not supported" in err
    assert not (tmp_path / "s").exists()


# --- https jars ---------------------------------------------------------------------------------


@pytest.mark.flink
def test_https_jar_deployed(
    make_task: Any,
    flink_url: str,
    jar_server: JarServer,
    ca_file: Path,
    tmp_path: Path,
    capsys: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(ca_file))
    task = make_task(flinkUrl=flink_url, stateDirectory=str(tmp_path / "s"), jobName=JOB)

    code, record, err = task.run(capsys, "NEW", **new_inputs(f"{jar_server.url}/jars?sv=1"))

    assert code == 0, err
    assert record["status"] == "RUNNING"
    assert "sv=1" not in err


@pytest.mark.flink
def test_missing_https_jar_fails_clearly(
    make_task: Any,
    flink_url: str,
    jar_server: JarServer,
    ca_file: Path,
    tmp_path: Path,
    capsys: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(ca_file))
    task = make_task(flinkUrl=flink_url, stateDirectory=str(tmp_path / "s"), jobName=JOB)
    inputs = {**new_inputs(f"{jar_server.url}/jars"), "jarName": "missing.jar"}

    code, record, err = task.run(capsys, "NEW", **inputs)

    assert code == 1
    assert f"NEW of job {JOB} FAILED" in err
    assert record["actionResult"] == "FAILED"
    assert (
        record["jobOutput"]
        == f"jar missing.jar not found at {jar_server.url}/jars/missing.jar (HTTP 404)"
    )


def test_https_jar_untrusted_certificate(jar_server: JarServer, tmp_path: Path) -> None:
    resolver = RemoteJarResolver(tmp_path / "work")
    with pytest.raises(JarError, match="SSLError"):
        resolver.resolve(f"{jar_server.url}/jars", "flink-task-sample-v1.jar")


def test_https_jar_size_limit(
    jar_server: JarServer, ca_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(ca_file))
    resolver = RemoteJarResolver(tmp_path / "work", max_bytes=1000)
    with pytest.raises(JarError, match="more than the limit of 1000 bytes"):
        resolver.resolve(f"{jar_server.url}/jars", "flink-task-sample-v1.jar")


def test_https_jar_downloaded_once(
    jar_server: JarServer,
    ca_file: Path,
    jar_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(ca_file))
    resolver = RemoteJarResolver(tmp_path / "work")
    first = resolver.resolve(f"{jar_server.url}/jars/", "flink-task-sample-v1.jar")
    second = resolver.resolve(f"{jar_server.url}/jars/", "flink-task-sample-v1.jar")
    assert first == second
    assert first.read_bytes() == (jar_dir / "flink-task-sample-v1.jar").read_bytes()


def test_http_jar_rejected(tmp_path: Path) -> None:
    resolver = RemoteJarResolver(tmp_path / "work")
    with pytest.raises(JarError, match="http://, which is not verified"):
        resolver.resolve("http://127.0.0.1:9/jars", "a.jar")
