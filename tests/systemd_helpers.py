"""systemd's end of NOTIFY_SOCKET: a bound AF_UNIX datagram socket whose messages a test reads."""

from __future__ import annotations

import os
import socket
import struct
import tempfile
import threading
import time
import uuid
from pathlib import Path


class NotifySocket:
    """What PID 1 holds for a `Type=notify` service: bound, and read as systemd reads it.

    `env` is the NOTIFY_SOCKET value to give the daemon: the path, or `@name` for an
    abstract socket. Paths are kept short (sun_path holds 108 bytes; pytest's tmp_path
    can be longer). Like PID 1 it asks the kernel for each sender's pid (SO_PASSCRED),
    which is what `NotifyAccess=main` judges a message by: `pids[i]` sent `received[i]`.

    With `reading=True` a thread receives every message as it comes, as systemd does (a
    datagram queue holds only net.unix.max_dgram_qlen messages, 10 here, before senders
    block); with `reading=False` nothing is read until `drain()`.
    """

    def __init__(self, directory: Path | None = None, abstract: bool = False, reading: bool = False) -> None:
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
        self._arrived = threading.Condition()
        self._closing = False
        self._reader: threading.Thread | None = None
        if reading:
            self.sock.settimeout(0.2)
            self._reader = threading.Thread(target=self._read, name="notify-socket", daemon=True)
            self._reader.start()

    def _receive(self) -> None:
        data, ancillary, _flags, _address = self.sock.recvmsg(65536, socket.CMSG_SPACE(12))
        pid = None
        for level, kind, value in ancillary:
            if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                pid = struct.unpack("3i", value[:12])[0]  # struct ucred: pid, uid, gid
        with self._arrived:
            self.received.append(parse(data))
            self.pids.append(pid)
            self._arrived.notify_all()

    def _read(self) -> None:
        while not self._closing:
            try:
                self._receive()
            except TimeoutError:
                continue
            except OSError:
                return  # closed

    def drain(self) -> list[dict[str, str]]:
        """Every message received so far, with what waits in the queue now (no waiting)."""
        if self._reader is None:
            self.sock.setblocking(False)
            while True:
                try:
                    self._receive()
                except BlockingIOError:
                    break
        with self._arrived:
            return list(self.received)

    def wait_for(self, predicate: str, timeout: float, since: int = 0) -> int:
        """The index of the first message from `since` on holding `predicate` (`NAME=value`),
        waiting for it up to `timeout` seconds (then failing with what came); needs `reading`."""
        assert self._reader is not None, "wait_for needs NotifySocket(reading=True)"
        name, value = predicate.split("=", 1)
        deadline = time.monotonic() + timeout
        with self._arrived:
            while True:
                for i in range(since, len(self.received)):
                    if self.received[i].get(name) == value:
                        return i
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no {predicate} within {timeout}s; got {self.received[since:]}")
                self._arrived.wait(left)

    def close(self) -> None:
        self._closing = True
        if self._reader is not None:
            self._reader.join(5)
        self.sock.close()
        if self._dir is not None:
            (Path(self._dir) / "notify.sock").unlink(missing_ok=True)
            os.rmdir(self._dir)


def parse(data: bytes) -> dict[str, str]:
    """One datagram's `NAME=value` lines."""
    return dict(line.split("=", 1) for line in data.decode().split("\n") if line)
