"""A local emulator of the Azure HDInsight on AKS job API, backed by a real Flink cluster.

It serves `POST .../runJob` and `GET .../jobs` of the five published API versions over HTTPS
on loopback, with its own CA, and an Azure AD compatible authority on the same port, so
azure-identity and the official SDK work against it unchanged::

    with Emulator(state_dir, clusters=[ClusterConfig("pool1", "cluster1",
                                                     flink_url="http://127.0.0.1:8081")]) as em:
        credential = ClientSecretCredential(
            em.tenant_id, em.client_id, em.client_secret, authority=em.base_url,
            disable_instance_discovery=True, connection_verify=str(em.ca_file))
        client = HDInsightContainersMgmtClient(
            credential, em.subscription_id, base_url=em.base_url,
            credential_scopes=[f"{em.base_url}/.default"], connection_verify=str(em.ca_file))

`flink-task emulator` does the same from the command line and prints `Emulator.info()` as
one JSON line.
"""

from __future__ import annotations

from flink_task.emulator.clusters import ClusterConfig, ConfigError
from flink_task.emulator.emulator import Emulator

__all__ = ["ClusterConfig", "ConfigError", "Emulator"]
