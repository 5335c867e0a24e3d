"""systemd's end of NOTIFY_SOCKET: a bound AF_UNIX datagram socket whose messages a test reads."""

from __future__ import annotations

import os
import socket
import struct
import tempfile
import time
import uuid
from pathlib import Path


class NotifySocket:
    """What PID 1 holds for a `Type=notify` service: bound, read by the test.

    `env` is the NOTIFY_SOCKET value to give the daemon: the path, or `@name` for an
    abstract socket. Paths are kept short (sun_path holds 108 bytes; pytest's tmp_path
    can be longer). Like PID 1 it asks the kernel for each sender's pid (SO_PASSCRED),
    which is what `NotifyAccess=main` judges a message by: `pids[i]` sent `received[i]`.
    """

    def __init__(self, directory: Path | None = None, abstract: bool = False) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self._dir: str | None = None
        if abstract:
            name = f"dbt-scheduler-test-{uuid.uuid4().hex}"
            self.sock.bind("\0" + name)
            self.env = "@" + name
        else:
            path = (directory / "notify.sock") if directory is not None else None
            if path is None or len(str(path)) > 100:
                self._dir = tempfile.mkdtemp(prefix="sdn-", dir="/tmp")
                path = Path(self._dir) / "notify.sock"
            self.sock.bind(str(path))
            self.env = str(path)
        self.received: list[dict[str, str]] = []
        self.pids: list[int | None] = []

    def _receive(self) -> None:
        data, ancillary, _flags, _address = self.sock.recvmsg(65536, socket.CMSG_SPACE(12))
        pid = None
        for level, kind, value in ancillary:
            if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                pid = struct.unpack("3i", value[:12])[0]  # struct ucred: pid, uid, gid
        self.received.append(parse(data))
        self.pids.append(pid)

    def drain(self) -> list[dict[str, str]]:
        """Every message waiting now (without waiting for more), each as its assignments."""
        self.sock.setblocking(False)
        while True:
            try:
                self._receive()
            except BlockingIOError:
                break
        return self.received

    def wait_for(self, predicate: str, timeout: float, since: int = 0) -> int:
        """The index of the first message from `since` on holding `predicate` (`NAME=value`),
        waiting for it up to `timeout` seconds (then failing with what came)."""
        name, value = predicate.split("=", 1)
        seen = since
        deadline = time.monotonic() + timeout
        while True:
            for i in range(seen, len(self.received)):
                if self.received[i].get(name) == value:
                    return i
            seen = max(seen, len(self.received))
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {predicate} within {timeout}s; got {self.received[since:]}")
            self.sock.settimeout(min(left, 0.5))
            try:
                self._receive()
            except TimeoutError:
                continue

    def close(self) -> None:
        self.sock.close()
        if self._dir is not None:
            with_file = Path(self._dir) / "notify.sock"
            with_file.unlink(missing_ok=True)
            os.rmdir(self._dir)


def parse(data: bytes) -> dict[str, str]:
    """One datagram's `NAME=value` lines."""
    return dict(line.split("=", 1) for line in data.decode().split("\n") if line)
