"""systemd's service notification protocol (sd_notify(3)): READY, STATUS, WATCHDOG, RELOADING, STOPPING.

Under `Type=notify` systemd passes the daemon an AF_UNIX datagram socket in
`NOTIFY_SOCKET` (a path, or `@name` for an abstract socket) and, with `WatchdogSec=`,
the watchdog timeout in `WATCHDOG_USEC` (and `WATCHDOG_PID`, the one process meant).
Each notification is one datagram of newline-separated `NAME=value` assignments.

- Without `NOTIFY_SOCKET` (a terminal, a container, the tests) every call is a no-op.
- A send never raises into the daemon: the first failure is logged as a warning, later
  ones at debug level (a watchdog that stops being fed is what systemd reports).
- `from_environ` removes the three variables from the environment it reads, as
  sd_notify's `unset_environment` does: the jobs the daemon starts inherit its
  environment (the local runner), and a dbt run must not speak for the service.

Own code, not the `sdnotify` package: the protocol is one `sendto`, and that package
(last release 2017) reads neither WATCHDOG_USEC nor WATCHDOG_PID nor sends
MONOTONIC_USEC, which is the rest of what is needed here. systemd-python would need
libsystemd's headers and a C build on the ops box for the same `sendto`.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable, MutableMapping

log = logging.getLogger("dbt_scheduler")

NOTIFY_VARIABLES = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")
# A datagram to a receiver whose queue is full blocks the sender: were systemd not
# reading, the loop would wait here rather than go on (a missed ping is what it is).
SEND_TIMEOUT_S = 1.0


def monotonic_usec() -> int:
    """CLOCK_MONOTONIC in microseconds: what systemd compares RELOADING=1's MONOTONIC_USEC with."""
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000


def _address(value: str | None) -> str | None:
    """The socket address to send to: a path as is, `@name` as the abstract `\\0name`.

    Anything else (systemd 254+'s `vsock:` for a service in a VM) is not supported: None.
    """
    if not value:
        return None
    if value.startswith("/"):
        return value
    if value.startswith("@") and len(value) > 1:
        return "\0" + value[1:]
    log.warning("systemd: NOTIFY_SOCKET=%s is not a path or @name: not notifying systemd", value)
    return None


def _watchdog_usec(usec: str | None, pid: str | None, own_pid: int) -> int | None:
    """WATCHDOG_USEC when it is a positive integer meant for this process; else None (off)."""
    if not usec:
        return None
    try:
        timeout = int(usec)
        meant_for = int(pid) if pid else own_pid
    except ValueError:
        log.warning("systemd: WATCHDOG_USEC=%r WATCHDOG_PID=%r unreadable: watchdog off", usec, pid)
        return None
    if timeout <= 0 or meant_for != own_pid:
        return None  # another process's watchdog (WATCHDOG_PID names it), or none at all
    return timeout


class SystemdNotifier:
    """Tells systemd how the service is doing; all no-ops when `address` is None."""

    def __init__(
        self,
        address: str | None,
        watchdog_usec: int | None = None,
        clock_usec: Callable[[], int] = monotonic_usec,
        timeout: float = SEND_TIMEOUT_S,
    ) -> None:
        self.address = address
        self.timeout = timeout
        # Ping at half the timeout, as sd_watchdog_enabled(3) advises: one late wake-up
        # of the loop then still lands inside the limit.
        self.watchdog_interval = watchdog_usec / 2e6 if address and watchdog_usec else None
        self.clock_usec = clock_usec
        self._failed = False

    @classmethod
    def from_environ(cls, environ: MutableMapping[str, str], pid: int) -> SystemdNotifier:
        """The notifier systemd's variables describe, which are then removed from `environ`."""
        values = {name: environ.pop(name, None) for name in NOTIFY_VARIABLES}
        address = _address(values["NOTIFY_SOCKET"])
        usec = _watchdog_usec(values["WATCHDOG_USEC"], values["WATCHDOG_PID"], pid)
        return cls(address, usec)

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def ready(self, status: str | None = None) -> bool:
        """Start-up (or a reload) is complete."""
        return self.send("READY=1", *_status(status))

    def reloading(self, status: str | None = None) -> bool:
        """A reload began; `ready` ends it."""
        return self.send("RELOADING=1", f"MONOTONIC_USEC={self.clock_usec()}", *_status(status))

    def stopping(self, status: str | None = None) -> bool:
        """The daemon is shutting down."""
        return self.send("STOPPING=1", *_status(status))

    def status(self, text: str) -> bool:
        """A one-line status for `systemctl status`."""
        return self.send(*_status(text))

    def watchdog(self) -> bool:
        """Feed the watchdog (only when systemd asked for one)."""
        if self.watchdog_interval is None:
            return False
        return self.send("WATCHDOG=1")

    def send(self, *assignments: str) -> bool:
        """One datagram of `NAME=value` lines; True when it was sent. Never raises."""
        if self.address is None or not assignments:
            return False
        payload = "\n".join(assignments).encode("utf-8", "replace")
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.settimeout(self.timeout)
                sock.connect(self.address)
                sock.sendall(payload)
        except OSError as exc:
            shown = self.address.replace("\0", "@")
            if not self._failed:
                log.warning(
                    "systemd: cannot notify %s (%s): systemd may not see the daemon's state", shown, exc
                )
                self._failed = True
            else:
                log.debug("systemd: cannot notify %s (%s)", shown, exc)
            return False
        return True


def _status(text: str | None) -> tuple[str, ...]:
    # A STATUS value is one line: the protocol separates assignments with newlines.
    return () if text is None else ("STATUS=" + " ".join(text.split()),)
