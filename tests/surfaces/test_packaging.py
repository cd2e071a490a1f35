"""scripts/package_azure_devops.py builds an installable .vsix with tfx-cli."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.surfaces.conftest import REPO_ROOT, node_cache_dir

PACKAGE_TIMEOUT_SECONDS = 900


def test_vsix_contains_runnable_task(tmp_path: Path) -> None:
    for tool in ("node", "npm"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not on PATH")
    completed = subprocess.run(
        [
            sys.executable,
            str(REPO_ROOT / "scripts" / "package_azure_devops.py"),
            "--output-dir",
            str(tmp_path),
            "--publisher",
            "test-publisher",
            "--tool-cache",
            str(node_cache_dir()),
        ],
        capture_output=True,
        text=True,
        timeout=PACKAGE_TIMEOUT_SECONDS,
    )
    if completed.returncode != 0 and "npm" in completed.stderr and "ERR!" in completed.stderr:
        pytest.skip(f"npm failed: {completed.stderr.strip()[-500:]}")
    assert completed.returncode == 0, completed.stdout + completed.stderr
    vsix = Path(completed.stdout.strip().splitlines()[-1])
    version = json.loads((REPO_ROOT / "azure-devops" / "vss-extension.json").read_text())[
        "version"
    ]
    assert vsix == tmp_path / f"flink-task-{version}.vsix"

    with zipfile.ZipFile(vsix) as archive:
        names = set(archive.namelist())
        manifest = archive.read("extension.vsixmanifest").decode("utf-8")
        task = json.loads(archive.read("FlinkTask/task.json"))
    for name in (
        "FlinkTask/index.js",
        "FlinkTask/bootstrap_venv.py",
        f"FlinkTask/python/flink_task-{version}-py3-none-any.whl",
        "FlinkTask/node_modules/azure-pipelines-task-lib/task.js",
        "overview.md",
    ):
        assert name in names
    assert not [name for name in names if "/node_modules/.bin/" in name and "tfx" in name]
    assert re.search(rf'Version="{re.escape(version)}"', manifest)
    assert 'Publisher="test-publisher"' in manifest
    assert task["version"] == dict(
        zip(("Major", "Minor", "Patch"), (int(part) for part in version.split(".")), strict=True)
    )
