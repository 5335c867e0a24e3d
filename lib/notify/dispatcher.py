"""Alerts from jobs.yaml's `notifications:`: which events a run makes, which rules and
channels they go to, and the worker that delivers them.

A run's end becomes one event (`succeeded`, `warned`, `failed`, `timed_out`,
`failed_to_start`, `cancelled`, `skipped`), plus `recovered` when it is the first
non-failing run after one or more failing ones. Every rule whose job globs and events
match sends it to its channels, a job's `notify:` being a rule of its own; each rule
keeps its own memory of the job's last alert (history's `alert_state`), so its
`after`, `repeat_every` and quiet hours apply to it alone (lib/notify/hygiene.py).

Delivery happens on one worker thread of its own with its own queue: a slow or dead
endpoint never delays a dispatch or holds a run slot, and every delivery is recorded
in history (`deliveries`) and logged at error level when it fails for good. A run is
never failed by its alerts.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from lib.clock import Clock, SystemClock
from lib.config.notify_checks import matches
from lib.models import AlertRule, Channel, Job
from lib.notify import hygiene
from lib.notify.deadlines import late_fire_time
from lib.notify.delivery import Deliverer, DeliveryResult
from lib.notify.message import FAILURE_EVENTS, Alert, build_alert

log = logging.getLogger("dbt_scheduler")
# Alerts one channel's sender holds at most: a dead endpoint takes up to ~47 s an alert
# (4 attempts of 10 s and backoff), so a job every minute would queue without end.
MAX_QUEUED = 1000
# The alert_state row that remembers, per job, the fire time last reported `late`.
DEADLINE_STATE = "deadline"

# What a job's `heartbeat:` is pinged for: its start, and its end (success or /fail). A
# cancelled run is neither: the check's own schedule notices the missing end.
HEARTBEAT_EVENTS = frozenset({"started", "succeeded", "warned", "failed", "timed_out", "failed_to_start"})
# A run's outcome → the event it makes (a scheduler crash is a failure to its readers).
OUTCOME_EVENTS = {
    "succeeded": "succeeded",
    "failed": "failed",
    "error": "failed",
    "timed_out": "timed_out",
    "failed_to_start": "failed_to_start",
    "cancelled": "cancelled",
    "skipped": "skipped",
}


@dataclass(frozen=True)
class Route:
    """A rule with the id its memory is kept under: `rules[<i>]` or `jobs.<name>.notify`."""

    key: str
    rule: AlertRule
    only_job: str | None = None

    def covers(self, job: str) -> bool:
        return (self.only_job is None or job == self.only_job) and matches(self.rule, job)

    def applies(self, job: str, event: str) -> bool:
        return event in self.rule.on and self.covers(job)


def routes(rules: tuple[AlertRule, ...], jobs: Mapping[str, Job]) -> list[Route]:
    found = [Route(f"rules[{i}]:{','.join(rule.to)}", rule) for i, rule in enumerate(rules)]
    for job in jobs.values():
        if job.notify:
            found.append(Route(f"jobs.{job.name}.notify", AlertRule(to=job.notify), only_job=job.name))
    return found


def run_event(report: Mapping[str, Any]) -> str | None:
    """The event a finished run's report makes: `warned` for a success with warn nodes."""
    event = OUTCOME_EVENTS.get(str(report.get("outcome")))
    if event == "succeeded" and any(node.get("status") == "warn" for node in report.get("nodes") or ()):
        return "warned"
    return event


class Worker:
    """A queue and the thread that works it off; a task that raises is logged, and the
    thread goes on."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._queue: queue.Queue[Callable[[], None] | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.dropped = 0  # tasks dropped since the queue was last below MAX_QUEUED

    def start(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._work, name=self.name, daemon=True)
                self._thread.start()

    def put(self, task: Callable[[], None]) -> None:
        """Queues `task`; past MAX_QUEUED waiting (a dead endpoint and a frequent job) the
        oldest is dropped, said once per overflow, so memory stays bounded."""
        self.start()
        if self._queue.qsize() >= MAX_QUEUED:
            try:
                self._queue.get_nowait()
                self._queue.task_done()
                self.dropped += 1
                if self.dropped == 1:
                    log.error("%s: %d alerts waiting: dropping the oldest ones", self.name, MAX_QUEUED)
            except queue.Empty:
                pass
        else:
            self.dropped = 0
        self._queue.put(task)

    def _work(self) -> None:
        while True:
            task = self._queue.get()
            try:
                if task is None:
                    return
                task()
            except Exception:  # a bug in an alert must not end the worker, nor touch runs
                log.exception("%s: an alert could not be sent", self.name)
            finally:
                self._queue.task_done()

    def join(self) -> None:
        self._queue.join()

    def close(self, timeout: float) -> bool:
        """What is queued gets up to `timeout` seconds; True when the thread finished it."""
        if self._thread is None:
            return True
        self._queue.put(None)
        self._thread.join(timeout)
        return not self._thread.is_alive()


class Notifier:
    """Routes events to channels and delivers them on its own thread.

    `submit_*` only enqueue (microseconds on the run's thread); `close(timeout)` lets the
    queue drain for at most `timeout` seconds (run-now before it exits, the daemon at
    shutdown), then gives up on what is left, logging it.
    """

    def __init__(
        self,
        *,
        channels: Mapping[str, Channel],
        rules: tuple[AlertRule, ...],
        jobs: Mapping[str, Job],
        history: Any,
        mask: Callable[[str], str],
        clock: Clock | None = None,
        deliverer: Deliverer | None = None,
        aws_clients: Callable[[Channel], Any] | None = None,
        base_url: str | None = None,
        later: Callable[[float, Callable[[], None]], None] | None = None,
    ) -> None:
        self.channels = channels
        self.routes = routes(rules, jobs)
        self.jobs = jobs
        self.history = history
        self.mask = mask
        self.clock = clock or SystemClock()
        self.deliverer = deliverer or Deliverer(mask=mask, clock=self.clock)
        self._aws_clients = aws_clients
        self.base_url = base_url
        # Deadlines that passed before this moment count only for jobs that existed then.
        self.watching_since = self.clock.now()
        # Runs a function after a delay (quiet hours); a timer thread unless injected.
        self._later_runner = later or _timer
        # Routing (hygiene, history) on one thread; sending on one thread per channel,
        # so a dead endpoint holds up its own channel only, never a run or another channel.
        self._router = Worker("notifier")
        self._senders: dict[str, Worker] = {}
        self._lock = threading.Lock()

    def reconfigure(self, config: Any, mask: Callable[[str], str]) -> None:
        """A reloaded jobs.yaml's channels, rules and jobs; what is queued goes out as it was."""
        with self._lock:
            self.channels = config.notifications.channels
            self.routes = routes(config.notifications.rules, config.jobs)
            self.jobs = config.jobs
            self.mask = mask
            self.deliverer.mask = mask
            self._aws_clients = sns_clients(config.aws)
            self.base_url = config.web.base_url

    @property
    def configured(self) -> bool:
        return bool(self.routes) or any(job.heartbeat for job in self.jobs.values())

    # ------------------------------------------------------------------ the workers

    def start(self) -> None:
        self._router.start()

    def _submit(self, task: Callable[[], None]) -> None:
        self._router.put(task)

    def _sender(self, channel: str) -> Worker:
        """The channel's own sender thread, made on first use."""
        with self._lock:
            worker = self._senders.get(channel)
            if worker is None:
                worker = self._senders[channel] = Worker(f"notify-{channel}")
            return worker

    def close(self, timeout: float) -> bool:
        """Delivers what is queued for up to `timeout` seconds in all; True when all went out."""
        deadline = self.clock.monotonic() + timeout
        done = self._router.close(timeout)
        with self._lock:
            senders = list(self._senders.values())
        for worker in senders:
            done = worker.close(max(0.0, deadline - self.clock.monotonic())) and done
        if not done:
            self.deliverer.stop.set()  # a backoff wait ends now: the delivery gives up
            log.error("notifier: gave up on alerts still queued at shutdown")
        return done

    def wait_idle(self) -> None:
        """Blocks until everything submitted so far is delivered (tests, `notify test`)."""
        self._router.join()
        with self._lock:
            senders = list(self._senders.values())
        for worker in senders:
            worker.join()

    # ------------------------------------------------------------------ what comes in

    def submit_started(self, job: Job, report: Mapping[str, Any]) -> None:
        self._submit(lambda: self._deliver(job, "started", dict(report), None, ()))

    def submit_finished(
        self, job: Job, report: Mapping[str, Any], manifest: Mapping[str, Any] | Path | None
    ) -> None:
        """The run's end: its event, and `recovered` when it ends a failing streak. A
        manifest given as a path is read on the worker (it can be megabytes)."""
        data = dict(report)
        self._submit(lambda: self._finished(job, data, _load_manifest(manifest)))

    def submit_late(self, job: Job, fire_time: datetime, deadline: datetime) -> None:
        report = {
            "job": job.name,
            "outcome": None,
            "reason": f"no successful run since the fire time {fire_time:%Y-%m-%d %H:%M} UTC by the deadline "
            f"{deadline.astimezone(job.timezone):%H:%M %Z}",
            "scheduled_for": fire_time.isoformat(),
        }
        self._submit(lambda: self._deliver(job, "late", report, None, ()))

    def check_deadlines(self, now: datetime) -> list[str]:
        """Submits `late` for each enabled job past its `deadline:` with no success since
        the fire time it guards, once per fire time (remembered in history, so a restart
        does not say it again); returns the jobs found late now."""
        late: list[str] = []
        for job in self.jobs.values():
            if job.deadline is None or not job.enabled:
                continue
            found = late_fire_time(
                job.trigger, job.deadline, job.timezone, now, self.history.last_success(job.name)
            )
            if found is None:
                continue
            fire, due_by = found
            if due_by < self.watching_since and not self.history.ran_before(job.name, fire):
                # Missed before this process watched, by a job that did not exist then (just
                # added to jobs.yaml): not late. One that did exist is (the box was down).
                continue
            said = self.history.alert_state(DEADLINE_STATE, job.name) or {}
            if said.get("last_key") == fire.isoformat():
                continue
            self.history.set_alert_state(DEADLINE_STATE, job.name, fire.isoformat(), now, 0)
            self.submit_late(job, fire, due_by)
            late.append(job.name)
        return late

    # ------------------------------------------------------------------ routing and delivery

    def _finished(self, job: Job, report: dict[str, Any], manifest: Mapping[str, Any] | None) -> None:
        event = run_event(report)
        if event is None:
            return
        run_id = report.get("run_id")
        streak = self.history.failure_streak(job.name, before=run_id) if run_id else []
        if event in FAILURE_EVENTS:
            self._deliver(job, event, report, manifest, streak)
        else:
            self._deliver(job, event, report, manifest, ())
            if streak and event in ("succeeded", "warned"):
                self._deliver(job, "recovered", report, manifest, streak)
                # The incident is over for every rule, also those that do not send
                # `recovered`: the next failure is news, whatever its nodes.
                for route in self.routes:
                    if route.covers(job.name) and "recovered" not in route.rule.on:
                        self._save_state(route.key, job.name, hygiene.AlertState())

    def _deliver(
        self,
        job: Job,
        event: str,
        report: dict[str, Any],
        manifest: Mapping[str, Any] | None,
        streak: Any,
    ) -> None:
        now = self.clock.now()
        if job.heartbeat and event in HEARTBEAT_EVENTS:
            alert = build_alert(event, report, mask=self.mask, manifest=manifest)
            url = job.heartbeat
            self._sender(f"heartbeat.{job.name}").put(
                lambda: self._record(
                    report, job, _channel("healthchecks").send(alert, url, self.deliverer, "heartbeat")
                )
            )
        consecutive = len(streak) + (1 if event in FAILURE_EVENTS else 0)
        for route in self.routes:
            if not route.applies(job.name, event):
                continue
            saved = self.history.alert_state(route.key, job.name) or {}
            state = hygiene.AlertState(
                last_key=saved.get("last_key"),
                last_sent_at=datetime.fromisoformat(saved["last_sent_at"])
                if saved.get("last_sent_at")
                else None,
                suppressed=int(saved.get("suppressed") or 0),
            )
            context = self._context(event, streak, state)
            probe = build_alert(event, report, mask=self.mask, manifest=manifest, **context)
            quiet = route.rule.quiet_hours
            decision = hygiene.decide(
                event,
                probe.failure_key,
                consecutive,
                now,
                state,
                repeat_every=timedelta(seconds=route.rule.repeat_every),
                after=route.rule.after,
                quiet=hygiene.QuietHours(quiet.start, quiet.end, quiet.timezone) if quiet else None,
            )
            if decision.action in ("suppress", "below_after", "drop"):
                log.info("alert %s for %s held back by %s: %s", event, job.name, route.key, decision.action)
                self._save_state(route.key, job.name, decision.state)
                continue
            alert = build_alert(
                event,
                report,
                mask=self.mask,
                manifest=manifest,
                consecutive_failures=consecutive,
                suppressed=decision.suppressed,
                base_url=self.base_url,
                **context,
            )
            if decision.action == "delay" and decision.send_at is not None:
                # Quiet hours: the worker sends it when the window ends; what it
                # remembers is set now, so a repeat meanwhile is still recognised.
                self._save_state(route.key, job.name, decision.state)
                self._later(decision.send_at, lambda a=alert, r=route: self._send_all(r, job, a, report))
                continue
            self._save_state(route.key, job.name, decision.state)
            self._send_all(route, job, alert, report)

    def _context(self, event: str, streak: Any, state: hygiene.AlertState) -> dict[str, Any]:
        if event != "recovered" or not streak:
            return {}
        first = streak[-1]
        started = datetime.fromisoformat(first["started_at"]) if first.get("started_at") else None
        return {
            "failed_runs": len(streak),
            "broken_for_s": (self.clock.now() - started).total_seconds() if started else None,
            "resolves_key": state.last_key,
        }

    def _later(self, when: datetime, send: Callable[[], None]) -> None:
        delay = max(0.0, (when - self.clock.now()).total_seconds())
        self._later_runner(delay, lambda: self._submit(send))

    def _save_state(self, route: str, job: str, state: hygiene.AlertState) -> None:
        self.history.set_alert_state(route, job, state.last_key, state.last_sent_at, state.suppressed)

    def _send_all(self, route: Route, job: Job, alert: Alert, report: Mapping[str, Any]) -> None:
        for name in route.rule.to:
            channel = self.channels.get(name)
            if channel is None:  # validate refuses this; a reload race at most
                continue
            self._sender(name).put(lambda c=channel: self._record(report, job, self.send(c, alert)))

    def send(self, channel: Channel, alert: Alert) -> DeliveryResult | None:
        """One alert to one channel, in its native format; None when the channel has
        nothing to say about this event (PagerDuty and `started`)."""
        settings, kind = channel.settings, channel.type
        module = _channel(kind)  # lib/notify/channels/<type>.py
        if kind in ("slack", "teams"):
            return module.send(alert, str(settings["url"]), self.deliverer, channel.name)
        if kind == "webhook":
            secret = settings.get("secret")
            return module.send(
                alert, str(settings["url"]), self.deliverer, secret and str(secret), channel.name
            )
        if kind == "pagerduty":
            url = str(settings.get("url") or module.EVENTS_URL)
            return module.send(alert, str(settings["routing_key"]), self.deliverer, url, channel.name)
        if kind == "email":
            smtp = module.SmtpSettings(
                host=str(settings["host"]),
                port=int(settings.get("port", 587)),  # type: ignore[call-overload]
                sender=str(settings["from"]),
                to=tuple(settings["to"]),  # type: ignore[arg-type]
                starttls=bool(settings.get("starttls", True)),
                username=settings.get("username"),  # type: ignore[arg-type]
                password=settings.get("password"),  # type: ignore[arg-type]
            )
            return module.send(alert, smtp, self.deliverer, channel.name)
        if kind == "sns":
            if self._aws_clients is None:
                raise ValueError("an sns channel needs AWS clients")
            clients = self._aws_clients(channel)
            return module.send(alert, str(settings["topic_arn"]), clients, self.deliverer, channel.name)
        raise ValueError(f"unknown channel type {channel.type!r}")

    def _record(self, report: Mapping[str, Any], job: Job, result: DeliveryResult | None) -> None:
        if result is None:
            return
        if not result.ok:
            log.error("alert %s for %s not delivered: %s", result.event, job.name, result.error)
        try:
            self.history.record_delivery(
                run_id=report.get("run_id"),
                job=job.name,
                channel=result.channel,
                event=result.event,
                status=result.status,
                attempts=result.attempts,
                error=result.error,
                at=self.clock.now(),
            )
        except Exception as exc:  # a full disk: the delivery happened, its row waits in the log
            log.error("alert %s for %s: delivery not recorded in history: %s", result.event, job.name, exc)


def _channel(kind: str) -> Any:
    """The channel's module, imported when first used: a daemon that sends no e-mail never
    loads smtplib and ssl, nor the webhook's hmac (hashlib loads OpenSSL's libcrypto, +3.6 MB
    of RSS for an idle daemon: bench/idle.py)."""
    import importlib

    return importlib.import_module(f"lib.notify.channels.{kind}")


def _timer(delay: float, function: Callable[[], None]) -> None:
    timer = threading.Timer(delay, function)
    timer.daemon = True  # an alert held for quiet hours does not keep the process alive
    timer.start()


def _load_manifest(manifest: Mapping[str, Any] | Path | None) -> Mapping[str, Any] | None:
    if not isinstance(manifest, Path):
        return manifest
    try:
        with manifest.open(encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, ValueError):
        return None  # no manifest (the run failed before dbt wrote one): no owners named
    return data if isinstance(data, dict) else None


def sample_report(job: str, now: datetime) -> dict[str, Any]:
    """What `notify test CHANNEL` sends: a failed run of `job` that names one failed test."""
    return {
        "job": job,
        "run_id": f"{job}-test-{now:%Y%m%dT%H%M%SZ}",
        "outcome": "failed",
        "trigger": "manual",
        "triggered_by": "notify test",
        "started_at": now.isoformat(),
        "duration_s": 1.0,
        "reason": "a sample alert from `scheduler.py notify test`: nothing actually ran",
        "counts": {"error": 1, "skipped": 1},
        "nodes": [
            {
                "unique_id": "test.example.not_null_orders_id",
                "name": "not_null_orders_id",
                "resource_type": "test",
                "status": "fail",
                "message": "Got 3 results, configured to fail if != 0",
                "failures": 3,
            },
            {
                "unique_id": "model.example.orders_summary",
                "name": "orders_summary",
                "resource_type": "model",
                "status": "skipped",
                "skipped_because": ["test.example.not_null_orders_id"],
            },
        ],
    }


def sns_clients(aws: Any) -> Callable[[Channel], Any]:
    """AWS clients for an SNS channel: its own region and endpoint, else the `aws:` section's,
    else the region in the topic's ARN (arn:aws:sns:<region>:…)."""
    from lib.aws.clients import AwsClients
    from lib.models import AwsSettings

    cache: dict[tuple[str, str | None], AwsClients] = {}

    def clients(channel: Channel) -> AwsClients:
        settings = channel.settings
        arn_region = (
            str(settings["topic_arn"]).split(":")[3] if str(settings["topic_arn"]).count(":") >= 5 else ""
        )
        region = str(settings.get("region") or arn_region or (aws.region if aws else ""))
        endpoint = settings.get("endpoint_url") or (aws.endpoint_url if aws else None)
        key = (region, str(endpoint) if endpoint else None)
        if key not in cache:
            cache[key] = AwsClients(AwsSettings(region=region, endpoint_url=key[1]))
        return cache[key]

    return clients


def build_notifier(
    config: Any,
    history: Any,
    mask: Callable[[str], str],
    clock: Clock | None = None,
    deliverer: Deliverer | None = None,
) -> Notifier:
    """The notifier for a Config (`notifications:`, the jobs' `notify` and `heartbeat`)."""
    return Notifier(
        deliverer=deliverer,
        channels=config.notifications.channels,
        rules=config.notifications.rules,
        jobs=config.jobs,
        history=history,
        mask=mask,
        clock=clock,
        aws_clients=sns_clients(config.aws),
        # The run page of the web UI; alerts link to <base_url>/runs/<run id>.
        base_url=config.web.base_url,
    )
