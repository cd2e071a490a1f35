"""Poller deadlines and progress logs (with a fake clock), and Flink duration parsing."""

from __future__ import annotations

import logging

import pytest

from flink_task.engine.waits import Poller, WaitTimeoutError, parse_duration


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def poller(clock: FakeClock) -> Poller:
    return Poller(clock=clock, sleep=clock.sleep, poll_interval=1.0, log_interval=10.0)


def test_wait_returns_first_result() -> None:
    clock = FakeClock()
    results = iter([None, None, "done"])

    assert poller(clock).wait("result", lambda: next(results), timeout=30) == "done"
    assert clock.sleeps == [0.1, 0.2]


def test_wait_backs_off_to_interval() -> None:
    clock = FakeClock()
    results = iter([None] * 7 + ["done"])

    assert poller(clock).wait("result", lambda: next(results), timeout=30) == "done"
    assert clock.sleeps == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0, 1.0]


def test_wait_times_out_at_deadline() -> None:
    clock = FakeClock()

    with pytest.raises(WaitTimeoutError, match="savepoint did not happen within 5 s"):
        poller(clock).wait("savepoint", lambda: None, timeout=5)

    assert clock.now == 5.0


def test_wait_logs_progress_rarely(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()

    with caplog.at_level(logging.INFO, logger="flink_task.engine.waits"):
        with pytest.raises(WaitTimeoutError):
            poller(clock).wait("tasks", lambda: None, timeout=35, progress=lambda: "CREATED 2")

    lines = [record.getMessage() for record in caplog.records]
    assert lines == [
        "Waiting for tasks: 10 s of 35 s (CREATED 2)",
        "Waiting for tasks: 20 s of 35 s (CREATED 2)",
        "Waiting for tasks: 30 s of 35 s (CREATED 2)",
    ]


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("10 min", 600.0),
        ("10min", 600.0),
        ("90 s", 90.0),
        ("1h", 3600.0),
        ("600000", 600.0),
        ("250 ms", 0.25),
        ("PT10M", 600.0),
        ("PT1M30S", 90.0),
    ],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "soon", "10 fortnights"])
def test_parse_invalid_duration(text: str) -> None:
    assert parse_duration(text) is None
