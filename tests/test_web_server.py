"""lib/web/server.py: the app under real uvicorn on a thread (a Daemon companion), over real
HTTP on loopback: it listens once start() returns, ignores X-Forwarded-For (the peer the gate
checks is the TCP peer), stops and joins; a taken port is an error, not an exception."""

from __future__ import annotations

import ipaddress
import socket
import urllib.error
import urllib.request
from dataclasses import replace

from lib.web.access import Gate
from lib.web.app import build_app
from lib.web.roles import Role
from lib.web.server import WebServer
from tests.web_helpers import SETTINGS, Served


def get(url: str, headers: dict[str, str]) -> int:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10) as answer:
            return answer.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_real_uvicorn_serves_ignores_x_forwarded_for_and_stops(served: Served) -> None:
    # 10.0.0.5 is the trusted proxy; this client is 127.0.0.1 claiming, by header, to be it.
    settings = replace(SETTINGS, trusted_proxies=(ipaddress.ip_network("10.0.0.5/32"),))
    site = replace(served.site, settings=settings, gate=Gate(settings, served.tokens, served.audit))
    server = WebServer(lambda: build_app(site), "127.0.0.1", 0, "127.0.0.1:0")
    server.start()
    try:
        assert server.error is None
        base = f"http://127.0.0.1:{server.port}"
        assert get(f"{base}/healthz", {}) == 200
        token = served.token(Role.VIEWER)
        for _ in range(2):
            assert get(f"{base}/api/jobs", {"Authorization": f"Bearer {token}"}) == 200
        spoofed = {"X-Forwarded-For": "10.0.0.5", "X-Forwarded-User": "mallory", "X-Forwarded-Groups": "ops"}
        assert get(f"{base}/api/jobs", spoofed) == 401
        [entry] = served.audit.query(denied=True)
        assert entry.result == "denied:untrusted_proxy" and entry.peer == "127.0.0.1"
    finally:
        server.stop(5)
    assert server._thread is not None and not server._thread.is_alive()
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", server.port)) != 0  # no longer listening


def test_a_taken_port_is_an_error_naming_web_listen_not_an_exception(served: Served) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = WebServer(lambda: build_app(served.site), "127.0.0.1", port, f"127.0.0.1:{port}")
        server.start()
        assert server.error is not None and server.error.startswith(f"web.listen 127.0.0.1:{port}: ")
        assert "in use" in server.error
        server.stop(5)  # nothing to stop: no error either
