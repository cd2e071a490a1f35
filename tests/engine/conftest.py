"""Fixtures for engine tests: an Engine on a temporary store, wired to the session's Flink."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from flink_task.engine import Engine, FlinkRestClient, JarResolver, JobStore, Timeouts

# Short deadlines and fast polling: the sample job checkpoints in well under a second.
TEST_TIMEOUTS = Timeouts(
    start=60.0, savepoint=60.0, terminal=60.0, poll_interval=0.2, log_interval=5.0
)
_TERMINAL = frozenset({"FAILED", "CANCELED", "FINISHED"})


@pytest.fixture
def rest_url(local_flink: Any) -> Iterator[str]:
    """Return the session cluster's REST URL, and cancel every job a test left running."""
    url = str(local_flink.rest_url).rstrip("/")
    yield url
    cancel_running_jobs(url)


def cancel_running_jobs(url: str) -> None:
    jobs = requests.get(f"{url}/jobs/overview", timeout=30).json()["jobs"]
    for job in jobs:
        if job["state"] not in _TERMINAL:
            requests.patch(f"{url}/jobs/{job['jid']}", params={"mode": "cancel"}, timeout=30)


@pytest.fixture
def store_dir(tmp_path: Path) -> Path:
    return tmp_path / "records"


@pytest.fixture
def savepoint_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "savepoints"
    folder.mkdir()
    return folder


@pytest.fixture
def make_engine(rest_url: str, store_dir: Path) -> Callable[..., Engine]:
    """Return a factory of Engines on the session cluster and this test's store."""

    def factory(
        *,
        client: FlinkRestClient | None = None,
        timeouts: Timeouts = TEST_TIMEOUTS,
        default_savepoint_dir: str | None = None,
    ) -> Engine:
        return Engine(
            flink=client or FlinkRestClient(rest_url),
            store=JobStore(store_dir),
            jars=JarResolver(),
            default_savepoint_dir=default_savepoint_dir,
            timeouts=timeouts,
        )

    return factory


@pytest.fixture
def engine(make_engine: Callable[..., Engine]) -> Engine:
    return make_engine()


@pytest.fixture
def job_request(sample_jars: dict[str, Path], savepoint_dir: Path) -> Callable[..., dict]:
    """Return a factory of runJob properties for the sample job (v1, parallelism 1)."""

    def factory(name: str, action: str, **fields: Any) -> dict[str, Any]:
        version = fields.pop("version", "v1")
        jar = sample_jars[version]
        configuration = {"parallelism": "1", "savepoint.directory": savepoint_dir.as_uri()}
        configuration.update(fields.pop("configuration", {}))
        configuration = {key: value for key, value in configuration.items() if value is not None}
        properties: dict[str, Any] = {
            "jobName": name,
            "action": action,
            "jobJarDirectory": str(jar.parent),
            "jarName": jar.name,
            "entryClass": "io.flinktask.samples.CountingJob",
            "args": "--rate 50 --keys 4",
            "flinkConfiguration": configuration,
        }
        properties.update(fields)
        return {key: value for key, value in properties.items() if value is not None}

    return factory
