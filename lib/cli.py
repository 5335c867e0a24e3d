"""`python scheduler.py [--config jobs.yaml] COMMAND`: one function per subcommand.

Each returns an exit code.

Exit codes (like dbt's): 0 success, 1 the job failed, 2 a usage or config error.
rich is imported inside the commands that print tables, so the daemon starts lean.
"""

from __future__ import annotations

import argparse
import contextlib
import faulthandler
import getpass
import json
import logging
import os
import signal
import sqlite3
import sys
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from lib import __version__
from lib.errors import ConfigError, SchedulerError

EXIT_OK, EXIT_JOB_FAILED, EXIT_USAGE = 0, 1, 2
# The machine refused (state_dir full or read-only): distinct from a config error, so
# systemd's Restart=on-failure tries again (space may come back) while exit 2 it does not.
EXIT_ENVIRONMENT = 3
# The daemon would not take the request: the job already runs (overlap: skip) or waits for
# a slot, the daemon is stopping; for `cancel`, nothing of the job runs or waits.
EXIT_REFUSED = 4
# `cancel` found no daemon on the state_dir (a run-now in another shell is stopped there).
EXIT_NO_DAEMON = 5
# run-now stopped following a run the daemon goes on with: the terminal went away
# (128 + SIGHUP), or Ctrl-C answered "no, do not cancel it" (128 + SIGINT).
EXIT_HANGUP, EXIT_LEFT = 129, 130
# How long run-now waits, after its run, for the run's alerts to be delivered.
RUN_NOW_NOTIFY_S = 60.0
log = logging.getLogger("dbt_scheduler")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="scheduler.py", description="Run dbt jobs on a schedule (see README.md)."
    )
    parser.add_argument(
        "--config",
        type=Path,
        default=None,
        help="path to jobs.yaml (default: $DBT_SCHEDULER_CONFIG or ./jobs.yaml)",
    )
    parser.add_argument("--version", action="version", version=f"dbt-scheduler {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    sub.add_parser("run", help="run the scheduler daemon in the foreground")
    run_now = sub.add_parser("run-now", help="run one job now, by hand, and report")
    run_now.add_argument("job")
    run_now.add_argument(
        "--target", help="dbt target to use instead of the job's (recorded on the run: report, history)"
    )
    run_now.add_argument(
        "--select",
        help="dbt selection that REPLACES the job's in every command that takes one"
        " (its --select/-s/--models/-m/--selector go, --exclude stays; dbt deps and"
        " run-operation are left alone); recorded on the run",
    )
    sub.add_parser("validate", help="check jobs.yaml and print each job's next 3 fire times")
    sub.add_parser("next", help="list jobs by their next fire time")
    sub.add_parser("status", help="jobs with schedule, next run, last outcome and duration")
    history = sub.add_parser("history", help="past runs, newest first")
    history.add_argument("job", nargs="?")
    history.add_argument(
        "--json", action="store_true", help="print a JSON list (report.json fields but nodes)"
    )
    history.add_argument("--limit", type=int, default=20, help="how many runs (default 20)")
    repair = sub.add_parser(
        "repair-history", help="move a corrupt history.db aside (history.db.corrupt-<time>) and start anew"
    )
    repair.add_argument("--force", action="store_true", help="move it aside even when it passes its check")
    prune = sub.add_parser("prune", help="apply retention: now (the daemon does it daily)")
    prune.add_argument("--dry-run", action="store_true", help="say what would be deleted; delete nothing")
    bootstrap = sub.add_parser("bootstrap", help="provision the AWS side for ECS jobs (see README)")
    bootstrap.add_argument("--dry-run", action="store_true", help="print the plan; change nothing")
    bootstrap.add_argument(
        "--only",
        metavar="STEP[,STEP]",
        help="run only these steps: env-file, profiles, image, iam, log-group, task-definition, cluster",
    )
    bootstrap.add_argument(
        "--force", action="store_true", help="overwrite profiles.yml, push the image again"
    )
    bootstrap.add_argument(
        "--ops-policy",
        nargs="?",
        const="both",
        choices=("runtime", "bootstrap", "both"),
        help="print the IAM policies: `runtime` for the ops box (running ECS jobs), `bootstrap` for "
        "whoever provisions; both (default) with a heading each; then exit",
    )
    sub.add_parser("schema", help="print the JSON Schema of jobs.yaml (draft 2020-12; also jobs.schema.json)")
    notify = sub.add_parser("notify", help="alerts: `notify test CHANNEL` sends a sample message")
    notify_sub = notify.add_subparsers(dest="notify_command", metavar="ACTION")
    notify_sub.required = True
    notify_test = notify_sub.add_parser(
        "test", help="send a sample failure alert to CHANNEL; exit 1 with its error"
    )
    notify_test.add_argument("channel")
    cancel = sub.add_parser(
        "cancel", help="cancel a job's run in the running daemon (SIGINT to dbt first), or its waiting run"
    )
    cancel.add_argument("job")
    cancel.add_argument("--run", help="only this run id (default: every running or waiting run of the job)")
    api = sub.add_parser(
        "api", help="GET a web API route (e.g. /api/jobs) from the running daemon over its control socket"
    )
    api.add_argument("path", help="/api/jobs, /api/jobs/JOB/runs?limit=5, /api/runs/ID, /api/runs/ID/log")
    logs = sub.add_parser("logs", help="print a run's log (the latest run by default)")
    logs.add_argument("job")
    logs.add_argument("--run", help="run id (see `history`)")
    _add_access_commands(sub)
    return parser


def _add_access_commands(sub: Any) -> None:
    """`token` and `audit` (team access, issue 11)."""
    token = sub.add_parser("token", help="API tokens for the web API: create, list, revoke")
    token_sub = token.add_subparsers(dest="token_command", metavar="ACTION")
    token_sub.required = True
    create = token_sub.add_parser("create", help="create a token and print it, once")
    create.add_argument("--user", required=True, help="who the token is for (recorded as triggered_by)")
    create.add_argument("--role", required=True, choices=("viewer", "operator", "admin"))
    create.add_argument(
        "--jobs", nargs="+", metavar="GLOB", default=["*"], help="reach only these jobs (names or globs)"
    )
    create.add_argument("--expires", default="90d", help="lifetime, e.g. 90d, 12h, 1w (≤ 366d) or never")
    listing = token_sub.add_parser("list", help="every token: id, user, role, jobs, state, dates")
    listing.add_argument("--json", action="store_true", help="print a JSON list")
    revoke = token_sub.add_parser("revoke", help="revoke a token by its id; exit 1 if there is none")
    revoke.add_argument("id")
    audit = sub.add_parser("audit", help="the audit log: mutations and refused requests, newest first")
    audit.add_argument("--limit", type=int, default=50, help="how many entries (default 50)")
    audit.add_argument("--json", action="store_true", help="print a JSON list")
    audit.add_argument("--user", help="only this user's entries")
    audit.add_argument("--job", help="only this job's entries")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)
    handler = COMMANDS[args.command]
    try:
        return handler(args)
    except ConfigError as exc:
        for issue in exc.issues:
            print(f"error: {issue}", file=sys.stderr)
        return EXIT_USAGE
    except SchedulerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:  # the box, not the input: a full or read-only state_dir, a lost mount
        print(f"error: {exc} (free space or make the state_dir writable, then try again)", file=sys.stderr)
        return EXIT_ENVIRONMENT
    except KeyboardInterrupt:
        return 130


# ---------------------------------------------------------------------- helpers


def _config_path(args: argparse.Namespace) -> Path:
    from lib.app import default_config_path

    return args.config if args.config is not None else default_config_path()


def _app(args: argparse.Namespace, check_history: bool = False, writes: bool = False) -> Any:
    """The app; with `check_history`, a corrupt history.db stops here (exit 2, the fix named);
    with `writes` (the commands that run jobs), a world-writable state_dir does too."""
    from lib.app import build_app

    app = build_app(_config_path(args))
    if writes:
        _guard_state_dir(app.config.state_dir)
    if check_history:
        app.history.check()
    return app


# What the scheduler writes under state_dir (history.db, run logs, reports) is for the
# daemon's user and its group (a `dbt-scheduler` group of teammates may read), never for
# every account on the box: files 0640, folders 0750. Set for the commands that write there.
STATE_UMASK = 0o027


def _guard_state_dir(state_dir: Path) -> None:
    """Refuse a world-writable state_dir, and make what is written there owner + group only."""
    os.umask(STATE_UMASK)
    try:
        mode = state_dir.stat().st_mode
    except OSError:
        return  # not there yet: created with the umask above
    if mode & 0o002:
        raise SchedulerError(
            f"state_dir {state_dir} is writable by every user (mode {mode & 0o7777:04o}): anyone on "
            f"this box could rewrite history or a run's files; fix it with `chmod o-w {state_dir}`"
        )


def _console() -> Any:
    from rich.console import Console

    # Piped or under systemd there is no terminal width: rich's default of 80 columns
    # would fold tables into unreadable slivers, so give files and journals more room.
    width = None if sys.stdout.isatty() or os.environ.get("COLUMNS") else 160
    return Console(highlight=False, soft_wrap=False, width=width)


def _local(moment: datetime | None, tz: Any = None) -> str:
    if moment is None:
        return "-"
    return moment.astimezone(tz).strftime("%Y-%m-%d %H:%M:%S %Z") if tz else moment.isoformat()


def _parse_time(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


def _user() -> str:
    # Under sudo, name the person, not root.
    return os.environ.get("SUDO_USER") or getpass.getuser()


# ---------------------------------------------------------------------- commands


def cmd_validate(args: argparse.Namespace) -> int:
    """Parse jobs.yaml and print each job's next 3 fire times; writes nothing."""
    from lib.config import load_config

    path = _config_path(args)
    config = load_config(path)
    from lib.app import build_app

    now = build_app(config, runners={}).clock.now()
    # rich's console.print costs ~440 µs a line, and this prints four lines a job: 17 s of
    # a 10,000-job validate. Ask rich once how it writes bold here (not at all when the
    # output is not a terminal), then write the lines straight to stdout.
    console = _console()
    with console.capture() as captured:
        console.print("[bold]NAME[/bold]", end="")
    bold, _, unbold = captured.get().partition("NAME")
    out = sys.stdout
    try:
        out.write(f"{path}: OK, {len(config.jobs)} job(s), state_dir {config.state_dir}\n")
        for job in config.jobs.values():
            flag = "" if job.enabled else " (disabled)"
            schedule = f"{job.trigger.describe()} ({job.timezone.key})"
            out.write(f"{bold}{job.name}{unbold}{flag}: {schedule}, runner {job.runner}\n")
            moment = now
            for _ in range(3):
                moment = job.trigger.next_after(moment)
                out.write(f"  {_local(moment, job.timezone)}\n")
        out.flush()
    except BrokenPipeError:  # `validate | head`: end quietly, as console.print did
        console.on_broken_pipe()
    return EXIT_OK


def cmd_next(args: argparse.Namespace) -> int:
    """Enabled jobs ordered by their next fire time."""
    from lib.config import load_config
    from lib.durations import format_duration

    config = load_config(_config_path(args))
    from lib.clock import SystemClock

    now = SystemClock().now()
    upcoming = sorted(
        ((job.trigger.next_after(now), job) for job in config.jobs.values() if job.enabled),
        key=lambda pair: pair[0],
    )
    console = _console()
    if not upcoming:
        console.print("no enabled jobs")
    for moment, job in upcoming:
        wait = format_duration((moment - now).total_seconds())
        console.print(f"{_local(moment, job.timezone)}  (in {wait})  {job.name}")
    return EXIT_OK


def cmd_status(args: argparse.Namespace) -> int:
    from rich.table import Table

    from lib.durations import format_duration

    app = _app(args, check_history=True)
    now = app.clock.now()
    unread = None
    paused: dict[str, Any] = {}
    try:
        last = app.history.last_runs()
        paused = app.history.paused()  # paused from the web UI
    except (OSError, sqlite3.Error) as exc:  # a full or read-only state_dir: still show the jobs
        from lib.statedir import write_problem

        last, unread = {}, f"warning: could not read the history: {write_problem(app.config.state_dir, exc)}"
    table = Table(title=f"dbt-scheduler: {len(app.config.jobs)} job(s)")
    for column in ("job", "schedule", "next run", "last run", "outcome", "duration"):
        table.add_column(column)
    for job in app.config.jobs.values():
        run = last.get(job.name)
        next_run = _local(job.trigger.next_after(now), job.timezone) if job.enabled else "disabled"
        if job.enabled and job.name in paused:
            next_run = f"paused by {paused[job.name]['paused_by'] or '?'}"
        started = _local(_parse_time(run["started_at"]), job.timezone) if run else "never"
        outcome = run["outcome"] if run else "-"
        duration = format_duration(run["duration_s"]) if run and run["duration_s"] is not None else "-"
        table.add_row(job.name, job.trigger.describe(), next_run, started, outcome, duration)
    _console().print(table)
    from lib.statedir import health

    problem = health(app.config.state_dir)
    if unread is not None:
        print(unread)
    if problem is not None:
        print(f"warning: {problem}")
    queue_line = _queue_line(app.config.state_dir, app.config.max_parallel, now)
    if queue_line:
        _console().print(queue_line, highlight=False)
    if unread is None:
        for failed in app.history.failed_deliveries(since=now - timedelta(days=1)):
            print(
                f"alert not delivered: {failed['event']} of {failed['job']} to {failed['channel']}"
                f" at {failed['at'][:19].replace('T', ' ')} UTC after {failed['attempts']} attempt(s):"
                f" {failed['error']}"
            )
    return EXIT_OK


def _queue_line(state_dir: Path, max_parallel: int, now: datetime) -> str:
    """The running daemon's queue of runs waiting for a slot, or '' when no daemon runs."""
    from lib.durations import format_duration
    from lib.queue_state import read_live

    queue = read_live(state_dir)
    if queue is None:
        return ""
    if not queue:
        return f"queue: no run waiting for a free slot (max_parallel {max_parallel})"
    oldest = queue[0]
    waited = max(0.0, (now - oldest.queued_at).total_seconds())
    jobs = ", ".join(entry.job for entry in queue)
    return (
        f"queue: {len(queue)} run(s) waiting for a free slot (max_parallel {max_parallel}): {jobs}; "
        f"oldest waiting {format_duration(waited)} ({oldest.job})"
    )


def cmd_history(args: argparse.Namespace) -> int:
    app = _app(args, check_history=True)
    if args.job is not None:
        app.config.job(args.job)  # an unknown job is an error, not an empty list
    runs = app.history.runs(args.job, limit=args.limit)
    if args.json:
        deliveries = app.history.deliveries_of([run["run_id"] for run in runs])
        for run in runs:
            run["deliveries"] = deliveries.get(run["run_id"], [])
        print(json.dumps(runs, indent=2))
        return EXIT_OK
    from rich.table import Table

    from lib.durations import format_duration

    table = Table(title=f"history{f' of {args.job}' if args.job else ''} (newest first)")
    table.add_column("run id", no_wrap=True)
    for column in ("job", "trigger", "started (UTC)", "outcome", "duration", "reason"):
        table.add_column(column, overflow="fold")
    for run in runs:
        duration = format_duration(run["duration_s"]) if run["duration_s"] is not None else "-"
        trigger = run["trigger"] + (f" by {run['triggered_by']}" if run["triggered_by"] else "")
        # A run-now with overrides did not run the job as configured: say so.
        for option in ("target", "select"):
            if run.get(f"{option}_override"):
                trigger += f" --{option} {run[f'{option}_override']}"
        table.add_row(
            run["run_id"],
            run["job"],
            trigger,
            run["started_at"][:19].replace("T", " "),
            run["outcome"],
            duration,
            run["reason"] or "",
        )
    _console().print(table)
    return EXIT_OK


def cmd_logs(args: argparse.Namespace) -> int:
    app = _app(args)
    app.config.job(args.job)
    if args.run:
        run = app.history.get(args.run)
        if run is None or run["job"] != args.job:
            raise SchedulerError(f"no run {args.run!r} of job {args.job!r}: see `history {args.job}`")
    else:
        runs = [r for r in app.history.runs(args.job, limit=20) if r["log_path"]]
        if not runs:
            raise SchedulerError(f"job {args.job!r} has no run with a log yet: try `run-now {args.job}`")
        run = runs[0]
    log_path = Path(run["log_path"]) if run["log_path"] else None
    if log_path is None or not log_path.is_file():
        raise SchedulerError(f"run {run['run_id']} has no log file ({log_path or 'never started'})")
    with open(log_path, encoding="utf-8", errors="replace") as handle:
        for line in handle:
            sys.stdout.write(line)
    return EXIT_OK


def cmd_run_now(args: argparse.Namespace) -> int:
    """Run one job by hand with live progress, then print the summary; exit 0 only if it succeeded.

    With a daemon on the state_dir the run is submitted to it and followed (lib/control_client.py);
    without one it runs here, in this process."""
    from lib.config import load_config
    from lib.control_socket import connect

    config = load_config(_config_path(args))
    config.job(args.job)  # an unknown job: exit 2 here, before asking anyone
    sock = connect(config.state_dir)
    if sock is not None:
        return _run_now_via_daemon(sock, config, args)
    return _run_now_here(args, config)


def _run_now_via_daemon(sock: Any, config: Any, args: argparse.Namespace) -> int:
    from lib.control_client import run_now
    from lib.report.console import render_summary

    console = _console()
    followed = run_now(sock, config.state_dir, args.job, args.target, args.select, console)
    if followed.kind == "refused":
        print(f"error: the daemon refused: {followed.reason}", file=sys.stderr)
        return EXIT_USAGE if followed.code == "unknown-job" else EXIT_REFUSED
    if followed.kind == "hangup":
        return EXIT_HANGUP
    if followed.kind == "left":
        return EXIT_LEFT
    if followed.record is None:
        print(f"see `scheduler.py history {args.job}` for how run {followed.run_id} ended", file=sys.stderr)
        return EXIT_JOB_FAILED
    with contextlib.suppress(OSError):
        render_summary(followed.record, console)
    return EXIT_OK if followed.record.outcome.status.ok else EXIT_JOB_FAILED


def cmd_cancel(args: argparse.Namespace) -> int:
    """Cancel a job's run in the daemon and wait until it is recorded; exit 0 when it was."""
    from lib.config import load_config
    from lib.control_client import cancel

    config = load_config(_config_path(args))
    config.job(args.job)
    result = cancel(config.state_dir, args.job, args.run)
    if result.kind == "no-daemon":
        print(
            f"error: no daemon runs on state_dir {config.state_dir}: nothing to cancel there", file=sys.stderr
        )
        for hint in result.hints:
            print(hint, file=sys.stderr)
        return EXIT_NO_DAEMON
    if result.kind == "refused":
        print(f"error: {result.reason}", file=sys.stderr)
        return EXIT_USAGE if result.code == "unknown-job" else EXIT_REFUSED
    if result.kind == "lost":
        print(f"error: the daemon stopped answering: {result.reason}", file=sys.stderr)
        return EXIT_JOB_FAILED
    return EXIT_OK


def cmd_api(args: argparse.Namespace) -> int:
    """The web API's JSON (or a log's text) over the control socket; exit 0 for a 2xx answer."""
    from lib.config import load_config
    from lib.control_socket import ask

    config = load_config(_config_path(args))
    answer = ask(config.state_dir, {"op": "get", "path": args.path})
    if answer is None:
        where = config.state_dir
        print(f"error: no daemon runs on state_dir {where}: start it (scheduler.py run)", file=sys.stderr)
        return EXIT_NO_DAEMON
    for event in answer:
        if event.get("event") == "error":
            print(f"error: {event.get('message')}", file=sys.stderr)
            return EXIT_JOB_FAILED
        if event.get("event") == "response":
            body = event.get("body")
            status = int(event.get("status", 500))
            if status >= 300:
                reason = body.get("error") if isinstance(body, dict) else body
                print(f"error: GET {args.path}: {status} {reason}", file=sys.stderr)
                return EXIT_JOB_FAILED
            sys.stdout.write(body if isinstance(body, str) else json.dumps(body, indent=2) + "\n")
            return EXIT_OK
    print("error: the daemon closed the socket without an answer", file=sys.stderr)
    return EXIT_JOB_FAILED


def _run_now_here(args: argparse.Namespace, config: Any) -> int:
    """run-now without a daemon: the run is this process's (signals cancel it)."""
    from lib.app import build_app
    from lib.models import TriggerKind
    from lib.report.console import RunProgress, render_summary

    _guard_state_dir(config.state_dir)
    app = build_app(config)
    app.history.check()
    job = app.config.job(args.job)
    console = _console()
    request = app.service.new_request(
        job, TriggerKind.MANUAL, triggered_by=_user(), target=args.target, select=args.select
    )
    from lib.runners.base import CancelToken

    cancel = CancelToken()

    # Ctrl-C, SIGTERM and SIGHUP (the terminal or SSH session went away) stop dbt
    # through the same path as a timeout: SIGINT first, so dbt cancels its warehouse
    # queries; the run is recorded as cancelled. The handler only sets the token: the
    # stopping happens on this thread, in the runner's wait loop.
    def on_signal(number: int, _frame: Any) -> None:
        name = signal.Signals(number).name
        why = " (the terminal went away)" if number == signal.SIGHUP else ""
        cancel.cancel(f"cancelled by {name}{why} during run-now")

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)
    with RunProgress(console, job.name) as progress:
        record = app.service.execute(request, on_line=progress.on_line, cancel=cancel)
    # A full or read-only state_dir refused the row or the report: a few more tries, then
    # say plainly what could not be recorded (there is no daemon loop to retry later).
    for _ in range(3):
        if not len(app.service.outbox):
            break
        time.sleep(1)
        app.service.retry_pending()
    if app.service.notifier is not None:
        # No daemon goes on after us: the run's alerts go out now, each bounded by its
        # channel's timeouts and retries, all of them by RUN_NOW_NOTIFY_S.
        app.service.notifier.close(RUN_NOW_NOTIFY_S)
    lost = app.service.outbox.give_up()
    if lost:
        where = app.config.state_dir
        print(
            f"warning: run {record.run_id} could not be recorded in {where} (see the error above)",
            file=sys.stderr,
        )
    with contextlib.suppress(OSError):  # the terminal is gone (SIGHUP): the run is recorded
        render_summary(record, console)
    return EXIT_OK if record.outcome.status.ok else EXIT_JOB_FAILED


def cmd_run(args: argparse.Namespace) -> int:
    """The daemon, in the foreground (systemd runs it like this)."""
    from lib.app import default_runners
    from lib.config import load_config
    from lib.daemon import Daemon
    from lib.sdnotify import SystemdNotifier

    # Before the app is built: it copies the environment the jobs get, which must not
    # carry systemd's NOTIFY_SOCKET (a job would be speaking for the service).
    systemd = SystemdNotifier.from_environ(os.environ, os.getpid())
    # A loop the watchdog finds hung is killed with SIGABRT: every thread's traceback
    # goes to stderr (the journal) first, showing where it hung.
    faulthandler.enable(all_threads=True)
    path = _config_path(args)
    app = _app(args, check_history=True, writes=True)
    print_lock = threading.Lock()

    def on_line(request: Any, line: str) -> None:
        with print_lock:
            sys.stdout.write(f"[{request.job.name}] {line}\n")
            sys.stdout.flush()

    def on_record(record: Any) -> None:
        # Plain text (report.md), not rich: the daemon's output goes to the journal, and
        # rich would add ~1.3 MB to a daemon that otherwise never imports it.
        report = record.run_dir / "report.md" if record.run_dir is not None else None
        with print_lock:
            if report is not None and report.is_file():
                sys.stdout.write(report.read_text(encoding="utf-8") + "\n")
            else:
                reason = f": {record.outcome.reason}" if record.outcome.reason else ""
                sys.stdout.write(f"{record.job} {record.outcome.status.value}{reason}\n")
            sys.stdout.flush()

    app.service.listeners.append(on_record)
    from lib.secrets import SecretMasker

    # What the daemon sends or serves besides the runs (heartbeat pings, web pages, socket
    # reads) hides the alert channels' secrets too, as the runs' masker does.
    masker = SecretMasker(app.config.notifications.secret_values)
    # Threads that live as long as the loop: the daemon starts them after start-up and
    # stops them after the runs, in this order.
    companions: list[Any] = []
    if app.config.heartbeat is not None:
        from lib.notify.delivery import Deliverer
        from lib.notify.heartbeat import HeartbeatPinger

        deliverer = Deliverer(mask=masker, clock=app.clock)
        companions.append(HeartbeatPinger(app.config.heartbeat, deliverer, app.clock))
    web = app.config.web
    metrics = None
    if web.metrics_textfile is not None or web.listen is not None:
        # Only then is prometheus_client imported: the daemon without `web:` stays lean.
        from lib.web.metrics import Metrics

        metrics = Metrics(app.history, lambda: daemon.config.jobs, app.clock)
        app.service.listeners.append(metrics.observe_run)
    if web.metrics_textfile is not None and metrics is not None:
        from lib.web.metrics import TextfileWriter

        companions.append(TextfileWriter(metrics, web.metrics_textfile, app.clock))
    if web.listen is not None and web.address is not None and metrics is not None:
        # Starlette, uvicorn and Jinja2 are imported only here, and the app is built once
        # the daemon has started (it reads the daemon's fire times and queue).
        from lib.web.app import for_daemon
        from lib.web.server import WebServer

        host, port = web.address
        companions.append(WebServer(lambda: for_daemon(daemon, masker, metrics.text), host, port, web.listen))
    daemon = Daemon(
        app.config,
        app.service,
        app.clock,
        companions=companions,
        reload_config=lambda: load_config(path),
        on_line=on_line,
        # On SIGHUP the runners are rebuilt the way build_app built them, when their
        # settings changed (a job with a new runner, an edited `aws:` or `docker:`).
        runner_factory=lambda config: default_runners(config, app.service.base_env),
        systemd=systemd,
    )
    # The handlers only set flags and wake the loop (Daemon.request_stop): a second SIGTERM
    # cuts the shutdown grace short, and the loop's thread does the cancelling.
    signal.signal(signal.SIGTERM, lambda *_: daemon.request_stop())
    signal.signal(signal.SIGINT, lambda *_: daemon.request_stop())
    signal.signal(signal.SIGHUP, lambda *_: daemon.request_reload())
    return _off_the_main_thread(lambda: _serve(daemon, masker), name="daemon-loop")


def _serve(daemon: Any, masker: Any) -> int:
    """Start the daemon, then its control socket (it needs the daemon lock), then loop;
    the socket goes once the daemon has stopped, so followers hear how their runs ended."""
    from lib.control_socket import ControlServer

    daemon.start()
    server = ControlServer(daemon.config.state_dir, daemon.control, reads=_socket_reads(daemon, masker))
    try:
        server.start()
    except OSError as exc:  # scheduling goes on; run-now then runs in its caller's process
        log.error("control socket %s: %s: run-now and cancel cannot reach this daemon", server.path, exc)
    try:
        return int(daemon.run_forever())
    finally:
        server.stop()


def _socket_reads(daemon: Any, masker: Any) -> Any:
    """The web API's GET routes over the control socket (lib/web/socket_api.py), the app
    built at the first such request: an idle daemon without `web:` imports none of it."""

    def read(path: Any, user: str) -> dict[str, Any]:
        with lock:  # one app, however many readers ask at once
            if not reads:
                from lib.web.app import for_daemon
                from lib.web.socket_api import SocketApi

                reads.append(SocketApi(for_daemon(daemon, masker, None)))
        return reads[0].get(path, user)

    reads: list[Any] = []
    lock = threading.Lock()
    return read


def _off_the_main_thread(work: Callable[[], int], name: str) -> int:
    """Run `work` on its own thread while the main thread only waits for it and takes signals.

    Python runs a signal handler on the main thread, between two bytecodes of whatever that
    thread is doing. Were the loop there, a handler waking the loop's Event could interrupt
    that same Event's wait() while it holds the Event's lock, and wait for it forever. Here
    the main thread holds no lock a handler needs; an exception from `work` is raised again
    here, so main() reports it as before.
    """
    outcome: list[int] = []
    failure: list[BaseException] = []

    def target() -> None:
        try:
            outcome.append(work())
        except BaseException as exc:  # handed to the main thread, which reports it
            failure.append(exc)

    thread = threading.Thread(target=target, name=name)
    thread.start()
    thread.join()  # interrupted by each signal to run its handler, then resumed
    if failure:
        raise failure[0]
    return outcome[0]


def cmd_repair_history(args: argparse.Namespace) -> int:
    """Move a corrupt history.db aside as history.db.corrupt-<UTC time> and start a new one."""
    from lib.history import HistoryCorrupt

    app = _app(args)
    try:
        app.history.check()
    except HistoryCorrupt as exc:
        print(f"{exc}", file=sys.stderr)
    else:
        if not args.force:
            print(f"history {app.history.path} passes its check: nothing to repair (--force: move it anyway)")
            return EXIT_OK
    aside = app.history.repair(app.clock.now())
    app.history.schema_version()  # creates the new, empty history.db now
    print(f"moved it aside as {aside}; a new {app.history.path} was created" if aside else "no history.db")
    return EXIT_OK


def cmd_prune(args: argparse.Namespace) -> int:
    """Delete old run folders, failed runs' work/ and history rows as `retention:` says."""
    from lib.app import build_app
    from lib.config import load_config
    from lib.retention import prune_state

    app = build_app(load_config(_config_path(args)), runners={})
    report = prune_state(app.config, app.history, app.clock.now(), dry_run=args.dry_run)
    for item in report.jobs:
        print(
            f"{item.job}: {item.run_dirs} run folder(s), {item.work_dirs} work/ folder(s), "
            f"{item.history_rows} history row(s), {item.bytes / 1e6:.1f} MB"
        )
    print(report.summary())
    return EXIT_OK


def cmd_bootstrap(args: argparse.Namespace) -> int:
    """Provision what ECS jobs need: env file in S3, roles, image, log group, task definition."""
    from lib.config import load_config

    config = load_config(_config_path(args))
    if config.aws is None:
        raise SchedulerError(f"{_config_path(args)}: bootstrap needs an `aws:` section (see README)")
    if args.ops_policy:
        from lib.bootstrap import policy_json

        if args.ops_policy != "both":  # one JSON document, to pipe into `aws iam create-policy`
            print(policy_json(args.ops_policy, config.aws))
            return EXIT_OK
        print("# runtime: attach to the ops box (the daemon running ECS jobs), and nothing else")
        print(policy_json("runtime", config.aws))
        print("\n# bootstrap: for an administrator or a CI role running `scheduler.py bootstrap`")
        print(policy_json("bootstrap", config.aws))
        return EXIT_OK
    from lib.aws.clients import AwsClients
    from lib.bootstrap.command import run_bootstrap

    return int(
        run_bootstrap(
            config,
            AwsClients(config.aws),
            dry_run=args.dry_run,
            only=args.only,
            force=args.force,
            console=_console(),
        )
    )


def cmd_schema(args: argparse.Namespace) -> int:
    """Prints the schema built from the key table; reads no jobs.yaml, so it works anywhere."""
    from lib.config.schema import render

    sys.stdout.write(render())
    return EXIT_OK


def cmd_notify(args: argparse.Namespace) -> int:
    """`notify test CHANNEL`: one sample alert, delivered now (retries included); exit 0
    when the channel took it, 1 with the channel's error, 2 for an unknown channel."""
    from lib.config import load_config
    from lib.notify.dispatcher import build_notifier, sample_report
    from lib.notify.message import build_alert
    from lib.secrets import SecretMasker

    config = load_config(_config_path(args))
    channels = config.notifications.channels
    channel = channels.get(args.channel)
    if channel is None:
        from lib.config.checks import did_you_mean

        known = ", ".join(sorted(channels)) or "none"
        raise SchedulerError(
            f"no channel named {args.channel!r}{did_you_mean(args.channel, channels)} (channels: {known})"
        )
    masker = SecretMasker(config.notifications.secret_values)
    notifier = build_notifier(config, history=None, mask=masker)
    job = next(iter(config.jobs), "example")
    alert = build_alert("failed", sample_report(job, notifier.clock.now()), mask=masker)
    result = notifier.send(channel, alert)
    if result is None:
        print(f"{channel.name} ({channel.type}): nothing to send for a sample failure")
        return EXIT_OK
    if result.ok:
        print(f"{channel.name} ({channel.type}): delivered ({result.attempts} attempt(s))")
        return EXIT_OK
    print(f"error: {result.error}", file=sys.stderr)
    return EXIT_JOB_FAILED


def _access(args: argparse.Namespace, writes: bool = False) -> tuple[Any, Any, Any]:
    """History, clock and masker for `token` and `audit` (no runners are built)."""
    from lib.app import build_app
    from lib.config import load_config
    from lib.secrets import SecretMasker

    app = build_app(load_config(_config_path(args)), runners={})
    if writes:
        _guard_state_dir(app.config.state_dir)
    app.history.check()
    return app.history, app.clock, SecretMasker(app.config.notifications.secret_values)


def cmd_token(args: argparse.Namespace) -> int:
    """`token create|list|revoke`: API tokens (lib/web/tokens.py); create and revoke are audited."""
    from lib.web.audit import AuditLog
    from lib.web.roles import Role
    from lib.web.tokens import TokenStore, parse_expiry

    history, clock, masker = _access(args, writes=args.token_command != "list")
    store = TokenStore(history, clock)
    audit = AuditLog(history, clock, mask=masker)
    now = clock.now()
    if args.token_command == "create":
        try:
            expires_in = parse_expiry(args.expires)
            token, info = store.create(args.user, Role(args.role), jobs=args.jobs, expires_in=expires_in)
        except ValueError as exc:
            raise SchedulerError(str(exc)) from None
        audit.record(
            user=_user(), source="cli", action="token_create", result="allowed", detail=info.describe(now)
        )
        print(token)
        print(
            f"created token {info.describe(now)}: it is shown only this once, store it now "
            f"(`token revoke {info.id}` if it leaks)",
            file=sys.stderr,
        )
        return EXIT_OK
    if args.token_command == "revoke":
        before = store.get(args.id)
        if before is None:
            print(f"error: no token with id {args.id!r}: see `token list`", file=sys.stderr)
            return EXIT_JOB_FAILED
        if before.revoked_at is not None:
            print(f"token {before.id} was already revoked at {_local(before.revoked_at)}")
            return EXIT_OK
        revoked = store.revoke(args.id)
        assert revoked is not None
        audit.record(
            user=_user(), source="cli", action="token_revoke", result="allowed", detail=revoked.describe(now)
        )
        print(f"revoked token {revoked.describe(now)}")
        return EXIT_OK
    tokens = store.list()
    if args.json:
        print(json.dumps([item.as_json(now) for item in tokens], indent=2))
        return EXIT_OK
    from rich.table import Table

    table = Table(title=f"API tokens ({len(tokens)})")
    for column in (
        "id",
        "user",
        "role",
        "jobs",
        "state",
        "created (UTC)",
        "expires (UTC)",
        "last used (UTC)",
    ):
        table.add_column(column, no_wrap=column == "id")
    for item in tokens:
        table.add_row(
            item.id,
            item.user,
            item.role.value,
            ", ".join(item.jobs),
            item.state(now),
            _utc(item.created_at),
            _utc(item.expires_at) if item.expires_at else "never",
            _utc(item.last_used_at) if item.last_used_at else "never",
        )
    _console().print(table)
    return EXIT_OK


def cmd_audit(args: argparse.Namespace) -> int:
    """The audit log (lib/web/audit.py), newest first."""
    from lib.web.audit import AuditLog

    history, clock, masker = _access(args)
    entries = AuditLog(history, clock, mask=masker).query(limit=args.limit, user=args.user, job=args.job)
    if args.json:
        print(json.dumps([entry.as_json() for entry in entries], indent=2))
        return EXIT_OK
    from rich.table import Table

    table = Table(title="audit log (newest first)")
    for column in ("at (UTC)", "user", "source", "peer", "action", "job", "run id", "result", "detail"):
        table.add_column(column, overflow="fold")
    for entry in entries:
        table.add_row(
            _utc(entry.at),
            entry.user or "-",
            entry.source,
            entry.peer or "-",
            entry.action,
            entry.job or "-",
            entry.run_id or "-",
            entry.result,
            entry.detail or "",
        )
    _console().print(table)
    return EXIT_OK


def _utc(moment: datetime | None) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S") if moment is not None else "-"


COMMANDS = {
    "bootstrap": cmd_bootstrap,
    "notify": cmd_notify,
    "schema": cmd_schema,
    "run": cmd_run,
    "run-now": cmd_run_now,
    "validate": cmd_validate,
    "next": cmd_next,
    "status": cmd_status,
    "history": cmd_history,
    "logs": cmd_logs,
    "cancel": cmd_cancel,
    "api": cmd_api,
    "prune": cmd_prune,
    "repair-history": cmd_repair_history,
    "token": cmd_token,
    "audit": cmd_audit,
}
