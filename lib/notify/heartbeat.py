"""The daemon's own heartbeat: a GET of the top-level `heartbeat:` URL every `every`
seconds while the daemon lives, on a thread of its own, so a dead daemon or box (which
sends nothing) is noticed by the service watching for the pings (healthchecks.io, Cronitor,
Better Stack…). A failed ping is logged at error level once, and its recovery once.
"""

from __future__ import annotations

import logging
import threading

from lib.clock import Clock
from lib.models import Heartbeat
from lib.notify.channels import healthchecks
from lib.notify.delivery import Deliverer

log = logging.getLogger("dbt_scheduler")


class HeartbeatPinger:
    def __init__(self, heartbeat: Heartbeat, deliverer: Deliverer, clock: Clock) -> None:
        self.heartbeat = heartbeat
        self.deliverer = deliverer
        self.clock = clock
        self.stop_event = threading.Event()
        self.pings = 0
        self._failing = False
        self._thread: threading.Thread | None = None

    def ping(self) -> bool:
        result = healthchecks.heartbeat(self.heartbeat.url, self.deliverer)
        self.pings += 1
        if not result.ok and not self._failing:
            log.error("heartbeat not delivered: %s (the watcher will report this daemon down)", result.error)
        elif result.ok and self._failing:
            log.info("heartbeat delivered again")
        self._failing = not result.ok
        return result.ok

    def run(self) -> None:
        """Pings now, then every `every` seconds until `stop()`."""
        while not self.stop_event.is_set():
            try:
                self.ping()
            except Exception:  # never let the pinger's death pass for the daemon's
                log.exception("heartbeat: ping raised")
            if self.clock.wait(self.heartbeat.every, self.stop_event):
                return

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name="heartbeat", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self.stop_event.set()
        self.deliverer.stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
