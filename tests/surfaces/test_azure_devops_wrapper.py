"""The Node wrapper of the Azure DevOps task, run with node and the real task library.

FLINK_TASK_PYTHON points the wrapper at a small Python script that records the
environment it was started with, so these tests check what reaches Python without
needing a job API.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.surfaces.pipelines import assert_masked_before_shown

CONNECTION_ID = "5d2c1f7e-83b4-4c5a-9e1d-0a6b2f3c4d5e"
RECORDER = """\
import json, os, signal, sys, time
wanted = ("INPUT_", "ENDPOINT_", "SYSTEM_OIDCREQUESTURI", "TF_BUILD")
record = {name: value for name, value in os.environ.items() if name.startswith(wanted)}
record["argv"] = sys.argv[1:]
with open(os.environ["RECORD_PATH"], "w") as file:
    json.dump(record, file)
if os.environ.get("RECORDER_WAIT"):
    def stop(number, frame):
        # os.write and os._exit, because print can be inside a write when the signal lands.
        os.write(1, f"recorder: got signal {number}\\n".encode())
        os._exit(130)
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    print("recorder: waiting", flush=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        time.sleep(0.1)
sys.exit(int(os.environ.get("RECORDER_EXIT", "0")))
"""


@pytest.fixture()
def recorder(tmp_path: Path) -> Path:
    script = tmp_path / "recorder.py"
    script.write_text(f"#!{sys.executable}\n{RECORDER}")
    script.chmod(0o755)
    return script


def agent_environment(tmp_path: Path, recorder: Path) -> dict[str, str]:
    agent_temp = tmp_path / "agent-temp"
    agent_temp.mkdir(exist_ok=True)
    return {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "TF_BUILD": "True",
        "AGENT_TEMPDIRECTORY": str(agent_temp),
        "FLINK_TASK_PYTHON": str(recorder),
        "RECORD_PATH": str(tmp_path / "record.json"),
    }


def connection_variables() -> dict[str, str]:
    auth = {
        "parameters": {
            "serviceprincipalid": "app-id",
            "tenantid": "tenant-id",
            "serviceprincipalkey": "connection-secret",
        },
        "scheme": "ServicePrincipal",
    }
    return {
        f"ENDPOINT_URL_{CONNECTION_ID}": "https://management.azure.com/",
        f"ENDPOINT_AUTH_{CONNECTION_ID}": json.dumps(auth),
        f"ENDPOINT_AUTH_SCHEME_{CONNECTION_ID}": "ServicePrincipal",
        f"ENDPOINT_AUTH_PARAMETER_{CONNECTION_ID}_SERVICEPRINCIPALID": "app-id",
        f"ENDPOINT_AUTH_PARAMETER_{CONNECTION_ID}_TENANTID": "tenant-id",
        f"ENDPOINT_AUTH_PARAMETER_{CONNECTION_ID}_SERVICEPRINCIPALKEY": "connection-secret",
        f"ENDPOINT_DATA_{CONNECTION_ID}_SUBSCRIPTIONID": "sub-id",
        f"ENDPOINT_DATA_{CONNECTION_ID}_ENVIRONMENT": "AzureCloud",
        "ENDPOINT_AUTH_PARAMETER_SYSTEMVSSCONNECTION_ACCESSTOKEN": "job-access-token",
        "SYSTEM_OIDCREQUESTURI": "https://dev.azure.com/org/project/_apis/oidctoken",
    }


def run_wrapper(task_dir: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["node", str(task_dir / "index.js")],
        env=env,
        cwd=env["HOME"],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_inputs_and_connection_reach_python(
    staged_task: Path, tmp_path: Path, recorder: Path
) -> None:
    env = agent_environment(tmp_path, recorder)
    env.update(connection_variables())
    env.update(
        {
            "INPUT_ACTION": "STOP",
            "INPUT_JOBNAME": "orders",
            "INPUT_AZURESUBSCRIPTION": CONNECTION_ID,
            "INPUT_FLINKCONFIGURATION": "a=1\nb=2",
            "INPUT_CLIENTSECRET": "input-secret",
            "INPUT_NOTANINPUT": "ignored",
        }
    )
    completed = run_wrapper(staged_task, env)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    for secret in ("connection-secret", "input-secret", "job-access-token"):
        assert_masked_before_shown(completed.stdout, secret, "##vso[task.setsecret]")
        assert f"##vso[task.setsecret]{secret}" in completed.stdout
    assert "##vso[task.setsecret]tenant-id" not in completed.stdout
    record = json.loads((tmp_path / "record.json").read_text())

    assert record.pop("argv") == ["-I", "-m", "flink_task", "run"]
    expected = {
        key: value
        for key, value in connection_variables().items()
        if not key.startswith(f"ENDPOINT_AUTH_{CONNECTION_ID}")
    }
    expected[f"ENDPOINT_AUTH_SCHEME_{CONNECTION_ID}"] = "ServicePrincipal"
    expected.update(
        {
            "TF_BUILD": "True",
            "INPUT_ACTION": "STOP",
            "INPUT_JOBNAME": "orders",
            "INPUT_AZURESUBSCRIPTION": CONNECTION_ID,
            "INPUT_FLINKCONFIGURATION": "a=1\nb=2",
            "INPUT_CLIENTSECRET": "input-secret",
        }
    )
    assert record == expected


def test_certificate_masked_per_line(staged_task: Path, tmp_path: Path, recorder: Path) -> None:
    env = agent_environment(tmp_path, recorder)
    env.update({"INPUT_ACTION": "STOP", "INPUT_CLIENTCERTIFICATE": "line-one\nline-two\n"})
    completed = run_wrapper(staged_task, env)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert "##vso[task.setsecret]line-one\n" in completed.stdout
    assert "##vso[task.setsecret]line-two\n" in completed.stdout
    record = json.loads((tmp_path / "record.json").read_text())
    assert record["INPUT_CLIENTCERTIFICATE"] == "line-one\nline-two\n"


def test_without_connection(staged_task: Path, tmp_path: Path, recorder: Path) -> None:
    env = agent_environment(tmp_path, recorder)
    env.update({"INPUT_ACTION": "LIST", "INPUT_TENANTID": "t"})
    completed = run_wrapper(staged_task, env)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    record = json.loads((tmp_path / "record.json").read_text())
    assert not [name for name in record if name.startswith("ENDPOINT_")]
    assert record["INPUT_TENANTID"] == "t"


@pytest.mark.parametrize("code", [1, 2, 3])
def test_exit_code_propagated(
    staged_task: Path, tmp_path: Path, recorder: Path, code: int
) -> None:
    env = agent_environment(tmp_path, recorder)
    env.update({"INPUT_ACTION": "STOP", "RECORDER_EXIT": str(code)})
    completed = run_wrapper(staged_task, env)
    assert completed.returncode == code
    assert f"##vso[task.complete result=Failed;]flink-task exited with code {code}" in (
        completed.stdout
    )


def test_missing_python_reported(staged_task: Path, tmp_path: Path, recorder: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    node = shutil.which("node")
    assert node is not None
    (bin_dir / "node").symlink_to(node)
    env = agent_environment(tmp_path, recorder)
    del env["FLINK_TASK_PYTHON"]
    env["PATH"] = str(bin_dir)
    completed = run_wrapper(staged_task, env)
    assert completed.returncode == 2
    assert "Python 3.10 or later was not found" in completed.stdout


def wait_for_text(path: Path, text: str, process: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while text not in path.read_text(errors="replace"):
        if process.poll() is not None:
            raise AssertionError(f"exited with {process.returncode}: {path.read_text()}")
        if time.monotonic() > deadline:
            raise AssertionError(f"{text!r} not printed within {timeout} s")
        time.sleep(0.05)


@pytest.mark.parametrize("signal_number", [signal.SIGINT, signal.SIGTERM], ids=["INT", "TERM"])
def test_signal_forwarded(
    staged_task: Path, tmp_path: Path, recorder: Path, signal_number: int
) -> None:
    env = agent_environment(tmp_path, recorder)
    env.update({"INPUT_ACTION": "STOP", "RECORDER_WAIT": "1"})
    log_path = tmp_path / "wrapper.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            ["node", str(staged_task / "index.js")],
            env=env,
            cwd=env["HOME"],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for_text(log_path, "recorder: waiting", process, timeout=60)
        started = time.monotonic()
        process.send_signal(signal_number)
        process.wait(timeout=7.5)
        elapsed = time.monotonic() - started
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    output = log_path.read_text()
    assert process.returncode == 130, output
    assert f"recorder: got signal {int(signal_number)}" in output
    assert "##vso[task.complete result=Cancelled;]" in output
    assert elapsed < 7.5
