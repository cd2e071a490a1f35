"""Validation of the Flink target's inputs: every error exits 2 before any network call."""

from __future__ import annotations

from typing import Any

import pytest
import responses

from flink_task.errors import InputError
from flink_task.request import build_flink_run_request, choose_target

BASE = {"flinkUrl": "https://flink.example.com:8081", "stateDirectory": "/var/flink-task"}


def test_target_defaults_to_flink_with_url() -> None:
    assert choose_target({"flinkUrl": "http://127.0.0.1:8081"}) == "flink"


def test_target_defaults_to_hdinsight_with_cluster() -> None:
    assert choose_target({"subscriptionId": "s", "cluster": "c1"}) == "hdinsight"


def test_target_missing_names_both_choices() -> None:
    with pytest.raises(InputError) as raised:
        choose_target({"action": "STOP", "jobName": "orders"})
    message = str(raised.value)
    assert "flinkUrl" in message
    assert "stateDirectory" in message
    assert "subscriptionId" in message
    assert "cluster" in message


def test_unknown_target_rejected() -> None:
    with pytest.raises(InputError, match="unknown target 'spark'"):
        choose_target({"target": "spark"})


def test_hdinsight_inputs_rejected_for_flink() -> None:
    with pytest.raises(InputError) as raised:
        choose_target({**BASE, "cluster": "c1", "apiVersion": "2024-05-01"})
    assert raised.value.input_name == "cluster, apiVersion"
    assert "target flink cannot use cluster, apiVersion" in str(raised.value)


def test_flink_inputs_rejected_for_hdinsight() -> None:
    with pytest.raises(InputError) as raised:
        choose_target({"target": "hdinsight", "cluster": "c1", "stateDirectory": "/s"})
    assert raised.value.input_name == "stateDirectory"


def test_explicit_target_flink_needs_url() -> None:
    raw = {"target": "flink", "action": "STOP", "jobName": "orders", "stateDirectory": "/s"}
    assert choose_target(raw) == "flink"
    with pytest.raises(InputError) as raised:
        build_flink_run_request(raw)
    assert raised.value.input_name == "flinkUrl"


@pytest.mark.parametrize(
    ("inputs", "input_name", "text"),
    [
        ({"stateDirectory": None}, "stateDirectory", "missing"),
        ({"flinkUrl": "ftp://flink:8081"}, "flinkUrl", "invalid URL"),
        ({"flinkUrl": "https://user:pw@flink:8081"}, "flinkUrl", "must not contain a user"),
        ({"stateDirectory": "s3://bucket/records"}, "stateDirectory", "unsupported location"),
        ({"stateDirectory": "abfs://c@account.blob.core.windows.net/x"}, "stateDirectory", "ADLS"),
        ({"stateDirectory": "https://example.com/x"}, "stateDirectory", "unsupported"),
        ({"flinkToken": "t", "flinkUsername": "u", "flinkPassword": "p"}, "flinkToken", "both"),
        ({"flinkUsername": "u"}, "flinkPassword", "missing"),
        ({"flinkPassword": "p"}, "flinkUsername", "missing"),
        ({"flinkClientKey": "k"}, "flinkClientCertificate", "missing"),
        (
            {"flinkUrl": "http://flink.example.com:8081", "flinkCaBundle": "/ca.pem"},
            "flinkCaBundle",
            "http://",
        ),
        (
            {"flinkUrl": "http://flink.example.com:8081", "flinkToken": "t"},
            "flinkUrl",
            "clear text",
        ),
        ({"wait": "false"}, "wait", "always waits"),
        ({"jobJarDirectory": "http://example.com/jars"}, "jobJarDirectory", "unsupported"),
    ],
)
def test_invalid_flink_inputs(inputs: dict[str, Any], input_name: str, text: str) -> None:
    raw = {**BASE, "action": "NEW", "jobName": "orders", "jarName": "a.jar", "entryClass": "a.B"}
    raw["jobJarDirectory"] = "/jars"
    raw.update(inputs)
    raw = {name: value for name, value in raw.items() if value is not None}
    with pytest.raises(InputError) as raised:
        build_flink_run_request(raw)
    assert raised.value.input_name == input_name
    assert text in str(raised.value)


def test_token_allowed_over_loopback_http() -> None:
    raw = {"flinkUrl": "http://127.0.0.1:8081", "stateDirectory": "/s", "flinkToken": "t"}
    request = build_flink_run_request({**raw, "action": "STOP", "jobName": "orders"})
    assert request.target.token == "t"


@pytest.mark.parametrize(
    "location",
    ["/jars", "file:///jars", "abfs://jars@acct.dfs.core.windows.net/x", "https://h/jars"],
)
def test_jar_locations_accepted(location: str) -> None:
    raw = {**BASE, "action": "NEW", "jobName": "orders", "jarName": "a.jar", "entryClass": "a.B"}
    request = build_flink_run_request({**raw, "jobJarDirectory": location})
    assert request.properties is not None
    assert request.properties["jobJarDirectory"] == location
    assert request.properties["flinkConfiguration"] == {"parallelism": "2"}
    assert request.run_id


def test_sas_query_of_jar_folder_masked() -> None:
    raw = {**BASE, "action": "NEW", "jobName": "orders", "jarName": "a.jar", "entryClass": "a.B"}
    request = build_flink_run_request({**raw, "jobJarDirectory": "https://h/jars?sig=abc%3D"})
    assert "sig=abc%3D" in request.secret_values


def test_action_input_rules_apply() -> None:
    with pytest.raises(InputError) as raised:
        build_flink_run_request({**BASE, "action": "STOP", "jobName": "orders", "entryClass": "A"})
    assert raised.value.input_name == "entryClass"


def run_task(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> int:
    from flink_task.cli import main

    for name in list(__import__("os").environ):
        if name.startswith("INPUT_"):
            monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with responses.RequestsMock(assert_all_requests_are_fired=True):
        return main([])


def test_cli_input_error_exits_2_before_network(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code = run_task(
        monkeypatch,
        {
            "INPUT_ACTION": "STOP",
            "INPUT_JOBNAME": "orders",
            "INPUT_FLINKURL": "https://flink.example.com",
            "INPUT_STATEDIRECTORY": "/s",
            "INPUT_CLUSTERPOOL": "pool1",
        },
    )
    _, err = capsys.readouterr()
    assert code == 2
    assert "target flink cannot use clusterPool" in err


def test_cli_dry_run_sends_nothing(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code = run_task(
        monkeypatch,
        {
            "INPUT_ACTION": "NEW",
            "INPUT_JOBNAME": "orders",
            "INPUT_FLINKURL": "https://flink.example.com",
            "INPUT_STATEDIRECTORY": "/s",
            "INPUT_JOBJARDIRECTORY": "/jars",
            "INPUT_JARNAME": "a.jar",
            "INPUT_ENTRYCLASS": "a.B",
            "INPUT_FLINKCONFIGURATION": "s3.secret-key=hidden-value",
            "INPUT_DRYRUN": "true",
        },
    )
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "hidden-value" not in out + err
    assert '"target": "flink"' in out
