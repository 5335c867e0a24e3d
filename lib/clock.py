"""Time as a dependency.

Everything that reads the time or waits takes a `Clock`, so tests drive a week of
schedules in milliseconds with `tests.fakes.FakeClock` instead of sleeping.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """The current instant, timezone-aware (UTC)."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never goes backwards, for durations."""
        ...

    def wait(self, seconds: float, event: threading.Event) -> bool:
        """Wait up to `seconds` or until `event` is set; True when the event is set."""
        ...


class SystemClock:
    """The wall clock. `wait` blocks on the event, so a signal wakes it at once."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return time.monotonic()

    def wait(self, seconds: float, event: threading.Event) -> bool:
        return event.wait(max(0.0, seconds))
