"""Metrics: the Prometheus text, parsed back, against a real History filled by a real
RunService; the node_exporter textfile written atomically."""

from __future__ import annotations

import logging
import os
import threading
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from prometheus_client.parser import text_string_to_metric_families

from lib.execution import RunService
from lib.history import History
from lib.models import Job, RunOutcome, RunStatus, TriggerKind
from lib.triggers import parse_cron, parse_every
from lib.web.metrics import Metrics, TextfileWriter
from tests.fakes import FakeClock, FakeRunner

T0 = datetime(2026, 3, 1, 6, 0, tzinfo=UTC)
REPO = Path(__file__).resolve().parents[1]
UTC_ZONE = ZoneInfo("UTC")


def job(name: str, runner: str = "ok", enabled: bool = True, every: str | None = None) -> Job:
    trigger = parse_every(every, UTC_ZONE) if every else parse_cron("0 6 * * *", UTC_ZONE)
    return Job(
        name=name, trigger=trigger, timezone=UTC_ZONE, runner=runner, project_dir=Path("."), enabled=enabled
    )


JOBS = {
    "nightly": job("nightly"),
    "hourly": job("hourly", runner="failing", every="hour"),
    "old": job("old", enabled=False),
}


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


@pytest.fixture
def history(tmp_path: Path) -> History:
    return History(tmp_path / "state" / "history.db")


@pytest.fixture
def service(tmp_path: Path, history: History, clock: FakeClock) -> RunService:
    runners = {
        "ok": FakeRunner(RunOutcome(RunStatus.SUCCEEDED), duration=42.0, clock=clock),
        "failing": FakeRunner(RunOutcome(RunStatus.FAILED, exit_code=1), duration=7.0, clock=clock),
    }
    return RunService(
        state_dir=tmp_path / "state", runners=runners, history=history, clock=clock, base_env={}
    )


def families(metrics: Metrics) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """name → {sorted labels → value}, for every sample of the text."""
    found: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(metrics.text().decode("utf-8")):
        for sample in family.samples:
            found.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return found


def run(service: RunService, clock: FakeClock, name: str, late: float = 0.0) -> None:
    """A scheduled run of `name` due now, started `late` seconds after its fire time."""
    due = clock.now()
    clock.advance(late)
    request = service.new_request(JOBS[name], TriggerKind.SCHEDULE, scheduled_for=due)
    service.execute(request)


def test_metrics_from_history_and_from_runs_as_they_end(
    service: RunService, history: History, clock: FakeClock
) -> None:
    metrics = Metrics(history, lambda: JOBS, clock)
    service.listeners.append(metrics.observe_run)
    run(service, clock, "nightly", late=0.02)  # 42 s, succeeded
    run(service, clock, "nightly", late=0.5)  # again: 42 s, succeeded
    second_success = clock.now()
    run(service, clock, "hourly", late=3.0)  # 7 s, failed
    run(service, clock, "hourly")  # again
    service.skip(
        service.new_request(JOBS["nightly"], TriggerKind.SCHEDULE, scheduled_for=clock.now()), "overlap"
    )

    found = families(metrics)
    assert found["dbt_scheduler_runs"] == {
        (("job", "hourly"), ("outcome", "failed")): 2.0,
        (("job", "nightly"), ("outcome", "skipped")): 1.0,
        (("job", "nightly"), ("outcome", "succeeded")): 2.0,
    }
    assert found["dbt_scheduler_last_success_timestamp_seconds"] == {
        (("job", "nightly"),): second_success.timestamp()
    }
    assert found["dbt_scheduler_running_runs"] == {
        (("job", "hourly"),): 0.0,
        (("job", "nightly"),): 0.0,
        (("job", "old"),): 0.0,
    }
    now = clock.now()
    assert found["dbt_scheduler_next_fire_timestamp_seconds"] == {
        (("job", "hourly"),): JOBS["hourly"].trigger.next_after(now).timestamp(),
        (("job", "nightly"),): JOBS["nightly"].trigger.next_after(now).timestamp(),
    }  # the disabled job has none

    # Observed as the runs ended: the skip is not a run.
    durations = found["dbt_scheduler_run_duration_seconds_count"]
    assert durations == {(("job", "hourly"),): 2.0, (("job", "nightly"),): 2.0}
    assert found["dbt_scheduler_run_duration_seconds_sum"] == {
        (("job", "hourly"),): 14.0,
        (("job", "nightly"),): 84.0,
    }
    buckets = found["dbt_scheduler_run_duration_seconds_bucket"]
    assert buckets[(("job", "nightly"), ("le", "30.0"))] == 0.0
    assert buckets[(("job", "nightly"), ("le", "60.0"))] == 2.0
    assert buckets[(("job", "hourly"), ("le", "5.0"))] == 0.0
    assert buckets[(("job", "hourly"), ("le", "15.0"))] == 2.0
    lag = found["dbt_scheduler_dispatch_lag_seconds_bucket"]
    assert found["dbt_scheduler_dispatch_lag_seconds_count"] == {(): 4.0}
    assert lag[(("le", "0.025"),)] == 2.0  # the 0.02 s and the on-time one
    assert lag[(("le", "0.5"),)] == 3.0
    assert lag[(("le", "5.0"),)] == 4.0
    assert found["dbt_scheduler_dispatch_lag_seconds_sum"][()] == pytest.approx(3.52)
    assert "process_resident_memory_bytes" in found  # the process' own figures


def test_a_running_run_and_failed_deliveries_are_counted(history: History, clock: FakeClock) -> None:
    from lib.models import RunRequest

    history.start(RunRequest(JOBS["nightly"], "r-running", TriggerKind.MANUAL), T0, None)
    for channel, status in [
        ("chat", "failed"),
        ("chat", "failed"),
        ("pager", "delivered"),
        ("pager", "failed"),
    ]:
        history.record_delivery(
            run_id=None,
            job="nightly",
            channel=channel,
            event="failed",
            status=status,
            attempts=4,
            error="x",
            at=T0,
        )
    found = families(Metrics(history, lambda: JOBS, clock, process=False))
    assert found["dbt_scheduler_running_runs"][(("job", "nightly"),)] == 1.0
    assert found["dbt_scheduler_notification_failures"] == {
        (("channel", "chat"),): 2.0,
        (("channel", "pager"),): 1.0,
    }
    assert "dbt_scheduler_runs" not in found  # a running row is not a finished run
    assert "process_resident_memory_bytes" not in found


def test_a_job_added_by_a_reload_is_seen_at_the_next_scrape(history: History, clock: FakeClock) -> None:
    jobs = {"nightly": JOBS["nightly"]}
    metrics = Metrics(history, lambda: jobs, clock, process=False)
    assert set(families(metrics)["dbt_scheduler_running_runs"]) == {(("job", "nightly"),)}
    jobs = {**jobs, "hourly": JOBS["hourly"]}
    assert set(families(metrics)["dbt_scheduler_running_runs"]) == {
        (("job", "nightly"),),
        (("job", "hourly"),),
    }


def test_two_metrics_objects_do_not_share_numbers(
    history: History, clock: FakeClock, service: RunService
) -> None:
    first = Metrics(history, lambda: JOBS, clock, process=False)
    second = Metrics(history, lambda: JOBS, clock, process=False)
    service.listeners.append(first.observe_run)
    run(service, clock, "nightly")
    run(service, clock, "nightly")
    assert families(first)["dbt_scheduler_run_duration_seconds_count"] == {(("job", "nightly"),): 2.0}
    assert "dbt_scheduler_run_duration_seconds_count" not in families(second)


def test_the_textfile_is_replaced_whole_never_written_in_place(
    tmp_path: Path, history: History, clock: FakeClock, service: RunService
) -> None:
    metrics = Metrics(history, lambda: JOBS, clock, process=False)
    service.listeners.append(metrics.observe_run)
    path = tmp_path / "textfile" / "dbt_scheduler.prom"
    metrics.write_textfile(path)
    first_inode = path.stat().st_ino
    first = path.read_text()
    assert "dbt_scheduler_running_runs" in first
    # A reader holding the old file keeps reading the old, whole file after a rewrite.
    with open(path) as held:
        run(service, clock, "nightly")
        run(service, clock, "nightly")
        metrics.write_textfile(path)
        assert held.read() == first
    assert path.stat().st_ino != first_inode  # renamed over, not truncated and rewritten
    after = {f.name: f for f in text_string_to_metric_families(path.read_text())}
    assert after["dbt_scheduler_runs"].samples[0].value == 2.0
    assert sorted(os.listdir(path.parent)) == ["dbt_scheduler.prom"]  # no temporary file left


def test_a_textfile_that_cannot_be_written_leaves_the_old_one_and_no_temporary(
    tmp_path: Path, history: History, clock: FakeClock
) -> None:
    metrics = Metrics(history, lambda: JOBS, clock, process=False)
    path = tmp_path / "dbt_scheduler.prom"
    metrics.write_textfile(path)
    before = path.read_text()

    def broken() -> object:
        raise RuntimeError("history unreadable")

    metrics.registry.register(type("Broken", (), {"collect": staticmethod(broken)})())
    with pytest.raises(RuntimeError):
        metrics.write_textfile(path)
    assert path.read_text() == before
    assert sorted(os.listdir(tmp_path)) == ["dbt_scheduler.prom", "state"]  # no temporary file left


def test_a_daemon_without_metrics_does_not_import_prometheus_client(tmp_path: Path) -> None:
    import subprocess
    import sys

    (tmp_path / "proj").mkdir()
    (tmp_path / "proj" / "dbt_project.yml").write_text("name: p\n")
    config = tmp_path / "jobs.yaml"
    config.write_text(
        "jobs:\n  nightly: {schedule: '0 6 * * *', project_dir: proj}\n"
        "web: {base_url: 'https://dbt.example.com', group_roles: {data-eng: operator}}\n"
    )
    code = (
        "import sys, lib.cli, lib.daemon\n"
        "from lib.app import build_app\n"
        f"build_app({str(config)!r}, runners={{}})\n"
        "heavy = ('prometheus_client', 'lib.web.metrics', 'lib.web.tokens')\n"
        "print(sorted(m for m in heavy if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.strip() == "[]"


class StoppingClock(FakeClock):
    """Its waits advance time; the `stop_after`-th one finds the writer stopped."""

    def __init__(self, start: datetime, stop_after: int) -> None:
        super().__init__(start)
        self.stop_after = stop_after

    def wait(self, seconds: float, event: threading.Event) -> bool:
        if len(self.waits) + 1 >= self.stop_after:
            event.set()
        return super().wait(seconds, event)


def test_the_textfile_writer_writes_every_minute_and_once_more_on_stop(
    tmp_path: Path, history: History, service: RunService
) -> None:
    clock = StoppingClock(T0, stop_after=3)
    metrics = Metrics(history, lambda: JOBS, clock, process=False)
    service.listeners.append(metrics.observe_run)
    for _ in range(2):
        service.execute(service.new_request(JOBS["nightly"], TriggerKind.MANUAL))
    path = tmp_path / "textfile" / "dbt_scheduler.prom"
    writer = TextfileWriter(metrics, path, clock)
    writer.run()
    assert clock.waits == [60.0, 60.0]  # the third wait finds the writer stopped
    assert writer.writes == 4  # at once, after each of two waits, and on the way out
    families = {f.name: f for f in text_string_to_metric_families(path.read_text())}
    [count] = [s for s in families["dbt_scheduler_run_duration_seconds"].samples if s.name.endswith("_count")]
    assert count.labels == {"job": "nightly"} and count.value == 2


def test_a_textfile_that_cannot_be_written_is_logged_once_and_never_raises(
    tmp_path: Path, history: History, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the folder should be")
    clock = StoppingClock(T0, stop_after=4)
    writer = TextfileWriter(Metrics(history, lambda: JOBS, clock, process=False), blocker / "m.prom", clock)
    with caplog.at_level(logging.ERROR):
        writer.run()
    assert writer.writes == 0
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "web.metrics_textfile" in errors[0] and "cannot write it" in errors[0]
