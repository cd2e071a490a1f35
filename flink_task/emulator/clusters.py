"""Cluster configuration: which Flink REST endpoint and storage each emulated cluster uses."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_CLUSTER_POOL = "local-pool"
DEFAULT_CLUSTER = "local-cluster"
DEFAULT_RESOURCE_GROUP = "flink-task-local"


class ConfigError(Exception):
    """An invalid emulator configuration file or option."""


@dataclass(frozen=True)
class ClusterConfig:
    """One emulated cluster.

    `flink_url` is None for a cluster served by the local Flink that the emulator starts
    itself. Savepoints go to `<storage_dir>/<deployment id>/savepoints` unless
    `savepoint_directory` names another default. `storage_mappings` maps URL prefixes such as
    `abfs://jars@account.dfs.core.windows.net/` to the local folders with the same files.
    """

    cluster_pool: str
    cluster: str
    flink_url: str | None = None
    storage_dir: Path | None = None
    savepoint_directory: str | None = None
    storage_mappings: dict[str, Path] = field(default_factory=dict)

    @property
    def key(self) -> str:
        """Case-insensitive lookup key, because ARM resource names are case-insensitive."""
        return f"{self.cluster_pool.lower()}/{self.cluster.lower()}"


@dataclass(frozen=True)
class EmulatorConfig:
    """Contents of an emulator configuration file."""

    clusters: list[ClusterConfig]
    subscription_id: str | None = None
    resource_group: str | None = None


def load_config(path: Path) -> EmulatorConfig:
    """Read a JSON configuration file. Relative paths in it are relative to its folder.

    Shape: `{"subscriptionId": "...", "resourceGroup": "...", "clusters": [{"clusterPool",
    "cluster", "flinkUrl", "storageDirectory", "savepointDirectory", "storageMappings"}]}`.
    Only `clusters` with `clusterPool` and `cluster` in each entry is required.
    """
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise ConfigError(f"cannot read the emulator configuration {path}: {error}") from None
    if not isinstance(data, dict) or not isinstance(data.get("clusters"), list):
        raise ConfigError(f"{path}: expected an object with a 'clusters' list")
    clusters = [
        _cluster(entry, path.parent, index) for index, entry in enumerate(data["clusters"])
    ]
    check_unique(clusters)
    return EmulatorConfig(
        clusters=clusters,
        subscription_id=_optional_string(data, "subscriptionId", str(path)),
        resource_group=_optional_string(data, "resourceGroup", str(path)),
    )


def check_unique(clusters: list[ClusterConfig]) -> None:
    if not clusters:
        raise ConfigError("configure at least one cluster")
    keys = [cluster.key for cluster in clusters]
    duplicates = sorted({key for key in keys if keys.count(key) > 1})
    if duplicates:
        raise ConfigError(f"clusters configured twice (names are case-insensitive): {duplicates}")


def _cluster(entry: Any, base: Path, index: int) -> ClusterConfig:
    where = f"clusters[{index}]"
    if not isinstance(entry, dict):
        raise ConfigError(f"{where}: expected an object")
    pool = _optional_string(entry, "clusterPool", where)
    name = _optional_string(entry, "cluster", where)
    if not pool or not name:
        raise ConfigError(f"{where}: 'clusterPool' and 'cluster' are required")
    storage = _optional_string(entry, "storageDirectory", where)
    mappings = entry.get("storageMappings", {})
    if not isinstance(mappings, dict) or not all(
        isinstance(value, str) for value in mappings.values()
    ):
        raise ConfigError(f"{where}.storageMappings: expected an object of URL prefix -> folder")
    return ClusterConfig(
        cluster_pool=pool,
        cluster=name,
        flink_url=_optional_string(entry, "flinkUrl", where),
        storage_dir=(base / storage) if storage else None,
        savepoint_directory=_optional_string(entry, "savepointDirectory", where),
        storage_mappings={prefix: base / folder for prefix, folder in mappings.items()},
    )


def _optional_string(data: dict[str, Any], key: str, where: str) -> str | None:
    value = data.get(key)
    if value is not None and not isinstance(value, str):
        raise ConfigError(f"{where}.{key}: expected a string")
    return value


def parse_storage_mapping(text: str) -> tuple[str, Path]:
    """Parse a `--storage-mapping PREFIX=FOLDER` option value."""
    prefix, separator, folder = text.rpartition("=")
    if not separator or not prefix or not folder:
        raise ConfigError(
            f"invalid --storage-mapping {text!r}: use PREFIX=FOLDER, for example "
            "abfs://jars@account.dfs.core.windows.net/=/srv/jars"
        )
    return prefix, Path(folder)
