"""The HTML pages, rendered on the server with Jinja2 (lib/web/templates/); no JS framework.

| page | who | what |
|---|---|---|
| `/login` | anyone | sign in with an API token → a signed session cookie (the token's id, never the token) |
| `/` | viewer | every job: schedule in words, next run, last outcome, last 20 outcomes, durations |
| `/jobs/{job}` | viewer | its history (filters: outcome, trigger), durations; Run now for operators |
| `/runs/{run_id}` | viewer | facts, the nodes table, the log (followed live while it runs), artifacts |
| `/timeline` | viewer | the runs of the last 24 h or 7 days as a Gantt chart |
| `/audit` | admin | the audit log |

A page asked for without credentials sends the browser to `/login`; one the caller may
not see is a 403 page saying why. Every form POST carries the session's CSRF token.
The live log is a few lines of plain JS (static/log.js) asking `/api/runs/{id}/log` from
the offset it has; without JS the page refreshes itself while the run goes on.
"""

from __future__ import annotations

import json
import os
import threading
from collections import OrderedDict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from lib.control import Accepted, Cancel, RunNow
from lib.history import RUNNING
from lib.models import RunStatus, TriggerKind
from lib.web import charts
from lib.web.api import LOG_CHUNK, WAITING, job_summary, log_file, report, visible_jobs, waiting_row
from lib.web.app import Site, csrf_ok, csrf_token, peer_of
from lib.web.roles import Action, authorize

TEMPLATES = Path(__file__).parent / "templates"
STRIP = 20  # outcomes in a job's strip on the jobs page
HISTORY_LIMIT = 200
RUN_CACHE = 64  # finished runs' pages kept rendered (~25 kB each)
RANGES = {"24h": timedelta(hours=24), "7d": timedelta(days=7)}
_SKIP_DIRS = {"work"}  # a run's git checkout: not an artifact


def _environment() -> Environment:
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html"]))
    env.filters["duration"] = charts.duration_text
    env.filters["when"] = _when
    env.filters["brief"] = _brief_time
    return env


def _brief_time(value: str | None) -> str:
    """A stored UTC ISO time as `2026-03-02 06:00:00 UTC`, without parsing it: the jobs page
    shows 2,000 of them (parsing and formatting each took ~10 ms a page)."""
    if not value:
        return "—"
    return value[:19].replace("T", " ") + " UTC"


def _when(value: str | datetime | None, tz: Any = UTC) -> str:
    """A time as people read it: `2026-03-02 06:00:00 UTC` (in `tz`)."""
    if not value:
        return "—"
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    return moment.astimezone(tz).strftime("%Y-%m-%d %H:%M:%S %Z")


def routes(site: Site) -> list[Route]:
    pages = Pages(site)
    return [
        Route("/login", pages.login_form, methods=["GET"]),
        Route("/login", pages.login, methods=["POST"]),
        Route("/logout", pages.logout, methods=["POST"]),
        Route("/", pages.jobs),
        Route("/jobs/{job}", pages.job),
        Route("/jobs/{job}/run", pages.run_now, methods=["POST"]),
        Route("/jobs/{job}/pause", pages.pause, methods=["POST"]),
        Route("/runs/{run_id}", pages.run),
        Route("/runs/{run_id}/cancel", pages.cancel, methods=["POST"]),
        Route("/runs/{run_id}/files/{name:path}", pages.file),
        Route("/timeline", pages.timeline),
        Route("/audit", pages.audit),
    ]


class Pages:
    def __init__(self, site: Site) -> None:
        self.site = site
        self.env = _environment()
        self._lock = threading.Lock()
        self._jobs_cache: dict[tuple[Any, ...], Markup] = {}
        self._run_cache = _Recent(RUN_CACHE)

    # ------------------------------------------------------------------ helpers

    def render(self, request: Request, name: str, status: int = 200, **context: Any) -> HTMLResponse:
        identity = context.pop("identity", None)
        html = self.env.get_template(name).render(
            request=request,
            csrf=csrf_token(request),
            identity=identity,
            read_only=self.site.settings.read_only,
            **context,
        )
        return HTMLResponse(html, status_code=status)

    def refused(self, request: Request, checked: Any) -> Response:
        """To the login page without credentials (GET), else a page saying why not."""
        if checked.http_status == 401 and request.method == "GET":
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return RedirectResponse(f"/login?{urlencode({'next': target})}", status_code=303)
        return self.render(
            request,
            "error.html",
            status=checked.http_status,
            identity=checked.identity,
            title="Not allowed" if checked.http_status == 403 else "Sign in",
            message=checked.decision.detail,
        )

    def may(self, checked: Any, action: Action, job: str | None = None) -> bool:
        """Whether to offer a button (the request itself is checked again when it comes)."""
        return authorize(checked.identity, action, job, read_only=self.site.settings.read_only).allowed

    async def form(self, request: Request) -> dict[str, str]:
        data = await request.form()
        return {key: value for key, value in data.items() if isinstance(value, str)}

    def csrf_refused(self, request: Request, checked: Any, action: str, job: str | None) -> Response:
        identity = checked.identity
        self.site.csrf_denied(request, checked, action, job)
        return self.render(
            request,
            "error.html",
            status=403,
            identity=identity,
            title="Form expired",
            message="The form's security token is missing or wrong: reload the page and try again.",
        )

    # ------------------------------------------------------------------ sign in

    def login_form(self, request: Request) -> Response:
        return self.render(request, "login.html", next=_safe_next(request.query_params.get("next")))

    async def login(self, request: Request) -> Response:
        form = await self.form(request)
        target = _safe_next(form.get("next"))
        expected = request.session.get("csrf")
        if not (isinstance(expected, str) and form.get("csrf") == expected):
            return self.render(
                request, "login.html", status=403, next=target, error="The form expired: try again."
            )
        from starlette.concurrency import run_in_threadpool

        verified = await run_in_threadpool(self.site.gate.tokens.verify, form.get("token", ""))
        if not verified.ok or verified.token is None:
            await run_in_threadpool(
                self.site.gate.audit.record,
                user=None,
                source="anonymous",
                action="login",
                result=f"denied:token_{verified.reason}",
                peer=peer_of(request),
                detail="sign-in with a token that was refused",
            )
            return self.render(
                request, "login.html", status=401, next=target, error=f"That token is {verified.reason}."
            )
        info = verified.token
        request.session.clear()  # a new session: a fixed session id cannot be planted
        request.session["token_id"] = info.id
        csrf_token(request)
        await run_in_threadpool(
            self.site.gate.audit.record,
            user=info.user,
            source="session",
            action="login",
            result="allowed",
            peer=peer_of(request),
            detail=f"token {info.id}",
        )
        return RedirectResponse(target, status_code=303)

    async def logout(self, request: Request) -> Response:
        form = await self.form(request)
        expected = request.session.get("csrf")
        if isinstance(expected, str) and form.get("csrf") == expected:
            request.session.clear()
        return RedirectResponse("/login", status_code=303)

    # ------------------------------------------------------------------ jobs

    def jobs(self, request: Request) -> Response:
        checked = self.site.check(request, Action.VIEW)
        if not checked.allowed:
            return self.refused(request, checked)
        names = tuple(visible_jobs(self.site, checked))
        paused = self.site.history.paused()
        # The table is the same for everyone who sees the same jobs until something it shows
        # changes (Site.version): rendered once, it serves every request until then.
        key = self.site.version(names, paused)
        with self._lock:
            table = self._jobs_cache.get(key)
        if table is None:
            table = self.jobs_table(list(names), paused)
            with self._lock:
                if len(self._jobs_cache) >= 32:
                    self._jobs_cache.clear()
                self._jobs_cache[key] = table
        return self.render(request, "jobs.html", identity=checked.identity, table=table, title="Jobs")

    def jobs_table(self, names: list[str], paused: dict[str, dict[str, Any]]) -> Markup:
        recent = self.site.history.strips(names, STRIP)
        jobs = self.site.jobs()
        running = {row["job"] for row in self.site.history.running()}
        rows = []
        for name in names:
            runs = recent.get(name, [])
            summary = job_summary(self.site, name, runs[0] if runs else None, paused)
            rows.append(
                {
                    **summary,
                    "next_local": _when(summary["next_run"], jobs[name].timezone)
                    if summary["next_run"]
                    else None,
                    "strip": list(reversed(runs)),
                    "spark": charts.sparkline(runs),
                    "running": name in running,
                }
            )
        return Markup(self.env.get_template("_jobs_table.html").render(jobs=rows))

    def job(self, request: Request, error: str | None = None, status: int = 200) -> Response:
        name = request.path_params["job"]
        checked = self.site.check(request, Action.VIEW, job=name)
        if not checked.allowed:
            return self.refused(request, checked)
        jobs = self.site.jobs()
        if name not in jobs:
            return self.render(
                request,
                "error.html",
                404,
                identity=checked.identity,
                title="No such job",
                message=f"No job {name}.",
            )
        outcome = request.query_params.get("outcome") or None
        trigger = request.query_params.get("trigger") or None
        runs = self.site.history.runs(name, limit=HISTORY_LIMIT, outcome=outcome, trigger=trigger)
        last = self.site.history.runs(name, limit=1)
        summary = job_summary(self.site, name, last[0] if last else None, self.site.history.paused())
        job = jobs[name]
        return self.render(
            request,
            "job.html",
            status=status,
            identity=checked.identity,
            title=name,
            job=summary,
            next_local=_when(summary["next_run"], job.timezone) if summary["next_run"] else None,
            runs=runs,
            spark=charts.sparkline(runs[:60], width=480, height=60),
            outcomes=[status.value for status in RunStatus],
            triggers=[kind.value for kind in TriggerKind],
            outcome=outcome,
            trigger=trigger,
            can_run=self.may(checked, Action.RUN, name),
            can_pause=self.may(checked, Action.PAUSE, name),
            error=error,
        )

    async def run_now(self, request: Request) -> Response:
        from starlette.concurrency import run_in_threadpool

        form = await self.form(request)
        return await run_in_threadpool(self._run_now, request, form)

    def _run_now(self, request: Request, form: dict[str, str]) -> Response:
        name = request.path_params["job"]
        checked = self.site.check(request, Action.RUN, job=name)
        if not checked.allowed:
            return self.refused(request, checked)
        if not csrf_ok(request, checked, form.get("csrf")):
            return self.csrf_refused(request, checked, "run", name)
        target = (form.get("target") or "").strip()[:200] or None
        select = (form.get("select") or "").strip()[:200] or None
        assert checked.identity is not None
        reply = self.site.submit(RunNow(name, checked.identity.triggered_by, target=target, select=select))
        if isinstance(reply, Accepted):
            self.site.done(request, checked, Action.RUN, job=name, run_id=reply.run_ids[0])
            return RedirectResponse(f"/runs/{quote(reply.run_ids[0])}", status_code=303)
        why = reply.reason if reply is not None else "the daemon did not answer"
        self.site.done(request, checked, Action.RUN, job=name, error=why)
        return self.job(request, error=why, status=409)

    async def pause(self, request: Request) -> Response:
        from starlette.concurrency import run_in_threadpool

        form = await self.form(request)
        return await run_in_threadpool(self._pause, request, form)

    def _pause(self, request: Request, form: dict[str, str]) -> Response:
        from lib.web.api import Api

        name = request.path_params["job"]
        checked = self.site.check(request, Action.PAUSE, job=name)
        if not checked.allowed:
            return self.refused(request, checked)
        if not csrf_ok(request, checked, form.get("csrf")):
            return self.csrf_refused(request, checked, "pause", name)
        failed = Api(self.site).answer_pause(request, checked, name, form.get("paused") == "1")
        if failed is not None:
            return self.job(request, error=json.loads(failed.body)["error"], status=failed.status_code)
        return RedirectResponse(f"/jobs/{quote(name)}", status_code=303)

    # ------------------------------------------------------------------ runs

    def _run_checked(self, request: Request) -> tuple[Any, dict[str, Any] | None, Response | None]:
        run_id = request.path_params["run_id"]
        job, row = self.site.run_job(run_id)
        checked = self.site.check(request, Action.VIEW, job=job, run_id=run_id)
        if not checked.allowed:
            return checked, None, self.refused(request, checked)
        if row is None and job is not None:
            row = waiting_row(job, run_id)  # taken by the daemon, not recorded yet
        if row is None:
            page = self.render(
                request,
                "error.html",
                404,
                identity=checked.identity,
                title="No such run",
                message=f"No run {run_id} in history.",
            )
            return checked, None, page
        return checked, row, None

    def run(self, request: Request) -> Response:
        checked, row, refusal = self._run_checked(request)
        if refusal is not None or row is None:
            return refusal  # type: ignore[return-value]
        running = row["outcome"] in (RUNNING, WAITING)
        # A finished run's page is the same for everyone who may see it, and it no longer
        # changes (retention deleting its folder aside): rendered once, kept for a while.
        key = (row["run_id"], row["outcome"], row.get("finished_at"))
        body = None if running else self._run_cache.get(key)
        if body is None:
            body = self.run_body(request, checked, row, running)
            if not running:
                self._run_cache.put(key, body)
        return self.render(
            request,
            "run.html",
            identity=checked.identity,
            title=f"{row['job']} {row['run_id']}",
            running=running,
            body=body,
        )

    def run_body(self, request: Request, checked: Any, row: dict[str, Any], running: bool) -> Markup:
        data = report(row)
        log_text, offset = _log_tail(row)
        html = self.env.get_template("_run_body.html").render(
            csrf=csrf_token(request) if running else "",
            run=data,
            row=row,
            running=running,
            nodes=data.get("nodes") or [],
            log=log_text,
            offset=offset,
            files=_artifacts(row),
            can_cancel=running and self.may(checked, Action.CANCEL, row["job"]),
        )
        return Markup(html)

    async def cancel(self, request: Request) -> Response:
        from starlette.concurrency import run_in_threadpool

        form = await self.form(request)
        return await run_in_threadpool(self._cancel, request, form)

    def _cancel(self, request: Request, form: dict[str, str]) -> Response:
        run_id = request.path_params["run_id"]
        job, _row = self.site.run_job(run_id)
        if job is None:
            checked = self.site.check(request, Action.VIEW, run_id=run_id)
            if not checked.allowed:
                return self.refused(request, checked)
            return self.render(
                request, "error.html", 404, identity=checked.identity, title="No such run", message=run_id
            )
        checked = self.site.check(request, Action.CANCEL, job=job, run_id=run_id)
        if not checked.allowed:
            return self.refused(request, checked)
        if not csrf_ok(request, checked, form.get("csrf")):
            return self.csrf_refused(request, checked, "cancel", job)
        assert checked.identity is not None
        reply = self.site.submit(Cancel(job, by=checked.identity.name, run_id=run_id, via="the web UI"))
        error = (
            None if isinstance(reply, Accepted) else (reply.reason if reply else "the daemon did not answer")
        )
        self.site.done(request, checked, Action.CANCEL, job=job, run_id=run_id, error=error)
        return RedirectResponse(f"/runs/{quote(run_id)}", status_code=303)

    def file(self, request: Request) -> Response:
        _checked, row, refusal = self._run_checked(request)
        if refusal is not None or row is None:
            return refusal  # type: ignore[return-value]
        name = request.path_params["name"]
        if name not in {entry for entry, _size in _artifacts(row)}:
            return HTMLResponse("no such file in this run\n", status_code=404)
        path = Path(row["run_dir"]) / name
        text = path.suffix in (".log", ".md", ".json", ".sql", ".txt", ".yml", ".yaml")
        return FileResponse(
            path,
            media_type="text/plain; charset=utf-8" if text else "application/octet-stream",
            headers={"X-Content-Type-Options": "nosniff", "Content-Security-Policy": "sandbox"},
        )

    # ------------------------------------------------------------------ timeline, audit

    def timeline(self, request: Request) -> Response:
        checked = self.site.check(request, Action.VIEW)
        if not checked.allowed:
            return self.refused(request, checked)
        which = request.query_params.get("range", "24h")
        window = RANGES.get(which, RANGES["24h"])
        until = self.site.clock.now()
        since = until - window
        names = visible_jobs(self.site, checked)
        # A run that started before the window and still ran into it shows too.
        visible = set(names)
        rows = [
            row
            for row in self.site.history.started_between(
                since - timedelta(hours=24), until, ended_after=since
            )
            if row["job"] in visible
        ]
        return self.render(
            request,
            "timeline.html",
            identity=checked.identity,
            title="Timeline",
            chart=charts.gantt(rows, names, since, until),
            rows=rows,
            range=which if which in RANGES else "24h",
            ranges=list(RANGES),
        )

    def audit(self, request: Request) -> Response:
        checked = self.site.check(request, Action.READ_AUDIT)
        if not checked.allowed:
            return self.refused(request, checked)
        query = request.query_params
        entries = self.site.gate.audit.query(
            limit=200,
            user=query.get("user") or None,
            job=query.get("job") or None,
            denied=query.get("denied") == "1",
        )
        return self.render(
            request,
            "audit.html",
            identity=checked.identity,
            title="Audit log",
            entries=entries,
            user=query.get("user") or "",
            job=query.get("job") or "",
            denied=query.get("denied") == "1",
        )


class _Recent:
    """The `size` most recently used entries, thread-safe."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._lock = threading.Lock()
        self._entries: OrderedDict[Any, Markup] = OrderedDict()

    def get(self, key: Any) -> Markup | None:
        with self._lock:
            value = self._entries.get(key)
            if value is not None:
                self._entries.move_to_end(key)
            return value

    def put(self, key: Any, value: Markup) -> None:
        with self._lock:
            self._entries[key] = value
            self._entries.move_to_end(key)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)


def _safe_next(target: str | None) -> str:
    """Where to go after signing in: a path on this site only (no `//host`, no scheme)."""
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/"


def _log_tail(row: dict[str, Any]) -> tuple[str, int]:
    """The last LOG_CHUNK bytes of run.log (from a line's start) and the offset after them."""
    path = log_file(row)
    if path is None:
        return "", 0
    try:
        with open(path, "rb") as log:
            size = log.seek(0, os.SEEK_END)
            start = max(0, size - LOG_CHUNK)
            log.seek(start)
            data = log.read(size - start)
    except (FileNotFoundError, IsADirectoryError):
        return "", 0
    if start and b"\n" in data:
        data = data[data.index(b"\n") + 1 :]
    return data.decode("utf-8", errors="replace"), size


def _artifacts(row: dict[str, Any]) -> list[tuple[str, int]]:
    """The run's files to download (relative path, bytes): its folder and one level below,
    not the git checkout, never a symlink (it could point anywhere)."""
    if not row.get("run_dir"):
        return []
    root = Path(row["run_dir"])
    found: list[tuple[str, int]] = []
    try:
        for entry in sorted(root.iterdir()):
            if entry.is_symlink() or entry.name in _SKIP_DIRS:
                continue
            if entry.is_file():
                found.append((entry.name, entry.stat().st_size))
            elif entry.is_dir():
                for inner in sorted(entry.iterdir()):
                    if inner.is_file() and not inner.is_symlink():
                        found.append((f"{entry.name}/{inner.name}", inner.stat().st_size))
    except OSError:
        return found
    return found
