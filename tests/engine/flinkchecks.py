"""Checks on the real Flink cluster that engine tests assert with."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests

from flink_task.samplejobs import wait_for_job_metric

_TIMEOUT = 30


def job_state(rest_url: str, job_id: str) -> str:
    return str(requests.get(f"{rest_url}/jobs/{job_id}", timeout=_TIMEOUT).json()["state"])


def jobs_with_id(rest_url: str, job_id: str) -> list[dict[str, Any]]:
    jobs = requests.get(f"{rest_url}/jobs/overview", timeout=_TIMEOUT).json()["jobs"]
    return [job for job in jobs if job["jid"] == job_id]


def uploaded_jars(rest_url: str) -> list[str]:
    return [
        entry["id"] for entry in requests.get(f"{rest_url}/jars", timeout=_TIMEOUT).json()["files"]
    ]


def restored_path(rest_url: str, job_id: str, wait: float = 15) -> str | None:
    """Return the path the job restored from, waiting ``wait`` s for Flink's statistics cache."""
    deadline = time.monotonic() + wait
    while True:
        stats = requests.get(f"{rest_url}/jobs/{job_id}/checkpoints", timeout=_TIMEOUT).json()
        restored = (stats.get("latest") or {}).get("restored") or {}
        path = restored.get("external_path")
        if path is not None or time.monotonic() >= deadline:
            return path
        time.sleep(0.5)


def local_path(url: str) -> Path:
    """Return the local path of a ``file:`` savepoint or checkpoint location."""
    return Path(urlsplit(url).path)


def metric_at_least(rest_url: str, job_id: str, name: str, minimum: float) -> float:
    """Wait until the sample job's gauge ``name`` reaches ``minimum`` and return it."""
    return wait_for_job_metric(
        rest_url, job_id, name, lambda value: value >= minimum, timeout=60, interval=0.5
    )


def wait_for_completed_checkpoint(rest_url: str, job_id: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        stats = requests.get(f"{rest_url}/jobs/{job_id}/checkpoints", timeout=_TIMEOUT).json()
        if (stats.get("counts") or {}).get("completed", 0) >= 1:
            return
        time.sleep(0.3)
    raise TimeoutError(f"job {job_id} completed no checkpoint within {timeout} s")


def wait_for_state(rest_url: str, job_id: str, state: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    current = ""
    while time.monotonic() < deadline:
        current = job_state(rest_url, job_id)
        if current == state:
            return
        time.sleep(0.3)
    raise TimeoutError(f"job {job_id} is {current}, not {state}, after {timeout} s")
