"""Retention: old runs leave the state_dir (`retention:` in jobs.yaml).

For each job, with its `Job.retention` (the top-level `retention:` for runs of jobs
no longer in jobs.yaml):

- a run folder `<state_dir>/runs/<job>/<run_id>/` whose run started more than
  `keep_days` days ago is deleted whole (run.log, reports, artifacts, work/);
- of the job's finished runs that still have a `work/` folder, only the newest
  `keep_failed_work` keep it; the others lose `work/` and keep their log and
  reports. The runners delete `work/` after a success, so these are the failed,
  timed-out and cancelled runs, whose clone and target/ help debugging;
- history rows that started more than `keep_days` days ago are deleted;
- audit log entries (lib/web/audit.py) older than `web.audit_days` (365) are deleted.

Never deleted: a running run (its row says `running`), the job's newest history
row (what `status` shows) and the row with its latest scheduled fire time (what
catch-up reads after a restart), with their folders; anything under `runs/` not
named like a run id, and `cache/`. A folder without a history row (the row is
written just after the folder is made) is taken as finished once its run id is
a day old. `keep_days: null` keeps runs forever; `keep_failed_work: null` keeps
every work/ folder until its run is `keep_days` old.

The age of a run is read from its run id (the UTC time it was requested, see
lib/execution.py `new_run_id`), not from file times, which a copy or a backup
restore would change. The daemon prunes at start and once a day; `scheduler.py
prune [--dry-run]` does it by hand.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from lib.config import Config
from lib.history import RUNNING, History
from lib.models import Retention

log = logging.getLogger("dbt_scheduler")

RUN_ID = re.compile(r"^(\d{8}T\d{6}Z)-[0-9a-f]+$")
# How old a run folder without a history row must be to be taken as finished.
ORPHAN_GRACE = timedelta(days=1)
WORK = "work"
_NO_WORK = frozenset({"succeeded", "skipped"})


@dataclass(frozen=True)
class RunFolder:
    """One run's folder as found on disk."""

    run_id: str
    requested_at: datetime  # from the run id, UTC
    has_work: bool


@dataclass(frozen=True)
class FolderPlan:
    """What to delete among one job's run folders: whole folders, and work/ only."""

    whole: tuple[str, ...] = ()
    work_only: tuple[str, ...] = ()


@dataclass
class JobPrune:
    """What was (or, in a dry run, would be) deleted for one job."""

    job: str
    run_dirs: int = 0
    work_dirs: int = 0
    history_rows: int = 0
    bytes: int = 0  # disk space of the deleted files (st_blocks), what a `du` would show go

    @property
    def empty(self) -> bool:
        return not (self.run_dirs or self.work_dirs or self.history_rows)


@dataclass
class PruneReport:
    dry_run: bool
    jobs: list[JobPrune] = field(default_factory=list)
    stopped: bool = False  # `stop` said so before everything was done
    audit_rows: int = 0  # audit log entries older than `web.audit_days`

    def total(self) -> JobPrune:
        total = JobPrune("all jobs")
        for item in self.jobs:
            total.run_dirs += item.run_dirs
            total.work_dirs += item.work_dirs
            total.history_rows += item.history_rows
            total.bytes += item.bytes
        return total

    def summary(self) -> str:
        total = self.total()
        verb = "would delete" if self.dry_run else "deleted"
        return (
            f"retention: {verb} {total.run_dirs} run folder(s), {total.work_dirs} work/ folder(s) "
            f"and {total.history_rows} history row(s), {_megabytes(total.bytes)}"
            + (
                f"; {self.audit_rows} audit entr{'y' if self.audit_rows == 1 else 'ies'}"
                if self.audit_rows
                else ""
            )
            + (" (stopped before the end: the rest goes next time)" if self.stopped else "")
        )


def run_id_time(run_id: str) -> datetime | None:
    """The UTC time in a run id (`20261127T060000Z-3f9a1c`), or None for any other name."""
    if RUN_ID.match(run_id) is None:
        return None
    try:  # by hand: strptime costs ~20 µs, and a 5-minute job has ~26,000 folders in 90 days
        return datetime(
            int(run_id[0:4]),
            int(run_id[4:6]),
            int(run_id[6:8]),
            int(run_id[9:11]),
            int(run_id[11:13]),
            int(run_id[13:15]),
            tzinfo=UTC,
        )
    except ValueError:
        return None


def plan_folders(
    folders: Iterable[RunFolder],
    outcomes: dict[str, str],
    keep: set[str],
    policy: Retention,
    now: datetime,
) -> FolderPlan:
    """Which of one job's run folders go whole and which lose work/. Pure.

    `outcomes` maps run ids to their history outcome; `keep` holds the run ids
    history keeps whatever their age (`History.rows_to_keep`).
    """
    cutoff = now - timedelta(days=policy.keep_days) if policy.keep_days is not None else None
    whole: list[str] = []
    with_work: list[RunFolder] = []
    for folder in folders:
        outcome = outcomes.get(folder.run_id)
        if outcome == RUNNING or (outcome is None and now - folder.requested_at < ORPHAN_GRACE):
            continue  # in flight, or just started (the history row follows the folder)
        if cutoff is not None and folder.requested_at < cutoff and folder.run_id not in keep:
            whole.append(folder.run_id)
        elif folder.has_work:
            with_work.append(folder)
    work_only: list[str] = []
    if policy.keep_failed_work is not None:
        with_work.sort(key=lambda folder: folder.run_id, reverse=True)  # run ids sort by time
        work_only = [folder.run_id for folder in with_work[policy.keep_failed_work :]]
    return FolderPlan(whole=tuple(whole), work_only=tuple(work_only))


def prune_state(
    config: Config,
    history: History,
    now: datetime,
    dry_run: bool = False,
    stop: Callable[[], bool] = lambda: False,
) -> PruneReport:
    """Apply every job's retention to `config.state_dir` and history; see the module docstring.

    `stop` is asked before each deletion: the first prune of a state_dir that never had
    retention deletes a year of folders (minutes on a slow disk), and a daemon asked to
    stop must not wait for it. What is left goes at the next prune.
    """
    report = PruneReport(dry_run=dry_run)
    runs_root = config.state_dir / "runs"
    on_disk = _subdirs(runs_root)
    for job in sorted(set(on_disk) | set(history.jobs()) | set(config.jobs)):
        known = config.jobs.get(job)
        policy = known.retention if known is not None else config.retention
        result = _prune_job(job, runs_root / job, policy, history, now, dry_run, stop)
        if not result.empty:
            report.jobs.append(result)
        if stop():
            report.stopped = True
            break
    if not report.stopped:
        from lib.web.audit import prune_audit  # small, no third-party import

        report.audit_rows = prune_audit(history, now - timedelta(days=config.web.audit_days), dry_run)
    return report


def prune_and_log(
    config: Config, history: History, now: datetime, stop: Callable[[], bool] = lambda: False
) -> PruneReport | None:
    """prune_state for the daemon: logs what went, and logs (never raises) what failed."""
    try:
        report = prune_state(config, history, now, stop=stop)
    except Exception:  # housekeeping must never take the daemon down
        log.exception("retention: pruning %s failed; the next attempt is in a day", config.state_dir)
        return None
    if report.jobs or report.audit_rows:
        log.info("%s", report.summary())
    return report


def _prune_job(
    job: str,
    job_dir: Path,
    policy: Retention,
    history: History,
    now: datetime,
    dry_run: bool,
    stop: Callable[[], bool],
) -> JobPrune:
    result = JobPrune(job)
    outcomes = history.outcomes(job)
    keep = history.rows_to_keep(job)
    folders = []
    for name in _subdirs(job_dir):
        requested_at = run_id_time(name)
        if requested_at is None:
            continue
        # The runners delete work/ after a success: look for it only in the other runs.
        outcome = outcomes.get(name)
        has_work = outcome not in _NO_WORK and os.path.isdir(os.path.join(job_dir, name, WORK))
        folders.append(RunFolder(name, requested_at, has_work))
    plan = plan_folders(folders, outcomes, keep, policy, now)
    deletions = [(job_dir / run_id, True) for run_id in plan.whole]
    deletions += [(job_dir / run_id / WORK, False) for run_id in plan.work_only]
    for path, whole in deletions:
        if stop():
            return result  # the rest, this job's history rows included, goes next time
        result.bytes += _remove(path, dry_run)
        if whole:
            result.run_dirs += 1
        else:
            result.work_dirs += 1
    if policy.keep_days is not None:
        result.history_rows = history.prune(job, now - timedelta(days=policy.keep_days), dry_run=dry_run)
    return result


def _subdirs(path: Path) -> list[str]:
    """The names of the folders in `path` (none when it does not exist)."""
    try:
        with os.scandir(path) as entries:
            return [entry.name for entry in entries if entry.is_dir(follow_symlinks=False)]
    except FileNotFoundError:
        return []


def _remove(path: Path, dry_run: bool) -> int:
    """Delete a folder tree (unless dry_run); returns the disk space its files took."""
    size = _disk_usage(path)
    if not dry_run:

        def report(_function: object, failed: str, info: tuple) -> None:
            log.warning("retention: could not delete %s: %s", failed, info[1])

        # `onerror` (deprecated, not removed, in 3.12 for `onexc`) works on every Python we support.
        shutil.rmtree(path, onerror=report)
    return size


def _disk_usage(path: Path) -> int:
    try:
        total = path.stat().st_blocks * 512
    except OSError:
        return 0
    stack = [path]
    while stack:
        try:
            with os.scandir(stack.pop()) as entries:
                for entry in entries:
                    try:
                        stat = entry.stat(follow_symlinks=False)
                    except OSError:
                        continue
                    total += stat.st_blocks * 512
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(Path(entry.path))
        except OSError:
            continue
    return total


def _megabytes(size: int) -> str:
    return f"{size / 1e6:.1f} MB"
