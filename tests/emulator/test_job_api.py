"""Request checks of the job API: versions, bodies, paths, methods and the runJob operation.

The actions here (LIST_SAVEPOINT, DELETE on stopped jobs) run through the real engine without
reaching Flink, so no Flink cluster is needed.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from flink_task.emulator import Emulator
from flink_task.emulator.operations import OperationStore
from tests.emulator.conftest import (
    ALL_VERSIONS,
    ELEVEN_ACTION_VERSIONS,
    NINE_ACTION_VERSIONS,
    ArmClient,
    offline_cluster,
    seed_record,
    stopped_record,
)


def assert_arm_error(response: requests.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["x-ms-request-id"]
    error = response.json()["error"]
    assert error["code"] == code, error
    assert error["message"]
    return dict(error)


def test_published_versions_accepted(arm: ArmClient) -> None:
    for version in ALL_VERSIONS:
        response = arm.list_jobs(api_version=version)

        assert response.status_code == 200, version
        assert "value" in response.json(), version


def test_unknown_version_400(arm: ArmClient) -> None:
    for version in ("2021-09-15-preview", "2024-05-01-PREVIEW", "latest"):
        response = arm.list_jobs(api_version=version)

        error = assert_arm_error(response, 400, "InvalidApiVersionParameter")
        assert "2024-05-01-preview" in error["message"]


def test_missing_version_400(arm: ArmClient) -> None:
    response = arm.request("GET", f"{arm.cluster_url()}/jobs")

    assert_arm_error(response, 400, "MissingApiVersionParameter")


def test_run_job_version_checked(arm: ArmClient) -> None:
    response = arm.run_job({"jobName": "any", "action": "STOP"}, api_version="2020-01-01")

    assert_arm_error(response, 400, "InvalidApiVersionParameter")


@pytest.mark.parametrize(
    ("properties", "target"),
    [
        ({"jobType": "SparkJob", "jobName": "a", "action": "STOP"}, "properties.jobType"),
        ({"jobName": "a"}, "properties.action"),
        ({"jobName": "a", "action": "stop"}, "properties.action"),
        ({"jobName": "a", "action": "RESTART"}, "properties.action"),
        ({"action": "STOP"}, "properties.jobName"),
        ({"jobName": "Orders", "action": "STOP"}, "properties.jobName"),
        ({"jobName": "orders-", "action": "STOP"}, "properties.jobName"),
        ({"jobName": "a" * 64, "action": "STOP"}, "properties.jobName"),
        ({"jobName": "orders\n", "action": "STOP"}, "properties.jobName"),
        ({"jobName": "../etc", "action": "STOP"}, "properties.jobName"),
        ({"jobName": 7, "action": "STOP"}, "properties.jobName"),
        ({"jobName": "a", "action": "STOP", "args": ["--x"]}, "properties.args"),
        ({"jobName": "a", "action": "STOP", "jarName": 1}, "properties.jarName"),
        (
            {"jobName": "a", "action": "NEW", "flinkConfiguration": {"parallelism": 2}},
            "properties.flinkConfiguration.parallelism",
        ),
        (
            {"jobName": "a", "action": "NEW", "flinkConfiguration": ["parallelism"]},
            "properties.flinkConfiguration",
        ),
        ({"jobName": "a", "action": "STOP", "savepointName": "x"}, "properties.savepointName"),
        ({"jobName": "a", "action": "STOP", "runId": ""}, "properties.runId"),
        ({"jobName": "a", "action": "STOP", "runId": 5}, "properties.runId"),
    ],
)
def test_invalid_body_400(arm: ArmClient, properties: dict[str, Any], target: str) -> None:
    response = arm.run_job(properties)

    error = assert_arm_error(response, 400, "InvalidRequestContent")
    assert error["target"] == target


def test_body_shape_errors(arm: ArmClient) -> None:
    url = f"{arm.cluster_url()}/runJob?api-version=2024-05-01"
    cases = [
        (b"{not json", "application/json"),
        (b"[]", "application/json"),
        (b'{"properties": "FlinkJob"}', "application/json"),
        (b'{"kind": "x", "properties": {}}', "application/json"),
        (b"\xff\xfe", "application/json"),
    ]
    for body, content_type in cases:
        response = arm.request("POST", url, data=body, headers={"Content-Type": content_type})

        assert_arm_error(response, 400, "InvalidRequestContent")


def test_non_json_content_type_415(arm: ArmClient) -> None:
    url = f"{arm.cluster_url()}/runJob?api-version=2024-05-01"

    response = arm.request(
        "POST",
        url,
        data="jobName=a",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )

    assert_arm_error(response, 415, "UnsupportedMediaType")


def test_newer_actions_only_on_newer_versions(arm: ArmClient) -> None:
    for version in NINE_ACTION_VERSIONS:
        for action in ("LAST_STATE_UPDATE", "RE_LAUNCH"):
            response = arm.run_job({"jobName": "a", "action": action}, api_version=version)

            error = assert_arm_error(response, 400, "InvalidRequestContent")
            assert error["target"] == "properties.action"


def test_run_id_only_on_newer_versions(arm: ArmClient) -> None:
    for version in NINE_ACTION_VERSIONS:
        response = arm.run_job(
            {"jobName": "a", "action": "STOP", "runId": "r-1"}, api_version=version
        )

        error = assert_arm_error(response, 400, "InvalidRequestContent")
        assert error["target"] == "properties.runId"


def test_read_only_fields_ignored(offline_emulator: Emulator, arm: ArmClient) -> None:
    seed_record(offline_emulator, stopped_record("readonly"))

    job = arm.run_to_end(
        {
            "jobName": "readonly",
            "action": "LIST_SAVEPOINT",
            "status": "RUNNING",
            "jobId": "f" * 32,
            "actionResult": "SUCCESS",
        }
    )

    assert job["properties"]["status"] == "STOPPED"
    assert job["properties"]["jobId"] == "a" * 32


def test_unknown_resources_404(offline_emulator: Emulator, arm: ArmClient) -> None:
    base = offline_emulator.base_url
    subscription = offline_emulator.subscription_id
    group = offline_emulator.resource_group
    provider = "providers/Microsoft.HDInsight/clusterpools"
    cases = [
        (f"/subscriptions/{'1' * 8}-0000-0000-0000-{'0' * 12}/resourceGroups/{group}/{provider}/"
         "pool1/clusters/cluster1/jobs", "SubscriptionNotFound"),
        (f"/subscriptions/{subscription}/resourceGroups/other/{provider}/pool1/clusters/"
         "cluster1/jobs", "ResourceGroupNotFound"),
        (f"/subscriptions/{subscription}/resourceGroups/{group}/{provider}/pool1/clusters/"
         "cluster9/jobs", "ResourceNotFound"),
        (f"/subscriptions/{subscription}/resourceGroups/{group}/{provider}/pool2/clusters/"
         "cluster1/jobs", "ResourceNotFound"),
        (f"/subscriptions/{subscription}/resourceGroups/{group}/{provider}/pool2/clusters/"
         "cluster1/jobs", "ResourceNotFound"),
        (f"/subscriptions/{subscription}/resourceGroups/{group}/{provider}/pool3/clusters/"
         "other/jobs", "ResourceNotFound"),
        (f"/subscriptions/{subscription}/resourceGroups/{group}/{provider}/pool1/clusters/"
         "cluster1/jobs/orders", "NotFound"),
        (f"/subscriptions/{subscription}/resourceGroups/{group}/{provider}/pool1/clusters/"
         "cluster1/savepoints", "NotFound"),
        (f"/subscriptions/{subscription}/resourceGroups/{group}/providers/Microsoft.Compute/"
         "clusterpools/pool1/clusters/cluster1/jobs", "NotFound"),
        (f"/subscriptions/{subscription}/resourceGroups/{group}/{provider}/pool1/clusters/"
         f"cluster1/operationresults/{'0' * 32}", "OperationNotFound"),
        (f"/subscriptions/{subscription}/resourceGroups/{group}/{provider}/pool1/clusters/"
         "cluster1/operationresults/..%2F..%2Fidentity", "OperationNotFound"),
    ]  # fmt: skip
    for path, code in cases:
        response = arm.request("GET", f"{base}{path}", params={"api-version": "2024-05-01"})

        assert_arm_error(response, 404, code)


def test_unknown_cluster_404_on_run_job(offline_emulator: Emulator, arm: ArmClient) -> None:
    url = arm.cluster_url(cluster="cluster9") + "/runJob"

    response = arm.request(
        "POST",
        url,
        params={"api-version": "2024-05-01"},
        json={"properties": {"jobType": "FlinkJob", "jobName": "a", "action": "STOP"}},
    )

    error = assert_arm_error(response, 404, "ResourceNotFound")
    assert "cluster9" in error["message"]


def test_path_outside_api_404(offline_emulator: Emulator, arm: ArmClient) -> None:
    response = arm.request("GET", f"{offline_emulator.base_url}/")

    assert_arm_error(response, 404, "NotFound")


def test_segment_names_case_insensitive(offline_emulator: Emulator, arm: ArmClient) -> None:
    url = (
        f"{offline_emulator.base_url}/SUBSCRIPTIONS/{offline_emulator.subscription_id.upper()}"
        f"/resourcegroups/{offline_emulator.resource_group.upper()}/providers/"
        "microsoft.hdinsight/clusterPools/POOL1/Clusters/Cluster1/JOBS"
    )

    response = arm.request("GET", url, params={"api-version": "2024-05-01"})

    assert response.status_code == 200, response.text


def test_wrong_method_405(arm: ArmClient) -> None:
    cases = [
        ("GET", "runJob", "POST"),
        ("PUT", "runJob", "POST"),
        ("POST", "jobs", "GET"),
        ("DELETE", "jobs", "GET"),
    ]
    for method, operation, allowed in cases:
        url = f"{arm.cluster_url()}/{operation}?api-version=2024-05-01"

        response = arm.request(method, url, json={})

        assert_arm_error(response, 405, "MethodNotAllowed")
        assert response.headers["Allow"] == allowed


def test_missing_job_404(arm: ArmClient) -> None:
    response = arm.run_job({"jobName": "never-created", "action": "STOP"})

    assert_arm_error(response, 404, "JobNotFound")


def test_new_on_existing_job_409(offline_emulator: Emulator, arm: ArmClient) -> None:
    seed_record(offline_emulator, stopped_record("taken"))

    response = arm.run_job(
        {
            "jobName": "taken",
            "action": "NEW",
            "jobJarDirectory": "/srv/jars",
            "jarName": "taken.jar",
            "entryClass": "org.example.Job",
        }
    )

    assert_arm_error(response, 409, "Conflict")


def test_action_while_in_progress_409(offline_emulator: Emulator, arm: ArmClient) -> None:
    seed_record(
        offline_emulator, stopped_record("busy", action="STOP", actionResult="IN_PROGRESS")
    )

    response = arm.run_job({"jobName": "busy", "action": "LIST_SAVEPOINT"})

    error = assert_arm_error(response, 409, "Conflict")
    assert "in progress" in error["message"]


def test_run_job_returns_202_location(offline_emulator: Emulator, arm: ArmClient) -> None:
    seed_record(offline_emulator, stopped_record("lro"))

    accepted = arm.run_job({"jobName": "lro", "action": "LIST_SAVEPOINT"})

    assert accepted.status_code == 202, accepted.text
    assert accepted.content == b""
    assert accepted.headers["Retry-After"] == "1"
    assert accepted.headers["x-ms-request-id"]
    location = accepted.headers["location"]
    assert location.startswith(f"{arm.cluster_url().replace('clusterpools', 'clusterPools')}/")
    assert "api-version=2024-05-01-preview" in location
    final = arm.wait_for_operation(accepted)
    assert final.status_code == 200


def test_operation_result_is_cluster_job(offline_emulator: Emulator, arm: ArmClient) -> None:
    seed_record(offline_emulator, stopped_record("listing"))

    job = arm.run_to_end({"jobName": "listing", "action": "LIST_SAVEPOINT"})

    assert job["id"].endswith("/clusterPools/pool1/clusters/cluster1/jobs/listing")
    assert job["id"].startswith(f"/subscriptions/{offline_emulator.subscription_id}/")
    assert job["name"] == "listing"
    assert job["type"] == "Microsoft.HDInsight/clusterPools/clusters/jobs"
    properties = job["properties"]
    assert properties["jobType"] == "FlinkJob"
    assert properties["action"] == "LIST_SAVEPOINT"
    assert properties["actionResult"] == "SUCCESS"
    assert properties["jobOutput"] == "file:/savepoints/listing/savepoint-1"
    assert properties["status"] == "STOPPED"
    assert "savepoints" not in properties


def test_run_id_per_version(offline_emulator: Emulator, arm: ArmClient) -> None:
    seed_record(offline_emulator, stopped_record("runs"))
    for version in ELEVEN_ACTION_VERSIONS:
        sent = arm.run_to_end(
            {"jobName": "runs", "action": "LIST_SAVEPOINT", "runId": f"given-{version}"},
            api_version=version,
        )
        generated = arm.run_to_end(
            {"jobName": "runs", "action": "LIST_SAVEPOINT"}, api_version=version
        )

        assert sent["properties"]["runId"] == f"given-{version}"
        assert generated["properties"]["runId"]
        assert generated["properties"]["runId"] != f"given-{version}"
        listed = arm.list_jobs(api_version=version, **{"$filter": "jobName eq 'runs'"}).json()
        assert listed["value"][0]["properties"]["runId"] == generated["properties"]["runId"]
    for version in NINE_ACTION_VERSIONS:
        job = arm.run_to_end({"jobName": "runs", "action": "LIST_SAVEPOINT"}, api_version=version)
        listed = arm.list_jobs(api_version=version).json()["value"]

        assert "runId" not in job["properties"]
        assert all("runId" not in item["properties"] for item in listed)


def test_delete_completes_operation(offline_emulator: Emulator, arm: ArmClient) -> None:
    seed_record(offline_emulator, stopped_record("doomed"))

    job = arm.run_to_end({"jobName": "doomed", "action": "DELETE"})

    assert job["properties"]["actionResult"] == "SUCCESS"
    assert "deleted" in job["properties"]["jobOutput"]
    names = [item["name"] for item in arm.list_jobs().json()["value"]]
    assert "doomed" not in names


def test_failed_action_completes_operation(offline_emulator: Emulator, arm: ArmClient) -> None:
    # No Flink job id, so the failure does not wait for the closed Flink port.
    seed_record(offline_emulator, stopped_record("broken", jobId=None))

    job = arm.run_to_end(
        {
            "jobName": "broken",
            "action": "START",
            "jobJarDirectory": "abfs://jars@unmapped.dfs.core.windows.net/jars",
            "jarName": "broken.jar",
        }
    )

    assert job["properties"]["actionResult"] == "FAILED"
    assert "abfs://" in job["properties"]["jobOutput"]
    assert job["properties"]["status"] == "STOPPED"


def test_operation_url_repeatable(offline_emulator: Emulator, arm: ArmClient) -> None:
    seed_record(offline_emulator, stopped_record("again"))
    accepted = arm.run_job({"jobName": "again", "action": "LIST_SAVEPOINT"})
    first = arm.wait_for_operation(accepted)
    time.sleep(0.1)

    second = arm.request("GET", accepted.headers["location"])

    assert second.status_code == 200
    assert second.json() == first.json()


def test_operation_url_scoped_to_cluster(offline_emulator: Emulator, arm: ArmClient) -> None:
    seed_record(offline_emulator, stopped_record("scoped"))
    accepted = arm.run_job({"jobName": "scoped", "action": "LIST_SAVEPOINT"})
    arm.wait_for_operation(accepted)
    location = accepted.headers["location"]
    upper_case = location.replace("/clusters/cluster1/", "/clusters/CLUSTER1/")
    other_cluster = location.replace(
        "/clusterPools/pool1/clusters/cluster1/", "/clusterPools/pool2/clusters/other/"
    )

    same = arm.request("GET", upper_case)
    other = arm.request("GET", other_cluster)

    assert same.status_code == 200
    assert_arm_error(other, 404, "OperationNotFound")


def test_clusters_keep_separate_jobs(offline_emulator: Emulator, arm: ArmClient) -> None:
    seed_record(offline_emulator, stopped_record("only-in-cluster1"))

    response = arm.request(
        "GET", arm.cluster_url("pool2", "other") + "/jobs", params={"api-version": "2024-05-01"}
    )

    assert response.status_code == 200
    assert response.json() == {"value": []}


def test_corrupt_record_affects_only_its_job(
    offline_emulator: Emulator, arm: ArmClient, caplog: pytest.LogCaptureFixture
) -> None:
    seed_record(offline_emulator, stopped_record("healthy"))
    corrupt = offline_emulator.jobs_directory() / "mangled.json"
    corrupt.write_text("{not json")
    try:
        with caplog.at_level(logging.ERROR):
            listed = arm.list_jobs()
        acted = arm.run_job({"jobName": "mangled", "action": "LIST_SAVEPOINT"})
        deleted = arm.run_job({"jobName": "mangled", "action": "DELETE"})
        other = arm.wait_for_operation(
            arm.run_job({"jobName": "healthy", "action": "LIST_SAVEPOINT"})
        )
        content = corrupt.read_text()
    finally:
        corrupt.unlink()

    assert listed.status_code == 200, listed.text
    names = [job["properties"]["jobName"] for job in listed.json()["value"]]
    assert "healthy" in names
    assert "mangled" not in names
    skipped = [entry for entry in caplog.records if "corrupt job record" in entry.getMessage()]
    assert len(skipped) == 1
    assert str(corrupt) in skipped[0].getMessage()
    for response in (acted, deleted):
        error = assert_arm_error(response, 500, "JobStoreError")
        assert str(corrupt) in error["message"]
    assert other.status_code == 200, other.text
    assert other.json()["properties"]["actionResult"] == "SUCCESS"
    assert content == "{not json"


def test_interrupted_operations_settle_on_start(tmp_path: Path) -> None:
    # A crash after the engine finished but before the operation file was updated leaves
    # unfinished operations behind. The next start settles them from the job records.
    cluster_key = "pool1/cluster1"
    operations = OperationStore(tmp_path / "operations")
    deleted = operations.create(cluster_key, "gone", "DELETE", "run-gone")
    vanished = operations.create(cluster_key, "never-made", "NEW", "run-new")
    listed = operations.create(cluster_key, "kept", "LIST_SAVEPOINT", "run-kept")
    emulator = Emulator(tmp_path, clusters=[offline_cluster()])
    seed_record(emulator, stopped_record("kept", action="LIST_SAVEPOINT", runId="run-kept"))

    with emulator:
        arm = ArmClient(emulator)
        base = f"{arm.cluster_url().replace('clusterpools', 'clusterPools')}/operationresults"
        results = {
            operation.job_name: arm.request(
                "GET", f"{base}/{operation.operation_id}?api-version=2024-05-01"
            )
            for operation in (deleted, vanished, listed)
        }

    assert results["gone"].status_code == 200
    assert results["gone"].json()["properties"]["actionResult"] == "SUCCESS"
    assert results["never-made"].status_code == 200
    assert results["never-made"].json()["properties"]["actionResult"] == "FAILED"
    assert results["kept"].status_code == 200
    assert results["kept"].json()["properties"]["runId"] == "run-kept"
    assert results["kept"].json()["properties"]["status"] == "STOPPED"


def test_rejected_run_job_leaves_no_operation(offline_emulator: Emulator, arm: ArmClient) -> None:
    folder = offline_emulator.state_dir / "operations"
    before = set(folder.iterdir())

    response = arm.run_job({"jobName": "no-such-job", "action": "SAVEPOINT"})

    assert response.status_code == 404
    assert set(folder.iterdir()) == before
