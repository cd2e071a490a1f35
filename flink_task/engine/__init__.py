"""Flink job actions over Flink's REST API: the client, the job store, jar sources and engine."""

from __future__ import annotations

from flink_task.engine.actions import Engine
from flink_task.engine.jars import JarError, JarResolver
from flink_task.engine.records import (
    ACTIONS,
    API_FIELDS,
    ActionConflictError,
    EngineError,
    InvalidRequestError,
    JobNotFoundError,
    api_properties,
)
from flink_task.engine.rest import FlinkRestClient, FlinkRestError, UnsupportedFlinkVersionError
from flink_task.engine.store import CorruptRecordError, JobLockedError, JobStore, StoreError
from flink_task.engine.waits import Timeouts

__all__ = [
    "ACTIONS",
    "API_FIELDS",
    "ActionConflictError",
    "CorruptRecordError",
    "Engine",
    "EngineError",
    "FlinkRestClient",
    "FlinkRestError",
    "InvalidRequestError",
    "JarError",
    "JarResolver",
    "JobLockedError",
    "JobNotFoundError",
    "JobStore",
    "StoreError",
    "Timeouts",
    "UnsupportedFlinkVersionError",
    "api_properties",
]
