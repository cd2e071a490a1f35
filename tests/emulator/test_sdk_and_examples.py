"""The official SDK and the published API examples against the emulator, unchanged.

The emulator here serves the names of the published examples (resource group
`hiloResourcegroup`, pool `clusterpool1`, cluster `cluster1`) with one job per page, and maps
their `abfs://flinkjob@hilosa.dfs.core.windows.net/` storage to a local folder.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.mgmt.hdinsightcontainers.models import ClusterJob, FlinkJobProperties

from flink_task.emulator import Emulator
from flink_task.engine import JobStore
from tests.emulator.conftest import (
    SPEC_EXAMPLES,
    ArmClient,
    offline_cluster,
    sdk_client,
    seed_record,
    stopped_record,
)

SUBSCRIPTION = "00000000-0000-0000-0000-000000000000"
RESOURCE_GROUP = "hiloResourcegroup"
POOL = "clusterpool1"
CLUSTER = "cluster1"

requires_examples = pytest.mark.skipif(
    not SPEC_EXAMPLES.is_dir(),
    reason=f"the published API examples are not at {SPEC_EXAMPLES}",
)


def example_files(pattern: str) -> list[Path]:
    return sorted(SPEC_EXAMPLES.glob(f"*/{pattern}")) if SPEC_EXAMPLES.is_dir() else []


@pytest.fixture(scope="module")
def example_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    storage = tmp_path_factory.mktemp("hilosa-flinkjob")
    (storage / "jars").mkdir()
    cluster = offline_cluster(
        POOL,
        CLUSTER,
        storage_mappings={"abfs://flinkjob@hilosa.dfs.core.windows.net/": storage},
    )
    emulator = Emulator(
        tmp_path_factory.mktemp("example-emulator"),
        clusters=[cluster],
        subscription_id=SUBSCRIPTION,
        resource_group=RESOURCE_GROUP,
        page_size=1,
    )
    with emulator:
        yield emulator


@pytest.fixture(scope="module")
def example_arm(example_emulator: Emulator) -> ArmClient:
    return ArmClient(example_emulator)


def reset_jobs(emulator: Emulator) -> None:
    store = JobStore(emulator.jobs_directory())
    for name in store.names():
        store.record_path(name).unlink()


# --- SDK ------------------------------------------------------------------------------------


def test_sdk_lists_across_pages(example_emulator: Emulator) -> None:
    reset_jobs(example_emulator)
    for name in ("sdk-one", "sdk-two", "sdk-three"):
        seed_record(example_emulator, stopped_record(name))
    client = sdk_client(example_emulator)

    jobs = list(client.cluster_jobs.list(RESOURCE_GROUP, POOL, CLUSTER))

    assert [job.name for job in jobs] == ["sdk-one", "sdk-three", "sdk-two"]
    assert all(isinstance(job.properties, FlinkJobProperties) for job in jobs)
    assert jobs[0].properties.status == "STOPPED"
    assert jobs[0].id.endswith(f"/clusterPools/{POOL}/clusters/{CLUSTER}/jobs/sdk-one")


def test_sdk_list_with_filter(example_emulator: Emulator) -> None:
    reset_jobs(example_emulator)
    for name, jar in (("f-one", "a.jar"), ("f-two", "b.jar"), ("f-three", "a.jar")):
        seed_record(example_emulator, stopped_record(name, jarName=jar))
    client = sdk_client(example_emulator)

    by_jar = list(
        client.cluster_jobs.list(RESOURCE_GROUP, POOL, CLUSTER, filter="jarName eq 'a.jar'")
    )
    by_name = list(
        client.cluster_jobs.list(RESOURCE_GROUP, POOL, CLUSTER, filter="jobName eq 'f-two'")
    )

    assert [job.name for job in by_jar] == ["f-one", "f-three"]
    assert [job.name for job in by_name] == ["f-two"]


def test_sdk_run_job_result(example_emulator: Emulator) -> None:
    reset_jobs(example_emulator)
    seed_record(example_emulator, stopped_record("sdk-run"))
    client = sdk_client(example_emulator)
    job = ClusterJob(properties=FlinkJobProperties(job_name="sdk-run", action="LIST_SAVEPOINT"))

    result = client.cluster_jobs.begin_run_job(RESOURCE_GROUP, POOL, CLUSTER, job).result()

    assert isinstance(result.properties, FlinkJobProperties)
    assert result.name == "sdk-run"
    assert result.properties.action_result == "SUCCESS"
    assert result.properties.job_output == "file:/savepoints/sdk-run/savepoint-1"
    assert result.properties.run_id


def test_sdk_run_job_dict_body(example_emulator: Emulator) -> None:
    reset_jobs(example_emulator)
    seed_record(example_emulator, stopped_record("sdk-dict"))
    client = sdk_client(example_emulator)
    body = {"properties": {"jobType": "FlinkJob", "jobName": "sdk-dict", "action": "DELETE"}}

    result = client.cluster_jobs.begin_run_job(RESOURCE_GROUP, POOL, CLUSTER, body).result()

    assert result.properties.action_result == "SUCCESS"
    assert list(client.cluster_jobs.list(RESOURCE_GROUP, POOL, CLUSTER)) == []


def test_sdk_oldest_version(example_emulator: Emulator) -> None:
    reset_jobs(example_emulator)
    seed_record(example_emulator, stopped_record("sdk-old"))
    client = sdk_client(example_emulator, api_version="2023-06-01-preview")
    job = ClusterJob(properties=FlinkJobProperties(job_name="sdk-old", action="LIST_SAVEPOINT"))

    result = client.cluster_jobs.begin_run_job(RESOURCE_GROUP, POOL, CLUSTER, job).result()
    listed = list(client.cluster_jobs.list(RESOURCE_GROUP, POOL, CLUSTER))

    assert result.properties.action_result == "SUCCESS"
    assert result.properties.run_id is None
    assert listed[0].properties.run_id is None


def test_sdk_errors_mapped(example_emulator: Emulator) -> None:
    reset_jobs(example_emulator)
    seed_record(example_emulator, stopped_record("sdk-busy", actionResult="IN_PROGRESS"))
    client = sdk_client(example_emulator)
    busy = ClusterJob(properties=FlinkJobProperties(job_name="sdk-busy", action="LIST_SAVEPOINT"))
    missing = ClusterJob(properties=FlinkJobProperties(job_name="sdk-none", action="STOP"))
    invalid = ClusterJob(properties=FlinkJobProperties(job_name="Bad_Name", action="STOP"))

    with pytest.raises(ResourceExistsError) as conflict:
        client.cluster_jobs.begin_run_job(RESOURCE_GROUP, POOL, CLUSTER, busy)
    with pytest.raises(ResourceNotFoundError) as not_found:
        client.cluster_jobs.begin_run_job(RESOURCE_GROUP, POOL, CLUSTER, missing)
    with pytest.raises(HttpResponseError) as bad_request:
        client.cluster_jobs.begin_run_job(RESOURCE_GROUP, POOL, CLUSTER, invalid)

    assert conflict.value.error is not None
    assert conflict.value.error.code == "Conflict"
    assert not_found.value.error is not None
    assert not_found.value.error.code == "JobNotFound"
    assert bad_request.value.status_code == 400
    assert bad_request.value.error is not None
    assert bad_request.value.error.code == "InvalidRequestContent"


# --- published examples ---------------------------------------------------------------------


def example_path(emulator: Emulator, parameters: dict[str, Any]) -> str:
    # The examples use two subscription ids (and "subid"); the emulator serves one.
    return (
        f"{emulator.base_url}/subscriptions/{emulator.subscription_id}/resourceGroups/"
        f"{parameters['resourceGroupName']}/providers/Microsoft.HDInsight/clusterpools/"
        f"{parameters['clusterPoolName']}/clusters/{parameters['clusterName']}"
    )


@requires_examples
@pytest.mark.parametrize(
    "example_file",
    example_files("RunClusterJob*.json"),
    ids=lambda path: f"{path.parent.name}-{path.stem}",
)
def test_run_cluster_job_example(
    example_emulator: Emulator, example_arm: ArmClient, example_file: Path
) -> None:
    example = json.loads(example_file.read_text())
    parameters = example["parameters"]
    body = parameters["ClusterJob"]
    job_name = body["properties"]["jobName"]
    reset_jobs(example_emulator)
    # No Flink job id, so the failed START does not wait for the unreachable Flink REST API.
    seed_record(example_emulator, stopped_record(job_name, jobId=None))

    accepted = example_arm.request(
        "POST",
        f"{example_path(example_emulator, parameters)}/runJob",
        params={"api-version": parameters["api-version"]},
        json=body,
    )

    assert accepted.status_code == 202, accepted.text
    assert "location" in accepted.raw.headers.keys()
    final = example_arm.wait_for_operation(accepted)
    assert final.status_code == 200, final.text
    expected = example["responses"]["200"]["body"]["properties"]
    returned = final.json()["properties"]
    for key, value in expected.items():
        if key != "runId":
            assert returned[key] == value, key
    has_run_id = parameters["api-version"] != "2023-06-01-preview"
    assert ("runId" in returned) == has_run_id
    assert returned["actionResult"] in ("SUCCESS", "FAILED")


@requires_examples
@pytest.mark.parametrize(
    "example_file", example_files("ListClusterJobs.json"), ids=lambda path: path.parent.name
)
def test_list_cluster_jobs_example(
    example_emulator: Emulator, example_arm: ArmClient, example_file: Path
) -> None:
    example = json.loads(example_file.read_text())
    parameters = example["parameters"]
    expected = example["responses"]["200"]["body"]["value"][0]
    reset_jobs(example_emulator)
    seed_record(example_emulator, dict(expected["properties"]))

    response = example_arm.request(
        "GET",
        f"{example_path(example_emulator, parameters)}/jobs",
        params={"api-version": parameters["api-version"]},
    )

    assert response.status_code == 200, response.text
    body = response.json()
    assert list(body) == ["value"]
    assert len(body["value"]) == 1
    item = body["value"][0]
    assert item["properties"] == expected["properties"]
    expected_id = expected["id"].split("/", 3)[3]
    assert item["id"] == f"/subscriptions/{SUBSCRIPTION}/{expected_id}"
