"""Check neutralised text with ICU collation, which .NET 5 and later use for
culture-sensitive ``StartsWith`` and ``IndexOf`` on Linux.

ICU skips characters that have no collation weight, so a runner comparing that way
could read ``#\\u200b#vso[`` as ``##vso[``. The root collator at its default
(tertiary) strength stands in for the runner's culture.
"""

from __future__ import annotations

import random

import pytest

from flink_task.report.untrusted import neutralise_commands
from tests.report.runners import runner_lines
from tests.report.test_untrusted import NEAR_MISSES, PAYLOADS

icu = pytest.importorskip("icu")

COLLATOR = icu.Collator.createInstance(icu.Locale.getRoot())
HASH_PATTERNS = ("##vso[", "##VSO[", "##[")

# Commands only for a runner that compares with ICU.
ICU_PAYLOADS = [
    "#\u0640#vso[task.setvariable variable=x]tatweel between hashes",
    ":\u0640:error::tatweel between colons",
    "#\u034f#[error]combining grapheme joiner",
    "\u0640::error::tatweel first",
    "\ufe0f##vso[task.setsecret]variation selector first",
    "#\u2060#vso[task.complete result=Failed;]word joiner",
]


def icu_find(pattern: str, text: str) -> int:
    if not text:
        return -1
    return icu.StringSearch(pattern, text, COLLATOR).first()


def icu_is_command(line: str) -> bool:
    """Return whether an ICU-comparing runner could read a command in the line."""
    if any(icu_find(pattern, line) >= 0 for pattern in HASH_PATTERNS):
        return True
    content = line.lstrip()
    index = icu_find("::", content)
    if index < 0:
        return False
    skipped = content[:index]
    return COLLATOR.getSortKey(skipped) == COLLATOR.getSortKey("")


def icu_commands(text: str) -> list[str]:
    return [line for line in runner_lines(text) if icu_is_command(line)]


def test_icu_skips_invisible_characters():
    assert icu_find("##vso[", "#\u200b#vso[x]") == 0
    assert icu_find("##vso[", "#\u0640#vso[x]") == 0
    assert icu_is_command("\u200b::error::x")


@pytest.mark.parametrize("payload", ICU_PAYLOADS)
def test_icu_payload_is_command(payload):
    assert icu_commands(payload), payload


@pytest.mark.parametrize("payload", PAYLOADS + NEAR_MISSES + ICU_PAYLOADS)
def test_payload_no_icu_command(payload):
    text = neutralise_commands(payload)

    assert icu_commands(text) == [], text


@pytest.mark.parametrize("payload", ICU_PAYLOADS)
def test_icu_payload_idempotent(payload):
    once = neutralise_commands(payload)

    assert neutralise_commands(once) == once


def test_random_text_no_icu_command():
    alphabet = ["#", "##", ":", "::", "[", "vso", "VSO", " ", "\t", "\n", "x"]
    alphabet += ["\u200b", "\u0640", "\u00ad", "\ufe0f", "\u034f", "\u2060", "\x00"]
    alphabet += ["\uff03", "\uff1a", "\uff3b", "\u00a0", "\u3000", "\u0301", "\u2a74"]
    generator = random.Random(4)
    for _ in range(3000):
        payload = "".join(generator.choice(alphabet) for _ in range(generator.randint(1, 10)))
        text = neutralise_commands(payload)
        assert icu_commands(text) == [], repr(payload)
