"""run.log that survives a full or read-only state_dir.

The thread that copies a child's output into run.log must keep draining the pipe
whatever the disk does: if it stopped, the child would block on a full pipe and
its timeout could no longer be enforced. So a write that fails (ENOSPC, EROFS,
EIO) drops that line and counts it; every later line tries again, and the first
write that works is preceded by one note saying how many lines were lost and why.
Writes go straight to the descriptor (one `write` per line, as the line-buffered
file did) so no buffer holds failed data that `close()` would raise about later.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from types import TracebackType


def dropped_note(count: int, error: str) -> str:
    return f"[dbt-scheduler] {count} line(s) of output could not be written to run.log: {error}"


class RunLog:
    """A text sink for run.log whose `write` never raises; see `dropped` and `error`."""

    def __init__(self, path: Path, append: bool = False) -> None:
        self.path = path
        self.dropped = 0  # lines lost in total
        self.error: str | None = None  # the last write error, e.g. 'No space left on device'
        self._unreported = 0  # lines lost since the last note
        self._cut = False  # the file ends inside a line the disk cut short
        flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if append else os.O_TRUNC)
        self._fd: int | None
        try:
            self._fd = os.open(path, flags, 0o644)
        except OSError as exc:
            # Read-only or full state_dir: the run still goes, its output still reaches
            # the console and the journal; only the file is missing.
            self._fd = None
            self.error = exc.strerror or str(exc)

    def write(self, text: str) -> int:
        """Write `text` (normally one line); on failure count its lines as dropped."""
        if self._fd is None:
            self._drop(text)
            return len(text)
        # A line cut short by the disk filling up ends here, so the note starts a line.
        prefix = "\n" if self._cut else ""
        note = prefix + dropped_note(self._unreported, self.error or "") + "\n"
        if self._unreported and not self._put(note):
            self._drop(text)
            return len(text)
        self._unreported = 0
        if not self._put(text):
            self._drop(text)
        return len(text)

    def _put(self, text: str) -> bool:
        data = text.encode("utf-8", errors="replace")
        try:
            while data:
                written = os.write(self._fd, data)  # type: ignore[arg-type]
                data = data[written:]
                self._cut = bool(data)  # part of it is in the file already
        except OSError as exc:
            self.error = exc.strerror or str(exc)
            return False
        self._cut = False
        return True

    def _drop(self, text: str) -> None:
        lines = max(1, text.count("\n"))
        self.dropped += lines
        self._unreported += lines

    def note(self) -> str | None:
        """The one-line note about lost output, for the run's reason; None when nothing was lost."""
        return dropped_note(self.dropped, self.error or "") if self.dropped else None

    def flush(self) -> None:
        """Nothing is buffered."""

    def close(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            with contextlib.suppress(OSError):
                os.close(fd)

    def __enter__(self) -> RunLog:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def with_note(reason: str, log: RunLog) -> str:
    """The run's reason with the lost-output note after it, so history says run.log is incomplete."""
    note = log.note()
    if note is None:
        return reason
    return f"{reason}; {note}" if reason else note
