"""Job records on Azure Data Lake Storage Gen2, with the same contract as the local JobStore.

A record is written to a temporary file and renamed over ``<name>.json``, because a rename is
atomic in a hierarchical namespace. The rename succeeds only while the record still has the
ETag this store last read or wrote, so a record changed by another writer is not overwritten
(the conflict raises RecordConflictError). The lock of a job is
the file ``<name>.lock``, created only if absent (``If-None-Match: *``) and removed only if
unchanged (``If-Match``). A lock whose expiry has passed is removed by the next run.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from azure.core import MatchConditions
from azure.core.credentials import TokenCredential
from azure.core.exceptions import (
    AzureError,
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.storage.filedatalake import DataLakeServiceClient, FileSystemClient

from flink_task.engine.store import (
    DEFAULT_LOCK_TTL,
    DELETED_FOLDER,
    JOB_NAME_PATTERN,
    LOCK_SUFFIX,
    RECORD_SUFFIX,
    JobLockedError,
    JobStore,
    StoreError,
    check_job_name,
    parse_record,
)

logger = logging.getLogger(__name__)

ADLS_SCHEMES = ("abfs", "abfss")
# The storage client asks the credential for this scope itself; it is named here for docs.
STORAGE_SCOPE = "https://storage.azure.com/.default"
_LOCK_RETRY_SECONDS = 0.2


class RecordConflictError(StoreError):
    """The record changed on storage since this run read it; nothing was overwritten."""


@dataclass(frozen=True)
class AdlsLocation:
    """A path in an ADLS Gen2 file system: ``abfs://container@account.dfs.core.windows.net/p``."""

    host: str
    container: str
    path: str  # without leading or trailing slashes; empty for the container root

    @classmethod
    def parse(cls, url: str) -> AdlsLocation:
        parts = urlsplit(url)
        container, _, host = parts.netloc.partition("@")
        if parts.scheme not in ADLS_SCHEMES or not container or not host:
            raise ValueError(
                f"invalid ADLS Gen2 URL {url!r}: use "
                "abfs://container@account.dfs.core.windows.net/path"
            )
        return cls(host=host.lower(), container=container, path=unquote(parts.path).strip("/"))

    @property
    def account_url(self) -> str:
        return f"https://{self.host}"

    def child(self, name: str) -> str:
        return f"{self.path}/{name}" if self.path else name

    def __str__(self) -> str:
        return f"abfs://{self.container}@{self.host}/{self.path}"


def open_file_system(location: AdlsLocation, credential: TokenCredential) -> FileSystemClient:
    """Return a client of the location's file system that signs in with ``credential``."""
    service = DataLakeServiceClient(
        location.account_url, credential=credential, retry_total=3, connection_timeout=20
    )
    return service.get_file_system_client(location.container)


class AdlsJobStore(JobStore):
    """Job records below an ADLS Gen2 folder: ``<name>.json``, ``<name>.lock``, ``deleted/``.

    It keeps the interface of JobStore, which the engine uses, but no local folder.
    """

    def __init__(  # no super().__init__(): it would create a local folder
        self,
        file_system: FileSystemClient,
        location: AdlsLocation,
        *,
        lock_ttl: float = DEFAULT_LOCK_TTL,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.file_system = file_system
        self.location = location
        self.directory = Path(location.path or ".")
        self.lock_ttl = lock_ttl
        self._clock = clock
        # ETag of each record as last read or written by this store; None when it is absent.
        self._etags: dict[str, str | None] = {}

    # --- records ----------------------------------------------------------------------------

    def _record_name(self, name: str) -> str:
        check_job_name(name)
        return self.location.child(f"{name}{RECORD_SUFFIX}")

    def load(self, name: str) -> dict[str, Any] | None:
        """Return the record of job ``name``, or None when there is none."""
        path = self._record_name(name)
        try:
            downloader = self.file_system.get_file_client(path).download_file()
            data = downloader.readall()
        except ResourceNotFoundError:
            self._etags[name] = None
            return None
        except AzureError as exc:
            raise StoreError(
                f"could not read job record {self._url(path)}: {_reason(exc)}"
            ) from exc
        record = parse_record(data.decode("utf-8", errors="replace"), name, self._url(path))
        self._etags[name] = downloader.properties.etag
        return record

    def save(self, record: dict[str, Any]) -> None:
        """Replace the record atomically, unless someone else changed it since it was read."""
        name = str(record.get("jobName", ""))
        path = self._record_name(name)
        if name not in self._etags:
            self._etags[name] = self._current_etag(path)
        expected = self._etags[name]
        text = json.dumps(record, indent=2, sort_keys=True) + "\n"
        temporary = self.location.child(f".{name}{RECORD_SUFFIX}.{uuid.uuid4().hex}.tmp")
        temp_client = self.file_system.get_file_client(temporary)
        try:
            temp_client.upload_data(text.encode("utf-8"), overwrite=True)
            conditions: dict[str, Any] = (
                {"match_condition": MatchConditions.IfMissing}
                if expected is None
                else {"etag": expected, "match_condition": MatchConditions.IfNotModified}
            )
            temp_client.rename_file(f"{self.location.container}/{path}", **conditions)
        except (ResourceModifiedError, ResourceExistsError) as exc:
            self._delete_quietly(temporary)
            raise RecordConflictError(
                f"job record {self._url(path)} was changed by another run after this run read "
                "it; nothing was overwritten. Run the action again."
            ) from exc
        except AzureError as exc:
            self._delete_quietly(temporary)
            raise StoreError(
                f"could not write job record {self._url(path)}: {_reason(exc)}"
            ) from exc
        self._etags[name] = self._current_etag(path)

    def delete(self, name: str) -> Path | None:
        """Move the record of job ``name`` to the ``deleted`` folder; return None."""
        path = self._record_name(name)
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(self._clock()))
        archive = self.location.child(
            f"{DELETED_FOLDER}/{name}-{stamp}-{uuid.uuid4().hex[:8]}{RECORD_SUFFIX}"
        )
        conditions: dict[str, Any] = {}
        if self._etags.get(name):
            conditions = {
                "source_etag": self._etags[name],
                "source_match_condition": MatchConditions.IfNotModified,
            }
        try:
            self.file_system.get_file_client(path).rename_file(
                f"{self.location.container}/{archive}", **conditions
            )
        except ResourceNotFoundError:
            return None
        except ResourceModifiedError as exc:
            raise RecordConflictError(
                f"job record {self._url(path)} was changed by another run; it was not deleted"
            ) from exc
        except AzureError as exc:
            raise StoreError(
                f"could not delete job record {self._url(path)}: {_reason(exc)}"
            ) from exc
        self._etags.pop(name, None)
        logger.info("Moved the record of job %s to %s", name, self._url(archive))
        return None

    def names(self) -> list[str]:
        """Return the names of all jobs with a record, sorted."""
        try:
            paths = list(
                self.file_system.get_paths(path=self.location.path or None, recursive=False)
            )
        except ResourceNotFoundError:
            return []
        except AzureError as exc:
            raise StoreError(
                f"could not list job records in {self.location}: {_reason(exc)}"
            ) from exc
        names = []
        for item in paths:
            base = str(item.name).rsplit("/", 1)[-1]
            if item.is_directory or not base.endswith(RECORD_SUFFIX):
                continue
            name = base[: -len(RECORD_SUFFIX)]
            if JOB_NAME_PATTERN.match(name):
                names.append(name)
        return sorted(names)

    # --- locks ------------------------------------------------------------------------------

    @contextlib.contextmanager
    def lock(self, name: str, purpose: str = "", *, wait: float = 0.0) -> Iterator[None]:
        """Hold the lock file of job ``name``; raise JobLockedError when another run holds it."""
        check_job_name(name)
        path = self.location.child(f"{name}{LOCK_SUFFIX}")
        deadline = time.monotonic() + wait
        while True:
            etag = self._create_lock(path, name, purpose)
            if etag is not None:
                break
            if time.monotonic() >= deadline:
                holder, _ = self._read_lock(path)
                raise JobLockedError(
                    f"job {name} is locked by another run (pid {holder.get('pid', '?')} on "
                    f"{holder.get('host', '?')}, {holder.get('purpose') or 'unknown action'}, "
                    f"lock {self._url(path)}); wait for it to finish"
                )
            time.sleep(_LOCK_RETRY_SECONDS)
        try:
            yield
        finally:
            self._remove_lock(path, etag)

    def _create_lock(self, path: str, name: str, purpose: str) -> str | None:
        content = json.dumps(
            {
                "pid": os.getpid(),
                "host": socket.gethostname(),
                "expires": self._clock() + self.lock_ttl,
                "purpose": purpose,
            }
        )
        client = self.file_system.get_file_client(path)
        for _ in range(2):
            try:
                return self._write_new_file(client, content.encode("utf-8"))
            except ResourceExistsError:
                if not self._remove_if_expired(path):
                    return None
            except AzureError as exc:
                raise StoreError(
                    f"could not lock job {name} at {self._url(path)}: {_reason(exc)}"
                ) from exc
        return None

    @staticmethod
    def _write_new_file(client: Any, data: bytes) -> str:
        """Create a file that must not exist yet, write ``data`` and return its ETag.

        Raises ResourceExistsError when the file exists. The data is flushed only if no other
        writer changed the file since its creation.
        """
        created = client.create_file(match_condition=MatchConditions.IfMissing)
        client.append_data(data, offset=0, length=len(data))
        flushed = client.flush_data(
            len(data), etag=created["etag"], match_condition=MatchConditions.IfNotModified
        )
        return str(flushed["etag"])

    def _remove_if_expired(self, path: str) -> bool:
        holder, etag = self._read_lock(path)
        if etag is None:
            return True  # removed meanwhile: try again
        expires = holder.get("expires")
        now = self._clock()
        if not isinstance(expires, (int, float)) or expires >= now:
            return False
        try:
            self.file_system.get_file_client(path).delete_file(
                etag=etag, match_condition=MatchConditions.IfNotModified
            )
        except (ResourceModifiedError, ResourceNotFoundError):
            return True  # another run took it over first; the next attempt decides
        logger.warning(
            "Took over the expired lock %s (expired %.0f s ago, held by pid %s on %s)",
            self._url(path),
            now - expires,
            holder.get("pid"),
            holder.get("host"),
        )
        return True

    def _read_lock(self, path: str) -> tuple[dict[str, Any], str | None]:
        """Return the lock's content ({} when unreadable) and ETag (None when it is gone)."""
        try:
            downloader = self.file_system.get_file_client(path).download_file()
            data = downloader.readall()
        except ResourceNotFoundError:
            return {}, None
        etag = downloader.properties.etag
        try:
            holder = json.loads(data)
        except ValueError:
            # A lock being written is empty for a moment. Treat it as held until it is
            # older than the lock TTL, so a run that died while creating it cannot block forever.
            modified = downloader.properties.last_modified
            if modified is not None and modified.timestamp() + self.lock_ttl < self._clock():
                return {"expires": 0}, etag
            return {}, etag
        return (holder if isinstance(holder, dict) else {}), etag

    def _remove_lock(self, path: str, etag: str) -> None:
        try:
            self.file_system.get_file_client(path).delete_file(
                etag=etag, match_condition=MatchConditions.IfNotModified
            )
        except (ResourceModifiedError, ResourceNotFoundError):
            logger.warning("Lock %s was taken over by another run; left it in place", path)
        except AzureError as exc:
            logger.error(
                "Could not remove lock %s (%s); it expires after %.0f s",
                self._url(path),
                _reason(exc),
                self.lock_ttl,
            )

    # --- helpers ----------------------------------------------------------------------------

    def _current_etag(self, path: str) -> str | None:
        try:
            return str(self.file_system.get_file_client(path).get_file_properties().etag)
        except ResourceNotFoundError:
            return None
        except AzureError as exc:
            raise StoreError(
                f"could not read job record {self._url(path)}: {_reason(exc)}"
            ) from exc

    def _delete_quietly(self, path: str) -> None:
        try:
            self.file_system.get_file_client(path).delete_file()
        except AzureError as exc:
            logger.warning("Could not remove temporary file %s: %s", self._url(path), _reason(exc))

    def _url(self, path: str) -> str:
        return f"abfs://{self.location.container}@{self.location.host}/{path}"


def _reason(exc: AzureError) -> str:
    """Return a one-line reason: the HTTP status and error code, or the exception class."""
    if isinstance(exc, HttpResponseError) and exc.status_code is not None:
        code = getattr(exc, "error_code", None) or (exc.reason or "")
        return f"HTTP {exc.status_code} {code}".strip()
    return f"{type(exc).__name__}: {exc.message}"
