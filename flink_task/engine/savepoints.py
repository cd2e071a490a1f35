"""Completed savepoints found on storage, for triggers whose status Flink no longer has."""

from __future__ import annotations

import logging
from datetime import datetime
from pathlib import Path
from urllib.parse import unquote, urlsplit

logger = logging.getLogger(__name__)

# Flink names a savepoint folder "savepoint-<first 6 hex digits of the job id>-<12 random hex
# digits>" (seen on Flink 2.3.0) and writes its "_metadata" file when it finalizes the
# savepoint, so a folder without one belongs to a savepoint that never completed.
_METADATA = "_metadata"
_JOB_ID_PREFIX_LENGTH = 6


def local_directory(directory: str) -> Path | None:
    """Return the local path of a savepoint directory, or None when it is not on this host."""
    parts = urlsplit(directory)
    if parts.scheme == "" and directory.startswith("/"):
        return Path(directory)
    if parts.scheme == "file" and parts.netloc in ("", "localhost"):
        return Path(unquote(parts.path))
    return None


def find_completed_savepoint(directory: str, flink_job_id: str, since: datetime) -> str | None:
    """Return the newest complete savepoint of a job written to ``directory`` after ``since``.

    A folder counts when its name carries the job id's prefix and it contains ``_metadata``
    modified at or after ``since``. Folders without ``_metadata`` are savepoints that never
    finished and are ignored. The result has the form of the directory: a ``file:`` URL or a
    plain path. Returns None when nothing matches or the directory is not local.
    """
    local = local_directory(directory)
    if local is None:
        # NOTE: remote storage (abfs://, s3://, hdfs://) is not searched. Flink may have written
        # a complete savepoint there that the record does not name.
        logger.warning(
            "Cannot search %s for a savepoint of Flink job %s that completed after %s: only "
            "local folders are searched. Look there for the newest savepoint-%s-* folder with "
            "a _metadata file, and give it to START as savePointName",
            directory,
            flink_job_id,
            since.isoformat(),
            flink_job_id[:_JOB_ID_PREFIX_LENGTH],
        )
        return None
    newest = _newest_complete_folder(local, flink_job_id, since.timestamp())
    if newest is None:
        return None
    if directory.startswith("file:"):
        return f"file:{newest}"
    return str(newest)


def _newest_complete_folder(directory: Path, flink_job_id: str, since: float) -> Path | None:
    pattern = f"savepoint-{flink_job_id[:_JOB_ID_PREFIX_LENGTH]}-*"
    candidates: list[tuple[float, Path]] = []
    try:
        folders = list(directory.glob(pattern))
    except OSError as exc:
        logger.warning("Cannot list savepoint directory %s: %s", directory, exc)
        return None
    for folder in folders:
        try:
            written = (folder / _METADATA).stat().st_mtime
        except OSError:
            logger.info("Ignored savepoint folder %s: it has no %s file", folder, _METADATA)
            continue
        if written >= since:
            candidates.append((written, folder))
    if not candidates:
        return None
    return max(candidates)[1]
