"""A stateful fake of one ADLS Gen2 account at the HTTP level, answered through ``responses``.

The real ``azure-storage-file-datalake`` client classes send their requests unchanged; this
fake keeps files in memory and answers the operations they use: path create, append, flush,
rename and delete and file system listing on the dfs endpoint, and blob download and
properties on the blob endpoint, with ETag preconditions as the service applies them. A
request it does not know is answered 400 and recorded in ``unexpected``, which tests assert
is empty. Every request must carry the bearer token of the faked Azure AD.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from email.utils import formatdate
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import responses

from tests.plugins.azure import ACCESS_TOKEN

Reply = tuple[int, dict[str, str], str | bytes]


@dataclass
class StoredFile:
    content: bytes
    etag: str
    modified: float


@dataclass
class FakeAdls:
    account: str
    container: str
    files: dict[str, StoredFile] = field(default_factory=dict)
    pending: dict[str, bytes] = field(default_factory=dict)
    requests: list[tuple[str, str]] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    # Called with (method, path) before a request is served, to interleave another writer.
    before: Any = None
    _counter: int = 0
    _clock: float = 1_700_000_000.0

    @property
    def dfs(self) -> str:
        return f"https://{self.account}.dfs.core.windows.net"

    @property
    def blob(self) -> str:
        return f"https://{self.account}.blob.core.windows.net"

    def install(self, mock: responses.RequestsMock) -> None:
        for host in (self.dfs, self.blob):
            pattern = re.compile(re.escape(host) + r"/.*")
            for method in ("GET", "HEAD", "PUT", "PATCH", "DELETE"):
                mock.add_callback(method, pattern, callback=self._serve)

    # --- direct access for tests --------------------------------------------------------------

    def put(self, path: str, content: bytes) -> None:
        self.files[path] = StoredFile(content, self._new_etag(), self._tick())

    def read(self, path: str) -> bytes:
        return self.files[path].content

    # --- dispatch -----------------------------------------------------------------------------

    def _serve(self, request: Any) -> Reply:
        parts = urlsplit(request.url)
        query = {key: values[0] for key, values in parse_qs(parts.query).items()}
        segments = unquote(parts.path).lstrip("/").split("/", 1)
        method = request.method
        path = segments[1] if len(segments) > 1 else ""
        self.requests.append((method, f"{parts.netloc.split('.')[1]}:{path}"))
        if request.headers.get("Authorization") != f"Bearer {ACCESS_TOKEN}":
            return _error(401, "InvalidAuthenticationInfo")
        if segments[0] != self.container:
            return _error(404, "ContainerNotFound")
        if self.before is not None:
            self.before(method, path)
        blob = parts.netloc.startswith(f"{self.account}.blob.")
        handler = self._handler(method, blob, path, query)
        if handler is None:
            self.unexpected.append(f"{method} {request.url}")
            return _error(400, "UnsupportedByFake")
        return handler(request, path, query)

    def _handler(self, method: str, blob: bool, path: str, query: dict[str, str]) -> Any:
        if blob:
            return {"GET": self._download, "HEAD": self._properties}.get(method)
        if method == "GET" and not path and query.get("resource") == "filesystem":
            return self._list
        if method == "PUT" and query.get("resource") == "file":
            return self._create
        if method == "PUT" and query.get("mode") == "legacy":
            return self._rename
        if method == "PATCH" and query.get("action") == "append":
            return self._append
        if method == "PATCH" and query.get("action") == "flush":
            return self._flush
        if method == "DELETE" and path:
            return self._delete
        return None

    # --- dfs operations -----------------------------------------------------------------------

    def _create(self, request: Any, path: str, query: dict[str, str]) -> Reply:
        failed = self._precondition(request.headers, path)
        if failed:
            return failed
        self.files[path] = StoredFile(b"", self._new_etag(), self._tick())
        self.pending[path] = b""
        return 201, self._headers(path), b""

    def _append(self, request: Any, path: str, query: dict[str, str]) -> Reply:
        if path not in self.files:
            return _error(404, "PathNotFound")
        body = request.body if isinstance(request.body, bytes) else (request.body or b"")
        if not isinstance(body, bytes):
            body = b"".join(body) if not isinstance(body, str) else body.encode()
        self.pending[path] = self.pending.get(path, b"")[: int(query["position"])] + body
        return 202, {}, b""

    def _flush(self, request: Any, path: str, query: dict[str, str]) -> Reply:
        if path not in self.files:
            return _error(404, "PathNotFound")
        content = self.pending.pop(path, b"")[: int(query["position"])]
        self.files[path] = StoredFile(content, self._new_etag(), self._tick())
        return 200, self._headers(path), b""

    def _rename(self, request: Any, path: str, query: dict[str, str]) -> Reply:
        source = unquote(request.headers["x-ms-rename-source"].split("?")[0]).lstrip("/")
        source = source.split("/", 1)[1]
        if source not in self.files:
            return _error(404, "SourcePathNotFound")
        source_match = request.headers.get("x-ms-source-if-match")
        if source_match and source_match != self.files[source].etag:
            return _error(412, "SourceConditionNotMet")
        failed = self._precondition(request.headers, path)
        if failed:
            return failed
        self.files[path] = self.files.pop(source)
        return 201, self._headers(path), b""

    def _delete(self, request: Any, path: str, query: dict[str, str]) -> Reply:
        if path not in self.files:
            return _error(404, "PathNotFound")
        failed = self._precondition(request.headers, path)
        if failed:
            return failed
        del self.files[path]
        return 200, {}, b""

    def _list(self, request: Any, path: str, query: dict[str, str]) -> Reply:
        directory = query.get("directory", "").strip("/")
        prefix = f"{directory}/" if directory else ""
        names = [name for name in self.files if name.startswith(prefix)]
        if directory and not names:
            return _error(404, "PathNotFound")
        entries: dict[str, dict[str, Any]] = {}
        for name in names:
            rest = name[len(prefix) :]
            child, _, below = rest.partition("/")
            full = prefix + child
            entries[full] = (
                {"name": full, "isDirectory": "true"}
                if below
                else {
                    "name": full,
                    "contentLength": str(len(self.files[name].content)),
                    "etag": self.files[name].etag,
                    "lastModified": formatdate(self.files[name].modified, usegmt=True),
                }
            )
        body = json.dumps({"paths": [entries[key] for key in sorted(entries)]})
        return 200, {"Content-Type": "application/json"}, body

    # --- blob operations ----------------------------------------------------------------------

    def _properties(self, request: Any, path: str, query: dict[str, str]) -> Reply:
        if path not in self.files:
            return 404, {"x-ms-error-code": "BlobNotFound"}, b""
        headers = self._headers(path)
        headers.update(
            {"Content-Length": str(len(self.files[path].content)), "x-ms-blob-type": "BlockBlob"}
        )
        return 200, headers, b""

    def _download(self, request: Any, path: str, query: dict[str, str]) -> Reply:
        if path not in self.files:
            return _xml_error(404, "BlobNotFound")
        content = self.files[path].content
        headers = self._headers(path)
        headers["x-ms-blob-type"] = "BlockBlob"
        match = re.fullmatch(r"bytes=(\d+)-(\d+)", request.headers.get("x-ms-range", ""))
        if match is None:
            headers["Content-Length"] = str(len(content))
            return 200, headers, content
        start, end = int(match.group(1)), int(match.group(2))
        if start >= len(content):
            return _xml_error(416, "InvalidRange")
        part = content[start : end + 1]
        headers["Content-Range"] = f"bytes {start}-{start + len(part) - 1}/{len(content)}"
        headers["Content-Length"] = str(len(part))
        return 206, headers, part

    # --- helpers ------------------------------------------------------------------------------

    def _precondition(self, headers: Any, path: str) -> Reply | None:
        current = self.files.get(path)
        if headers.get("If-None-Match") == "*" and current is not None:
            return _error(409, "PathAlreadyExists")
        expected = headers.get("If-Match")
        if expected and (current is None or current.etag != expected):
            return _error(412, "ConditionNotMet")
        return None

    def _headers(self, path: str) -> dict[str, str]:
        stored = self.files[path]
        return {
            "ETag": stored.etag,
            "Last-Modified": formatdate(stored.modified, usegmt=True),
            "x-ms-request-id": f"fake-{self._counter}",
        }

    def _new_etag(self) -> str:
        self._counter += 1
        return f'"0x8DC{self._counter:012X}"'

    def _tick(self) -> float:
        self._clock += 1.0
        return self._clock


def _error(status: int, code: str) -> Reply:
    body = json.dumps({"error": {"code": code, "message": f"{code} (fake ADLS)"}})
    return status, {"x-ms-error-code": code, "Content-Type": "application/json"}, body


def _xml_error(status: int, code: str) -> Reply:
    body = f"<?xml version='1.0'?><Error><Code>{code}</Code><Message>{code}</Message></Error>"
    return status, {"x-ms-error-code": code, "Content-Type": "application/xml"}, body
