"""Choice of the savepoint folder that an interrupted trigger left on storage."""

from __future__ import annotations

import os
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from flink_task.engine.savepoints import find_completed_savepoint, local_directory

JOB_ID = "025bcb" + "0" * 26
TRIGGERED_AT = datetime(2026, 12, 4, 12, 0, 0, tzinfo=timezone.utc)


def make_folder(root: Path, name: str, *, metadata_at: datetime | None) -> Path:
    """Create a savepoint folder; with ``metadata_at``, a _metadata file modified then."""
    folder = root / name
    folder.mkdir()
    (folder / "some-state").write_bytes(b"state")
    if metadata_at is not None:
        metadata = folder / "_metadata"
        metadata.write_bytes(b"metadata")
        stamp = metadata_at.timestamp()
        os.utime(metadata, (stamp, stamp))
    return folder


def test_newest_complete_folder_chosen(tmp_path: Path) -> None:
    make_folder(
        tmp_path, "savepoint-025bcb-000000000001", metadata_at=TRIGGERED_AT - timedelta(hours=1)
    )
    first = make_folder(
        tmp_path, "savepoint-025bcb-000000000002", metadata_at=TRIGGERED_AT + timedelta(seconds=5)
    )
    newest = make_folder(
        tmp_path, "savepoint-025bcb-000000000003", metadata_at=TRIGGERED_AT + timedelta(seconds=9)
    )

    found = find_completed_savepoint(tmp_path.as_uri(), JOB_ID, TRIGGERED_AT)

    assert found == f"file:{newest}"
    assert found != f"file:{first}"


def test_unfinished_folder_ignored(tmp_path: Path) -> None:
    complete = make_folder(
        tmp_path, "savepoint-025bcb-00000000000a", metadata_at=TRIGGERED_AT + timedelta(seconds=1)
    )
    make_folder(tmp_path, "savepoint-025bcb-00000000000b", metadata_at=None)

    found = find_completed_savepoint(str(tmp_path), JOB_ID, TRIGGERED_AT)

    assert found == str(complete)


def test_only_unfinished_or_older_none(tmp_path: Path) -> None:
    make_folder(tmp_path, "savepoint-025bcb-00000000000c", metadata_at=None)
    make_folder(
        tmp_path, "savepoint-025bcb-00000000000d", metadata_at=TRIGGERED_AT - timedelta(seconds=1)
    )

    assert find_completed_savepoint(str(tmp_path), JOB_ID, TRIGGERED_AT) is None


def test_other_job_folder_ignored(tmp_path: Path) -> None:
    make_folder(
        tmp_path, "savepoint-0c8976-00000000000e", metadata_at=TRIGGERED_AT + timedelta(seconds=1)
    )

    assert find_completed_savepoint(str(tmp_path), JOB_ID, TRIGGERED_AT) is None


def test_missing_directory_none(tmp_path: Path) -> None:
    assert find_completed_savepoint(str(tmp_path / "absent"), JOB_ID, TRIGGERED_AT) is None


def test_remote_directory_warns(caplog: pytest.LogCaptureFixture) -> None:
    directory = "abfs://savepoints@account.dfs.core.windows.net/jobs"

    found = find_completed_savepoint(directory, JOB_ID, TRIGGERED_AT)

    assert found is None
    assert directory in caplog.text
    assert "savepoint-025bcb-*" in caplog.text


@pytest.mark.parametrize(
    ("directory", "expected"),
    [
        ("/data/savepoints", Path("/data/savepoints")),
        ("file:///data/savepoints", Path("/data/savepoints")),
        ("file:/data/save%20points", Path("/data/save points")),
        ("file://localhost/data/savepoints", Path("/data/savepoints")),
        ("file://otherhost/data/savepoints", None),
        ("s3://bucket/savepoints", None),
        ("relative/savepoints", None),
    ],
)
def test_local_directory_forms(directory: str, expected: Path | None) -> None:
    assert local_directory(directory) == expected
