"""The system under measurement: a local Flink cluster, the job API emulator and the jars.

Everything lives in one temporary folder and listens on free loopback ports. ``Stack.stop``
stops the emulator and every Flink process, and is safe to call after a failed start.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import Any

from benchmarks.taskproc import base_environment
from flink_task import localflink, samplejobs
from flink_task.emulator.clusters import ClusterConfig
from flink_task.emulator.emulator import Emulator
from flink_task.engine.rest import FlinkRestClient

logger = logging.getLogger(__name__)

CLUSTER_POOL = "bench-pool"
CLUSTER = "bench-cluster"
FLINK_SLOTS = 4
# The emulator waits this long for a running action when it stops, for example after Ctrl-C.
EMULATOR_SHUTDOWN_SECONDS = 30.0
TASK_TIMEOUT_MINUTES = 5


class Stack:
    """A started local Flink cluster and an emulator in front of it, under ``workdir``."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.storage = workdir / "storage"
        self.jar_dir = self.storage / "jars"
        self.flink: localflink.LocalFlink | None = None
        self.emulator: Emulator | None = None
        self.jars: dict[str, Path] = {}
        self.flink_version = ""

    def start(self) -> None:
        """Install Flink (cached), build the sample jars (cached) and start both servers."""
        logger.info("installing Flink (cached after the first run) and the sample jars")
        flink_home = localflink.install()
        built = samplejobs.build_sample_jars(
            flink_home, localflink.default_cache_dir() / "sample-jars"
        )
        self.jar_dir.mkdir(parents=True)
        self.jars = {name: Path(shutil.copy2(jar, self.jar_dir)) for name, jar in built.items()}

        logger.info("starting a local Flink cluster with %d slots", FLINK_SLOTS)
        self.flink = localflink.LocalFlink(
            self.workdir / "flink",
            flink_home=flink_home,
            slots=FLINK_SLOTS,
            owner_pid=os.getpid(),
        )
        self.flink.start()
        self.flink_version = self.rest_client().flink_version()

        cluster = ClusterConfig(
            CLUSTER_POOL, CLUSTER, flink_url=self.flink.rest_url, storage_dir=self.storage
        )
        self.emulator = Emulator(
            self.workdir / "emulator",
            clusters=[cluster],
            shutdown_timeout=EMULATOR_SHUTDOWN_SECONDS,
        )
        self.emulator.start()
        logger.info("emulator at %s, Flink at %s", self.emulator.base_url, self.flink.rest_url)

    def stop(self) -> None:
        """Stop the emulator, then Flink; a failure of the first does not skip the second."""
        try:
            if self.emulator is not None:
                self.emulator.stop()
                self.emulator = None
        finally:
            if self.flink is not None:
                self.flink.stop()
                self.flink = None

    def rest_client(self) -> FlinkRestClient:
        """Return a new Flink REST client for the local cluster."""
        assert self.flink is not None, "the stack is not started"
        return FlinkRestClient(self.flink.rest_url)

    def task_environment(
        self, action: str, job_name: str, inputs: dict[str, str] | None = None
    ) -> dict[str, str]:
        """Return the environment of a pipeline step that runs ``action`` on the emulator.

        Every input is an ``INPUT_*`` variable and the client secret is in
        ``AZURE_CLIENT_SECRET``, as a pipeline sets them.
        """
        emulator = self._started_emulator()
        info: dict[str, Any] = emulator.info()
        secret = Path(info["clientSecretFile"]).read_text(encoding="utf-8").strip()
        environment = base_environment()
        environment.update(
            {
                "INPUT_ACTION": action,
                "INPUT_JOBNAME": job_name,
                "INPUT_SUBSCRIPTIONID": emulator.subscription_id,
                "INPUT_RESOURCEGROUP": emulator.resource_group,
                "INPUT_CLUSTERPOOL": emulator.cluster_pool,
                "INPUT_CLUSTER": emulator.cluster,
                "INPUT_MANAGEMENTENDPOINT": emulator.base_url,
                "INPUT_AUTHORITYHOST": emulator.base_url,
                "INPUT_TENANTID": emulator.tenant_id,
                "INPUT_CLIENTID": emulator.client_id,
                "INPUT_TIMEOUTMINUTES": str(TASK_TIMEOUT_MINUTES),
                "AZURE_CLIENT_SECRET": secret,
                "REQUESTS_CA_BUNDLE": str(emulator.ca_file),
            }
        )
        for name, value in (inputs or {}).items():
            environment[f"INPUT_{name.upper()}"] = value
        return environment

    def _started_emulator(self) -> Emulator:
        assert self.emulator is not None, "the stack is not started"
        return self.emulator
