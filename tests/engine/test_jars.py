"""JarResolver: local paths, file URLs and mapped abfs:// prefixes."""

from __future__ import annotations

from pathlib import Path

import pytest

from flink_task.engine.jars import JarError, JarResolver

ABFS = "abfs://jobs@account.dfs.core.windows.net"


@pytest.fixture
def jar(tmp_path: Path) -> Path:
    folder = tmp_path / "storage" / "jars"
    folder.mkdir(parents=True)
    path = folder / "job.jar"
    path.write_bytes(b"PK")
    return path


def test_local_folder(jar: Path) -> None:
    assert JarResolver().resolve(str(jar.parent), "job.jar") == jar


def test_file_url(jar: Path) -> None:
    assert JarResolver().resolve(jar.parent.as_uri(), "job.jar") == jar


def test_abfs_prefix_mapped(jar: Path) -> None:
    resolver = JarResolver({f"{ABFS}/": jar.parent.parent})

    assert resolver.resolve(f"{ABFS}/jars", "job.jar").resolve() == jar.resolve()
    assert resolver.resolve(f"{ABFS}/jars/", "job.jar").resolve() == jar.resolve()


def test_longest_prefix_wins(jar: Path, tmp_path: Path) -> None:
    resolver = JarResolver({ABFS: tmp_path / "elsewhere", f"{ABFS}/jars": jar.parent})

    assert resolver.resolve(f"{ABFS}/jars", "job.jar").resolve() == jar.resolve()


def test_unmapped_scheme(jar: Path) -> None:
    resolver = JarResolver({f"{ABFS}/": jar.parent.parent})

    with pytest.raises(JarError, match=r"uses https://, which has no local mapping"):
        resolver.resolve("https://example.invalid/jars", "job.jar")
    with pytest.raises(JarError, match="has no local mapping"):
        resolver.resolve("abfs://other@account.dfs.core.windows.net/jars", "job.jar")


def test_missing_file(jar: Path) -> None:
    with pytest.raises(JarError, match=r"jar other.jar not found in "):
        JarResolver().resolve(str(jar.parent), "other.jar")


def test_name_with_separator(jar: Path) -> None:
    for name in ("../job.jar", "jars/job.jar", "jars\\job.jar", ".."):
        with pytest.raises(JarError, match="without path separators"):
            JarResolver().resolve(str(jar.parent), name)


def test_mapped_path_cannot_escape(jar: Path) -> None:
    resolver = JarResolver({f"{ABFS}/": jar.parent})

    with pytest.raises(JarError, match="leaves the folder mapped"):
        resolver.resolve(f"{ABFS}/../..", "job.jar")


def test_empty_directory() -> None:
    with pytest.raises(JarError, match="jobJarDirectory is missing"):
        JarResolver().resolve("", "job.jar")
