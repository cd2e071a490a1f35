"""Job records and jars on ADLS Gen2 (abfs://), with the real storage and identity clients.

Azure AD and the storage account are faked at the HTTP level (``responses``); requests to
loopback pass through to the session's real Flink.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import responses
from azure.identity import ClientSecretCredential

from flink_task.engine import CorruptRecordError, JobLockedError
from flink_task.engine.adls import (
    AdlsJobStore,
    AdlsLocation,
    RecordConflictError,
    open_file_system,
)
from flink_task.engine.jars import JarError
from flink_task.engine.sources import RemoteJarResolver
from flink_task.samplejobs import ENTRY_CLASS
from tests.flinktarget.conftest import JOB
from tests.flinktarget.fakeadls import FakeAdls
from tests.plugins.azure import CLIENT_ID, CLIENT_SECRET, TENANT_ID, register_aad

STATE_URL = "abfs://state@acct.dfs.core.windows.net/flink-task/records"
JARS_URL = "abfs://state@acct.dfs.core.windows.net/jars"
RECORD = f"flink-task/records/{JOB}.json"
LOCK = f"flink-task/records/{JOB}.lock"


@pytest.fixture
def adls() -> Iterator[FakeAdls]:
    fake = FakeAdls("acct", "state")
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        register_aad(mock)
        fake.install(mock)
        mock.add_passthru("http://127.0.0.1")
        yield fake
    assert fake.unexpected == []


@pytest.fixture
def credential() -> Iterator[ClientSecretCredential]:
    with ClientSecretCredential(TENANT_ID, CLIENT_ID, CLIENT_SECRET) as value:
        yield value


def make_store(credential: Any, *, lock_ttl: float = 600.0, clock: Any = None) -> AdlsJobStore:
    location = AdlsLocation.parse(STATE_URL)
    options = {"clock": clock} if clock else {}
    return AdlsJobStore(
        open_file_system(location, credential), location, lock_ttl=lock_ttl, **options
    )


def record(**fields: Any) -> dict[str, Any]:
    return {"jobName": JOB, "jobType": "FlinkJob", **fields}


# --- records --------------------------------------------------------------------------------


def test_record_round_trip(adls: FakeAdls, credential: Any) -> None:
    store = make_store(credential)
    assert store.load(JOB) is None

    store.save(record(status="RUNNING"))
    store.save(record(status="STOPPED"))

    assert json.loads(adls.read(RECORD))["status"] == "STOPPED"
    assert make_store(credential).load(JOB) == record(status="STOPPED")
    assert store.names() == [JOB]
    assert [name for name in adls.files if ".tmp" in name] == []


def test_delete_moves_record(adls: FakeAdls, credential: Any) -> None:
    store = make_store(credential)
    store.save(record(status="CANCELLED"))

    store.delete(JOB)

    assert RECORD not in adls.files
    archived = [name for name in adls.files if name.startswith("flink-task/records/deleted/")]
    assert len(archived) == 1
    assert json.loads(adls.read(archived[0]))["status"] == "CANCELLED"
    assert store.names() == []


def test_changed_record_not_overwritten(adls: FakeAdls, credential: Any) -> None:
    store = make_store(credential)
    make_store(credential).save(record(status="RUNNING"))
    assert store.load(JOB) == record(status="RUNNING")
    other = json.dumps(record(status="STOPPED", action="STOP")).encode()
    adls.put(RECORD, other)

    with pytest.raises(RecordConflictError, match="changed by another run"):
        store.save(record(status="RUNNING", action="SAVEPOINT"))

    assert adls.read(RECORD) == other
    assert [name for name in adls.files if ".tmp" in name] == []


def test_concurrent_new_records_conflict(adls: FakeAdls, credential: Any) -> None:
    first, second = make_store(credential), make_store(credential)
    assert first.load(JOB) is None
    assert second.load(JOB) is None
    first.save(record(status="RUNNING", jobId="a" * 32))

    with pytest.raises(RecordConflictError):
        second.save(record(status="RUNNING", jobId="b" * 32))

    assert json.loads(adls.read(RECORD))["jobId"] == "a" * 32


def test_corrupt_record_left_unchanged(adls: FakeAdls, credential: Any) -> None:
    adls.put(RECORD, b'{"jobName": "orders-flink", "sta')
    with pytest.raises(CorruptRecordError, match="not valid JSON") as raised:
        make_store(credential).load(JOB)
    assert f"abfs://state@acct.dfs.core.windows.net/{RECORD}" in str(raised.value)
    assert adls.read(RECORD) == b'{"jobName": "orders-flink", "sta'


# --- locks ----------------------------------------------------------------------------------


def test_lock_rejects_second_holder(adls: FakeAdls, credential: Any) -> None:
    first, second = make_store(credential), make_store(credential)
    with first.lock(JOB, "STOP"):
        assert LOCK in adls.files
        with pytest.raises(JobLockedError, match="STOP"), second.lock(JOB, "CANCEL"):
            pass
    assert LOCK not in adls.files
    with second.lock(JOB, "CANCEL"):
        assert json.loads(adls.read(LOCK))["purpose"] == "CANCEL"


def test_expired_lock_taken_over(
    adls: FakeAdls, credential: Any, caplog: pytest.LogCaptureFixture
) -> None:
    adls.put(LOCK, json.dumps({"pid": 1, "host": "gone", "expires": 1000.0}).encode())
    store = make_store(credential, clock=lambda: 5000.0)
    with caplog.at_level(logging.WARNING), store.lock(JOB, "recover"):
        assert json.loads(adls.read(LOCK))["purpose"] == "recover"
    assert "Took over the expired lock" in caplog.text
    assert LOCK not in adls.files


def test_live_lock_not_taken_over(adls: FakeAdls, credential: Any) -> None:
    held = json.dumps({"pid": 1, "host": "runner-7", "expires": 9000.0, "purpose": "UPDATE"})
    adls.put(LOCK, held.encode())
    store = make_store(credential, clock=lambda: 5000.0)
    with pytest.raises(JobLockedError, match="runner-7"), store.lock(JOB, "STOP"):
        pass
    assert adls.read(LOCK) == held.encode()


def test_lock_replaced_meanwhile_is_kept(adls: FakeAdls, credential: Any) -> None:
    store = make_store(credential)
    with store.lock(JOB, "STOP"):
        adls.put(LOCK, b'{"purpose": "someone else"}')
    assert adls.read(LOCK) == b'{"purpose": "someone else"}'


# --- jars -----------------------------------------------------------------------------------


def test_abfs_jar_downloaded(adls: FakeAdls, credential: Any, tmp_path: Path) -> None:
    adls.put("jars/job.jar", b"PK\x03\x04 jar bytes")
    resolver = RemoteJarResolver(
        tmp_path / "work",
        open_file_system=lambda location: open_file_system(location, credential),
    )
    path = resolver.resolve(JARS_URL, "job.jar")
    assert path.read_bytes() == b"PK\x03\x04 jar bytes"
    with pytest.raises(JarError, match=r"jar missing\.jar not found at abfs://state@acct"):
        resolver.resolve(JARS_URL, "missing.jar")


def test_abfs_jar_size_limit(adls: FakeAdls, credential: Any, tmp_path: Path) -> None:
    adls.put("jars/job.jar", b"x" * 2000)
    resolver = RemoteJarResolver(
        tmp_path / "work",
        open_file_system=lambda location: open_file_system(location, credential),
        max_bytes=1000,
    )
    with pytest.raises(JarError, match="2000 bytes, more than the limit of 1000 bytes"):
        resolver.resolve(JARS_URL, "job.jar")


# --- the task -------------------------------------------------------------------------------


@pytest.mark.flink
def test_task_keeps_records_and_jars_on_adls(
    adls: FakeAdls,
    make_task: Any,
    flink_url: str,
    sample_jars: dict[str, Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    adls.put("jars/flink-task-sample-v1.jar", sample_jars["v1"].read_bytes())
    task = make_task(
        flinkUrl=flink_url,
        stateDirectory=STATE_URL,
        jobName=JOB,
        tenantId=TENANT_ID,
        clientId=CLIENT_ID,
        clientSecret=CLIENT_SECRET,
    )

    code, new, err = task.run(
        capsys,
        "NEW",
        jobJarDirectory=JARS_URL,
        jarName="flink-task-sample-v1.jar",
        entryClass=ENTRY_CLASS,
        parallelism="1",
    )
    assert code == 0, err
    assert new["status"] == "RUNNING"
    assert CLIENT_SECRET not in err
    assert json.loads(adls.read(RECORD))["jobId"] == new["jobId"]

    code, listed, err = task.run(capsys, "LIST", jobName="")
    assert code == 0, err
    assert [(job["jobName"], job["flinkState"]) for job in listed["jobs"]] == [(JOB, "RUNNING")]

    code, _, err = task.run(capsys, "CANCEL")
    assert code == 0, err
    assert json.loads(adls.read(RECORD))["status"] == "CANCELLED"

    code, _, err = task.run(capsys, "DELETE")
    assert code == 0, err
    assert RECORD not in adls.files
    assert LOCK not in adls.files


@pytest.mark.flink
def test_task_reports_record_conflict(
    adls: FakeAdls,
    make_task: Any,
    flink_url: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Another writer changes the record between this run's read and its write."""
    adls.put(RECORD, json.dumps(record(status="STOPPED", action="STOP")).encode())
    changed = json.dumps(
        record(status="STOPPED", action="STOP", savepoints=[{"path": "file:/sp/savepoint-9"}])
    ).encode()

    def other_writer(method: str, path: str) -> None:
        if method == "PUT" and ".tmp" in path:
            adls.put(RECORD, changed)
            adls.before = None

    adls.before = other_writer
    task = make_task(
        flinkUrl=flink_url,
        stateDirectory=STATE_URL,
        jobName=JOB,
        tenantId=TENANT_ID,
        clientId=CLIENT_ID,
        clientSecret=CLIENT_SECRET,
    )
    code, _, err = task.run(capsys, "LIST_SAVEPOINT")

    assert code == 1
    assert f"job record abfs://state@acct.dfs.core.windows.net/{RECORD} was changed" in err
    assert adls.read(RECORD) == changed
    assert LOCK not in adls.files
    assert [name for name in adls.files if ".tmp" in name] == []
