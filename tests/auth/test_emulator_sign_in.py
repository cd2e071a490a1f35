"""Sign-in plans against the emulator's authority: a real token endpoint on loopback HTTPS."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from flink_task.auth import SignInError, plan_sign_in
from flink_task.emulator import Emulator
from tests.emulator.conftest import offline_cluster


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    running = Emulator(tmp_path_factory.mktemp("auth-emulator"), clusters=[offline_cluster()])
    running.start()
    try:
        yield running
    finally:
        running.stop()


def emulator_inputs(emulator: Emulator, secret: str) -> dict[str, str]:
    return {
        "tenantId": emulator.tenant_id,
        "clientId": emulator.client_id,
        "clientSecret": secret,
        "cloud": "custom",
        "managementEndpoint": emulator.base_url,
        "authorityHost": emulator.base_url,
    }


def test_secret_plan_signs_in_to_emulator(
    emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(emulator.ca_file))
    plan = plan_sign_in(emulator_inputs(emulator, emulator.client_secret), {})

    with plan.create_credential() as credential:
        token = credential.get_token(plan.scope)

    assert plan.cloud.disable_instance_discovery is True
    assert plan.scope == f"{emulator.base_url}/.default"
    assert token.token


def test_wrong_secret_reported_by_emulator(
    emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(emulator.ca_file))
    wrong = "not-the-emulator-secret-41"
    plan = plan_sign_in(emulator_inputs(emulator, wrong), {})

    with pytest.raises(SignInError) as caught, plan.create_credential() as credential:
        credential.get_token(plan.scope)

    assert caught.value.aadsts_code == "AADSTS7000215"
    assert (
        "Azure AD returned AADSTS7000215: Invalid client secret provided" in caught.value.message
    )
    assert wrong not in caught.value.message
    assert caught.value.exit_code == 1
