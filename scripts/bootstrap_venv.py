#!/usr/bin/env python3
"""Create or reuse the virtual environment that the pipeline surfaces run flink-task in.

The GitHub composite action runs this with the action's folder as ``--source``, and the
Azure DevOps task runs it with the wheel bundled in the task folder. The environment is
cached under ``--cache-root``, keyed by the flink-task version, the platform, the Python
version and a SHA-256 of the source, so a pipeline reuses it until any of those change.

The path of the environment's Python interpreter is printed as the only line on stdout;
progress and pip's output go to stderr. Standard library only, Python 3.10 or later.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import re
import shutil
import subprocess
import sys
import time
import venv
from pathlib import Path

# Files of a source tree that decide what gets installed.
SOURCE_PATTERNS = (
    "pyproject.toml",
    "README.md",
    "flink_task/**/*.py",
    "flink_task/**/*.json",
    "flink_task/py.typed",
)
PIP_TIMEOUT_SECONDS = 900
STALE_BUILD_SECONDS = 3600
COMPLETE_MARKER = ".flink-task-complete"


def log(message: str) -> None:
    print(f"flink-task setup: {message}", file=sys.stderr, flush=True)


def read_version(source: Path) -> str:
    """Return the flink-task version of a wheel file or of a source tree's pyproject.toml."""
    if source.is_file():
        match = re.match(r"flink_task-([^-]+)-", source.name)
        if not match:
            raise SystemExit(f"flink-task setup: {source} is not a flink_task wheel")
        return match.group(1)
    text = (source / "pyproject.toml").read_text(encoding="utf-8")
    project = re.search(r"^\[project\]\s*$(.*?)(?=^\[|\Z)", text, re.MULTILINE | re.DOTALL)
    version = re.search(
        r'^version\s*=\s*"([^"]+)"', project.group(1) if project else "", re.MULTILINE
    )
    if not version:
        raise SystemExit(
            f"flink-task setup: no [project] version found in {source / 'pyproject.toml'}"
        )
    return version.group(1)


def hash_source(source: Path) -> str:
    """Return the SHA-256 of a wheel, or of the relevant files of a source tree."""
    digest = hashlib.sha256()
    if source.is_file():
        digest.update(source.read_bytes())
        return digest.hexdigest()
    files: set[Path] = set()
    for pattern in SOURCE_PATTERNS:
        files.update(path for path in source.glob(pattern) if path.is_file())
    for path in sorted(files):
        digest.update(path.relative_to(source).as_posix().encode("utf-8") + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


def venv_python(env_dir: Path) -> Path:
    if os.name == "nt":
        return env_dir / "Scripts" / "python.exe"
    return env_dir / "bin" / "python"


def remove_stale_builds(version_dir: Path) -> None:
    """Delete half-built environments left by runs that were killed more than an hour ago."""
    now = time.time()
    for path in version_dir.glob(".build-*"):
        try:
            if now - path.stat().st_mtime > STALE_BUILD_SECONDS:
                shutil.rmtree(path, ignore_errors=True)
        except OSError:
            continue


def build_environment(build_dir: Path, source: Path) -> None:
    log(f"creating a virtual environment in {build_dir}")
    venv.EnvBuilder(with_pip=True, clear=True).create(build_dir / "venv")
    command = [
        str(venv_python(build_dir / "venv")),
        "-m",
        "pip",
        "install",
        "--disable-pip-version-check",
        "--no-input",
        "--quiet",
        str(source),
    ]
    log(f"installing flink-task from {source}")
    started = time.monotonic()
    try:
        subprocess.run(command, check=True, stdout=sys.stderr, timeout=PIP_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        raise SystemExit(
            f"flink-task setup: pip install timed out after {PIP_TIMEOUT_SECONDS} s. "
            "Check that the agent or runner can reach the Python package index"
        ) from None
    except subprocess.CalledProcessError as error:
        raise SystemExit(
            f"flink-task setup: pip install failed with exit code {error.returncode}. "
            "The lines above show pip's error"
        ) from None
    log(f"installed in {time.monotonic() - started:.1f} s")
    (build_dir / COMPLETE_MARKER).write_text("", encoding="utf-8")


def environment_key(source: Path) -> str:
    """Return the cache folder name: platform, machine, Python version and source hash."""
    return "{}-{}-py{}{}-{}".format(
        sys.platform,
        platform.machine().lower() or "unknown",
        sys.version_info.major,
        sys.version_info.minor,
        hash_source(source)[:16],
    )


def ensure_environment(source: Path, cache_root: Path) -> Path:
    """Return the interpreter of a complete environment for ``source``, building it if needed.

    Concurrent jobs on one machine each build in their own folder and rename it into
    place. The first rename wins and the others delete their copy, so no job ever uses a
    half-installed environment.
    """
    version = read_version(source)
    key = environment_key(source)
    version_dir = cache_root / "flink-task" / version
    target = version_dir / key
    if (target / COMPLETE_MARKER).is_file():
        log(f"reusing the virtual environment in {target}")
        return venv_python(target / "venv")
    version_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_builds(version_dir)
    build_dir = version_dir / f".build-{os.getpid()}-{time.time_ns()}"
    try:
        build_environment(build_dir, source)
        try:
            os.rename(build_dir, target)
        except OSError:
            if not (target / COMPLETE_MARKER).is_file():
                raise
            log(f"another job finished {target} first; using it")
    finally:
        shutil.rmtree(build_dir, ignore_errors=True)
    return venv_python(target / "venv")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--source",
        required=True,
        type=Path,
        help="flink-task source tree (a folder with pyproject.toml) or wheel file to install",
    )
    parser.add_argument(
        "--cache-root",
        required=True,
        type=Path,
        help="folder for the cached environments, for example $RUNNER_TOOL_CACHE",
    )
    args = parser.parse_args(argv)
    # Callers check the version first; this guards a direct run with an older Python.
    if sys.version_info < (3, 10):  # noqa: UP036
        log(f"Python 3.10 or later is required, this is {platform.python_version()}")
        return 2
    python = ensure_environment(args.source.resolve(), args.cache_root.resolve())
    print(python, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
