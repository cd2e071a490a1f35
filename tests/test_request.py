"""Building and validating runJob bodies from task inputs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flink_task import schemas
from flink_task.errors import InputError
from flink_task.inputs import ACTIONS_ALL
from flink_task.request import build_run_request, parse_flink_configuration

CLUSTER = {
    "subscriptionId": "00000000-0000-0000-0000-000000000000",
    "resourceGroup": "rg",
    "clusterPool": "pool",
    "cluster": "c1",
}
JAR = {
    "jobJarDirectory": "abfs://jars@account.dfs.core.windows.net/jars",
    "jarName": "job.jar",
    "entryClass": "com.example.Job",
}
SAMPLES = Path(__file__).resolve().parents[1] / "samples" / "requests"


def build(**inputs: str):
    return build_run_request({**CLUSTER, "jobName": "orders", **inputs})


VALID = [
    ("NEW", JAR),
    ("NEW", {**JAR, "args": "--rate 5 --label 'two words'", "parallelism": "4"}),
    ("NEW", {**JAR, "flinkConfiguration": '{"taskmanager.numberOfTaskSlots": 2}'}),
    ("NEW", {**JAR, "flinkConfiguration": "a=b\n# comment\n\nstate.backend.type = rocksdb"}),
    ("NEW", {**JAR, "savepointDirectory": "abfs://sp@account.dfs.core.windows.net/sp"}),
    ("NEW", {**JAR, "entryClass": "com.exämple.Jöb$Inner", "parallelism": "32768"}),
    ("UPDATE", {}),
    ("UPDATE", {**JAR, "savepointName": "savepoint-1", "allowNonRestoredState": "true"}),
    ("STATELESS_UPDATE", {"jarName": "v2.jar", "args": "--x"}),
    ("LAST_STATE_UPDATE", {"jarName": "v2.jar"}),
    ("START", {}),
    ("START", {"savepointName": "savepoint-1", "allowNonRestoredState": "true"}),
    ("STOP", {}),
    ("STOP", {"drain": "true", "savepointDirectory": "file:///sp"}),
    ("STOP", {"drain": "false"}),
    ("SAVEPOINT", {}),
    ("SAVEPOINT", {"savepointDirectory": "file:///sp"}),
    ("LIST_SAVEPOINT", {}),
    ("CANCEL", {}),
    ("DELETE", {}),
    ("RE_LAUNCH", {}),
    ("STOP", {"runId": "my-run-1"}),
]

INVALID = [
    # (inputs, input named in the error, words in the message)
    ({"action": "RESTART"}, "action", "unknown action"),
    ({"action": "STOP", "jobName": "Orders"}, "jobName", "'orders'"),
    ({"action": "STOP", "jobName": "-orders"}, "jobName", "invalid job name"),
    ({"action": "STOP", "jobName": "a" * 64}, "jobName", "at most 63"),
    ({"action": "STOP", "jobName": "or_ders"}, "jobName", "invalid job name"),
    ({"action": "NEW", **JAR, "parallelism": "0"}, "parallelism", "'0'"),
    ({"action": "NEW", **JAR, "parallelism": "two"}, "parallelism", "'two'"),
    ({"action": "NEW", **JAR, "parallelism": "-1"}, "parallelism", "'-1'"),
    ({"action": "NEW", **JAR, "parallelism": "32769"}, "parallelism", "at most 32768"),
    ({"action": "NEW", **JAR, "entryClass": "com.1bad.Job"}, "entryClass", "'com.1bad.Job'"),
    ({"action": "NEW", "jarName": "a.jar", "entryClass": "a.B"}, "jobJarDirectory", "missing"),
    ({"action": "NEW", **JAR, "jarName": "job.zip"}, "jarName", "'job.zip'"),
    ({"action": "NEW", **JAR, "jarName": "../job.jar"}, "jarName", "'../job.jar'"),
    ({"action": "NEW", **JAR, "entryClass": "not a class"}, "entryClass", "'not a class'"),
    ({"action": "NEW", **JAR, "flinkConfiguration": "[1, 2]"}, "flinkConfiguration", "array"),
    ({"action": "NEW", **JAR, "flinkConfiguration": "{bad json"}, "flinkConfiguration", "JSON"),
    (
        {"action": "NEW", **JAR, "flinkConfiguration": "no equals sign"},
        "flinkConfiguration",
        "key=value",
    ),
    (
        {"action": "NEW", **JAR, "flinkConfiguration": '{"a": {"b": 1}}'},
        "flinkConfiguration",
        "'a'",
    ),
    (
        {"action": "NEW", **JAR, "parallelism": "3", "flinkConfiguration": "parallelism=4"},
        "parallelism",
        "conflicts",
    ),
    ({"action": "NEW", **JAR, "args": "--label 'unclosed"}, "args", "quote"),
    ({"action": "STOP", "entryClass": "a.B"}, "entryClass", "STOP cannot use entryClass"),
    ({"action": "STOP", "jarName": "a.jar"}, "jarName", "STOP cannot use"),
    ({"action": "STOP", "parallelism": "2"}, "parallelism", "STOP cannot use"),
    ({"action": "START", "drain": "true"}, "drain", "START cannot use"),
    ({"action": "CANCEL", "savepointName": "x"}, "savepointName", "CANCEL cannot use"),
    ({"action": "NEW", **JAR, "allowNonRestoredState": "true"}, "allowNonRestoredState", "NEW"),
    ({"action": "STOP", "drain": "maybe"}, "drain", "invalid boolean"),
    ({"action": "STOP", "wait": "sometimes"}, "wait", "invalid boolean"),
    ({"action": "STOP", "timeoutMinutes": "0"}, "timeoutMinutes", "'0'"),
    ({"action": "STOP", "apiVersion": "2022-01-01"}, "apiVersion", "unknown API version"),
    (
        {"action": "RE_LAUNCH", "apiVersion": "2023-06-01-preview"},
        "action",
        "not available in API version 2023-06-01-preview",
    ),
    (
        {"action": "STOP", "runId": "x", "apiVersion": "2024-04-01-preview"},
        "runId",
        "has no runId",
    ),
    ({"action": "STOP", "managementEndpoint": "http://x"}, "managementEndpoint", "https"),
    ({"action": "STOP", "cluster": "a/b"}, "cluster", "'a/b'"),
]


@pytest.mark.parametrize(("action", "inputs"), VALID)
def test_valid_inputs_build_valid_body(action: str, inputs: dict[str, str]) -> None:
    request = build(action=action, **inputs)
    assert request.body is not None
    properties = request.body["properties"]
    assert properties["jobType"] == "FlinkJob"
    assert properties["action"] == action
    schemas.validate_body(request.body)
    for value in properties.get("flinkConfiguration", {}).values():
        assert isinstance(value, str)


@pytest.mark.parametrize(("inputs", "input_name", "words"), INVALID)
def test_invalid_inputs_name_input_and_value(
    inputs: dict[str, str], input_name: str, words: str
) -> None:
    with pytest.raises(InputError) as caught:
        build(**inputs)
    assert caught.value.input_name == input_name
    assert words in str(caught.value)
    assert caught.value.exit_code == 2


def test_new_defaults_parallelism_to_two() -> None:
    body = build(action="NEW", **JAR).body
    assert body is not None
    assert body["properties"]["flinkConfiguration"] == {"parallelism": "2"}


def test_stop_sends_no_parallelism() -> None:
    body = build(action="STOP").body
    assert body is not None
    assert "flinkConfiguration" not in body["properties"]


def test_inputs_mapped_into_configuration() -> None:
    body = build(
        action="UPDATE",
        parallelism="3",
        savepointDirectory="file:///sp",
        allowNonRestoredState="true",
        flinkConfiguration='{"pipeline.name": "orders"}',
    ).body
    assert body is not None
    assert body["properties"]["flinkConfiguration"] == {
        "pipeline.name": "orders",
        "parallelism": "3",
        "savepoint.directory": "file:///sp",
        "execution.savepoint.ignore-unclaimed-state": "true",
    }


def test_savepoint_name_sent_as_api_field() -> None:
    body = build(action="START", savepointName="savepoint-abc").body
    assert body is not None
    assert body["properties"]["savePointName"] == "savepoint-abc"


def test_run_id_generated_on_newer_versions_only() -> None:
    newer = build(action="STOP")
    older = build(action="STOP", apiVersion="2023-06-01-preview")
    assert newer.run_id
    assert newer.body is not None
    assert newer.body["properties"]["runId"] == newer.run_id
    assert older.run_id is None
    assert older.body is not None
    assert "runId" not in older.body["properties"]


def test_missing_cluster_inputs_listed_together() -> None:
    with pytest.raises(InputError) as caught:
        build_run_request({"action": "STOP", "jobName": "orders", "cluster": "c1"})
    message = str(caught.value)
    for name in ("subscriptionId", "resourceGroup", "clusterPool"):
        assert name in message
    assert "INPUT_RESOURCEGROUP" in message


def test_action_is_case_insensitive() -> None:
    assert build(action="list_savepoint").action == "LIST_SAVEPOINT"


def test_secret_looking_values_collected() -> None:
    request = build(
        action="NEW",
        **JAR,
        args="--db-password hunter22 --label x --api-token=tok123",
        flinkConfiguration='{"fs.azure.account.key.acc.dfs.core.windows.net": "KEYVALUE"}',
    )
    assert sorted(request.secret_values) == ["KEYVALUE", "hunter22", "tok123"]


def test_list_takes_no_job_inputs() -> None:
    request = build_run_request({**CLUSTER, "action": "LIST"})
    assert request.body is None
    with pytest.raises(InputError):
        build_run_request({**CLUSTER, "action": "LIST", "jarName": "a.jar"})


def test_configuration_json_values_become_strings() -> None:
    assert parse_flink_configuration('{"a": 1, "b": true, "c": "x"}') == {
        "a": "1",
        "b": "true",
        "c": "x",
    }


@pytest.mark.parametrize("action", ACTIONS_ALL)
def test_every_action_has_schema_and_sample(action: str) -> None:
    schema = schemas.load_schema(action)
    assert schema["properties"]["properties"]["properties"]["action"] == {"const": action}
    sample = json.loads((SAMPLES / f"{action.lower()}.json").read_text())
    schemas.validate_body(sample)


def test_schema_rejects_unknown_field() -> None:
    body = {"properties": {"jobType": "FlinkJob", "jobName": "a", "action": "STOP", "foo": "x"}}
    with pytest.raises(InputError) as caught:
        schemas.validate_body(body)
    assert "foo" in str(caught.value)
