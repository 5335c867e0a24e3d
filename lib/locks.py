"""Advisory file locks: one daemon per state_dir, one run per job at a time.

`flock` locks belong to an open file description, so two threads of one daemon
that each open the lock file conflict exactly like two processes do: the daemon's
worker threads and a `run-now` in another shell share one mechanism. The kernel
drops the lock when its holder dies, so a crashed daemon never leaves a stale lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path


class LockError(OSError):
    """The lock could not be taken for a reason other than another holder (disk full…)."""


class FileLock:
    """A non-blocking exclusive lock on `path`; the file records who holds it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def try_acquire(self, holder: str) -> bool:
        """Take the lock and write `holder` into the file; False when someone else has it.

        Raises LockError (the lock not kept) when the holder cannot be written.
        """
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        try:
            os.ftruncate(fd, 0)
            os.write(fd, holder.encode())
        except OSError as exc:
            # A full or read-only state_dir: let go at once, or the job would stay
            # locked until the process ends.
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
            raise LockError(f"could not write the lock file {self.path}: {exc.strerror or exc}") from exc
        self._fd = fd
        return True

    def release(self) -> None:
        """Let go; always unlocks and closes, even when clearing the holder fails."""
        if self._fd is not None:
            fd, self._fd = self._fd, None
            try:
                with contextlib.suppress(OSError):  # the file's content is only informative
                    os.ftruncate(fd, 0)
                fcntl.flock(fd, fcntl.LOCK_UN)
            finally:
                os.close(fd)

    def fileno(self) -> int | None:
        """The locked descriptor while held: a child that inherits it keeps the flock
        (it belongs to the open file description) after this process dies."""
        return self._fd

    @property
    def held(self) -> bool:
        return self._fd is not None

    def holder(self) -> str:
        """What the current holder wrote (pid, run id…), or '' when unknown."""
        try:
            return self.path.read_text().strip()
        except OSError:
            return ""

    def __enter__(self) -> FileLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def daemon_lock(state_dir: Path) -> FileLock:
    return FileLock(state_dir / "daemon.lock")


def job_lock(state_dir: Path, job: str) -> FileLock:
    return FileLock(state_dir / "locks" / f"{job}.lock")
