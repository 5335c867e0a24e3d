"""The daemon's side of Type=notify, on a FakeClock: READY, the loop's own watchdog pings,
RELOADING … READY around a reload, STOPPING at shutdown."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from lib.app import App
from lib.config import Config
from lib.daemon import MAX_SLEEP, Daemon
from lib.errors import ConfigError, ConfigIssue
from lib.models import RunOutcome, RunStatus
from lib.runners.base import RunContext
from lib.sdnotify import SystemdNotifier
from tests.conftest import START
from tests.fakes import FakeClock, InlineExecutor, inline_spawn

WATCHDOG_USEC = 10_000_000  # WatchdogSec=10s: pings every 5 s of fake time


@dataclass
class Sent:
    fields: dict[str, str]
    thread: str
    at: float  # the fake monotonic clock
    started: bool  # the daemon had finished start() (fire times planned, pool built)


class RecordingSystemd(SystemdNotifier):
    """The real notifier (interval, rate, payloads), its datagrams kept instead of sent."""

    def __init__(self, clock: FakeClock, watchdog_usec: int | None = None) -> None:
        super().__init__("/run/systemd/notify", watchdog_usec)
        self.clock = clock
        self.daemon: Daemon | None = None
        self.sent: list[Sent] = []

    def send(self, *assignments: str) -> bool:
        fields = dict(a.split("=", 1) for a in assignments)
        started = (
            self.daemon is not None and self.daemon._executor is not None and bool(self.daemon.next_fire)
        )
        self.sent.append(Sent(fields, threading.current_thread().name, self.clock.monotonic(), started))
        return True

    def kinds(self) -> list[str]:
        """Each message by its first assignment, pings left out: READY, RELOADING, STOPPING, STATUS."""
        return [next(iter(s.fields)) for s in self.sent if "WATCHDOG" not in s.fields]

    def pings(self) -> list[Sent]:
        return [s for s in self.sent if "WATCHDOG" in s.fields]


def daemon_with(app: App, systemd: RecordingSystemd, **kw: Any) -> Daemon:
    kw.setdefault("executor_factory", lambda n: InlineExecutor())
    kw.setdefault("spawn", inline_spawn)
    daemon = Daemon(app.config, app.service, app.clock, systemd=systemd, **kw)
    systemd.daemon = daemon
    return daemon


def on_a_loop_thread(work: Callable[[], object]) -> None:
    """Run the loop on a thread of its own name, as `cmd_run` does, and wait for it."""
    failure: list[BaseException] = []

    def target() -> None:
        try:
            work()
        except BaseException as exc:
            failure.append(exc)

    thread = threading.Thread(target=target, name="daemon-loop")
    thread.start()
    thread.join(60)
    assert not thread.is_alive(), "the loop did not end"
    if failure:
        raise failure[0]


def test_ready_goes_out_once_after_start_up_and_stopping_at_the_end(
    make_config: Callable[..., Config], make_app: Callable[..., App], clock: FakeClock
) -> None:
    app = make_app(make_config({"a": {"every": "1 hour"}, "b": {"every": "1 day"}}))
    systemd = RecordingSystemd(clock)  # no WatchdogSec
    daemon_with(app, systemd).run_forever(until=START + timedelta(hours=3))

    assert systemd.kinds() == ["READY", "STOPPING"]
    ready = systemd.sent[0]
    assert ready.started  # after the lock, history's tidy-up, orphans and the plan
    assert ready.fields["STATUS"].startswith("scheduling 2 job(s), state_dir ")
    assert systemd.pings() == []
    assert max(clock.waits) == MAX_SLEEP  # without a watchdog the waits are not capped further
    assert len(app.history.runs("a", limit=None)) == 3


def test_the_loop_feeds_the_watchdog_itself_within_the_interval(
    make_config: Callable[..., Config], make_app: Callable[..., App], clock: FakeClock
) -> None:
    app = make_app(make_config({"hourly": {"every": "1 hour"}}))
    systemd = RecordingSystemd(clock, WATCHDOG_USEC)
    daemon = daemon_with(app, systemd)
    on_a_loop_thread(lambda: daemon.run_forever(until=START + timedelta(hours=2)))

    pings = systemd.pings()
    assert {p.thread for p in pings} == {"daemon-loop"}  # the loop, not a side thread
    assert all(p.started for p in pings)
    assert max(clock.waits) <= 5.0  # the wait is capped at the ping interval
    at = [p.at for p in pings]
    assert at[0] == 0.0 and at[-1] >= 2 * 3600 - 5
    gaps = [b - a for a, b in itertools.pairwise(at)]
    assert max(gaps) <= 0.75 * WATCHDOG_USEC / 1e6  # well inside WatchdogSec
    assert len(pings) >= 2 * 3600 / 5
    assert len(app.history.runs("hourly", limit=None)) == 2  # and the schedule ran as ever


def test_a_loop_that_does_not_come_back_sends_no_ping(
    make_config: Callable[..., Config], make_app: Callable[..., App], clock: FakeClock
) -> None:
    """A run on the loop's own thread (InlineExecutor) stands for a hung tick: 100 s of it."""
    app = make_app(make_config({"a": {"every": "1 minute"}}))
    systemd = RecordingSystemd(clock, WATCHDOG_USEC)
    during: list[tuple[int, int]] = []

    class HangsTwice:
        def run(self, ctx: RunContext) -> RunOutcome:
            if len(during) < 2:
                before = len(systemd.pings())
                clock.advance(100)  # ten WatchdogSec without the loop coming round
                during.append((before, len(systemd.pings())))
            return RunOutcome(RunStatus.SUCCEEDED)

    app.service.runners = {"local": HangsTwice()}  # type: ignore[misc]
    daemon = daemon_with(app, systemd)
    on_a_loop_thread(lambda: daemon.run_forever(until=START + timedelta(minutes=10)))

    assert len(during) == 2 and all(before == after for before, after in during)
    gaps = [b.at - a.at for a, b in itertools.pairwise(systemd.pings())]
    # systemd would have seen each hang as a missed watchdog (no ping for over WatchdogSec),
    # and nothing else: the loop fed it again as soon as it came back.
    assert [gap > WATCHDOG_USEC / 1e6 for gap in gaps].count(True) == 2
    assert max(gap for gap in gaps if gap < 100) <= 0.75 * WATCHDOG_USEC / 1e6


def test_a_reload_is_bracketed_by_reloading_and_ready_good_or_refused(
    make_config: Callable[..., Config], make_app: Callable[..., App], clock: FakeClock
) -> None:
    good = make_config({"a": {"every": "1 hour"}})
    newer = make_config({"a": {"every": "1 hour"}, "b": {"every": "30 minutes"}})
    app = make_app(good)
    versions: list[Any] = [newer, ConfigError([ConfigIssue("jobs.a.every", "bad", line=3)])]
    systemd = RecordingSystemd(clock, WATCHDOG_USEC)

    def reload() -> Config:
        item = versions.pop(0)
        if isinstance(item, Exception):
            raise item
        return item

    class ReloadTwice:
        calls = 0

        def run(self, ctx: RunContext) -> RunOutcome:
            self.calls += 1
            if self.calls <= 2:
                daemon.request_reload()  # as SIGHUP's handler does, while the loop runs
            return RunOutcome(RunStatus.SUCCEEDED)

    app.service.runners = {"local": ReloadTwice()}  # type: ignore[misc]
    daemon = daemon_with(app, systemd, reload_config=reload)
    daemon.run_forever(until=START + timedelta(hours=3))

    assert systemd.kinds() == ["READY", "RELOADING", "READY", "RELOADING", "READY", "STOPPING"]
    messages = [s.fields for s in systemd.sent if "WATCHDOG" not in s.fields]
    assert int(messages[1]["MONOTONIC_USEC"]) > 0
    assert messages[2]["STATUS"].startswith("scheduling 2 job(s)")  # the new config is in force
    assert messages[4]["STATUS"].startswith("reload failed, the last good config kept")
    assert "scheduling 2 job(s)" in messages[4]["STATUS"]
    assert versions == []


def test_stopping_goes_out_when_shutdown_begins_and_says_what_it_waits_for(
    make_config: Callable[..., Config], make_app: Callable[..., App], clock: FakeClock
) -> None:
    config = make_config({"long": {"every": "1 minute"}}, shutdown_grace="5s")
    started = threading.Event()
    systemd = RecordingSystemd(clock, WATCHDOG_USEC)
    kinds_when_cancelled: list[list[str]] = []

    class UntilCancelled:
        def run(self, ctx: RunContext) -> RunOutcome:
            started.set()
            stop = threading.Event()
            ctx.cancel.on_cancel(stop.set)
            stop.wait(10)
            kinds_when_cancelled.append(systemd.kinds())
            return RunOutcome(RunStatus.CANCELLED if ctx.cancel.cancelled else RunStatus.SUCCEEDED)

    app = make_app(config, UntilCancelled())
    daemon = Daemon(app.config, app.service, clock, systemd=systemd)
    systemd.daemon = daemon
    daemon.start()
    clock.advance(60)
    daemon.dispatch(daemon.tick(clock.now()))
    assert started.wait(5)
    daemon.request_stop()
    daemon.shutdown()

    assert kinds_when_cancelled == [["STOPPING", "STATUS"]]  # told before the run was cancelled
    stopping, status = (s.fields for s in systemd.sent)
    assert stopping == {"STOPPING": "1", "STATUS": "stopping"}
    assert status == {"STATUS": "stopping: waiting up to 5s for 1 running job(s)"}
    [run] = app.history.runs("long", limit=None)
    assert run["outcome"] == "cancelled"
