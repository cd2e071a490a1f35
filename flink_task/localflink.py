"""Local standalone Flink cluster built from the PyPI wheels and a Java 17+ runtime.

``install`` lays out a Flink home from the ``apache-flink`` wheel (``bin/``, ``conf/``) and the
``apache-flink-libraries`` wheel (``lib/``, ``opt/``, ``plugins/``). ``LocalFlink`` runs one
JobManager and one TaskManager from that home.

Everything a cluster writes (configuration, logs, pid files, temporary, upload and blob
directories) stays in its working directory. Every port is bound to 127.0.0.1 and picked at
start. The process ids are recorded in ``<workdir>/local-flink.json``, and each process carries
a marker argument naming the working directory, so ``stop`` works from any process.

The command ``flink-task local-flink {install,start,stop,status}`` is ``main``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from flink_task.errors import EXIT_ACTION_FAILED, EXIT_INVALID_INPUT, EXIT_OK, FlinkTaskError

try:
    import fcntl
except ImportError:  # Windows: Flink's start scripts need bash, so only the locks are skipped.
    fcntl = None  # type: ignore[assignment]

logger = logging.getLogger(__name__)

FLINK_VERSION = "2.3.0"
MIN_JAVA_MAJOR = 17
JAVA_INSTALL_HINT = (
    "Install Java 17 or newer (Debian/Ubuntu: apt-get install openjdk-17-jdk-headless) "
    "and put it on PATH or set JAVA_HOME"
)
DEFAULT_JOBMANAGER_MEMORY = "1024m"
DEFAULT_TASKMANAGER_MEMORY = "1536m"
STATE_FILE_NAME = "local-flink.json"
LOOPBACK = "127.0.0.1"

_INSTALL_MARKER = ".flink-task-installed"
_WHEEL_PREFIXES = ("apache_flink", "apache_flink_libraries")
_PIP_TIMEOUT_SECONDS = 1800
_PROCESS_ROLES = ("taskmanager", "jobmanager")
_BIND_FAILURE_PATTERN = re.compile(r"BindException|Address already in use")
_LOG_TAIL_LINES = 40
# Keys that LocalFlink sets itself: overriding them through `config` would move ports, bind
# addresses or files out of its control. Slots and memory have their own parameters.
_MANAGED_CONFIG_KEYS = frozenset(
    {
        "env.java.opts.all",
        "jobmanager.rpc.address",
        "jobmanager.rpc.port",
        "jobmanager.bind-host",
        "jobmanager.memory.process.size",
        "taskmanager.host",
        "taskmanager.bind-host",
        "taskmanager.rpc.port",
        "taskmanager.data.port",
        "taskmanager.numberOfTaskSlots",
        "taskmanager.memory.process.size",
        "rest.address",
        "rest.bind-address",
        "rest.port",
        "rest.bind-port",
        "blob.server.port",
        "blob.storage.directory",
        "web.tmpdir",
        "web.upload.dir",
        "io.tmp.dirs",
    }
)
# An unknown configuration key, passed as a dynamic property (-D) to both entry points. Flink
# ignores it, and it puts the working directory on the command line of every process.
_MARKER_KEY = "flink-task.local-flink.workdir"


class LocalFlinkError(FlinkTaskError):
    """The local Flink cluster could not be installed, started, stopped or queried."""

    exit_code = EXIT_ACTION_FAILED


class JavaNotFoundError(LocalFlinkError):
    """No ``java`` (or ``javac``) executable was found."""


class JavaVersionError(LocalFlinkError):
    """The Java runtime or compiler found is older than Java 17."""


class PortInUseError(LocalFlinkError):
    """A port requested for the cluster is already bound by another process."""


class FlinkNotInstalledError(LocalFlinkError):
    """No usable Flink home: ``install`` was not run, or the folder is incomplete."""


# --------------------------------------------------------------------------------------------
# Java


@dataclass(frozen=True)
class JavaTool:
    """A Java executable (``java`` or ``javac``), its version string and major version."""

    path: Path
    version: str
    major: int


def parse_java_major(version: str) -> int:
    """Return the major version of a Java version string (``1.8.0_392`` is 8, ``17.0.15`` 17)."""
    parts = re.findall(r"\d+", version)
    if not parts:
        raise ValueError(f"not a Java version: {version!r}")
    if parts[0] == "1" and len(parts) > 1:
        return int(parts[1])
    return int(parts[0])


def find_java_tool(name: str, java_home: Path | None = None) -> JavaTool:
    """Locate ``java`` or ``javac`` and check that it is Java 17 or newer.

    The search order matches Flink's ``bin/config.sh``: ``java_home``, then ``$JAVA_HOME``,
    then ``PATH``. Raises JavaNotFoundError or JavaVersionError with the path that was found.
    """
    home = java_home or (Path(os.environ["JAVA_HOME"]) if os.environ.get("JAVA_HOME") else None)
    if home is not None:
        candidate = home / "bin" / name
        if not os.access(candidate, os.X_OK):
            raise JavaNotFoundError(
                f"{name} not found at {candidate} (JAVA_HOME={home}). {JAVA_INSTALL_HINT}"
            )
        path = candidate
    else:
        found = shutil.which(name)
        if found is None:
            raise JavaNotFoundError(f"{name} not found on PATH. {JAVA_INSTALL_HINT}")
        path = Path(found)
    version = _read_java_version(name, path)
    try:
        major = parse_java_major(version)
    except ValueError:
        raise JavaVersionError(
            f"could not read the version of {path} (output: {version!r}). {JAVA_INSTALL_HINT}"
        ) from None
    if major < MIN_JAVA_MAJOR:
        raise JavaVersionError(
            f"{path} is Java {version}, but Flink {FLINK_VERSION} needs Java "
            f"{MIN_JAVA_MAJOR} or newer. {JAVA_INSTALL_HINT}"
        )
    logger.debug("using %s %s (Java %d)", name, path, major)
    return JavaTool(path=path, version=version, major=major)


def _read_java_version(name: str, path: Path) -> str:
    # `java -version` writes to stderr; `javac -version` writes to stdout since Java 9.
    try:
        completed = subprocess.run(
            [str(path), "-version"], capture_output=True, text=True, timeout=60, check=False
        )
    except OSError as error:
        raise JavaNotFoundError(f"could not run {path}: {error}. {JAVA_INSTALL_HINT}") from None
    except subprocess.TimeoutExpired:
        raise JavaNotFoundError(f"{path} -version did not finish within 60 s") from None
    output = completed.stderr + "\n" + completed.stdout
    pattern = r'version "([^"]+)"' if name == "java" else r"javac (\S+)"
    match = re.search(pattern, output)
    if match is None:
        return output.strip()[:200]
    return match.group(1)


# --------------------------------------------------------------------------------------------
# Installation


def default_cache_dir() -> Path:
    """Return the cache root: ``$FLINK_TASK_CACHE``, else ``~/.cache/flink-task``."""
    configured = os.environ.get("FLINK_TASK_CACHE")
    if configured:
        return Path(configured).expanduser()
    return Path.home() / ".cache" / "flink-task"


def default_workdir() -> Path:
    """Return the CLI's cluster folder: ``$FLINK_TASK_LOCAL_FLINK_DIR``, else a cache folder."""
    configured = os.environ.get("FLINK_TASK_LOCAL_FLINK_DIR")
    if configured:
        return Path(configured).expanduser()
    return default_cache_dir() / "local-flink"


def _install_dir(cache_dir: Path | None) -> Path:
    return (cache_dir or default_cache_dir()).expanduser().absolute() / f"flink-{FLINK_VERSION}"


def find_flink_home(cache_dir: Path | None = None) -> Path:
    """Return the Flink home that ``install`` made, or raise FlinkNotInstalledError."""
    target = _install_dir(cache_dir)
    if not _is_installed(target):
        raise FlinkNotInstalledError(
            f"Flink {FLINK_VERSION} is not installed in {target}. "
            "Run 'flink-task local-flink install' first"
        )
    return target / "pyflink"


def install(cache_dir: Path | None = None) -> Path:
    """Install Flink from the PyPI wheels into the cache if needed and return its Flink home.

    Both wheels are installed with ``pip install --no-deps --target <cache>/flink-<version>``.
    Wheels found in ``<cache>/wheels`` are used without contacting an index. The marker file
    is written last, so an interrupted install is detected and redone. A file lock makes
    concurrent calls wait for one another.
    """
    target = _install_dir(cache_dir)
    home = target / "pyflink"
    if _is_installed(target):
        _make_scripts_executable(home / "bin")
        logger.debug("Flink %s already installed in %s", FLINK_VERSION, home)
        return home
    target.parent.mkdir(parents=True, exist_ok=True)
    with exclusive_lock(target.parent / f"flink-{FLINK_VERSION}.lock"):
        if _is_installed(target):
            logger.info("Flink %s was installed by another process in %s", FLINK_VERSION, home)
            return home
        if target.exists():
            logger.info("removing the incomplete Flink install in %s", target)
            shutil.rmtree(target)
        staging = target.parent / f".flink-{FLINK_VERSION}.partial-{os.getpid()}"
        if staging.exists():
            shutil.rmtree(staging)
        try:
            _pip_install(staging, target.parent / "wheels")
            _check_flink_home(staging / "pyflink")
            _make_scripts_executable(staging / "pyflink" / "bin")
            staging.rename(target)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        (target / _INSTALL_MARKER).write_text(FLINK_VERSION + "\n", encoding="utf-8")
    logger.info("installed Flink %s in %s", FLINK_VERSION, home)
    return home


def _is_installed(target: Path) -> bool:
    marker = target / _INSTALL_MARKER
    try:
        installed_version = marker.read_text(encoding="utf-8").strip()
    except OSError:
        return False
    return installed_version == FLINK_VERSION and (target / "pyflink/bin/jobmanager.sh").is_file()


@contextlib.contextmanager
def exclusive_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (created if missing) for the ``with`` block."""
    if fcntl is None:
        yield
        return
    with path.open("a") as handle:
        logger.debug("waiting for the lock %s", path)
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _local_wheels(wheel_dir: Path) -> list[Path] | None:
    """Return the two cached wheels of FLINK_VERSION that fit this Python, or None."""
    if not wheel_dir.is_dir():
        return None
    python_tag = f"cp{sys.version_info.major}{sys.version_info.minor}"
    found: dict[str, Path] = {}
    for wheel in sorted(wheel_dir.glob(f"*-{FLINK_VERSION}-*.whl")):
        name, _version, tags = wheel.name.split("-", 2)
        compatible = tags.startswith((python_tag + "-", "py3", "py2.py3"))
        if name in _WHEEL_PREFIXES and compatible:
            found[name] = wheel
    if set(found) != set(_WHEEL_PREFIXES):
        return None
    return [found[name] for name in _WHEEL_PREFIXES]


def _pip_install(staging: Path, wheel_dir: Path) -> None:
    command = [sys.executable, "-m", "pip", "install", "--no-deps", "--target", str(staging)]
    wheels = _local_wheels(wheel_dir)
    if wheels is not None:
        command += ["--no-index", *map(str, wheels)]
        logger.info("installing Flink %s from the cached wheels in %s", FLINK_VERSION, wheel_dir)
    else:
        command += [f"apache-flink=={FLINK_VERSION}", f"apache-flink-libraries=={FLINK_VERSION}"]
        logger.info(
            "installing Flink %s with pip from its configured index (about 330 MB)", FLINK_VERSION
        )
    logger.debug("running %s", command)
    try:
        completed = subprocess.run(
            command, capture_output=True, text=True, timeout=_PIP_TIMEOUT_SECONDS, check=False
        )
    except subprocess.TimeoutExpired:
        raise LocalFlinkError(
            f"pip install of Flink {FLINK_VERSION} timed out after {_PIP_TIMEOUT_SECONDS} s"
        ) from None
    if completed.returncode != 0:
        output = (completed.stdout + completed.stderr).strip().splitlines()
        raise LocalFlinkError(
            f"pip install of Flink {FLINK_VERSION} failed with exit code {completed.returncode}:\n"
            + "\n".join(output[-20:])
        )


def _check_flink_home(home: Path) -> None:
    required = [home / "bin/jobmanager.sh", home / "bin/taskmanager.sh", home / "conf/config.yaml"]
    missing = [str(path) for path in required if not path.is_file()]
    if not list((home / "lib").glob("flink-dist-*.jar")):
        missing.append(str(home / "lib/flink-dist-*.jar"))
    if missing:
        raise FlinkNotInstalledError(
            f"{home} is not a complete Flink home, missing: {', '.join(missing)}. "
            "Run 'flink-task local-flink install'"
        )


def _make_scripts_executable(bin_dir: Path) -> None:
    # Wheels do not always keep the executable bits of the shell scripts.
    for script in bin_dir.iterdir():
        if script.is_file() and script.suffix != ".jar":
            mode = script.stat().st_mode
            if mode & 0o111 != 0o111:
                script.chmod(mode | 0o111)


# --------------------------------------------------------------------------------------------
# Configuration


def _flatten_yaml_mapping(text: str) -> dict[str, str]:
    """Flatten the nested block mapping of Flink's shipped ``config.yaml`` into dotted keys.

    Handles the subset the shipped file uses: nested mappings and scalar values on one line.
    Values are kept exactly as written so that they can be written back unchanged.
    """
    flat: dict[str, str] = {}
    stack: list[tuple[int, str]] = []
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        indent = len(line) - len(line.lstrip(" "))
        key, separator, value = stripped.partition(":")
        if not separator:
            continue
        while stack and stack[-1][0] >= indent:
            stack.pop()
        dotted = ".".join([*(part for _, part in stack), key.strip()])
        value = value.strip()
        if value:
            flat[dotted] = value
        else:
            stack.append((indent, key.strip()))
    return flat


def _yaml_scalar(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    # A JSON string is a valid YAML double-quoted scalar.
    return json.dumps(str(value))


@dataclass
class ClusterPorts:
    """Loopback ports of one cluster."""

    rest: int
    jobmanager_rpc: int
    blob: int
    taskmanager_rpc: int
    taskmanager_data: int


def _pick_free_ports(count: int) -> list[int]:
    # All sockets stay open until every port is picked, so the ports differ from one another.
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind((LOOPBACK, 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _check_port_free(port: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((LOOPBACK, port))
        except OSError as error:
            raise PortInUseError(
                f"port {port} on {LOOPBACK} is already in use ({error.strerror}). "
                "Choose another --rest-port or stop the process that uses it"
            ) from None


def _check_extra_config(config: Mapping[str, object]) -> None:
    managed = sorted(set(config) & _MANAGED_CONFIG_KEYS)
    if managed:
        raise ValueError(
            f"config must not set {', '.join(managed)}: LocalFlink sets these itself "
            "(use the slots, rest port and memory options instead)"
        )


# --------------------------------------------------------------------------------------------
# Processes


_STARTED_PROCESSES: dict[int, tuple[subprocess.Popen[bytes], str]] = {}
"""Processes started by this Python process, with the marker of their cluster.

Each entry stays until a poll has seen the exit, which reaps the process. Python emits a
ResourceWarning when a Popen is garbage-collected before that, and the registry prevents it.
"""


def _poll_started_process(pid: int) -> bool | None:
    """Return whether a process started here is running, or None if it was not started here."""
    entry = _STARTED_PROCESSES.get(pid)
    if entry is None:
        return None
    if entry[0].poll() is None:
        return True
    del _STARTED_PROCESSES[pid]
    return False


def _running_started_pids(marker: str) -> list[int]:
    return [
        pid
        for pid, (_process, process_marker) in list(_STARTED_PROCESSES.items())
        if process_marker == marker and _poll_started_process(pid)
    ]


def _detach_started_processes() -> None:
    """Stop tracking the processes started here, so that they outlive this Python process.

    Used by ``flink-task local-flink start``, whose cluster keeps running after it exits.
    """
    for pid, (process, _marker) in list(_STARTED_PROCESSES.items()):
        if process.poll() is None:
            # Marks the Popen as finished so that it does not warn when it is collected at
            # exit. The process keeps running and is reaped by init once this process exits.
            process.returncode = 0
        del _STARTED_PROCESSES[pid]


def _process_args(pid: int) -> list[str] | None:
    """Return the command line of a live, non-zombie process, or None."""
    proc = Path("/proc") / str(pid)
    if proc.is_dir():
        try:
            stat = (proc / "stat").read_text()
            raw = (proc / "cmdline").read_bytes()
        except OSError:
            return None
        if stat.rpartition(")")[2].split()[:1] == ["Z"]:
            _reap(pid)
            return None
        return [part.decode(errors="replace") for part in raw.split(b"\0") if part]
    completed = subprocess.run(
        ["ps", "-o", "stat=,args=", "-p", str(pid)], capture_output=True, text=True, check=False
    )
    line = completed.stdout.strip()
    if completed.returncode != 0 or not line or line.startswith("Z"):
        return None
    return line.split()[1:]


def _reap(pid: int) -> None:
    if _poll_started_process(pid) is not None:
        return
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def _describe_process(pid: int) -> str:
    """Return the pid, state and start of the command line of a process, for error messages."""
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rpartition(")")[2].split()[0]
    except (OSError, IndexError):
        state = "?"
    args = " ".join(_process_args(pid) or [])
    return f"pid {pid} state {state} {args[:120]}"


def _all_process_args() -> Iterator[tuple[int, list[str]]]:
    proc = Path("/proc")
    if proc.is_dir():
        for entry in proc.iterdir():
            if entry.name.isdigit():
                args = _process_args(int(entry.name))
                if args:
                    yield int(entry.name), args
        return
    completed = subprocess.run(
        ["ps", "-A", "-o", "pid=,stat=,args="], capture_output=True, text=True, check=False
    )
    for line in completed.stdout.splitlines():
        fields = line.split()
        if len(fields) >= 3 and not fields[1].startswith("Z"):
            yield int(fields[0]), fields[2:]


def _signal_process(pid: int, signum: int) -> None:
    """Send a signal to the process group the process leads, else to the process alone."""
    try:
        if os.getpgid(pid) == pid:
            os.killpg(pid, signum)
        else:
            os.kill(pid, signum)
    except ProcessLookupError:
        pass
    except PermissionError as error:
        logger.warning("could not signal process %s: %s", pid, error)


def _is_owner_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return _process_args(pid) is not None


def _tail(path: Path, lines: int = _LOG_TAIL_LINES) -> str:
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - 64 * 1024))
            text = handle.read().decode(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def _http_get_json(url: str, timeout: float = 2.0) -> Any:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (loopback URL)
            return json.load(response)
    except urllib.error.HTTPError as error:
        # The error contains the open response. Closing it releases the socket, and the status
        # code stays readable.
        error.close()
        raise


# --------------------------------------------------------------------------------------------
# Cluster


class LocalFlink:
    """A standalone Flink session cluster (one JobManager, one TaskManager) on loopback.

    ``config`` adds or overrides keys of the generated ``config.yaml``, except the ports,
    addresses, folders, slots and memory sizes that LocalFlink manages. No savepoint directory
    is configured unless ``config`` sets one. With ``owner_pid`` set, a small watchdog process
    stops the cluster once that process has exited, so a test run that crashes does not leave
    JVMs behind.
    """

    def __init__(
        self,
        workdir: Path,
        *,
        flink_home: Path | None = None,
        slots: int = 4,
        rest_port: int | None = None,
        java_home: Path | None = None,
        jobmanager_memory: str = DEFAULT_JOBMANAGER_MEMORY,
        taskmanager_memory: str = DEFAULT_TASKMANAGER_MEMORY,
        config: Mapping[str, object] | None = None,
        owner_pid: int | None = None,
    ) -> None:
        if slots < 1:
            raise ValueError(f"slots must be at least 1, got {slots}")
        if rest_port is not None and not 0 < rest_port < 65536:
            raise ValueError(f"rest_port must be between 1 and 65535, got {rest_port}")
        _check_extra_config(config or {})
        # Resolved, so that every process names the same folder in the process marker.
        self.workdir = Path(workdir).expanduser().resolve()
        self._flink_home = flink_home
        self.slots = slots
        self.requested_rest_port = rest_port
        self.java_home = java_home
        self.jobmanager_memory = jobmanager_memory
        self.taskmanager_memory = taskmanager_memory
        self.extra_config = dict(config or {})
        self.owner_pid = owner_pid

    # Paths -----------------------------------------------------------------------------------

    @property
    def conf_dir(self) -> Path:
        return self.workdir / "conf"

    @property
    def log_dir(self) -> Path:
        return self.workdir / "log"

    @property
    def pid_dir(self) -> Path:
        return self.workdir / "pid"

    @property
    def state_file(self) -> Path:
        return self.workdir / STATE_FILE_NAME

    @property
    def process_marker(self) -> str:
        """Argument on the command line of this cluster's processes, from the launch script to
        the JVM, which identifies them even when their pids were not recorded."""
        return f"{_MARKER_KEY}={self.workdir}"

    @property
    def flink_home(self) -> Path:
        """Flink home in use: the one given, else the one ``install`` made."""
        if self._flink_home is None:
            self._flink_home = find_flink_home()
        return Path(self._flink_home).absolute()

    @property
    def rest_url(self) -> str:
        """Base URL of the REST API, ``http://127.0.0.1:PORT``, once the cluster was started."""
        state = self._read_state()
        if state is None:
            raise LocalFlinkError(f"no Flink cluster was started in {self.workdir}")
        return str(state["restUrl"])

    # Lifecycle -------------------------------------------------------------------------------

    def __enter__(self) -> LocalFlink:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self, timeout: float = 120) -> None:
        """Start the JobManager and TaskManager and wait until all slots are registered.

        Raises LocalFlinkError (and stops whatever it started) when a process exits early or
        the REST API does not report ``slots`` slots within ``timeout`` seconds.
        """
        self.workdir.mkdir(parents=True, exist_ok=True)
        with exclusive_lock(self.workdir / ".start.lock"):
            self._start_locked(timeout)

    def _start_locked(self, timeout: float) -> None:
        self._validate_before_start()
        if self.requested_rest_port is not None:
            _check_port_free(self.requested_rest_port)
        java = find_java_tool("java", self.java_home)
        leftovers = self.process_ids()
        if leftovers:
            logger.warning(
                "stopping Flink processes %s left in %s by an earlier run", leftovers, self.workdir
            )
            self.stop()
        # Another process can bind a picked port before Flink does. Only picked ports are
        # retried, because a port the caller chose would fail the same way again.
        attempts = 1 if self.requested_rest_port is not None else 3
        deadline = time.monotonic() + timeout
        for attempt in range(1, attempts + 1):
            ports = self._choose_ports()
            try:
                self._launch(ports, java, max(deadline - time.monotonic(), 1.0))
                return
            except _PortRaceError as error:
                self.stop()
                if attempt == attempts:
                    raise LocalFlinkError(str(error)) from None
                logger.warning(
                    "Flink could not bind a port (attempt %d of %d: %s), retrying with new ports",
                    attempt,
                    attempts,
                    error.reason,
                )
            except BaseException:
                self.stop()
                raise

    def stop(self, timeout: float = 30) -> None:
        """Stop every process of this cluster: SIGTERM, then SIGKILL after ``timeout`` seconds.

        Works from any process given the same working directory. The processes are searched
        again until none is left, which also catches helper processes that the start scripts
        launched in between. Raises LocalFlinkError if a process of this cluster is still alive
        30 s after SIGKILL.
        """
        self._stop_watchdog()
        pids = self.process_ids()
        if not pids:
            self._remove_state()
            return
        logger.info("stopping Flink in %s (pids %s)", self.workdir, pids)
        kill_at = time.monotonic() + timeout
        give_up_at = kill_at + 30
        terminated: set[int] = set()
        killing = False
        while pids:
            now = time.monotonic()
            if now >= give_up_at:
                details = "; ".join(_describe_process(pid) for pid in pids)
                raise LocalFlinkError(
                    f"Flink processes of {self.workdir} are still running after SIGKILL: {details}"
                )
            if now >= kill_at and not killing:
                logger.warning(
                    "Flink processes %s did not stop within %s s, killing them", pids, timeout
                )
                killing = True
            for pid in pids:
                if killing:
                    _signal_process(pid, signal.SIGKILL)
                elif pid not in terminated:
                    _signal_process(pid, signal.SIGTERM)
                    terminated.add(pid)
            time.sleep(0.2)
            pids = self.process_ids()
        logger.info("stopped Flink in %s", self.workdir)
        self._remove_state()

    def _stop_watchdog(self) -> None:
        state = self._read_state() or {}
        watchdog = (state.get("pids") or {}).get("watchdog")
        if watchdog and watchdog != os.getpid() and self._is_watchdog(int(watchdog)):
            _signal_process(int(watchdog), signal.SIGTERM)
            self._wait_for_exit([int(watchdog)], 5)

    def status(self) -> dict[str, Any]:
        """Return the recorded cluster state, which processes are alive and ``/overview``.

        ``running`` is true when the JobManager and TaskManager are alive and ``GET /overview``
        succeeds.
        """
        state = self._read_state()
        result: dict[str, Any] = {"workdir": str(self.workdir), "running": False}
        if state is None:
            stray = self.process_ids()
            if stray:
                result["strayPids"] = stray
            return result
        recorded = state.get("pids") or {}
        alive = {
            role: role in recorded and self._is_cluster_process(int(recorded[role]))
            for role in _PROCESS_ROLES
        }
        result.update(
            restUrl=state["restUrl"],
            flinkHome=state["flinkHome"],
            flinkVersion=state.get("flinkVersion"),
            slots=state.get("slots"),
            pids=recorded,
            alive=alive,
        )
        overview = None
        if all(alive.values()):
            try:
                overview = _http_get_json(f"{state['restUrl']}/overview")
            except (OSError, ValueError) as error:
                result["restError"] = str(error)
        result["overview"] = overview
        result["running"] = overview is not None
        return result

    def is_running(self) -> bool:
        return bool(self.status()["running"])

    # Start helpers ---------------------------------------------------------------------------

    def _validate_before_start(self) -> None:
        if any(character.isspace() or character in "\"'$`\\" for character in str(self.workdir)):
            # Flink's shell scripts pass these paths through `eval`, so they break on such paths.
            raise LocalFlinkError(
                f"workdir {self.workdir} contains whitespace, a quote, '$', '`' or '\\', which "
                "Flink's start scripts cannot handle. Choose another folder"
            )
        _check_flink_home(self.flink_home)
        state = self._read_state()
        if state is not None and self.status()["running"]:
            raise LocalFlinkError(
                f"a Flink cluster is already running in {self.workdir} at {state['restUrl']}. "
                "Stop it first"
            )

    def _choose_ports(self) -> ClusterPorts:
        picked = _pick_free_ports(5)
        rest = self.requested_rest_port if self.requested_rest_port is not None else picked[0]
        return ClusterPorts(
            rest=rest,
            jobmanager_rpc=picked[1],
            blob=picked[2],
            taskmanager_rpc=picked[3],
            taskmanager_data=picked[4],
        )

    def _prepare_workdir(self, ports: ClusterPorts) -> None:
        for folder in ("log", "pid", "tmp", "web", "web/upload", "blob"):
            (self.workdir / folder).mkdir(parents=True, exist_ok=True)
        for stale_pid_file in self.pid_dir.glob("*.pid"):
            stale_pid_file.unlink()
        shipped = self.flink_home / "conf"
        if self.conf_dir.exists():
            shutil.rmtree(self.conf_dir)
        shutil.copytree(shipped, self.conf_dir)
        settings = _flatten_yaml_mapping((shipped / "config.yaml").read_text(encoding="utf-8"))
        rendered = dict(settings)
        for key, value in self._cluster_config(ports, settings).items():
            rendered[key] = _yaml_scalar(value)
        lines = [
            "# Generated by flink-task from the shipped conf/config.yaml at each start.",
            *(f"{key}: {value}" for key, value in rendered.items()),
        ]
        (self.conf_dir / "config.yaml").write_text("\n".join(lines) + "\n", encoding="utf-8")

    def _cluster_config(
        self, ports: ClusterPorts, shipped: Mapping[str, str]
    ) -> dict[str, object]:
        tmp = self.workdir / "tmp"
        java_opts = shipped.get("env.java.opts.all", "").strip().strip("\"'")
        config: dict[str, object] = {
            "env.java.opts.all": f"{java_opts} -Djava.io.tmpdir={tmp}".strip(),
            "jobmanager.rpc.address": LOOPBACK,
            "jobmanager.rpc.port": ports.jobmanager_rpc,
            "jobmanager.bind-host": LOOPBACK,
            "jobmanager.memory.process.size": self.jobmanager_memory,
            "taskmanager.host": LOOPBACK,
            "taskmanager.bind-host": LOOPBACK,
            "taskmanager.rpc.port": ports.taskmanager_rpc,
            "taskmanager.data.port": ports.taskmanager_data,
            "taskmanager.numberOfTaskSlots": self.slots,
            "taskmanager.memory.process.size": self.taskmanager_memory,
            "rest.address": LOOPBACK,
            "rest.bind-address": LOOPBACK,
            "rest.port": ports.rest,
            "blob.server.port": ports.blob,
            "blob.storage.directory": self.workdir / "blob",
            "web.tmpdir": self.workdir / "web",
            "web.upload.dir": self.workdir / "web" / "upload",
            "io.tmp.dirs": tmp,
            "parallelism.default": 1,
            # The REST API serves metrics from a cache that the JobManager refreshes every 10 s
            # by default. One second lets callers see a job's gauges soon after it starts.
            "metrics.fetcher.update-interval": 1000,
        }
        # No execution.checkpointing.interval and no savepoint directory: jobs and callers
        # choose them, and a cluster without a savepoint directory must stay testable.
        config.update(self.extra_config)
        return config

    def _process_env(self, java: JavaTool) -> dict[str, str]:
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith("FLINK_") and key not in {"JVM_ARGS", "HADOOP_CLASSPATH"}
        }
        env.update(
            FLINK_CONF_DIR=str(self.conf_dir),
            FLINK_LOG_DIR=str(self.log_dir),
            FLINK_PID_DIR=str(self.pid_dir),
            FLINK_IDENT_STRING="local",
            # Flink writes stdout and stderr of the JVM to .out and .err files in the log folder.
            STD_REDIRECT_TO_FILE="true",
            JAVA_HOME=str(java.path.resolve().parent.parent),
        )
        return env

    def _spawn(self, role: str, env: Mapping[str, str]) -> int:
        script = self.flink_home / "bin" / f"{role}.sh"
        launch_log = self.log_dir / f"{role}-launch.log"
        with launch_log.open("ab") as output:
            process = subprocess.Popen(
                [str(script), "start-foreground", "-D", self.process_marker],
                cwd=self.workdir,
                env=dict(env),
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        _STARTED_PROCESSES[process.pid] = (process, self.process_marker)
        logger.info("started the Flink %s (pid %s), logs in %s", role, process.pid, self.log_dir)
        return process.pid

    def _spawn_watchdog(self, owner_pid: int) -> int:
        package_root = str(Path(__file__).resolve().parent.parent)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
        with (self.log_dir / "watchdog.log").open("ab") as output:
            process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "flink_task.localflink",
                    "watchdog",
                    "--workdir",
                    str(self.workdir),
                    "--owner-pid",
                    str(owner_pid),
                ],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        _STARTED_PROCESSES[process.pid] = (process, f"watchdog {self.workdir}")
        logger.debug("started the watchdog (pid %s) for owner pid %s", process.pid, owner_pid)
        return process.pid

    def _launch(self, ports: ClusterPorts, java: JavaTool, timeout: float) -> None:
        self._prepare_workdir(ports)
        env = self._process_env(java)
        rest_url = f"http://{LOOPBACK}:{ports.rest}"
        pids: dict[str, int] = {"jobmanager": self._spawn("jobmanager", env)}
        self._write_state(ports, rest_url, pids)
        pids["taskmanager"] = self._spawn("taskmanager", env)
        self._write_state(ports, rest_url, pids)
        if self.owner_pid is not None:
            pids["watchdog"] = self._spawn_watchdog(self.owner_pid)
            self._write_state(ports, rest_url, pids)
        self._wait_until_ready(rest_url, pids, timeout)

    def _wait_until_ready(self, rest_url: str, pids: Mapping[str, int], timeout: float) -> None:
        started = time.monotonic()
        deadline = started + timeout
        next_report = started + 5
        last_problem = "no answer yet"
        logger.info(
            "waiting up to %s s for Flink at %s with %d slots", timeout, rest_url, self.slots
        )
        while True:
            for role in _PROCESS_ROLES:
                if not self._is_cluster_process(pids[role]):
                    self._raise_start_failure(f"the Flink {role} (pid {pids[role]}) exited")
            try:
                overview = _http_get_json(f"{rest_url}/overview")
            except (OSError, ValueError) as error:
                last_problem = f"REST not answering ({error})"
            else:
                registered = int(overview.get("slots-total", 0))
                if int(overview.get("taskmanagers", 0)) >= 1 and registered >= self.slots:
                    logger.info(
                        "Flink %s is ready at %s after %.1f s (%d slots)",
                        overview.get("flink-version"),
                        rest_url,
                        time.monotonic() - started,
                        registered,
                    )
                    return
                last_problem = f"{registered} of {self.slots} slots registered"
            now = time.monotonic()
            if now >= deadline:
                self._raise_start_failure(
                    f"Flink at {rest_url} was not ready within {timeout} s: {last_problem}"
                )
            if now >= next_report:
                logger.info("still waiting for Flink at %s: %s", rest_url, last_problem)
                next_report = now + 5
            time.sleep(0.5)

    def _raise_start_failure(self, reason: str) -> None:
        sections = []
        bind_failure = False
        for role, service in (
            ("jobmanager", "standalonesession"),
            ("taskmanager", "taskexecutor"),
        ):
            for path in [self.log_dir / f"{role}-launch.log", *self._service_logs(service)]:
                tail = _tail(path)
                if tail:
                    bind_failure = bind_failure or bool(_BIND_FAILURE_PATTERN.search(tail))
                    sections.append(f"--- last lines of {path} ---\n{tail}")
        message = f"{reason}\n" + "\n".join(sections)
        if bind_failure and self.requested_rest_port is None:
            raise _PortRaceError(reason, message)
        raise LocalFlinkError(message)

    def _service_logs(self, service: str) -> list[Path]:
        return sorted(
            (
                path
                for pattern in (
                    f"flink-*-{service}-*.log",
                    f"flink-*-{service}-*.out",
                    f"flink-*-{service}-*.err",
                )
                for path in self.log_dir.glob(pattern)
            ),
            key=lambda path: path.stat().st_mtime,
        )

    # Process bookkeeping ---------------------------------------------------------------------

    def _is_cluster_process(self, pid: int) -> bool:
        entry = _STARTED_PROCESSES.get(pid)
        if entry is not None and entry[1] == self.process_marker:
            # Polling a child is exact, while /proc shows an empty command line while a
            # process exits.
            return bool(_poll_started_process(pid))
        args = _process_args(pid)
        return args is not None and self.process_marker in args

    def _is_watchdog(self, pid: int) -> bool:
        args = _process_args(pid)
        return args is not None and "watchdog" in args and str(self.workdir) in args

    def process_ids(self) -> list[int]:
        """Return the live processes of this cluster, whether or not their pids were recorded.

        A process belongs to the cluster when its command line contains ``process_marker``.
        """
        found = set(_running_started_pids(self.process_marker))
        state = self._read_state() or {}
        for role in _PROCESS_ROLES:
            pid = (state.get("pids") or {}).get(role)
            if pid and self._is_cluster_process(int(pid)):
                found.add(int(pid))
        for pid, args in _all_process_args():
            if self.process_marker in args and pid != os.getpid():
                found.add(pid)
        return sorted(found)

    def _wait_for_exit(self, pids: Sequence[int], timeout: float) -> list[int]:
        deadline = time.monotonic() + timeout
        remaining = list(pids)
        while remaining:
            for pid in remaining:
                _reap(pid)
            remaining = [pid for pid in remaining if _process_args(pid) is not None]
            if not remaining or time.monotonic() >= deadline:
                break
            time.sleep(0.2)
        return remaining

    def _read_state(self) -> dict[str, Any] | None:
        try:
            return dict(json.loads(self.state_file.read_text(encoding="utf-8")))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as error:
            logger.warning("ignoring the unreadable state file %s: %s", self.state_file, error)
            return None

    def _write_state(self, ports: ClusterPorts, rest_url: str, pids: Mapping[str, int]) -> None:
        state = {
            "flinkVersion": FLINK_VERSION,
            "flinkHome": str(self.flink_home),
            "workdir": str(self.workdir),
            "restUrl": rest_url,
            "ports": {
                "rest": ports.rest,
                "jobmanagerRpc": ports.jobmanager_rpc,
                "blob": ports.blob,
                "taskmanagerRpc": ports.taskmanager_rpc,
                "taskmanagerData": ports.taskmanager_data,
            },
            "slots": self.slots,
            "pids": dict(pids),
        }
        temporary = self.state_file.with_suffix(".json.tmp")
        temporary.write_text(json.dumps(state, indent=2) + "\n", encoding="utf-8")
        os.replace(temporary, self.state_file)

    def _remove_state(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.state_file.unlink()


class _PortRaceError(LocalFlinkError):
    """A port picked as free was taken by another process before Flink bound it."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


# --------------------------------------------------------------------------------------------
# Command line


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="flink-task local-flink",
        description="Install, start, stop and inspect a local Flink cluster on 127.0.0.1.",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    install_parser = commands.add_parser("install", help="install Flink and print its home")
    install_parser.add_argument(
        "--cache-dir",
        type=Path,
        help="cache root (default $FLINK_TASK_CACHE or ~/.cache/flink-task)",
    )

    workdir_help = (
        "cluster folder for configuration, logs and pid files "
        "(default $FLINK_TASK_LOCAL_FLINK_DIR or ~/.cache/flink-task/local-flink)"
    )
    start = commands.add_parser("start", help="start a cluster in the background")
    start.add_argument("--workdir", type=Path, help=workdir_help)
    start.add_argument("--slots", type=int, default=4, help="task slots (default 4)")
    start.add_argument("--rest-port", type=int, help="REST port (default: a free port)")
    start.add_argument(
        "--timeout", type=float, default=120, help="seconds to wait for the cluster (default 120)"
    )
    start.add_argument(
        "--config",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra Flink configuration entry; repeatable",
    )

    stop = commands.add_parser("stop", help="stop the cluster of a folder")
    stop.add_argument("--workdir", type=Path, help=workdir_help)
    stop.add_argument(
        "--timeout", type=float, default=30, help="seconds before SIGKILL (default 30)"
    )

    status = commands.add_parser("status", help="print the cluster status as JSON")
    status.add_argument("--workdir", type=Path, help=workdir_help)

    watchdog = commands.add_parser(
        "watchdog", help="used internally: stop a cluster once the process that owns it exits"
    )
    watchdog.add_argument("--workdir", type=Path, required=True)
    watchdog.add_argument("--owner-pid", type=int, required=True)
    return parser


def _parse_config_entries(entries: Sequence[str]) -> dict[str, str]:
    config = {}
    for entry in entries:
        key, separator, value = entry.partition("=")
        if not separator or not key.strip():
            raise ValueError(f"invalid --config {entry!r}: expected KEY=VALUE")
        config[key.strip()] = value
    return config


def _run_watchdog(workdir: Path, owner_pid: int) -> int:
    """Stop the cluster in ``workdir`` once ``owner_pid`` has exited."""
    cluster = LocalFlink(workdir)
    while True:
        state = cluster._read_state()
        if state is None or (state.get("pids") or {}).get("watchdog") not in (None, os.getpid()):
            return EXIT_OK
        if not _is_owner_alive(owner_pid):
            logger.warning("owner process %s exited, stopping Flink in %s", owner_pid, workdir)
            cluster.stop()
            return EXIT_OK
        time.sleep(1)


def _configure_logging() -> None:
    if not logging.getLogger().handlers:
        logging.basicConfig(
            level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s"
        )


def main(argv: Sequence[str]) -> int:
    """Run ``flink-task local-flink`` and return its exit code (0 ok, 1 failed, 2 bad usage)."""
    parser = _build_parser()
    try:
        args = parser.parse_args(list(argv))
    except SystemExit as exit_request:
        return EXIT_OK if exit_request.code in (0, None) else EXIT_INVALID_INPUT
    _configure_logging()
    try:
        return _dispatch(args)
    except ValueError as error:
        print(f"flink-task local-flink: error: {error}", file=sys.stderr)
        return EXIT_INVALID_INPUT
    except LocalFlinkError as error:
        print(f"flink-task local-flink: error: {error}", file=sys.stderr)
        return EXIT_ACTION_FAILED


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "install":
        print(install(args.cache_dir))
        return EXIT_OK
    if args.command == "watchdog":
        return _run_watchdog(args.workdir, args.owner_pid)
    workdir = args.workdir or default_workdir()
    if args.command == "start":
        if args.slots < 1:
            raise ValueError(f"invalid --slots {args.slots}: must be at least 1")
        config = _parse_config_entries(args.config)
        _check_extra_config(config)
        cluster = LocalFlink(
            workdir,
            flink_home=install(),
            slots=args.slots,
            rest_port=args.rest_port,
            config=config,
        )
        cluster.start(timeout=args.timeout)
        _detach_started_processes()
        status = cluster.status()
        print(
            json.dumps(
                {
                    "restUrl": status.get("restUrl"),
                    "workdir": str(cluster.workdir),
                    "flinkHome": status.get("flinkHome"),
                    "pids": status.get("pids"),
                    "slots": cluster.slots,
                }
            )
        )
        return EXIT_OK
    cluster = LocalFlink(workdir)
    if args.command == "stop":
        cluster.stop(timeout=args.timeout)
        return EXIT_OK
    status = cluster.status()
    print(json.dumps(status))
    return EXIT_OK if status["running"] else EXIT_ACTION_FAILED


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
