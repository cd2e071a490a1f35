"""FlinkRestClient: root causes, version checks, retries, and idempotent submissions."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests

from flink_task.engine.rest import (
    FlinkRestClient,
    FlinkRestError,
    UnsupportedFlinkVersionError,
    check_supported_version,
    root_cause_of_errors,
    root_cause_of_stack,
)
from flink_task.samplejobs import ENTRY_CLASS
from tests.engine.flinkchecks import jobs_with_id, uploaded_jars

# A stack trace shaped like Flink's REST errors: wrapper exceptions, then the root cause, whose
# message continues on a second line.
STACK = (
    "org.example.RestHandlerException: Could not execute application.\n"
    "\tat org.example.Handler.handle(Handler.java:10)\n"
    "Caused by: org.example.ProgramException: The main method caused an error.\n"
    "\tat org.example.Program.call(Program.java:20)\n"
    "\t... 4 more\n"
    "Caused by: java.lang.IllegalStateException: Cannot map state for operator 0a1b.\n"
    "Set the allowNonRestoredState option to skip it.\n"
    "\tat org.example.Restore.map(Restore.java:30)\n"
)


class ScriptedFlink:
    """A loopback HTTP server that replies to each path from a list of (status, body) pairs."""

    def __init__(self) -> None:
        self.replies: dict[tuple[str, str], list[tuple[int, Any]]] = {}
        self.requests: list[tuple[str, str]] = []
        scripted = self

        class Handler(BaseHTTPRequestHandler):
            def _reply(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                key = (self.command, self.path)
                scripted.requests.append(key)
                queue = scripted.replies.get(key) or [(404, {"errors": ["Not found"]})]
                status, body = queue.pop(0) if len(queue) > 1 else queue[0]
                payload = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PATCH = do_DELETE = _reply

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def scripted() -> Iterator[ScriptedFlink]:
    server = ScriptedFlink()
    server.replies[("GET", "/config")] = [(200, {"flink-version": "2.3.0"})]
    yield server
    server.close()


def client_for(url: str, sleeps: list[float]) -> FlinkRestClient:
    return FlinkRestClient(url, attempts=3, backoff=0.5, sleep=sleeps.append)


def test_root_cause_is_innermost_exception() -> None:
    assert root_cause_of_stack(STACK) == (
        "java.lang.IllegalStateException: Cannot map state for operator 0a1b.\n"
        "Set the allowNonRestoredState option to skip it."
    )


def test_root_cause_of_server_side_error() -> None:
    errors = ["Internal server error.", f"<Exception on server side:\n{STACK}\nEnd of exception>"]

    assert root_cause_of_errors(errors).startswith("java.lang.IllegalStateException: Cannot map")


def test_root_cause_of_plain_errors() -> None:
    assert root_cause_of_errors(["Not found: /jobs/x"]) == "Not found: /jobs/x"


@pytest.mark.parametrize(
    "version", ["1.20.0", "1.20.3", "2.0.0", "2.1.1", "2.3.0", "2.2-SNAPSHOT"]
)
def test_supported_versions(version: str) -> None:
    check_supported_version(version)


@pytest.mark.parametrize("version", ["1.19.1", "1.17.2", "3.0.0", "", "unknown"])
def test_unsupported_versions(version: str) -> None:
    with pytest.raises(UnsupportedFlinkVersionError, match=r"needs Flink 1\.20 or 2\.x"):
        check_supported_version(version)


def test_old_flink_rejected_before_upload(scripted: ScriptedFlink, tmp_path: Path) -> None:
    scripted.replies[("GET", "/config")] = [(200, {"flink-version": "1.18.1"})]
    jar = tmp_path / "job.jar"
    jar.write_bytes(b"PK")

    with pytest.raises(UnsupportedFlinkVersionError, match=r"Flink 1\.18\.1 is not supported"):
        client_for(scripted.url, []).upload_jar(jar)

    assert scripted.requests == [("GET", "/config")]


def test_read_retried_on_server_error(
    scripted: ScriptedFlink, caplog: pytest.LogCaptureFixture
) -> None:
    job = {"jid": "a" * 32, "state": "RUNNING"}
    scripted.replies[("GET", "/jobs/" + "a" * 32)] = [
        (503, {"errors": ["busy"]}),
        (502, {"errors": ["busy"]}),
        (200, job),
    ]
    sleeps: list[float] = []

    with caplog.at_level(logging.WARNING, logger="flink_task.engine.rest"):
        assert client_for(scripted.url, sleeps).job("a" * 32) == job

    assert sleeps == [0.5, 1.0]
    assert "failed (HTTP 503), retry 1 of 2 in 0.5 s" in caplog.text


def test_read_gives_up_after_attempts(scripted: ScriptedFlink) -> None:
    scripted.replies[("GET", "/jobs/overview")] = [(500, {"errors": ["broken"]})]
    sleeps: list[float] = []

    with pytest.raises(FlinkRestError) as raised:
        client_for(scripted.url, sleeps).jobs_overview()

    assert raised.value.status == 500
    assert raised.value.root_cause == "broken"
    assert len(sleeps) == 2


def test_rejected_run_not_retried(scripted: ScriptedFlink) -> None:
    scripted.replies[("POST", "/jars/x.jar/run")] = [(400, {"errors": [STACK]})]
    sleeps: list[float] = []

    with pytest.raises(FlinkRestError) as raised:
        client_for(scripted.url, sleeps).run_jar(
            "x.jar", entry_class="A", program_args=[], parallelism=1, job_id="b" * 32
        )

    assert raised.value.status == 400
    assert raised.value.root_cause.startswith("java.lang.IllegalStateException")
    assert sleeps == []
    assert scripted.requests.count(("POST", "/jars/x.jar/run")) == 1


def test_unreachable_flink(tmp_path: Path) -> None:
    sleeps: list[float] = []
    client = client_for("http://127.0.0.1:1", sleeps)

    with pytest.raises(FlinkRestError, match="ConnectionError") as raised:
        client.config()

    assert raised.value.status is None
    assert len(sleeps) == 2


class DroppingProxy:
    """A loopback proxy to Flink that forwards the first jar run, then drops the response.

    The client sees a lost connection although Flink did start the job, which is the case a
    retried submission must not turn into a second job.
    """

    def __init__(self, target: str) -> None:
        self.runs = 0
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                headers = {"Content-Type": self.headers.get("Content-Type", "application/json")}
                response = requests.request(
                    self.command, f"{target}{self.path}", data=body, headers=headers, timeout=120
                )
                if self.path.endswith("/run"):
                    proxy.runs += 1
                    if proxy.runs == 1:
                        self.close_connection = True
                        return
                self.send_response(response.status_code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(response.content)))
                self.end_headers()
                self.wfile.write(response.content)

            do_GET = do_POST = do_PATCH = do_DELETE = _forward

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.flink
def test_retried_run_starts_one_job(rest_url: str, sample_jars: dict[str, Path]) -> None:
    proxy = DroppingProxy(rest_url)
    try:
        client = FlinkRestClient(proxy.url, attempts=3, backoff=0.1)
        jar_id = client.upload_jar(sample_jars["v1"])
        job_id = "c" * 32
        try:
            returned = client.run_jar(
                jar_id, entry_class=ENTRY_CLASS, program_args=[], parallelism=1, job_id=job_id
            )
        finally:
            client.delete_jar(jar_id)
    finally:
        proxy.close()

    assert returned == job_id
    assert proxy.runs == 2
    assert len(jobs_with_id(rest_url, job_id)) == 1
    assert uploaded_jars(rest_url) == []


@pytest.mark.flink
def test_duplicate_job_id_detected(rest_url: str, sample_jars: dict[str, Path]) -> None:
    client = FlinkRestClient(rest_url)
    jar_id = client.upload_jar(sample_jars["v1"])
    job_id = "d" * 32
    try:
        client.run_jar(
            jar_id, entry_class=ENTRY_CLASS, program_args=[], parallelism=1, job_id=job_id
        )
        with pytest.raises(FlinkRestError) as raised:
            client.run_jar(
                jar_id, entry_class=ENTRY_CLASS, program_args=[], parallelism=1, job_id=job_id
            )
    finally:
        client.delete_jar(jar_id)

    assert raised.value.status == 400
    assert raised.value.is_duplicate_submission
    assert "at org.apache" not in raised.value.root_cause
    assert len(jobs_with_id(rest_url, job_id)) == 1


@pytest.mark.flink
def test_missing_entry_class_root_cause(rest_url: str, sample_jars: dict[str, Path]) -> None:
    client = FlinkRestClient(rest_url)
    jar_id = client.upload_jar(sample_jars["v1"])
    try:
        with pytest.raises(FlinkRestError) as raised:
            client.run_jar(
                jar_id,
                entry_class="io.flinktask.Missing",
                program_args=[],
                parallelism=1,
                job_id=None,
            )
    finally:
        client.delete_jar(jar_id)

    assert raised.value.root_cause == "java.lang.ClassNotFoundException: io.flinktask.Missing"
    assert raised.value.status == 500
