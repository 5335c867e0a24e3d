"""The web API's read routes over the control socket: the same JSON as over HTTP.

`scheduler.py api PATH` (or any client of `<state_dir>/control.sock`) sends
`{"op": "get", "path": "/api/jobs"}`; the daemon answers with one line,
`{"event": "response", "status": 200, "headers": {…}, "body": …}` (the body as JSON, or
as text for a run's log). The request goes through the very Starlette app the web
server runs (lib/web/app.py), called in-process as ASGI — no second implementation of
any route — with the caller the kernel named (SO_PEERCRED) as its identity: an admin
(lib/web/identity.py `local_identity`), since reaching the socket at all takes the
daemon's group. Only GET: what changes something goes through the socket's own
`run-now` and `cancel`, or the HTTP API.

lib/cli.py builds one at the first such request (the web modules are imported then, not
at the daemon's start: without `web:` an idle daemon stays as lean as before) and keeps it.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any
from urllib.parse import urlsplit

from lib.web.identity import local_identity

# A log chunk is at most lib/web/api.py's LOG_CHUNK; a page of runs is small. Anything
# bigger than this is refused rather than held in memory twice.
MAX_BODY = 8 * 1024 * 1024


class SocketApi:
    """GET requests of the web API, answered in-process for control-socket callers."""

    def __init__(self, app: Any) -> None:
        self.app = app  # the ASGI app (lib/web/app.py for_daemon)

    def get(self, path: str, user: str) -> dict[str, Any]:
        """The response to `GET path` for `user`, as the socket's `response` event."""
        if not isinstance(path, str) or not path.startswith("/api/"):
            return {"event": "response", "status": 400, "body": {"error": "path must start with /api/"}}
        status, headers, body = asyncio.run(self._call(path, user))
        content_type = headers.get("content-type", "")
        if "json" in content_type:
            payload: Any = json.loads(body or b"null")
        else:
            payload = body.decode("utf-8", "replace")
        keep = {k: v for k, v in headers.items() if k.startswith("x-") or k == "content-type"}
        return {"event": "response", "status": status, "headers": keep, "body": payload}

    async def _call(self, path: str, user: str) -> tuple[int, dict[str, str], bytes]:
        from lib.web.app import LOCAL_IDENTITY

        parts = urlsplit(path)
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": parts.path,
            "raw_path": parts.path.encode(),
            "query_string": parts.query.encode(),
            "root_path": "",
            "headers": [],
            "client": None,  # no TCP peer: proxy headers can never apply
            "server": None,
            LOCAL_IDENTITY: local_identity(user, "socket"),
        }
        status = 500
        headers: dict[str, str] = {}
        chunks: list[bytes] = []
        size = 0

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            nonlocal status, size
            if message["type"] == "http.response.start":
                status = message["status"]
                headers.update((k.decode().lower(), v.decode()) for k, v in message.get("headers", []))
            elif message["type"] == "http.response.body":
                body = message.get("body", b"")
                size += len(body)
                if size > MAX_BODY:
                    raise ValueError(f"the response is larger than {MAX_BODY} bytes")
                chunks.append(body)

        await self.app(scope, receive, send)
        return status, headers, b"".join(chunks)
