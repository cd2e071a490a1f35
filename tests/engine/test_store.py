"""JobStore on real temporary folders: atomic writes, corrupt records and per-job locks."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from flink_task.engine import store as store_module
from flink_task.engine.store import CorruptRecordError, JobLockedError, JobStore


def record(name: str, **fields: object) -> dict[str, object]:
    return {"jobName": name, "status": "RUNNING", **fields}


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    store = JobStore(tmp_path)
    store.save(record("orders", lastSavePoint="file:/sp/savepoint-1"))

    assert store.load("orders") == record("orders", lastSavePoint="file:/sp/savepoint-1")
    assert store.names() == ["orders"]
    assert sorted(path.name for path in tmp_path.iterdir()) == ["orders.json"]


def test_load_missing_record(tmp_path: Path) -> None:
    assert JobStore(tmp_path).load("orders") is None


def test_failed_write_keeps_old_record(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = JobStore(tmp_path)
    store.save(record("orders", lastSavePoint="file:/sp/savepoint-1"))

    def broken_replace(source: object, target: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(store_module.os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        store.save(record("orders", lastSavePoint="file:/sp/savepoint-2"))
    monkeypatch.undo()

    assert store.load("orders") == record("orders", lastSavePoint="file:/sp/savepoint-1")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["orders.json"]


def test_corrupt_record_names_file(tmp_path: Path) -> None:
    store = JobStore(tmp_path)
    path = tmp_path / "orders.json"
    path.write_text('{"jobName": "orders", "lastSavePoint": "file:/sp/savepo')

    with pytest.raises(CorruptRecordError) as raised:
        store.load("orders")

    assert str(path) in str(raised.value)
    assert "left unchanged" in str(raised.value)
    assert path.read_text() == '{"jobName": "orders", "lastSavePoint": "file:/sp/savepo'


def test_record_of_other_job_is_corrupt(tmp_path: Path) -> None:
    (tmp_path / "orders.json").write_text(json.dumps({"jobName": "payments"}))

    with pytest.raises(CorruptRecordError, match="not a record of job 'orders'"):
        JobStore(tmp_path).load("orders")


def test_invalid_job_name_rejected(tmp_path: Path) -> None:
    store = JobStore(tmp_path)
    for name in ("../orders", "Orders", "-orders", "orders-", "a" * 64, ""):
        with pytest.raises(ValueError, match="invalid job name"):
            store.load(name)


def test_delete_archives_record(tmp_path: Path) -> None:
    store = JobStore(tmp_path)
    store.save(record("orders", savepoints=[{"path": "file:/sp/savepoint-1"}]))

    archived = store.delete("orders")

    assert store.load("orders") is None
    assert store.names() == []
    assert archived is not None
    assert archived.parent == tmp_path / "deleted"
    assert json.loads(archived.read_text())["savepoints"] == [{"path": "file:/sp/savepoint-1"}]


def test_lock_rejects_second_holder(tmp_path: Path) -> None:
    store = JobStore(tmp_path)
    with store.lock("orders", "STOP"):
        with pytest.raises(JobLockedError, match=f"pid {os.getpid()}"):
            with store.lock("orders", "UPDATE"):
                pass
    assert not (tmp_path / "orders.lock").exists()


def test_lock_held_by_other_process(tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\n"
            "from pathlib import Path\n"
            "from flink_task.engine.store import JobStore\n"
            "with JobStore(Path(sys.argv[1])).lock('orders', 'STOP'):\n"
            "    print('locked', flush=True)\n"
            "    time.sleep(60)\n",
            str(tmp_path),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(JobLockedError, match=f"pid {holder.pid}"):
            with JobStore(tmp_path).lock("orders"):
                pass
    finally:
        holder.kill()
        holder.wait()
        if holder.stdout is not None:
            holder.stdout.close()


def test_lock_of_dead_process_taken_over(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    pid = dead_pid()
    lock = {"pid": pid, "host": socket.gethostname(), "expires": time.time() + 3600, "token": "x"}
    (tmp_path / "orders.lock").write_text(json.dumps(lock))

    with caplog.at_level(logging.WARNING, logger="flink_task.engine.store"):
        with JobStore(tmp_path).lock("orders"):
            held = json.loads((tmp_path / "orders.lock").read_text())

    assert held["pid"] == os.getpid()
    assert f"process {pid} is gone" in caplog.text
    assert not (tmp_path / "orders.lock").exists()


def test_expired_lock_taken_over(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    lock = {"pid": os.getpid(), "host": "other-host", "expires": time.time() - 10, "token": "x"}
    (tmp_path / "orders.lock").write_text(json.dumps(lock))

    with caplog.at_level(logging.WARNING, logger="flink_task.engine.store"):
        with JobStore(tmp_path).lock("orders"):
            pass

    assert "Took over the stale lock" in caplog.text
    assert "expired" in caplog.text


def test_live_lock_on_other_host_kept(tmp_path: Path) -> None:
    lock = {"pid": 1, "host": "other-host", "expires": time.time() + 600, "token": "x"}
    (tmp_path / "orders.lock").write_text(json.dumps(lock))

    with pytest.raises(JobLockedError, match="other-host"):
        with JobStore(tmp_path).lock("orders"):
            pass
    assert json.loads((tmp_path / "orders.lock").read_text())["token"] == "x"


def test_lock_wait_until_released(tmp_path: Path) -> None:
    store = JobStore(tmp_path)
    locked = threading.Event()
    release = threading.Event()

    def hold() -> None:
        with store.lock("orders", "begin"):
            locked.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    assert locked.wait(10)
    threading.Timer(0.3, release.set).start()

    with store.lock("orders", "execute", wait=10):
        assert json.loads((tmp_path / "orders.lock").read_text())["purpose"] == "execute"
    holder.join(10)


def test_job_name_with_newline_rejected(tmp_path: Path) -> None:
    store = JobStore(tmp_path)
    with pytest.raises(ValueError):
        store.lock_path("orders\n")


def test_lock_file_never_left_empty(tmp_path: Path) -> None:
    store = JobStore(tmp_path)
    with store.lock("orders", "test"):
        content = json.loads(store.lock_path("orders").read_text())
        assert content["pid"] == os.getpid()
        assert content["purpose"] == "test"
    assert not store.lock_path("orders").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []
