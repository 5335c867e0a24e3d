"""The daemon's heartbeat pings its URL every `every` seconds, against a real local server."""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime

import pytest

from lib.models import Heartbeat
from lib.notify.heartbeat import HeartbeatPinger
from tests.fakes import FakeClock
from tests.notify_helpers import HttpStandIn, deliverer, stand_in

__all__ = ["stand_in"]


class StopAfter(FakeClock):
    """Stops the pinger after `waits` waits (each advancing the clock by its length)."""

    def __init__(self, start: datetime, waits: int, pinger: list[HeartbeatPinger]) -> None:
        super().__init__(start)
        self.left = waits
        self.pinger = pinger

    def wait(self, seconds: float, event: threading.Event) -> bool:
        self.left -= 1
        if self.left < 0:
            self.pinger[0].stop_event.set()
        return super().wait(seconds, event)


def test_pings_now_and_then_every_interval(stand_in: HttpStandIn) -> None:
    holder: list[HeartbeatPinger] = []
    clock = StopAfter(datetime(2026, 12, 2, tzinfo=UTC), 2, holder)
    pinger = HeartbeatPinger(Heartbeat(url=f"{stand_in.url}/ping/daemon", every=120), deliverer(clock), clock)
    holder.append(pinger)
    pinger.run()
    assert [r.method + " " + r.path for r in stand_in.requests] == ["GET /ping/daemon"] * 3
    assert clock.waits == [120, 120]  # the third wait was cut short by stop()


def test_a_failing_ping_is_logged_once_and_its_recovery_once(
    stand_in: HttpStandIn, caplog: pytest.LogCaptureFixture
) -> None:
    stand_in.script = [(404, {}, b"gone"), (404, {}, b"gone"), (200, {}, b"OK")]
    clock = FakeClock(datetime(2026, 12, 2, tzinfo=UTC))
    pinger = HeartbeatPinger(Heartbeat(url=f"{stand_in.url}/ping"), deliverer(clock), clock)
    with caplog.at_level(logging.INFO, logger="dbt_scheduler"):
        assert [pinger.ping(), pinger.ping(), pinger.ping()] == [False, False, True]
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "heartbeat not delivered" in errors[0].getMessage()
    assert any("heartbeat delivered again" in r.getMessage() for r in caplog.records)
