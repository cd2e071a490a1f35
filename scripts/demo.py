"""Run a whole job lifecycle through the task, the job API emulator and a real local Flink.

This is what ``make demo`` runs. It builds the sample job, starts a local Flink cluster and
the emulator on loopback, then drives ``python -m flink_task`` through NEW, SAVEPOINT,
LIST_SAVEPOINT, STOP, START, UPDATE (second version of the job), STATELESS_UPDATE, CANCEL
and DELETE exactly as a pipeline step would: every input in an ``INPUT_*`` environment
variable, the client secret in ``AZURE_CLIENT_SECRET``. It prints each step's outputs,
stops every process it started and leaves the savepoints in ``build/demo/storage``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from flink_task import localflink, samplejobs  # noqa: E402
from flink_task.emulator.clusters import ClusterConfig  # noqa: E402
from flink_task.emulator.emulator import Emulator  # noqa: E402

logger = logging.getLogger("demo")

JOB_NAME = "counting-demo"
STEP_TIMEOUT_SECONDS = 600


def lifecycle(jar_dir: Path, jars: dict[str, Path]) -> list[tuple[str, dict[str, str]]]:
    """Return the demo's steps: the action and the inputs a pipeline would set for it."""
    v1, v2 = jars["v1"].name, jars["v2"].name
    return [
        (
            "NEW",
            {
                "jobJarDirectory": str(jar_dir),
                "jarName": v1,
                "entryClass": samplejobs.ENTRY_CLASS,
                "args": "--rate 20 --keys 8 --label 'first version'",
                "parallelism": "1",
            },
        ),
        ("SAVEPOINT", {}),
        ("LIST_SAVEPOINT", {}),
        ("STOP", {}),
        ("START", {}),
        ("UPDATE", {"jarName": v2, "args": "--rate 20 --keys 8 --label 'second version'"}),
        ("STATELESS_UPDATE", {"jarName": v2}),
        ("CANCEL", {}),
        ("DELETE", {}),
    ]


def step_environment(emulator: Emulator, action: str, inputs: dict[str, str]) -> dict[str, str]:
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("INPUT_", "AZURE_", "GITHUB_", "TF_BUILD"))
    }
    secret = Path(emulator.info()["clientSecretFile"]).read_text(encoding="utf-8").strip()
    env.update(
        {
            "INPUT_ACTION": action,
            "INPUT_JOBNAME": JOB_NAME,
            "INPUT_SUBSCRIPTIONID": emulator.subscription_id,
            "INPUT_RESOURCEGROUP": emulator.resource_group,
            "INPUT_CLUSTERPOOL": emulator.cluster_pool,
            "INPUT_CLUSTER": emulator.cluster,
            "INPUT_MANAGEMENTENDPOINT": emulator.base_url,
            "INPUT_AUTHORITYHOST": emulator.base_url,
            "INPUT_TENANTID": emulator.tenant_id,
            "INPUT_CLIENTID": emulator.client_id,
            "INPUT_TIMEOUTMINUTES": str(STEP_TIMEOUT_SECONDS // 60),
            "AZURE_CLIENT_SECRET": secret,
            "REQUESTS_CA_BUNDLE": str(emulator.ca_file),
        }
    )
    env.update({f"INPUT_{name.upper()}": value for name, value in inputs.items()})
    return env


def run_step(emulator: Emulator, action: str, inputs: dict[str, str]) -> dict[str, Any]:
    print(f"\n=== {action} ===", flush=True)
    started = time.monotonic()
    completed = subprocess.run(
        [sys.executable, "-m", "flink_task"],
        env=step_environment(emulator, action, inputs),
        stdout=subprocess.PIPE,
        text=True,
        timeout=STEP_TIMEOUT_SECONDS + 60,
        check=False,
    )
    elapsed = time.monotonic() - started
    if completed.returncode != 0:
        raise SystemExit(f"demo: {action} exited with {completed.returncode}; see the log above")
    record: dict[str, Any] = json.loads(completed.stdout)
    print(f"  {action} ended {record.get('actionResult')} in {elapsed:.1f} s", flush=True)
    return record


def configure_logging(log_file: Path) -> None:
    """Show the demo's own progress; send the emulator's and Flink's request log to a file."""
    console = logging.StreamHandler()
    console.setLevel(logging.WARNING)
    console.setFormatter(logging.Formatter("[%(levelname)s] %(message)s"))
    to_file = logging.FileHandler(log_file, encoding="utf-8")
    to_file.setFormatter(logging.Formatter("%(asctime)s %(name)s [%(levelname)s] %(message)s"))
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    root.addHandler(console)
    root.addHandler(to_file)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--workdir",
        type=Path,
        default=REPO / "build" / "demo",
        help="Folder for the jars, the emulator state and the savepoints (emptied first).",
    )
    args = parser.parse_args(argv)
    workdir: Path = args.workdir.resolve()
    if workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    configure_logging(workdir / "emulator.log")
    storage = workdir / "storage"
    jar_dir = storage / "jars"
    jar_dir.mkdir(parents=True)

    print("Installing Flink (cached after the first run) and building the sample job ...")
    flink_home = localflink.install()
    built = samplejobs.build_sample_jars(flink_home, workdir / "build")
    jars = {version: Path(shutil.copy2(path, jar_dir)) for version, path in built.items()}

    cluster = ClusterConfig("demo-pool", "demo-cluster", storage_dir=storage)
    emulator = Emulator(workdir / "emulator", clusters=[cluster], start_flink=True, flink_slots=4)
    print("Starting a local Flink cluster and the job API emulator ...")
    emulator.start()
    try:
        flink_url = emulator.info()["clusters"][0]["flinkUrl"]
        print(f"Emulator: {emulator.base_url}  Flink: {flink_url}")
        print(f"Emulator and Flink log: {workdir / 'emulator.log'}")
        for action, inputs in lifecycle(jar_dir, jars):
            run_step(emulator, action, inputs)
    finally:
        emulator.stop()
    savepoints = sorted(p for p in storage.rglob("savepoint-*") if p.is_dir())
    print(f"\nDone. {len(savepoints)} savepoints kept under {storage}:")
    for path in savepoints:
        print(f"  {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
