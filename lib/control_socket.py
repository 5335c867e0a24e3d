"""`<state_dir>/control.sock`: the daemon's control plane (lib/control.py) on a unix socket.

Who may use it: the socket is mode 0660 in a state_dir of mode 0750, so the daemon's
user and the members of its group (`dbt-scheduler` under systemd) may connect, nobody
else. Who asked: the kernel says (`SO_PEERCRED`: the peer's uid, whatever it claims),
and the uid's user name (`uid:1234` for a uid without one) is recorded as the run's
`triggered_by`.

The protocol is JSON lines, UTF-8. The client sends one request line; the server
answers with event lines and closes the connection:

    → {"op": "run-now", "job": "nightly", "target": null, "select": null}
    → {"op": "cancel", "job": "nightly", "run_id": null, "via": "scheduler.py cancel"}
    ← {"event": "accepted", "run_ids": ["…"], "waiting": 0, "user": "alice"}
    ← {"event": "refused", "code": "running", "reason": "nightly is already running (…)"}
    ← {"event": "started", "run_id": "…"}                   the run got its slot
    ← {"event": "line", "run_id": "…", "line": "…"}         each output line, masked
    ← {"event": "dropped", "count": 12}                      lines this reader was too slow for
    ← {"event": "finished", "run_id": "…", "record": {…}}   report.json's fields (masked)
    ← {"event": "error", "message": "…"}                     a bad request, or the daemon stopped
    → {"op": "get", "path": "/api/jobs"}                      the web API's read routes, as admin
    ← {"event": "response", "status": 200, "headers": {…}, "body": …}     (lib/web/socket_api.py)

A run-now is followed to its `finished`, a cancel to the `finished` of every run it
stopped; with `"follow": false` in the request the `accepted` line is the last. The run
does not depend on the connection: a client that goes away stops being sent events,
the run goes on. A reader too slow for the output loses the oldest lines (`dropped`),
never slows the run.

The server runs on threads of its own (the stdlib's ThreadingUnixStreamServer, one
thread per connection), blocks in accept() while idle (no polling: an idle daemon
does not wake for it), and is started only once the daemon holds the state_dir lock,
which is what makes removing a stale socket left by a killed daemon safe.
"""

from __future__ import annotations

import contextlib
import grp
import json
import logging
import os
import pwd
import select
import socket
import socketserver
import struct
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path
from typing import Any

from lib.control import Accepted, Cancel, ControlPlane, Request, RunNow, Subscription
from lib.errors import SchedulerError
from lib.report.files import record_to_dict

log = logging.getLogger("dbt_scheduler")

# `{"op": "get", "path": …}` → one `response` event (lib/web/socket_api.py SocketApi.get).
Reads = Callable[[Any, str], dict[str, Any]]

SOCKET_NAME = "control.sock"
SOCKET_MODE = 0o660
MAX_REQUEST = 64 * 1024  # bytes of the one request line
ANSWER_S = 30.0  # how long a connection waits for the loop to answer (it answers in ms)
_PEER_CHECK_S = 1.0  # while a run is quiet, how often a follower checks its client is still there
# AF_UNIX paths are limited to 108 bytes (sun_path); a longer one is reached through the
# state_dir's descriptor (/proc/self/fd/N/control.sock), which the kernel resolves the same.
_SUN_PATH = 100


def socket_path(state_dir: Path) -> Path:
    return state_dir / SOCKET_NAME


@contextlib.contextmanager
def _address(path: Path) -> Iterator[str]:
    """`path` as an AF_UNIX address: itself, or through its folder's descriptor when too long."""
    if len(os.fsencode(path)) < _SUN_PATH:
        yield str(path)
        return
    fd = os.open(path.parent, os.O_PATH | os.O_DIRECTORY)
    try:
        yield f"/proc/self/fd/{fd}/{path.name}"
    finally:
        os.close(fd)


def peer_user(sock: socket.socket) -> str:
    """The user name of the process at the other end, from the kernel (SO_PEERCRED)."""
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid:{uid}"


# ---------------------------------------------------------------------- the server


class _Server(socketserver.ThreadingUnixStreamServer):
    daemon_threads = True  # a follower of a run the daemon detached from never blocks its exit
    block_on_close = False

    def __init__(self, control: ControlPlane, reads: Reads | None = None) -> None:
        self.control = control
        self.reads = reads
        super().__init__("", _Handler, bind_and_activate=False)


class _Handler(socketserver.StreamRequestHandler):
    server: _Server

    def handle(self) -> None:
        line = self.rfile.readline(MAX_REQUEST)
        if not line:  # the server's own wake-up at stop, or a client that changed its mind
            return
        try:
            user = peer_user(self.request)
            data = json.loads(line)
            if isinstance(data, dict) and data.get("op") == "get":
                self._get(data.get("path"), user)
                return
            request = _parse(data, user)
        except (ValueError, TypeError, KeyError, OSError) as exc:
            self._send({"event": "error", "message": f"bad request: {exc}"})
            return
        control = self.server.control
        # Subscribed before asking, so not one event of the new run can be missed.
        with control.bus.subscribe([request.job]) as events:
            try:
                reply = control.queue.submit(request).result(timeout=ANSWER_S)
            except FutureTimeout:
                self._send({"event": "error", "message": "the daemon did not answer (is its loop stuck?)"})
                return
            if not isinstance(reply, Accepted):
                self._send({"event": "refused", "code": reply.code, "reason": reply.reason})
                return
            self._send(
                {"event": "accepted", "run_ids": list(reply.run_ids), "waiting": reply.waiting, "user": user}
            )
            if data.get("follow", True) is not False:
                self._follow(events, set(reply.run_ids))

    def _get(self, path: Any, user: str) -> None:
        """One read of the web API (lib/web/socket_api.py), answered with one `response` line."""
        if self.server.reads is None:
            self._send({"event": "error", "message": "this daemon serves no reads over its socket"})
            return
        try:
            self._send(self.server.reads(path, user))
        except Exception as exc:  # a read must never take the socket's thread down with it
            log.exception("control socket: GET %s failed", path)
            self._send({"event": "error", "message": f"GET {path} failed: {exc}"})

    def _follow(self, events: Subscription, run_ids: set[str]) -> None:
        """Send the runs' events until each has finished, the client left or the daemon stopped."""
        reported = 0
        while run_ids:
            event = events.get(timeout=_PEER_CHECK_S)
            if events.dropped > reported:
                if not self._send({"event": "dropped", "count": events.dropped - reported}):
                    return
                reported = events.dropped
            if event is None:
                if events.closed:
                    self._send({"event": "error", "message": "the daemon stopped"})
                    return
                if self._client_gone():
                    return
                continue
            if event.run_id not in run_ids:
                continue
            message: dict[str, Any] = {"event": event.kind, "run_id": event.run_id}
            if event.kind == "line":
                message["line"] = event.line
            elif event.kind == "finished" and event.record is not None:
                message["record"] = record_to_dict(event.record)
                run_ids.discard(event.run_id)
            if not self._send(message):
                return

    def _send(self, message: dict[str, Any]) -> bool:
        """Write one event line; False when the client is gone (the run goes on without it)."""
        try:
            self.wfile.write(json.dumps(message).encode() + b"\n")
            self.wfile.flush()
            return True
        except OSError:
            return False

    def _client_gone(self) -> bool:
        sock: socket.socket = self.request
        try:
            readable, _, _ = select.select([sock], [], [], 0)
            return bool(readable) and sock.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            return True


def _parse(data: Any, user: str) -> Request:
    """A request line as a RunNow or Cancel on behalf of `user` (who the kernel says asked)."""
    if not isinstance(data, dict):
        raise ValueError("expected a JSON object")
    op, job = data.get("op"), data.get("job")
    if not isinstance(job, str) or not job:
        raise ValueError("`job` must be a job name")

    def text(key: str) -> str | None:
        value = data.get(key)
        if value is not None and not isinstance(value, str):
            raise ValueError(f"`{key}` must be a string")
        return value

    if op == "run-now":
        return RunNow(job, triggered_by=user, target=text("target"), select=text("select"))
    if op == "cancel":
        via = (text("via") or "scheduler.py cancel")[:80].splitlines()[0]
        return Cancel(job, by=user, run_id=text("run_id"), via=via)
    raise ValueError(f"unknown op {op!r} (run-now, cancel, get)")


class ControlServer:
    """The daemon's `<state_dir>/control.sock`, served on threads of its own."""

    def __init__(self, state_dir: Path, control: ControlPlane, reads: Reads | None = None) -> None:
        self.path = socket_path(state_dir)
        self.control = control
        self.reads = reads
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._stopping = False

    def start(self) -> None:
        """Bind, mode 0660, listen, serve. Call only while holding the daemon lock: a socket
        already at the path is a dead daemon's, and is removed."""
        server = _Server(self.control, self.reads)
        try:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
            with _address(self.path) as address:
                server.socket.bind(address)
            # bind() applied the umask (027: 0750), and connecting takes write permission:
            # the group gets it here, before listen(), so no one connects in between.
            os.chmod(self.path, SOCKET_MODE)
            server.server_activate()
        except OSError:
            server.server_close()
            raise
        self._server = server
        self._thread = threading.Thread(target=self._serve, name="control-socket", daemon=True)
        self._thread.start()
        log.info("control socket %s (mode %o)", self.path, SOCKET_MODE)

    def _serve(self) -> None:
        assert self._server is not None
        while not self._stopping:
            self._server.handle_request()  # blocks in accept() until a client comes

    def stop(self) -> None:
        """Stop accepting, tell followers the daemon stopped, remove the socket."""
        if self._server is None:
            return
        self._stopping = True
        wake = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        with contextlib.suppress(OSError), wake, _address(self.path) as address:
            wake.connect(address)  # handle_request() returns; the loop sees _stopping
        if self._thread is not None:
            self._thread.join(5)
        self.control.bus.close()
        self._server.server_close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        self._server = None

    def __enter__(self) -> ControlServer:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()


# ---------------------------------------------------------------------- the client


class DaemonUnreachable(SchedulerError):
    """A daemon listens on the state_dir, but this user may not connect to it."""


def connect(state_dir: Path, timeout: float | None = None) -> socket.socket | None:
    """A connection to the daemon of `state_dir`; None when no daemon answers there (no
    socket, or a stale one a killed daemon left). Raises DaemonUnreachable when one
    listens but this user may not connect (not in its group)."""
    path = socket_path(state_dir)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        with _address(path) as address:
            sock.connect(address)
    except (FileNotFoundError, ConnectionRefusedError, NotADirectoryError):
        sock.close()
        return None
    except PermissionError:
        sock.close()
        raise DaemonUnreachable(
            f"cannot connect to the daemon's control socket {path}: permission denied; ask for your "
            f"account to be added to its group ({_group_of(state_dir)}: `usermod -aG GROUP USER`), "
            "then log in again"
        ) from None
    sock.settimeout(None)
    return sock


def _group_of(state_dir: Path) -> str:
    try:
        gid = os.stat(state_dir).st_gid
    except OSError:
        return "the group of the state_dir"
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return f"gid {gid}"


def send(sock: socket.socket, request: dict[str, Any]) -> None:
    sock.sendall(json.dumps(request).encode() + b"\n")


def events(sock: socket.socket) -> Iterator[dict[str, Any]]:
    """The server's event lines, until it closes the connection."""
    with sock.makefile("rb") as lines:
        for line in lines:
            yield json.loads(line)


def ask(state_dir: Path, request: dict[str, Any]) -> Iterator[dict[str, Any]] | None:
    """Send `request` to the daemon of `state_dir` and iterate its answer; None without a daemon."""
    sock = connect(state_dir)
    if sock is None:
        return None
    send(sock, request)

    def answer() -> Iterator[dict[str, Any]]:
        with sock:
            yield from events(sock)

    return answer()
