"""The web app on `web.listen`, served by uvicorn on a thread of its own: a Daemon companion.

`start()` binds the socket itself, on the caller's thread, so a port already taken is
known at once: it logs one line naming `web.listen` and returns, and the daemon goes on
scheduling without the web UI (as it does without its control socket). Once bound,
uvicorn serves on its own thread (its own asyncio loop) and `start()` returns when it is
listening. `stop(timeout)` asks uvicorn to exit (it finishes the requests in flight,
briefly) and joins the thread.

uvicorn runs with `proxy_headers` off: the peer the gate checks against
`web.trusted_proxies` is the TCP peer, never what an X-Forwarded-For header claims.
Its access log is off (the audit log records what matters, and the journal stays quiet).
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger("dbt_scheduler")

START_S = 10.0  # how long start() waits for uvicorn to be listening
GRACE_S = 3  # how long uvicorn lets requests in flight finish at stop


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on (host, port); an IPv6 host gets an IPv6 socket."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


class WebServer:
    """uvicorn serving the app `build()` returns (built at start, once the daemon is up)."""

    def __init__(self, build: Callable[[], Any], host: str, port: int, listen: str) -> None:
        self.build = build
        self.host = host
        self.port = port
        self.listen = listen
        self.error: str | None = None  # why it is not serving, when start() failed
        self._server: Any = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        try:
            sock = bind(self.host, self.port)
        except OSError as exc:
            self.error = f"web.listen {self.listen}: {exc.strerror or exc}"
            log.error(
                "%s: the web UI and API are not served (free the port or change web.listen, then restart); "
                "scheduling goes on",
                self.error,
            )
            return
        import uvicorn

        self.port = sock.getsockname()[1]  # the port the kernel chose, when listen asked for 0
        config = uvicorn.Config(
            self.build(),
            log_level="warning",
            access_log=False,
            proxy_headers=False,
            server_header=False,
            lifespan="on",  # the app's lifespan sizes its thread pool (lib/web/app.py)
            loop="asyncio",
            http="h11",
            ws="none",
            timeout_graceful_shutdown=GRACE_S,
        )
        server = uvicorn.Server(config)
        self._server = server
        self._thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name="web", daemon=True
        )
        self._thread.start()
        waited = threading.Event()
        for _ in range(int(START_S / 0.01)):
            if server.started or not self._thread.is_alive():
                break
            waited.wait(0.01)
        if not server.started:
            self.error = f"web.listen {self.listen}: the web server did not start"
            log.error("%s", self.error)
            return
        log.info("web UI and API on http://%s (web.listen)", self.listen)

    def stop(self, timeout: float = 5.0) -> None:
        if self._server is None or self._thread is None:
            return
        self._server.should_exit = True
        self._thread.join(timeout)
        self._server = None
