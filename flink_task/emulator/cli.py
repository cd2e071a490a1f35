"""`flink-task emulator`: serve the job API on loopback until SIGINT or SIGTERM."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from flink_task.emulator.authority import DEFAULT_TOKEN_LIFETIME
from flink_task.emulator.clusters import (
    DEFAULT_CLUSTER,
    DEFAULT_CLUSTER_POOL,
    ClusterConfig,
    ConfigError,
    load_config,
    parse_storage_mapping,
)
from flink_task.emulator.emulator import (
    DEFAULT_GITHUB_SUBJECT,
    DEFAULT_PAGE_SIZE,
    DEFAULT_SHUTDOWN_TIMEOUT,
    LOOPBACK_HOST,
    Emulator,
)
from flink_task.emulator.oidc_issuer import DEFAULT_LIFETIME_SECONDS
from flink_task.errors import EXIT_CANCELLED, EXIT_INVALID_INPUT, EXIT_OK, EXIT_UNEXPECTED

logger = logging.getLogger(__name__)

CONFIG_EXAMPLE = """\
--config FILE lists the clusters (paths relative to the file; only clusterPool and cluster
are required, and flinkUrl may be left out with --start-flink):
  {"subscriptionId": "...", "resourceGroup": "streaming",
   "clusters": [{"clusterPool": "east", "cluster": "orders",
                 "flinkUrl": "http://127.0.0.1:8081",
                 "storageDirectory": "storage/orders",
                 "savepointDirectory": "file:///srv/savepoints/orders",
                 "storageMappings": {"abfs://jars@account.dfs.core.windows.net/": "jars"}}]}
"""
CLIENT_SECRET_VARIABLE = "FLINK_TASK_EMULATOR_CLIENT_SECRET"  # noqa: S105 (a variable name)


def default_state_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "flink-task" / "emulator"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="flink-task emulator",
        description=(
            "Serve the Azure HDInsight on AKS job API (runJob, jobs) and a matching Azure AD "
            "token endpoint over HTTPS, backed by real Flink clusters. Prints one JSON line "
            "with the connection details, then runs until SIGINT or SIGTERM."
        ),
        epilog=CONFIG_EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_server_options(parser.add_argument_group("server"))
    _add_cluster_options(parser.add_argument_group("clusters"))
    _add_sign_in_options(parser.add_argument_group("sign-in"))
    _add_tuning_options(parser.add_argument_group("limits and logging"))
    return parser


def _add_server_options(group: argparse._ArgumentGroup) -> None:
    group.add_argument(
        "--state-dir",
        type=Path,
        default=default_state_dir(),
        help="folder for certificates, ids, the client secret, the files of "
        "--client-certificate and --oidc-issuer, and job records (default: %(default)s)",
    )
    group.add_argument("--host", default=LOOPBACK_HOST, help="address to listen on")
    group.add_argument("--port", type=int, default=0, help="TCP port (default 0: a free port)")
    group.add_argument(
        "--allow-remote",
        action="store_true",
        help=f"allow a non-loopback --host. The client secret then comes from "
        f"${CLIENT_SECRET_VARIABLE}",
    )
    group.add_argument("--subscription-id", help="subscription id (default: a stored UUID)")
    group.add_argument("--resource-group", help="resource group name")


def _add_cluster_options(group: argparse._ArgumentGroup) -> None:
    group.add_argument("--config", type=Path, help="JSON file that lists the clusters")
    group.add_argument("--flink-url", help="Flink REST URL of the single cluster")
    group.add_argument(
        "--start-flink",
        action="store_true",
        help="start a local Flink cluster in the state folder and stop it on exit",
    )
    group.add_argument(
        "--flink-slots", type=int, default=4, help="task slots of the local Flink cluster"
    )
    group.add_argument("--cluster-pool", default=DEFAULT_CLUSTER_POOL, help="cluster pool name")
    group.add_argument("--cluster", default=DEFAULT_CLUSTER, help="cluster name")
    group.add_argument(
        "--storage-mapping",
        action="append",
        default=[],
        metavar="PREFIX=FOLDER",
        help="serve jar URLs under PREFIX (for example abfs://...) from FOLDER (repeatable)",
    )


def _add_sign_in_options(group: argparse._ArgumentGroup) -> None:
    group.add_argument(
        "--client-certificate",
        action="store_true",
        help="also accept a client certificate: create one (PEM with its private key, mode "
        "0600) in the state folder, or reuse it, and print its path as clientCertificateFile",
    )
    group.add_argument(
        "--oidc-issuer",
        action="store_true",
        help="serve GitHub- and Azure DevOps-like ID token services on another loopback "
        "HTTPS port and accept their tokens as federated credentials. The JSON line gives "
        "their URLs and the files that contain their bearer tokens",
    )
    group.add_argument(
        "--id-token-lifetime",
        type=int,
        default=DEFAULT_LIFETIME_SECONDS,
        help="lifetime of the ID tokens of --oidc-issuer, in seconds (default: %(default)s)",
    )
    group.add_argument(
        "--github-subject",
        default=DEFAULT_GITHUB_SUBJECT,
        help="sub claim of the GitHub-like ID tokens and of the federated credential that "
        "accepts them (default: %(default)s)",
    )
    group.add_argument(
        "--azure-devops-service-connection",
        help="service connection id whose Azure DevOps-like ID tokens are accepted "
        "(default: a UUID stored in the state folder)",
    )


def _add_tuning_options(group: argparse._ArgumentGroup) -> None:
    group.add_argument(
        "--page-size", type=int, default=DEFAULT_PAGE_SIZE, help="jobs per page of GET jobs"
    )
    group.add_argument(
        "--token-lifetime",
        type=int,
        default=DEFAULT_TOKEN_LIFETIME,
        help="lifetime of issued access tokens, in seconds",
    )
    group.add_argument(
        "--shutdown-timeout",
        type=float,
        default=DEFAULT_SHUTDOWN_TIMEOUT,
        help="seconds to wait for running actions on shutdown",
    )
    group.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING or ERROR")


def main(argv: Sequence[str]) -> int:
    """Run the emulator until a signal and return the exit code."""
    args = build_parser().parse_args(list(argv))
    logging.basicConfig(
        level=args.log_level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    stop_requested = threading.Event()
    _install_signal_handlers(stop_requested)
    try:
        emulator = _create(args)
        emulator.start()
    except ConfigError as error:
        print(f"flink-task emulator: {error}", file=sys.stderr)
        return EXIT_INVALID_INPUT
    except Exception as error:
        logger.exception("the emulator failed to start")
        print(f"flink-task emulator: failed to start: {error}", file=sys.stderr)
        return EXIT_UNEXPECTED
    try:
        print(json.dumps(emulator.info()), flush=True)
        stop_requested.wait()
        logger.info("stop requested, shutting down")
    finally:
        emulator.stop()
    return EXIT_OK


def _create(args: argparse.Namespace) -> Emulator:
    if args.config and args.flink_url:
        raise ConfigError("give either --config or --flink-url, not both")
    secret = os.environ.get(CLIENT_SECRET_VARIABLE) or None
    if args.allow_remote and not secret:
        raise ConfigError(
            f"--allow-remote needs a client secret chosen by the operator in "
            f"${CLIENT_SECRET_VARIABLE}"
        )
    subscription_id = args.subscription_id
    resource_group = args.resource_group
    if args.config:
        config = load_config(args.config)
        clusters = config.clusters
        subscription_id = subscription_id or config.subscription_id
        resource_group = resource_group or config.resource_group
    else:
        if not args.flink_url and not args.start_flink:
            raise ConfigError("give --flink-url, --start-flink or --config")
        mappings = dict(parse_storage_mapping(text) for text in args.storage_mapping)
        clusters = [
            ClusterConfig(
                args.cluster_pool,
                args.cluster,
                flink_url=args.flink_url,
                storage_mappings=mappings,
            )
        ]
    return Emulator(
        args.state_dir,
        clusters=clusters,
        host=args.host,
        port=args.port,
        allow_remote=args.allow_remote,
        client_secret=secret,
        subscription_id=subscription_id,
        resource_group=resource_group,
        page_size=args.page_size,
        token_lifetime=args.token_lifetime,
        start_flink=args.start_flink,
        flink_slots=args.flink_slots,
        shutdown_timeout=args.shutdown_timeout,
        client_certificate=args.client_certificate,
        start_oidc_issuer=args.oidc_issuer,
        id_token_lifetime=args.id_token_lifetime,
        github_subject=args.github_subject,
        azure_devops_service_connection=args.azure_devops_service_connection,
    )


def _install_signal_handlers(stop_requested: threading.Event) -> None:
    def request_stop(signum: int, frame: FrameType | None) -> None:
        if not stop_requested.is_set():
            stop_requested.set()
            return
        # A second signal while running actions are awaited: exit now. The engine's recovery
        # on the next start settles those actions, and LocalFlink's watchdog stops its Flink.
        logger.warning("second signal %s: exiting without waiting for running actions", signum)
        os._exit(EXIT_CANCELLED)

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
