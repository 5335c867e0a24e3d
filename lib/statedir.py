"""Plain words for why state_dir could not be written: full, read-only, or busy."""

from __future__ import annotations

import errno
import os
import sqlite3
from pathlib import Path


def write_problem(state_dir: Path, exc: BaseException) -> str:
    """One line naming state_dir and what is wrong with it, for the log and `status`."""
    code = getattr(exc, "errno", None)
    text = str(exc)
    try:
        stat = os.statvfs(state_dir)
        free = stat.f_bavail * stat.f_frsize
        read_only = bool(stat.f_flag & os.ST_RDONLY)
    except OSError:
        free, read_only = None, False
    if read_only or code == errno.EROFS or "readonly" in text:
        return f"state_dir {state_dir} is read-only ({text})"
    if code == errno.ENOSPC or "full" in text or free == 0:
        return f"state_dir {state_dir} is full ({free if free is not None else '?'} bytes free; {text})"
    if isinstance(exc, sqlite3.OperationalError) and "locked" in text:
        return f"history {state_dir / 'history.db'} is busy: another process holds its lock ({text})"
    return f"state_dir {state_dir}: {text}"


def health(state_dir: Path) -> str | None:
    """`state_dir X is full (0 bytes free)` or `... is read-only`; None when it can be written."""
    try:
        stat = os.statvfs(state_dir)
    except OSError:
        return None  # not there yet: created on first use
    if stat.f_flag & os.ST_RDONLY:
        return f"state_dir {state_dir} is read-only: runs cannot be recorded until it is writable"
    if stat.f_bavail == 0:
        return f"state_dir {state_dir} is full (0 bytes free): runs cannot be recorded until space is freed"
    return None
