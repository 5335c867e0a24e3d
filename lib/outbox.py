"""Writes that failed because state_dir could not take them, kept until it can.

A run whose history row or report cannot be written (a full or read-only disk, a
history.db another process holds locked past the busy timeout) still happened: its
record waits here, in memory, and the daemon's loop retries it on each tick, so the
row and the report appear once space returns. A skipped or missed fire time takes
the same path, so every fire time still ends as exactly one row.

In memory only, on purpose: the disk that refused the row would refuse a spool file
too. What is still pending when the daemon stops is logged whole (run id, job,
outcome, reason) — the journal usually lives on another disk — and said to be lost.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass

from lib.models import RunRecord

log = logging.getLogger("dbt_scheduler")

# Errors that mean "state_dir cannot take this now", as opposed to a bug.
WRITE_ERRORS: tuple[type[BaseException], ...] = (OSError, sqlite3.Error)


@dataclass
class _Pending:
    record: RunRecord
    what: str  # "history row" or "report"
    write: Callable[[], object]


class Outbox:
    """Pending writes, oldest first; thread-safe (run workers add, the loop retries)."""

    def __init__(self) -> None:
        self._items: list[_Pending] = []
        self._lock = threading.Lock()
        self._retrying = threading.Lock()

    def add(self, record: RunRecord, what: str, write: Callable[[], object]) -> None:
        with self._lock:
            self._items.append(_Pending(record, what, write))

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def retry(self) -> int:
        """Try every pending write once, in order; returns how many are done now.

        A write that fails again stays, silently (its failure was logged when it first
        happened; the loop retries each tick). Reports go before rows, as a run writes them.
        """
        if not self._retrying.acquire(blocking=False):
            return 0  # another thread is at it
        try:
            with self._lock:
                items = list(self._items)
            done = []
            for item in items:
                try:
                    item.write()
                except WRITE_ERRORS:
                    continue
                done.append(item)
            if done:
                with self._lock:
                    self._items = [item for item in self._items if item not in done]
                rows = sum(1 for item in done if item.what == "history row")
                log.info(
                    "state_dir can be written again: recorded %d pending run(s) and %d report(s)",
                    rows,
                    len(done) - rows,
                )
            return len(done)
        finally:
            self._retrying.release()

    def give_up(self) -> list[RunRecord]:
        """At exit: log each write still pending, whole, and drop them; returns their records."""
        with self._lock:
            items, self._items = self._items, []
        for item in items:
            outcome = item.record.outcome
            log.error(
                "%s: run %s (%s%s) could not be recorded: its %s is lost",
                item.record.job,
                item.record.run_id,
                outcome.status.value,
                f": {outcome.reason}" if outcome.reason else "",
                item.what,
            )
        return [item.record for item in items]
