"""Retention (lib/retention.py): real SQLite, real folders, a FakeClock year of runs."""

from __future__ import annotations

import itertools
import textwrap
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import lib.daemon
from lib.app import App
from lib.cli import main
from lib.config import Config
from lib.daemon import Daemon
from lib.execution import new_run_id
from lib.history import History
from lib.models import Retention, RunOutcome, RunRecord, RunRequest, RunStatus, TriggerKind
from lib.retention import RunFolder, plan_folders, prune_state, run_id_time
from lib.runners.base import RunContext
from tests.conftest import START
from tests.fakes import FakeClock, FakeRunner, InlineExecutor, inline_spawn

DAY = timedelta(days=1)


def run_id_at(moment: datetime, suffix: str = "abcdef") -> str:
    return f"{moment.astimezone(UTC):%Y%m%dT%H%M%SZ}-{suffix}"


# --------------------------------------------------------------------------- the plan (pure)


def test_run_id_time_reads_the_ids_new_run_id_makes() -> None:
    moment = datetime(2026, 11, 27, 6, 0, 5, tzinfo=UTC)
    assert run_id_time(new_run_id(moment)) == moment
    for other in ("checkout", "20261127T060005Z", "20261399T000000Z-abc", ".tmp"):
        assert run_id_time(other) is None


def test_plan_folders() -> None:
    now = datetime(2026, 6, 1, tzinfo=UTC)

    def folder(days_ago: float, has_work: bool = False, suffix: str = "aaaaaa") -> RunFolder:
        moment = now - timedelta(days=days_ago)
        return RunFolder(run_id_at(moment, suffix), moment, has_work)

    old, old_kept, old_running = folder(40), folder(41, suffix="bbbbbb"), folder(42, suffix="cccccc")
    failed = [folder(d, has_work=True) for d in (1, 2, 3, 4)]
    orphan_new, orphan_old = folder(0.1, has_work=True, suffix="dddddd"), folder(5, True, "eeeeee")
    folders = [old, old_kept, old_running, *failed, orphan_new, orphan_old]
    outcomes = {f.run_id: "failed" for f in (old, old_kept, *failed)} | {old_running.run_id: "running"}
    plan = plan_folders(folders, outcomes, {old_kept.run_id}, Retention(30, 2), now)
    assert plan.whole == (old.run_id,)
    # Newest first: failed[0] and failed[1] keep work/; the orphan of 5 days counts as finished,
    # the one of 2 hours may still be starting (its history row comes just after the folder).
    assert set(plan.work_only) == {failed[2].run_id, failed[3].run_id, orphan_old.run_id}

    forever = plan_folders(folders, outcomes, set(), Retention(None, None), now)
    assert forever.whole == forever.work_only == ()
    no_work = plan_folders(folders, outcomes, set(), Retention(None, 0), now)
    assert set(no_work.work_only) == {f.run_id for f in (*failed, orphan_old)}


# --------------------------------------------------------------------------- history


def finished(job: str, run_id: str, started: datetime, trigger: TriggerKind, status: RunStatus) -> RunRecord:
    return RunRecord(
        job=job,
        run_id=run_id,
        trigger=trigger,
        outcome=RunOutcome(status),
        started_at=started,
        finished_at=started + timedelta(seconds=30),
        scheduled_for=started if trigger is not TriggerKind.MANUAL else None,
    )


def test_history_prune_keeps_running_rows_the_newest_row_and_the_latest_fire_time(tmp_path: Path) -> None:
    history = History(tmp_path / "history.db")
    now = datetime(2026, 6, 1, tzinfo=UTC)
    scheduled = [now - timedelta(days=d) for d in (400, 300, 200)]
    for i, moment in enumerate(scheduled):
        history.finish(finished("a", f"s{i}", moment, TriggerKind.SCHEDULE, RunStatus.SUCCEEDED))
    history.finish(finished("a", "manual", now - timedelta(days=100), TriggerKind.MANUAL, RunStatus.FAILED))
    job = type("J", (), {"name": "a"})()
    history.start(
        RunRequest(job=job, run_id="stuck", trigger=TriggerKind.SCHEDULE, scheduled_for=scheduled[0]),  # type: ignore[arg-type]
        now - timedelta(days=500),
        None,
    )
    status_before, catchup_before = history.last_runs()["a"], history.last_scheduled_for("a")

    assert history.prune("a", now - timedelta(days=30), dry_run=True) == 2
    assert len(history.runs("a", limit=None)) == 5
    assert history.prune("a", now - timedelta(days=30)) == 2
    assert {row["run_id"] for row in history.runs("a", limit=None)} == {"s2", "manual", "stuck"}
    assert history.last_runs()["a"] == status_before
    assert history.last_scheduled_for("a") == catchup_before == scheduled[2]
    assert history.prune("a", now - timedelta(days=30)) == 0
    assert history.prune("nobody", now) == 0


# --------------------------------------------------------------------------- prune_state on a real state_dir


def make_run(
    state_dir: Path, history: History, job: str, moment: datetime, status: RunStatus, **kw: Any
) -> Path:
    """A run as the runners leave it: a folder with a log and reports, work/ when it failed."""
    run_id = kw.get("run_id") or new_run_id(moment)
    run_dir = state_dir / "runs" / job / run_id
    run_dir.mkdir(parents=True)
    (run_dir / "run.log").write_text("dbt build\n" * 50)
    (run_dir / "report.json").write_text("{}\n")
    if status is not RunStatus.SUCCEEDED:
        (run_dir / "work" / "target").mkdir(parents=True)
        (run_dir / "work" / "target" / "compiled.sql").write_text("select 1\n" * 100)
    trigger = kw.get("trigger", TriggerKind.SCHEDULE)
    record = replace(finished(job, run_id, moment, trigger, status), run_dir=run_dir)
    history.finish(record)
    return run_dir


def test_prune_state_on_real_folders(make_config: Callable[..., Config], tmp_path: Path) -> None:
    config = make_config(
        {"keep30": {"every": "1 day"}, "forever": {"every": "1 day", "retention": {"keep_days": None}}},
        retention={"keep_days": 30, "keep_failed_work": 1},
    )
    state, history = config.state_dir, History(config.state_dir / "history.db")
    now = datetime(2026, 6, 1, 12, tzinfo=UTC)
    dirs: dict[str, list[Path]] = {"keep30": [], "forever": [], "gone": []}
    for job in dirs:
        for days_ago in (60, 45, 20, 10, 5):
            status = RunStatus.FAILED if days_ago in (60, 20, 5) else RunStatus.SUCCEEDED
            dirs[job].append(make_run(state, history, job, now - timedelta(days=days_ago), status))
    running = state / "runs" / "keep30" / new_run_id(now - timedelta(days=90))
    (running / "work").mkdir(parents=True)
    job = config.jobs["keep30"]
    history.start(
        RunRequest(job=job, run_id=running.name, trigger=TriggerKind.MANUAL), now - 90 * DAY, running
    )
    checkout = state / "runs" / "keep30" / "checkout"  # not a run: never touched
    checkout.mkdir()
    cache = state / "cache" / "keep30" / "partial_parse"
    cache.mkdir(parents=True)

    dry = prune_state(config, history, now, dry_run=True)
    assert all(path.exists() for paths in dirs.values() for path in paths)
    report = prune_state(config, history, now)
    assert [(j.job, j.run_dirs, j.work_dirs, j.history_rows) for j in report.jobs] == [
        ("forever", 0, 2, 0),  # keep_days null: every run stays; work/ of the newest failed run only
        ("gone", 2, 1, 2),  # no longer in jobs.yaml: the top-level retention
        ("keep30", 2, 1, 2),
    ]
    assert [(j.job, j.run_dirs, j.work_dirs, j.history_rows) for j in dry.jobs] == [
        (j.job, j.run_dirs, j.work_dirs, j.history_rows) for j in report.jobs
    ]
    assert report.total().bytes > 0 and "deleted 4 run folder(s), 4 work/ folder(s)" in report.summary()

    kept = dirs["keep30"]
    assert [path.exists() for path in kept] == [False, False, True, True, True]
    assert [(path / "work").exists() for path in kept[2:]] == [False, False, True]
    assert (kept[2] / "run.log").is_file()  # a failed run past keep_failed_work keeps its log
    assert [path.exists() for path in dirs["forever"]] == [True] * 5
    assert running.is_dir() and (running / "work").is_dir() and checkout.is_dir() and cache.is_dir()
    assert len(history.runs("keep30", limit=None)) == 4  # 3 recent + the running one
    assert len(history.runs("forever", limit=None)) == 5
    # Nothing left to do: a second prune deletes nothing.
    assert prune_state(config, history, now).jobs == []


def test_prune_stops_when_asked_and_finishes_next_time(make_config: Callable[..., Config]) -> None:
    config = make_config({"a": {"every": "1 day"}}, retention={"keep_days": 7})
    history = History(config.state_dir / "history.db")
    now = datetime(2026, 6, 1, tzinfo=UTC)
    old = [
        make_run(config.state_dir, history, "a", now - timedelta(days=30 + d), RunStatus.SUCCEEDED)
        for d in range(6)
    ]
    asked = []

    def stop_after_two() -> bool:
        asked.append(1)
        return len(asked) > 2

    report = prune_state(config, history, now, stop=stop_after_two)
    assert report.stopped and report.total().run_dirs == 2 and "stopped before the end" in report.summary()
    assert sum(path.exists() for path in old) == 4
    assert len(history.runs("a", limit=None)) == 6  # its rows wait for the next prune too
    report = prune_state(config, history, now)
    assert not report.stopped and report.total().run_dirs == 3 and report.total().history_rows == 5
    assert not any(path.exists() for path in old[1:])  # old[0], the newest row, is kept


def test_the_daemon_prunes_at_start_and_its_prune_stops_with_it(
    make_config: Callable[..., Config],
    make_app: Callable[..., App],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[tuple[datetime, Callable[[], bool]]] = []
    monkeypatch.setattr(
        lib.daemon, "prune_and_log", lambda config, history, now, stop: calls.append((now, stop))
    )
    app = make_app(make_config({"a": {"every": "1 hour"}}))
    daemon = Daemon(
        app.config, app.service, app.clock, executor_factory=lambda n: InlineExecutor(), spawn=inline_spawn
    )
    daemon.start()
    try:
        [(when, stop)] = calls
        assert when == START and stop() is False
        daemon.request_stop()
        assert stop() is True
    finally:
        daemon.shutdown()


# --------------------------------------------------------------------------- a year of the daemon


def test_a_simulated_year_of_the_daemon_keeps_a_month(
    make_config: Callable[..., Config],
    make_app: Callable[..., App],
    clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Prunes at start and once a day through the injected clock; status and catch-up keep working."""
    config = make_config(
        {
            "every12h": {"every": "12 hours", "catchup": "latest"},
            "weekly_forever": {"schedule": "0 3 * * 1", "retention": {"keep_days": None}},
        },
        retention={"keep_days": 30, "keep_failed_work": 3},
    )
    count = {"every12h": 0, "weekly_forever": 0}

    def outcome(ctx: RunContext) -> RunOutcome:
        job = ctx.request.job.name
        count[job] += 1
        (ctx.run_dir / "run.log").write_text("dbt build\n")
        if count[job] % 10 == 0:  # every 10th run fails and keeps its work/, as the runners do
            (ctx.run_dir / "work").mkdir()
            (ctx.run_dir / "work" / "compiled.sql").write_text("select 1\n")
            return RunOutcome(RunStatus.FAILED, exit_code=1, log_path=ctx.run_dir / "run.log")
        return RunOutcome(RunStatus.SUCCEEDED, exit_code=0, log_path=ctx.run_dir / "run.log")

    prunes: list[datetime] = []
    real_prune = lib.daemon.prune_and_log

    def counting_prune(config: Config, history: History, now: datetime, stop: Callable[[], bool]) -> Any:
        prunes.append(now)
        return real_prune(config, history, now, stop)

    monkeypatch.setattr(lib.daemon, "prune_and_log", counting_prune)
    app = make_app(config, FakeRunner(outcome))
    end = START + timedelta(days=365)
    daemon = Daemon(
        app.config, app.service, app.clock, executor_factory=lambda n: InlineExecutor(), spawn=inline_spawn
    )
    assert daemon.run_forever(until=end) == 0

    assert count == {"every12h": 365 * 2, "weekly_forever": 53}
    assert prunes[0] == START and len(prunes) == 366
    assert all(b - a == DAY for a, b in itertools.pairwise(prunes))

    runs_dir = config.state_dir / "runs"
    every12h = sorted(p.name for p in (runs_dir / "every12h").iterdir())
    last_prune = prunes[-1]
    # After the last prune (the final tick) nothing is older than 30 days and all of the last
    # 30 days is there: 2 runs a day, plus the one exactly 30 days old (not older: kept).
    assert all(run_id_time(name) >= last_prune - 30 * DAY for name in every12h)  # type: ignore[operator]
    assert len(every12h) == 30 * 2 + 1
    work = sorted(name for name in every12h if (runs_dir / "every12h" / name / "work").is_dir())
    failed = [r["run_id"] for r in app.history.runs("every12h", limit=None) if r["outcome"] == "failed"]
    assert work == sorted(failed[:3])  # the 3 newest failed runs, nothing else
    assert len(app.history.runs("every12h", limit=None)) == 30 * 2 + 1
    # keep_days: null keeps every run of that job; its work/ folders still follow keep_failed_work.
    assert len(list((runs_dir / "weekly_forever").iterdir())) == 53
    assert len(app.history.runs("weekly_forever", limit=None)) == 53
    assert sum((p / "work").is_dir() for p in (runs_dir / "weekly_forever").iterdir()) == 3
    # status and catch-up read what they need.
    assert app.history.last_runs()["every12h"]["scheduled_for"] == end.isoformat()
    assert app.history.last_scheduled_for("every12h") == end


# --------------------------------------------------------------------------- the CLI


def test_prune_command_dry_run_then_for_real(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "proj").mkdir()
    (tmp_path / "proj" / "dbt_project.yml").write_text("name: p\n")
    config_path = tmp_path / "jobs.yaml"
    config_path.write_text(
        textwrap.dedent(
            """\
            state_dir: state
            retention: {keep_days: 7}
            jobs:
              nightly: {schedule: '0 3 * * *', project_dir: proj}
            """
        )
    )
    history = History(tmp_path / "state" / "history.db")
    now = datetime.now(UTC)
    old = [
        make_run(tmp_path / "state", history, "nightly", now - timedelta(days=d), RunStatus.SUCCEEDED)
        for d in (30, 20, 1)
    ]
    history.close()

    assert main(["--config", str(config_path), "prune", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "nightly: 2 run folder(s), 0 work/ folder(s), 2 history row(s)" in out
    assert "retention: would delete 2 run folder(s)" in out
    assert all(path.exists() for path in old)

    assert main(["--config", str(config_path), "prune"]) == 0
    assert "retention: deleted 2 run folder(s)" in capsys.readouterr().out
    assert [path.exists() for path in old] == [False, False, True]


def test_the_audit_log_keeps_web_audit_days_of_entries(make_config: Callable[..., Config]) -> None:
    from lib.web.audit import AuditLog

    config = make_config({"nightly": {"schedule": "0 5 * * *"}}, web={"audit_days": 30})
    history = History(config.state_dir / "history.db")
    for days_ago in (400, 31, 29, 1):
        clock = FakeClock(START - timedelta(days=days_ago))
        AuditLog(history, clock).record(user="alice", source="cli", action="token_create", result="allowed")

    def ages() -> list[int]:
        return sorted((START - e.at).days for e in AuditLog(history, FakeClock(START)).query(limit=100))

    dry = prune_state(config, history, START, dry_run=True)
    assert dry.audit_rows == 2 and "would delete" in dry.summary() and "2 audit entries" in dry.summary()
    assert ages() == [1, 29, 31, 400]
    for expected in (2, 0):  # the second pass finds nothing more to delete
        assert prune_state(config, history, START).audit_rows == expected
        assert ages() == [1, 29]
    default = make_config({"nightly": {"schedule": "0 5 * * *"}})
    assert default.web.audit_days == 365
