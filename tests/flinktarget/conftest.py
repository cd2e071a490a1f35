"""Fixtures of the Flink target tests: the task run as a pipeline step with target flink."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from flink_task.cli import main

JOB = "orders-flink"
_TERMINAL = frozenset({"FAILED", "CANCELED", "FINISHED"})


@pytest.fixture
def jar_dir(tmp_path: Path, sample_jars: dict[str, Path]) -> Path:
    folder = tmp_path / "jars"
    folder.mkdir()
    for jar in sample_jars.values():
        shutil.copy2(jar, folder)
    return folder


@pytest.fixture
def flink_url(local_flink: Any) -> Iterator[str]:
    """Return the session cluster's REST URL, and cancel every job a test left running."""
    url = str(local_flink.rest_url).rstrip("/")
    yield url
    for job in requests.get(f"{url}/jobs/overview", timeout=30).json()["jobs"]:
        if job["state"] not in _TERMINAL:
            requests.patch(f"{url}/jobs/{job['jid']}", params={"mode": "cancel"}, timeout=30)


class Task:
    """Runs ``flink_task.cli.main`` like a pipeline step, with inputs in INPUT_* variables."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, base: dict[str, str]) -> None:
        self.monkeypatch = monkeypatch
        self.base = base
        self.stdout = ""

    def run(
        self, capsys: pytest.CaptureFixture[str], action: str, *argv: str, **inputs: str
    ) -> tuple[int, dict[str, Any], str]:
        env = {"INPUT_ACTION": action, **self.base}
        env.update({f"INPUT_{name.upper()}": value for name, value in inputs.items()})
        with self.monkeypatch.context() as patch:
            for name in list(__import__("os").environ):
                if name.startswith("INPUT_"):
                    patch.delenv(name)
            for name, value in env.items():
                patch.setenv(name, value)
            capsys.readouterr()
            code = main(list(argv))
            out, err = capsys.readouterr()
        self.stdout = out
        record = json.loads(out) if out.strip().startswith("{") else {}
        return code, record, err


@pytest.fixture
def make_task(monkeypatch: pytest.MonkeyPatch) -> Any:
    def factory(**base: str) -> Task:
        env = {"INPUT_TIMEOUTMINUTES": "5"}
        env.update({f"INPUT_{name.upper()}": value for name, value in base.items()})
        return Task(monkeypatch, env)

    return factory
