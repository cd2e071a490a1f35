"""A loopback proxy in front of the session's Flink REST API, with switchable misbehaviour.

It can require a bearer token or basic credentials (401 otherwise), serve HTTPS and require a
client certificate, and drop the response of the first jar run although Flink started the
job. While ``hold_jobs`` is set it reports every job as INITIALIZING, so a run stays in its
wait for RUNNING until the test clears it.
"""

from __future__ import annotations

import json
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import requests


class FlinkProxy:
    def __init__(
        self,
        target: str,
        *,
        authorization: str | None = None,
        drop_first_run: bool = False,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.target = target.rstrip("/")
        self.authorization = authorization
        self.drop_first_run = drop_first_run
        self.hold_jobs = False
        self.runs = 0
        self.rejected = 0
        self.requests: list[tuple[str, str]] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        if tls is not None:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        scheme = "https" if tls is not None else "http"
        self.url = f"{scheme}://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=10)

    def __enter__(self) -> FlinkProxy:
        return self

    def __exit__(self, *args: object) -> None:
        self.close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def _forward(self) -> None:
                proxy.requests.append((self.command, self.path))
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                if proxy.authorization and self.headers.get("Authorization") != (
                    proxy.authorization
                ):
                    proxy.rejected += 1
                    self._reply(401, b'{"errors": ["missing or wrong credentials"]}')
                    return
                headers = {"Content-Type": self.headers.get("Content-Type", "application/json")}
                response = requests.request(
                    self.command,
                    f"{proxy.target}{self.path}",
                    data=body,
                    headers=headers,
                    timeout=120,
                )
                if self.path.endswith("/run"):
                    proxy.runs += 1
                    if proxy.drop_first_run and proxy.runs == 1:
                        self.close_connection = True
                        return
                content = response.content
                if proxy.hold_jobs and self.command == "GET" and _is_job_read(self.path):
                    details = json.loads(content)
                    details["state"] = "INITIALIZING"
                    content = json.dumps(details).encode()
                self._reply(response.status_code, content)

            def _reply(self, status: int, content: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                self.wfile.write(content)

            do_GET = do_POST = do_PATCH = do_DELETE = _forward

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler


def _is_job_read(path: str) -> bool:
    """Return whether ``path`` is ``/jobs/<32 hex id>`` (the details of one job)."""
    parts = path.split("?")[0].strip("/").split("/")
    return len(parts) == 2 and parts[0] == "jobs" and len(parts[1]) == 32
