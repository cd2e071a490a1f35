"""The HDInsight target against a faked ARM: LROs, paging, filters, retries, stale results."""

from __future__ import annotations

import json
from typing import Any

import pytest
import responses
from azure.identity import ClientSecretCredential

from flink_task import hdinsight
from flink_task.arm import JobApiClient, odata_filter
from flink_task.errors import ActionFailedError, ArmError, CancelledError
from flink_task.request import build_run_request
from flink_task.waiting import Cancellation, Waiter
from tests.plugins.azure import (
    ARM,
    CLIENT_ID,
    CLIENT_SECRET,
    CLUSTER,
    CLUSTER_PATH,
    CLUSTER_POOL,
    JOBS_URL,
    RESOURCE_GROUP,
    RUN_JOB_URL,
    SUBSCRIPTION_ID,
    TENANT_ID,
    FakeJobApi,
    job,
)

OPERATION_URL = (
    f"{ARM}/subscriptions/{SUBSCRIPTION_ID}/providers/Microsoft.HDInsight/operations/op1"
)


def make_request(
    action: str = "SAVEPOINT", api_version: str = "2024-05-01-preview", **inputs: str
):
    raw = {
        "action": action,
        "jobName": "orders",
        "subscriptionId": SUBSCRIPTION_ID,
        "resourceGroup": RESOURCE_GROUP,
        "clusterPool": CLUSTER_POOL,
        "cluster": CLUSTER,
        "apiVersion": api_version,
        **inputs,
    }
    return build_run_request(raw)


def make_client(request: Any) -> JobApiClient:
    credential = ClientSecretCredential(TENANT_ID, CLIENT_ID, CLIENT_SECRET)
    return JobApiClient(
        request.target,
        credential,
        scope=f"{ARM}/.default",
        retry_backoff_factor=0.01,
        sleep=lambda _: None,
    )


def make_waiter(minutes: float = 30) -> Waiter:
    return Waiter(timeout_seconds=minutes * 60)


def test_run_job_200_is_final(fake_job_api: FakeJobApi, no_sleep: list[float]) -> None:
    request = make_request()
    fake_job_api.run_job_answers = [(200, {}, {"properties": job(action="SAVEPOINT")})]
    fake_job_api.lists = [
        [job(action="NEW", actionResult="SUCCESS", runId="old-run", status="RUNNING")],
        lambda run_id: [
            job(
                action="SAVEPOINT",
                actionResult="SUCCESS",
                runId=run_id,
                status="RUNNING",
                jobOutput="Savepoint completed. Path: file:/sp/1",
            )
        ],
    ]
    outcome = hdinsight.run_action(request, make_client(request), make_waiter())
    assert outcome.action_result == "SUCCESS"
    assert outcome.record is not None
    assert outcome.record["jobOutput"] == "Savepoint completed. Path: file:/sp/1"
    assert len(fake_job_api.posted) == 1


def test_run_job_202_polls_location_with_retry_after(
    fake_job_api: FakeJobApi, arm_mock: responses.RequestsMock, no_sleep: list[float]
) -> None:
    request = make_request(api_version="2023-06-01-preview")
    fake_job_api.run_job_answers = [(202, {"location": OPERATION_URL, "Retry-After": "3"}, None)]
    arm_mock.add(responses.GET, OPERATION_URL, status=202, headers={"Retry-After": "2"})
    arm_mock.add(responses.GET, OPERATION_URL, status=200, json={"properties": job()})
    fake_job_api.lists = [[], [job(action="SAVEPOINT", actionResult="SUCCESS")]]
    outcome = hdinsight.run_action(request, make_client(request), make_waiter())
    assert outcome.action_result == "SUCCESS"
    assert no_sleep[:2] == [3.0, 2.0]


def test_azure_async_operation_header_wins(
    fake_job_api: FakeJobApi, arm_mock: responses.RequestsMock, no_sleep: list[float]
) -> None:
    request = make_request(api_version="2023-06-01-preview")
    async_url = OPERATION_URL + "-async"
    fake_job_api.run_job_answers = [
        (202, {"location": OPERATION_URL, "Azure-AsyncOperation": async_url}, None)
    ]
    arm_mock.add(responses.GET, async_url, status=200, json={"status": "Succeeded"})
    fake_job_api.lists = [[], [job(action="SAVEPOINT", actionResult="SUCCESS")]]
    outcome = hdinsight.run_action(request, make_client(request), make_waiter())
    assert outcome.action_result == "SUCCESS"


def test_run_id_result_ends_operation_wait_early(
    fake_job_api: FakeJobApi, no_sleep: list[float]
) -> None:
    request = make_request()
    fake_job_api.run_job_answers = [(202, {"location": OPERATION_URL, "Retry-After": "5"}, None)]
    previous = job(action="NEW", actionResult="SUCCESS", runId="older", status="RUNNING")
    fake_job_api.lists = [
        [previous],
        [previous],
        lambda run_id: [job(action="SAVEPOINT", actionResult="IN_PROGRESS", runId=run_id)],
        lambda run_id: [job(action="SAVEPOINT", actionResult="SUCCESS", runId=run_id)],
    ]
    # OPERATION_URL is not registered: polling it would fail the test.
    outcome = hdinsight.run_action(request, make_client(request), make_waiter())
    assert outcome.action_result == "SUCCESS"
    assert sum(no_sleep) < 1.0


def test_stale_success_with_run_id_is_ignored(
    fake_job_api: FakeJobApi, no_sleep: list[float]
) -> None:
    request = make_request(action="STOP")
    fake_job_api.run_job_answers = [(202, {}, None)]
    previous = job(action="NEW", actionResult="SUCCESS", runId="older", status="RUNNING")
    fake_job_api.lists = [
        [previous],
        [previous],
        [previous],
        lambda run_id: [job(action="STOP", actionResult="IN_PROGRESS", runId=run_id)],
        lambda run_id: [
            job(action="STOP", actionResult="SUCCESS", runId=run_id, status="STOPPED")
        ],
    ]
    outcome = hdinsight.run_action(request, make_client(request), make_waiter())
    assert outcome.record is not None
    assert outcome.record["status"] == "STOPPED"
    assert outcome.record["runId"] == fake_job_api.run_id


def test_stale_success_without_run_id_waits_for_change(
    fake_job_api: FakeJobApi, no_sleep: list[float]
) -> None:
    request = make_request(action="STOP", api_version="2023-06-01-preview")
    assert request.run_id is None
    fake_job_api.run_job_answers = [(202, {}, None)]
    previous = job(action="NEW", actionResult="SUCCESS", status="RUNNING", jobId="j1")
    fake_job_api.lists = [
        [previous],
        [previous],
        [previous],
        [job(action="STOP", actionResult="SUCCESS", status="STOPPED", jobId="j1")],
    ]
    outcome = hdinsight.run_action(request, make_client(request), make_waiter())
    assert outcome.record is not None
    assert outcome.record["status"] == "STOPPED"
    assert "runId" not in fake_job_api.posted[0]["properties"]


def test_unchanged_record_accepted_after_settle(
    fake_job_api: FakeJobApi, no_sleep: list[float]
) -> None:
    request = make_request(action="LIST_SAVEPOINT", api_version="2023-06-01-preview")
    fake_job_api.run_job_answers = [(202, {}, None)]
    same = job(action="LIST_SAVEPOINT", actionResult="SUCCESS", status="RUNNING", jobOutput="a")
    fake_job_api.lists = [[same]]
    outcome = hdinsight.run_action(request, make_client(request), make_waiter())
    assert outcome.notes
    assert sum(no_sleep) >= hdinsight.SETTLE_SECONDS


def test_failed_action_is_reported(fake_job_api: FakeJobApi, no_sleep: list[float]) -> None:
    request = make_request(action="STOP")
    fake_job_api.run_job_answers = [(202, {}, None)]
    fake_job_api.lists = [
        [],
        lambda run_id: [
            job(
                action="STOP",
                actionResult="FAILED",
                runId=run_id,
                status="RUNNING",
                jobOutput="java.lang.IllegalStateException: no savepoint directory",
            )
        ],
    ]
    outcome = hdinsight.run_action(request, make_client(request), make_waiter())
    assert outcome.action_result == "FAILED"


def test_deadline_reached_carries_last_record(
    fake_job_api: FakeJobApi, no_sleep: list[float]
) -> None:
    request = make_request(action="STOP")
    fake_job_api.run_job_answers = [(202, {}, None)]
    fake_job_api.lists = [
        [],
        lambda run_id: [job(action="STOP", actionResult="IN_PROGRESS", runId=run_id)],
    ]
    with pytest.raises(hdinsight.WaitInterruptedError) as caught:
        hdinsight.run_action(request, make_client(request), make_waiter(minutes=1))
    assert caught.value.record is not None
    assert caught.value.record["actionResult"] == "IN_PROGRESS"
    assert "timed out" in str(caught.value)
    assert sum(no_sleep) == pytest.approx(60.0)
    assert max(no_sleep) <= 1.0  # within the first two minutes polls stay at or under 1 s


def test_cancellation_ends_wait(fake_job_api: FakeJobApi, no_sleep: list[float]) -> None:
    request = make_request(action="STOP")
    fake_job_api.run_job_answers = [(202, {}, None)]
    cancellation = Cancellation()
    polls = {"n": 0}

    def in_progress(run_id: str) -> list[dict[str, Any]]:
        polls["n"] += 1
        if polls["n"] == 3:
            cancellation.cancel("SIGINT")
        return [job(action="STOP", actionResult="IN_PROGRESS", runId=run_id)]

    fake_job_api.lists = [[], in_progress]
    waiter = Waiter(timeout_seconds=600, cancellation=cancellation)
    with pytest.raises(hdinsight.WaitInterruptedError) as caught:
        hdinsight.run_action(request, make_client(request), waiter)
    assert isinstance(caught.value.cause, CancelledError)
    assert "SIGINT" in str(caught.value)


def test_delete_done_when_record_gone(fake_job_api: FakeJobApi, no_sleep: list[float]) -> None:
    request = make_request(action="DELETE")
    fake_job_api.run_job_answers = [(202, {}, None)]
    existing = job(action="CANCEL", actionResult="SUCCESS", status="CANCELLED")
    fake_job_api.lists = [[existing], [existing], []]
    outcome = hdinsight.run_action(request, make_client(request), make_waiter())
    assert outcome.deleted


def test_filter_sent_where_version_has_it(fake_job_api: FakeJobApi, no_sleep: list[float]) -> None:
    request = make_request(action="SAVEPOINT")
    fake_job_api.run_job_answers = [(200, {}, None)]
    fake_job_api.lists = [
        [],
        lambda run_id: [job(action="SAVEPOINT", actionResult="SUCCESS", runId=run_id)],
    ]
    hdinsight.run_action(request, make_client(request), make_waiter())
    assert fake_job_api.list_queries[0]["$filter"] == ["jobName eq 'orders'"]
    assert fake_job_api.list_queries[0]["api-version"] == ["2024-05-01-preview"]


def test_no_filter_on_old_versions_and_paging(
    arm_mock: responses.RequestsMock, no_sleep: list[float]
) -> None:
    request = make_request(action="LIST_SAVEPOINT", api_version="2023-06-01-preview")
    page2 = f"{ARM}{CLUSTER_PATH}/jobs?api-version=2023-06-01-preview&$skipToken=2"
    seen_queries: list[str] = []

    def jobs(req: Any) -> tuple[int, dict[str, str], str]:
        seen_queries.append(req.url)
        if "skipToken" in req.url:
            items = [{"properties": job("orders", actionResult="SUCCESS", action="NEW")}]
            return 200, {}, json.dumps({"value": items})
        items = [{"properties": job("other", actionResult="SUCCESS")}]
        return 200, {}, json.dumps({"value": items, "nextLink": page2})

    arm_mock.add_callback(responses.GET, JOBS_URL, callback=jobs)
    client = make_client(request)
    assert client.find_job("orders") == job("orders", actionResult="SUCCESS", action="NEW")
    assert all("filter" not in url for url in seen_queries)
    assert len(seen_queries) == 2


def test_reads_retried_on_429_and_5xx(
    arm_mock: responses.RequestsMock, no_sleep: list[float]
) -> None:
    request = make_request()
    arm_mock.add(responses.GET, JOBS_URL, status=429, headers={"Retry-After": "0"}, json={})
    arm_mock.add(responses.GET, JOBS_URL, status=503, json={})
    arm_mock.add(responses.GET, JOBS_URL, status=200, json={"value": []})
    assert make_client(request).list_jobs() == []


def test_run_job_never_sent_twice_on_5xx(
    arm_mock: responses.RequestsMock, fake_job_api: FakeJobApi, no_sleep: list[float]
) -> None:
    request = make_request()
    fake_job_api.lists = [[]]
    error = {"error": {"code": "InternalServerError", "message": "boom"}}
    fake_job_api.run_job_answers = [(503, {"Retry-After": "1", "x-ms-request-id": "req-1"}, error)]
    with pytest.raises(ArmError) as caught:
        hdinsight.run_action(request, make_client(request), make_waiter())
    assert len(fake_job_api.posted) == 1
    assert caught.value.status == 503
    assert caught.value.request_id == "req-1"


@pytest.mark.parametrize(
    ("status", "code", "hint"),
    [
        (401, "InvalidAuthenticationToken", "role assignment"),
        (403, "AuthorizationFailed", "role assignment"),
        (404, "ResourceNotFound", "resource path"),
        (409, "Conflict", "check it with flink-task jobs"),
        (400, "BadRequest", ""),
    ],
)
def test_arm_error_formatting(
    fake_job_api: FakeJobApi, no_sleep: list[float], status: int, code: str, hint: str
) -> None:
    request = make_request()
    fake_job_api.lists = [[]]
    body = {"error": {"code": code, "message": f"message for {status}"}}
    fake_job_api.run_job_answers = [(status, {"x-ms-request-id": "rid-9"}, body)]
    with pytest.raises(ArmError) as caught:
        hdinsight.run_action(request, make_client(request), make_waiter())
    text = str(caught.value)
    assert f"HTTP {status} {code}" in text
    assert f"message for {status}" in text
    assert "x-ms-request-id rid-9" in text
    assert hint in text


def test_dropped_answer_to_run_job_is_not_resent(
    arm_mock: responses.RequestsMock, no_sleep: list[float]
) -> None:
    import requests
    from urllib3.exceptions import ProtocolError

    request = make_request()
    arm_mock.add(responses.GET, JOBS_URL, json={"value": []})
    arm_mock.add(
        responses.POST,
        RUN_JOB_URL,
        body=requests.exceptions.ConnectionError(
            ProtocolError("Connection aborted.", ConnectionResetError("reset by peer"))
        ),
    )
    with pytest.raises(ActionFailedError) as caught:
        hdinsight.run_action(request, make_client(request), make_waiter())
    assert "not sent again" in str(caught.value)
    posts = [
        call
        for call in arm_mock.calls
        if call.request.method == "POST" and "runJob" in call.request.url
    ]
    assert len(posts) == 1


def test_wait_false_reports_in_progress(fake_job_api: FakeJobApi, no_sleep: list[float]) -> None:
    request = make_request(action="STOP", wait="false")
    fake_job_api.run_job_answers = [(202, {"location": OPERATION_URL}, None)]
    fake_job_api.lists = [[job(action="NEW", actionResult="SUCCESS", status="RUNNING")]]
    outcome = hdinsight.run_action(request, make_client(request), make_waiter())
    assert outcome.action_result == "IN_PROGRESS"
    assert not outcome.finished


def test_odata_filter_quotes() -> None:
    assert odata_filter("jobName", "o'brien") == "jobName eq 'o''brien'"


def test_run_job_resent_only_when_connection_failed(
    fake_job_api: FakeJobApi, arm_mock: responses.RequestsMock, no_sleep: list[float]
) -> None:
    import requests

    request = make_request()
    refused = requests.exceptions.ConnectionError("[Errno 111] Connection refused")
    fake_job_api.run_job_answers = [refused, (200, {}, None)]
    fake_job_api.lists = [
        [],
        lambda run_id: [job(action="SAVEPOINT", actionResult="SUCCESS", runId=run_id)],
    ]
    outcome = hdinsight.run_action(request, make_client(request), make_waiter())
    assert outcome.action_result == "SUCCESS"
    assert len(fake_job_api.posted) == 1


def test_outage_during_wait_is_retried(fake_job_api: FakeJobApi, no_sleep: list[float]) -> None:
    import requests

    request = make_request(action="STOP")
    fake_job_api.run_job_answers = [(202, {}, None)]
    calls = {"n": 0}

    def flaky(run_id: str) -> list[dict[str, Any]]:
        calls["n"] += 1
        if calls["n"] <= 12:  # more failures than azure-core retries on its own
            raise requests.exceptions.ConnectionError("[Errno 111] Connection refused")
        return [job(action="STOP", actionResult="SUCCESS", runId=run_id, status="STOPPED")]

    fake_job_api.lists = [[], flaky]
    outcome = hdinsight.run_action(request, make_client(request), make_waiter())
    assert outcome.action_result == "SUCCESS"
    assert calls["n"] > 12


def test_error_after_submit_keeps_last_record(
    fake_job_api: FakeJobApi, no_sleep: list[float]
) -> None:
    request = make_request(action="STOP")
    fake_job_api.run_job_answers = [(202, {}, None)]
    forbidden = (403, {}, {"error": {"code": "AuthorizationFailed", "message": "no"}})
    fake_job_api.lists = [
        [],
        lambda run_id: [job(action="STOP", actionResult="IN_PROGRESS", runId=run_id)],
        forbidden,
    ]
    with pytest.raises(hdinsight.WaitInterruptedError) as caught:
        hdinsight.run_action(request, make_client(request), make_waiter())
    assert isinstance(caught.value.cause, ArmError)
    assert caught.value.record is not None
    assert caught.value.record["actionResult"] == "IN_PROGRESS"


def test_lost_operation_falls_back_to_jobs_list(
    fake_job_api: FakeJobApi, arm_mock: responses.RequestsMock, no_sleep: list[float]
) -> None:
    request = make_request(action="SAVEPOINT", api_version="2023-06-01-preview")
    fake_job_api.run_job_answers = [(202, {"location": OPERATION_URL}, None)]
    arm_mock.add(
        responses.GET,
        OPERATION_URL,
        status=404,
        json={"error": {"code": "OperationNotFound", "message": "gone"}},
    )
    fake_job_api.lists = [
        [job(action="NEW", actionResult="SUCCESS", status="RUNNING")],
        [job(action="SAVEPOINT", actionResult="SUCCESS", status="RUNNING", jobOutput="x")],
    ]
    outcome = hdinsight.run_action(request, make_client(request), make_waiter())
    assert outcome.action_result == "SUCCESS"
