"""A local emulator of the Azure HDInsight on AKS job API, backed by a real Flink cluster."""

from __future__ import annotations

from flink_task.emulator.clusters import ClusterConfig, ConfigError
from flink_task.emulator.emulator import Emulator

__all__ = ["ClusterConfig", "ConfigError", "Emulator"]
