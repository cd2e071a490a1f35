"""`GET .../jobs`: `$filter` per version and `nextLink` paging with one job per page."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from flink_task.emulator import Emulator
from tests.emulator.conftest import (
    ELEVEN_ACTION_VERSIONS,
    NINE_ACTION_VERSIONS,
    ArmClient,
    offline_cluster,
    seed_record,
    stopped_record,
)

JOBS = {
    "alpha": "shared.jar",
    "bravo": "o'brien.jar",
    "charlie": "shared.jar",
    "delta": "delta.jar",
}


@pytest.fixture(scope="module")
def paged_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    emulator = Emulator(
        tmp_path_factory.mktemp("paged-emulator"), clusters=[offline_cluster()], page_size=1
    )
    with emulator:
        for name, jar in JOBS.items():
            seed_record(emulator, stopped_record(name, jarName=jar))
        yield emulator


@pytest.fixture(scope="module")
def paged_arm(paged_emulator: Emulator) -> ArmClient:
    return ArmClient(paged_emulator)


def follow_pages(arm: ArmClient, first: requests.Response) -> list[dict[str, Any]]:
    """Collect the items of every page, following nextLink as given."""
    pages = [first]
    while "nextLink" in pages[-1].json():
        assert len(pages) <= len(JOBS), "nextLink does not end"
        pages.append(arm.request("GET", pages[-1].json()["nextLink"]))
        assert pages[-1].status_code == 200, pages[-1].text
    return [item for page in pages for item in page.json()["value"]]


def test_one_job_per_page(paged_arm: ArmClient) -> None:
    first = paged_arm.list_jobs()

    assert first.status_code == 200
    assert len(first.json()["value"]) == 1
    items = follow_pages(paged_arm, first)
    assert [item["name"] for item in items] == sorted(JOBS)


def test_next_link_absolute_with_version(paged_arm: ArmClient) -> None:
    for version in ("2023-06-01-preview", "2024-05-01"):
        next_link = paged_arm.list_jobs(api_version=version).json()["nextLink"]
        parts = urlsplit(next_link)
        query = parse_qs(parts.query)

        assert next_link.startswith(paged_arm.emulator.base_url + "/subscriptions/")
        assert parts.path.endswith("/clusters/cluster1/jobs")
        assert query["api-version"] == [version]
        assert query["$skiptoken"] == ["alpha"]


def test_last_page_has_no_next_link(paged_arm: ArmClient) -> None:
    response = paged_arm.list_jobs(**{"$skiptoken": "charlie"})

    assert [item["name"] for item in response.json()["value"]] == ["delta"]
    assert "nextLink" not in response.json()


def test_paging_survives_deleted_job(paged_emulator: Emulator, paged_arm: ArmClient) -> None:
    seed_record(paged_emulator, stopped_record("aardvark"))
    first = paged_arm.list_jobs()
    assert paged_arm.run_to_end({"jobName": "aardvark", "action": "DELETE"})

    items = follow_pages(paged_arm, first)

    assert [item["name"] for item in items] == ["aardvark", *sorted(JOBS)]


def test_invalid_skip_token_400(paged_arm: ArmClient) -> None:
    for token in ("", "Not-A-Name", "../x"):
        response = paged_arm.list_jobs(**{"$skiptoken": token})

        assert response.status_code == 400, token
        assert response.json()["error"]["code"] == "InvalidQueryParameter"


def test_filter_by_job_name(paged_arm: ArmClient) -> None:
    for version in ELEVEN_ACTION_VERSIONS:
        response = paged_arm.list_jobs(api_version=version, **{"$filter": "jobName eq 'charlie'"})

        assert response.status_code == 200, response.text
        assert [item["name"] for item in response.json()["value"]] == ["charlie"]


def test_filter_by_jar_name_pages(paged_arm: ArmClient) -> None:
    first = paged_arm.list_jobs(**{"$filter": "jarName eq 'shared.jar'"})

    items = follow_pages(paged_arm, first)

    assert [item["name"] for item in items] == ["alpha", "charlie"]
    assert "$filter" in parse_qs(urlsplit(first.json()["nextLink"]).query)


def test_filter_doubled_quote(paged_arm: ArmClient) -> None:
    response = paged_arm.list_jobs(**{"$filter": "jarName eq 'o''brien.jar'"})

    assert [item["name"] for item in response.json()["value"]] == ["bravo"]


def test_filter_no_match_empty(paged_arm: ArmClient) -> None:
    response = paged_arm.list_jobs(**{"$filter": "jobName eq 'zulu'"})

    assert response.status_code == 200
    assert response.json() == {"value": []}


def test_filter_rejected_on_old_versions(paged_arm: ArmClient) -> None:
    for version in NINE_ACTION_VERSIONS:
        response = paged_arm.list_jobs(api_version=version, **{"$filter": "jobName eq 'alpha'"})

        assert response.status_code == 400, version
        assert response.json()["error"]["code"] == "InvalidQueryParameter"
        assert response.json()["error"]["target"] == "$filter"


@pytest.mark.parametrize(
    "expression",
    [
        "jobName eq alpha",
        "jobName eq 'alpha",
        "jobName eq 'o'brien'",
        "jobName ne 'alpha'",
        "status eq 'RUNNING'",
        "jobName eq 'alpha' and jarName eq 'shared.jar'",
        "",
    ],
)
def test_invalid_filter_400(paged_arm: ArmClient, expression: str) -> None:
    response = paged_arm.list_jobs(**{"$filter": expression})

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "InvalidQueryParameter"
