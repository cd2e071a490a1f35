"""Deadlines, polling intervals and cancellation for every wait of a run."""

from __future__ import annotations

import contextlib
import logging
import math
import signal
import threading
import time
from collections.abc import Callable, Iterator
from types import FrameType

from flink_task.errors import CancelledError

logger = logging.getLogger(__name__)

# Poll every 0.2 s at first, growing by half each time up to a cap that rises with the
# time already waited. Most actions finish within seconds and are noticed within about a
# second, while an hour-long savepoint is not polled more than every 15 s.
FIRST_INTERVAL = 0.2
GROWTH = 1.5
INTERVAL_CAPS = ((120.0, 1.0), (600.0, 5.0), (math.inf, 15.0))
PROGRESS_LOG_INTERVAL = 30.0


def _monotonic() -> float:
    return time.monotonic()


def _wait_for(event: threading.Event, seconds: float) -> None:
    event.wait(seconds)


class WaitTimeoutError(Exception):
    """The deadline of a wait was reached."""


class Cancellation:
    """Set by SIGINT or SIGTERM; every wait checks it and ends at once when it is set."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.signal_name: str | None = None

    def cancel(self, signal_name: str = "cancel") -> None:
        self.signal_name = signal_name
        self.event.set()

    @property
    def cancelled(self) -> bool:
        return self.event.is_set()

    @contextlib.contextmanager
    def handle_signals(self) -> Iterator[None]:
        """Turn SIGINT and SIGTERM into a cancellation while the block runs (main thread only)."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def handler(signum: int, _frame: FrameType | None) -> None:
            self.cancel(signal.Signals(signum).name)

        previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, old in previous.items():
                signal.signal(sig, old)


class Waiter:
    """Sleeps between polls within one deadline, logging progress and honouring cancellation."""

    def __init__(
        self,
        *,
        timeout_seconds: float,
        cancellation: Cancellation | None = None,
        clock: Callable[[], float] | None = None,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        self.cancellation = cancellation or Cancellation()
        self._clock = clock
        self._sleep = sleep
        self.started = self._now()
        self.deadline = self.started + timeout_seconds
        self.timeout_seconds = timeout_seconds
        self._interval = FIRST_INTERVAL
        self._last_progress_log = self.started

    def _now(self) -> float:
        return self._clock() if self._clock is not None else _monotonic()

    @property
    def elapsed(self) -> float:
        return self._now() - self.started

    def remaining(self) -> float:
        return self.deadline - self._now()

    def check(self) -> None:
        """Raise CancelledError or WaitTimeoutError when the wait must end now."""
        if self.cancellation.cancelled:
            raise CancelledError(f"cancelled by {self.cancellation.signal_name}")
        if self.remaining() <= 0:
            raise WaitTimeoutError(f"timed out after {self.timeout_seconds:.0f} s")

    def next_interval(self) -> float:
        """Return the next polling interval: short at first, then backing off."""
        cap = next(limit for elapsed, limit in INTERVAL_CAPS if self.elapsed < elapsed)
        interval = min(self._interval, cap)
        self._interval = min(self._interval * GROWTH, INTERVAL_CAPS[-1][1])
        return interval

    def reset_interval(self) -> None:
        """Poll fast again, for example after the server reported a change."""
        self._interval = FIRST_INTERVAL

    def pause(self, seconds: float | None = None) -> None:
        """Sleep until the next poll, or less when the deadline or a cancellation comes first."""
        self.check()
        delay = self.next_interval() if seconds is None else seconds
        delay = max(0.0, min(delay, self.remaining()))
        if self._sleep is not None:
            self._sleep(delay)
        else:
            _wait_for(self.cancellation.event, delay)
        self.check()

    def progress_due(self) -> bool:
        """Return True at most once per PROGRESS_LOG_INTERVAL, to pace progress lines."""
        now = self._now()
        if now - self._last_progress_log >= PROGRESS_LOG_INTERVAL:
            self._last_progress_log = now
            return True
        return False
