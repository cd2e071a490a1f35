"""Engine.begin checks and the actions that need no Flink call (no cluster needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from flink_task.engine import (
    API_FIELDS,
    ActionConflictError,
    Engine,
    FlinkRestClient,
    InvalidRequestError,
    JarResolver,
    JobNotFoundError,
    JobStore,
    api_properties,
)
from flink_task.engine.store import CorruptRecordError

# Nothing listens on port 1, so any Flink call fails at once: these tests must make none.
UNREACHABLE_FLINK = "http://127.0.0.1:1"


@pytest.fixture
def store(tmp_path: Path) -> JobStore:
    return JobStore(tmp_path / "records")


@pytest.fixture
def engine(store: JobStore) -> Engine:
    client = FlinkRestClient(UNREACHABLE_FLINK, attempts=1)
    return Engine(flink=client, store=store, jars=JarResolver())


def new_request(**fields: Any) -> dict[str, Any]:
    request = {
        "jobName": "orders",
        "action": "NEW",
        "jobJarDirectory": "/jars",
        "jarName": "orders.jar",
        "args": "--label 'two words'",
    }
    request.update(fields)
    return request


def saved_record(store: JobStore, status: str | None, **fields: Any) -> None:
    store.save(
        {
            "jobName": "orders",
            "jobType": "FlinkJob",
            "status": status,
            "actionResult": "SUCCESS",
            "jobJarDirectory": "/jars",
            "jarName": "orders.jar",
            **fields,
        }
    )


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"jobName": "Orders"}, "jobName: invalid job name 'Orders'"),
        ({"jobName": "a/b"}, "jobName: invalid job name"),
        ({"action": "RESTART"}, "action: 'RESTART' is not a known action"),
        ({"jarName": None}, "jarName: NEW needs the file name"),
        ({"jobJarDirectory": None}, "jobJarDirectory: NEW needs the folder"),
        ({"jarName": "jars/orders.jar"}, "jarName: 'jars/orders.jar' contains a path separator"),
        ({"args": "--label 'open"}, "args: cannot split"),
        ({"flinkConfiguration": {"parallelism": "0"}}, "parallelism: '0' is not a positive"),
        ({"flinkConfiguration": {"parallelism": "two"}}, "parallelism: 'two' is not a positive"),
        ({"flinkConfiguration": ["parallelism"]}, "flinkConfiguration: expected an object"),
        ({"flinkConfiguration": {"a": {"b": 1}}}, "flinkConfiguration.a: expected a string"),
        ({"entryClass": 5}, "entryClass: expected a string"),
    ],
)
def test_invalid_request(engine: Engine, fields: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidRequestError, match=message.replace("(", r"\(")):
        engine.begin(new_request(**fields))
    assert engine.list_jobs() == []


def test_new_marks_record_in_progress(engine: Engine, store: JobStore) -> None:
    started = engine.begin(new_request(runId="run-1", flinkConfiguration={"parallelism": 3}))

    assert started["actionResult"] == "IN_PROGRESS"
    assert started["runId"] == "run-1"
    assert started["flinkConfiguration"] == {"parallelism": "3"}
    saved = store.load("orders")
    assert saved is not None
    assert saved["actionResult"] == "IN_PROGRESS"
    assert saved["args"] == "--label 'two words'"


def test_run_id_generated_when_missing(engine: Engine) -> None:
    assert engine.begin(new_request())["runId"]


def test_new_on_existing_name(engine: Engine, store: JobStore) -> None:
    saved_record(store, "STOPPED")

    with pytest.raises(ActionConflictError, match="job orders already exists"):
        engine.begin(new_request())


def test_action_on_unknown_job(engine: Engine) -> None:
    with pytest.raises(JobNotFoundError, match="job orders not found"):
        engine.begin({"jobName": "orders", "action": "STOP"})


def test_action_while_in_progress(engine: Engine) -> None:
    engine.begin(new_request())

    with pytest.raises(ActionConflictError, match="NEW action in progress"):
        engine.begin({"jobName": "orders", "action": "CANCEL"})


def test_action_while_execute_holds_lock(engine: Engine, store: JobStore) -> None:
    engine.begin(new_request())

    with store.lock("orders", "execute"):
        with pytest.raises(ActionConflictError, match="NEW action in progress"):
            engine.begin({"jobName": "orders", "action": "CANCEL"})


def test_action_while_locked(engine: Engine, store: JobStore) -> None:
    saved_record(store, "STOPPED")

    with store.lock("orders", "UPDATE"):
        with pytest.raises(ActionConflictError, match="locked by another action"):
            engine.begin({"jobName": "orders", "action": "START"})


@pytest.mark.parametrize(
    ("status", "action"),
    [
        ("STOPPED", "STOP"),
        ("STOPPED", "SAVEPOINT"),
        ("CANCELLED", "UPDATE"),
        ("FAILED", "CANCEL"),
        ("STOPPED", "RE_LAUNCH"),
        ("CANCELLED", "STATELESS_UPDATE"),
        ("STOPPED", "LAST_STATE_UPDATE"),
        ("RUNNING", "DELETE"),
        ("RUNNING", "START"),
    ],
)
def test_status_precondition(engine: Engine, store: JobStore, status: str, action: str) -> None:
    saved_record(store, status)

    with pytest.raises(ActionConflictError) as raised:
        engine.begin({"jobName": "orders", "action": action})

    assert raised.value.http_status == 409
    saved = store.load("orders")
    assert saved is not None
    assert saved["actionResult"] == "SUCCESS"


def test_corrupt_record_not_overwritten(engine: Engine, store: JobStore) -> None:
    path = store.record_path("orders")
    path.write_text("{not json")

    with pytest.raises(CorruptRecordError, match=r"orders\.json"):
        engine.begin({"jobName": "orders", "action": "STOP"})
    with pytest.raises(CorruptRecordError):
        engine.begin(new_request())
    assert path.read_text() == "{not json"


def test_list_savepoint_newest_first(engine: Engine, store: JobStore) -> None:
    history = [{"path": "file:/sp/savepoint-2"}, {"path": "file:/sp/savepoint-1"}]
    saved_record(store, "STOPPED", savepoints=history, lastSavePoint="file:/sp/savepoint-2")

    listed = engine.run({"jobName": "orders", "action": "LIST_SAVEPOINT"})

    assert listed["actionResult"] == "SUCCESS"
    assert listed["jobOutput"] == "file:/sp/savepoint-2\nfile:/sp/savepoint-1"
    assert listed["status"] == "STOPPED"


def test_delete_keeps_savepoint_history(engine: Engine, store: JobStore) -> None:
    history = [{"path": "file:/sp/savepoint-1"}]
    saved_record(store, "CANCELLED", savepoints=history, lastSavePoint="file:/sp/savepoint-1")

    deleted = engine.run({"jobName": "orders", "action": "DELETE"})

    assert deleted["actionResult"] == "SUCCESS"
    assert deleted["lastSavePoint"] == "file:/sp/savepoint-1"
    assert engine.get_job("orders") is None
    assert engine.list_jobs() == []
    archived = list((store.directory / "deleted").glob("orders-*.json"))
    assert len(archived) == 1
    assert "savepoint-1" in archived[0].read_text()


def test_missing_jar_ends_failed(engine: Engine) -> None:
    engine.begin(new_request(jobJarDirectory=str(Path(__file__).parent)))

    result = engine.execute("orders")

    assert result["actionResult"] == "FAILED"
    assert result["jobOutput"].startswith("jar orders.jar not found")
    assert result["status"] == "FAILED"


def test_recover_without_flink(engine: Engine, store: JobStore) -> None:
    engine.begin(new_request())

    assert engine.recover() == ["orders"]

    saved = store.load("orders")
    assert saved is not None
    assert saved["actionResult"] == "FAILED"
    assert "interrupted" in saved["jobOutput"]


def test_api_properties_only_api_fields() -> None:
    internal = {
        "jobName": "orders",
        "status": "RUNNING",
        "savepoints": [],
        "pendingJobId": "x",
        "deployed": {},
        "jobOutput": None,
    }

    properties = api_properties(internal)

    assert properties == {"jobName": "orders", "status": "RUNNING"}
    assert set(properties) <= set(API_FIELDS)
