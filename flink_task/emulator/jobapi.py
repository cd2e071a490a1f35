"""The ARM job API of HDInsight on AKS clusters: `runJob`, `jobs` and operation results.

Paths have the ARM form
`/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.HDInsight/clusterpools/{pool}/clusters/{cluster}/{runJob|jobs|operationresults/{id}}`.
Segment keywords and resource names compare case-insensitively, as in Azure Resource Manager.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import quote, urlencode

from flink_task.apiversions import ApiFeatures
from flink_task.emulator.bodies import parse_json_body, validate_run_job_body
from flink_task.emulator.clusters import ClusterConfig
from flink_task.emulator.errors import ApiError
from flink_task.emulator.listing import (
    SKIP_TOKEN_PARAMETER,
    parse_filter,
    parse_skip_token,
    select_page,
)
from flink_task.emulator.operations import Operation, OperationStore
from flink_task.emulator.protocol import Request, Response
from flink_task.emulator.versions import resolve_api_version
from flink_task.engine import EngineError, StoreError
from flink_task.engine import api_properties as engine_api_properties

logger = logging.getLogger(__name__)

JOB_RESOURCE_TYPE = "Microsoft.HDInsight/clusterPools/clusters/jobs"
PROVIDER = "Microsoft.HDInsight"
RETRY_AFTER_SECONDS = 1
IN_PROGRESS = "IN_PROGRESS"


class JobEngine(Protocol):
    """The methods of `flink_task.engine.Engine` that the emulator calls."""

    def begin(self, properties: Mapping[str, Any]) -> dict[str, Any]: ...

    def execute(self, job_name: str) -> dict[str, Any]: ...

    def list_jobs(self) -> list[dict[str, Any]]: ...

    def get_job(self, job_name: str) -> dict[str, Any] | None: ...

    def recover(self) -> list[str]: ...


@dataclass(frozen=True)
class ArmPath:
    """The parts of a job API path. `operation` is lower case: `runjob`, `jobs` or
    `operationresults`."""

    subscription_id: str
    resource_group: str
    cluster_pool: str
    cluster: str
    operation: str
    operation_id: str | None


def api_properties(record: Mapping[str, Any]) -> dict[str, Any]:
    """Return the ClusterJob properties of a job record, with `jobType` always set."""
    properties = engine_api_properties(record)
    properties["jobType"] = "FlinkJob"
    return properties


class ClusterService:
    """One emulated cluster: its configuration, engine and the actions running on it."""

    def __init__(self, config: ClusterConfig, engine: JobEngine) -> None:
        self.config = config
        self.engine = engine
        self._threads: dict[str, threading.Thread] = {}
        self._lock = threading.Lock()

    def start_action(
        self, operation: Operation, on_finish: Callable[[dict[str, Any]], None]
    ) -> None:
        """Run the begun action of `operation` in a background thread."""
        thread = threading.Thread(
            target=self._execute,
            args=(operation, on_finish),
            name=f"action-{operation.job_name}-{operation.action}",
            daemon=True,
        )
        with self._lock:
            self._threads[operation.operation_id] = thread
        thread.start()

    def is_running(self, operation_id: str) -> bool:
        with self._lock:
            thread = self._threads.get(operation_id)
        return thread is not None and thread.is_alive()

    def running_threads(self) -> list[threading.Thread]:
        with self._lock:
            return [thread for thread in self._threads.values() if thread.is_alive()]

    def _execute(self, operation: Operation, on_finish: Callable[[dict[str, Any]], None]) -> None:
        logger.info(
            "action %s on job %s started (operation %s)",
            operation.action,
            operation.job_name,
            operation.operation_id,
        )
        try:
            record = self.engine.execute(operation.job_name)
        except Exception as error:  # a bug: the engine reports failed actions in the record
            logger.exception(
                "action %s on job %s raised; the operation ends FAILED",
                operation.action,
                operation.job_name,
            )
            record = failed_result(operation, f"The emulator failed to run the action: {error}")
        else:
            logger.info(
                "action %s on job %s ended %s",
                operation.action,
                operation.job_name,
                record.get("actionResult"),
            )
        try:
            on_finish(api_properties(record))
        finally:
            # Only now may a GET settle the operation from the job record instead.
            with self._lock:
                self._threads.pop(operation.operation_id, None)


def failed_result(operation: Operation, job_output: str) -> dict[str, Any]:
    """Return the properties of an operation that ended without a job record to show."""
    properties: dict[str, Any] = {
        "jobType": "FlinkJob",
        "jobName": operation.job_name,
        "action": operation.action,
        "actionResult": "FAILED",
        "jobOutput": job_output,
    }
    if operation.run_id:
        properties["runId"] = operation.run_id
    return properties


class JobApi:
    """Request handlers of the job API for the configured clusters."""

    def __init__(
        self,
        *,
        subscription_id: str,
        resource_group: str,
        clusters: list[ClusterService],
        operations: OperationStore,
        page_size: int,
    ) -> None:
        self.subscription_id = subscription_id
        self.resource_group = resource_group
        self.clusters = {service.config.key: service for service in clusters}
        self.operations = operations
        self.page_size = page_size
        self.base_url = ""

    def handles(self, path: str) -> bool:
        return path.strip("/").split("/", 1)[0].lower() == "subscriptions"

    def handle(self, request: Request) -> Response:
        arm_path = parse_arm_path(request.path)
        _check_method(arm_path, request.method)
        version = resolve_api_version(request.query)
        service = self._cluster(arm_path)
        try:
            if arm_path.operation == "runjob":
                return self._run_job(service, request, version)
            if arm_path.operation == "jobs":
                return self._list_jobs(service, request, version)
            return self._operation_result(service, arm_path, version)
        except StoreError as error:
            # A record file that cannot be read or written; the message names the file.
            logger.error("job store error on %s %s: %s", request.method, request.path, error)
            raise ApiError(500, "JobStoreError", str(error)) from None

    # --- runJob ---------------------------------------------------------------------------

    def _run_job(
        self, service: ClusterService, request: Request, version: ApiFeatures
    ) -> Response:
        _check_json_content_type(request)
        properties = validate_run_job_body(parse_json_body(request.body), version)
        if version.has_run_id and "runId" not in properties:
            properties["runId"] = str(uuid.uuid4())
        # The operation file comes first: once begin() has marked the record IN_PROGRESS,
        # nothing may fail before the action thread starts, or the record would stay so.
        operation = self.operations.create(
            service.config.key,
            properties["jobName"],
            properties["action"],
            properties.get("runId"),
        )
        try:
            service.engine.begin(properties)
        except BaseException as error:
            self.operations.discard(operation)
            if isinstance(error, EngineError):
                # The engine's errors carry the HTTP status and code they stand for.
                raise ApiError(
                    error.http_status, error.code, str(error), target="properties"
                ) from None
            raise
        service.start_action(operation, lambda result: self.operations.finish(operation, result))
        location = self._operation_url(service.config, operation.operation_id, version)
        return Response(202, None, _accepted_headers(location))

    # --- jobs -----------------------------------------------------------------------------

    def _list_jobs(
        self, service: ClusterService, request: Request, version: ApiFeatures
    ) -> Response:
        job_filter = parse_filter(request.query, version)
        after = parse_skip_token(request.query)
        records = [api_properties(record) for record in service.engine.list_jobs()]
        if job_filter is not None:
            records = [record for record in records if job_filter.matches(record)]
        page, next_token = select_page(records, after, self.page_size)
        body: dict[str, Any] = {
            "value": [self._cluster_job(service.config, record, version) for record in page]
        }
        if next_token is not None:
            body["nextLink"] = self._next_link(service.config, request, version, next_token)
        return Response(200, body)

    def _next_link(
        self, config: ClusterConfig, request: Request, version: ApiFeatures, token: str
    ) -> str:
        query = {"api-version": version.version, SKIP_TOKEN_PARAMETER: token}
        if "$filter" in request.query:
            query["$filter"] = request.query["$filter"][0]
        return f"{self._cluster_url(config)}/jobs?{urlencode(query, quote_via=quote)}"

    # --- operation results ----------------------------------------------------------------

    def _operation_result(
        self, service: ClusterService, arm_path: ArmPath, version: ApiFeatures
    ) -> Response:
        operation = self.operations.load(arm_path.operation_id or "")
        if operation is None or operation.cluster_key != service.config.key:
            raise ApiError(
                404,
                "OperationNotFound",
                f"Operation '{arm_path.operation_id}' was not found on cluster "
                f"'{service.config.cluster}'.",
            )
        if not operation.finished and not service.is_running(operation.operation_id):
            self.settle(service, operation)
        if operation.result is None:
            location = self._operation_url(service.config, operation.operation_id, version)
            return Response(202, None, _accepted_headers(location))
        return Response(200, self._cluster_job(service.config, operation.result, version))

    def settle(self, service: ClusterService, operation: Operation) -> None:
        """Finish an operation whose action no thread of this process runs any more.

        That happens after a restart. The job record then contains the outcome, because the
        engine's recovery has ended or resumed every action left IN_PROGRESS.
        """
        record = service.engine.get_job(operation.job_name)
        if record is None:
            if operation.action == "DELETE":
                result = failed_result(operation, "The job record was deleted.")
                result["actionResult"] = "SUCCESS"
            else:
                result = failed_result(
                    operation, "The emulator stopped during the action and the job has no record."
                )
        elif record.get("actionResult") == IN_PROGRESS:
            return
        else:
            result = api_properties(record)
        logger.info(
            "operation %s (%s on job %s) settled as %s after a restart",
            operation.operation_id,
            operation.action,
            operation.job_name,
            result.get("actionResult"),
        )
        self.operations.finish(operation, result)

    # --- helpers --------------------------------------------------------------------------

    def _cluster(self, arm_path: ArmPath) -> ClusterService:
        if arm_path.subscription_id.lower() != self.subscription_id.lower():
            raise ApiError(
                404,
                "SubscriptionNotFound",
                f"The subscription '{arm_path.subscription_id}' could not be found. This "
                f"emulator serves subscription '{self.subscription_id}'.",
            )
        if arm_path.resource_group.lower() != self.resource_group.lower():
            raise ApiError(
                404,
                "ResourceGroupNotFound",
                f"Resource group '{arm_path.resource_group}' could not be found. This emulator "
                f"serves resource group '{self.resource_group}'.",
            )
        key = f"{arm_path.cluster_pool.lower()}/{arm_path.cluster.lower()}"
        service = self.clusters.get(key)
        if service is None:
            served = ", ".join(
                f"{s.config.cluster_pool}/{s.config.cluster}" for s in self.clusters.values()
            )
            raise ApiError(
                404,
                "ResourceNotFound",
                f"The Resource '{PROVIDER}/clusterpools/{arm_path.cluster_pool}/clusters/"
                f"{arm_path.cluster}' under resource group '{arm_path.resource_group}' was not "
                f"found. Served clusters (pool/cluster): {served}.",
            )
        return service

    def cluster_id(self, config: ClusterConfig) -> str:
        return (
            f"/subscriptions/{self.subscription_id}/resourceGroups/{self.resource_group}"
            f"/providers/{PROVIDER}/clusterPools/{config.cluster_pool}/clusters/{config.cluster}"
        )

    def _cluster_url(self, config: ClusterConfig) -> str:
        return f"{self.base_url}{self.cluster_id(config)}"

    def _operation_url(
        self, config: ClusterConfig, operation_id: str, version: ApiFeatures
    ) -> str:
        return (
            f"{self._cluster_url(config)}/operationresults/{operation_id}"
            f"?api-version={version.version}"
        )

    def _cluster_job(
        self, config: ClusterConfig, properties: dict[str, Any], version: ApiFeatures
    ) -> dict[str, Any]:
        shown = dict(properties)
        if not version.has_run_id:
            shown.pop("runId", None)
        name = shown.get("jobName", "")
        return {
            "id": f"{self.cluster_id(config)}/jobs/{name}",
            "name": name,
            "type": JOB_RESOURCE_TYPE,
            "properties": shown,
        }


def parse_arm_path(path: str) -> ArmPath:
    """Split a job API path into its parts, raising ApiError 404 for any other path."""
    segments = path.strip("/").split("/")
    keywords = {
        0: "subscriptions",
        2: "resourcegroups",
        4: "providers",
        6: "clusterpools",
        8: "clusters",
    }
    shape_ok = len(segments) in (11, 12) and all(
        segments[index].lower() == keyword for index, keyword in keywords.items()
    )
    shape_ok = shape_ok and segments[5].lower() == PROVIDER.lower()
    operation = segments[10].lower() if shape_ok else ""
    if len(segments) == 12 and operation != "operationresults":
        shape_ok = False
    if len(segments) == 11 and operation not in ("runjob", "jobs"):
        shape_ok = False
    if not shape_ok or not all(segments):
        raise ApiError(
            404,
            "NotFound",
            f"No job API operation at '{path}'. This emulator serves POST .../clusterpools/"
            "{pool}/clusters/{cluster}/runJob and GET .../jobs.",
        )
    return ArmPath(
        subscription_id=segments[1],
        resource_group=segments[3],
        cluster_pool=segments[7],
        cluster=segments[9],
        operation=operation,
        operation_id=segments[11] if len(segments) == 12 else None,
    )


def _check_method(arm_path: ArmPath, method: str) -> None:
    allowed = "POST" if arm_path.operation == "runjob" else "GET"
    if method != allowed:
        raise ApiError(
            405,
            "MethodNotAllowed",
            f"The {arm_path.operation} operation accepts only {allowed}, not {method}.",
            headers={"Allow": allowed},
        )


def _check_json_content_type(request: Request) -> None:
    content_type = request.header("content-type")
    if content_type is None:
        return
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type != "application/json":
        raise ApiError(
            415,
            "UnsupportedMediaType",
            f"The content type '{content_type}' is not supported. Send application/json.",
        )


def _accepted_headers(location: str) -> dict[str, str]:
    return {"location": location, "Retry-After": str(RETRY_AFTER_SECONDS)}
