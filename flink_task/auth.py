"""Sign in to Azure from a pipeline: choose a method, then build an azure-identity credential.

``plan_sign_in`` reads the task inputs and the environment and returns a ``SignInPlan``. It
sends nothing and builds no credential, so every local misconfiguration is an InputError
(exit code 2) before any request. ``SignInPlan.create_credential`` then builds the credential.

Methods (the ``authType`` input):

- ``secret``: ClientSecretCredential with tenantId, clientId and clientSecret.
- ``certificate``: CertificateCredential with a PEM or PKCS12 file path, or PEM text, in
  clientCertificate. The bytes are passed as ``certificate_data`` and never written to disk.
- ``github-oidc``: ClientAssertionCredential whose callback requests a new GitHub ID token
  for every access token. GitHub's token lives about 5 minutes, so a token fetched once
  would fail on the first refresh after a long wait.
- ``azure-devops-oidc``: the same with the Azure DevOps OIDC token service
  (``SYSTEM_OIDCREQUESTURI``) and the job access token.
- ``managed-identity``: ManagedIdentityCredential, user-assigned when clientId is set.
- ``azure-cli``: AzureCliCredential. After ``azure/login`` (or AzureCLI@2) with OIDC, the
  Azure CLI cannot renew its federated token, so its tokens stop working after about an
  hour with AADSTS700024. Use github-oidc or azure-devops-oidc for longer runs.
- ``default``: DefaultAzureCredential.

``auto`` (the default) uses the first of these that is configured:

1. clientSecret or clientCertificate given as a task input: secret or certificate;
2. an Azure DevOps service connection (azureSubscription, or
   AZURESUBSCRIPTION_SERVICE_CONNECTION_ID in an AzureCLI@2 script): the method of its
   scheme;
3. ACTIONS_ID_TOKEN_REQUEST_URL and a client id: github-oidc;
4. AZURE_CLIENT_SECRET or AZURE_CLIENT_CERTIFICATE_PATH in the environment: secret or
   certificate;
5. otherwise DefaultAzureCredential.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import requests
from azure.core.credentials import AccessToken, AccessTokenInfo, TokenCredential
from azure.core.exceptions import ClientAuthenticationError
from azure.identity import (
    AzureCliCredential,
    CertificateCredential,
    ClientAssertionCredential,
    ClientSecretCredential,
    DefaultAzureCredential,
    ManagedIdentityCredential,
)
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs12

from flink_task.clouds import (
    Cloud,
    authority_from_url,
    find_known_cloud,
    normalize_management_endpoint,
    resolve_cloud,
)
from flink_task.errors import ActionFailedError, InputError
from flink_task.inputs import AZURE_ENV_FALLBACKS, INPUTS_BY_NAME

LOGGER = logging.getLogger(__name__)

AUTH_TYPES = (
    "auto",
    "secret",
    "certificate",
    "github-oidc",
    "azure-devops-oidc",
    "managed-identity",
    "azure-cli",
    "default",
)
DEFAULT_AUDIENCE = "api://AzureADTokenExchange"

# Names of environment variables, not their values.
GITHUB_TOKEN_URL_VARIABLE = "ACTIONS_ID_TOKEN_REQUEST_URL"  # noqa: S105
GITHUB_REQUEST_TOKEN_VARIABLE = "ACTIONS_ID_TOKEN_REQUEST_TOKEN"  # noqa: S105
ADO_OIDC_URI_VARIABLE = "SYSTEM_OIDCREQUESTURI"
# The agent passes System.AccessToken to tasks in the first variable. Scripts must map it
# themselves, usually to the second.
ADO_JOB_TOKEN_VARIABLES = (
    "ENDPOINT_AUTH_PARAMETER_SYSTEMVSSCONNECTION_ACCESSTOKEN",
    "SYSTEM_ACCESSTOKEN",
)
# Set by AzureCLI@2 and @3 for the script of a workload identity federation connection.
ADO_CLI_CONNECTION_VARIABLE = "AZURESUBSCRIPTION_SERVICE_CONNECTION_ID"
ADO_CLI_CLIENT_ID_VARIABLE = "AZURESUBSCRIPTION_CLIENT_ID"
ADO_CLI_TENANT_ID_VARIABLE = "AZURESUBSCRIPTION_TENANT_ID"
ADO_OIDC_API_VERSION = "7.1"

OIDC_REQUEST_TIMEOUT_SECONDS = 30.0
OIDC_REQUEST_ATTEMPTS = 3
OIDC_RETRY_DELAY_SECONDS = 2.0
_RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})

_TENANT_ID_PATTERN = re.compile(r"[A-Za-z0-9.-]+")
_AADSTS_PATTERN = re.compile(r"AADSTS(\d+)")
_JWT_PATTERN = re.compile(r"eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")

_CONNECTION_SCHEME_METHODS = {
    "workloadidentityfederation": "azure-devops-oidc",
    "managedserviceidentity": "managed-identity",
}

# Extra advice for Azure AD error codes that pipelines commonly hit.
_AADSTS_HINTS = {
    "700016": "Check clientId and tenantId: the application was not found in that tenant",
    "7000215": "The client secret is wrong or expired: create a new one and update clientSecret",
    "7000222": "The client secret has expired: create a new one and update clientSecret",
    "700024": "The federated token had expired. The azure-cli method cannot renew it, so use "
    "github-oidc or azure-devops-oidc, which request a new token for every access token",
    "70021": "No federated credential of the application matches the token's issuer, subject "
    "and audience. The federated credential's subject must equal the token's sub exactly",
    "700213": "No federated credential of the application matches the token's subject",
    "700211": "No federated credential of the application matches the token's issuer",
}


class SignInError(ClientAuthenticationError, ActionFailedError):
    """Azure sign-in failure at token time, with a message that contains no secret or token.

    It is a ClientAuthenticationError, as TokenCredential callers expect, and a flink-task
    error with exit code 1, so the command line reports it as one plain line.
    """

    def __init__(self, message: str, *, method: str, aadsts_code: str | None) -> None:
        super().__init__(message=message)
        self.method = method
        self.aadsts_code = aadsts_code


class SignInFailedError(ActionFailedError):
    """A sign-in failure as a flink-task error, which ends the run with exit code 1."""

    @classmethod
    def from_exception(cls, exc: ClientAuthenticationError) -> SignInFailedError:
        return cls(describe_auth_error(exc))


@dataclass(frozen=True)
class ServiceConnection:
    """The fields of an Azure Resource Manager service connection that sign-in uses."""

    id: str
    scheme: str  # lower case: serviceprincipal, workloadidentityfederation, ...
    authentication_type: str  # lower case: spnkey or spncertificate (ServicePrincipal only)
    tenant_id: str | None
    client_id: str | None
    client_secret: str | None = field(repr=False)
    certificate_pem: str | None = field(repr=False)
    subscription_id: str | None
    environment: str | None
    authority: str | None
    management_endpoint: str | None
    managed_identity_client_id: str | None


@dataclass(frozen=True)
class OidcTokenRequest:
    """How to request an ID token from a pipeline's OIDC token service."""

    provider: str  # "GitHub" or "Azure DevOps", for messages
    http_method: str
    url: str
    bearer_token: str = field(repr=False)
    response_field: str
    denied_hint: str


@dataclass(frozen=True)
class _CredentialSettings:
    tenant_id: str | None = None
    client_id: str | None = None
    client_secret: str | None = field(default=None, repr=False)
    certificate_data: bytes | None = field(default=None, repr=False)
    certificate_password: str | None = field(default=None, repr=False)
    oidc_request: OidcTokenRequest | None = None


@dataclass(frozen=True)
class SignInPlan:
    """The sign-in method chosen for a run, the cloud and scope, and the secrets to mask."""

    method: str
    reason: str
    cloud: Cloud
    scope: str
    subscription_id: str | None
    tenant_id: str | None
    client_id: str | None
    secrets: list[str] = field(repr=False)
    # For auto: the earlier sources that were not configured, named without values.
    skipped: tuple[str, ...] = ()
    _settings: _CredentialSettings = field(default_factory=_CredentialSettings, repr=False)

    def describe(self) -> str:
        """Return one log line about the plan, without any secret."""
        parts = [
            f"Azure sign-in: {self.method} ({self.reason})",
            f"cloud {self.cloud.name}",
            f"authority {self.cloud.authority_host}",
            f"scope {self.scope}",
        ]
        if self.tenant_id:
            parts.append(f"tenant {self.tenant_id}")
        if self.client_id:
            parts.append(f"client {self.client_id}")
        if self.subscription_id:
            parts.append(f"subscription {self.subscription_id}")
        return ", ".join(parts)

    def create_credential(self, on_secret: Callable[[str], None] | None = None) -> TokenCredential:
        """Build the azure-identity credential of the plan, wrapped to explain failures.

        ``on_secret`` is called with every ID token fetched from an OIDC token service,
        before the token is used, so the caller can mask it at once.
        """
        inner, session = _build_credential(self, on_secret)
        return _SignInCredential(
            inner,
            method=self.method,
            skipped=self.skipped,
            secrets=self.secrets,
            session=session,
        )


# ----------------------------------------------------------------------------------------
# Planning


def plan_sign_in(inputs: Mapping[str, str], environ: Mapping[str, str]) -> SignInPlan:
    """Choose the sign-in method and check its configuration without sending anything.

    ``inputs`` are the raw inputs of ``flink_task.inputs.collect_raw_inputs``. Raises
    InputError naming the input and the fix for every misconfiguration visible locally.
    """
    values = {name: value.strip() for name, value in inputs.items() if value.strip()}
    auth_type = values.get("authType", "auto").lower()
    if auth_type not in AUTH_TYPES:
        raise InputError(
            "authType", f"unknown authType {values['authType']!r}", f"Use {_choices(AUTH_TYPES)}"
        )

    connection = _find_service_connection(values, environ)
    if auth_type == "auto":
        method, reason, skipped = _choose_automatically(values, environ, connection)
    else:
        method, reason, skipped = auth_type, f"authType is {auth_type}", []

    cloud = _resolve_plan_cloud(values, connection)
    settings, secrets = _METHOD_BUILDERS[method](values, environ, connection)
    if connection is not None:
        # The connection's own secrets are masked whichever method is used.
        secrets += [connection.client_secret or "", connection.certificate_pem or ""]
    subscription_id = values.get("subscriptionId") or (
        connection.subscription_id if connection else None
    )
    plan = SignInPlan(
        method=method,
        reason=reason,
        cloud=cloud,
        scope=cloud.scope,
        subscription_id=subscription_id,
        tenant_id=settings.tenant_id,
        client_id=settings.client_id,
        secrets=_unique(secrets),
        skipped=tuple(skipped),
        _settings=settings,
    )
    LOGGER.info("%s", plan.describe())
    if method == "azure-cli":
        LOGGER.warning(
            "azure-cli: after a federated (OIDC) az login, the Azure CLI cannot renew its "
            "token, so requests fail with AADSTS700024 after about 1 hour; use github-oidc "
            "or azure-devops-oidc for longer runs"
        )
    return plan


def _choose_automatically(
    values: Mapping[str, str],
    environ: Mapping[str, str],
    connection: ServiceConnection | None,
) -> tuple[str, str, list[str]]:
    skipped: list[str] = []
    for name, method in (("clientSecret", "secret"), ("clientCertificate", "certificate")):
        if name in values and not _came_from_azure_environment(name, values, environ):
            return method, f"auto: {name} is set as a task input", skipped
    skipped.append("task inputs clientSecret and clientCertificate: not set")

    if connection is not None:
        method = _method_for_connection(connection)
        return (
            method,
            f"auto: service connection {connection.id} uses {connection.scheme}",
            skipped,
        )
    skipped.append("Azure DevOps service connection: azureSubscription not set")

    if environ.get(GITHUB_TOKEN_URL_VARIABLE) and values.get("clientId"):
        return "github-oidc", f"auto: {GITHUB_TOKEN_URL_VARIABLE} and clientId are set", skipped
    if environ.get(GITHUB_TOKEN_URL_VARIABLE):
        skipped.append(f"GitHub OIDC: {GITHUB_TOKEN_URL_VARIABLE} is set but clientId is not")
    else:
        skipped.append(f"GitHub OIDC: {GITHUB_TOKEN_URL_VARIABLE} not set")

    for name, method in (("clientSecret", "secret"), ("clientCertificate", "certificate")):
        if name in values:
            variable = AZURE_ENV_FALLBACKS[name]
            return method, f"auto: {variable} is set", skipped
    skipped.append("AZURE_CLIENT_SECRET and AZURE_CLIENT_CERTIFICATE_PATH: not set")
    return "default", "auto: no other sign-in is configured", skipped


def _came_from_azure_environment(
    name: str, values: Mapping[str, str], environ: Mapping[str, str]
) -> bool:
    """Tell whether an input's value is the AZURE_* fallback rather than a task input."""
    if environ.get(INPUTS_BY_NAME[name].env_var, "").strip():
        return False
    return environ.get(AZURE_ENV_FALLBACKS[name], "").strip() == values[name]


def _method_for_connection(connection: ServiceConnection) -> str:
    if connection.scheme == "serviceprincipal":
        if connection.authentication_type == "spncertificate":
            return "certificate"
        return "secret"
    method = _CONNECTION_SCHEME_METHODS.get(connection.scheme)
    if method is None:
        raise InputError(
            "azureSubscription",
            f"service connection {connection.id} uses the scheme {connection.scheme}, "
            "which cannot sign in to Azure Resource Manager",
            "Use an Azure Resource Manager service connection with workload identity "
            "federation, a service principal or a managed identity",
        )
    return method


def _resolve_plan_cloud(values: Mapping[str, str], connection: ServiceConnection | None) -> Cloud:
    name = values.get("cloud")
    endpoint = values.get("managementEndpoint")
    authority = values.get("authorityHost")
    if connection is not None:
        if not name and connection.environment:
            known = find_known_cloud(connection.environment)
            name = known.name if known else "custom"
        if not endpoint and connection.management_endpoint:
            endpoint = _connection_management_endpoint(connection)
        if not authority and connection.authority:
            authority = authority_from_url(connection.authority)
    return resolve_cloud(name, management_endpoint=endpoint, authority_host=authority)


def _connection_management_endpoint(connection: ServiceConnection) -> str:
    assert connection.management_endpoint is not None
    try:
        return normalize_management_endpoint(connection.management_endpoint)
    except InputError as exc:
        raise InputError(
            "azureSubscription",
            f"the URL of service connection {connection.id} is invalid ({exc})",
            "Set managementEndpoint to override it",
        ) from exc


# ----------------------------------------------------------------------------------------
# Azure DevOps service connections


def _find_service_connection(
    values: Mapping[str, str], environ: Mapping[str, str]
) -> ServiceConnection | None:
    connection_id = values.get("azureSubscription")
    if connection_id:
        connection = read_service_connection(connection_id, environ)
        if connection is None:
            connection = _connection_from_azure_cli_task(environ, connection_id)
        if connection is None:
            suffix = _endpoint_suffix(connection_id)
            raise InputError(
                "azureSubscription",
                f"service connection {connection_id} not found: "
                f"ENDPOINT_AUTH_SCHEME_{suffix} is not set",
                "Set azureSubscription to the id of an Azure Resource Manager service "
                "connection, and check that the task passes the ENDPOINT_* variables "
                "to flink-task",
            )
        return connection
    cli_connection_id = environ.get(ADO_CLI_CONNECTION_VARIABLE, "").strip()
    if cli_connection_id:
        return _connection_from_azure_cli_task(environ, cli_connection_id)
    return None


def read_service_connection(
    connection_id: str, environ: Mapping[str, str]
) -> ServiceConnection | None:
    """Read an Azure Resource Manager service connection from the agent's variables.

    The agent sets ``ENDPOINT_AUTH_SCHEME_<ID>``, ``ENDPOINT_AUTH_PARAMETER_<ID>_<KEY>``,
    ``ENDPOINT_DATA_<ID>_<KEY>`` and ``ENDPOINT_URL_<ID>``, and the same fields as JSON in
    ``ENDPOINT_AUTH_<ID>`` and ``ENDPOINT_DATA_<ID>``. The id is matched case-insensitively.
    Returns None when no scheme is set for the id.
    """
    suffix = _endpoint_suffix(connection_id)
    upper_environ = {name.upper(): value for name, value in environ.items()}
    auth_json = _json_object(upper_environ.get(f"ENDPOINT_AUTH_{suffix}"))
    auth_parameters = _lower_keys(auth_json.get("parameters"))
    data_json = _lower_keys(_json_object(upper_environ.get(f"ENDPOINT_DATA_{suffix}")))

    def auth(key: str) -> str | None:
        value = upper_environ.get(f"ENDPOINT_AUTH_PARAMETER_{suffix}_{key}")
        return _non_empty(value if value is not None else auth_parameters.get(key.lower()))

    def data(key: str) -> str | None:
        value = upper_environ.get(f"ENDPOINT_DATA_{suffix}_{key}")
        return _non_empty(value if value is not None else data_json.get(key.lower()))

    scheme = _non_empty(upper_environ.get(f"ENDPOINT_AUTH_SCHEME_{suffix}"))
    scheme = scheme or _non_empty(auth_json.get("scheme"))
    if scheme is None:
        return None
    return ServiceConnection(
        id=connection_id,
        scheme=scheme.lower(),
        authentication_type=(auth("AUTHENTICATIONTYPE") or "spnKey").lower(),
        tenant_id=auth("TENANTID"),
        client_id=auth("SERVICEPRINCIPALID"),
        client_secret=auth("SERVICEPRINCIPALKEY"),
        certificate_pem=auth("SERVICEPRINCIPALCERTIFICATE"),
        subscription_id=data("SUBSCRIPTIONID"),
        environment=data("ENVIRONMENT"),
        authority=data("ACTIVEDIRECTORYAUTHORITY"),
        management_endpoint=_non_empty(upper_environ.get(f"ENDPOINT_URL_{suffix}")),
        managed_identity_client_id=data("MSICLIENTID"),
    )


def _connection_from_azure_cli_task(
    environ: Mapping[str, str], connection_id: str
) -> ServiceConnection | None:
    """Build a connection from what AzureCLI@2 gives a script: ids of a WIF connection."""
    if environ.get(ADO_CLI_CONNECTION_VARIABLE, "").strip().lower() != connection_id.lower():
        return None
    return ServiceConnection(
        id=connection_id,
        scheme="workloadidentityfederation",
        authentication_type="",
        tenant_id=_non_empty(environ.get(ADO_CLI_TENANT_ID_VARIABLE)),
        client_id=_non_empty(environ.get(ADO_CLI_CLIENT_ID_VARIABLE)),
        client_secret=None,
        certificate_pem=None,
        subscription_id=None,
        environment=None,
        authority=None,
        management_endpoint=None,
        managed_identity_client_id=None,
    )


def _endpoint_suffix(connection_id: str) -> str:
    # The agent forms variable names like this (VarUtil.ConvertToEnvVariableFormat).
    return connection_id.strip().replace(".", "_").replace(" ", "_").upper()


def _json_object(text: str | None) -> dict[str, Any]:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _lower_keys(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        return {}
    return {str(key).lower(): item for key, item in value.items()}


# ----------------------------------------------------------------------------------------
# Settings of each method

_Built = tuple[_CredentialSettings, list[str]]


def _settings_for_secret(
    values: Mapping[str, str], environ: Mapping[str, str], connection: ServiceConnection | None
) -> _Built:
    tenant_id, client_id = _require_principal(values, connection, "secret")
    secret = values.get("clientSecret") or (connection.client_secret if connection else None)
    if not secret and connection is not None and connection.scheme == "serviceprincipal":
        suffix = _endpoint_suffix(connection.id)
        raise InputError(
            "azureSubscription",
            f"service connection {connection.id} has no service principal key",
            f"Check that the task passes ENDPOINT_AUTH_PARAMETER_{suffix}_SERVICEPRINCIPALKEY "
            "to flink-task",
        )
    if not secret:
        raise InputError(
            "clientSecret",
            "missing, but the sign-in method is secret",
            "Set the clientSecret secret input or AZURE_CLIENT_SECRET, or choose another authType",
        )
    settings = _CredentialSettings(tenant_id=tenant_id, client_id=client_id, client_secret=secret)
    return settings, [secret]


def _settings_for_certificate(
    values: Mapping[str, str], environ: Mapping[str, str], connection: ServiceConnection | None
) -> _Built:
    tenant_id, client_id = _require_principal(values, connection, "certificate")
    certificate = values.get("clientCertificate")
    input_name = "clientCertificate"
    if not certificate and connection is not None and connection.certificate_pem:
        certificate, input_name = connection.certificate_pem, "azureSubscription"
    if not certificate and connection is not None and connection.scheme == "serviceprincipal":
        suffix = _endpoint_suffix(connection.id)
        raise InputError(
            "azureSubscription",
            f"service connection {connection.id} has no certificate",
            "Check that the task passes "
            f"ENDPOINT_AUTH_PARAMETER_{suffix}_SERVICEPRINCIPALCERTIFICATE to flink-task",
        )
    if not certificate:
        raise InputError(
            "clientCertificate",
            "missing, but the sign-in method is certificate",
            "Set clientCertificate (or AZURE_CLIENT_CERTIFICATE_PATH) to a PEM or PKCS12 "
            "file path, or to the PEM text",
        )
    password = values.get("clientCertificatePassword")
    data = _read_certificate(certificate, input_name)
    _check_certificate(data, password, input_name)
    secrets = [password] if password else []
    if _is_pem_text(certificate):
        secrets.append(certificate)
    settings = _CredentialSettings(
        tenant_id=tenant_id,
        client_id=client_id,
        certificate_data=data,
        certificate_password=password,
    )
    return settings, secrets


def _settings_for_github_oidc(
    values: Mapping[str, str], environ: Mapping[str, str], connection: ServiceConnection | None
) -> _Built:
    tenant_id, client_id = _require_principal(values, connection, "github-oidc")
    url = environ.get(GITHUB_TOKEN_URL_VARIABLE, "").strip()
    request_token = environ.get(GITHUB_REQUEST_TOKEN_VARIABLE, "").strip()
    if not url or not request_token:
        missing = GITHUB_TOKEN_URL_VARIABLE if not url else GITHUB_REQUEST_TOKEN_VARIABLE
        raise InputError(
            "authType",
            f"github-oidc needs {missing}, which GitHub Actions sets only for jobs allowed "
            "to request an OIDC token",
            "Grant the job `permissions: id-token: write` (a job-level permissions block "
            "replaces the workflow's), or choose another authType",
        )
    audience = values.get("audience") or DEFAULT_AUDIENCE
    separator = "&" if "?" in url else "?"
    request = OidcTokenRequest(
        provider="GitHub",
        http_method="GET",
        url=f"{url}{separator}audience={quote(audience, safe='')}",
        bearer_token=request_token,
        response_field="value",
        denied_hint="Check that the job has `permissions: id-token: write`",
    )
    settings = _CredentialSettings(tenant_id=tenant_id, client_id=client_id, oidc_request=request)
    return settings, [request_token]


def _settings_for_azure_devops_oidc(
    values: Mapping[str, str], environ: Mapping[str, str], connection: ServiceConnection | None
) -> _Built:
    if connection is None:
        raise InputError(
            "azureSubscription",
            "missing, but the sign-in method is azure-devops-oidc",
            "Set azureSubscription to the id of a workload identity federation service connection",
        )
    tenant_id, client_id = _require_principal(values, connection, "azure-devops-oidc")
    uri = environ.get(ADO_OIDC_URI_VARIABLE, "").strip()
    if not uri:
        raise InputError(
            "azureSubscription",
            f"azure-devops-oidc needs {ADO_OIDC_URI_VARIABLE} (System.OidcRequestUri), "
            "which is not set",
            "Run on an Azure Pipelines agent that sets System.OidcRequestUri; a script step "
            "must map it with env: SYSTEM_OIDCREQUESTURI: $(System.OidcRequestUri)",
        )
    job_token = _first_value(environ, ADO_JOB_TOKEN_VARIABLES)
    if not job_token:
        raise InputError(
            "azureSubscription",
            "azure-devops-oidc needs the job access token (System.AccessToken), but neither "
            f"{' nor '.join(ADO_JOB_TOKEN_VARIABLES)} is set",
            "In a script step, map it with env: SYSTEM_ACCESSTOKEN: $(System.AccessToken)",
        )
    query = f"api-version={ADO_OIDC_API_VERSION}&serviceConnectionId={quote(connection.id)}"
    separator = "&" if "?" in uri else "?"
    request = OidcTokenRequest(
        provider="Azure DevOps",
        http_method="POST",
        url=f"{uri.rstrip('/')}{separator}{query}",
        bearer_token=job_token,
        response_field="oidcToken",
        denied_hint="Check that the pipeline is allowed to use service connection "
        f"{connection.id}",
    )
    settings = _CredentialSettings(tenant_id=tenant_id, client_id=client_id, oidc_request=request)
    return settings, [job_token]


def _settings_for_managed_identity(
    values: Mapping[str, str], environ: Mapping[str, str], connection: ServiceConnection | None
) -> _Built:
    client_id = values.get("clientId") or (
        connection.managed_identity_client_id if connection else None
    )
    tenant_id = values.get("tenantId") or (connection.tenant_id if connection else None)
    return _CredentialSettings(tenant_id=tenant_id, client_id=client_id), []


def _settings_for_azure_cli(
    values: Mapping[str, str], environ: Mapping[str, str], connection: ServiceConnection | None
) -> _Built:
    tenant_id = values.get("tenantId")
    if tenant_id:
        _check_tenant_id(tenant_id, "tenantId")
    return _CredentialSettings(tenant_id=tenant_id), []


def _settings_for_default(
    values: Mapping[str, str], environ: Mapping[str, str], connection: ServiceConnection | None
) -> _Built:
    # Secrets that DefaultAzureCredential reads itself from AZURE_* variables are masked too.
    secrets = [
        values[name] for name in ("clientSecret", "clientCertificatePassword") if name in values
    ]
    settings = _CredentialSettings(
        tenant_id=values.get("tenantId"), client_id=values.get("clientId")
    )
    return settings, secrets


_METHOD_BUILDERS: dict[
    str,
    Callable[[Mapping[str, str], Mapping[str, str], ServiceConnection | None], _Built],
] = {
    "secret": _settings_for_secret,
    "certificate": _settings_for_certificate,
    "github-oidc": _settings_for_github_oidc,
    "azure-devops-oidc": _settings_for_azure_devops_oidc,
    "managed-identity": _settings_for_managed_identity,
    "azure-cli": _settings_for_azure_cli,
    "default": _settings_for_default,
}


def _require_principal(
    values: Mapping[str, str], connection: ServiceConnection | None, method: str
) -> tuple[str, str]:
    """Return the tenant and client id from the inputs, else from the service connection."""
    tenant_id = values.get("tenantId") or (connection.tenant_id if connection else None)
    client_id = values.get("clientId") or (connection.client_id if connection else None)
    for name, value, variable in (
        ("tenantId", tenant_id, "AZURE_TENANT_ID"),
        ("clientId", client_id, "AZURE_CLIENT_ID"),
    ):
        if not value:
            raise InputError(
                name,
                f"missing, but the sign-in method {method} needs it",
                f"Set {name} (or {variable}) to the service principal's "
                f"{'directory (tenant)' if name == 'tenantId' else 'application (client)'} id",
            )
    assert tenant_id is not None and client_id is not None
    _check_tenant_id(tenant_id, "tenantId")
    return tenant_id, client_id


def _check_tenant_id(tenant_id: str, input_name: str) -> None:
    if not _TENANT_ID_PATTERN.fullmatch(tenant_id):
        raise InputError(
            input_name,
            f"invalid tenant id {tenant_id!r}",
            "Use the directory (tenant) id, a GUID, or a domain such as contoso.onmicrosoft.com",
        )


# ----------------------------------------------------------------------------------------
# Certificates


def _is_pem_text(value: str) -> bool:
    return "-----BEGIN" in value


def _read_certificate(value: str, input_name: str) -> bytes:
    """Return the certificate bytes from PEM text or from the file the value names.

    The value is a secret input, so messages never repeat it.
    """
    if _is_pem_text(value):
        return value.encode("utf-8")
    try:
        return Path(value).expanduser().read_bytes()
    except OSError as exc:
        raise InputError(
            input_name,
            f"cannot read the certificate file it names ({exc.strerror or type(exc).__name__})",
            "Give the path of a readable PEM or PKCS12 file that contains the certificate and "
            "its private key, or the PEM text itself",
        ) from None


def _check_certificate(data: bytes, password: str | None, input_name: str) -> None:
    """Raise InputError unless ``data`` contains a certificate and its RSA private key."""
    password_bytes = password.encode("utf-8") if password else None
    if b"-----BEGIN" in data:
        key = _load_pem_key(data, password_bytes, input_name)
        try:
            x509.load_pem_x509_certificate(data)
        except ValueError:
            raise InputError(
                input_name,
                "the PEM contains a private key but no certificate",
                "Append the certificate (-----BEGIN CERTIFICATE-----) to the PEM",
            ) from None
    else:
        key = _load_pkcs12_key(data, password_bytes, input_name)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise InputError(
            input_name,
            "the private key is not an RSA key",
            "Use a certificate with an RSA key: azure-identity signs client assertions with RS256",
        )


def _load_pem_key(data: bytes, password: bytes | None, input_name: str) -> object:
    if b"PRIVATE KEY-----" not in data:
        raise InputError(
            input_name,
            "the PEM contains no private key",
            "Use a PEM that contains both the certificate and its private key",
        )
    try:
        return serialization.load_pem_private_key(data, password)
    except TypeError:
        if password:
            raise InputError(
                "clientCertificatePassword",
                "is set, but the private key is not encrypted",
                "Remove clientCertificatePassword",
            ) from None
        raise InputError(
            "clientCertificatePassword",
            "missing, but the private key is encrypted",
            "Set clientCertificatePassword (or AZURE_CLIENT_CERTIFICATE_PASSWORD)",
        ) from None
    except ValueError:
        raise InputError(
            "clientCertificatePassword" if password else input_name,
            "cannot decrypt or parse the private key",
            "Check the password and that the key is an unmodified PEM private key",
        ) from None


def _load_pkcs12_key(data: bytes, password: bytes | None, input_name: str) -> object:
    try:
        key, certificate, _ = pkcs12.load_key_and_certificates(data, password)
    except ValueError:
        raise InputError(
            input_name,
            "is neither PEM nor a PKCS12 file that opens with the given password",
            "Give a PEM or PKCS12 certificate with its private key, and set "
            "clientCertificatePassword if the file has one",
        ) from None
    if key is None or certificate is None:
        raise InputError(
            input_name,
            "the PKCS12 file lacks the private key or the certificate",
            "Export the certificate together with its private key",
        )
    return key


# ----------------------------------------------------------------------------------------
# Credentials


def _build_credential(
    plan: SignInPlan, on_secret: Callable[[str], None] | None
) -> tuple[TokenCredential, requests.Session | None]:
    settings = plan._settings
    authority = {"authority": plan.cloud.authority_host}
    msal_options: dict[str, Any] = dict(authority)
    if plan.cloud.disable_instance_discovery:
        msal_options["disable_instance_discovery"] = True

    if plan.method == "secret":
        assert settings.tenant_id is not None
        assert settings.client_id is not None
        assert settings.client_secret is not None
        credential: TokenCredential = ClientSecretCredential(
            settings.tenant_id, settings.client_id, settings.client_secret, **msal_options
        )
        return credential, None
    if plan.method == "certificate":
        assert settings.tenant_id is not None
        assert settings.client_id is not None
        credential = CertificateCredential(
            settings.tenant_id,
            settings.client_id,
            certificate_data=settings.certificate_data,
            password=settings.certificate_password or None,
            **msal_options,
        )
        return credential, None
    if plan.method in ("github-oidc", "azure-devops-oidc"):
        assert settings.tenant_id is not None
        assert settings.client_id is not None
        assert settings.oidc_request is not None
        session = requests.Session()
        fetcher = OidcTokenFetcher(settings.oidc_request, session=session, on_secret=on_secret)
        credential = ClientAssertionCredential(
            settings.tenant_id, settings.client_id, fetcher, **authority
        )
        return credential, session
    if plan.method == "managed-identity":
        if settings.client_id:
            return ManagedIdentityCredential(client_id=settings.client_id), None
        return ManagedIdentityCredential(), None
    if plan.method == "azure-cli":
        if settings.tenant_id:
            return AzureCliCredential(tenant_id=settings.tenant_id), None
        return AzureCliCredential(), None
    options: dict[str, Any] = dict(authority)
    if settings.client_id:
        options["managed_identity_client_id"] = settings.client_id
    return DefaultAzureCredential(**options), None


class OidcTokenFetcher:
    """Callback for ClientAssertionCredential that requests a new ID token on every call.

    Connection errors and HTTP 408, 429 and 5xx are retried up to OIDC_REQUEST_ATTEMPTS
    times in all. Any other failure raises ClientAuthenticationError without the bearer
    token or the response's tokens.
    """

    def __init__(
        self,
        request: OidcTokenRequest,
        *,
        session: requests.Session,
        on_secret: Callable[[str], None] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._request = request
        self._session = session
        self._on_secret = on_secret
        self._sleep = sleep
        self._claims_logged = False

    def __call__(self) -> str:
        provider = self._request.provider
        last_error = ""
        for attempt in range(1, OIDC_REQUEST_ATTEMPTS + 1):
            try:
                response = self._send()
            except requests.RequestException as exc:
                last_error = f"{type(exc).__name__}: {_scrub(str(exc), [])}"
            else:
                if response.status_code == 200:
                    return self._accept(response)
                last_error = f"HTTP {response.status_code}: {_short_body(response)}"
                if response.status_code not in _RETRYABLE_STATUS:
                    raise ClientAuthenticationError(
                        message=f"{provider} OIDC token request failed with {last_error}. "
                        f"{self._request.denied_hint}"
                    )
            if attempt < OIDC_REQUEST_ATTEMPTS:
                delay = OIDC_RETRY_DELAY_SECONDS * attempt
                LOGGER.warning(
                    "%s OIDC token request failed (attempt %d of %d, %s); retrying in %.0f s",
                    provider,
                    attempt,
                    OIDC_REQUEST_ATTEMPTS,
                    last_error,
                    delay,
                )
                self._sleep(delay)
        raise ClientAuthenticationError(
            message=f"{provider} OIDC token request failed after {OIDC_REQUEST_ATTEMPTS} "
            f"attempts; last error {last_error}"
        )

    def _send(self) -> requests.Response:
        headers = {
            "Authorization": f"Bearer {self._request.bearer_token}",
            "Accept": "application/json",
        }
        if self._request.http_method == "POST":
            headers["Content-Type"] = "application/json"
            # Makes Azure DevOps respond with 401 instead of redirecting to a sign-in page.
            headers["X-TFS-FedAuthRedirect"] = "Suppress"
        return self._session.request(
            self._request.http_method,
            self._request.url,
            headers=headers,
            timeout=OIDC_REQUEST_TIMEOUT_SECONDS,
            allow_redirects=False,
        )

    def _accept(self, response: requests.Response) -> str:
        field_name = self._request.response_field
        try:
            token = response.json().get(field_name)
        except (ValueError, AttributeError):
            token = None
        if not isinstance(token, str) or not token:
            raise ClientAuthenticationError(
                message=f"{self._request.provider} OIDC token response has no "
                f"{field_name!r} string"
            )
        if self._on_secret is not None:
            self._on_secret(token)
        if not self._claims_logged:
            self._claims_logged = True
            self._log_claims(token)
        return token

    def _log_claims(self, token: str) -> None:
        # The issuer, subject and audience are what a federated credential must match, so
        # they explain AADSTS70021 failures. They are not secrets.
        try:
            claims = _decode_jwt_claims(token)
        except (ValueError, IndexError):
            LOGGER.warning("the %s ID token is not a JWT", self._request.provider)
            return
        LOGGER.info(
            "%s ID token: issuer %s, subject %s, audience %s",
            self._request.provider,
            claims.get("iss"),
            claims.get("sub"),
            claims.get("aud"),
        )


class _SignInCredential:
    """TokenCredential that delegates to azure-identity and explains its failures.

    A ClientAuthenticationError from the inner credential becomes a SignInError whose
    message names the method, Azure AD's code and message, and for auto the sources that
    were not configured. Secrets and JWTs are removed from the message.
    """

    def __init__(
        self,
        inner: Any,
        *,
        method: str,
        skipped: Sequence[str],
        secrets: Sequence[str],
        session: requests.Session | None,
    ) -> None:
        self._inner = inner
        self._method = method
        self._skipped = tuple(skipped)
        self._secrets = list(secrets)
        self._session = session

    def get_token(
        self,
        *scopes: str,
        claims: str | None = None,
        tenant_id: str | None = None,
        enable_cae: bool = False,
        **kwargs: Any,
    ) -> AccessToken:
        try:
            return self._inner.get_token(
                *scopes, claims=claims, tenant_id=tenant_id, enable_cae=enable_cae, **kwargs
            )
        except ClientAuthenticationError as exc:
            raise self._explain(exc) from exc

    def get_token_info(self, *scopes: str, options: Any = None) -> AccessTokenInfo:
        try:
            if hasattr(self._inner, "get_token_info"):
                return self._inner.get_token_info(*scopes, options=options)
            token = self._inner.get_token(*scopes)
            return AccessTokenInfo(token.token, token.expires_on)
        except ClientAuthenticationError as exc:
            raise self._explain(exc) from exc

    def _explain(self, exc: ClientAuthenticationError) -> SignInError:
        if isinstance(exc, SignInError):
            return exc
        detail = describe_auth_error(exc, secrets=self._secrets)
        message = f"Azure sign-in with {self._method} failed: {detail}"
        if self._skipped:
            message = f"{message}. auto checked these first: {'; '.join(self._skipped)}"
        return SignInError(message, method=self._method, aadsts_code=_aadsts_code(exc))

    def close(self) -> None:
        close = getattr(self._inner, "close", None)
        if close is not None:
            close()
        if self._session is not None:
            self._session.close()

    def __enter__(self) -> _SignInCredential:
        return self

    def __exit__(self, *args: object) -> None:
        self.close()


# ----------------------------------------------------------------------------------------
# Errors


def describe_auth_error(exc: BaseException, secrets: Sequence[str] = ()) -> str:
    """Return a one-line description of a sign-in failure, with Azure AD's code and message.

    Trace and correlation ids are kept because Microsoft support requests them. Every value
    in ``secrets`` and every JWT-shaped string is replaced by ``***``.
    """
    if isinstance(exc, SignInError):
        return _scrub(exc.message, secrets)
    text = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    text = _scrub(" ".join(str(text).split()), secrets)
    match = _AADSTS_PATTERN.search(text)
    if match is None:
        return text
    description = text[match.start() :].rstrip("'\" ")
    hint = _AADSTS_HINTS.get(match.group(1))
    if hint:
        description = f"{description.rstrip('.')}. {hint}"
    return f"Azure AD returned {description}"


def _aadsts_code(exc: BaseException) -> str | None:
    match = _AADSTS_PATTERN.search(getattr(exc, "message", None) or str(exc))
    return f"AADSTS{match.group(1)}" if match else None


def _scrub(text: str, secrets: Sequence[str]) -> str:
    for secret in sorted((s for s in secrets if s), key=len, reverse=True):
        text = text.replace(secret, "***")
        for line in secret.splitlines():
            if len(line.strip()) >= 8:
                text = text.replace(line.strip(), "***")
    return _JWT_PATTERN.sub("***", text)


def _short_body(response: requests.Response, limit: int = 300) -> str:
    body = _scrub(" ".join(response.text.split()), [])
    if not body:
        return "(empty body)"
    if len(body) > limit:
        return body[:limit] + "..."
    return body


# ----------------------------------------------------------------------------------------
# Small helpers


def _choices(values: Sequence[str]) -> str:
    return ", ".join(values[:-1]) + f" or {values[-1]}"


def _non_empty(value: Any) -> str | None:
    if isinstance(value, str) and value.strip():
        return value.strip()
    return None


def _first_value(environ: Mapping[str, str], names: Sequence[str]) -> str | None:
    for name in names:
        value = environ.get(name, "").strip()
        if value:
            return value
    return None


def _unique(values: Sequence[str]) -> list[str]:
    seen: dict[str, None] = {}
    for value in values:
        if value:
            seen.setdefault(value, None)
    return list(seen)


def _decode_jwt_claims(token: str) -> dict[str, Any]:
    """Return the claims of a JWT without checking its signature, for log lines only."""
    payload = token.split(".")[1]
    padded = payload + "=" * (-len(payload) % 4)
    claims = json.loads(base64.urlsafe_b64decode(padded))
    return claims if isinstance(claims, dict) else {}
