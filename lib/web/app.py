"""The web app the daemon serves when `web.listen` is set: the JSON API and the HTML pages.

`build_app(site)` returns a Starlette app whose routes are the API's (lib/web/api.py),
the pages' (lib/web/pages.py), `/healthz` and `/metrics`. Every route but `/healthz`
goes through `Site.check` (lib/web/access.py's gate: who, may they, a refusal audited);
a mutation reaches the daemon only as a `RunNow` or `Cancel` on its control queue
(lib/control.py), the very path the control socket takes, and is recorded by `Gate.done`.

Who is asking is read from the request itself: the bearer header, the signed session
cookie (Starlette's SessionMiddleware: HttpOnly, SameSite=Lax, Secure when `base_url`
is https), or the SSO proxy's headers when the TCP peer (`request.client.host`, never
X-Forwarded-For) is in `web.trusted_proxies`.

CSRF: a browser session (or a proxy's user) gets a random token kept in the session;
every POST that is not authenticated by a bearer header must carry it (form field
`csrf`, or header `X-CSRF-Token`). A bearer-token POST is exempt: a browser never adds
an Authorization header to a cross-site request, so it cannot be forged that way.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
from collections.abc import AsyncIterator, Callable, Mapping
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from lib.clock import Clock
from lib.control import ControlPlane, Reply
from lib.control import Request as ControlRequest
from lib.models import Job, WebSettings
from lib.web.access import Checked, Gate
from lib.web.roles import Action

log = logging.getLogger("dbt_scheduler")

VERSION_S = 30  # an overview built from history is built again at least this often
WEB_THREADS = 4  # threads the blocking routes share (_lifespan)
ANSWER_S = 30.0  # how long a request waits for the loop to answer (it answers in ms)
SESSION_COOKIE = "dbts_session"
SESSION_KEY_FILE = "web-session.key"
STATIC = Path(__file__).parent / "static"


# The scope key under which lib/web/socket_api.py hands over a control-socket caller's
# identity (from SO_PEERCRED): set only by that in-process call, never from a request.
LOCAL_IDENTITY = "dbt_scheduler.local_identity"


@dataclass
class Site:
    """What the routes read and where they submit: the daemon's history, jobs, queue."""

    settings: WebSettings
    history: Any  # lib/history.py History
    gate: Gate
    control: ControlPlane
    jobs: Callable[[], Mapping[str, Job]]
    clock: Clock
    session_key: str
    state_dir: Path
    metrics_text: Callable[[], bytes] | None = None
    next_fire: Callable[[str], datetime | None] = lambda _job: None
    # The job of a run the daemon holds but history may not show yet (Daemon.job_of).
    job_of: Callable[[str], str | None] = lambda _run_id: None

    # ------------------------------------------------------------------ access

    def check(
        self, request: Request, action: Action, job: str | None = None, run_id: str | None = None
    ) -> Checked:
        """`Gate.check` for this request: its headers, its TCP peer, its session's token."""
        return self.gate.check(
            request.headers,
            peer_of(request),
            action,
            job=job,
            run_id=run_id,
            session_token=request.session.get("token_id"),
            local=request.scope.get(LOCAL_IDENTITY),
        )

    def done(
        self,
        request: Request,
        checked: Checked,
        action: Action,
        job: str | None = None,
        run_id: str | None = None,
        error: str | None = None,
    ) -> None:
        self.gate.done(checked, peer_of(request), action, job=job, run_id=run_id, error=error)

    def version(self, names: tuple[str, ...], paused: Mapping[str, Mapping[str, Any]]) -> tuple[Any, ...]:
        """What the jobs' overview (the jobs page's table, `/api/jobs`) of `names` depends on:
        it is the same until a run starts or ends (the bus counts those), a job is paused or
        resumed, jobs.yaml is reloaded, or VERSION_S pass (next fire times, retention)."""
        return (
            self.control.bus.changes,
            id(self.jobs()),
            names,
            tuple(sorted((job, str(row.get("paused_at"))) for job, row in paused.items())),
            int(self.clock.now().timestamp() // VERSION_S),
        )

    def csrf_denied(
        self, request: Request, checked: Checked, action: str, job: str | None, run_id: str | None = None
    ) -> None:
        """Audit a POST refused for its CSRF token (`denied:csrf`): the gate allowed the
        person, the request did not come from one of our pages."""
        identity = checked.identity
        self.gate.audit.record(
            user=identity.name if identity else None,
            source=identity.source if identity else "anonymous",
            action=action,
            result="denied:csrf",
            peer=peer_of(request),
            job=job,
            run_id=run_id,
            detail="the request carried no valid CSRF token",
        )

    def submit(self, request: ControlRequest) -> Reply | None:
        """Submit to the daemon's queue and wait for the loop's answer; None when it does not answer."""
        try:
            return self.control.queue.submit(request).result(timeout=ANSWER_S)
        except FutureTimeout:
            return None

    def run_job(self, run_id: str) -> tuple[str | None, dict[str, Any] | None]:
        """(the job of run `run_id`, its history row): a run waiting for a slot, or just
        started, has no row yet, only a job; (None, None) for a run no one knows."""
        row = self.history.get(run_id)
        if row is not None:
            return row["job"], row
        return self.job_of(run_id), None


def peer_of(request: Request) -> str | None:
    """The TCP peer's address (uvicorn runs with proxy_headers off: never X-Forwarded-For)."""
    return request.client.host if request.client is not None else None


def csrf_token(request: Request) -> str:
    """This session's CSRF token, made on first use."""
    token = request.session.get("csrf")
    if not isinstance(token, str) or len(token) < 16:
        token = secrets.token_urlsafe(24)
        request.session["csrf"] = token
    return token


def csrf_ok(request: Request, checked: Checked, sent: str | None) -> bool:
    """Whether a POST passes the CSRF check: a bearer token's always does (no cookie is
    involved); a session's or a proxy user's must send the session's token."""
    if checked.identity is not None and checked.identity.source == "token":
        return True
    expected = request.session.get("csrf")
    return isinstance(expected, str) and isinstance(sent, str) and secrets.compare_digest(expected, sent)


def error(status: int, message: str, **more: Any) -> JSONResponse:
    """A JSON error: `{"error": message, …}`."""
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse({"error": message, **more}, status_code=status, headers=headers)


def denied(checked: Checked) -> JSONResponse:
    return error(checked.http_status, checked.decision.detail, reason=checked.decision.reason)


def session_key(state_dir: Path) -> str:
    """The key that signs session cookies, kept in `<state_dir>/web-session.key` (mode 0600)
    so a restart does not sign everyone out; made on first use."""
    path = state_dir / SESSION_KEY_FILE
    try:
        key = path.read_text(encoding="utf-8").strip()
        if len(key) >= 32:
            return key
    except FileNotFoundError:
        pass
    key = secrets.token_urlsafe(48)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    with open(temporary, "w", encoding="utf-8", opener=lambda p, f: os.open(p, f, 0o600)) as out:
        out.write(key + "\n")
    temporary.replace(path)
    return key


# ---------------------------------------------------------------------- health and metrics


def healthz(request: Request) -> Response:
    """No authentication: a load balancer's or systemd's probe. Says only that the server answers."""
    return PlainTextResponse("ok\n")


def metrics_route(site: Site) -> Callable[[Request], Response]:
    def metrics(request: Request) -> Response:
        checked = site.check(request, Action.VIEW)
        if not checked.allowed:
            return denied(checked)
        if site.metrics_text is None:
            return error(404, "metrics are not served by this scheduler")
        from lib.web.metrics import CONTENT_TYPE

        return Response(site.metrics_text(), media_type=CONTENT_TYPE)

    return metrics


def build_app(site: Site) -> Starlette:
    """The app: `/healthz`, `/metrics`, `/api/…` and the pages, a session cookie signed with
    `site.session_key`."""
    from lib.web import api, pages

    https = (site.settings.base_url or "").lower().startswith("https://")
    routes = [
        Route("/healthz", healthz),
        Route("/metrics", metrics_route(site)),
        *api.routes(site),
        *pages.routes(site),
        Mount("/static", app=StaticFiles(directory=STATIC), name="static"),
    ]
    middleware = [
        Middleware(SecurityHeaders),
        Middleware(
            SessionMiddleware,
            secret_key=site.session_key,
            session_cookie=SESSION_COOKIE,
            max_age=site.settings.session_hours * 3600,
            same_site="lax",
            https_only=https,
        ),
    ]
    return Starlette(routes=routes, middleware=middleware, lifespan=_lifespan)


class SecurityHeaders:
    """Adds to every response what a browser needs to keep the pages to themselves: no
    framing (a Run now button inside another site's frame), no content sniffing, scripts,
    styles and images only from this server, no referrer beyond it. Pure ASGI: it only
    appends headers, so it costs nothing per request."""

    HEADERS: tuple[tuple[bytes, bytes], ...] = (
        (b"x-frame-options", b"DENY"),
        (b"x-content-type-options", b"nosniff"),
        (b"referrer-policy", b"same-origin"),
        (b"content-security-policy", b"default-src 'self'; frame-ancestors 'none'; form-action 'self'"),
    )

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Any) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _value in message.get("headers", [])}
                extra = [header for header in self.HEADERS if header[0] not in present]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        await self.app(scope, receive, with_headers)


@contextlib.asynccontextmanager
async def _lifespan(app: Starlette) -> AsyncIterator[None]:
    """At server start: the blocking routes run on at most WEB_THREADS threads (anyio's
    default is 40). Each thread keeps its own SQLite connection and page cache (up to 2 MB),
    so 40 of them grew the daemon by ~60 MB under load; and on two cores 20 threads
    contending for the GIL answer no faster than a few taking turns."""
    import anyio.to_thread

    anyio.to_thread.current_default_thread_limiter().total_tokens = WEB_THREADS
    yield


def for_daemon(
    daemon: Any, mask: Callable[[str], str], metrics_text: Callable[[], bytes] | None
) -> Starlette:
    """The app over a running Daemon: its history, jobs (as reloaded), fire times and queue."""
    from lib.web.audit import AuditLog
    from lib.web.tokens import TokenStore

    config = daemon.config
    history = daemon.history
    gate = Gate(config.web, TokenStore(history, daemon.clock), AuditLog(history, daemon.clock, mask=mask))
    site = Site(
        settings=config.web,
        history=history,
        gate=gate,
        control=daemon.control,
        jobs=lambda: daemon.config.jobs,
        clock=daemon.clock,
        session_key=session_key(config.state_dir),
        state_dir=config.state_dir,
        metrics_text=metrics_text,
        next_fire=daemon.next_fire.get,
        job_of=daemon.job_of,
    )
    return build_app(site)
