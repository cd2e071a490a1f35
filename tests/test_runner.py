"""Whole runs of the task through ``main``, with ARM and Azure AD faked at the HTTP edge."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

import pytest
import responses

from flink_task.cli import main
from tests.plugins.azure import CLIENT_SECRET, FakeJobApi, base_inputs, job
from tests.report.runners import (
    azure_commands,
    azure_output_variables,
    github_commands,
    parse_github_output_file,
)

JAR_INPUTS = {
    "jobJarDirectory": "abfs://jars@account.dfs.core.windows.net/jars",
    "jarName": "job.jar",
    "entryClass": "com.example.Job",
}
ACTION_INPUTS: dict[str, dict[str, str]] = {
    "NEW": JAR_INPUTS,
    "UPDATE": {"jarName": "job-v2.jar"},
    "STATELESS_UPDATE": {"jarName": "job-v2.jar"},
    "LAST_STATE_UPDATE": {"jarName": "job-v2.jar"},
    "START": {"savepointName": "savepoint-1"},
    "STOP": {"drain": "true"},
    "SAVEPOINT": {},
    "LIST_SAVEPOINT": {},
    "CANCEL": {},
    "RE_LAUNCH": {},
}
STATUS_AFTER = {
    "NEW": "RUNNING",
    "UPDATE": "RUNNING",
    "STATELESS_UPDATE": "RUNNING",
    "LAST_STATE_UPDATE": "RUNNING",
    "START": "RUNNING",
    "STOP": "STOPPED",
    "SAVEPOINT": "RUNNING",
    "LIST_SAVEPOINT": "RUNNING",
    "CANCEL": "CANCELLED",
    "RE_LAUNCH": "RUNNING",
}


def set_env(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)


def final_record(action: str, run_id: str | None, **extra: Any) -> dict[str, Any]:
    output = {
        "SAVEPOINT": "Savepoint completed. Path: file:/sp/savepoint-2",
        "STOP": "Savepoint completed. Path: file:/sp/savepoint-2",
        "LIST_SAVEPOINT": "file:/sp/savepoint-2\nfile:/sp/savepoint-1",
    }.get(action, "Job 0123 is RUNNING")
    return job(
        action=action,
        actionResult="SUCCESS",
        runId=run_id,
        status=STATUS_AFTER.get(action, "RUNNING"),
        jobId="0123456789abcdef0123456789abcdef",
        jobOutput=output,
        lastSavePoint="file:/sp/savepoint-2",
        **extra,
    )


@pytest.mark.parametrize("action", sorted(ACTION_INPUTS))
def test_action_happy_path_console(
    action: str,
    fake_job_api: FakeJobApi,
    no_sleep: list[float],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    set_env(monkeypatch, base_inputs(action=action, jobName="orders", **ACTION_INPUTS[action]))
    fake_job_api.run_job_answers = [(202, {}, None)]
    fake_job_api.lists = [[], lambda run_id: [final_record(action, run_id)]]

    assert main([]) == 0

    out, err = capsys.readouterr()
    record = json.loads(out)
    assert record["actionResult"] == "SUCCESS"
    assert record["status"] == STATUS_AFTER[action]
    assert fake_job_api.posted[0]["properties"]["action"] == action
    assert CLIENT_SECRET not in out + err


def test_delete_happy_path(
    fake_job_api: FakeJobApi, no_sleep: list[float], monkeypatch: pytest.MonkeyPatch
) -> None:
    set_env(monkeypatch, base_inputs(action="DELETE", jobName="orders"))
    fake_job_api.run_job_answers = [(202, {}, None)]
    cancelled = job(action="CANCEL", actionResult="SUCCESS", status="CANCELLED")
    fake_job_api.lists = [[cancelled], []]
    assert main([]) == 0


def test_flags_win_over_environment(
    fake_job_api: FakeJobApi, no_sleep: list[float], monkeypatch: pytest.MonkeyPatch
) -> None:
    set_env(monkeypatch, base_inputs(action="CANCEL", jobName="other"))
    fake_job_api.run_job_answers = [(200, {}, None)]
    fake_job_api.lists = [[], lambda run_id: [final_record("SAVEPOINT", run_id)]]
    assert main(["--action", "SAVEPOINT", "--job-name", "orders"]) == 0
    assert fake_job_api.posted[0]["properties"]["action"] == "SAVEPOINT"
    assert fake_job_api.posted[0]["properties"]["jobName"] == "orders"


def test_failed_action_exits_1_with_output(
    fake_job_api: FakeJobApi,
    no_sleep: list[float],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    set_env(monkeypatch, base_inputs(action="STOP", jobName="orders"))
    fake_job_api.run_job_answers = [(202, {}, None)]
    failure = "java.lang.IllegalStateException: savepoint directory is not set"
    fake_job_api.lists = [
        [],
        lambda run_id: [
            job(action="STOP", actionResult="FAILED", runId=run_id, jobOutput=failure)
        ],
    ]
    assert main([]) == 1
    out, err = capsys.readouterr()
    assert json.loads(out)["actionResult"] == "FAILED"
    assert failure in err


def test_timeout_exits_1_in_progress(
    fake_job_api: FakeJobApi,
    no_sleep: list[float],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    set_env(monkeypatch, base_inputs(action="STOP", jobName="orders", timeoutMinutes="1"))
    fake_job_api.run_job_answers = [(202, {}, None)]
    fake_job_api.lists = [
        [],
        lambda run_id: [job(action="STOP", actionResult="IN_PROGRESS", runId=run_id)],
    ]
    assert main([]) == 1
    out, err = capsys.readouterr()
    assert json.loads(out)["actionResult"] == "IN_PROGRESS"
    assert "timed out" in err
    assert "may still be running" in err


def test_sigint_during_wait_exits_130(
    fake_job_api: FakeJobApi,
    no_sleep: list[float],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    set_env(monkeypatch, base_inputs(action="STOP", jobName="orders"))
    fake_job_api.run_job_answers = [(202, {}, None)]
    polls = {"n": 0}

    def in_progress(run_id: str) -> list[dict[str, Any]]:
        polls["n"] += 1
        if polls["n"] == 2:
            os.kill(os.getpid(), signal.SIGINT)
        return [job(action="STOP", actionResult="IN_PROGRESS", runId=run_id, status="RUNNING")]

    fake_job_api.lists = [[], in_progress]
    assert main([]) == 130
    out, err = capsys.readouterr()
    assert json.loads(out)["status"] == "RUNNING"
    assert "SIGINT" in err
    assert "may still be running on the server" in err


def test_invalid_input_exits_2_before_network(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    set_env(monkeypatch, base_inputs(action="STOP", jobName="Orders"))
    with responses.RequestsMock(assert_all_requests_are_fired=True):
        assert main([]) == 2
    _, err = capsys.readouterr()
    assert "jobName" in err
    assert "'Orders'" in err
    assert "Traceback" not in err


def test_dry_run_prints_redacted_body(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    env = base_inputs(
        action="NEW",
        jobName="orders",
        args="--db-password hunter2222",
        flinkConfiguration="fs.azure.account.key.acc.dfs.core.windows.net=STORAGEKEY123",
        **JAR_INPUTS,
    )
    set_env(monkeypatch, env)
    with responses.RequestsMock(assert_all_requests_are_fired=True):
        assert main(["--dry-run"]) == 0
    out, err = capsys.readouterr()
    plan = json.loads(out)
    assert plan["method"] == "POST"
    assert plan["url"].endswith("/clusters/cluster1/runJob?api-version=2024-05-01-preview")
    properties = plan["body"]["properties"]
    assert properties["flinkConfiguration"]["parallelism"] == "2"
    assert (
        properties["flinkConfiguration"]["fs.azure.account.key.acc.dfs.core.windows.net"] == "***"
    )
    assert "hunter2222" not in out + err
    assert "STORAGEKEY123" not in out + err
    assert CLIENT_SECRET not in out + err


def test_github_outputs_and_summary(
    fake_job_api: FakeJobApi,
    no_sleep: list[float],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    output_file = tmp_path / "output"
    summary_file = tmp_path / "summary"
    output_file.touch()
    summary_file.touch()
    env = base_inputs(action="LIST_SAVEPOINT", jobName="orders")
    env.update(
        GITHUB_ACTIONS="true",
        GITHUB_OUTPUT=str(output_file),
        GITHUB_STEP_SUMMARY=str(summary_file),
    )
    set_env(monkeypatch, env)
    fake_job_api.run_job_answers = [(202, {}, None)]
    fake_job_api.lists = [[], lambda run_id: [final_record("LIST_SAVEPOINT", run_id)]]

    assert main([]) == 0

    outputs = parse_github_output_file(output_file.read_text(encoding="utf-8"))
    assert outputs["actionResult"] == "SUCCESS"
    assert outputs["jobOutput"] == "file:/sp/savepoint-2\nfile:/sp/savepoint-1"
    assert json.loads(outputs["savepoints"]) == ["file:/sp/savepoint-2", "file:/sp/savepoint-1"]
    assert json.loads(outputs["job"])["jobName"] == "orders"
    assert "SUCCESS" in summary_file.read_text(encoding="utf-8")
    out, _ = capsys.readouterr()
    masks = [c.data for c in github_commands(out) if c.name == "add-mask"]
    assert CLIENT_SECRET in masks
    assert CLIENT_SECRET not in out.replace(f"::add-mask::{CLIENT_SECRET}", "")


def test_azure_devops_outputs_and_failure(
    fake_job_api: FakeJobApi,
    no_sleep: list[float],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    env = base_inputs(action="STOP", jobName="orders")
    env.update(TF_BUILD="True", AGENT_TEMPDIRECTORY=str(tmp_path))
    set_env(monkeypatch, env)
    fake_job_api.run_job_answers = [(202, {}, None)]
    failure = "error 100%; see [logs]\n##vso[task.setvariable variable=x]evil"
    fake_job_api.lists = [
        [],
        lambda run_id: [
            job(action="STOP", actionResult="FAILED", runId=run_id, jobOutput=failure)
        ],
    ]
    assert main([]) == 1
    out, _ = capsys.readouterr()
    variables = azure_output_variables(out)
    assert variables["actionResult"] == "FAILED"
    assert variables["jobOutput"] == failure
    assert "x" not in variables
    names = [c.name for c in azure_commands(out)]
    assert "task.logissue" in names
    assert "task.complete" in names


def test_jobs_command_prints_table(
    fake_job_api: FakeJobApi, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    set_env(monkeypatch, base_inputs())
    fake_job_api.expect_no_run_job()
    fake_job_api.lists = [
        [
            job("orders", status="RUNNING", actionResult="SUCCESS", action="NEW"),
            job("payments", status="STOPPED", actionResult="SUCCESS", action="STOP"),
        ]
    ]
    assert main(["jobs"]) == 0
    out, _ = capsys.readouterr()
    lines = out.splitlines()
    assert lines[0].split()[:2] == ["jobName", "status"]
    assert lines[1].split()[:2] == ["orders", "RUNNING"]
    assert lines[2].split()[:2] == ["payments", "STOPPED"]


def test_list_action_json(
    fake_job_api: FakeJobApi, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    set_env(monkeypatch, base_inputs(action="LIST", jobName="orders"))
    fake_job_api.expect_no_run_job()
    fake_job_api.lists = [[job("orders", status="RUNNING", actionResult="SUCCESS")]]
    assert main([]) == 0
    out, _ = capsys.readouterr()
    assert json.loads(out)["jobs"][0]["jobName"] == "orders"
    assert fake_job_api.list_queries[0]["$filter"] == ["jobName eq 'orders'"]


def test_arm_error_exits_1_with_request_id(
    fake_job_api: FakeJobApi,
    no_sleep: list[float],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    set_env(monkeypatch, base_inputs(action="STOP", jobName="orders"))
    fake_job_api.lists = [[]]
    body = {"error": {"code": "AuthorizationFailed", "message": "::error::no access"}}
    fake_job_api.run_job_answers = [(403, {"x-ms-request-id": "abc-123"}, body)]
    assert main([]) == 1
    _, err = capsys.readouterr()
    assert "HTTP 403 AuthorizationFailed" in err
    assert "abc-123" in err
    assert "role assignment" in err


def test_usage_error_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["run", "--no-such-flag"])
    assert caught.value.code == 2


def test_secret_has_no_flag(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["run", "--client-secret", "x"])
    assert main(["--help"]) == 0


def test_sign_in_failure_sends_nothing(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.plugins.azure import AUTHORITY, JOBS_URL, TENANT_ID

    set_env(monkeypatch, base_inputs(action="STOP", jobName="orders"))
    base = f"{AUTHORITY}/{TENANT_ID}"
    aad_error = {
        "error": "invalid_client",
        "error_description": "AADSTS7000215: Invalid client secret provided.",
        "error_codes": [7000215],
    }
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.add(
            responses.GET,
            f"{base}/v2.0/.well-known/openid-configuration",
            json={
                "token_endpoint": f"{base}/oauth2/v2.0/token",
                "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
                "issuer": f"{base}/v2.0",
            },
        )
        mock.add(responses.POST, f"{base}/oauth2/v2.0/token", status=401, json=aad_error)
        mock.add(
            responses.GET,
            "https://login.microsoftonline.com/common/discovery/instance",
            json={
                "tenant_discovery_endpoint": f"{base}/v2.0/.well-known/openid-configuration",
                "api-version": "1.1",
                "metadata": [],
            },
        )
        jobs = mock.add(responses.GET, JOBS_URL, json={"value": []})
        assert main([]) == 1
        assert jobs.call_count == 0
        posts = [call for call in mock.calls if "runJob" in call.request.url]
        assert posts == []
    _, err = capsys.readouterr()
    assert "AADSTS7000215" in err
    assert "runJob was sent" not in err
    assert CLIENT_SECRET not in err


def test_error_after_submit_writes_outputs(
    fake_job_api: FakeJobApi,
    no_sleep: list[float],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    set_env(monkeypatch, base_inputs(action="STOP", jobName="orders"))
    fake_job_api.run_job_answers = [(202, {}, None)]
    running = job(action="NEW", actionResult="SUCCESS", status="RUNNING", runId="older")
    forbidden = (403, {}, {"error": {"code": "AuthorizationFailed", "message": "role removed"}})
    fake_job_api.lists = [[running], forbidden]
    assert main([]) == 1
    out, err = capsys.readouterr()
    assert json.loads(out)["actionResult"] == "IN_PROGRESS"
    assert "It was submitted" in err
    assert "AuthorizationFailed" in err


def test_unreachable_endpoint_exits_1(
    arm_mock: responses.RequestsMock,
    no_sleep: list[float],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import requests

    from tests.plugins.azure import JOBS_URL

    set_env(monkeypatch, base_inputs(action="STOP", jobName="orders"))
    refused = requests.exceptions.ConnectionError("[Errno 111] Connection refused")
    for _ in range(4):  # the first try and azure-core's three connection retries
        arm_mock.add(responses.GET, JOBS_URL, body=refused)
    monkeypatch.setattr("azure.core.pipeline.policies.RetryPolicy.sleep", lambda *a, **k: None)
    assert main([]) == 1
    _, err = capsys.readouterr()
    assert "request failed" in err
    assert "Traceback" not in err
