"""The emulator as a Python object: state folder, certificates, identity, engines and server."""

from __future__ import annotations

import ipaddress
import logging
import os
import secrets
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]

from flink_task.emulator.assertions import FederatedCredential
from flink_task.emulator.authority import (
    DEFAULT_TOKEN_LIFETIME,
    Authority,
    ServicePrincipal,
    TokenStore,
    ensure_client_certificate,
)
from flink_task.emulator.clusters import (
    DEFAULT_CLUSTER,
    DEFAULT_CLUSTER_POOL,
    DEFAULT_RESOURCE_GROUP,
    ClusterConfig,
    ConfigError,
    check_unique,
)
from flink_task.emulator.files import read_json, write_private_json, write_private_text
from flink_task.emulator.jobapi import ClusterService, JobApi, JobEngine
from flink_task.emulator.oidc_issuer import DEFAULT_LIFETIME_SECONDS, OidcIssuer
from flink_task.emulator.operations import OperationStore
from flink_task.emulator.server import EmulatorApp, TlsHttpServer
from flink_task.emulator.tls import ensure_certificates, server_context
from flink_task.engine import Engine, FlinkRestClient, JarResolver, JobStore

logger = logging.getLogger(__name__)

LOOPBACK_HOST = "127.0.0.1"
DEFAULT_PAGE_SIZE = 50
DEFAULT_SHUTDOWN_TIMEOUT = 300.0
MIN_REMOTE_SECRET_LENGTH = 16
IDENTITY_FILE = "identity.json"
STATE_LOCK_FILE = "emulator.lock"
SECRET_FILE = "client-secret"  # noqa: S105 (a file name)
CLIENT_CERTIFICATE_FILE = "client-certificate.pem"
GITHUB_REQUEST_TOKEN_FILE = "github-request-token"  # noqa: S105 (a file name)
AZURE_DEVOPS_ACCESS_TOKEN_FILE = "azure-devops-access-token"  # noqa: S105 (a file name)
DEFAULT_GITHUB_SUBJECT = "repo:contoso/flink-jobs:ref:refs/heads/main"


class Emulator:
    """The HDInsight on AKS job API and its Azure AD authority on one HTTPS port.

    `clusters` lists the emulated clusters. A cluster whose `flink_url` is None uses the local
    Flink cluster started with `start_flink=True`. Tenant, client and subscription ids, the
    client secret, certificates and job records live in `state_dir` and are reused on the next
    start. Binding to a non-loopback `host` needs `allow_remote=True` and an operator-chosen
    `client_secret`.

    With `client_certificate=True` the service principal also accepts assertions signed by a
    certificate whose PEM (with its private key) is kept in the state folder. With
    `start_oidc_issuer=True` an `OidcIssuer` serves GitHub- and Azure DevOps-like ID token services
    on its own loopback HTTPS port, and the principal trusts its tokens for two federated
    credentials: `github_subject`, and the subject of the service connection
    `azure_devops_service_connection` (default: a UUID stored in the state folder).
    """

    def __init__(
        self,
        state_dir: Path,
        *,
        clusters: Sequence[ClusterConfig] = (),
        host: str = LOOPBACK_HOST,
        port: int = 0,
        allow_remote: bool = False,
        client_secret: str | None = None,
        subscription_id: str | None = None,
        resource_group: str | None = None,
        page_size: int = DEFAULT_PAGE_SIZE,
        token_lifetime: int = DEFAULT_TOKEN_LIFETIME,
        start_flink: bool = False,
        flink_slots: int = 4,
        shutdown_timeout: float = DEFAULT_SHUTDOWN_TIMEOUT,
        client_certificate: bool = False,
        start_oidc_issuer: bool = False,
        id_token_lifetime: int = DEFAULT_LIFETIME_SECONDS,
        github_subject: str = DEFAULT_GITHUB_SUBJECT,
        azure_devops_service_connection: str | None = None,
    ) -> None:
        self.state_dir = Path(state_dir).absolute()
        self.host = host
        self.port = port
        self._check_binding(host, allow_remote, client_secret)
        if page_size < 1:
            raise ConfigError(f"page size must be at least 1, got {page_size}")
        self.page_size = page_size
        self.token_lifetime = token_lifetime
        self.start_flink = start_flink
        self.flink_slots = flink_slots
        self.shutdown_timeout = shutdown_timeout
        self.use_client_certificate = client_certificate
        self.use_oidc_issuer = start_oidc_issuer
        if id_token_lifetime < 1:
            raise ConfigError(f"ID token lifetime must be at least 1 s, got {id_token_lifetime}")
        self.id_token_lifetime = id_token_lifetime
        self.github_subject = github_subject
        self._requested_connection = azure_devops_service_connection
        self.client_certificate_file: Path | None = None
        self.oidc_issuer: OidcIssuer | None = None
        self.authority: Authority | None = None
        self._explicit_secret = client_secret
        self._requested_subscription = subscription_id
        self.resource_group = resource_group or DEFAULT_RESOURCE_GROUP
        self.clusters = list(clusters) or [ClusterConfig(DEFAULT_CLUSTER_POOL, DEFAULT_CLUSTER)]
        check_unique(self.clusters)
        self._check_flink_urls()
        self._server: TlsHttpServer | None = None
        self._server_thread: threading.Thread | None = None
        self._services: list[ClusterService] = []
        self._local_flink: Any = None
        self._state_lock: StateLock | None = None
        self.base_url = ""

    # --- public attributes ----------------------------------------------------------------

    @property
    def cluster_pool(self) -> str:
        """Pool name of the first cluster, the one most callers use."""
        return self.clusters[0].cluster_pool

    @property
    def cluster(self) -> str:
        """Name of the first cluster."""
        return self.clusters[0].cluster

    def jobs_directory(self, cluster_pool: str | None = None, cluster: str | None = None) -> Path:
        """Return the job store folder of a cluster (default: the first cluster)."""
        return (
            self._cluster_dir(cluster_pool or self.cluster_pool, cluster or self.cluster) / "jobs"
        )

    def info(self) -> dict[str, Any]:
        """Return what a client needs to connect: URLs, CA file, ids and the secret's file.

        `clientSecretFile` is None when the operator supplied the secret, which is then never
        written to disk. `clientCertificateFile` and `oidcIssuer` are present only when the
        client certificate or the OIDC issuer is enabled. No secret or token is ever part of
        the result, only the files that contain them.
        """
        info: dict[str, Any] = {
            "baseUrl": self.base_url,
            "caFile": str(self.ca_file),
            "tenantId": self.tenant_id,
            "clientId": self.client_id,
            "clientSecretFile": str(self.client_secret_file) if self.client_secret_file else None,
            "scope": f"{self.base_url}/.default",
            "subscriptionId": self.subscription_id,
            "resourceGroup": self.resource_group,
            "clusterPool": self.cluster_pool,
            "cluster": self.cluster,
            "clusters": [
                {
                    "clusterPool": config.cluster_pool,
                    "cluster": config.cluster,
                    "flinkUrl": config.flink_url,
                    "jobsUrl": f"{self.base_url}{self._job_api.cluster_id(config)}/jobs",
                }
                for config in self.clusters
            ],
        }
        if self.client_certificate_file is not None:
            info["clientCertificateFile"] = str(self.client_certificate_file)
        if self.oidc_issuer is not None:
            info["oidcIssuer"] = self._issuer_info(self.oidc_issuer)
        return info

    def _issuer_info(self, issuer: OidcIssuer) -> dict[str, Any]:
        # The bearer tokens of the two token services are secrets, so only their files are
        # named.
        return {
            "issuer": issuer.issuer,
            "idTokenLifetime": issuer.lifetime_seconds,
            "githubRequestUrl": issuer.github_request_url,
            "githubRequestTokenFile": str(self.state_dir / GITHUB_REQUEST_TOKEN_FILE),
            "githubSubject": issuer.github_subject,
            "azureDevOpsRequestUri": issuer.azure_devops_request_uri,
            "azureDevOpsAccessTokenFile": str(self.state_dir / AZURE_DEVOPS_ACCESS_TOKEN_FILE),
            "azureDevOpsServiceConnectionId": self.azure_devops_service_connection,
            "azureDevOpsSubject": issuer.azure_devops_subject(
                self.azure_devops_service_connection
            ),
        }

    # --- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        """Prepare the state folder, recover interrupted actions and start serving.

        Raises ConfigError when another emulator uses the same state folder.
        """
        self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._state_lock = StateLock(self.state_dir / STATE_LOCK_FILE)
        try:
            self._load_identity()
            tls_files = ensure_certificates(self.state_dir / "tls", self._certificate_hosts())
            self.ca_file = tls_files.ca_file
            if self.start_flink:
                self._start_local_flink()
            self._start_services()
            self._start_oidc_issuer(tls_files)
            self._serve(tls_files)
        except BaseException:
            self._stop_oidc_issuer()
            self._stop_local_flink()
            self._state_lock.release()
            raise
        logger.info("emulator serving %s from %s", self.base_url, self.state_dir)

    def stop(self) -> None:
        """Stop serving, wait for running actions (up to the shutdown timeout), stop Flink."""
        if self._server is not None:
            self._server.shutdown()
            self._server.close_connections()
            self._server.server_close()
            self._server = None
        self._stop_oidc_issuer()
        self._wait_for_actions()
        self._stop_local_flink()
        if self._state_lock is not None:
            self._state_lock.release()
            self._state_lock = None
        logger.info("emulator stopped")

    def __enter__(self) -> Emulator:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    # --- start-up steps -------------------------------------------------------------------

    def _check_binding(self, host: str, allow_remote: bool, client_secret: str | None) -> None:
        if _is_loopback(host):
            return
        if not allow_remote:
            raise ConfigError(
                f"{host} is not a loopback address. Pass --allow-remote to serve other hosts, "
                "with an operator-chosen client secret"
            )
        if not client_secret or len(client_secret) < MIN_REMOTE_SECRET_LENGTH:
            raise ConfigError(
                f"serving {host} needs a client secret of at least {MIN_REMOTE_SECRET_LENGTH} "
                "characters chosen by the operator"
            )

    def _check_flink_urls(self) -> None:
        for config in self.clusters:
            url = urlsplit(config.flink_url or "http://placeholder")
            if url.scheme not in ("http", "https") or not url.hostname:
                raise ConfigError(
                    f"invalid Flink REST URL {config.flink_url!r} for cluster "
                    f"{config.cluster_pool}/{config.cluster}. Use http://HOST:PORT"
                )
        local = [c for c in self.clusters if c.flink_url is None]
        if local and not self.start_flink:
            names = ", ".join(f"{c.cluster_pool}/{c.cluster}" for c in local)
            raise ConfigError(
                f"clusters without a Flink REST URL: {names}. Give each a URL, or start a "
                "local Flink cluster (--start-flink)"
            )

    def _load_identity(self) -> None:
        path = self.state_dir / IDENTITY_FILE
        stored = read_json(path) or {}
        identity: dict[str, Any] = {
            "tenantId": stored.get("tenantId") or str(uuid.uuid4()),
            "clientId": stored.get("clientId") or str(uuid.uuid4()),
            "subscriptionId": self._requested_subscription
            or stored.get("subscriptionId")
            or str(uuid.uuid4()),
            "deploymentIds": dict(stored.get("deploymentIds") or {}),
            "serviceConnectionId": stored.get("serviceConnectionId") or str(uuid.uuid4()),
        }
        for config in self.clusters:
            identity["deploymentIds"].setdefault(config.key, secrets.token_hex(8))
        if identity != stored:
            write_private_json(path, identity)
        self.tenant_id = identity["tenantId"]
        self.client_id = identity["clientId"]
        self.subscription_id = identity["subscriptionId"]
        self._deployment_ids: dict[str, str] = identity["deploymentIds"]
        self.azure_devops_service_connection = (
            self._requested_connection or identity["serviceConnectionId"]
        )
        self._load_secret()
        if self.use_client_certificate:
            self.client_certificate_file = self.state_dir / CLIENT_CERTIFICATE_FILE
            self._client_certificate = ensure_client_certificate(
                self.client_certificate_file, self.client_id
            )

    def _load_secret(self) -> None:
        if self._explicit_secret is not None:
            # An operator-chosen secret is never written to disk.
            self.client_secret = self._explicit_secret
            self.client_secret_file: Path | None = None
            return
        path = self.state_dir / SECRET_FILE
        if path.exists():
            secret = path.read_text(encoding="utf-8").strip()
        else:
            secret = secrets.token_urlsafe(32)
            write_private_text(path, secret + "\n")
        os.chmod(path, 0o600)
        self.client_secret = secret
        self.client_secret_file = path

    def _certificate_hosts(self) -> list[str]:
        hosts = [LOOPBACK_HOST, "localhost"]
        if self.host not in hosts and self.host not in ("0.0.0.0", "::"):  # noqa: S104
            hosts.append(self.host)
        return hosts

    def _cluster_dir(self, cluster_pool: str, cluster: str) -> Path:
        return self.state_dir / "clusters" / cluster_pool.lower() / cluster.lower()

    def _start_local_flink(self) -> None:
        from flink_task.localflink import LocalFlink

        self._local_flink = LocalFlink(
            self.state_dir / "flink", slots=self.flink_slots, owner_pid=os.getpid()
        )
        logger.info("starting a local Flink cluster in %s", self._local_flink.workdir)
        self._local_flink.start()
        url = self._local_flink.rest_url
        self.clusters = [
            replace(config, flink_url=url) if config.flink_url is None else config
            for config in self.clusters
        ]

    def _stop_local_flink(self) -> None:
        if self._local_flink is not None:
            logger.info("stopping the local Flink cluster in %s", self._local_flink.workdir)
            self._local_flink.stop()
            self._local_flink = None

    def _start_services(self) -> None:
        self._services = []
        for config in self.clusters:
            cluster_dir = self._cluster_dir(config.cluster_pool, config.cluster)
            storage = config.storage_dir or cluster_dir / "storage"
            savepoints = (
                config.savepoint_directory
                or (storage / self._deployment_ids[config.key] / "savepoints").as_uri()
            )
            engine = build_engine(config, cluster_dir / "jobs", str(savepoints))
            recovered = engine.recover()
            if recovered:
                logger.info(
                    "recovered interrupted actions on %s/%s: %s",
                    config.cluster_pool,
                    config.cluster,
                    ", ".join(recovered),
                )
            self._services.append(ClusterService(config, engine))
        self._job_api = JobApi(
            subscription_id=self.subscription_id,
            resource_group=self.resource_group,
            clusters=self._services,
            operations=OperationStore(self.state_dir / "operations"),
            page_size=self.page_size,
        )
        self._settle_operations()

    def _settle_operations(self) -> None:
        operations = self._job_api.operations
        removed = operations.prune()
        if removed:
            logger.info("removed %d finished operations past their retention time", removed)
        for operation in operations.unfinished():
            service = self._job_api.clusters.get(operation.cluster_key)
            if service is not None:
                self._job_api.settle(service, operation)

    def _start_oidc_issuer(self, tls_files: Any) -> None:
        if not self.use_oidc_issuer:
            return
        issuer = OidcIssuer(
            github_subject=self.github_subject, lifetime_seconds=self.id_token_lifetime
        )
        # The server certificate names 127.0.0.1, so clients trust the issuer with the same
        # CA file as the job API.
        issuer.start(server_context(tls_files))
        self.oidc_issuer = issuer
        write_private_text(
            self.state_dir / GITHUB_REQUEST_TOKEN_FILE, issuer.github_request_token + "\n"
        )
        write_private_text(
            self.state_dir / AZURE_DEVOPS_ACCESS_TOKEN_FILE,
            issuer.azure_devops_access_token + "\n",
        )

    def _stop_oidc_issuer(self) -> None:
        if self.oidc_issuer is not None:
            self.oidc_issuer.stop()
            self.oidc_issuer = None

    def _principal(self) -> tuple[ServicePrincipal, dict[str, dict[str, Any]]]:
        certificates = (self._client_certificate,) if self.use_client_certificate else ()
        federated: tuple[FederatedCredential, ...] = ()
        key_sets: dict[str, dict[str, Any]] = {}
        issuer = self.oidc_issuer
        if issuer is not None:
            connection_subject = issuer.azure_devops_subject(self.azure_devops_service_connection)
            federated = (
                FederatedCredential(issuer.issuer, issuer.github_subject, name="github"),
                FederatedCredential(issuer.issuer, connection_subject, name="azure-devops"),
            )
            key_sets[issuer.issuer] = issuer.jwks()
        principal = ServicePrincipal(
            self.tenant_id,
            self.client_id,
            self.client_secret,
            certificates=certificates,
            federated_credentials=federated,
        )
        return principal, key_sets

    def _serve(self, tls_files: Any) -> None:
        principal, key_sets = self._principal()
        authority = Authority(
            principal,
            TokenStore(self.state_dir / "tokens.json"),
            token_lifetime=self.token_lifetime,
            key_sets=key_sets,
        )
        self.authority = authority
        server = TlsHttpServer(
            (self.host, self.port),
            server_context(tls_files),
            EmulatorApp(authority, self._job_api),
        )
        self.port = server.server_address[1]
        url_host = LOOPBACK_HOST if self.host in ("0.0.0.0", "::") else self.host  # noqa: S104
        if ":" in url_host:
            url_host = f"[{url_host}]"
        self.base_url = f"https://{url_host}:{self.port}"
        authority.set_base_url(self.base_url)
        self._job_api.base_url = self.base_url
        self._server = server
        self._server_thread = threading.Thread(
            target=server.serve_forever, name="emulator-http", daemon=True
        )
        self._server_thread.start()

    # --- shutdown -------------------------------------------------------------------------

    def _wait_for_actions(self) -> None:
        deadline = time.monotonic() + self.shutdown_timeout
        threads = [thread for service in self._services for thread in service.running_threads()]
        for thread in threads:
            logger.info("waiting for the running action %s to end", thread.name)
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        left = [thread.name for thread in threads if thread.is_alive()]
        if left:
            # The engine's recovery on the next start ends or resumes these actions.
            logger.warning(
                "actions still running after %.0f s, left to recovery on the next start: %s",
                self.shutdown_timeout,
                ", ".join(left),
            )


def build_engine(config: ClusterConfig, jobs_dir: Path, default_savepoint_dir: str) -> JobEngine:
    """Return an engine on the cluster's Flink REST URL, with its own job store folder."""
    if config.flink_url is None:
        raise ConfigError(f"cluster {config.cluster_pool}/{config.cluster} has no Flink REST URL")
    return Engine(
        flink=FlinkRestClient(config.flink_url),
        store=JobStore(jobs_dir),
        jars=JarResolver(config.storage_mappings),
        default_savepoint_dir=default_savepoint_dir,
    )


class StateLock:
    """An exclusive lock on the state folder, held while an emulator uses it.

    Two emulators on one folder would recover each other's running actions and overwrite
    each other's operation files. The lock is an `flock` on a file in the folder, so the
    kernel releases it when the process dies. NOTE: without `fcntl` (Windows) nothing is
    locked.
    """

    def __init__(self, path: Path) -> None:
        self._file = path.open("a+")
        if fcntl is None:
            return
        try:
            fcntl.flock(self._file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._file.seek(0)
            holder = self._file.read().strip() or "unknown"
            self._file.close()
            raise ConfigError(
                f"the state folder {path.parent} is in use by another emulator (pid {holder}). "
                "Stop it, or give this one another --state-dir"
            ) from None
        self._file.truncate(0)
        self._file.write(str(os.getpid()))
        self._file.flush()

    def release(self) -> None:
        if not self._file.closed:
            self._file.close()


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
