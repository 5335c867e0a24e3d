"""The real daemon process across both Europe/Berlin DST nights, its clock faked by libfaketime.

libfaketime (Debian package `faketime`) is preloaded into the daemon and reads a time
offset from a file on every clock read (FAKETIME_NO_CACHE), so the test moves the
daemon's wall clock while it runs: to a moment shortly before each fire time of the
night. SIGHUP then wakes the loop at once (it would notice the step by itself within
the daemon's MAX_SLEEP of a minute, which would make this test take minutes). Fire
times the test jumps over without stopping would be recorded as missed, so "exactly
these rows, none skipped" also proves nothing else was due in between.

The monotonic clock is not faked (FAKETIME_DONT_FAKE_MONOTONIC=1): the daemon's timed
waits run on it and would hang otherwise (CONTRIBUTING.md, "Behaviour of the tools").
TZ=UTC keeps the host zone out of it: the jobs' zone comes from jobs.yaml. The jobs run
`dbt --help` through the local runner and docker/run_commands.sh: the cheapest real dbt
there is (~2-3 s, Python imports), and, unlike `dbt --version`, it does not ask PyPI for the latest release.
"""

from __future__ import annotations

import glob
import signal
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.daemon_helpers import REPO, history_rows, running_daemon, wait_for

# Debian installs the library under the multiarch folder; the `faketime` wrapper itself
# is not used, because its FAKETIME variable would win over the offset file.
LIBFAKETIME = next(
    iter(
        sorted(
            glob.glob("/usr/lib/*/faketime/libfaketime.so.1")
            + glob.glob("/usr/lib/faketime/libfaketime.so.1")
        )
    ),
    None,
)
pytestmark = pytest.mark.skipif(
    LIBFAKETIME is None,
    reason="libfaketime is not installed (Debian package faketime): run scripts/install_test_tools.sh, "
    "which `make test` runs",
)

LEAD = 1.5  # seconds of fake time between each step and the fire time it stops before

JOBS_YAML = """\
state_dir: state
shutdown_grace: 30s
defaults:
  timezone: Europe/Berlin
  project_dir: {project}
  commands: ['dbt --help']
jobs:
  at_0230:
    schedule: '30 2 * * *'
  hourly:
    schedule: '0 * * * *'
  two_hours:
    every: 2 hours
"""


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


# Each night: where the daemon starts, then every fire time (UTC) with the jobs due then.
NIGHTS = {
    # 2026-10-25 01:00 UTC: 03:00 CEST → 02:00 CET; 02:00-03:00 local happens twice.
    "fall-back": (
        at("2026-10-24 23:58:00"),
        [
            (at("2026-10-25 00:00"), {"hourly", "two_hours"}),  # 02:00 CEST
            (at("2026-10-25 00:30"), {"at_0230"}),  # 02:30 CEST, once: not at 02:30 CET
            (at("2026-10-25 01:00"), {"hourly", "two_hours"}),  # 02:00 CET, the second pass
            (at("2026-10-25 02:00"), {"hourly"}),  # 03:00 CET
        ],
    ),
    # 2026-03-29 01:00 UTC: 02:00 CET → 03:00 CEST; 02:00-03:00 local never happens.
    "spring-forward": (
        at("2026-03-28 23:58:00"),
        [
            (at("2026-03-29 00:00"), {"hourly"}),  # 01:00 CET
            (at("2026-03-29 01:00"), {"hourly", "at_0230"}),  # 03:00 CEST; 02:30 runs at the jump
            (at("2026-03-29 02:00"), {"hourly", "two_hours"}),  # 04:00 CEST; 02:00 did not exist
        ],
    ),
}


class FakedClock:
    """The daemon's wall clock: an offset from real time in the file libfaketime reads."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def set(self, moment: datetime) -> None:
        offset = moment.timestamp() - time.time()
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(f"{offset:+.3f}\n")
        tmp.replace(self.path)  # atomic: the daemon never reads half a line


@pytest.mark.timeout(150)
@pytest.mark.parametrize("night", NIGHTS)
def test_real_daemon_runs_every_fire_time_of_the_dst_night_once(night: str, tmp_path: Path) -> None:
    start, stops = NIGHTS[night]
    config = tmp_path / "jobs.yaml"
    config.write_text(JOBS_YAML.format(project=REPO / "example"))
    clock = FakedClock(tmp_path / "faketime.rc")
    clock.set(start)
    env = {
        "LD_PRELOAD": str(LIBFAKETIME),
        "FAKETIME_TIMESTAMP_FILE": str(clock.path),
        "FAKETIME_NO_CACHE": "1",
        "FAKETIME_DONT_FAKE_MONOTONIC": "1",
        "TZ": "UTC",
    }
    state = tmp_path / "state"
    log_path = tmp_path / "daemon.log"
    with running_daemon(config, log_path, env) as daemon:
        wait_for(lambda: "dbt-scheduler started" in log_path.read_text(), 60, "the daemon to start")
        for fire, jobs in stops:
            clock.set(fire - timedelta(seconds=LEAD))
            daemon.send_signal(signal.SIGHUP)  # wake the loop now rather than within MAX_SLEEP
            wanted = {(job, fire.isoformat()) for job in jobs}

            def done(wanted: set[tuple[str, str]] = wanted) -> bool:
                finished = {(r["job"], r["scheduled_for"]) for r in history_rows(state) if r["finished_at"]}
                return wanted <= finished

            wait_for(done, 60, f"the runs due at {fire.isoformat()} ({', '.join(sorted(jobs))}) to finish")
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=60) == 0
    log = log_path.read_text()
    assert "dbt-scheduler stopped" in log, log[-3000:]

    rows = history_rows(state)
    got = sorted((r["scheduled_for"], r["job"], r["trigger"], r["outcome"]) for r in rows)
    expected = sorted(
        (fire.isoformat(), job, "schedule", "succeeded") for fire, jobs in stops for job in jobs
    )
    assert got == expected, log[-3000:]
    assert all(r["scheduled_for"].endswith("+00:00") for r in rows)  # history stores UTC
