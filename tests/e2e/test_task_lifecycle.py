"""The README's main job as tests: the task, through the emulator, on a real Flink cluster.

Each step runs ``flink_task.cli.main`` with its inputs in ``INPUT_*`` environment variables,
signs in to the emulator's authority with azure-identity and talks HTTPS to the emulator,
which carries the action out on the session's local Flink cluster.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from flink_task.cli import main
from flink_task.emulator.clusters import ClusterConfig
from flink_task.emulator.emulator import Emulator
from flink_task.samplejobs import ENTRY_CLASS, read_job_metric, wait_for_job_metric

pytestmark = pytest.mark.flink

JOB = "orders-e2e"


@pytest.fixture(scope="module")
def storage(tmp_path_factory: pytest.TempPathFactory, sample_jars: dict[str, Path]) -> Path:
    root = tmp_path_factory.mktemp("storage")
    jars = root / "jars"
    jars.mkdir()
    for jar in sample_jars.values():
        shutil.copy2(jar, jars)
    return root


@pytest.fixture(scope="module")
def emulator(
    tmp_path_factory: pytest.TempPathFactory, local_flink: Any, storage: Path
) -> Iterator[Emulator]:
    cluster = ClusterConfig(
        "pool-e2e", "cluster-e2e", flink_url=local_flink.rest_url, storage_dir=storage
    )
    with Emulator(tmp_path_factory.mktemp("emulator"), clusters=[cluster]) as server:
        yield server


class Pipeline:
    """Runs the task the way a pipeline step does and returns its exit code and record."""

    def __init__(self, emulator: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
        self.emulator = emulator
        self.monkeypatch = monkeypatch

    def run(
        self, capsys: pytest.CaptureFixture[str], action: str, **inputs: str
    ) -> tuple[int, dict[str, Any]]:
        emulator = self.emulator
        secret = Path(emulator.info()["clientSecretFile"]).read_text(encoding="utf-8").strip()
        env = {
            "INPUT_ACTION": action,
            "INPUT_JOBNAME": JOB,
            "INPUT_SUBSCRIPTIONID": emulator.subscription_id,
            "INPUT_RESOURCEGROUP": emulator.resource_group,
            "INPUT_CLUSTERPOOL": emulator.cluster_pool,
            "INPUT_CLUSTER": emulator.cluster,
            "INPUT_MANAGEMENTENDPOINT": emulator.base_url,
            "INPUT_AUTHORITYHOST": emulator.base_url,
            "INPUT_TENANTID": emulator.tenant_id,
            "INPUT_CLIENTID": emulator.client_id,
            "INPUT_TIMEOUTMINUTES": "5",
            "AZURE_CLIENT_SECRET": secret,
            "REQUESTS_CA_BUNDLE": str(emulator.ca_file),
        }
        env.update({f"INPUT_{name.upper()}": value for name, value in inputs.items()})
        with self.monkeypatch.context() as patch:
            for name, value in env.items():
                patch.setenv(name, value)
            capsys.readouterr()
            code = main([])
            out, err = capsys.readouterr()
        assert secret not in out + err
        return code, json.loads(out) if out.strip() else {}


@pytest.fixture
def pipeline(emulator: Emulator, monkeypatch: pytest.MonkeyPatch) -> Pipeline:
    return Pipeline(emulator, monkeypatch)


def restored_from(rest_url: str, job_id: str) -> str | None:
    response = requests.get(f"{rest_url}/jobs/{job_id}/checkpoints", timeout=10)
    response.raise_for_status()
    restored = (response.json().get("latest") or {}).get("restored") or {}
    path = restored.get("external_path")
    return str(path) if path else None


def same_path(flink_path: str, task_path: str) -> bool:
    def strip(path: str) -> str:
        return path.removeprefix("file:").lstrip("/").rstrip("/")

    return strip(flink_path) == strip(task_path)


def test_lifecycle_keeps_state(
    pipeline: Pipeline, storage: Path, local_flink: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    flink = local_flink.rest_url
    code, new = pipeline.run(
        capsys,
        "NEW",
        jobJarDirectory=str(storage / "jars"),
        jarName="flink-task-sample-v1.jar",
        entryClass=ENTRY_CLASS,
        args="--rate 50 --keys 4 --label 'first version'",
        parallelism="1",
    )
    assert code == 0, new
    assert new["status"] == "RUNNING"
    first_job = new["jobId"]
    wait_for_job_metric(flink, first_job, "maxCount", lambda value: value >= 20)

    code, savepoint = pipeline.run(capsys, "SAVEPOINT")
    assert code == 0
    assert savepoint["jobOutput"].startswith("Savepoint completed. Path: ")

    code, listed = pipeline.run(capsys, "LIST_SAVEPOINT")
    assert code == 0
    assert savepoint["lastSavePoint"] in listed["jobOutput"].splitlines()

    code, stopped = pipeline.run(capsys, "STOP")
    assert code == 0
    assert stopped["status"] == "STOPPED"
    stop_savepoint = stopped["lastSavePoint"]
    assert stopped["jobOutput"] == f"Savepoint completed. Path: {stop_savepoint}"
    assert Path(stop_savepoint.removeprefix("file:")).is_dir()

    code, started = pipeline.run(capsys, "START")
    assert code == 0
    assert started["status"] == "RUNNING"
    restored = restored_from(flink, started["jobId"])
    assert restored is not None
    assert same_path(restored, stop_savepoint)
    wait_for_job_metric(flink, started["jobId"], "restoredKeys", lambda value: value >= 1)

    count_before_update = read_job_metric(flink, started["jobId"], "maxCount") or 0
    code, updated = pipeline.run(
        capsys, "UPDATE", jarName="flink-task-sample-v2.jar", args="--rate 50 --keys 4"
    )
    assert code == 0, updated
    assert updated["status"] == "RUNNING"
    update_savepoint = updated["lastSavePoint"]
    assert update_savepoint != stop_savepoint
    restored = restored_from(flink, updated["jobId"])
    assert restored is not None
    assert same_path(restored, update_savepoint)
    assert wait_for_job_metric(flink, updated["jobId"], "version", lambda value: value == 2)
    wait_for_job_metric(
        flink, updated["jobId"], "maxCount", lambda value: value > count_before_update
    )

    code, stateless = pipeline.run(capsys, "STATELESS_UPDATE")
    assert code == 0
    assert restored_from(flink, stateless["jobId"]) is None

    code, cancelled = pipeline.run(capsys, "CANCEL")
    assert code == 0
    assert cancelled["status"] == "CANCELLED"

    code, deleted = pipeline.run(capsys, "DELETE")
    assert code == 0
    assert deleted["actionResult"] == "SUCCESS"
    for path in (savepoint["lastSavePoint"], stop_savepoint, update_savepoint):
        assert Path(path.removeprefix("file:")).is_dir(), f"savepoint {path} was deleted"

    code, after = pipeline.run(capsys, "LIST", jobName="")
    assert code == 0
    assert after["jobs"] == []


def test_failed_action_exits_1_with_root_cause(
    pipeline: Pipeline, storage: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, record = pipeline.run(
        capsys,
        "NEW",
        jobName="missing-class",
        jobJarDirectory=str(storage / "jars"),
        jarName="flink-task-sample-v1.jar",
        entryClass="io.flinktask.samples.NoSuchJob",
    )
    assert code == 1
    assert record["actionResult"] == "FAILED"
    assert "NoSuchJob" in record["jobOutput"]
    code, _ = pipeline.run(capsys, "DELETE", jobName="missing-class")
    assert code == 0


def test_start_from_unknown_savepoint_fails(
    pipeline: Pipeline, storage: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    name = "unknown-savepoint"
    code, _ = pipeline.run(
        capsys,
        "NEW",
        jobName=name,
        jobJarDirectory=str(storage / "jars"),
        jarName="flink-task-sample-v1.jar",
        entryClass=ENTRY_CLASS,
        parallelism="1",
    )
    assert code == 0
    code, _ = pipeline.run(capsys, "STOP", jobName=name)
    assert code == 0
    code, record = pipeline.run(capsys, "START", jobName=name, savepointName="savepoint-nope")
    assert code == 1
    assert record["actionResult"] == "FAILED"
    assert "savepoint-nope" in record["jobOutput"]
    assert record["status"] == "STOPPED"
    code, _ = pipeline.run(capsys, "DELETE", jobName=name)
    assert code == 0
