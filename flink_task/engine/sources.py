"""Jar sources beyond local folders: ``abfs://`` (ADLS Gen2) and ``https://`` downloads.

A remote jar is downloaded to a file in ``work_dir`` (the caller removes the folder), with a
size limit and a deadline, and the engine uploads that file to Flink like a local jar.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

import requests
from azure.core.exceptions import AzureError, ResourceNotFoundError
from azure.storage.filedatalake import FileSystemClient

from flink_task.engine.adls import ADLS_SCHEMES, AdlsLocation
from flink_task.engine.jars import JarError, JarResolver, _check_jar_name

logger = logging.getLogger(__name__)

# Flink's own default for rest.server.max-content-length is 100 MiB, so a larger jar could not
# be uploaded anyway; the limit leaves room for clusters that raise it.
DEFAULT_MAX_JAR_BYTES = 512 * 1024 * 1024
DEFAULT_DOWNLOAD_SECONDS = 600.0
_CONNECT_TIMEOUT = 15.0
_READ_TIMEOUT = 60.0
_CHUNK = 1024 * 1024


class RemoteJarResolver(JarResolver):
    """Resolves local and ``file://`` jars like JarResolver, and downloads remote ones.

    ``open_file_system`` returns the ADLS client of a location (signing in happens there), so
    no credential is needed unless an ``abfs://`` jar is used. ``https://`` downloads verify
    TLS with the system trust store (or ``REQUESTS_CA_BUNDLE``); ``http://`` is rejected.
    """

    def __init__(
        self,
        work_dir: Path,
        *,
        open_file_system: Callable[[AdlsLocation], FileSystemClient] | None = None,
        session: requests.Session | None = None,
        max_bytes: int = DEFAULT_MAX_JAR_BYTES,
        download_seconds: float = DEFAULT_DOWNLOAD_SECONDS,
    ) -> None:
        super().__init__()
        self.work_dir = Path(work_dir)
        self._open_file_system = open_file_system
        self._session = session or requests.Session()
        self.max_bytes = max_bytes
        self.download_seconds = download_seconds
        self._downloads: dict[tuple[str, str], Path] = {}

    def resolve(self, jar_directory: str, jar_name: str) -> Path:
        """Return a local file of the jar, downloading it once per run when it is remote."""
        scheme = urlsplit((jar_directory or "").strip()).scheme
        if scheme not in (*ADLS_SCHEMES, "https", "http"):
            return super().resolve(jar_directory, jar_name)
        _check_jar_name(jar_name)
        key = (jar_directory, jar_name)
        if key not in self._downloads:
            if scheme == "http":
                raise JarError(
                    f"jobJarDirectory {_without_query(jar_directory)} is http://, which is not "
                    "verified; serve the jar over https:// or use abfs://"
                )
            target = self._new_file(jar_name)
            if scheme == "https":
                self._download_https(jar_directory, jar_name, target)
            else:
                self._download_adls(jar_directory, jar_name, target)
            self._downloads[key] = target
        return self._downloads[key]

    def _new_file(self, jar_name: str) -> Path:
        folder = self.work_dir / f"jar-{len(self._downloads)}"
        folder.mkdir(parents=True, exist_ok=True)
        return folder / jar_name

    # --- https --------------------------------------------------------------------------------

    def _download_https(self, directory: str, jar_name: str, target: Path) -> None:
        url = jar_url(directory, jar_name)
        shown = _without_query(url)
        started = time.monotonic()
        try:
            with self._session.get(
                url, stream=True, timeout=(_CONNECT_TIMEOUT, _READ_TIMEOUT)
            ) as response:
                if urlsplit(response.url).scheme != "https":
                    raise JarError(f"download of {shown} was redirected away from https://")
                if response.status_code == 404:
                    raise JarError(f"jar {jar_name} not found at {shown} (HTTP 404)")
                if not response.ok:
                    raise JarError(
                        f"download of {shown} failed: HTTP {response.status_code} "
                        f"{response.reason or ''}".rstrip()
                    )
                self._check_size(shown, response.headers.get("Content-Length"))
                received = 0
                with target.open("wb") as stream:
                    for chunk in response.iter_content(_CHUNK):
                        received += len(chunk)
                        self._check_progress(shown, received, started)
                        stream.write(chunk)
        except requests.RequestException as exc:
            reason = str(exc)
            query = urlsplit(url).query
            if query:
                reason = reason.replace(query, "***")
            raise JarError(f"download of {shown} failed: {type(exc).__name__}: {reason}") from exc
        logger.info("Downloaded %s (%d bytes)", shown, target.stat().st_size)

    # --- abfs ---------------------------------------------------------------------------------

    def _download_adls(self, directory: str, jar_name: str, target: Path) -> None:
        try:
            location = AdlsLocation.parse(directory)
        except ValueError as exc:
            raise JarError(str(exc)) from None
        if self._open_file_system is None:
            raise JarError(f"jobJarDirectory {directory} is on ADLS, but no sign-in is set up")
        path = location.child(jar_name)
        shown = f"abfs://{location.container}@{location.host}/{path}"
        started = time.monotonic()
        try:
            client = self._open_file_system(location).get_file_client(path)
            properties = client.get_file_properties()
            self._check_size(shown, str(properties.size))
            downloader = client.download_file()
            received = 0
            with target.open("wb") as stream:
                for chunk in downloader.chunks():
                    received += len(chunk)
                    self._check_progress(shown, received, started)
                    stream.write(chunk)
        except ResourceNotFoundError:
            raise JarError(
                f"jar {jar_name} not found at {shown}; check jobJarDirectory and jarName"
            ) from None
        except AzureError as exc:
            raise JarError(f"download of {shown} failed: {type(exc).__name__}: {exc}") from exc
        logger.info("Downloaded %s (%d bytes)", shown, target.stat().st_size)

    # --- limits -------------------------------------------------------------------------------

    def _check_size(self, shown: str, length: str | None) -> None:
        if length and length.isdigit() and int(length) > self.max_bytes:
            raise JarError(
                f"jar {shown} is {int(length)} bytes, more than the limit of "
                f"{self.max_bytes} bytes"
            )

    def _check_progress(self, shown: str, received: int, started: float) -> None:
        if received > self.max_bytes:
            raise JarError(f"jar {shown} is larger than the limit of {self.max_bytes} bytes")
        if time.monotonic() - started > self.download_seconds:
            raise JarError(
                f"download of {shown} did not finish within {self.download_seconds:.0f} s"
            )


def jar_url(directory: str, jar_name: str) -> str:
    """Return the URL of ``jar_name`` in an https folder URL, keeping its query (a SAS token)."""
    parts = urlsplit(directory.strip())
    path = parts.path.rstrip("/") + "/" + quote(jar_name)
    return urlunsplit((parts.scheme, parts.netloc, path, parts.query, ""))


def _without_query(url: str) -> str:
    """Return the URL without its query, which can hold a SAS token."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
