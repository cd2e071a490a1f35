"""HTTP client of the job API on Azure Resource Manager: ``runJob`` and ``jobs``.

Requests go through an azure-core pipeline (bearer token, user agent, retries, logging).
azure-core's default retry policy also resends a POST that got 500, 503 or 504, or any
response with ``Retry-After``. A resent ``runJob`` would perform the action twice, so
this client retries reads only and sends ``runJob`` once. The only exception is a
connection that could not be opened at all: that request provably never reached the server.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urljoin, urlsplit

from azure.core import PipelineClient
from azure.core.credentials import TokenCredential
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.core.pipeline import PipelineResponse
from azure.core.pipeline.policies import (
    BearerTokenCredentialPolicy,
    HeadersPolicy,
    RetryPolicy,
    UserAgentPolicy,
)
from azure.core.pipeline.transport import HttpTransport
from azure.core.rest import HttpRequest, HttpResponse

from flink_task import __version__
from flink_task.errors import ActionFailedError, ArmError
from flink_task.request import ClusterTarget

logger = logging.getLogger(__name__)

_READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_POST_CONNECT_ATTEMPTS = 3
_MAX_ERROR_TEXT = 500
# ARM error codes that mean the cluster's resource path is wrong, not the job.
_PATH_NOT_FOUND_CODES = frozenset(
    {
        "ResourceNotFound",
        "ParentResourceNotFound",
        "ResourceGroupNotFound",
        "SubscriptionNotFound",
        "InvalidResourceType",
        "NotFound",
    }
)


class SubmissionUncertainError(ActionFailedError):
    """The runJob request was sent but no response came back, so it may have been accepted."""


class ReadOnlyRetryPolicy(RetryPolicy):
    """azure-core's retry policy restricted to reads, whatever the status or header."""

    def _is_method_retryable(
        self, settings: dict[str, Any], request: Any, response: Any = None
    ) -> bool:
        return str(request.method).upper() in _READ_METHODS

    def is_retry(self, settings: dict[str, Any], response: PipelineResponse) -> bool:
        if str(response.http_request.method).upper() not in _READ_METHODS:
            return False
        retry = super().is_retry(settings, response)
        if retry:
            logger.warning(
                "GET %s returned HTTP %s; retrying (attempt %s)",
                _path_of(response.http_request.url),
                response.http_response.status_code,
                len(settings["history"]) + 2,
            )
        return bool(retry)

    def increment(self, settings: dict[str, Any], response: Any = None, error: Any = None) -> bool:
        more = super().increment(settings, response=response, error=error)
        if error is not None and more:
            logger.warning("Request failed (%s); retrying", type(error).__name__)
        return more


def _path_of(url: str) -> str:
    return urlsplit(url).path


class JobApiClient:
    """Client of the runJob and jobs operations of one cluster."""

    def __init__(
        self,
        target: ClusterTarget,
        credential: TokenCredential,
        *,
        scope: str,
        transport: HttpTransport | None = None,
        retry_backoff_factor: float = 0.8,
        retry_total: int = 6,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        self.target = target
        self._sleep = sleep
        policies = [
            HeadersPolicy({"Accept": "application/json"}),
            UserAgentPolicy(base_user_agent=f"flink-task/{__version__}"),
            ReadOnlyRetryPolicy(
                retry_total=retry_total,
                retry_backoff_factor=retry_backoff_factor,
                retry_backoff_max=30,
                timeout=600,
            ),
            BearerTokenCredentialPolicy(credential, scope),
        ]
        self._client: PipelineClient = PipelineClient(
            base_url=target.management_endpoint, policies=policies, transport=transport
        )

    def close(self) -> None:
        self._client.close()

    # -- URLs -------------------------------------------------------------------------

    def url(self, operation: str, **query: str) -> str:
        return self.target.url(operation, **query)

    # -- runJob ----------------------------------------------------------------------

    def submit(self, body: dict[str, Any]) -> HttpResponse:
        """POST runJob once; returns the 200 or 202 response, raises ArmError otherwise."""
        request = HttpRequest(
            "POST",
            self.url("runJob"),
            headers={"Content-Type": "application/json"},
            content=json.dumps(body),
        )
        for attempt in range(1, _POST_CONNECT_ATTEMPTS + 1):
            try:
                response = self._client.send_request(request)
                break
            except ServiceRequestError as error:
                # The connection could not be opened, so nothing reached the server.
                if attempt == _POST_CONNECT_ATTEMPTS:
                    raise ActionFailedError(
                        f"could not connect to {self.target.management_endpoint} "
                        f"to send runJob ({_short(error)}); nothing was sent"
                    ) from error
                delay = 2.0 * attempt
                logger.warning(
                    "Could not connect to send runJob (%s); nothing was sent, retrying in %.0f s",
                    type(error).__name__,
                    delay,
                )
                self._pause(delay)
            except ClientAuthenticationError:
                raise  # signing in failed, so runJob was never sent
            except (ServiceResponseError, HttpResponseError) as error:
                # The request was sent but its response was lost or unreadable,
                # so the server may have acted on it.
                raise SubmissionUncertainError(
                    "runJob was sent but no response came back "
                    f"({_short(error)}); the action may or may not have been accepted, so it "
                    "is not sent again. List the jobs (flink-task jobs) before running it again"
                ) from error
        if response.status_code not in (200, 201, 202):
            raise arm_error(response)
        return response

    def poll(self, url: str) -> HttpResponse:
        """GET an operation URL (Location or Azure-AsyncOperation) once."""
        response = self._client.send_request(HttpRequest("GET", url))
        if response.status_code not in (200, 201, 202, 204):
            raise arm_error(response)
        return response

    def operation_url(self, response: HttpResponse) -> str | None:
        header = response.headers.get("Azure-AsyncOperation") or response.headers.get("Location")
        if not header:
            return None
        return urljoin(self.target.management_endpoint + "/", header)

    # -- jobs -----------------------------------------------------------------------

    def list_jobs(self, job_name: str | None = None) -> list[dict[str, Any]]:
        """List jobs, filtered by name on the server where the API version can."""
        return list(self.iter_jobs(job_name))

    def iter_jobs(self, job_name: str | None = None) -> Iterator[dict[str, Any]]:
        query: dict[str, str] = {}
        if job_name is not None and self.target.features.has_filter:
            query["$filter"] = odata_filter("jobName", job_name)
        url: str | None = self.url("jobs", **query)
        pages = 0
        while url:
            pages += 1
            if pages > 1000:
                raise ActionFailedError("jobs returned more than 1000 pages; stopping")
            response = self._client.send_request(HttpRequest("GET", url))
            if response.status_code != 200:
                raise arm_error(response)
            page = _json(response)
            for item in page.get("value") or []:
                properties = item.get("properties") or {}
                if job_name is None or properties.get("jobName") == job_name:
                    yield item
            next_link = page.get("nextLink")
            url = urljoin(self.target.management_endpoint + "/", next_link) if next_link else None

    def find_job(self, job_name: str) -> dict[str, Any] | None:
        """Return the properties of the named job, or None when it is not listed."""
        for item in self.iter_jobs(job_name):
            properties: dict[str, Any] = item.get("properties") or {}
            return properties
        return None

    def _pause(self, seconds: float) -> None:
        (self._sleep or time.sleep)(seconds)


def odata_filter(field: str, value: str) -> str:
    """Build an OData equality filter with the value quoted (``'`` doubled)."""
    return f"{field} eq '" + value.replace("'", "''") + "'"


def arm_error(response: HttpResponse) -> ArmError:
    """Build an ArmError from an error response, with a hint for the usual causes."""
    status = response.status_code
    code, message = "", ""
    try:
        body = response.json()
        error = body.get("error") if isinstance(body, dict) else None
        if isinstance(error, dict):
            code = str(error.get("code") or "")
            message = str(error.get("message") or "")
    except (ValueError, json.JSONDecodeError):
        message = _short_text(response.text())
    if not message:
        message = _short_text(response.text()) or (response.reason or "no message")
    hint = ""
    if status in (401, 403):
        hint = (
            "Check that the identity has a role assignment on the cluster that allows "
            "runJob and jobs (for example Contributor on the Flink cluster resource)"
        )
    elif status == 404 and (code in _PATH_NOT_FOUND_CODES or not code):
        hint = (
            "Check subscriptionId, resourceGroup, clusterPool and cluster: "
            "the resource path was not found"
        )
    elif status == 404:
        hint = "Check jobName, or create the job with NEW"
    elif status == 409 and "in progress" in message.lower():
        hint = "Another action is still in progress on this job; wait for it, then retry"
    elif status == 409:
        hint = "The job's state does not allow this action; check it with flink-task jobs"
    return ArmError(
        status=status,
        code=code or "Unknown",
        message=_short_text(message),
        request_id=response.headers.get("x-ms-request-id"),
        hint=hint,
    )


def _json(response: HttpResponse) -> dict[str, Any]:
    try:
        data = response.json()
    except ValueError as error:
        raise ActionFailedError(
            f"HTTP {response.status_code} from {_path_of(response.request.url)} is not JSON: "
            f"{_short_text(response.text())!r}"
        ) from error
    if not isinstance(data, dict):
        raise ActionFailedError(f"unexpected JSON from {_path_of(response.request.url)}")
    return data


def response_json(response: HttpResponse) -> dict[str, Any] | None:
    """Return the JSON object of a response, or None when it has no JSON object body."""
    if not response.content:
        return None
    try:
        data = response.json()
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def _short(error: Exception) -> str:
    return _short_text(str(error).splitlines()[0] if str(error) else type(error).__name__)


def _short_text(text: str) -> str:
    text = text.strip()
    return text if len(text) <= _MAX_ERROR_TEXT else text[:_MAX_ERROR_TEXT] + "..."
