"""HTTPS server of the emulator: TLS, request parsing, routing, request ids and access log."""

from __future__ import annotations

import logging
import socket
import ssl
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from flink_task.emulator.authority import Authority
from flink_task.emulator.errors import ApiError
from flink_task.emulator.jobapi import JobApi
from flink_task.emulator.protocol import Request, Response

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = 1024 * 1024
# Seconds a client may take for the TLS handshake and for each read of a request. An idle
# keep-alive connection is closed after the same time.
SOCKET_TIMEOUT = 30.0
# Request headers copied into the response, as Azure Resource Manager does.
_ECHOED_HEADERS = ("x-ms-client-request-id", "x-ms-correlation-request-id")


class EmulatorApp:
    """Routes a request to the authority or the job API and turns errors into responses."""

    def __init__(self, authority: Authority, job_api: JobApi) -> None:
        self.authority = authority
        self.job_api = job_api

    def handle(self, request: Request) -> Response:
        try:
            return self._route(request)
        except ApiError as error:
            return Response(error.status, error.body(), dict(error.headers))
        except Exception:
            logger.exception("request %s %s failed", request.method, request.path)
            return Response(
                500,
                {
                    "error": {
                        "code": "InternalServerError",
                        "message": "The emulator failed to process the request; see its log.",
                    }
                },
            )

    def _route(self, request: Request) -> Response:
        if self.job_api.handles(request.path):
            self.authority.validate_bearer(request.header("authorization"))
            return self.job_api.handle(request)
        if self.authority.handles(request.path):
            return self._authority(request)
        raise ApiError(404, "NotFound", f"Nothing is served at '{request.path}'.")

    def _authority(self, request: Request) -> Response:
        if request.method == "GET":
            result = self.authority.handle_get(request.path)
        elif request.method == "POST":
            result = self.authority.handle_post(
                request.path, request.form(), request.header("authorization")
            )
        else:
            raise ApiError(
                405,
                "MethodNotAllowed",
                f"Authority endpoints accept GET and POST, not {request.method}.",
                headers={"Allow": "GET, POST"},
            )
        return Response(result.status, result.body, {"Cache-Control": "no-store"})


class TlsHttpServer(ThreadingHTTPServer):
    """A threading HTTP server that does each TLS handshake in the connection's own thread,
    so a slow or broken client cannot hold up the accept loop.

    It tracks its open connections, so that `close_connections` can end kept-alive ones when
    the emulator stops. Otherwise a client could go on talking to a stopped emulator.
    """

    daemon_threads = True

    def __init__(
        self, address: tuple[str, int], context: ssl.SSLContext, app: EmulatorApp
    ) -> None:
        self.context = context
        self.app = app
        self.closing = False
        # Open connections, each mapped to whether a request on it is being processed.
        self._connections: dict[Any, bool] = {}
        self._connections_changed = threading.Condition()
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)

    def get_request(self) -> tuple[Any, Any]:
        connection, client_address = self.socket.accept()
        wrapped = self.context.wrap_socket(
            connection, server_side=True, do_handshake_on_connect=False
        )
        return wrapped, client_address

    def finish_request(self, request: Any, client_address: Any) -> None:
        self.set_busy(request, False)
        try:
            request.settimeout(SOCKET_TIMEOUT)
            request.do_handshake()
            super().finish_request(request, client_address)
        except OSError as error:  # ssl.SSLError included: handshake failed or peer went away
            logger.debug("connection from %s ended: %s", client_address, error)
        finally:
            with self._connections_changed:
                self._connections.pop(request, None)
                self._connections_changed.notify_all()

    def set_busy(self, request: Any, busy: bool) -> None:
        with self._connections_changed:
            self._connections[request] = busy
            self._connections_changed.notify_all()

    def close_connections(self, timeout: float = 5.0) -> None:
        """Let requests in progress finish (up to `timeout` seconds), then close every
        connection."""
        self.closing = True
        deadline = time.monotonic() + timeout
        with self._connections_changed:
            while any(self._connections.values()) and time.monotonic() < deadline:
                self._connections_changed.wait(max(0.0, deadline - time.monotonic()))
            connections = list(self._connections)
        for connection in connections:
            try:
                # The plain socket's shutdown: SSLSocket.shutdown would drop the TLS state
                # while the handler thread may still use it.
                socket.socket.shutdown(connection, socket.SHUT_RDWR)
            except OSError:
                pass

    def handle_error(self, request: Any, client_address: Any) -> None:
        logger.warning("connection from %s ended with an error", client_address, exc_info=True)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = SOCKET_TIMEOUT
    server: TlsHttpServer

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def do_PATCH(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def _dispatch(self) -> None:
        self.server.set_busy(self.request, True)
        try:
            self._process()
        finally:
            self.server.set_busy(self.request, False)
            if self.server.closing:
                self.close_connection = True

    def _process(self) -> None:
        started = time.monotonic()
        request_id = str(uuid.uuid4())
        split = urlsplit(self.path)
        try:
            body = self._read_body()
        except ApiError as error:
            self.close_connection = True
            response = Response(error.status, error.body(), dict(error.headers))
        else:
            request = Request(
                method=self.command,
                path=split.path,
                query=parse_qs(split.query, keep_blank_values=True),
                headers={name.lower(): value for name, value in self.headers.items()},
                body=body,
            )
            response = self.server.app.handle(request)
        self._send(response, request_id)
        logger.info(
            "%s %s -> %d in %.0f ms (x-ms-request-id %s)",
            self.command,
            split.path,
            response.status,
            (time.monotonic() - started) * 1000,
            request_id,
        )

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            raise ApiError(
                411, "LengthRequired", "Chunked request bodies are not supported. Send a length."
            )
        length_header = self.headers.get("Content-Length", "0")
        try:
            length = int(length_header)
        except ValueError:
            raise ApiError(
                400, "InvalidRequestContent", f"Invalid Content-Length {length_header!r}."
            ) from None
        if length < 0 or length > MAX_BODY_BYTES:
            raise ApiError(
                413,
                "RequestEntityTooLarge",
                f"The request body has {length} bytes; the limit is {MAX_BODY_BYTES}.",
            )
        return self.rfile.read(length) if length else b""

    def _send(self, response: Response, request_id: str) -> None:
        payload = response.encoded_body()
        self.send_response(response.status)
        if payload:
            self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("x-ms-request-id", request_id)
        for name in _ECHOED_HEADERS:
            value = self.headers.get(name)
            if value:
                self.send_header(name, value)
        for name, value in response.headers.items():
            self.send_header(name, value)
        if self.server.closing:
            self.send_header("Connection", "close")
        self.end_headers()
        try:
            self.wfile.write(payload)
        except (TimeoutError, ConnectionError) as error:
            logger.debug("client went away before the response was sent: %s", error)

    def version_string(self) -> str:
        return "flink-task-emulator"

    def log_message(self, format: str, *args: Any) -> None:
        # Access lines come from _dispatch. What remains here is malformed requests.
        logger.debug("%s: " + format, self.client_address[0], *args)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        return
