"""Build the sample Flink job jars and read the metrics that the job publishes.

The sources live in ``samples/jobs`` of the repository: the common job code in ``src`` and one
``JobVersion`` class per version in ``versions/<name>``. Each version is compiled against the
jars in ``<flink_home>/lib`` into its own jar with the same entry class, so a savepoint of
``v1`` restores into ``v2``, whose ``version`` gauge reports 2.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flink_task.localflink import (
    FLINK_VERSION,
    JAVA_INSTALL_HINT,
    JavaNotFoundError,
    LocalFlinkError,
    exclusive_lock,
    find_java_tool,
)

logger = logging.getLogger(__name__)

ENTRY_CLASS = "io.flinktask.samples.CountingJob"
SAMPLE_VERSIONS = ("v1", "v2")
JAR_NAME_TEMPLATE = "flink-task-sample-{version}.jar"
COUNTER_OPERATOR_NAME = "count-per-key"
"""Name of the stateful operator, the prefix of its metric ids in the REST API."""
DEFAULT_SOURCES_DIR = Path(__file__).resolve().parent.parent / "samples" / "jobs"

_STAMP_FILE = "sources.sha256"
_JAVAC_TIMEOUT_SECONDS = 300


class SampleBuildError(LocalFlinkError):
    """The sample job could not be compiled or packaged."""


def build_sample_jars(
    flink_home: Path,
    out_dir: Path,
    *,
    sources_dir: Path | None = None,
    java_home: Path | None = None,
) -> dict[str, Path]:
    """Compile each sample version into ``out_dir`` and return ``{"v1": jar, "v2": jar}``.

    Compiles with ``javac --release 17 -cp "<flink_home>/lib/*"`` and packages with ``jar``.
    A build is reused when ``out_dir`` contains jars made from the same sources, Flink version
    and compiler, which a hash stored next to the jars records. Raises JavaNotFoundError or
    JavaVersionError when no usable ``javac`` is found, SampleBuildError when compiling fails.
    """
    sources = (sources_dir or DEFAULT_SOURCES_DIR).absolute()
    if not (sources / "src").is_dir():
        raise SampleBuildError(
            f"sample job sources not found in {sources}: they ship in the repository's "
            "samples/jobs folder, not in the installed package"
        )
    out_dir = Path(out_dir).absolute()
    out_dir.mkdir(parents=True, exist_ok=True)
    jars = {
        version: out_dir / JAR_NAME_TEMPLATE.format(version=version) for version in SAMPLE_VERSIONS
    }
    with exclusive_lock(out_dir / ".build.lock"):
        javac = find_java_tool("javac", java_home)
        jar_tool = _find_jar_tool(javac.path)
        digest = _sources_digest(sources, flink_home, javac.version)
        stamp = out_dir / _STAMP_FILE
        if _read_text(stamp) == digest and all(path.is_file() for path in jars.values()):
            logger.info("reusing the sample jars in %s (sources unchanged)", out_dir)
            return jars
        stamp.unlink(missing_ok=True)
        for version, jar_path in jars.items():
            _build_version(sources, version, flink_home, javac.path, jar_tool, jar_path)
        stamp.write_text(digest, encoding="utf-8")
    return jars


def _find_jar_tool(javac: Path) -> Path:
    sibling = javac.resolve().parent / "jar"
    if os.access(sibling, os.X_OK):
        return sibling
    found = shutil.which("jar")
    if found is None:
        raise JavaNotFoundError(
            f"the jar tool was found neither next to {javac} nor on PATH. {JAVA_INSTALL_HINT}"
        )
    return Path(found)


def _java_files(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.java"))


def _sources_digest(sources: Path, flink_home: Path, javac_version: str) -> str:
    digest = hashlib.sha256()
    digest.update(f"flink {FLINK_VERSION}\njavac {javac_version}\n".encode())
    for dist_jar in sorted((flink_home / "lib").glob("flink-dist-*.jar")):
        digest.update(f"{dist_jar.name} {dist_jar.stat().st_size}\n".encode())
    for path in _java_files(sources):
        digest.update(str(path.relative_to(sources)).encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except OSError:
        return None


def _run_tool(command: list[str], description: str) -> None:
    logger.debug("running %s", command)
    try:
        completed = subprocess.run(
            command, capture_output=True, text=True, timeout=_JAVAC_TIMEOUT_SECONDS, check=False
        )
    except subprocess.TimeoutExpired:
        raise SampleBuildError(
            f"{description} timed out after {_JAVAC_TIMEOUT_SECONDS} s"
        ) from None
    if completed.returncode != 0:
        output = (completed.stdout + completed.stderr).strip()
        raise SampleBuildError(
            f"{description} failed with exit code {completed.returncode}:\n{output}"
        )


def _build_version(
    sources: Path, version: str, flink_home: Path, javac: Path, jar_tool: Path, jar_path: Path
) -> None:
    version_dir = sources / "versions" / version
    files = _java_files(sources / "src") + _java_files(version_dir)
    classes = jar_path.parent / f".classes-{version}"
    if classes.exists():
        shutil.rmtree(classes)
    classes.mkdir()

    logger.info("compiling the sample job %s (%d source files)", version, len(files))
    _run_tool(
        [
            str(javac),
            "--release",
            "17",
            "-encoding",
            "UTF-8",
            "-cp",
            str(flink_home / "lib" / "*"),
            "-d",
            str(classes),
            *map(str, files),
        ],
        f"javac of the sample job {version}",
    )

    partial = jar_path.with_name(jar_path.name + ".partial")
    partial.unlink(missing_ok=True)
    _run_tool(
        [
            str(jar_tool),
            "--create",
            "--file",
            str(partial),
            "--main-class",
            ENTRY_CLASS,
            "-C",
            str(classes),
            ".",
        ],
        f"jar of the sample job {version}",
    )
    os.replace(partial, jar_path)

    shutil.rmtree(classes)
    logger.info("built %s", jar_path)


# --------------------------------------------------------------------------------------------
# Metrics


def _get_json(url: str, timeout: float) -> Any:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (caller's URL)
            return json.load(response)
    except urllib.error.HTTPError as error:
        # The error contains the open response. Closing it releases the socket, and the status
        # code stays readable.
        error.close()
        raise


def read_job_metric(
    rest_url: str,
    job_id: str,
    metric_name: str,
    *,
    aggregate: Callable[[list[float]], float] = max,
    timeout: float = 5,
) -> float | None:
    """Return a metric of a running job, aggregated over all subtasks that report it.

    Looks in every vertex of the job for metric ids equal to ``metric_name`` or ending with
    ``.<metric_name>`` (operator metrics are named ``<subtask>.<operator>.<metric>``), and
    applies ``aggregate`` (``max`` by default) to their values. Returns None while no subtask
    reports the metric: the REST API shows metrics only after its metrics cache was refreshed.
    Raises urllib.error.HTTPError for an unknown job.
    """
    base = rest_url.rstrip("/")
    job = _get_json(f"{base}/jobs/{job_id}", timeout)
    values: list[float] = []
    for vertex in job.get("vertices", []):
        vertex_url = f"{base}/jobs/{job_id}/vertices/{vertex['id']}/metrics"
        available = [entry["id"] for entry in _get_json(vertex_url, timeout)]
        matching_ids = [
            metric_id
            for metric_id in available
            if metric_id == metric_name or metric_id.endswith("." + metric_name)
        ]
        if not matching_ids:
            continue
        query = urllib.parse.urlencode({"get": ",".join(matching_ids)})
        for entry in _get_json(f"{vertex_url}?{query}", timeout):
            try:
                values.append(float(entry["value"]))
            except (KeyError, TypeError, ValueError):
                logger.debug("ignoring the non-numeric metric %s", entry)
    if not values:
        return None
    return aggregate(values)


def wait_for_job_metric(
    rest_url: str,
    job_id: str,
    metric_name: str,
    condition: Callable[[float], bool],
    *,
    timeout: float = 60,
    interval: float = 0.5,
) -> float:
    """Poll ``read_job_metric`` until ``condition`` holds for its value and return the value.

    Raises TimeoutError with the last value read when ``timeout`` seconds pass first.
    """
    deadline = time.monotonic() + timeout
    next_report = time.monotonic() + 10
    value: float | None = None
    while True:
        value = read_job_metric(rest_url, job_id, metric_name)
        if value is not None and condition(value):
            return value
        now = time.monotonic()
        if now >= deadline:
            raise TimeoutError(
                f"metric {metric_name} of job {job_id} did not reach the expected value within "
                f"{timeout} s; last value {value}"
            )
        if now >= next_report:
            logger.info("waiting for metric %s of job %s, now %s", metric_name, job_id, value)
            next_report = now + 10
        time.sleep(interval)
