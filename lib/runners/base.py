"""The Runner protocol, what a runner is given, and how an exit becomes an outcome."""

from __future__ import annotations

import contextlib
import re
import subprocess
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Protocol

from lib.clock import Clock
from lib.dbt_log import dbt_error
from lib.dbt_results import strip_ansi, summarize
from lib.markers import parse_marker
from lib.models import NodeResult, RunOutcome, RunRequest, RunStatus
from lib.secrets import SecretMasker

# run_commands.sh exit codes for failures before dbt ran (see the script's header).
SETUP_EXIT_CODES = {
    10: "bad configuration",
    11: "fetching the dbt project's code failed",
    12: "dbt deps failed",
    127: "dbt is not installed where the job runs",
}
LOG_TAIL_LINES = 200  # lines kept in memory for the failure reason
EXIT_POLL_S = 0.2  # how often to look for the exit of a child whose output has closed
EXIT_WAIT_S = 60.0  # longest wait for an exit after output ended or a stop (then: stop again)
OUTPUT_JOIN_S = 5.0  # longest wait for the output thread after the child exited
_MISSING_ENV_VAR = re.compile(r"Env var required but not provided: '([^']+)'")


class CancelToken:
    """Set once when a run must stop (daemon shutdown); wakes whoever waits on it."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self._callbacks: list[Callable[[], None]] = []
        self._lock = threading.Lock()
        # Set by `detach()`: stop following the run but leave it going (a remote task a
        # restarted daemon re-attaches to), instead of stopping it.
        self.detached = False
        # Why the run was cancelled, for its outcome; the first cancel's reason wins.
        self.reason = "cancelled: the scheduler was stopping"
        self._reason_given = False

    def detach(self) -> None:
        self.detached = True
        self.cancel()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def cancel(self, reason: str | None = None) -> None:
        with self._lock:
            if reason is not None and not self._reason_given:
                self.reason, self._reason_given = reason, True
            self._event.set()
            callbacks = list(self._callbacks)
        for callback in callbacks:
            callback()

    def on_cancel(self, callback: Callable[[], None]) -> None:
        """Call `callback` on cancel (at once if already cancelled)."""
        with self._lock:
            if not self._event.is_set():
                self._callbacks.append(callback)
                return
        callback()


@dataclass
class RunContext:
    """Everything a runner needs for one run besides the job itself."""

    request: RunRequest
    run_dir: Path  # <state_dir>/runs/<job>/<run_id>/: log, artifacts, reports
    clock: Clock
    masker: SecretMasker
    on_line: Callable[[str], None] = lambda line: None  # each masked output line, as it comes
    cancel: CancelToken = field(default_factory=CancelToken)
    # Where a runner may keep state between runs of the same job (dbt's partial parse).
    cache_dir: Path | None = None
    # Called with e.g. an ECS task ARN as soon as it exists, so history can record it.
    on_external_id: Callable[[str, str | None], None] = lambda external_id, log_url: None
    # Called with a local run's script pid (= its process group) as soon as it exists,
    # so history can record it and a restarted daemon find an orphaned run.
    on_process: Callable[[int], None] = lambda pid: None
    # Descriptors the run's process inherits: the job lock's, so the kernel keeps the
    # lock held while bash/dbt live, even if the scheduler is killed (kill -9).
    inherit_fds: tuple[int, ...] = ()


class Runner(Protocol):
    def run(self, ctx: RunContext) -> RunOutcome:
        """Run the job once and say how it went. Only programming errors raise."""
        ...


def classify_exit(
    exit_code: int | None,
    *,
    nodes: tuple[NodeResult, ...] | None,
    error_marker: str | None,
    log_tail: list[str],
    job_name: str,
) -> tuple[RunStatus, str]:
    """Status and a one-line reason for a run_commands.sh exit (timeouts and cancels decided by the caller).

    The reason names what broke and, where we can tell, the fix: a dbt failure is
    summarised from the node results; a failure before dbt ran is `failed_to_start`
    with the script's own ERROR line; a missing env var dbt asked for is named. When
    no node says what failed (dbt stopped before running any, and wrote no
    run_results.json), the reason is the error dbt printed (`Runtime Error: Database
    Error: … Could not connect to Snowflake backend …`, a compilation error), found by
    `lib.dbt_log.dbt_error` in either of dbt's log formats — never merely the last line.
    """
    if exit_code == 0:
        if nodes is None:
            return RunStatus.SUCCEEDED, "dbt succeeded but wrote no run_results.json"
        return RunStatus.SUCCEEDED, summarize(nodes)  # e.g. warnings
    if exit_code in SETUP_EXIT_CODES:
        what = error_marker or SETUP_EXIT_CODES[exit_code]
        return RunStatus.FAILED_TO_START, what
    missing = next((m.group(1) for line in log_tail for m in [_MISSING_ENV_VAR.search(line)] if m), None)
    if missing:
        return RunStatus.FAILED, (
            f"dbt needs environment variable {missing}: set it in jobs.{job_name}.env or its env_file"
        )
    if exit_code is not None and exit_code < 0:
        signal_name = _signal_name(-exit_code)
        return RunStatus.FAILED, f"killed by {signal_name} (out of memory, or stopped from outside?)"
    if exit_code == 137:
        return RunStatus.FAILED, "killed (exit 137: out of memory, or stopped from outside?)"
    summary = summarize(nodes) if nodes else ""
    if summary:
        return RunStatus.FAILED, summary
    if error_marker:
        return RunStatus.FAILED, error_marker
    printed = dbt_error(log_tail)
    if printed:
        return RunStatus.FAILED, printed
    artifacts = " (dbt wrote no run_results.json)" if nodes is None else ""
    # Nothing dbt-shaped was printed (a wrapper script, a crash): its last line, then.
    last = next(
        (line.strip() for line in reversed(log_tail) if line.strip() and parse_marker(line) is None), ""
    )
    detail = f": {last[:200]}" if last else ""
    return RunStatus.FAILED, f"exit code {exit_code}{artifacts}{detail}"


def _signal_name(number: int) -> str:
    import signal

    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


class OutputWatcher:
    """Reads the child's output on a thread: masks, logs, forwards, and remembers markers."""

    def __init__(self, stream: IO[bytes] | None, log: IO[str], ctx: RunContext) -> None:
        self.stream = stream
        self.log = log
        self.ctx = ctx
        self.git_sha: str | None = None
        self.error_marker: str | None = None
        self.tail: deque[str] = deque(maxlen=LOG_TAIL_LINES)
        self._in_traceback = False
        self.done = False
        self._thread: threading.Thread | None = None

    def start(self, on_eof: Callable[[], Any]) -> None:
        def pump() -> None:
            try:
                if self.stream is not None:
                    for raw in self.stream:
                        self._line(raw.decode("utf-8", errors="replace").rstrip("\r\n"))
            finally:
                self.done = True
                on_eof()

        self._thread = threading.Thread(target=pump, name=f"output-{self.ctx.request.run_id}", daemon=True)
        self._thread.start()

    def _line(self, line: str) -> None:
        # dbt colours its output even into a pipe unless told not to (DBT_USE_COLORS,
        # set by lib/run_env.py), and a command may say --use-colors: strip what is
        # left here, the one path to run.log, history's reason, the console and the
        # daemon's journal. Before masking, so a code inside a secret cannot hide it.
        line = self.ctx.masker(strip_ansi(line).replace("\n", " "))
        # A plain file on a full or read-only disk (RunLog never raises): the line is
        # lost from the file, but the pipe keeps draining so the child never blocks.
        with contextlib.suppress(OSError, ValueError):
            self.log.write(line + "\n")
        # A Python traceback dbt prints after its error runs to hundreds of indented
        # frame lines; kept out of the tail, they cannot push dbt's error out of it.
        if line.startswith("Traceback (most recent call last)") or line.endswith(
            "  Traceback (most recent call last):"
        ):
            self._in_traceback = True
            self.tail.append(line)  # it ends dbt's message before it
        elif self._in_traceback and line[:1].isspace():
            pass
        else:
            self._in_traceback = False
            self.tail.append(line)
        marker = parse_marker(line)
        if marker is not None:
            kind, rest = marker
            if kind == "GIT_SHA":
                self.git_sha = rest
            elif kind == "ERROR":
                self.error_marker = rest
        with contextlib.suppress(Exception):  # a broken console must not break the run
            self.ctx.on_line(line)

    def join(self, timeout: float | None = None) -> None:
        """Wait for the end of output; with `timeout`, no longer than that (a grandchild
        that keeps the pipe open must not hold the run)."""
        if self._thread is not None:
            self._thread.join(timeout)


def follow_process(
    process: Any, log: IO[str], ctx: RunContext, stop: Callable[[], None]
) -> tuple[int, bool, bool, OutputWatcher]:
    """Stream a child's output until it ends; on the job's timeout or a cancel, call `stop`.

    Returns (exit code, timed out, cancelled, the watcher with the SHA/ERROR markers).
    Waits on an event set at end of output or on cancel, through the injected clock:
    no polling, so a run that ends is noticed at once.
    """
    job = ctx.request.job
    watcher = OutputWatcher(process.stdout, log, ctx)
    finished = threading.Event()
    watcher.start(on_eof=finished.set)
    ctx.cancel.on_cancel(finished.set)
    never = threading.Event()  # for the short exit polls: nothing sets it
    timed_out = False
    limit = job.timeout if job.timeout is not None else threading.TIMEOUT_MAX
    started = ctx.clock.monotonic()
    while process.poll() is None or not watcher.done:
        if ctx.cancel.cancelled:
            break
        remaining = limit - (ctx.clock.monotonic() - started)
        if remaining <= 0:
            timed_out = True
            break
        if watcher.done:
            # Output closed but the process lives on (it closed stdout, or a grandchild
            # kept it): no event tells its exit, so look again shortly, still bounded by
            # the timeout and the cancel. Rare, so the short poll costs nothing.
            ctx.clock.wait(min(remaining, EXIT_POLL_S), never)
        else:
            ctx.clock.wait(remaining, finished)
    cancelled = ctx.cancel.cancelled and process.poll() is None
    if timed_out or cancelled:
        stop()
    exit_code = _bounded_wait(process, stop)
    watcher.join(OUTPUT_JOIN_S)
    return exit_code, timed_out, cancelled, watcher


def _bounded_wait(process: Any, stop: Callable[[], None]) -> int:
    """The exit code, without ever waiting unbounded: a child still there after
    EXIT_WAIT_S is stopped (the runner's escalation ends in SIGKILL) and waited for again."""
    try:
        return int(process.wait(timeout=EXIT_WAIT_S))
    except subprocess.TimeoutExpired:
        stop()
    return int(process.wait(timeout=EXIT_WAIT_S))
