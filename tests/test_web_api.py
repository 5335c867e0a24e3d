"""The web API (lib/web/api.py, lib/web/app.py) through Starlette's TestClient, against a real
Daemon loop (on its own thread, a clock that never moves on its own), a real history.db and
real tokens. Runs are released by events, never by timing."""

from __future__ import annotations

import ipaddress
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
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
        return RunOutcome(RunStatus.SUCCEEDED)

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


@pytest.fixture
def served(
    make_config: Callable[..., Config], make_app: Callable[..., App], tmp_path: Path
) -> Iterator[Served]:
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
        queued=daemon.queued_runs,
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


# ---------------------------------------------------------------------- route by role


# (method, path, the least role, the status when allowed); {run} is a finished run of nightly.
ROUTES = [
    ("GET", "/api/jobs", Role.VIEWER, 200),
    ("GET", "/api/jobs/nightly/runs", Role.VIEWER, 200),
    ("GET", "/api/runs/{run}", Role.VIEWER, 200),
    ("GET", "/api/runs/{run}/log", Role.VIEWER, 200),
    ("GET", "/api/openapi.json", Role.VIEWER, 200),
    ("GET", "/metrics", Role.VIEWER, 200),
    ("POST", "/api/jobs/nightly/runs", Role.OPERATOR, 202),
    ("POST", "/api/runs/{run}/cancel", Role.OPERATOR, 409),  # allowed, but it has finished
    ("GET", "/api/audit", Role.ADMIN, 200),
]
CREDENTIALS = ["none", "viewer", "operator", "admin", "expired", "revoked", "garbage"]


@pytest.mark.parametrize("credential", CREDENTIALS)
@pytest.mark.parametrize(
    ("method", "path", "least", "allowed"), ROUTES, ids=[f"{m} {p}" for m, p, *_ in ROUTES]
)
def test_every_route_answers_each_role_as_the_table_says(
    served: Served, method: str, path: str, least: Role, allowed: int, credential: str
) -> None:
    run_id = served.finished_run()
    headers: dict[str, str] = {}
    if credential in ("viewer", "operator", "admin"):
        headers = bearer(served.token(Role(credential)))
    elif credential == "expired":
        past = TokenStore(served.app.history, FakeClock(START - timedelta(days=2)))
        token, _ = past.create("old-user", Role.ADMIN, expires_in=3600)
        headers = bearer(token)
    elif credential == "revoked":
        token, info = served.tokens.create("gone-user", Role.ADMIN)
        served.tokens.revoke(info.id)
        headers = bearer(token)
    elif credential == "garbage":
        headers = bearer("dbts_00000000_not-a-real-secret")
    client = served.client()
    answer = client.request(method, path.format(run=run_id), headers=headers)
    if credential in ("none", "expired", "revoked", "garbage"):
        expected = 401
    else:
        expected = allowed if Role(credential) >= least else 403
    assert answer.status_code == expected, answer.text
    if expected == 401:
        assert answer.headers["www-authenticate"] == "Bearer"
    if expected in (401, 403):
        assert "error" in answer.json()
        [entry] = served.audit.query(denied=True)
        want = {"none": "denied:unauthenticated", "expired": "denied:token_expired"}.get(credential)
        assert want is None or entry.result == want
        assert entry.peer == "127.0.0.1"


def test_healthz_needs_no_credentials_and_says_nothing_else(served: Served) -> None:
    answer = served.client().get("/healthz")
    assert answer.status_code == 200 and answer.text == "ok\n"
    assert served.audit.query() == []


# ---------------------------------------------------------------------- run now, cancel


def test_run_now_over_http_is_recorded_with_the_tokens_user_and_audited(served: Served) -> None:
    client = served.client()
    token = served.token(Role.OPERATOR, user="ci-bot")
    run_ids = []
    with served.daemon.control.bus.subscribe(["nightly"]) as events:
        for attempt in (1, 2):
            answer = client.post(
                "/api/jobs/nightly/runs", headers=bearer(token), json={"target": "prod", "select": "orders+"}
            )
            assert answer.status_code == 202, answer.text
            run_ids.append(answer.json()["run_id"])
            wait_finished(events, run_ids[-1])
            assert len(served.app.history.runs("nightly", limit=None)) == attempt
    rows = {row["run_id"]: row for row in served.app.history.runs("nightly", limit=None)}
    assert [(rows[r]["triggered_by"], rows[r]["trigger"], rows[r]["outcome"]) for r in run_ids] == [
        ("ci-bot", "manual", "succeeded")
    ] * 2
    assert {rows[r]["target_override"] for r in run_ids} == {"prod"}
    audit = [(e.user, e.action, e.result, e.run_id) for e in reversed(served.audit.query())]
    assert audit == [("ci-bot", "run", "allowed", run_id) for run_id in run_ids]
    # The report and the log of the run, as the API gives them.
    report = client.get(f"/api/runs/{run_ids[0]}", headers=bearer(token)).json()
    assert report["run_id"] == run_ids[0] and report["triggered_by"] == "ci-bot"
    log = client.get(f"/api/runs/{run_ids[0]}/log", headers=bearer(token))
    assert log.text == "hello from nightly\nbye\n" and log.headers["x-run-running"] == "0"
    rest = client.get(f"/api/runs/{run_ids[0]}/log?offset=19", headers=bearer(token))
    assert rest.text == "bye\n" and rest.headers["x-log-offset"] == str(len(log.content))


def test_no_plaintext_token_is_left_in_history_db_after_use(served: Served) -> None:
    token = served.token(Role.OPERATOR, user="ci-bot")
    client = served.client()
    assert client.post("/api/jobs/nightly/runs", headers=bearer(token)).status_code == 202
    assert client.get("/api/jobs", headers=bearer("dbts_12345678_wrong" + token[-10:])).status_code == 401
    secret = token.split("_", 2)[2]
    for path in served.app.history.path.parent.glob("history.db*"):
        assert secret.encode() not in path.read_bytes(), path


def test_a_refused_run_now_is_409_with_the_daemons_reason_and_audited_as_an_error(served: Served) -> None:
    served.runs.hold.add("slow")
    client = served.client()
    token = served.token(Role.OPERATOR, user="op")
    first = client.post("/api/jobs/slow/runs", headers=bearer(token))
    assert first.status_code == 202
    assert served.runs.started.acquire(timeout=TIMEOUT)
    second = client.post("/api/jobs/slow/runs", headers=bearer(token))
    assert second.status_code == 409 and second.json()["code"] == "running"
    assert "already running" in second.json()["error"]
    unknown = client.post("/api/jobs/nope/runs", headers=bearer(token))
    assert unknown.status_code == 404 and unknown.json()["code"] == "unknown-job"
    bad = client.post("/api/jobs/slow/runs", headers=bearer(token), content=b"[1]")
    assert bad.status_code == 400
    # Cancel the running one: it ends cancelled, the cancel audited with its run id.
    run_id = first.json()["run_id"]
    with served.daemon.control.bus.subscribe(["slow"]) as events:
        cancel = client.post(f"/api/runs/{run_id}/cancel", headers=bearer(token))
        assert cancel.status_code == 202 and cancel.json() == {"cancelled": [run_id]}
        wait_finished(events, run_id)
    row = served.app.history.get(run_id)
    assert row is not None and row["outcome"] == "cancelled" and "cancelled by op" in row["reason"]
    results = [(e.action, e.result, e.run_id) for e in reversed(served.audit.query())]
    assert results[0] == ("run", "allowed", run_id)
    assert results[1][:2] == ("run", "error") and results[-1] == ("cancel", "allowed", run_id)
    assert client.post("/api/runs/no-such-run/cancel", headers=bearer(token)).status_code == 404


def test_api_runs_under_max_parallel_wait_for_a_slot(served: Served) -> None:
    served.runs.hold.update({"slow", "nightly", "sales_daily"})
    client = served.client()
    token = served.token(Role.ADMIN, user="boss")
    answers = [client.post(f"/api/jobs/{job}/runs", headers=bearer(token)) for job in ("slow", "nightly")]
    assert [a.json()["waiting"] for a in answers] == [0, 0]
    for _ in answers:
        assert served.runs.started.acquire(timeout=TIMEOUT)
    third = client.post("/api/jobs/sales_daily/runs", headers=bearer(token))
    assert third.status_code == 202 and third.json()["waiting"] == 1  # max_parallel 2
    assert [entry.job for entry in served.daemon.queued_runs()] == ["sales_daily"]
    # A waiting run can be cancelled through the API too: it leaves the queue, recorded skipped.
    queued_id = third.json()["run_id"]
    with served.daemon.control.bus.subscribe(["sales_daily"]) as events:
        assert client.post(f"/api/runs/{queued_id}/cancel", headers=bearer(token)).status_code == 202
        wait_finished(events, queued_id)
    assert served.app.history.get(queued_id)["outcome"] == "skipped"  # type: ignore[index]
    served.runs.release()
    assert served.runs.peak == 2


# ---------------------------------------------------------------------- who may


def test_a_scoped_token_sees_and_runs_only_its_jobs(served: Served) -> None:
    served.finished_run("nightly")
    token = served.token(Role.OPERATOR, user="sales-bot", jobs=["sales_*"])
    client = served.client()
    jobs = client.get("/api/jobs", headers=bearer(token)).json()["jobs"]
    assert [job["name"] for job in jobs] == ["sales_daily"]
    assert jobs[0]["schedule"] and jobs[0]["timezone"] == "UTC"
    assert client.get("/api/jobs/nightly/runs", headers=bearer(token)).status_code == 403
    nightly_run = served.app.history.runs("nightly", limit=1)[0]["run_id"]
    assert client.get(f"/api/runs/{nightly_run}", headers=bearer(token)).status_code == 403
    assert client.post("/api/jobs/nightly/runs", headers=bearer(token)).status_code == 403
    assert client.get("/api/audit", headers=bearer(token)).status_code == 403
    assert client.post("/api/jobs/sales_daily/runs", headers=bearer(token)).status_code == 202
    denied = {(e.action, e.job, e.result) for e in served.audit.query(denied=True)}
    assert ("run", "nightly", "denied:out_of_scope") in denied


PROXY = {"X-Forwarded-User": "dora", "X-Forwarded-Email": "dora@example.com", "X-Forwarded-Groups": "ops"}


def test_proxy_headers_are_believed_from_a_trusted_peer_only(served: Served) -> None:
    trusted = served.client(peer="10.0.0.5")
    assert trusted.get("/api/jobs", headers=PROXY).status_code == 200
    who = trusted.get("/api/whoami", headers=PROXY).json()
    assert who["user"] == "dora" and who["role"] == "operator" and who["source"] == "proxy"
    # A POST from a proxy's user is a browser's: it needs the session's CSRF token.
    refused = trusted.post("/api/jobs/nightly/runs", headers=PROXY)
    assert refused.status_code == 403 and refused.json()["reason"] == "csrf"
    ran = trusted.post("/api/jobs/nightly/runs", headers={**PROXY, "X-CSRF-Token": who["csrf"]})
    assert ran.status_code == 202, ran.text
    # The same headers from any other peer are ignored, X-Forwarded-For naming the proxy or not.
    for headers in (PROXY, {**PROXY, "X-Forwarded-For": "10.0.0.5"}):
        spoofed = served.client(peer="10.9.9.9").post("/api/jobs/nightly/runs", headers=headers)
        assert spoofed.status_code == 401
    results = [(e.user, e.result, e.peer) for e in served.audit.query()]
    assert results[0] == (None, "denied:untrusted_proxy", "10.9.9.9")
    assert ("dora", "denied:csrf", "10.0.0.5") in results and ("dora", "allowed", "10.0.0.5") in results
    run = served.app.history.get(ran.json()["run_id"])
    assert run is None or run["triggered_by"] == "dora"


def test_a_proxy_user_without_a_mapped_group_is_403_not_401(served: Served) -> None:
    answer = served.client(peer="10.0.0.5").get("/api/jobs", headers={"X-Forwarded-User": "eve"})
    assert answer.status_code == 403 and answer.json()["reason"] == "no_role"


def test_read_only_refuses_every_mutation_and_still_serves_reading(served: Served) -> None:
    run_id = served.finished_run()
    client = served.client(settings=replace(SETTINGS, read_only=True))
    token = served.token(Role.ADMIN, user="boss")
    assert client.get("/api/jobs", headers=bearer(token)).status_code == 200
    for path in ("/api/jobs/nightly/runs", f"/api/runs/{run_id}/cancel"):
        answer = client.post(path, headers=bearer(token))
        assert answer.status_code == 403 and answer.json()["reason"] == "read_only"
    assert len(served.app.history.runs("nightly", limit=None)) == 1
    assert [e.result for e in served.audit.query()] == ["denied:read_only"] * 2


def test_the_token_lifecycle_through_http(served: Served) -> None:
    client = served.client()
    token, info = served.tokens.create("temp", Role.VIEWER, expires_in=3600)
    assert client.get("/api/jobs", headers=bearer(token)).status_code == 200  # created, used
    assert served.tokens.get(info.id).last_used_at is not None  # type: ignore[union-attr]
    served.site.clock.advance(3601)  # type: ignore[attr-defined]
    assert client.get("/api/jobs", headers=bearer(token)).status_code == 401  # expired
    other, other_info = served.tokens.create("temp2", Role.VIEWER)
    assert client.get("/api/jobs", headers=bearer(other)).status_code == 200
    served.tokens.revoke(other_info.id)
    assert client.get("/api/jobs", headers=bearer(other)).status_code == 401  # revoked
    assert [e.result for e in served.audit.query()] == ["denied:token_revoked", "denied:token_expired"]


def test_openapi_lists_every_api_route(served: Served) -> None:
    document = served.client().get("/api/openapi.json", headers=bearer(served.token(Role.VIEWER))).json()
    assert document["openapi"].startswith("3.")
    for path in (
        "/api/jobs",
        "/api/jobs/{job}/runs",
        "/api/runs/{run_id}",
        "/api/runs/{run_id}/log",
        "/api/runs/{run_id}/cancel",
        "/api/audit",
        "/metrics",
        "/healthz",
    ):
        assert path in document["paths"], path
    assert set(document["paths"]["/api/jobs/{job}/runs"]) == {"get", "post"}
