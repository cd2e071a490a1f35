"""Long-running `runJob` operations: what each `location` URL refers to, kept on disk.

An operation file is written before `runJob` returns 202 and again when the action ends,
with the final job record. A GET on the operation URL therefore still returns the result
after a restart. An action that was interrupted is finished from the job record, which the
engine's recovery has already moved out of IN_PROGRESS.
"""

from __future__ import annotations

import logging
import re
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from flink_task.emulator.files import read_json, write_private_json

logger = logging.getLogger(__name__)

_OPERATION_ID_PATTERN = re.compile(r"^[0-9a-f]{32}$")
# Finished operations older than this are removed on start.
FINISHED_OPERATION_RETENTION = 7 * 24 * 3600.0


@dataclass
class Operation:
    """One `runJob` call: the cluster and job it acts on and, once finished, the final record."""

    operation_id: str
    cluster_key: str
    job_name: str
    action: str
    run_id: str | None
    created_at: float
    finished_at: float | None = None
    result: dict[str, Any] | None = field(default=None)

    @property
    def finished(self) -> bool:
        return self.result is not None


class OperationStore:
    """Operation files in one folder, `<operation id>.json`, each written atomically."""

    def __init__(self, directory: Path) -> None:
        self._directory = directory
        self._directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._lock = threading.Lock()

    def create(
        self, cluster_key: str, job_name: str, action: str, run_id: str | None
    ) -> Operation:
        operation = Operation(
            operation_id=uuid.uuid4().hex,
            cluster_key=cluster_key,
            job_name=job_name,
            action=action,
            run_id=run_id,
            created_at=time.time(),
        )
        self._write(operation)
        return operation

    def load(self, operation_id: str) -> Operation | None:
        if not _OPERATION_ID_PATTERN.fullmatch(operation_id):
            return None
        data = read_json(self._path(operation_id))
        return Operation(**data) if isinstance(data, dict) else None

    def finish(self, operation: Operation, result: dict[str, Any]) -> None:
        operation.result = result
        operation.finished_at = time.time()
        self._write(operation)

    def discard(self, operation: Operation) -> None:
        """Delete the file of an operation whose action was never started."""
        self._path(operation.operation_id).unlink(missing_ok=True)

    def unfinished(self) -> list[Operation]:
        return [operation for operation in self._all() if not operation.finished]

    def prune(self, now: float | None = None) -> int:
        """Delete finished operations past the retention time and return how many."""
        cutoff = (now if now is not None else time.time()) - FINISHED_OPERATION_RETENTION
        removed = 0
        for operation in self._all():
            if operation.finished_at is not None and operation.finished_at < cutoff:
                self._path(operation.operation_id).unlink(missing_ok=True)
                removed += 1
        return removed

    def _all(self) -> list[Operation]:
        operations = []
        for path in sorted(self._directory.glob("*.json")):
            operation = self.load(path.stem)
            if operation is not None:
                operations.append(operation)
        return operations

    def _write(self, operation: Operation) -> None:
        with self._lock:
            write_private_json(self._path(operation.operation_id), asdict(operation))

    def _path(self, operation_id: str) -> Path:
        return self._directory / f"{operation_id}.json"
