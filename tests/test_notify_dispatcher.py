"""The notifier: events from run ends, rules and `notify:` routing, hygiene kept in history,
delivery on its own thread, every delivery recorded. Real HTTP stand-ins, real SQLite."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from lib.config import parse_config
from lib.history import History
from lib.models import RunOutcome, RunRecord, RunStatus, TriggerKind
from lib.notify.dispatcher import Notifier, build_notifier, run_event
from lib.secrets import SecretMasker
from tests.fakes import FakeClock
from tests.notify_helpers import SECRET, HttpStandIn, deliverer, failing_manifest, failing_report, stand_in

__all__ = ["stand_in"]  # the fixture, imported for pytest

T0 = datetime(2026, 12, 2, 2, 0, tzinfo=UTC)


def config(tmp_path: Path, url: str, rules: str = "", notify: str = "", heartbeat: str = "") -> Any:
    project = tmp_path / "proj"
    project.mkdir(exist_ok=True)
    (project / "dbt_project.yml").write_text("name: p\n")
    import yaml

    data = yaml.safe_load(
        f"""
notifications:
  channels:
    chat: {{type: slack, url: "${{SLACK_URL}}"}}
    hook: {{type: webhook, url: "{url}/hook", secret: "${{HOOK_SECRET}}"}}
  rules:
{rules or "    - {on: [failed, recovered], to: [chat, hook]}"}
jobs:
  nightly:
    every: day at 02:00
    project_dir: {project}
    {notify}
    {heartbeat}
"""
    )
    return parse_config(
        data, base_dir=tmp_path, environ={"SLACK_URL": f"{url}/slack", "HOOK_SECRET": "whsec_" + "a2V5" * 8}
    )


def notifier(tmp_path: Path, cfg: Any, clock: FakeClock) -> tuple[Notifier, History]:
    history = History(tmp_path / "history.db")
    masker = SecretMasker([SECRET, *cfg.notifications.secret_values])
    return build_notifier(cfg, history, masker, clock, deliverer(clock)), history


def finish(history: History, notifier_: Notifier, cfg: Any, run_id: str, minutes: int, report: dict) -> None:
    """Store the run as the execution path does, then hand its report to the notifier."""
    status = RunStatus(report["outcome"])
    start = T0 + timedelta(minutes=minutes)
    history.finish(
        RunRecord(
            "nightly", run_id, TriggerKind.SCHEDULE, RunOutcome(status), start, start + timedelta(seconds=5)
        )
    )
    notifier_.submit_finished(cfg.jobs["nightly"], {**report, "run_id": run_id}, failing_manifest())
    notifier_.wait_idle()


def paths(server: HttpStandIn) -> list[str]:
    """The paths requested, in order within each channel (channels send on their own threads)."""
    return sorted(request.path for request in server.requests)


def to(server: HttpStandIn, path: str) -> list[Any]:
    return [request for request in server.requests if request.path == path]


def test_failure_repeat_other_failure_and_recovery(stand_in: HttpStandIn, tmp_path: Path) -> None:
    clock = FakeClock(T0)
    cfg = config(tmp_path, stand_in.url)
    notify, history = notifier(tmp_path, cfg, clock)
    finish(history, notify, cfg, "r1", 0, failing_report())
    assert paths(stand_in) == ["/hook", "/slack"]
    [hook] = to(stand_in, "/hook")
    assert hook.json()["event"] == "failed" and hook.json()["consecutive_failures"] == 1
    assert hook.headers["webhook-signature"].startswith("v1,")
    assert SECRET not in b"".join(r.body for r in stand_in.requests).decode()

    # The same failing nodes again within repeat_every: held back, counted.
    clock.advance(3600)
    finish(history, notify, cfg, "r2", 60, failing_report())
    assert paths(stand_in) == ["/hook", "/slack"]

    # The run recovers: `recovered` goes out at once, naming how many runs failed.
    clock.advance(3600)
    finish(history, notify, cfg, "r3", 120, failing_report(outcome="succeeded", nodes=[]))
    assert paths(stand_in) == ["/hook", "/hook", "/slack", "/slack"]
    recovered = to(stand_in, "/hook")[1].json()
    assert recovered["event"] == "recovered"
    # And a failure after the recovery is news again, even with the same nodes.
    finish(history, notify, cfg, "r4", 180, failing_report())
    assert len(stand_in.requests) == 6

    rows = history.deliveries(job="nightly")
    assert sorted((r["channel"], r["event"], r["status"]) for r in rows if r["run_id"] == "r1") == [
        ("chat", "failed", "delivered"),
        ("hook", "failed", "delivered"),
    ]
    assert {r["run_id"] for r in rows} == {"r1", "r3", "r4"}
    notify.close(5)


def test_after_n_alerts_from_the_nth_failure_in_a_row(stand_in: HttpStandIn, tmp_path: Path) -> None:
    clock = FakeClock(T0)
    cfg = config(tmp_path, stand_in.url, rules="    - {on: [failed], to: [chat], after: 2}")
    notify, history = notifier(tmp_path, cfg, clock)
    finish(history, notify, cfg, "r1", 0, failing_report())
    assert stand_in.requests == []
    finish(history, notify, cfg, "r2", 60, failing_report())
    assert paths(stand_in) == ["/slack"]
    notify.close(5)


def test_a_jobs_notify_is_a_rule_of_its_own_with_the_default_events(
    stand_in: HttpStandIn, tmp_path: Path
) -> None:
    clock = FakeClock(T0)
    cfg = config(tmp_path, stand_in.url, rules="    []", notify="notify: [hook]")
    notify, history = notifier(tmp_path, cfg, clock)
    finish(history, notify, cfg, "r1", 0, failing_report(outcome="succeeded", nodes=[]))
    assert stand_in.requests == []  # succeeded is not a default event
    finish(history, notify, cfg, "r2", 60, failing_report(outcome="timed_out"))
    assert paths(stand_in) == ["/hook"] and stand_in.requests[0].json()["event"] == "timed_out"
    notify.close(5)


def test_a_job_heartbeat_pings_start_and_end(stand_in: HttpStandIn, tmp_path: Path) -> None:
    clock = FakeClock(T0)
    cfg = config(tmp_path, stand_in.url, rules="    []", heartbeat=f"heartbeat: {stand_in.url}/ping/abc")
    notify, history = notifier(tmp_path, cfg, clock)
    notify.submit_started(cfg.jobs["nightly"], {"job": "nightly", "run_id": "r1"})
    finish(history, notify, cfg, "r1", 0, failing_report())
    assert [r.path.split("?")[0] for r in stand_in.requests] == ["/ping/abc/start", "/ping/abc/fail"]
    assert all("rid=" in p for p in paths(stand_in))
    notify.close(5)


def test_a_dead_endpoint_holds_up_neither_the_caller_nor_another_channel(
    stand_in: HttpStandIn, tmp_path: Path
) -> None:
    """submit_* only enqueue: the caller (a run's thread) goes on while Slack's endpoint
    holds the request, and the webhook, on its own sender thread, is delivered meanwhile."""
    release = threading.Event()
    held = threading.Event()

    def hold(received: Any) -> None:
        if received.path == "/slack":
            held.set()
            release.wait(10)
        return None

    stand_in.check = hold
    clock = FakeClock(T0)
    cfg = config(tmp_path, stand_in.url, rules="    - {on: [failed], to: [chat, hook]}")
    notify, history = notifier(tmp_path, cfg, clock)
    history.finish(
        RunRecord(
            "nightly", "r1", TriggerKind.SCHEDULE, RunOutcome(RunStatus.FAILED), T0, T0 + timedelta(seconds=1)
        )
    )
    notify.submit_finished(cfg.jobs["nightly"], failing_report(run_id="r1"), None)
    assert held.wait(10)  # Slack's sender is inside its request, the caller went on…
    for _ in range(200):  # …and the webhook is delivered while Slack still holds
        if history.deliveries(run_id="r1"):
            break
        threading.Event().wait(0.05)
    assert [(r["channel"], r["status"]) for r in history.deliveries(run_id="r1")] == [("hook", "delivered")]
    release.set()
    notify.wait_idle()
    assert sorted(r["channel"] for r in history.deliveries(run_id="r1")) == ["chat", "hook"]
    notify.close(5)


def test_run_event_tells_warned_from_succeeded() -> None:
    assert run_event({"outcome": "succeeded", "nodes": [{"status": "warn"}]}) == "warned"
    assert run_event({"outcome": "succeeded", "nodes": [{"status": "pass"}]}) == "succeeded"
    assert run_event({"outcome": "error"}) == "failed"


def test_a_missed_deadline_sends_late_once_per_fire_time(stand_in: HttpStandIn, tmp_path: Path) -> None:
    clock = FakeClock(T0)
    cfg = config(tmp_path, stand_in.url, rules="    - {on: [late], to: [hook]}", notify='deadline: "07:00"')
    notify, history = notifier(tmp_path, cfg, clock)
    job = cfg.jobs["nightly"]  # every day at 02:00 UTC, deadline 07:00 UTC
    history.finish(  # yesterday's run succeeded in time, today's did not run
        RunRecord(
            "nightly",
            "r0",
            TriggerKind.SCHEDULE,
            RunOutcome(RunStatus.SUCCEEDED),
            datetime(2026, 12, 1, 2, 0, tzinfo=UTC),
            datetime(2026, 12, 1, 2, 5, tzinfo=UTC),
        )
    )
    assert notify.check_deadlines(datetime(2026, 12, 2, 6, 59, tzinfo=UTC)) == []  # yesterday's was met
    assert notify.check_deadlines(datetime(2026, 12, 2, 7, 0, tzinfo=UTC)) == ["nightly"]
    assert notify.check_deadlines(datetime(2026, 12, 2, 7, 1, tzinfo=UTC)) == []  # said once
    notify.wait_idle()
    [late] = stand_in.requests
    body = late.json()
    assert body["event"] == "late" and body["job"] == job.name and "07:00" in body["reason"]
    notify.close(5)


def test_a_senders_queue_is_bounded_and_drops_the_oldest(caplog: Any) -> None:
    import logging

    from lib.notify import dispatcher

    worker = dispatcher.Worker("notify-test")
    gate, busy, done = threading.Event(), threading.Event(), []
    worker.put(lambda: (busy.set(), gate.wait(10)))
    assert busy.wait(10)  # the thread is inside the first task: the rest queue up
    with caplog.at_level(logging.ERROR, logger="dbt_scheduler"):
        for i in range(dispatcher.MAX_QUEUED + 5):
            worker.put(lambda i=i: done.append(i))
    gate.set()
    worker.join()
    assert len(done) <= dispatcher.MAX_QUEUED and done[-1] == dispatcher.MAX_QUEUED + 4  # the newest kept
    assert sum("dropping the oldest" in r.getMessage() for r in caplog.records) == 1
    assert worker.close(5)


def test_quiet_hours_hold_a_failure_to_the_windows_end(stand_in: HttpStandIn, tmp_path: Path) -> None:
    clock = FakeClock(datetime(2026, 12, 2, 23, 0, tzinfo=UTC))  # inside 22:00-07:00 UTC
    rule = '    - {on: [failed, succeeded], to: [hook], quiet_hours: {from: "22:00", to: "07:00"}}'
    cfg = config(tmp_path, stand_in.url, rules=rule)
    notify, history = notifier(tmp_path, cfg, clock)
    held: list[tuple[float, Any]] = []
    notify._later_runner = lambda delay, send: held.append((delay, send))
    finish(history, notify, cfg, "r1", 0, failing_report(outcome="succeeded", nodes=[]))
    finish(history, notify, cfg, "r2", 60, failing_report())
    assert stand_in.requests == []  # succeeded dropped, failed held
    [(delay, send)] = held
    assert delay == 8 * 3600  # 23:00 → 07:00
    send()
    notify.wait_idle()
    assert [r.json()["event"] for r in stand_in.requests] == ["failed"]
    notify.close(5)


def test_a_recovery_clears_every_rules_memory_also_one_without_recovered(
    stand_in: HttpStandIn, tmp_path: Path
) -> None:
    clock = FakeClock(T0)
    cfg = config(tmp_path, stand_in.url, rules="    - {on: [failed], to: [hook]}")
    notify, history = notifier(tmp_path, cfg, clock)
    finish(history, notify, cfg, "r1", 0, failing_report())
    finish(history, notify, cfg, "r2", 60, failing_report(outcome="succeeded", nodes=[]))
    finish(history, notify, cfg, "r3", 120, failing_report())  # the same nodes, an hour later
    assert [r.json()["event"] for r in stand_in.requests] == ["failed", "failed"]
    notify.close(5)


def test_a_deadline_missed_before_a_new_job_existed_is_not_late(
    stand_in: HttpStandIn, tmp_path: Path
) -> None:
    clock = FakeClock(datetime(2026, 12, 2, 9, 0, tzinfo=UTC))  # today's 07:00 is past
    cfg = config(tmp_path, stand_in.url, rules="    - {on: [late], to: [hook]}", notify='deadline: "07:00"')
    notify, _ = notifier(tmp_path, cfg, clock)
    assert notify.check_deadlines(clock.now()) == []  # the job was just added: no history at all
    clock.set(datetime(2026, 12, 3, 7, 0, tzinfo=UTC))
    assert notify.check_deadlines(clock.now()) == ["nightly"]  # tomorrow's, watched, is late
    notify.close(5)
