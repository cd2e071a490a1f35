"""Fixtures for the surface tests: repository paths, the scripts, and Node tools.

Node packages (azure-pipelines-task-lib, @action-validator/cli) are installed with npm
into ``$XDG_CACHE_HOME/flink-task/node`` (default ``~/.cache/flink-task/node``), never
into the repository. A test that needs one is skipped with the reason when node or npm
is missing or the install fails.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
SCHEMA_PATH = REPO_ROOT.parent / "shared" / "schemas" / "azure-pipelines-tasks.schema.json"
TASK_DIR = REPO_ROOT / "azure-devops" / "FlinkTask"
NPM_TIMEOUT_SECONDS = 300
ACTION_VALIDATOR_PACKAGE = "@action-validator/cli@0.6"


def load_script(name: str) -> ModuleType:
    """Import ``scripts/<name>.py`` once and return the module."""
    module_name = f"flink_task_scripts_{name}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    scripts_dir = str(REPO_ROOT / "scripts")
    if scripts_dir not in sys.path:
        sys.path.insert(0, scripts_dir)
    spec = importlib.util.spec_from_file_location(
        module_name, REPO_ROOT / "scripts" / f"{name}.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


def node_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "flink-task" / "node"


def _require_node_tools() -> None:
    for tool in ("node", "npm"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not on PATH")


def _npm(args: list[str], cwd: Path) -> None:
    try:
        completed = subprocess.run(
            ["npm", *args, "--no-audit", "--no-fund"],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=NPM_TIMEOUT_SECONDS,
        )
    except subprocess.TimeoutExpired:
        pytest.skip(f"npm {' '.join(args)} timed out after {NPM_TIMEOUT_SECONDS} s")
    if completed.returncode != 0:
        pytest.skip(f"npm {' '.join(args)} failed: {completed.stderr.strip()[-500:]}")


@pytest.fixture(scope="session")
def action_validator() -> Path:
    """Return the action-validator command, installing it into the cache when missing."""
    _require_node_tools()
    prefix = node_cache_dir() / "action-validator"
    command = prefix / "node_modules" / ".bin" / "action-validator"
    if not command.exists():
        prefix.mkdir(parents=True, exist_ok=True)
        _npm(["install", "--prefix", str(prefix), ACTION_VALIDATOR_PACKAGE], cwd=prefix)
    return command


@pytest.fixture(scope="session")
def task_node_modules() -> Path:
    """Return a node_modules folder with the task's locked dependencies (``npm ci``)."""
    _require_node_tools()
    lock = (TASK_DIR / "package-lock.json").read_bytes()
    prefix = node_cache_dir() / f"task-{hashlib.sha256(lock).hexdigest()[:12]}"
    modules = prefix / "node_modules"
    if not (modules / "azure-pipelines-task-lib" / "package.json").exists():
        prefix.mkdir(parents=True, exist_ok=True)
        for name in ("package.json", "package-lock.json"):
            shutil.copy2(TASK_DIR / name, prefix / name)
        _npm(["ci", "--omit=dev"], cwd=prefix)
    return modules


@pytest.fixture(scope="session")
def staged_task(tmp_path_factory: pytest.TempPathFactory, task_node_modules: Path) -> Path:
    """Return a task folder laid out as in the .vsix: wrapper, wheel, bootstrap, node_modules."""
    packaging = load_script("package_azure_devops")
    stage = tmp_path_factory.mktemp("extension")
    task_dir: Path = packaging.stage_extension(stage, None, install_node_modules=False)
    (task_dir / "node_modules").symlink_to(task_node_modules, target_is_directory=True)
    return task_dir
