from __future__ import annotations

import json
import logging
import urllib.parse
from pathlib import Path

import pytest

from flink_task.report import GitHubReporter, Reporter
from tests.report.runners import azure_commands, github_commands, runner_lines

SECRET = 'Pa55%w0rd;]"\\<tab>\t'
PEM = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG\n\nab\nw0BAQEFAASCBKcwggSjAgEAAoIB\n"
PEM_LINES = ["-----BEGIN PRIVATE KEY-----", "MIIEvQIBADANBgkqhkiG", "w0BAQEFAASCBKcwggSjAgEAAoIB"]


def mask_commands(reporter: Reporter, text: str) -> list[str]:
    if reporter.platform == "github":
        return [c.data for c in github_commands(text) if c.name == "add-mask"]
    if reporter.platform == "azure-devops":
        return [c.data for c in azure_commands(text) if c.name == "task.setsecret"]
    return []


def without_mask_lines(text: str) -> str:
    lines = runner_lines(text)
    kept = [
        line for line in lines if not line.startswith(("::add-mask::", "##vso[task.setsecret]"))
    ]
    return "\n".join(kept)


def forms_of(secret: str) -> list[str]:
    """Return the ways a secret could show up in printed text or written files."""
    forms = {
        secret,
        secret.strip(),
        json.dumps(secret)[1:-1],
        repr(secret)[1:-1],
        repr(secret.strip())[1:-1],
        urllib.parse.quote(secret, safe=""),
        secret.replace("%", "%25").replace("\n", "%0A"),
        secret.replace("%", "%AZP25").replace("\n", "%0A"),
        secret.replace("%", "%AZP25").replace(";", "%3B").replace("]", "%5D"),
    }
    return sorted(form for form in forms if len(form) >= 4)


def written_files(tmp_path: Path) -> str:
    return "".join(
        path.read_text(encoding="utf-8") for path in sorted(tmp_path.rglob("*")) if path.is_file()
    )


def test_masks_before_other_output(any_reporter, streams):
    any_reporter.mask("client-secret-value")
    any_reporter.install_logging(logging.INFO)
    logging.getLogger("flink_task.test").info("Signing in")

    lines = runner_lines(streams.stdout.getvalue() + streams.stderr.getvalue())
    masks = mask_commands(any_reporter, streams.stdout.getvalue())
    if any_reporter.platform == "console":
        assert masks == []
        assert lines == ["[INFO] Signing in"]
    else:
        assert masks == ["client-secret-value"]
        assert lines[1:] == ["Signing in"]


def test_multiline_secret_line_by_line(any_reporter, streams):
    any_reporter.mask(PEM)

    masks = mask_commands(any_reporter, streams.stdout.getvalue())
    if any_reporter.platform == "console":
        assert masks == []
    else:
        assert masks == PEM_LINES
    assert any_reporter.untrusted(PEM) == "***\n***\n\nab\n***"


def test_secret_value_escaped_in_mask(github, azure, streams):
    github.mask("a%0Ab-secret\r")
    azure.mask("a%0Ab-secret")

    out = streams.stdout.getvalue()
    assert [c.data for c in github_commands(out) if c.name == "add-mask"] == ["a%0Ab-secret"]
    assert [c.data for c in azure_commands(out) if c.name == "task.setsecret"] == ["a%0Ab-secret"]


@pytest.mark.parametrize("value", ["", "   ", "abc", "\n\nab\n", " x "])
def test_short_values_not_registered(any_reporter, streams, value):
    any_reporter.mask(value)

    assert streams.both() == ""
    assert any_reporter.untrusted("abc x ab") == "abc x ab"


def test_secret_registered_once(github, streams):
    github.mask("same-secret")
    github.mask("same-secret\nsame-secret")

    assert streams.stdout.getvalue() == "::add-mask::same-secret\n"


def test_longer_secret_replaced_whole(console):
    console.mask("abcd")
    console.mask("abcdefgh")

    assert console.untrusted("xabcdefghx abcd") == "x***x ***"


def exercise_every_api(reporter: Reporter, secret: str) -> None:
    """Print the secret through everything a reporter offers, after it was registered."""
    reporter.install_logging(logging.DEBUG)
    log = logging.getLogger("flink_task.test")
    log.debug("debug %s", secret)
    log.info("info " + secret)
    log.warning("warning %r", secret)
    log.error("error %s", json.dumps({"key": secret}))
    logging.getLogger("azure.identity").debug("azure debug %s", secret)
    logging.getLogger("other.library").warning("root warning %s", secret)
    try:
        raise RuntimeError(f"exception with {secret}")
    except RuntimeError:
        log.exception("failed with %s", urllib.parse.quote(secret, safe=""))
    log.info("stack", stack_info=True)
    reporter.untrusted(f"untrusted {secret}")
    with reporter.group(f"group {secret}"):
        reporter.set_outputs({"jobOutput": f"output {secret}", "plain": "ok"})
        reporter.summary(f"title {secret}", [("row", secret), (secret, "value")], secret)
    reporter.fail(f"failed: {secret}")
    reporter.print_result({"jobOutput": secret, "nested": {"list": [secret, 1]}, secret: True})
    reporter.finish(1)


@pytest.mark.parametrize(
    "secret", [SECRET, PEM, "sv=2024&sig=abc%2Bdef%3D", "it's-\u00e9-secret", "\x1bpass\u200bword"]
)
def test_secret_never_written_after_mask(any_reporter, streams, tmp_path, secret):
    any_reporter.mask(secret)

    exercise_every_api(any_reporter, secret)

    printed = without_mask_lines(streams.stdout.getvalue()) + streams.stderr.getvalue()
    files = written_files(tmp_path)
    assert "***" in printed
    for form in forms_of(secret) + [line for line in PEM_LINES if line in secret]:
        assert form not in printed, form
        assert form not in files, form


def test_secret_in_outputs_redacted(github, github_env, streams):
    github.mask("output-secret")
    github.install_logging(logging.INFO)

    github.set_outputs({"jobOutput": "value output-secret"})

    assert "value ***" in Path(github_env["GITHUB_OUTPUT"]).read_text(encoding="utf-8")
    commands = github_commands(streams.stdout.getvalue())
    assert commands[-1].name == "warning"
    assert commands[-1].data == "Output jobOutput contains a masked value, which is written as ***"


def test_secret_redacted_before_neutralising(console):
    console.mask("\u200bsecret-with-zero-width")

    assert console.untrusted("x \u200bsecret-with-zero-width y") == "x *** y"


def test_redaction_applies_from_mask_on(streams, github_env):
    reporter = GitHubReporter(environ=github_env, stdout=streams.stdout, stderr=streams.stderr)
    reporter.install_logging(logging.INFO)
    log = logging.getLogger("flink_task.test")

    log.info("before late-secret")
    reporter.mask("late-secret")
    log.info("after late-secret")

    assert streams.stdout.getvalue() == (
        "before late-secret\n::add-mask::late-secret\nafter ***\n"
    )
