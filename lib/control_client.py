"""`run-now` and `cancel` through the running daemon: the CLI's side of the control socket.

`run-now` hands the run to the daemon (lib/control_socket.py): from then on the run is
the daemon's — its queue, `max_parallel`, its record, with the caller's user name from
the kernel as `triggered_by` — and this side only follows it: every output line
printed as `RunProgress` prints it, then the same summary (`render_summary`) from the
record the daemon recorded. Notes about the daemon (submitted, waiting for a slot,
lines too slow to show) go to stderr, so stdout is what an in-process run-now prints.

While following:

- Ctrl-C on a terminal asks `cancel the run? [y/N]`: `y` cancels it in the daemon
  (SIGINT to dbt first, as a timeout) and follows it to its recorded end; anything
  else stops following and leaves the run going. Without a terminal (stdin is not a
  tty) Ctrl-C cancels. SIGTERM cancels too.
- A second Ctrl-C or SIGTERM once a cancel was asked stops following (the cancel goes on).
- SIGHUP (the terminal or the SSH session went away) stops following; the run goes on
  in the daemon and is recorded there.

Signal handlers only note the signal; the following loop acts on it, so nothing is
done inside a handler (a handler waking a lock the loop holds could wait forever).
"""

from __future__ import annotations

import contextlib
import queue
import signal
import socket
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TextIO

from lib.control_socket import ask, events, send
from lib.report.files import record_from_dict

if TYPE_CHECKING:
    from rich.console import Console

    from lib.models import RunRecord

_POLL_S = 0.2  # how often the follower looks at the signals noted while no event came


@dataclass(frozen=True)
class Followed:
    """How following a run ended: `finished` (its record), `refused` (the daemon's code and
    reason), `left` (the caller stopped following; the run goes on), `hangup` (the terminal
    went away; the run goes on), `lost` (the daemon stopped or answered nonsense)."""

    kind: Literal["finished", "refused", "left", "hangup", "lost"]
    run_id: str | None = None
    record: RunRecord | None = None
    code: str | None = None
    reason: str | None = None


def _note(err: TextIO, text: str) -> None:
    with contextlib.suppress(OSError, ValueError):  # the terminal may be gone
        err.write(f"run-now: {text}\n")
        err.flush()


def _read(sock: socket.socket, inbox: queue.Queue[dict[str, Any] | None]) -> None:
    """The reader thread: every event line into `inbox`, then None when the daemon closes."""
    try:
        for event in events(sock):
            inbox.put(event)
    except (OSError, ValueError):
        pass
    inbox.put(None)


@contextlib.contextmanager
def _noted_signals(numbers: tuple[int, ...]) -> Iterator[list[int]]:
    """Signals received while following, in order; the previous handlers come back after."""
    noted: list[int] = []
    previous = {number: signal.signal(number, lambda n, _frame: noted.append(n)) for number in numbers}
    try:
        yield noted
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def _ask_cancel(err: TextIO) -> bool:
    """`cancel the run? [y/N]` on the terminal; Ctrl-C again, end of input or no terminal: no."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        err.write("\ncancel the run? [y/N] ")
        err.flush()
        answer = sys.stdin.readline()
    except (KeyboardInterrupt, OSError, ValueError):
        answer = ""
    finally:
        signal.signal(signal.SIGINT, previous)
    return answer.strip().lower() in {"y", "yes"}


@dataclass
class _Follower:
    state_dir: Path
    job: str
    console: Console
    err: TextIO
    interactive: bool
    run_id: str | None = None
    cancelling: bool = False
    inbox: queue.Queue[dict[str, Any] | None] = field(default_factory=queue.Queue)

    def cancel(self, via: str) -> None:
        self.cancelling = True
        assert self.run_id is not None
        answer = ask(
            self.state_dir,
            {"op": "cancel", "job": self.job, "run_id": self.run_id, "via": via, "follow": False},
        )
        first = next(answer, None) if answer is not None else None
        if first is not None and first.get("event") == "accepted":
            _note(self.err, f"cancelling run {self.run_id} (SIGINT to dbt first); following it to its end")
        elif first is not None and first.get("event") == "refused":
            _note(self.err, f"could not cancel: {first.get('reason')}")
        else:
            _note(self.err, "could not cancel: the daemon did not answer")

    def on_signal(self, number: int, progress: Any) -> Followed | None:
        """Act on one noted signal; a Followed when following ends here."""
        stop_it = f"`scheduler.py cancel {self.job} --run {self.run_id}` stops it"
        leave = f"run {self.run_id} goes on in the daemon ({stop_it})"
        if number == signal.SIGHUP:
            return Followed("hangup", self.run_id)
        if self.run_id is None:
            _note(
                self.err,
                "interrupted before the daemon answered: a run may start; "
                f"`scheduler.py cancel {self.job}` stops it",
            )
            return Followed("left")
        if self.cancelling:
            _note(self.err, f"stopped following; the cancel of run {self.run_id} goes on in the daemon")
            return Followed("left", self.run_id)
        if number == signal.SIGINT:
            if self.interactive:
                progress.pause()
                yes = _ask_cancel(self.err)
                progress.resume()
                if not yes:
                    _note(self.err, f"stopped following: {leave}")
                    return Followed("left", self.run_id)
            self.cancel("Ctrl-C in run-now")
        else:
            self.cancel("SIGTERM to run-now")
        return None

    def on_event(self, event: dict[str, Any], progress: Any) -> Followed | None:
        kind = event.get("event")
        if kind == "accepted":
            self.run_id = event["run_ids"][0]
            waiting = event.get("waiting") or 0
            where = f"; waiting for a free slot ({waiting} in the queue)" if waiting else ""
            _note(self.err, f"run {self.run_id} submitted to the daemon as {event.get('user')}{where}")
        elif kind == "refused":
            return Followed("refused", code=event.get("code"), reason=event.get("reason"))
        elif kind == "line":
            progress.on_line(event.get("line") or "")
        elif kind == "dropped":
            _note(
                self.err,
                f"{event.get('count')} line(s) of output not shown (this terminal was too slow); "
                f"`scheduler.py logs {self.job} --run {self.run_id}` has them all",
            )
        elif kind == "finished":
            return Followed("finished", self.run_id, record=record_from_dict(event["record"]))
        elif kind == "error":
            _note(self.err, f"the daemon said: {event.get('message')}")
            return Followed("lost", self.run_id)
        return None


def run_now(
    sock: socket.socket,
    state_dir: Path,
    job: str,
    target: str | None,
    select: str | None,
    console: Console,
    err: TextIO = sys.stderr,
    interactive: bool | None = None,
) -> Followed:
    """Submit a run-now on `sock` (connected to the daemon) and follow it (module docstring)."""
    from lib.report.console import RunProgress

    follower = _Follower(
        state_dir, job, console, err, sys.stdin.isatty() if interactive is None else interactive
    )
    send(sock, {"op": "run-now", "job": job, "target": target, "select": select})
    reader = threading.Thread(target=_read, args=(sock, follower.inbox), name="control-reader", daemon=True)
    reader.start()
    try:
        with (
            _noted_signals((signal.SIGINT, signal.SIGTERM, signal.SIGHUP)) as noted,
            RunProgress(console, job) as progress,
        ):
            while True:
                while noted:
                    ended = follower.on_signal(noted.pop(0), progress)
                    if ended is not None:
                        return ended
                try:
                    event = follower.inbox.get(timeout=_POLL_S)
                except queue.Empty:
                    continue
                if event is None:
                    _note(err, f"the daemon closed the connection before run {follower.run_id} finished")
                    return Followed("lost", follower.run_id)
                ended = follower.on_event(event, progress)
                if ended is not None:
                    return ended
    finally:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        sock.close()


# ---------------------------------------------------------------------- cancel


@dataclass(frozen=True)
class Cancelled:
    """What `cancel` got: `cancelled` (the records of the runs stopped), `refused`, or
    `no-daemon` (with hints about run-nows of the job running in other processes)."""

    kind: Literal["cancelled", "refused", "no-daemon", "lost"]
    records: tuple[RunRecord, ...] = ()
    code: str | None = None
    reason: str | None = None
    hints: tuple[str, ...] = ()


def cancel(state_dir: Path, job: str, run_id: str | None, out: TextIO = sys.stdout) -> Cancelled:
    """Ask the daemon to cancel `job`'s run (every running or waiting one without `run_id`)
    and wait for each to be recorded."""
    answer = ask(state_dir, {"op": "cancel", "job": job, "run_id": run_id, "via": "scheduler.py cancel"})
    if answer is None:
        return Cancelled("no-daemon", hints=_other_run_nows(state_dir, job, run_id))
    records: list[RunRecord] = []
    for event in answer:
        kind = event.get("event")
        if kind == "refused":
            return Cancelled("refused", code=event.get("code"), reason=event.get("reason"))
        if kind == "accepted":
            ids = ", ".join(event["run_ids"])
            out.write(f"cancelling {job} run {ids} (SIGINT to dbt first) …\n")
            out.flush()
        elif kind == "finished":
            record = record_from_dict(event["record"])
            records.append(record)
            reason = f": {record.outcome.reason}" if record.outcome.reason else ""
            status = record.outcome.status.value
            out.write(f"{record.job} run {record.run_id} {status} in {record.duration_s:.1f}s{reason}\n")
            out.flush()
        elif kind == "error":
            return Cancelled("lost", tuple(records), reason=event.get("message"))
    return Cancelled("cancelled", tuple(records))


def _other_run_nows(state_dir: Path, job: str, run_id: str | None) -> tuple[str, ...]:
    """Runs of `job` history says are going, supervised by a live process (a run-now in
    another shell): how to stop each."""
    from lib import procs
    from lib.history import History

    db = state_dir / "history.db"
    if not db.is_file():
        return ()
    try:
        rows = History(db).running()
    except Exception:  # unreadable for this user, or busy: no hint, the main answer stands
        return ()
    hints = []
    for row in rows:
        if row["job"] != job or (run_id is not None and row["run_id"] != run_id):
            continue
        pid = row.get("supervisor_pid")
        if pid and procs.same_process(pid, row.get("supervisor_start")):
            by = f" by {row['triggered_by']}" if row.get("triggered_by") else ""
            hints.append(
                f"run {row['run_id']} of {job} is a run-now{by} in another process (pid {pid}): "
                f"`kill -INT {pid}` stops it as Ctrl-C there would (recorded cancelled)"
            )
    return tuple(hints)
