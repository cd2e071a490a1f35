"""Fakes of Azure AD and of the job API on ARM, at the HTTP level with ``responses``.

The real azure-identity and azure-core classes run unchanged. Only the HTTP edge that
cannot run here (login.microsoftonline.com, management.azure.com) is faked by
``responses``. The mock is strict: an unregistered request fails the test, and so does a
registered response that was never requested.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import responses

TENANT_ID = "72f988bf-0000-0000-0000-000000000001"
CLIENT_ID = "11111111-2222-3333-4444-555555555555"
CLIENT_SECRET = "fake-client-secret-value-1234"
ACCESS_TOKEN = "fake-arm-access-token-abcdef"
SUBSCRIPTION_ID = "00000000-0000-0000-0000-000000000000"
RESOURCE_GROUP = "rg1"
CLUSTER_POOL = "pool1"
CLUSTER = "cluster1"
AUTHORITY = "https://login.microsoftonline.com"
ARM = "https://management.azure.com"
CLUSTER_PATH = (
    f"/subscriptions/{SUBSCRIPTION_ID}/resourceGroups/{RESOURCE_GROUP}"
    f"/providers/Microsoft.HDInsight/clusterpools/{CLUSTER_POOL}/clusters/{CLUSTER}"
)
RUN_JOB_URL = re.compile(re.escape(ARM + CLUSTER_PATH + "/runJob") + r"\?.*")
JOBS_URL = re.compile(re.escape(ARM + CLUSTER_PATH + "/jobs") + r"(\?.*)?$")


def register_aad(mock: responses.RequestsMock, tenant_id: str = TENANT_ID) -> None:
    """Register the OpenID configuration and token responses for the requests MSAL makes."""
    base = f"{AUTHORITY}/{tenant_id}"
    mock.add(
        responses.GET,
        f"{base}/v2.0/.well-known/openid-configuration",
        json={
            "token_endpoint": f"{base}/oauth2/v2.0/token",
            "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
            "issuer": f"{base}/v2.0",
        },
    )
    mock.add(
        responses.POST,
        f"{base}/oauth2/v2.0/token",
        json={"access_token": ACCESS_TOKEN, "expires_in": 3600, "token_type": "Bearer"},
    )


def base_inputs(**overrides: str) -> dict[str, str]:
    """Environment of a pipeline step that signs in with a service principal secret."""
    env = {
        "INPUT_SUBSCRIPTIONID": SUBSCRIPTION_ID,
        "INPUT_RESOURCEGROUP": RESOURCE_GROUP,
        "INPUT_CLUSTERPOOL": CLUSTER_POOL,
        "INPUT_CLUSTER": CLUSTER,
        "INPUT_TENANTID": TENANT_ID,
        "INPUT_CLIENTID": CLIENT_ID,
        "INPUT_CLIENTSECRET": CLIENT_SECRET,
    }
    env.update({f"INPUT_{name.upper()}": value for name, value in overrides.items()})
    return env


@dataclass
class FakeJobApi:
    """A scripted job API: runJob responses and successive jobs lists.

    ``lists`` is consumed one entry per GET of ``jobs``; the last entry repeats. An entry is
    a list of job property dicts or a callable taking the runId sent with runJob.
    """

    mock: responses.RequestsMock
    run_job_answers: list[Any] = field(default_factory=list)
    lists: list[Any] = field(default_factory=list)
    posted: list[dict[str, Any]] = field(default_factory=list)
    list_queries: list[dict[str, list[str]]] = field(default_factory=list)

    def install(self) -> None:
        self.mock.add_callback(responses.POST, RUN_JOB_URL, callback=self._run_job)
        self.mock.add_callback(responses.GET, JOBS_URL, callback=self._jobs)

    def expect_no_run_job(self) -> None:
        """For runs that only list jobs: a runJob request would then fail the test."""
        self.mock.remove(responses.POST, RUN_JOB_URL)

    @property
    def run_id(self) -> str | None:
        if not self.posted:
            return None
        value = self.posted[-1]["properties"].get("runId")
        return str(value) if value is not None else None

    def _run_job(self, request: Any) -> tuple[int, dict[str, str], str]:
        assert request.headers["Authorization"] == f"Bearer {ACCESS_TOKEN}"
        answer = self.run_job_answers.pop(0)
        if isinstance(answer, Exception):
            raise answer  # the connection failed: the server never saw this request
        self.posted.append(json.loads(request.body))
        status, headers, body = answer
        return status, headers, json.dumps(body) if body is not None else ""

    def _jobs(self, request: Any) -> tuple[int, dict[str, str], str]:
        assert request.headers["Authorization"] == f"Bearer {ACCESS_TOKEN}"
        self.list_queries.append(parse_qs(urlsplit(request.url).query))
        entry = self.lists.pop(0) if len(self.lists) > 1 else self.lists[0]
        if callable(entry):
            entry = entry(self.run_id)
        if isinstance(entry, tuple):  # (status, headers, body) for error answers
            status, headers, body = entry
            return status, headers, json.dumps(body)
        items = [{"id": f"{CLUSTER_PATH}/jobs/{p['jobName']}", "properties": p} for p in entry]
        return 200, {}, json.dumps({"value": items})


def job(name: str = "orders", **properties: Any) -> dict[str, Any]:
    record = {"jobType": "FlinkJob", "jobName": name}
    record.update(properties)
    return record


@pytest.fixture
def arm_mock() -> Iterator[responses.RequestsMock]:
    """A strict ``responses`` mock with Azure AD answered."""
    with responses.RequestsMock(assert_all_requests_are_fired=True) as mock:
        register_aad(mock)
        yield mock


@pytest.fixture
def fake_job_api(arm_mock: responses.RequestsMock) -> FakeJobApi:
    api = FakeJobApi(arm_mock)
    api.install()
    return api


@pytest.fixture
def no_sleep(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Make the waits of a run instant on a fake clock, recording the delays asked for."""
    from flink_task import waiting

    delays: list[float] = []
    clock = {"now": 1000.0}

    def fake_wait(event: Any, seconds: float) -> None:
        delays.append(seconds)
        clock["now"] += seconds

    monkeypatch.setattr(waiting, "_monotonic", lambda: clock["now"])
    monkeypatch.setattr(waiting, "_wait_for", fake_wait)
    return delays
