"""The web app on a real Daemon loop for tests (tests/test_web_*.py): the loop on its own
thread with a clock that never moves on its own, a real history.db, real tokens, and a
runner whose runs are released by events, never by timing. The `served` fixture
(tests/conftest.py) builds it."""

from __future__ import annotations

import ipaddress
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

from starlette.testclient import TestClient

from lib.app import App
from lib.config import Config
from lib.control import RunNow
from lib.daemon import Daemon
from lib.models import RunOutcome, RunStatus, WebSettings
from lib.runners.base import RunContext
from lib.web.access import Gate
from lib.web.app import Site, build_app
from lib.web.audit import AuditLog
from lib.web.metrics import Metrics
from lib.web.roles import Role
from lib.web.tokens import TokenStore
from tests.conftest import START
from tests.fakes import FakeClock, inline_spawn

TIMEOUT = 10  # a hang guard only


class Runs:
    """A runner: each run writes two lines to run.log; runs of a job in `hold` go on until
    released or cancelled. Counts how many run at once."""

    def __init__(self) -> None:
        self.hold: set[str] = set()
        self._lock = threading.Lock()
        self._release: dict[str, threading.Event] = {}
        self.started = threading.Semaphore(0)
        self.running = 0
        self.peak = 0
        self.outcome = RunOutcome(RunStatus.SUCCEEDED)  # what a run that was not cancelled returns

    def run(self, ctx: RunContext) -> RunOutcome:
        done = threading.Event()
        ctx.cancel.on_cancel(done.set)
        with self._lock:
            self._release[ctx.request.run_id] = done
            self.running += 1
            self.peak = max(self.peak, self.running)
        try:
            with open(ctx.run_dir / "run.log", "a", encoding="utf-8") as log:
                log.write(f"hello from {ctx.request.job.name}\n")
                log.flush()
                self.started.release()
                if ctx.request.job.name in self.hold:
                    assert done.wait(TIMEOUT), "a held run was never released"
                log.write("bye\n")
        finally:
            with self._lock:
                self.running -= 1
        if ctx.cancel.cancelled:
            return RunOutcome(RunStatus.CANCELLED, reason=ctx.cancel.reason)
        return self.outcome

    def release(self) -> None:
        with self._lock:
            events = list(self._release.values())
        for event in events:
            event.set()


class WaitingClock(FakeClock):
    """The loop really waits on its event (a submit wakes it); time never moves on its own."""

    def wait(self, seconds: float, event: threading.Event) -> bool:
        return event.wait(TIMEOUT)


SETTINGS = WebSettings(
    listen="127.0.0.1:0",
    trusted_proxies=(ipaddress.ip_network("10.0.0.5/32"),),
    group_roles={"ops": "operator", "analysts": "viewer"},
)


@dataclass
class Served:
    app: App
    daemon: Daemon
    runs: Runs
    site: Site
    tokens: TokenStore
    audit: AuditLog

    def client(self, settings: WebSettings | None = None, peer: str = "127.0.0.1", **kw: Any) -> TestClient:
        site = (
            self.site if settings is None else replace(self.site, settings=settings, gate=self.gate(settings))
        )
        return TestClient(build_app(site), client=(peer, 50000), **kw)

    def gate(self, settings: WebSettings) -> Gate:
        return Gate(settings, self.tokens, self.audit)

    def token(self, role: Role, user: str | None = None, **kw: Any) -> str:
        token, _info = self.tokens.create(user or f"{role.value}-user", role, **kw)
        return token

    def finished_run(self, job: str = "nightly") -> str:
        """A run of `job` through the daemon, waited for until it is recorded."""
        with self.daemon.control.bus.subscribe([job]) as events:
            reply = self.daemon.control.queue.submit(RunNow(job, "setup")).result(TIMEOUT)
            run_id = reply.run_ids[0]  # type: ignore[union-attr]
            wait_finished(events, run_id)
        return run_id


def wait_finished(events: Any, run_id: str) -> None:
    while True:
        event = events.get(timeout=TIMEOUT)
        assert event is not None, f"run {run_id} did not finish"
        if event.kind == "finished" and event.run_id == run_id:
            return


def serve(make_config: Callable[..., Config], make_app: Callable[..., App]) -> Iterator[Served]:
    config = make_config(
        {
            "nightly": {"schedule": "0 6 * * *", "overlap": "allow"},
            "slow": {"schedule": "0 7 * * *"},
            "sales_daily": {"schedule": "0 8 * * *", "overlap": "allow"},
        },
        max_parallel=2,
    )
    runs = Runs()
    app = make_app(config, runs)
    clock = WaitingClock(START)
    app.clock = clock
    app.service.clock = clock
    pool = ThreadPoolExecutor(max_workers=8)
    daemon = Daemon(app.config, app.service, clock, executor_factory=lambda n: pool, spawn=inline_spawn)
    loop = threading.Thread(target=daemon.run_forever, name="test-loop")
    tokens = TokenStore(app.history, clock)
    audit = AuditLog(app.history, clock)
    metrics = Metrics(app.history, lambda: daemon.config.jobs, clock, process=False)
    site = Site(
        settings=SETTINGS,
        history=app.history,
        gate=Gate(SETTINGS, tokens, audit),
        control=daemon.control,
        jobs=lambda: daemon.config.jobs,
        clock=clock,
        session_key="k" * 40,
        state_dir=config.state_dir,
        metrics_text=metrics.text,
        next_fire=daemon.next_fire.get,
        job_of=daemon.job_of,
    )
    loop.start()
    try:
        yield Served(app, daemon, runs, site, tokens, audit)
    finally:
        runs.release()
        daemon.request_stop()
        loop.join(TIMEOUT)
        pool.shutdown()
    assert not loop.is_alive()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def expired_token(served: Served, role: Role = Role.ADMIN) -> str:
    past = TokenStore(served.app.history, FakeClock(START - timedelta(days=2)))
    token, _ = past.create("old-user", role, expires_in=3600)
    return token
