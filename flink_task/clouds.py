"""Azure clouds: the Resource Manager endpoint and Microsoft Entra authority host of each.

Endpoints follow the Azure CLI's cloud table (``azure/cli/core/cloud.py``) and the authority
hosts follow azure-identity's ``AzureAuthorityHosts``. Microsoft Cloud Germany closed on
29 October 2021 and is not offered.
"""

from __future__ import annotations

import ipaddress
import string
from dataclasses import dataclass
from urllib.parse import urlsplit

from flink_task.errors import InputError

DEFAULT_CLOUD = "AzureCloud"
CUSTOM_CLOUD = "custom"

# Hosts of Microsoft's own Entra authorities. Any other host (an emulator on loopback, a
# private cloud) gets instance discovery turned off, because MSAL would otherwise ask
# login.microsoftonline.com whether the host is a known authority and fail.
MICROSOFT_AUTHORITY_HOSTS = frozenset(
    {
        "login.microsoftonline.com",
        "login.microsoft.com",
        "login.windows.net",
        "sts.windows.net",
        "login.microsoftonline.us",
        "login.usgovcloudapi.net",
        "login.chinacloudapi.cn",
        "login.partner.microsoftonline.cn",
    }
)

# azure-identity accepts only these characters in a scope (azure.identity._internal.utils,
# VALID_SCOPE_CHARACTERS in azure-identity 1.27), so an IPv6 literal such as [::1] cannot
# be part of a management endpoint.
_SCOPE_CHARACTERS = frozenset(string.ascii_letters + string.digits + "_-.:/")


@dataclass(frozen=True)
class Cloud:
    """An Azure cloud: its name, Resource Manager endpoint and Entra authority host.

    Both URLs are stored without a trailing slash, for example
    ``https://management.azure.com`` and ``https://login.microsoftonline.com``.
    """

    name: str
    management_endpoint: str
    authority_host: str

    @property
    def scope(self) -> str:
        """The token scope for Resource Manager in this cloud."""
        return f"{self.management_endpoint.rstrip('/')}/.default"

    @property
    def disable_instance_discovery(self) -> bool:
        """Whether MSAL must skip instance discovery, true for non-Microsoft authorities."""
        host = urlsplit(self.authority_host).hostname or ""
        return host.lower() not in MICROSOFT_AUTHORITY_HOSTS


KNOWN_CLOUDS: dict[str, Cloud] = {
    cloud.name: cloud
    for cloud in (
        Cloud("AzureCloud", "https://management.azure.com", "https://login.microsoftonline.com"),
        Cloud(
            "AzureUSGovernment",
            "https://management.usgovcloudapi.net",
            "https://login.microsoftonline.us",
        ),
        Cloud(
            "AzureChinaCloud",
            "https://management.chinacloudapi.cn",
            "https://login.chinacloudapi.cn",
        ),
    )
}

_CLOUD_CHOICES = "AzureCloud, AzureUSGovernment, AzureChinaCloud or custom"


def resolve_cloud(
    name: str | None,
    *,
    management_endpoint: str | None = None,
    authority_host: str | None = None,
) -> Cloud:
    """Return the cloud called ``name``, with the given endpoints replacing its defaults.

    ``name`` matches case-insensitively and defaults to AzureCloud. ``custom`` needs both
    endpoints. Raises InputError naming the input (cloud, managementEndpoint or
    authorityHost) when a value is unknown or not a valid URL.
    """
    base = _base_cloud(name, management_endpoint, authority_host)
    endpoint = base.management_endpoint
    if management_endpoint:
        endpoint = normalize_management_endpoint(management_endpoint)
    authority = base.authority_host
    if authority_host:
        authority = normalize_authority_host(authority_host)
    return Cloud(base.name, endpoint, authority)


def _base_cloud(
    name: str | None, management_endpoint: str | None, authority_host: str | None
) -> Cloud:
    if not name:
        return KNOWN_CLOUDS[DEFAULT_CLOUD]
    if name.lower() == CUSTOM_CLOUD:
        missing = [
            input_name
            for input_name, value in (
                ("managementEndpoint", management_endpoint),
                ("authorityHost", authority_host),
            )
            if not value
        ]
        if missing:
            raise InputError(
                missing[0],
                "missing, but cloud is custom",
                "Set managementEndpoint and authorityHost for a custom cloud",
            )
        return Cloud(CUSTOM_CLOUD, "", "")
    cloud = find_known_cloud(name)
    if cloud is not None:
        return cloud
    raise InputError("cloud", f"unknown cloud {name!r}", f"Use {_CLOUD_CHOICES}")


def find_known_cloud(name: str) -> Cloud | None:
    """Return the known cloud called ``name`` (case-insensitive), or None."""
    for known_name, cloud in KNOWN_CLOUDS.items():
        if known_name.lower() == name.lower():
            return cloud
    return None


def normalize_management_endpoint(value: str) -> str:
    """Return the Resource Manager URL without a trailing slash, or raise InputError.

    The URL must be https, except for a loopback host (an emulator), which may use http.
    """
    text = value.strip()
    parts = urlsplit(text)
    fix = "Use an https URL such as https://management.azure.com"
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise InputError("managementEndpoint", f"invalid URL {value!r}", fix)
    if parts.scheme == "http" and not _is_loopback(parts.hostname):
        raise InputError(
            "managementEndpoint", f"{value!r} uses http, which is allowed only on loopback", fix
        )
    if parts.query or parts.fragment:
        raise InputError(
            "managementEndpoint", f"{value!r} must not contain a query or fragment", fix
        )
    if not set(text) <= _SCOPE_CHARACTERS:
        raise InputError(
            "managementEndpoint",
            f"{value!r} contains characters that a token scope cannot contain",
            "Use a host name or an IPv4 address such as 127.0.0.1",
        )
    return text.rstrip("/")


def normalize_authority_host(value: str) -> str:
    """Return ``https://HOST[:PORT]`` for an authority host given with or without a scheme.

    azure-identity accepts only https authorities, and MSAL reads the first path segment
    as the tenant, so a path is rejected here with InputError.
    """
    text = value.strip()
    if "://" not in text:
        text = f"https://{text}"
    parts = urlsplit(text)
    fix = "Use the host only, for example https://login.microsoftonline.com"
    if parts.scheme != "https" or not parts.hostname:
        raise InputError("authorityHost", f"invalid authority {value!r}: it must be https", fix)
    if parts.path.strip("/") or parts.query or parts.fragment:
        raise InputError(
            "authorityHost", f"{value!r} must not contain a path, query or fragment", fix
        )
    return f"https://{parts.netloc}"


def authority_from_url(value: str) -> str:
    """Return ``https://HOST[:PORT]`` from an authority URL that may end in a path.

    Azure DevOps stores the authority of a service connection as a URL such as
    ``https://login.microsoftonline.com/``. Any path (a tenant) is dropped.
    """
    parts = urlsplit(value.strip())
    if parts.scheme != "https" or not parts.hostname:
        raise InputError(
            "azureSubscription",
            f"the service connection's activeDirectoryAuthority {value!r} is not an https URL",
            "Set authorityHost to override it",
        )
    return f"https://{parts.netloc}"


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
