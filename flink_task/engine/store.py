"""Durable job records: one JSON file per job name, written atomically, with per-job locks."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import socket
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

JOB_NAME_PATTERN = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
RECORD_SUFFIX = ".json"
LOCK_SUFFIX = ".lock"
DELETED_FOLDER = "deleted"
_LOCK_RETRY_SECONDS = 0.05
# Longer than any single action: a start, a savepoint of up to Flink's checkpoint timeout and a
# rollback. Locks of dead processes on this host are taken over at once, whatever their expiry.
DEFAULT_LOCK_TTL = 6 * 3600.0


class StoreError(Exception):
    """A job record could not be read, written or locked."""


class CorruptRecordError(StoreError):
    """A record file exists but is not a valid job record. It is left untouched."""


class JobLockedError(StoreError):
    """Another action holds the lock of the job."""


def check_job_name(name: str) -> None:
    """Raise ValueError unless ``name`` is a valid job name (it is also a file name)."""
    if not JOB_NAME_PATTERN.fullmatch(name or ""):
        raise ValueError(
            f"invalid job name {name!r}: use 1-63 lower-case letters, digits and hyphens, "
            "starting and ending with a letter or digit"
        )


def parse_record(text: str, name: str, where: str) -> dict[str, Any]:
    """Return the record of job ``name`` stored as ``text`` at ``where``.

    Raises CorruptRecordError for text that is not JSON, a record of another job, or fields
    the engine relies on with the wrong type (a hand edit gone wrong). Nothing is changed.
    """
    fix = "it was left unchanged. Repair or move the file, then retry."
    try:
        record = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CorruptRecordError(f"job record {where} is not valid JSON ({exc}); {fix}") from exc
    if not isinstance(record, dict) or record.get("jobName") != name:
        raise CorruptRecordError(f"job record {where} is not a record of job {name!r}; {fix}")
    savepoints = record.get("savepoints", [])
    if not isinstance(savepoints, list) or not all(
        isinstance(entry, dict) and isinstance(entry.get("path"), str) for entry in savepoints
    ):
        raise CorruptRecordError(
            f"job record {where}: savepoints is not a list of objects with a path; {fix}"
        )
    for key in ("status", "action", "actionResult", "jobId", "lastSavePoint"):
        if record.get(key) is not None and not isinstance(record[key], str):
            raise CorruptRecordError(f"job record {where}: {key} is not a string; {fix}")
    return record


class JobStore:
    """Job records in ``directory``: ``<name>.json`` plus ``<name>.lock`` while an action runs.

    A record is replaced atomically (temporary file in the same folder, fsync, ``os.replace``),
    so a crash leaves either the old or the new record. A deleted record is moved to the
    ``deleted`` folder, so its savepoint history stays readable.
    """

    def __init__(
        self,
        directory: Path,
        *,
        lock_ttl: float = DEFAULT_LOCK_TTL,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.lock_ttl = lock_ttl
        self._clock = clock

    # --- records ----------------------------------------------------------------------------

    def record_path(self, name: str) -> Path:
        check_job_name(name)
        return self.directory / f"{name}{RECORD_SUFFIX}"

    def load(self, name: str) -> dict[str, Any] | None:
        """Return the record of job ``name``, or None when there is none."""
        path = self.record_path(name)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        return parse_record(text, name, str(path))

    def save(self, record: dict[str, Any]) -> None:
        """Write a record atomically and durably."""
        name = str(record.get("jobName", ""))
        path = self.record_path(name)
        _write_atomically(path, json.dumps(record, indent=2, sort_keys=True) + "\n")

    def delete(self, name: str) -> Path | None:
        """Move the record of job ``name`` to the ``deleted`` folder and return its new path."""
        path = self.record_path(name)
        if not path.exists():
            return None
        archive = self.directory / DELETED_FOLDER
        archive.mkdir(exist_ok=True)
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(self._clock()))
        target = archive / f"{name}-{stamp}-{os.getpid()}{RECORD_SUFFIX}"
        os.replace(path, target)
        _fsync_directory(self.directory)
        logger.info("Moved the record of job %s to %s", name, target)
        return target

    def names(self) -> list[str]:
        """Return the names of all jobs with a record, sorted."""
        names = []
        for path in self.directory.glob(f"*{RECORD_SUFFIX}"):
            name = path.name[: -len(RECORD_SUFFIX)]
            if JOB_NAME_PATTERN.fullmatch(name):
                names.append(name)
        return sorted(names)

    # --- locks ------------------------------------------------------------------------------

    def lock_path(self, name: str) -> Path:
        check_job_name(name)
        return self.directory / f"{name}{LOCK_SUFFIX}"

    @contextlib.contextmanager
    def lock(self, name: str, purpose: str = "", *, wait: float = 0.0) -> Iterator[None]:
        """Hold the lock of job ``name``; raise JobLockedError when another owner holds it.

        ``wait`` is how many seconds to keep trying before raising. The lock file contains the
        owner's pid, host and expiry time. A lock whose process is dead (same host) or whose
        expiry has passed is taken over, with a log line.
        """
        path = self.lock_path(name)
        deadline = time.monotonic() + wait
        while True:
            try:
                token = self._acquire(path, purpose)
                break
            except JobLockedError:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(_LOCK_RETRY_SECONDS)
        try:
            yield
        finally:
            self._release(path, token)

    def _acquire(self, path: Path, purpose: str) -> str:
        token = f"{socket.gethostname()}:{os.getpid()}:{time.monotonic_ns()}"
        content = json.dumps(
            {
                "pid": os.getpid(),
                "host": socket.gethostname(),
                "expires": self._clock() + self.lock_ttl,
                "purpose": purpose,
                "token": token,
            }
        )
        # The lock file appears with its content in one step (a hard link to a complete
        # temporary file), so a process killed while locking never leaves an empty lock that
        # could not be judged stale.
        temporary = path.with_name(f".{path.name}.{os.getpid()}.{time.monotonic_ns()}.tmp")
        with open(temporary, "w", encoding="utf-8") as stream:
            stream.write(content)
            stream.flush()
            os.fsync(stream.fileno())
        try:
            for _ in range(2):
                try:
                    os.link(temporary, path)
                except FileExistsError:
                    self._take_over_if_stale(path)
                    continue
                return token
        finally:
            temporary.unlink(missing_ok=True)
        holder = _read_lock(path)
        raise JobLockedError(
            f"job {path.name[: -len(LOCK_SUFFIX)]} is locked by another action "
            f"(pid {holder.get('pid', '?')} on {holder.get('host', '?')}, "
            f"{holder.get('purpose') or 'unknown action'}); wait for it to finish"
        )

    def _take_over_if_stale(self, path: Path) -> None:
        holder = _read_lock(path)
        reason = self._stale_reason(path, holder)
        if not reason:
            return
        # Rename first, so only one of two processes taking over the same stale lock removes
        # it. The other one then finds the name free or taken by the winner.
        stale = path.with_name(f"{path.name}.stale-{os.getpid()}-{time.monotonic_ns()}")
        try:
            os.replace(path, stale)
        except FileNotFoundError:
            return
        if _read_lock(stale).get("token") != holder.get("token"):
            # The lock changed hands between the read and the rename: put it back.
            with contextlib.suppress(OSError):
                os.link(stale, path)
            stale.unlink(missing_ok=True)
            return
        stale.unlink(missing_ok=True)
        logger.warning("Took over the stale lock %s (%s)", path, reason)

    def _stale_reason(self, path: Path, holder: dict[str, Any]) -> str:
        now = self._clock()
        if not holder:
            try:
                age = now - path.stat().st_mtime
            except FileNotFoundError:
                return ""
            return f"unreadable lock file, {age:.0f} s old" if age > self.lock_ttl else ""
        expires = float(holder.get("expires", 0))
        if expires < now:
            return f"expired {now - expires:.0f} s ago, held by pid {holder.get('pid')}"
        if holder.get("host") == socket.gethostname() and not _process_alive(holder.get("pid")):
            return f"process {holder.get('pid')} is gone"
        return ""

    def _release(self, path: Path, token: str) -> None:
        if _read_lock(path).get("token") == token:
            path.unlink(missing_ok=True)
        else:
            logger.warning("Lock %s was taken over by another owner; left it in place", path)


def _read_lock(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _process_alive(pid: Any) -> bool:
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except (TypeError, ValueError):
        return False
    return True


def _write_atomically(path: Path, text: str) -> None:
    fd, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
    _fsync_directory(path.parent)


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
