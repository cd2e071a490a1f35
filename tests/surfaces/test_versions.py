"""One version number for the package, the task, the extension and the action tags."""

from __future__ import annotations

import json
import re

from tests.surfaces.conftest import REPO_ROOT, TASK_DIR, load_script

generator = load_script("generate_surfaces")


def test_task_version_matches_package() -> None:
    version = generator.read_version()
    task = json.loads((TASK_DIR / "task.json").read_text(encoding="utf-8"))
    parts = task["version"]
    assert f"{parts['Major']}.{parts['Minor']}.{parts['Patch']}" == version


def test_extension_version_matches_package() -> None:
    extension = json.loads((REPO_ROOT / "azure-devops" / "vss-extension.json").read_text())
    assert extension["version"] == generator.read_version()


def test_version_has_three_numbers() -> None:
    assert re.fullmatch(r"\d+\.\d+\.\d+", generator.read_version())


def test_samples_use_current_major() -> None:
    """Samples use the action tag v<major> and the task FlinkTask@<major>."""
    major = generator.read_version().split(".")[0]
    github = list((REPO_ROOT / "samples" / "github").glob("*.yml"))
    azure = list((REPO_ROOT / "samples" / "azure-pipelines").glob("*.yml"))
    assert github
    assert azure
    for path in github:
        tags = re.findall(r"uses: [\w.-]+/flink-task@(\S+)", path.read_text())
        assert tags, path.name
        for tag in tags:
            assert tag == f"v{major}", path.name
    for path in azure:
        used = re.findall(r"task: FlinkTask@(\d+)", path.read_text())
        assert used, path.name
        assert set(used) == {major}, path.name
