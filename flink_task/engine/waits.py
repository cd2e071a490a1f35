"""Polling with a deadline and rate-limited progress logs, and Flink duration parsing."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

logger = logging.getLogger(__name__)

T = TypeVar("T")

_UNIT_SECONDS = {
    "ms": 0.001, "milli": 0.001, "millis": 0.001, "millisecond": 0.001, "milliseconds": 0.001,
    "s": 1.0, "sec": 1.0, "secs": 1.0, "second": 1.0, "seconds": 1.0,
    "min": 60.0, "mins": 60.0, "minute": 60.0, "minutes": 60.0, "m": 60.0,
    "h": 3600.0, "hour": 3600.0, "hours": 3600.0,
}  # fmt: skip


class WaitTimeoutError(Exception):
    """A wait reached its deadline."""


@dataclass(frozen=True)
class Timeouts:
    """Deadlines of the engine's waits, in seconds, and its polling rates.

    ``savepoint`` None means the cluster's ``execution.checkpointing.timeout`` (Flink's
    default is 10 minutes) plus ``savepoint_margin``, because Flink itself gives up on a
    savepoint only after that timeout.
    """

    start: float = 300.0
    savepoint: float | None = None
    savepoint_margin: float = 60.0
    terminal: float = 120.0
    poll_interval: float = 1.0
    log_interval: float = 15.0


_FIRST_POLL_INTERVAL = 0.1


class Poller:
    """Calls a check until it returns a value or the deadline passes, logging progress."""

    def __init__(
        self,
        *,
        clock: Callable[[], float],
        sleep: Callable[[float], None],
        poll_interval: float,
        log_interval: float,
    ) -> None:
        self._clock = clock
        self._sleep = sleep
        self.poll_interval = poll_interval
        self.log_interval = log_interval

    def wait(
        self,
        what: str,
        check: Callable[[], T | None],
        timeout: float,
        progress: Callable[[], str] | None = None,
    ) -> T:
        """Return the first result of ``check`` that is not None, or raise WaitTimeoutError."""
        start = self._clock()
        deadline = start + timeout
        next_log = start + self.log_interval
        # Most Flink operations (a savepoint of a small job, a job switching state) finish
        # within a second, so polls start at a tenth of a second and double up to the interval.
        interval = min(_FIRST_POLL_INTERVAL, self.poll_interval)
        while True:
            result = check()
            if result is not None:
                return result
            now = self._clock()
            if now >= deadline:
                raise WaitTimeoutError(f"{what} did not happen within {timeout:.0f} s")
            if now >= next_log:
                detail = f" ({progress()})" if progress else ""
                logger.info(
                    "Waiting for %s: %.0f s of %.0f s%s", what, now - start, timeout, detail
                )
                next_log = now + self.log_interval
            self._sleep(max(0.0, min(interval, deadline - now)))
            interval = min(interval * 2, self.poll_interval)


def parse_duration(text: str) -> float | None:
    """Return a Flink duration (``10 min``, ``600s``, ``PT10M``, ``600000``) in seconds."""
    value = (text or "").strip().lower()
    if not value:
        return None
    iso = re.fullmatch(r"pt(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s)?", value)
    if iso and any(iso.groups()):
        hours, minutes, seconds = (float(group or 0) for group in iso.groups())
        return hours * 3600 + minutes * 60 + seconds
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([a-z]*)", value)
    if not match:
        return None
    number, unit = float(match.group(1)), match.group(2)
    if not unit:
        return number / 1000.0  # a bare number is milliseconds in Flink
    factor = _UNIT_SECONDS.get(unit)
    return number * factor if factor else None
