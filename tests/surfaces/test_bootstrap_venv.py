"""The cached virtual environment of the surfaces: keys, reuse and concurrent builds.

The full install (venv and pip) runs in test_end_to_end.py; these tests replace the build
step to check the caching rules on their own.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from tests.surfaces.conftest import load_script

bootstrap = load_script("bootstrap_venv")


@pytest.fixture()
def source(tmp_path: Path) -> Path:
    tree = tmp_path / "source"
    (tree / "flink_task" / "schemas").mkdir(parents=True)
    (tree / "pyproject.toml").write_text('[project]\nname = "flink-task"\nversion = "4.5.6"\n')
    (tree / "flink_task" / "__init__.py").write_text("")
    (tree / "flink_task" / "schemas" / "new.json").write_text("{}")
    return tree


def test_version_from_tree(source: Path) -> None:
    assert bootstrap.read_version(source) == "4.5.6"


def test_version_from_wheel(tmp_path: Path) -> None:
    wheel = tmp_path / "flink_task-1.2.3-py3-none-any.whl"
    wheel.write_bytes(b"not really a wheel")
    assert bootstrap.read_version(wheel) == "1.2.3"


def test_other_wheel_rejected(tmp_path: Path) -> None:
    wheel = tmp_path / "requests-2.0.0-py3-none-any.whl"
    wheel.write_bytes(b"")
    with pytest.raises(SystemExit, match="not a flink_task wheel"):
        bootstrap.read_version(wheel)


def test_hash_follows_source(source: Path) -> None:
    before = bootstrap.hash_source(source)
    (source / "flink_task" / "schemas" / "new.json").write_text('{"changed": true}')
    assert bootstrap.hash_source(source) != before


def test_hash_ignores_build_output(source: Path) -> None:
    before = bootstrap.hash_source(source)
    (source / "build").mkdir()
    (source / "build" / "lib.py").write_text("x = 1")
    assert bootstrap.hash_source(source) == before


def test_complete_environment_reused(
    source: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def build(build_dir: Path, _source: Path) -> None:
        (build_dir / bootstrap.COMPLETE_MARKER).parent.mkdir(parents=True)
        (build_dir / bootstrap.COMPLETE_MARKER).write_text("")

    monkeypatch.setattr(bootstrap, "build_environment", build)
    first = bootstrap.ensure_environment(source, tmp_path / "cache")

    def fail(_build_dir: Path, _source: Path) -> None:
        raise AssertionError("a complete environment was built again")

    monkeypatch.setattr(bootstrap, "build_environment", fail)
    assert bootstrap.ensure_environment(source, tmp_path / "cache") == first
    assert first.parts[-2] in ("bin", "Scripts")
    assert "4.5.6" in first.parts


def test_lost_race_uses_winner(
    source: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When another job renames its build into place first, this job's copy is dropped."""
    cache = tmp_path / "cache"
    targets: list[Path] = []

    def build_while_other_job_wins(build_dir: Path, _source: Path) -> None:
        build_dir.mkdir(parents=True)
        (build_dir / bootstrap.COMPLETE_MARKER).write_text("")
        (build_dir / "mine").write_text("")
        target = build_dir.parent / bootstrap.environment_key(source)
        target.mkdir()
        (target / bootstrap.COMPLETE_MARKER).write_text("")
        (target / "winner").write_text("")
        targets.append(target)

    monkeypatch.setattr(bootstrap, "build_environment", build_while_other_job_wins)
    python = bootstrap.ensure_environment(source, cache)
    target = targets[0]
    assert python == bootstrap.venv_python(target / "venv")
    assert (target / "winner").exists()
    assert not (target / "mine").exists()
    assert not list(target.parent.glob(".build-*"))


def test_stale_builds_removed(
    source: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    version_dir = tmp_path / "cache" / "flink-task" / "4.5.6"
    stale = version_dir / ".build-1-1"
    fresh = version_dir / ".build-2-2"
    stale.mkdir(parents=True)
    fresh.mkdir()
    old = time.time() - bootstrap.STALE_BUILD_SECONDS - 60
    os.utime(stale, (old, old))
    bootstrap.remove_stale_builds(version_dir)
    assert not stale.exists()
    assert fresh.exists()
