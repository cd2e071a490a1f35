"""Polling intervals, deadlines and cancellation of waits."""

from __future__ import annotations

import signal

import pytest

from flink_task.errors import CancelledError
from flink_task.waiting import Cancellation, Waiter, WaitTimeoutError


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_intervals_start_short_and_back_off() -> None:
    clock = FakeClock()
    waiter = Waiter(timeout_seconds=3600, clock=clock, sleep=clock.sleep)
    for _ in range(400):
        waiter.pause()
    first = clock.sleeps[:5]
    assert first == pytest.approx([0.2, 0.3, 0.45, 0.675, 1.0])
    starts = _times(clock.sleeps)
    during_first_two_minutes = [s for s, t in zip(clock.sleeps, starts, strict=True) if t < 120]
    assert max(during_first_two_minutes) <= 1.0
    assert max(clock.sleeps) == 15.0


def _times(sleeps: list[float]) -> list[float]:
    times, total = [], 0.0
    for seconds in sleeps:
        times.append(total)
        total += seconds
    return times


def test_deadline_cuts_last_sleep_and_raises() -> None:
    clock = FakeClock()
    waiter = Waiter(timeout_seconds=1.0, clock=clock, sleep=clock.sleep)
    with pytest.raises(WaitTimeoutError):
        for _ in range(10):
            waiter.pause()
    assert sum(clock.sleeps) == pytest.approx(1.0)


def test_retry_after_used_as_given() -> None:
    clock = FakeClock()
    waiter = Waiter(timeout_seconds=60, clock=clock, sleep=clock.sleep)
    waiter.pause(7)
    assert clock.sleeps == [7]


def test_cancellation_stops_pause() -> None:
    clock = FakeClock()
    cancellation = Cancellation()
    waiter = Waiter(timeout_seconds=60, cancellation=cancellation, clock=clock, sleep=clock.sleep)
    cancellation.cancel("SIGTERM")
    with pytest.raises(CancelledError, match="SIGTERM"):
        waiter.pause()
    assert clock.sleeps == []


def test_real_wait_wakes_on_signal() -> None:
    cancellation = Cancellation()
    waiter = Waiter(timeout_seconds=30, cancellation=cancellation)
    with cancellation.handle_signals():
        signal.raise_signal(signal.SIGINT)
        with pytest.raises(CancelledError, match="SIGINT"):
            waiter.pause(20)
    assert waiter.elapsed < 5


def test_progress_lines_paced() -> None:
    clock = FakeClock()
    waiter = Waiter(timeout_seconds=600, clock=clock, sleep=clock.sleep)
    due = 0
    for _ in range(200):
        waiter.pause()
        due += waiter.progress_due()
    assert 1 <= due <= clock.now / 30 + 1
