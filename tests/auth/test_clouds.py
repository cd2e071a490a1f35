from __future__ import annotations

import pytest

from flink_task.clouds import (
    KNOWN_CLOUDS,
    authority_from_url,
    normalize_authority_host,
    resolve_cloud,
)
from flink_task.errors import InputError


@pytest.mark.parametrize(
    ("name", "endpoint", "authority", "scope"),
    [
        (
            "AzureCloud",
            "https://management.azure.com",
            "https://login.microsoftonline.com",
            "https://management.azure.com/.default",
        ),
        (
            "AzureUSGovernment",
            "https://management.usgovcloudapi.net",
            "https://login.microsoftonline.us",
            "https://management.usgovcloudapi.net/.default",
        ),
        (
            "AzureChinaCloud",
            "https://management.chinacloudapi.cn",
            "https://login.chinacloudapi.cn",
            "https://management.chinacloudapi.cn/.default",
        ),
    ],
)
def test_known_cloud_endpoints(name: str, endpoint: str, authority: str, scope: str) -> None:
    cloud = resolve_cloud(name)
    assert cloud.name == name
    assert cloud.management_endpoint == endpoint
    assert cloud.authority_host == authority
    assert cloud.scope == scope
    assert cloud.disable_instance_discovery is False


def test_default_cloud_is_public() -> None:
    assert resolve_cloud(None) == KNOWN_CLOUDS["AzureCloud"]
    assert resolve_cloud("") == KNOWN_CLOUDS["AzureCloud"]


def test_cloud_name_ignores_case() -> None:
    assert resolve_cloud("azureusgovernment").name == "AzureUSGovernment"


def test_management_endpoint_overrides_default() -> None:
    cloud = resolve_cloud("AzureCloud", management_endpoint="https://127.0.0.1:8443/")
    assert cloud.management_endpoint == "https://127.0.0.1:8443"
    assert cloud.scope == "https://127.0.0.1:8443/.default"
    assert cloud.authority_host == "https://login.microsoftonline.com"


def test_loopback_authority_disables_discovery() -> None:
    cloud = resolve_cloud(
        "custom",
        management_endpoint="https://127.0.0.1:8443",
        authority_host="https://127.0.0.1:8443",
    )
    assert cloud.name == "custom"
    assert cloud.authority_host == "https://127.0.0.1:8443"
    assert cloud.disable_instance_discovery is True


def test_authority_host_without_scheme() -> None:
    assert (
        normalize_authority_host("login.microsoftonline.us/") == "https://login.microsoftonline.us"
    )


def test_authority_from_connection_url_drops_path() -> None:
    assert authority_from_url("https://login.microsoftonline.com/") == (
        "https://login.microsoftonline.com"
    )
    assert authority_from_url("https://login.microsoftonline.com/contoso") == (
        "https://login.microsoftonline.com"
    )


def test_http_allowed_only_on_loopback() -> None:
    assert resolve_cloud(None, management_endpoint="http://127.0.0.1:8080").scope == (
        "http://127.0.0.1:8080/.default"
    )
    with pytest.raises(InputError) as caught:
        resolve_cloud(None, management_endpoint="http://management.example.com")
    assert caught.value.input_name == "managementEndpoint"
    assert "https" in str(caught.value)


@pytest.mark.parametrize(
    ("kwargs", "input_name", "fix"),
    [
        ({"name": "AzureGermanCloud"}, "cloud", "AzureCloud, AzureUSGovernment, AzureChinaCloud"),
        (
            {"name": "custom", "authority_host": "https://127.0.0.1:1"},
            "managementEndpoint",
            "Set managementEndpoint and authorityHost",
        ),
        (
            {"name": "custom", "management_endpoint": "https://127.0.0.1:1"},
            "authorityHost",
            "Set managementEndpoint and authorityHost",
        ),
        ({"name": None, "authority_host": "http://127.0.0.1:1"}, "authorityHost", "host only"),
        (
            {"name": None, "authority_host": "https://login.microsoftonline.com/tenant"},
            "authorityHost",
            "host only",
        ),
        (
            {"name": None, "management_endpoint": "management.azure.com"},
            "managementEndpoint",
            "https",
        ),
        (
            {"name": None, "management_endpoint": "https://[::1]:8443"},
            "managementEndpoint",
            "IPv4",
        ),
    ],
)
def test_invalid_cloud_settings(kwargs: dict[str, str | None], input_name: str, fix: str) -> None:
    name = kwargs.pop("name")
    with pytest.raises(InputError) as caught:
        resolve_cloud(name, **kwargs)  # type: ignore[arg-type]
    assert caught.value.input_name == input_name
    assert fix in str(caught.value)
