"""Prometheus metrics, with the official `prometheus_client`, on a registry of our own.

Two kinds of numbers, each read where it is true:

- **Observed when a run ends** (`Metrics.observe_run`, a RunService listener):
  `dbt_scheduler_run_duration_seconds{job}` and `dbt_scheduler_dispatch_lag_seconds`
  (fire time → run start, scheduled runs only), histograms. A histogram's buckets and
  `_count` must only grow, as Prometheus' `rate()` and `histogram_quantile()` assume;
  history cannot give that (retention deletes old rows, which would read as a counter
  reset), so they count what this process saw end, from its start. Skipped runs are
  not observed (they did not run); `_count` per job is the runs-per-second counter.
- **Read from history.db at each scrape** (`HistoryCollector`), so they are right
  after a restart and include runs other processes recorded (`run-now`):
  `dbt_scheduler_runs{job,outcome}` (runs kept in history, a gauge: pruning lowers
  it), `dbt_scheduler_last_success_timestamp_seconds{job}`,
  `dbt_scheduler_running_runs{job}`, `dbt_scheduler_next_fire_timestamp_seconds{job}`
  (enabled jobs, from their trigger and the clock) and
  `dbt_scheduler_notification_failures{channel}` (deliveries that failed for good,
  kept in history). Four small queries, one per family.

Plus the process' own `process_*` figures (memory, CPU, open files) from
prometheus_client's ProcessCollector. `Metrics.text()` is the `/metrics` body;
`write_textfile(path)` writes the same for node_exporter's textfile collector, through
a temporary file renamed over the old one (node_exporter may read at any moment and
must never see half a file). This module is imported only where metrics are produced:
prometheus_client costs the daemon memory it does not spend with `web:` unset.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Histogram,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import write_to_textfile

from lib.clock import Clock
from lib.models import Job, RunRecord, RunStatus, TriggerKind

# dbt runs last seconds to hours: buckets from 1 s to 4 h.
log = logging.getLogger(__name__)

DURATION_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400, float("inf"))
# Fire time → start: milliseconds when all is well, seconds when the queue is full.
LAG_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, float("inf"))
CONTENT_TYPE = CONTENT_TYPE_LATEST


def _epoch(text: str | None) -> float | None:
    return datetime.fromisoformat(text).timestamp() if text else None


class HistoryCollector:
    """The families read from history.db and the jobs at each scrape (see the module)."""

    def __init__(self, history: Any, jobs: Callable[[], Mapping[str, Job]], clock: Clock) -> None:
        self.history = history
        self.jobs = jobs
        self.clock = clock

    def describe(self) -> Iterator[Metric]:
        # Names only, so the registry can refuse a clash without querying history.
        return iter(self._families())

    def collect(self) -> Iterator[Metric]:
        runs, last_success, running, next_fire, failures = self._families()
        jobs = self.jobs()
        with self.history.transaction() as conn:
            for job, outcome, count in conn.execute(
                "SELECT job, outcome, COUNT(*) FROM runs WHERE outcome != 'running' GROUP BY job, outcome"
                " ORDER BY job, outcome"
            ):
                runs.add_metric([job, outcome], count)
            for job, finished in conn.execute(
                "SELECT job, MAX(finished_at) FROM runs WHERE outcome = ? GROUP BY job ORDER BY job",
                (RunStatus.SUCCEEDED.value,),
            ):
                moment = _epoch(finished)
                if moment is not None:
                    last_success.add_metric([job], moment)
            counts = dict(
                conn.execute(
                    "SELECT job, COUNT(*) FROM runs WHERE outcome = 'running' GROUP BY job"
                ).fetchall()
            )
            for channel, count in conn.execute(
                "SELECT channel, COUNT(*) FROM deliveries WHERE status = 'failed'"
                " GROUP BY channel ORDER BY channel"
            ):
                failures.add_metric([channel], count)
        # Every job of the config has a running count, 0 included, so "absent" means "not a job".
        for job in sorted(set(jobs) | set(counts)):
            running.add_metric([job], counts.get(job, 0))
        now = self.clock.now()
        for name in sorted(jobs):
            job = jobs[name]
            if job.enabled:
                next_fire.add_metric([name], job.trigger.next_after(now).timestamp())
        return iter((runs, last_success, running, next_fire, failures))

    @staticmethod
    def _families() -> tuple[GaugeMetricFamily, ...]:
        return (
            GaugeMetricFamily(
                "dbt_scheduler_runs",
                "Finished runs kept in history.db, by job and outcome (retention lowers it: a gauge)",
                labels=["job", "outcome"],
            ),
            GaugeMetricFamily(
                "dbt_scheduler_last_success_timestamp_seconds",
                "When the job's latest successful run finished (Unix time)",
                labels=["job"],
            ),
            GaugeMetricFamily("dbt_scheduler_running_runs", "Runs going now, by job", labels=["job"]),
            GaugeMetricFamily(
                "dbt_scheduler_next_fire_timestamp_seconds",
                "The enabled job's next fire time (Unix time)",
                labels=["job"],
            ),
            GaugeMetricFamily(
                "dbt_scheduler_notification_failures",
                "Alert deliveries that failed for good, kept in history.db, by channel",
                labels=["channel"],
            ),
        )


class Metrics:
    """The scheduler's metrics: a registry of its own (never prometheus_client's global
    one, so two schedulers in one test process do not share numbers), the histograms fed
    by `observe_run`, and the collector reading history."""

    def __init__(
        self, history: Any, jobs: Callable[[], Mapping[str, Job]], clock: Clock, process: bool = True
    ) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.run_duration = Histogram(
            "dbt_scheduler_run_duration_seconds",
            "How long runs took, by job, as this process saw them end (skipped runs left out)",
            ["job"],
            buckets=DURATION_BUCKETS,
            registry=self.registry,
        )
        self.dispatch_lag = Histogram(
            "dbt_scheduler_dispatch_lag_seconds",
            "From a scheduled run's fire time to its start, as this process saw runs end",
            buckets=LAG_BUCKETS,
            registry=self.registry,
        )
        self.registry.register(HistoryCollector(history, jobs, clock))
        if process:
            ProcessCollector(registry=self.registry)

    def observe_run(self, record: RunRecord) -> None:
        """A RunService listener: a finished run's duration and, for a scheduled one, the
        lag between its fire time and its start."""
        if record.outcome.status is RunStatus.SKIPPED:
            return
        self.run_duration.labels(record.job).observe(max(0.0, record.duration_s))
        if record.trigger is TriggerKind.SCHEDULE and record.scheduled_for is not None:
            lag = (record.started_at - record.scheduled_for).total_seconds()
            self.dispatch_lag.observe(max(0.0, lag))

    def text(self) -> bytes:
        """The Prometheus text exposition (`/metrics`, content type `CONTENT_TYPE`)."""
        return generate_latest(self.registry)

    def write_textfile(self, path: Path) -> None:
        """Write `text()` to `path` for node_exporter's textfile collector: to
        `<path>.<pid>.<thread>` first, then renamed over `path` (rename(2) is atomic, so
        node_exporter reads the old file or the new one, never a part)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        write_to_textfile(str(path), self.registry)


# node_exporter reads the textfile at each scrape (typically every 15 to 60 s): once a
# minute keeps it as fresh as the daemon's own idle wake-up.
TEXTFILE_EVERY_S = 60.0


class TextfileWriter:
    """Writes the metrics to `web.metrics_textfile` now, then every `every` seconds until
    stopped, and once more on the way out (the last runs' durations). On its own thread: a
    slow disk never holds the loop. A write that fails (a full or read-only disk) is logged
    once, with the fix, until one succeeds again; it never raises."""

    def __init__(self, metrics: Metrics, path: Path, clock: Clock, every: float = TEXTFILE_EVERY_S) -> None:
        self.metrics = metrics
        self.path = path
        self.clock = clock
        self.every = every
        self.stop_event = threading.Event()
        self.writes = 0
        self._failing = False
        self._thread: threading.Thread | None = None

    def write(self) -> bool:
        try:
            self.metrics.write_textfile(self.path)
        except Exception as exc:  # OSError mostly; never let the writer's death pass for the daemon's
            if not self._failing:
                log.error(
                    "web.metrics_textfile %s: cannot write it: %s: free space or fix the folder's "
                    "permissions (the daemon keeps trying every %.0f s)",
                    self.path,
                    exc,
                    self.every,
                )
            self._failing = True
            return False
        if self._failing:
            log.info("web.metrics_textfile %s: written again", self.path)
        self._failing = False
        self.writes += 1
        return True

    def run(self) -> None:
        while True:
            self.write()
            if self.clock.wait(self.every, self.stop_event):
                self.write()
                return

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name="metrics-textfile", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self.stop_event.set()
        if self._thread is not None:
            self._thread.join(timeout)
