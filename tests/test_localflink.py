"""Tests of the local Flink cluster: install, Java checks, start, status, stop and the CLI."""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from flink_task import cli
from flink_task.localflink import (
    FLINK_VERSION,
    ClusterPorts,
    FlinkNotInstalledError,
    JavaNotFoundError,
    JavaVersionError,
    LocalFlink,
    LocalFlinkError,
    PortInUseError,
    _flatten_yaml_mapping,
    default_cache_dir,
    find_flink_home,
    find_java_tool,
    install,
    parse_java_major,
)
from tests.plugins.flink import LOCAL_FLINK_SLOTS

REPO_ROOT = Path(__file__).resolve().parent.parent


def _write_fake_java(folder: Path, version_line: str, name: str = "java") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / name
    script.write_text(f"#!/bin/sh\necho '{version_line}' >&2\n")
    script.chmod(0o755)
    return script


def _fake_flink_home(root: Path) -> Path:
    """Create the files that LocalFlink checks before it starts anything."""
    for relative in ("bin/jobmanager.sh", "bin/taskmanager.sh", "conf/config.yaml"):
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_text("")
    (root / "lib").mkdir()
    (root / "lib" / f"flink-dist-{FLINK_VERSION}.jar").write_bytes(b"")
    return root


def _wait_until_gone(cluster: LocalFlink, timeout: float) -> list[int]:
    deadline = time.monotonic() + timeout
    remaining = cluster.process_ids()
    while remaining and time.monotonic() < deadline:
        time.sleep(0.5)
        remaining = cluster.process_ids()
    return remaining


def _is_alive(pid: int) -> bool:
    """Return whether a process exists and is not a zombie, reaping it if it is our child."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


def _listening_addresses(pid: int) -> list[str]:
    """Return the local addresses of the TCP sockets that a process listens on (needs ss)."""
    output = subprocess.run(
        ["ss", "-ltnpH"], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    return [line.split()[3] for line in output if f"pid={pid}," in line]


# --------------------------------------------------------------------------------------------
# Java


@pytest.mark.parametrize(
    ("version", "major"),
    [("17.0.15", 17), ("1.8.0_392", 8), ("11", 11), ("21-ea", 21), ("25.0.1+8", 25)],
)
def test_parse_java_major(version: str, major: int) -> None:
    assert parse_java_major(version) == major


def test_java_missing_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    monkeypatch.delenv("JAVA_HOME", raising=False)
    cluster = LocalFlink(tmp_path / "cluster", flink_home=_fake_flink_home(tmp_path / "home"))

    with pytest.raises(JavaNotFoundError) as raised:
        cluster.start()

    assert "java not found on PATH" in str(raised.value)
    assert "openjdk-17-jdk-headless" in str(raised.value)
    assert not (tmp_path / "cluster" / "local-flink.json").exists()


def test_java_too_old_on_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = _write_fake_java(tmp_path / "bin", 'openjdk version "11.0.2" 2019-01-15')
    monkeypatch.setenv("PATH", str(fake.parent))
    monkeypatch.delenv("JAVA_HOME", raising=False)
    cluster = LocalFlink(tmp_path / "cluster", flink_home=_fake_flink_home(tmp_path / "home"))

    with pytest.raises(JavaVersionError) as raised:
        cluster.start()

    message = str(raised.value)
    assert str(fake) in message
    assert "11.0.2" in message
    assert "openjdk-17-jdk-headless" in message


def test_java_too_old_in_java_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = _write_fake_java(tmp_path / "jdk8" / "bin", 'java version "1.8.0_392"')
    monkeypatch.setenv("JAVA_HOME", str(tmp_path / "jdk8"))

    with pytest.raises(JavaVersionError) as raised:
        find_java_tool("java")

    assert str(fake) in str(raised.value)
    assert "1.8.0_392" in str(raised.value)


def test_java_home_without_java(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JAVA_HOME", str(tmp_path / "no-jdk"))

    with pytest.raises(JavaNotFoundError, match=r"JAVA_HOME="):
        find_java_tool("java")


def test_java_unreadable_version(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = _write_fake_java(tmp_path / "bin", "something else entirely")
    monkeypatch.setenv("PATH", str(fake.parent))
    monkeypatch.delenv("JAVA_HOME", raising=False)

    with pytest.raises(JavaVersionError, match="could not read the version"):
        find_java_tool("java")


def test_installed_java_accepted() -> None:
    java = find_java_tool("java")

    assert java.major >= 17
    assert java.path.is_file()


# --------------------------------------------------------------------------------------------
# Configuration and checks before start


def test_flatten_shipped_config_layout() -> None:
    text = (
        "# comment\n"
        "env:\n"
        "  java:\n"
        "    opts:\n"
        "      all: --add-opens=java.base/java.lang=ALL-UNNAMED\n"
        "jobmanager:\n"
        "  rpc:\n"
        "    address: localhost\n"
        "    port: 6123\n"
        "  memory:\n"
        "    process:\n"
        "      size: 1600m\n"
        "parallelism:\n"
        "  default: 1\n"
    )

    assert _flatten_yaml_mapping(text) == {
        "env.java.opts.all": "--add-opens=java.base/java.lang=ALL-UNNAMED",
        "jobmanager.rpc.address": "localhost",
        "jobmanager.rpc.port": "6123",
        "jobmanager.memory.process.size": "1600m",
        "parallelism.default": "1",
    }


def test_port_in_use_error(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        cluster = LocalFlink(
            tmp_path / "cluster", flink_home=_fake_flink_home(tmp_path / "home"), rest_port=port
        )

        with pytest.raises(PortInUseError) as raised:
            cluster.start()

    assert f"port {port} on 127.0.0.1 is already in use" in str(raised.value)
    assert not (tmp_path / "cluster" / "local-flink.json").exists()


def test_flink_not_installed(tmp_path: Path) -> None:
    with pytest.raises(FlinkNotInstalledError, match="local-flink install"):
        find_flink_home(tmp_path / "empty-cache")

    cluster = LocalFlink(tmp_path / "cluster", flink_home=tmp_path / "not-a-flink-home")
    with pytest.raises(FlinkNotInstalledError) as raised:
        cluster.start()
    assert "bin/jobmanager.sh" in str(raised.value)


def test_workdir_with_space_rejected(tmp_path: Path) -> None:
    cluster = LocalFlink(tmp_path / "two words", flink_home=_fake_flink_home(tmp_path / "home"))

    with pytest.raises(LocalFlinkError, match="contains whitespace"):
        cluster.start()


@pytest.mark.parametrize("key", ["rest.port", "rest.bind-address", "io.tmp.dirs"])
def test_managed_config_key_rejected(tmp_path: Path, key: str) -> None:
    with pytest.raises(ValueError, match=f"config must not set {key}"):
        LocalFlink(tmp_path, config={key: "x"})


def test_rest_url_before_start(tmp_path: Path) -> None:
    with pytest.raises(LocalFlinkError, match="no Flink cluster was started"):
        _ = LocalFlink(tmp_path).rest_url


def test_status_without_cluster(tmp_path: Path) -> None:
    status = LocalFlink(tmp_path).status()

    assert status == {"workdir": str(tmp_path), "running": False}


# --------------------------------------------------------------------------------------------
# Install


@pytest.mark.flink
def test_install_is_idempotent(flink_home: Path) -> None:
    started = time.monotonic()
    again = install()
    elapsed = time.monotonic() - started

    assert again == flink_home
    assert elapsed < 2
    assert (flink_home.parent / ".flink-task-installed").read_text().strip() == FLINK_VERSION
    assert os.access(flink_home / "bin" / "jobmanager.sh", os.X_OK)
    assert list((flink_home / "lib").glob(f"flink-dist-{FLINK_VERSION}.jar"))


@pytest.mark.flink
def test_install_redoes_interrupted(tmp_path: Path) -> None:
    wheels = default_cache_dir() / "wheels"
    if not list(wheels.glob(f"apache_flink_libraries-{FLINK_VERSION}-*.whl")):
        pytest.skip(f"no cached Flink wheels in {wheels}; this test must not download them")
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "wheels").symlink_to(wheels)
    interrupted = cache / f"flink-{FLINK_VERSION}"
    (interrupted / "pyflink").mkdir(parents=True)
    (interrupted / "pyflink" / "half-written").write_text("")

    with ThreadPoolExecutor(max_workers=2) as pool:
        homes = list(pool.map(install, [cache, cache]))
    home = homes[0]

    assert homes[1] == home
    assert home == interrupted / "pyflink"
    assert not (home / "half-written").exists()
    assert (interrupted / ".flink-task-installed").is_file()
    assert (home / "conf" / "config.yaml").is_file()
    assert not list(cache.glob(".flink-*.partial-*"))

    script = home / "bin" / "taskmanager.sh"
    script.chmod(0o644)
    assert install(cache) == home
    assert os.access(script, os.X_OK)


# --------------------------------------------------------------------------------------------
# Running clusters


@pytest.mark.flink
def test_session_cluster_status(local_flink: LocalFlink) -> None:
    status = local_flink.status()

    assert status["running"] is True
    assert status["restUrl"] == local_flink.rest_url
    assert local_flink.rest_url.startswith("http://127.0.0.1:")
    assert status["alive"] == {"jobmanager": True, "taskmanager": True}
    assert status["overview"]["slots-total"] == LOCAL_FLINK_SLOTS
    assert status["overview"]["flink-version"] == FLINK_VERSION
    assert set(local_flink.process_ids()) >= {
        status["pids"]["jobmanager"],
        status["pids"]["taskmanager"],
    }


@pytest.mark.flink
def test_session_cluster_config(local_flink: LocalFlink) -> None:
    entries = requests.get(f"{local_flink.rest_url}/jobmanager/config", timeout=30).json()
    config = {entry["key"]: entry["value"] for entry in entries}

    assert "execution.checkpointing.savepoint-dir" not in config
    assert "state.savepoints.dir" not in config
    assert "execution.checkpointing.interval" not in config
    assert config["rest.bind-address"] == "127.0.0.1"
    assert config["jobmanager.bind-host"] == "127.0.0.1"
    assert config["taskmanager.numberOfTaskSlots"] == str(LOCAL_FLINK_SLOTS)
    workdir = str(local_flink.workdir)
    for key in ("web.tmpdir", "web.upload.dir", "io.tmp.dirs", "blob.storage.directory"):
        assert config[key].startswith(workdir), key


@pytest.mark.flink
def test_session_cluster_binds_loopback(local_flink: LocalFlink) -> None:
    if shutil.which("ss") is None:
        pytest.skip("ss is not installed")
    pids = local_flink.status()["pids"]

    for role in ("jobmanager", "taskmanager"):
        addresses = _listening_addresses(pids[role])
        assert addresses, role
        for address in addresses:
            host = address.rsplit(":", 1)[0]
            assert host in {"127.0.0.1", "[::ffff:127.0.0.1]"}, (role, address)


@pytest.mark.flink
def test_start_twice_rejected(local_flink: LocalFlink, flink_home: Path) -> None:
    second = LocalFlink(local_flink.workdir, flink_home=flink_home)

    with pytest.raises(LocalFlinkError, match="already running"):
        second.start()
    assert local_flink.is_running()


@pytest.mark.flink
def test_cli_start_status_stop(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flink_home: Path
) -> None:
    workdir = tmp_path / "cli-cluster"
    cluster = LocalFlink(workdir)
    try:
        argv = ["start", "--workdir", str(workdir), "--slots", "2"]
        argv += ["--config", "rest.async.store-duration=10 min"]
        assert cli.main(["local-flink", *argv]) == 0
        started = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert started["workdir"] == str(workdir)
        assert started["restUrl"].startswith("http://127.0.0.1:")
        assert started["flinkHome"] == str(flink_home)
        assert set(started["pids"]) == {"jobmanager", "taskmanager"}

        assert cli.main(["local-flink", "status", "--workdir", str(workdir)]) == 0
        status = json.loads(capsys.readouterr().out)
        assert status["running"] is True
        assert status["overview"]["slots-total"] == 2
        entries = requests.get(f"{started['restUrl']}/jobmanager/config", timeout=30).json()
        config = {entry["key"]: entry["value"] for entry in entries}
        assert config["rest.async.store-duration"] == "10 min"

        # Stop from another process, as a pipeline step after `start` would.
        stopped = subprocess.run(
            [sys.executable, "-m", "flink_task", "local-flink", "stop", "--workdir", str(workdir)],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=REPO_ROOT,
            check=False,
        )
        assert stopped.returncode == 0, stopped.stderr
        assert cluster.process_ids() == []
        for pid in started["pids"].values():
            assert not _is_alive(pid), pid

        assert cli.main(["local-flink", "status", "--workdir", str(workdir)]) == 1
        assert json.loads(capsys.readouterr().out)["running"] is False
    finally:
        cluster.stop()


@pytest.mark.flink
def test_watchdog_stops_orphaned_cluster(tmp_path: Path, flink_home: Path) -> None:
    workdir = tmp_path / "orphan"
    owner_code = (
        "import os, sys, time\n"
        "from pathlib import Path\n"
        "from flink_task.localflink import LocalFlink\n"
        f"cluster = LocalFlink(Path({str(workdir)!r}), flink_home=Path({str(flink_home)!r}),\n"
        "                     slots=1, owner_pid=os.getpid())\n"
        "cluster.start()\n"
        "print('started', flush=True)\n"
        "time.sleep(600)\n"
    )
    owner_log = tmp_path / "owner.log"
    with owner_log.open("w") as owner_stderr:
        owner = subprocess.Popen(
            [sys.executable, "-c", owner_code],
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            stderr=owner_stderr,
            text=True,
        )
    cluster = LocalFlink(workdir)
    try:
        assert owner.stdout is not None
        # The owner's start() has its own deadline, after which it prints nothing and exits.
        assert owner.stdout.readline().strip() == "started", owner_log.read_text()
        assert cluster.is_running()
        watchdog = cluster.status()["pids"]["watchdog"]

        owner.send_signal(signal.SIGKILL)
        owner.wait(timeout=30)

        assert _wait_until_gone(cluster, timeout=90) == []
        deadline = time.monotonic() + 15
        while _is_alive(watchdog) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not _is_alive(watchdog)
        assert not cluster.state_file.exists()
    finally:
        if owner.poll() is None:
            owner.kill()
            owner.wait(timeout=30)
        if owner.stdout is not None:
            owner.stdout.close()
        cluster.stop()


@pytest.mark.flink
def test_port_race_then_forced_stop(
    tmp_path: Path,
    flink_home: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The first start finds its REST port taken and retries. Stop kills a frozen TaskManager."""
    caplog.set_level(logging.INFO, logger="flink_task.localflink")
    cluster = LocalFlink(tmp_path / "race", flink_home=flink_home, slots=1)
    real_choose_ports = LocalFlink._choose_ports
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        taken_port = taken.getsockname()[1]
        chosen: list[ClusterPorts] = []

        def choose_ports(self: LocalFlink) -> ClusterPorts:
            ports = real_choose_ports(self)
            if not chosen:
                ports.rest = taken_port
            chosen.append(ports)
            return ports

        monkeypatch.setattr(LocalFlink, "_choose_ports", choose_ports)
        try:
            cluster.start(timeout=180)

            assert len(chosen) == 2
            assert cluster.rest_url == f"http://127.0.0.1:{chosen[1].rest}"
            assert "Flink could not bind a port (attempt 1 of 3" in caplog.text
            assert cluster.is_running()

            taskmanager = cluster.status()["pids"]["taskmanager"]
            os.kill(taskmanager, signal.SIGSTOP)
            cluster.stop(timeout=3)

            assert "did not stop within 3 s, killing them" in caplog.text
            assert cluster.process_ids() == []
            assert not _is_alive(taskmanager)
        finally:
            cluster.stop()


# --------------------------------------------------------------------------------------------
# Command line usage


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["restart"],
        ["start", "--slots", "many"],
        ["start", "--slots", "0"],
        ["start", "--config", "no-equals-sign"],
        ["start", "--config", "rest.bind-address=0.0.0.0"],
    ],
)
def test_cli_bad_usage(argv: list[str], tmp_path: Path) -> None:
    if argv[:1] == ["start"]:
        argv = [*argv, "--workdir", str(tmp_path)]

    assert cli.main(["local-flink", *argv]) == 2


def test_cli_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["local-flink", "--help"]) == 0
    assert "install" in capsys.readouterr().out


def test_cli_status_not_running(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["local-flink", "status", "--workdir", str(tmp_path)]) == 1
    assert json.loads(capsys.readouterr().out) == {"workdir": str(tmp_path), "running": False}


def test_cli_stop_without_cluster(tmp_path: Path) -> None:
    assert cli.main(["local-flink", "stop", "--workdir", str(tmp_path)]) == 0


@pytest.mark.flink
def test_cli_start_without_java(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    flink_home: Path,
) -> None:
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    monkeypatch.delenv("JAVA_HOME", raising=False)

    assert cli.main(["local-flink", "start", "--workdir", str(tmp_path / "cluster")]) == 1
    assert "openjdk-17-jdk-headless" in capsys.readouterr().err
