"""Tests of the sample job build and of the job itself on the local Flink cluster."""

from __future__ import annotations

import shutil
import urllib.error
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from flink_task.localflink import JavaNotFoundError, JavaVersionError, LocalFlink
from flink_task.samplejobs import (
    DEFAULT_SOURCES_DIR,
    ENTRY_CLASS,
    SampleBuildError,
    build_sample_jars,
    read_job_metric,
    wait_for_job_metric,
)
from tests.plugins.flink import (
    cancel_job,
    job_details,
    run_jar,
    stop_with_savepoint,
    upload_jar,
    wait_for_job_state,
    wait_for_tasks_running,
)


def _write_fake_tool(folder: Path, name: str, output: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / name
    script.write_text(f"#!/bin/sh\necho '{output}'\necho '{output}' >&2\n")
    script.chmod(0o755)


# --------------------------------------------------------------------------------------------
# Build


@pytest.mark.flink
def test_build_reuses_unchanged_sources(flink_home: Path, tmp_path: Path) -> None:
    sources = tmp_path / "sources"
    shutil.copytree(DEFAULT_SOURCES_DIR, sources)
    out = tmp_path / "out"

    first = build_sample_jars(flink_home, out, sources_dir=sources)
    assert set(first) == {"v1", "v2"}
    built_at = {version: jar.stat().st_mtime_ns for version, jar in first.items()}

    second = build_sample_jars(flink_home, out, sources_dir=sources)
    assert second == first
    assert {version: jar.stat().st_mtime_ns for version, jar in second.items()} == built_at

    job_source = sources / "src/io/flinktask/samples/CountingJob.java"
    job_source.write_text(job_source.read_text() + "\n// changed\n")
    third = build_sample_jars(flink_home, out, sources_dir=sources)
    assert third["v1"].stat().st_mtime_ns != built_at["v1"]


@pytest.mark.flink
def test_build_jars_have_entry_class(flink_home: Path, tmp_path: Path) -> None:
    jars = build_sample_jars(flink_home, tmp_path)
    for version, jar in jars.items():
        assert jar.name == f"flink-task-sample-{version}.jar"
        with zipfile.ZipFile(jar) as archive:
            manifest = archive.read("META-INF/MANIFEST.MF").decode()
            names = archive.namelist()
        assert f"Main-Class: {ENTRY_CLASS}" in manifest
        assert "io/flinktask/samples/CountingJob.class" in names
        assert "io/flinktask/samples/JobVersion.class" in names
    assert not list(tmp_path.glob(".classes-*"))


@pytest.mark.flink
def test_build_reports_compile_error(flink_home: Path, tmp_path: Path) -> None:
    sources = tmp_path / "sources"
    shutil.copytree(DEFAULT_SOURCES_DIR, sources)
    (sources / "src/io/flinktask/samples/Broken.java").write_text("class Broken { oops }\n")

    with pytest.raises(SampleBuildError) as raised:
        build_sample_jars(flink_home, tmp_path / "out", sources_dir=sources)

    assert "javac of the sample job v1 failed" in str(raised.value)
    assert "Broken.java" in str(raised.value)


def test_build_without_javac(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    monkeypatch.delenv("JAVA_HOME", raising=False)

    with pytest.raises(JavaNotFoundError) as raised:
        build_sample_jars(tmp_path / "flink-home", tmp_path / "out")

    assert "javac not found on PATH" in str(raised.value)
    assert "openjdk-17-jdk-headless" in str(raised.value)


def test_build_with_old_javac(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_bin = tmp_path / "fake-bin"
    _write_fake_tool(fake_bin, "javac", "javac 1.8.0_392")
    monkeypatch.setenv("PATH", str(fake_bin))
    monkeypatch.delenv("JAVA_HOME", raising=False)

    with pytest.raises(JavaVersionError) as raised:
        build_sample_jars(tmp_path / "flink-home", tmp_path / "out")

    message = str(raised.value)
    assert str(fake_bin / "javac") in message
    assert "1.8.0_392" in message
    assert "openjdk-17-jdk-headless" in message


def test_build_without_sources(tmp_path: Path) -> None:
    with pytest.raises(SampleBuildError, match="sample job sources not found"):
        build_sample_jars(
            tmp_path / "flink-home", tmp_path / "out", sources_dir=tmp_path / "missing"
        )


# --------------------------------------------------------------------------------------------
# The job on a real cluster


@dataclass
class V1Savepoint:
    """A savepoint of the v1 job and the counter value read just before it was taken."""

    location: str
    max_count_before: float
    job_id: str


@pytest.fixture(scope="module")
def v1_savepoint(
    local_flink: LocalFlink,
    sample_jars: dict[str, Path],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[V1Savepoint]:
    rest = local_flink.rest_url
    jar_id = upload_jar(rest, sample_jars["v1"])
    response = run_jar(
        rest, jar_id, ["--rate", "200", "--keys", "4", "--label", "sample-v1"], parallelism=2
    )
    assert response.status_code == 200, response.text
    job_id = response.json()["jobid"]
    try:
        wait_for_tasks_running(rest, job_id)
        assert wait_for_job_metric(rest, job_id, "version", lambda value: value >= 1) == 1
        wait_for_job_metric(rest, job_id, "maxCount", lambda value: value >= 50)
        max_count_before = read_job_metric(rest, job_id, "maxCount")
        assert max_count_before is not None
        location = stop_with_savepoint(rest, job_id, tmp_path_factory.mktemp("savepoints"))
        wait_for_job_state(rest, job_id, {"FINISHED"})
        yield V1Savepoint(location=location, max_count_before=max_count_before, job_id=job_id)
    finally:
        if job_details(rest, job_id)["state"] not in {"FINISHED", "CANCELED", "FAILED"}:
            cancel_job(rest, job_id)
        requests.delete(f"{rest}/jars/{jar_id}", timeout=30)


@pytest.fixture()
def v2_jar_id(local_flink: LocalFlink, sample_jars: dict[str, Path]) -> Iterator[str]:
    jar_id = upload_jar(local_flink.rest_url, sample_jars["v2"])
    yield jar_id
    requests.delete(f"{local_flink.rest_url}/jars/{jar_id}", timeout=30)


@pytest.mark.flink
def test_v1_job_runs_with_gauges(local_flink: LocalFlink, v1_savepoint: V1Savepoint) -> None:
    rest = local_flink.rest_url
    details = job_details(rest, v1_savepoint.job_id)

    assert details["name"] == "sample-v1"
    assert details["state"] == "FINISHED"
    assert [vertex["parallelism"] for vertex in details["vertices"]] == [2, 2]
    assert v1_savepoint.max_count_before >= 50
    assert Path(v1_savepoint.location.removeprefix("file:")).is_dir()


@pytest.mark.flink
def test_v2_restores_v1_savepoint(
    local_flink: LocalFlink, v1_savepoint: V1Savepoint, v2_jar_id: str
) -> None:
    rest = local_flink.rest_url
    response = run_jar(
        rest,
        v2_jar_id,
        ["--rate", "200", "--keys", "4", "--label", "sample-v2"],
        parallelism=2,
        savepointPath=v1_savepoint.location,
        claimMode="NO_CLAIM",
    )
    assert response.status_code == 200, response.text
    job_id = response.json()["jobid"]
    try:
        wait_for_tasks_running(rest, job_id)
        checkpoints = requests.get(f"{rest}/jobs/{job_id}/checkpoints", timeout=30).json()
        restored = checkpoints["latest"]["restored"]
        assert restored["is_savepoint"] is True
        assert restored["external_path"] == v1_savepoint.location

        assert wait_for_job_metric(rest, job_id, "version", lambda value: value > 0) == 2
        restored_keys = wait_for_job_metric(
            rest, job_id, "restoredKeys", lambda value: value > 0, timeout=30
        )
        assert restored_keys <= 4
        wait_for_job_metric(
            rest,
            job_id,
            "maxCount",
            lambda value: value > v1_savepoint.max_count_before,
            timeout=30,
        )
    finally:
        cancel_job(rest, job_id)


@pytest.mark.flink
def test_changed_uid_rejects_savepoint(
    local_flink: LocalFlink, v1_savepoint: V1Savepoint, v2_jar_id: str
) -> None:
    rest = local_flink.rest_url
    response = run_jar(
        rest,
        v2_jar_id,
        ["--state-uid", "renamed-counter"],
        savepointPath=v1_savepoint.location,
        claimMode="NO_CLAIM",
    )

    assert response.status_code == 400
    assert "allowNonRestoredState" in response.text or "Cannot map" in response.text


@pytest.mark.flink
def test_changed_uid_with_allow_non_restored(
    local_flink: LocalFlink, v1_savepoint: V1Savepoint, v2_jar_id: str
) -> None:
    rest = local_flink.rest_url
    response = run_jar(
        rest,
        v2_jar_id,
        ["--rate", "200", "--state-uid", "renamed-counter"],
        savepointPath=v1_savepoint.location,
        claimMode="NO_CLAIM",
        allowNonRestoredState=True,
    )
    assert response.status_code == 200, response.text
    job_id = response.json()["jobid"]
    try:
        wait_for_tasks_running(rest, job_id)
        wait_for_job_metric(rest, job_id, "maxCount", lambda value: value >= 5)
        assert read_job_metric(rest, job_id, "restoredKeys") == 0
    finally:
        cancel_job(rest, job_id)


@pytest.mark.flink
def test_invalid_argument_rejected(local_flink: LocalFlink, v2_jar_id: str) -> None:
    response = run_jar(local_flink.rest_url, v2_jar_id, ["--rate", "0"])

    assert response.status_code == 400
    assert "--rate must be positive" in response.text


@pytest.mark.flink
def test_fail_after_ends_failed(local_flink: LocalFlink, v2_jar_id: str) -> None:
    rest = local_flink.rest_url
    response = run_jar(rest, v2_jar_id, ["--rate", "50", "--fail-after", "10"])
    assert response.status_code == 200, response.text
    job_id = response.json()["jobid"]

    wait_for_job_state(rest, job_id, {"FAILED"}, timeout=90)
    exceptions = requests.get(f"{rest}/jobs/{job_id}/exceptions", timeout=30).json()
    assert "as requested by --fail-after" in str(exceptions)


@pytest.mark.flink
def test_read_metric_unknown_job(local_flink: LocalFlink) -> None:
    with pytest.raises(urllib.error.HTTPError) as raised:
        read_job_metric(local_flink.rest_url, "0" * 32, "maxCount")

    assert raised.value.code == 404


@pytest.mark.flink
def test_read_metric_missing_name(local_flink: LocalFlink, v2_jar_id: str) -> None:
    rest = local_flink.rest_url
    response = run_jar(rest, v2_jar_id, ["--rate", "50"])
    assert response.status_code == 200, response.text
    job_id = response.json()["jobid"]
    try:
        wait_for_tasks_running(rest, job_id)
        wait_for_job_metric(rest, job_id, "version", lambda value: value == 2)
        assert read_job_metric(rest, job_id, "noSuchMetric") is None
    finally:
        cancel_job(rest, job_id)
