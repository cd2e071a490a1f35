#!/usr/bin/env python3
"""Build the Azure DevOps extension (.vsix) that contains the FlinkTask pipeline task.

The task folder is staged in a temporary folder: task.json, the Node wrapper and its
production node_modules (``npm ci``), the venv bootstrap script, and a flink_task wheel
built from this source tree. ``tfx extension create`` (tfx-cli from the npm registry,
installed into a cache folder outside the repository) then packs it.

Usage:
    python scripts/package_azure_devops.py [--output-dir dist] [--publisher NAME]
    python scripts/package_azure_devops.py --stage-only DIR   stage the folder, no .vsix
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parent
ROOT = SCRIPTS.parent
if str(SCRIPTS) not in sys.path:
    sys.path.insert(0, str(SCRIPTS))

import generate_surfaces  # noqa: E402

logger = logging.getLogger("package_azure_devops")

AZURE_DEVOPS_DIR = ROOT / "azure-devops"
TASK_FOLDER = "FlinkTask"
TASK_FILES = ("task.json", "index.js", "package.json", "package-lock.json")
TFX_CLI_PACKAGE = "tfx-cli@0.23"
COMMAND_TIMEOUT_SECONDS = 900


def default_tool_cache() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "flink-task" / "node"


def npm_command() -> str:
    """Return the npm executable; on Windows that is npm.cmd, which a bare "npm" misses."""
    found = shutil.which("npm")
    if found is None:
        raise SystemExit("npm not found on PATH: install Node.js 20 or later")
    return found


def run(command: list[str], cwd: Path) -> None:
    logger.info("running %s in %s", " ".join(command), cwd)
    subprocess.run(command, cwd=cwd, check=True, timeout=COMMAND_TIMEOUT_SECONDS)


def copy_python_source(destination: Path) -> None:
    """Copy what a wheel build needs, so the build writes nothing into the repository."""
    destination.mkdir(parents=True)
    shutil.copy2(ROOT / "pyproject.toml", destination)
    for name in ("README.md", "LICENSE"):
        if (ROOT / name).is_file():
            shutil.copy2(ROOT / name, destination)
    shutil.copytree(
        ROOT / "flink_task",
        destination / "flink_task",
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
    )


def build_wheel(wheel_dir: Path) -> Path:
    with tempfile.TemporaryDirectory(prefix="flink-task-wheel-") as temporary:
        source = Path(temporary) / "source"
        copy_python_source(source)
        run(
            [
                sys.executable,
                "-m",
                "pip",
                "wheel",
                "--no-deps",
                "--disable-pip-version-check",
                "--wheel-dir",
                str(wheel_dir),
                str(source),
            ],
            cwd=source,
        )
    wheels = sorted(wheel_dir.glob("flink_task-*.whl"))
    if len(wheels) != 1:
        raise SystemExit(f"expected one flink_task wheel in {wheel_dir}, found {len(wheels)}")
    return wheels[0]


def stage_extension(stage_dir: Path, publisher: str | None, install_node_modules: bool) -> Path:
    """Fill ``stage_dir`` with the extension manifest and the complete task folder.

    Returns the staged task folder. ``install_node_modules=False`` leaves out
    ``node_modules``, for callers that provide azure-pipelines-task-lib themselves.
    """
    stale = generate_surfaces.stale_files()
    if stale:
        names = ", ".join(str(path.relative_to(ROOT)) for path in stale)
        raise SystemExit(f"{names} out of date: run python scripts/generate_surfaces.py first")

    task_dir = stage_dir / TASK_FOLDER
    task_dir.mkdir(parents=True, exist_ok=True)
    for name in TASK_FILES:
        shutil.copy2(AZURE_DEVOPS_DIR / TASK_FOLDER / name, task_dir / name)
    shutil.copy2(ROOT / "scripts" / "bootstrap_venv.py", task_dir / "bootstrap_venv.py")
    shutil.copy2(AZURE_DEVOPS_DIR / "overview.md", stage_dir / "overview.md")

    manifest = json.loads((AZURE_DEVOPS_DIR / "vss-extension.json").read_text(encoding="utf-8"))
    if publisher:
        manifest["publisher"] = publisher
    (stage_dir / "vss-extension.json").write_text(json.dumps(manifest, indent=2) + "\n")

    build_wheel(task_dir / "python")
    if install_node_modules:
        run([npm_command(), "ci", "--omit=dev", "--no-audit", "--no-fund"], cwd=task_dir)
    return task_dir


def ensure_tfx(tool_cache: Path) -> Path:
    """Install tfx-cli into ``tool_cache`` unless it is there, and return its command."""
    prefix = tool_cache / "tfx-cli"
    command = prefix / "node_modules" / ".bin" / ("tfx.cmd" if os.name == "nt" else "tfx")
    if not command.exists():
        prefix.mkdir(parents=True, exist_ok=True)
        run(
            [
                npm_command(),
                "install",
                "--prefix",
                str(prefix),
                "--no-audit",
                "--no-fund",
                TFX_CLI_PACKAGE,
            ],
            cwd=prefix,
        )
    return command


def create_vsix(stage_dir: Path, output_dir: Path, tool_cache: Path) -> Path:
    version = generate_surfaces.read_version()
    output_dir.mkdir(parents=True, exist_ok=True)
    vsix = output_dir / f"flink-task-{version}.vsix"
    tfx = ensure_tfx(tool_cache)
    run(
        [
            str(tfx),
            "extension",
            "create",
            "--root",
            str(stage_dir),
            "--manifest-globs",
            "vss-extension.json",
            "--output-path",
            str(vsix),
            "--no-prompt",
        ],
        cwd=stage_dir,
    )
    return vsix


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--output-dir", type=Path, default=ROOT / "dist", help="folder for the .vsix (dist)"
    )
    parser.add_argument(
        "--publisher",
        help="Marketplace publisher id written into the manifest (default: the manifest's)",
    )
    parser.add_argument(
        "--stage-only",
        type=Path,
        metavar="DIR",
        help="stage the extension folder into DIR and stop before tfx",
    )
    parser.add_argument(
        "--tool-cache",
        type=Path,
        default=default_tool_cache(),
        help="folder where tfx-cli is installed (default ~/.cache/flink-task/node)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    if args.stage_only:
        task_dir = stage_extension(args.stage_only, args.publisher, install_node_modules=True)
        print(task_dir)
        return 0
    with tempfile.TemporaryDirectory(prefix="flink-task-vsix-") as temporary:
        stage_dir = Path(temporary)
        stage_extension(stage_dir, args.publisher, install_node_modules=True)
        vsix = create_vsix(stage_dir, args.output_dir.resolve(), args.tool_cache)
    print(vsix)
    return 0


if __name__ == "__main__":
    sys.exit(main())
