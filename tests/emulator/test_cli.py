"""`flink-task emulator` as a child process: its JSON line, options, state reuse and signals."""

from __future__ import annotations

import json
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from flink_task.engine import JobStore
from tests.emulator.conftest import (
    ArmClient,
    EmulatorProcess,
    ProcessConnection,
    stopped_record,
    unused_loopback_port,
)

EXPECTED_FIELDS = {
    "baseUrl",
    "caFile",
    "tenantId",
    "clientId",
    "clientSecretFile",
    "scope",
    "subscriptionId",
    "resourceGroup",
    "clusterPool",
    "cluster",
    "clusters",
}


# A non-loopback address that the emulator must refuse without --allow-remote.
ALL_INTERFACES = "0.0.0.0"  # noqa: S104


def offline_flink_url() -> str:
    return f"http://127.0.0.1:{unused_loopback_port()}"


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "flink_task", "emulator", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )


def test_json_line_and_sigterm(tmp_path: Path) -> None:
    flink_url = offline_flink_url()
    emulator = EmulatorProcess(tmp_path / "state", "--flink-url", flink_url)
    try:
        info = emulator.start()
        arm = emulator.arm_client()
        listed = arm.list_jobs()
    finally:
        exit_code = emulator.stop(signal.SIGTERM)

    assert set(info) == EXPECTED_FIELDS
    assert info["baseUrl"].startswith("https://127.0.0.1:")
    assert info["scope"] == f"{info['baseUrl']}/.default"
    assert Path(info["caFile"]).is_file()
    assert info["clusters"][0]["flinkUrl"] == flink_url
    assert info["clusterPool"] == info["clusters"][0]["clusterPool"] == "local-pool"
    assert info["cluster"] == info["clusters"][0]["cluster"] == "local-cluster"
    assert info["clusters"][0]["jobsUrl"].startswith(info["baseUrl"] + "/subscriptions/")
    secret_file = Path(info["clientSecretFile"])
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
    secret = secret_file.read_text().strip()
    assert secret not in json.dumps(info)
    assert secret not in emulator.log()
    assert listed.status_code == 200, listed.text
    assert exit_code == 0
    assert "GET /subscriptions/" in emulator.log()
    assert "emulator stopped" in emulator.log()


def test_sigint_stops_cleanly(tmp_path: Path) -> None:
    emulator = EmulatorProcess(tmp_path / "state", "--flink-url", offline_flink_url())
    emulator.start()

    exit_code = emulator.stop(signal.SIGINT)

    assert exit_code == 0


def test_state_reused_on_restart(tmp_path: Path) -> None:
    state = tmp_path / "state"
    first = EmulatorProcess(state, "--flink-url", offline_flink_url())
    try:
        first_info = first.start()
        ca_before = Path(first_info["caFile"]).read_bytes()
    finally:
        first.stop()
    port = first_info["baseUrl"].rsplit(":", 1)[1]
    second = EmulatorProcess(state, "--flink-url", offline_flink_url(), "--port", port)
    try:
        second_info = second.start()
        listed = second.arm_client().list_jobs()
    finally:
        second.stop()

    assert second_info["baseUrl"] == first_info["baseUrl"]
    assert Path(second_info["caFile"]).read_bytes() == ca_before
    for key in ("tenantId", "clientId", "subscriptionId", "clientSecretFile"):
        assert second_info[key] == first_info[key], key
    assert listed.status_code == 200


def test_config_file_clusters(tmp_path: Path) -> None:
    config = tmp_path / "emulator.json"
    config.write_text(
        json.dumps(
            {
                "subscriptionId": "11111111-2222-3333-4444-555555555555",
                "resourceGroup": "streaming",
                "clusters": [
                    {"clusterPool": "east", "cluster": "orders", "flinkUrl": offline_flink_url()},
                    {
                        "clusterPool": "east",
                        "cluster": "billing",
                        "flinkUrl": offline_flink_url(),
                        "storageDirectory": "storage/billing",
                        "storageMappings": {"abfs://jars@acct.dfs.core.windows.net/": "jars"},
                    },
                ],
            }
        )
    )
    emulator = EmulatorProcess(tmp_path / "state", "--config", str(config), "--page-size", "1")
    try:
        info = emulator.start()
        arm = emulator.arm_client()
        billing = arm.request(
            "GET",
            arm.cluster_url("east", "billing") + "/jobs",
            params={"api-version": "2024-05-01"},
        )
    finally:
        emulator.stop()

    assert info["subscriptionId"] == "11111111-2222-3333-4444-555555555555"
    assert info["resourceGroup"] == "streaming"
    assert [c["cluster"] for c in info["clusters"]] == ["orders", "billing"]
    assert billing.status_code == 200, billing.text


def test_remote_binding_needs_flag(tmp_path: Path) -> None:
    result = run_cli(
        "--state-dir", str(tmp_path), "--flink-url", offline_flink_url(), "--host", ALL_INTERFACES
    )

    assert result.returncode == 2
    assert "--allow-remote" in result.stderr
    assert result.stdout == ""


def test_remote_binding_needs_secret(tmp_path: Path) -> None:
    result = run_cli(
        "--state-dir",
        str(tmp_path),
        "--flink-url",
        offline_flink_url(),
        "--host",
        ALL_INTERFACES,
        "--allow-remote",
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
    )

    assert result.returncode == 2
    assert "FLINK_TASK_EMULATOR_CLIENT_SECRET" in result.stderr
    assert not (tmp_path / "client-secret").exists()


def test_operator_secret_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "operator-chosen-secret-0123456789"
    monkeypatch.setenv("FLINK_TASK_EMULATOR_CLIENT_SECRET", secret)
    emulator = EmulatorProcess(
        tmp_path / "state", "--flink-url", offline_flink_url(), "--allow-remote"
    )
    try:
        info = emulator.start()
        connection = ProcessConnection.from_info({**info, "clientSecretFile": None}, secret)
        listed = ArmClient(connection).list_jobs()
    finally:
        emulator.stop()

    assert info["clientSecretFile"] is None
    assert listed.status_code == 200, listed.text
    assert secret not in emulator.log()
    assert not list((tmp_path / "state").glob("client-secret*"))


def test_no_cluster_is_usage_error(tmp_path: Path) -> None:
    result = run_cli("--state-dir", str(tmp_path))

    assert result.returncode == 2
    assert "--flink-url" in result.stderr


def test_invalid_config_is_usage_error(tmp_path: Path) -> None:
    config = tmp_path / "emulator.json"
    config.write_text('{"clusters": [{"clusterPool": "p"}]}')

    result = run_cli("--state-dir", str(tmp_path / "state"), "--config", str(config))

    assert result.returncode == 2
    assert "clusters[0]" in result.stderr


def test_second_signal_exits_at_once(tmp_path: Path) -> None:
    state = tmp_path / "state"
    # A START whose jar is missing fails at once, but then spends about 3.5 s retrying the
    # closed Flink port to learn the job's state: long enough to signal twice meanwhile.
    jobs = state / "clusters" / "local-pool" / "local-cluster" / "jobs"
    JobStore(jobs).save(
        {"jobType": "FlinkJob", "actionResult": "SUCCESS", **stopped_record("slow")}
    )
    emulator = EmulatorProcess(state, "--flink-url", offline_flink_url())
    emulator.start()
    try:
        accepted = emulator.arm_client().run_job(
            {"jobName": "slow", "action": "START", "jarName": "missing.jar"}
        )
        assert accepted.status_code == 202, accepted.text
        assert emulator.process is not None
        emulator.process.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        started = time.monotonic()
        exit_code = emulator.stop(signal.SIGTERM, timeout=30)
        elapsed = time.monotonic() - started
    finally:
        emulator.kill()

    assert exit_code == 130
    assert elapsed < 2.5
    assert "second signal" in emulator.log()


def test_invalid_flink_url_is_usage_error(tmp_path: Path) -> None:
    result = run_cli("--state-dir", str(tmp_path / "state"), "--flink-url", "127.0.0.1:8081")

    assert result.returncode == 2
    assert "invalid Flink REST URL" in result.stderr
    assert not (tmp_path / "state").exists()


def test_state_folder_in_use_rejected(tmp_path: Path) -> None:
    state = tmp_path / "state"
    first = EmulatorProcess(state, "--flink-url", offline_flink_url())
    first.start()
    try:
        second = run_cli("--state-dir", str(state), "--flink-url", offline_flink_url())
    finally:
        first.stop()
    third = EmulatorProcess(state, "--flink-url", offline_flink_url())
    third.start()
    third.stop()

    assert second.returncode == 2
    assert "in use by another emulator" in second.stderr
    assert str(first.process.pid if first.process else "") in second.stderr
    assert second.stdout == ""
