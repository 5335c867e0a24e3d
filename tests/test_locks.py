"""FileLock: a holder that cannot be written never leaves the lock taken."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

import lib.locks
from lib.locks import FileLock, LockError
from tests.disk_helpers import fill, small_disk  # noqa: F401


def test_failed_holder_write_lets_go_of_the_lock(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "locks" / "j.lock"

    def no_space(fd: int, data: bytes) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(lib.locks.os, "write", no_space)
    for _ in range(2):
        with pytest.raises(LockError, match=r"could not write the lock file .*No space left on device"):
            FileLock(path).try_acquire("pid=1")
    monkeypatch.undo()
    other = FileLock(path)
    assert other.try_acquire("pid=2")  # nobody kept it
    other.release()


def test_lock_on_a_full_disk_is_not_kept(small_disk: Path) -> None:  # noqa: F811
    path = small_disk / "j.lock"
    path.write_text("")  # the inode exists; the data block for the holder does not fit
    fill(small_disk)
    with pytest.raises(LockError):
        FileLock(path).try_acquire("pid=1 " + "x" * 8192)
    (small_disk / "filler").unlink()
    lock = FileLock(path)
    assert lock.try_acquire("pid=2")
    lock.release()
    assert FileLock(path).try_acquire("pid=3")
