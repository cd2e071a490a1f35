"""Finding and hiding secret-looking values in configuration and program arguments."""

from __future__ import annotations

import pytest

from flink_task.redact import (
    REDACTED,
    is_secret_key,
    redact_args,
    redact_properties,
    redact_text,
    secret_values_in_args,
    secret_values_in_configuration,
)

JAAS = (
    "org.apache.kafka.common.security.plain.PlainLoginModule required "
    'username="alice" password="hunter2";'
)


@pytest.mark.parametrize(
    "key",
    [
        "fs.azure.account.key.acc.dfs.core.windows.net",
        "properties.sasl.jaas.config",
        "ssl.keystore.password",
        "api-token",
        "db_password",
        "fs.s3a.secret.key",
        "--client-secret",
    ],
)
def test_secret_keys(key: str) -> None:
    assert is_secret_key(key)


@pytest.mark.parametrize("key", ["parallelism", "pipeline.name", "tokenizer.model", "--label"])
def test_ordinary_keys(key: str) -> None:
    assert not is_secret_key(key)


def test_jaas_password_found_by_shape() -> None:
    configuration = {"kafka.login": JAAS}
    assert secret_values_in_configuration(configuration) == ["hunter2"]
    assert (
        "hunter2"
        not in redact_properties({"flinkConfiguration": configuration})["flinkConfiguration"][
            "kafka.login"
        ]
    )


def test_jaas_key_hidden_whole() -> None:
    properties = {"flinkConfiguration": {"properties.sasl.jaas.config": JAAS}}
    redacted = redact_properties(properties)["flinkConfiguration"]
    assert redacted["properties.sasl.jaas.config"] == REDACTED


def test_url_password_hidden() -> None:
    args = "--jdbc jdbc:postgresql://bob:pw123@db:5432/orders"
    assert secret_values_in_args(args) == ["pw123"]
    assert redact_args(args) == "--jdbc 'jdbc:postgresql://bob:***@db:5432/orders'"


def test_connection_string_assignment_hidden() -> None:
    assert redact_text("Server=tcp:x;Password=abc;User=u") == "Server=tcp:x;Password=***;User=u"


def test_overlapping_values_hidden_whole() -> None:
    args = (
        "--api-key AK1 --connection-string "
        "Endpoint=sb://x/;SharedAccessKeyName=k;SharedAccessKey=SAK1 --label banana --token a"
    )
    redacted = redact_args(args)
    assert redacted == "--api-key *** --connection-string *** --label banana --token ***"
    assert "SAK1" not in redacted
    assert "AK1" not in redacted


def test_inline_option_value_hidden() -> None:
    assert redact_args("--db-password=s3cret --x 1") == "--db-password=*** --x 1"
    assert secret_values_in_args("--db-password=s3cret --x 1") == ["s3cret"]


def test_unbalanced_quotes_still_redacted() -> None:
    assert "pw1" not in redact_args("--url 'http://u:pw1@h")
