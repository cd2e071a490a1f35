"""github-oidc: a fresh GitHub ID token for every access token, through the real credential."""

from __future__ import annotations

import json
from collections.abc import Callable
from urllib.parse import parse_qsl

import pytest
import responses
from requests import PreparedRequest

from flink_task import auth
from flink_task.auth import SignInError, plan_sign_in
from flink_task.emulator.oidc_issuer import OidcIssuer
from tests.auth.conftest import (
    CLIENT_ID,
    TENANT_ID,
    Clock,
    add_token_error,
    form_of,
    token_endpoint,
)

REQUEST_URL = "https://pipelines.actions.example/abc/idtoken?api-version=2.0"
REQUEST_TOKEN = "github-request-token-91c2"
GITHUB_ENVIRONMENT = {
    "ACTIONS_ID_TOKEN_REQUEST_URL": REQUEST_URL,
    "ACTIONS_ID_TOKEN_REQUEST_TOKEN": REQUEST_TOKEN,
}
GITHUB_TOKEN_URL = "https://pipelines.actions.example/abc/idtoken"
Events = list[tuple[str, str]]


@pytest.fixture
def github_issuer() -> OidcIssuer:
    return OidcIssuer(issuer="https://token.actions.githubusercontent.com")


def add_github_token_service(
    mock: responses.RequestsMock,
    issuer: OidcIssuer,
    events: Events,
    audience: str = "api://AzureADTokenExchange",
) -> None:
    def issue(request: PreparedRequest) -> tuple[int, dict[str, str], str]:
        token = issuer.issue(audience)
        events.append(("issued", token))
        return 200, {}, json.dumps({"count": 1, "value": token})

    mock.add_callback(
        responses.GET,
        GITHUB_TOKEN_URL,
        callback=issue,
        content_type="application/json",
        match=[
            responses.matchers.query_param_matcher({"api-version": "2.0", "audience": audience}),
            responses.matchers.header_matcher({"Authorization": f"Bearer {REQUEST_TOKEN}"}),
        ],
    )


def add_assertion_token_endpoint(mock: responses.RequestsMock, events: Events) -> None:
    def grant(request: PreparedRequest) -> tuple[int, dict[str, str], str]:
        body = request.body.decode() if isinstance(request.body, bytes) else str(request.body)
        form = dict(parse_qsl(body))
        events.append(("assertion", form["client_assertion"]))
        access_token = f"access-token-{len(events)}"
        return (
            200,
            {},
            json.dumps({"token_type": "Bearer", "expires_in": 3600, "access_token": access_token}),
        )

    mock.add_callback(
        responses.POST, token_endpoint(), callback=grant, content_type="application/json"
    )


def recorder(events: Events) -> Callable[[str], None]:
    return lambda secret: events.append(("masked", secret))


def plan_github(**inputs: str) -> auth.SignInPlan:
    return plan_sign_in(
        {"tenantId": TENANT_ID, "clientId": CLIENT_ID, **inputs}, GITHUB_ENVIRONMENT
    )


def test_github_token_masked_then_used(
    http_mock: responses.RequestsMock, github_issuer: OidcIssuer
) -> None:
    events: Events = []
    add_github_token_service(http_mock, github_issuer, events)
    add_assertion_token_endpoint(http_mock, events)
    plan = plan_github()

    plan.create_credential(on_secret=recorder(events)).get_token(plan.scope)

    token = events[0][1]
    assert events == [("issued", token), ("masked", token), ("assertion", token)]
    form = form_of(http_mock.calls[1])
    assert (
        form["client_assertion_type"] == "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
    )
    assert form["client_id"] == CLIENT_ID
    assert form["scope"] == "https://management.azure.com/.default"
    assert plan.method == "github-oidc"
    assert plan.secrets == [REQUEST_TOKEN]


def test_fresh_github_token_after_expiry(
    http_mock: responses.RequestsMock, github_issuer: OidcIssuer, clock: Clock
) -> None:
    events: Events = []
    add_github_token_service(http_mock, github_issuer, events)
    add_assertion_token_endpoint(http_mock, events)
    plan = plan_github()
    credential = plan.create_credential(on_secret=recorder(events))

    first = credential.get_token(plan.scope)
    credential.get_token(plan.scope)  # cached: no new ID token
    clock.advance(3700)  # far beyond GitHub's 5-minute token and the access token
    second = credential.get_token(plan.scope)

    issued = [token for kind, token in events if kind == "issued"]
    assert len(issued) == 2
    assert issued[0] != issued[1]
    assert events == [
        ("issued", issued[0]),
        ("masked", issued[0]),
        ("assertion", issued[0]),
        ("issued", issued[1]),
        ("masked", issued[1]),
        ("assertion", issued[1]),
    ]
    assert first.token != second.token


def test_github_audience_input_is_encoded(
    http_mock: responses.RequestsMock, github_issuer: OidcIssuer
) -> None:
    events: Events = []
    add_github_token_service(http_mock, github_issuer, events, audience="api://contoso exchange")
    add_assertion_token_endpoint(http_mock, events)
    plan = plan_github(audience="api://contoso exchange")

    plan.create_credential().get_token(plan.scope)

    assert "audience=api%3A%2F%2Fcontoso%20exchange" in str(http_mock.calls[0].request.url)


def test_github_token_request_denied(http_mock: responses.RequestsMock) -> None:
    http_mock.add(
        responses.GET,
        GITHUB_TOKEN_URL,
        status=403,
        json={"message": "Unable to get ACTIONS_ID_TOKEN_REQUEST_URL env variable"},
    )
    plan = plan_github()

    with pytest.raises(SignInError) as caught:
        plan.create_credential().get_token(plan.scope)

    message = caught.value.message
    assert "GitHub OIDC token request failed with HTTP 403" in message
    assert "permissions: id-token: write" in message
    assert REQUEST_TOKEN not in message


def test_github_token_request_retried(
    http_mock: responses.RequestsMock,
    github_issuer: OidcIssuer,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(auth, "OIDC_RETRY_DELAY_SECONDS", 0.0)
    events: Events = []
    http_mock.add(responses.GET, GITHUB_TOKEN_URL, status=503, body="busy")
    add_github_token_service(http_mock, github_issuer, events)
    add_assertion_token_endpoint(http_mock, events)
    plan = plan_github()

    plan.create_credential().get_token(plan.scope)

    assert [kind for kind, _ in events] == ["issued", "assertion"]
    assert "attempt 1 of 3, HTTP 503: busy" in caplog.text


def test_github_token_request_gives_up(
    http_mock: responses.RequestsMock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(auth, "OIDC_RETRY_DELAY_SECONDS", 0.0)
    for _ in range(auth.OIDC_REQUEST_ATTEMPTS):
        http_mock.add(responses.GET, GITHUB_TOKEN_URL, status=502, body="bad gateway")
    plan = plan_github()

    with pytest.raises(SignInError) as caught:
        plan.create_credential().get_token(plan.scope)

    assert "failed after 3 attempts; last error HTTP 502: bad gateway" in caught.value.message


def test_github_response_without_value(http_mock: responses.RequestsMock) -> None:
    http_mock.add(responses.GET, GITHUB_TOKEN_URL, json={"count": 0})
    plan = plan_github()

    with pytest.raises(SignInError) as caught:
        plan.create_credential().get_token(plan.scope)

    assert "GitHub OIDC token response has no 'value' string" in caught.value.message


def test_expired_assertion_rejected_by_azure_ad(
    http_mock: responses.RequestsMock, github_issuer: OidcIssuer
) -> None:
    events: Events = []
    add_github_token_service(http_mock, github_issuer, events)
    stale = github_issuer.issue("api://AzureADTokenExchange")
    add_token_error(
        http_mock,
        error="invalid_client",
        code=700024,
        description=f"Client assertion is not within its valid time range. Assertion {stale}",
    )
    plan = plan_github()

    with pytest.raises(SignInError) as caught:
        plan.create_credential().get_token(plan.scope)

    message = caught.value.message
    assert caught.value.aadsts_code == "AADSTS700024"
    assert (
        "Azure AD returned AADSTS700024: Client assertion is not within its valid time range"
        in message
    )
    assert stale not in message
    assert events[0][1] not in message
    assert "github-oidc or azure-devops-oidc" in message


def test_claims_logged_once(
    http_mock: responses.RequestsMock,
    github_issuer: OidcIssuer,
    clock: Clock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level("INFO", logger="flink_task.auth")
    events: Events = []
    add_github_token_service(http_mock, github_issuer, events)
    add_assertion_token_endpoint(http_mock, events)
    plan = plan_github()
    credential = plan.create_credential()

    credential.get_token(plan.scope)
    clock.advance(3700)
    credential.get_token(plan.scope)

    expected = (
        "GitHub ID token: issuer https://token.actions.githubusercontent.com, "
        "subject repo:contoso/flink-jobs:ref:refs/heads/main, audience api://AzureADTokenExchange"
    )
    assert caplog.text.count(expected) == 1
    for _, token in events:
        assert token not in caplog.text
