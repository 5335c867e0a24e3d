"""The JSON API: `/api/jobs`, a job's runs, a run's report and log, run now, cancel, the
audit log, and the OpenAPI document describing them (`/api/openapi.json`).

Every route asks the gate first (`Site.check`): 401 without credentials (or with a bad
or revoked token), 403 for a role too low, a job outside a token's scope, or a mutation
under `web.read_only`; each refusal is in the audit log. Errors are JSON, `{"error": …}`.

Run now (`POST /api/jobs/{job}/runs`, body `{"target": …, "select": …}`, both optional)
submits a `RunNow` on behalf of the caller's user (recorded as the run's `triggered_by`)
and answers 202 `{"run_id": …, "waiting": N}` once the daemon took it, or 409 with the
daemon's reason (already running under `overlap: skip`, already waiting, stopping); 404
for a job the daemon does not have. Cancel (`POST /api/runs/{run_id}/cancel`) stops a
running run, or drops a waiting one.

The log (`GET /api/runs/{run_id}/log?offset=N`) answers run.log (secrets already masked
as it was written) from byte `offset` on, with `X-Log-Offset` (where to ask from next)
and `X-Run-Running` (1 while the run goes on): the run page follows a live run by asking
again from the offset it was given.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from lib.control import Accepted, Cancel, Pause, RunNow
from lib.history import RUNNING
from lib.web.app import Site, csrf_ok, csrf_token, denied, error, peer_of
from lib.web.roles import Action, in_scope
from lib.web.words import schedule_in_words

LOG_CHUNK = 1024 * 1024  # bytes of run.log one request answers at most
RUNS_LIMIT = 500
_SAFE_TEXT = 200  # a target or select longer than this is refused


def routes(site: Site) -> list[Route]:
    handlers = Api(site)
    return [
        Route("/api/openapi.json", handlers.openapi),
        Route("/api/whoami", handlers.whoami),
        Route("/api/jobs", handlers.jobs),
        Route("/api/jobs/{job}/runs", handlers.job_runs, methods=["GET"]),
        Route("/api/jobs/{job}/runs", handlers.run_now, methods=["POST"]),
        Route("/api/jobs/{job}/pause", handlers.pause, methods=["POST"]),
        Route("/api/jobs/{job}/resume", handlers.resume, methods=["POST"]),
        Route("/api/runs/{run_id}", handlers.run),
        Route("/api/runs/{run_id}/log", handlers.log),
        Route("/api/runs/{run_id}/cancel", handlers.cancel, methods=["POST"]),
        Route("/api/audit", handlers.audit),
    ]


def job_summary(
    site: Site, name: str, last: dict[str, Any] | None, paused: dict[str, dict[str, Any]]
) -> dict[str, Any]:
    """What `/api/jobs` says of one job: its schedule in words, next run, last run, and
    who paused it when it is paused (`paused` is History.paused())."""
    job = site.jobs()[name]
    next_fire = site.next_fire(name) if job.enabled and name not in paused else None
    return {
        "name": name,
        "description": job.description,
        "schedule": job.trigger.describe(),
        "schedule_words": schedule_in_words(job.trigger),
        "timezone": job.timezone.key,
        "enabled": job.enabled,
        "runner": job.runner,
        "next_run": next_fire.isoformat() if next_fire is not None else None,
        "last_run": _brief(last) if last is not None else None,
        "paused": paused.get(name),
    }


def _brief(row: dict[str, Any]) -> dict[str, Any]:
    keys = ("run_id", "trigger", "triggered_by", "outcome", "started_at", "finished_at", "duration_s")
    return {key: row.get(key) for key in keys}


def visible_jobs(site: Site, checked: Any) -> list[str]:
    """The job names this identity may see: every job, or those its scope reaches."""
    names = sorted(site.jobs())
    identity = checked.identity
    return [name for name in names if identity is None or in_scope(identity.jobs, name)]


def log_file(row: dict[str, Any]) -> Path | None:
    if row.get("log_path"):
        return Path(row["log_path"])
    if row.get("run_dir"):
        return Path(row["run_dir"]) / "run.log"
    return None


def read_log(row: dict[str, Any], offset: int) -> tuple[bytes, int]:
    """(run.log's bytes from `offset`, at most LOG_CHUNK, ending at a line's end when it
    can; the offset to ask from next). No file yet: nothing, offset unchanged."""
    path = log_file(row)
    if path is None:
        return b"", offset
    try:
        with open(path, "rb") as log:
            log.seek(max(0, offset))
            data = log.read(LOG_CHUNK)
    except (FileNotFoundError, IsADirectoryError):
        return b"", offset
    if len(data) == LOG_CHUNK and b"\n" in data:
        data = data[: data.rindex(b"\n") + 1]  # a line is not cut in two between chunks
    return data, max(0, offset) + len(data)


WAITING = "waiting"


def waiting_row(job: str, run_id: str) -> dict[str, Any]:
    """What is known of a run the daemon took but has not recorded yet."""
    return {"job": job, "run_id": run_id, "outcome": WAITING, "run_dir": None, "log_path": None}


def report(row: dict[str, Any]) -> dict[str, Any]:
    """The run's report.json (masked when written), else its history row (a running run)."""
    if row.get("run_dir") and row.get("outcome") not in (RUNNING, WAITING):
        with contextlib.suppress(FileNotFoundError, ValueError, IsADirectoryError):
            data = json.loads((Path(row["run_dir"]) / "report.json").read_text(encoding="utf-8"))
            if isinstance(data, dict):
                return data
    return dict(row)


class Api:
    def __init__(self, site: Site) -> None:
        self.site = site
        self._lock = threading.Lock()
        self._jobs_cache: dict[tuple[Any, ...], bytes] = {}

    def openapi(self, request: Request) -> Response:
        checked = self.site.check(request, Action.VIEW)
        if not checked.allowed:
            return denied(checked)
        return JSONResponse(openapi_document(self.site.settings.base_url))

    def whoami(self, request: Request) -> Response:
        """Who the server takes the caller for, and the CSRF token a browser's POSTs send."""
        checked = self.site.check(request, Action.VIEW)
        if not checked.allowed:
            return denied(checked)
        identity = checked.identity
        assert identity is not None
        return JSONResponse(
            {
                "user": identity.name,
                "source": identity.source,
                "role": identity.role.value if identity.role is not None else None,
                "jobs": list(identity.jobs),
                "csrf": csrf_token(request),
            }
        )

    def jobs(self, request: Request) -> Response:
        checked = self.site.check(request, Action.VIEW)
        if not checked.allowed:
            return denied(checked)
        names = tuple(visible_jobs(self.site, checked))
        paused = self.site.history.paused()
        key = self.site.version(names, paused)  # the same answer until something in it changes
        with self._lock:
            body = self._jobs_cache.get(key)
        if body is None:
            # One indexed query per job: History.last_runs() scans every row (100,000 runs: ~0.1 s).
            last = self.site.history.recent(names, 1)
            jobs = [job_summary(self.site, name, next(iter(last[name]), None), paused) for name in names]
            body = JSONResponse({"jobs": jobs}).body
            with self._lock:
                if len(self._jobs_cache) >= 32:
                    self._jobs_cache.clear()
                self._jobs_cache[key] = body
        return Response(body, media_type="application/json")

    def job_runs(self, request: Request) -> Response:
        job = request.path_params["job"]
        checked = self.site.check(request, Action.VIEW, job=job)
        if not checked.allowed:
            return denied(checked)
        if job not in self.site.jobs() and not self.site.history.runs(job, limit=1):
            return error(404, f"no job {job!r}")
        query = request.query_params
        try:
            limit = min(RUNS_LIMIT, max(1, int(query.get("limit", "50"))))
        except ValueError:
            return error(400, "limit must be a whole number")
        runs = self.site.history.runs(
            job, limit=limit, outcome=query.get("outcome") or None, trigger=query.get("trigger") or None
        )
        return JSONResponse({"job": job, "runs": runs})

    def _run_row(self, request: Request) -> tuple[Any, dict[str, Any] | None, Response | None]:
        """(checked, the run's row, None) or (checked, None, the refusal or 404) for a VIEW of a
        run. A run the daemon holds but history does not show yet (waiting for a slot, or
        starting) gets a stand-in row, outcome `waiting`."""
        run_id = request.path_params["run_id"]
        job, row = self.site.run_job(run_id)
        checked = self.site.check(request, Action.VIEW, job=job, run_id=run_id)
        if not checked.allowed:
            return checked, None, denied(checked)
        if row is None and job is not None:
            row = waiting_row(job, run_id)
        if row is None:
            return checked, None, error(404, f"no run {run_id!r} in history")
        return checked, row, None

    def run(self, request: Request) -> Response:
        _checked, row, refusal = self._run_row(request)
        if refusal is not None or row is None:
            return refusal or error(404, "no such run")
        return JSONResponse(report(row))

    def log(self, request: Request) -> Response:
        _checked, row, refusal = self._run_row(request)
        if refusal is not None or row is None:
            return refusal or error(404, "no such run")
        try:
            offset = int(request.query_params.get("offset", "0"))
        except ValueError:
            return error(400, "offset must be a whole number of bytes")
        data, next_offset = read_log(row, offset)
        now = self.site.history.get(row["run_id"])
        still = row["outcome"] == WAITING if now is None else now["outcome"] == RUNNING
        return Response(
            data,
            media_type="text/plain; charset=utf-8",
            headers={"X-Log-Offset": str(next_offset), "X-Run-Running": "1" if still else "0"},
        )

    async def run_now(self, request: Request) -> Response:
        job = request.path_params["job"]
        body = await _json_body(request)
        return await _in_thread(self._run_now, request, job, body)

    def _run_now(self, request: Request, job: str, body: dict[str, Any] | None) -> Response:
        checked = self.site.check(request, Action.RUN, job=job)
        if not checked.allowed:
            return denied(checked)
        if not csrf_ok(request, checked, request.headers.get("x-csrf-token")):
            return self._csrf_refused(request, checked, Action.RUN, job)
        if body is None:
            return error(400, 'the body must be a JSON object: {"target": …, "select": …}, both optional')
        try:
            target, select = _text(body, "target"), _text(body, "select")
        except ValueError as exc:
            return error(400, str(exc))
        assert checked.identity is not None
        reply = self.site.submit(RunNow(job, checked.identity.triggered_by, target=target, select=select))
        return self.answer_run_now(request, checked, job, reply)

    def answer_run_now(self, request: Request, checked: Any, job: str, reply: Any) -> Response:
        if reply is None:
            self.site.done(request, checked, Action.RUN, job=job, error="the daemon did not answer")
            return error(503, "the daemon did not answer (is its loop stuck?)")
        if not isinstance(reply, Accepted):
            self.site.done(request, checked, Action.RUN, job=job, error=f"{reply.code}: {reply.reason}")
            status = 404 if reply.code == "unknown-job" else 503 if reply.code == "stopping" else 409
            return error(status, reply.reason, code=reply.code)
        run_id = reply.run_ids[0]
        self.site.done(request, checked, Action.RUN, job=job, run_id=run_id)
        return JSONResponse({"run_id": run_id, "job": job, "waiting": reply.waiting}, status_code=202)

    async def pause(self, request: Request) -> Response:
        return await _in_thread(self._pause, request, True)

    async def resume(self, request: Request) -> Response:
        return await _in_thread(self._pause, request, False)

    def _pause(self, request: Request, paused: bool) -> Response:
        job = request.path_params["job"]
        checked = self.site.check(request, Action.PAUSE, job=job)
        if not checked.allowed:
            return denied(checked)
        if not csrf_ok(request, checked, request.headers.get("x-csrf-token")):
            return self._csrf_refused(request, checked, Action.PAUSE, job)
        reply = self.answer_pause(request, checked, job, paused)
        if isinstance(reply, Response):
            return reply
        return JSONResponse({"job": job, "paused": paused})

    def answer_pause(self, request: Request, checked: Any, job: str, paused: bool) -> Response | None:
        """Submit the pause or resume and audit it; None when done, else the error response."""
        assert checked.identity is not None
        reply = self.site.submit(Pause(job, by=checked.identity.name, paused=paused))
        detail = "pause" if paused else "resume"
        if not isinstance(reply, Accepted):
            why = reply.reason if reply is not None else "the daemon did not answer"
            self.site.gate.done(checked, peer_of(request), Action.PAUSE, job=job, error=f"{detail}: {why}")
            status = 404 if reply is not None and reply.code == "unknown-job" else 503
            return error(status, why)
        self.site.gate.done(checked, peer_of(request), Action.PAUSE, job=job, detail=detail)
        return None

    async def cancel(self, request: Request) -> Response:
        return await _in_thread(self._cancel, request)

    def _cancel(self, request: Request) -> Response:
        run_id = request.path_params["run_id"]
        job, _row = self.site.run_job(run_id)
        if job is None:
            checked = self.site.check(request, Action.VIEW, run_id=run_id)
            if not checked.allowed:
                return denied(checked)
            return error(404, f"no run {run_id!r}")
        checked = self.site.check(request, Action.CANCEL, job=job, run_id=run_id)
        if not checked.allowed:
            return denied(checked)
        if not csrf_ok(request, checked, request.headers.get("x-csrf-token")):
            return self._csrf_refused(request, checked, Action.CANCEL, job, run_id)
        assert checked.identity is not None
        reply = self.site.submit(Cancel(job, by=checked.identity.name, run_id=run_id, via="the web API"))
        return self.answer_cancel(request, checked, job, run_id, reply)

    def answer_cancel(self, request: Request, checked: Any, job: str, run_id: str, reply: Any) -> Response:
        if reply is None:
            self.site.done(request, checked, Action.CANCEL, job=job, run_id=run_id, error="no answer")
            return error(503, "the daemon did not answer (is its loop stuck?)")
        if not isinstance(reply, Accepted):
            self.site.done(
                request, checked, Action.CANCEL, job=job, run_id=run_id, error=f"{reply.code}: {reply.reason}"
            )
            return error(409, reply.reason, code=reply.code)
        self.site.done(request, checked, Action.CANCEL, job=job, run_id=run_id)
        return JSONResponse({"cancelled": list(reply.run_ids)}, status_code=202)

    def _csrf_refused(
        self, request: Request, checked: Any, action: Action, job: str, run_id: str | None = None
    ) -> Response:
        self.site.csrf_denied(request, checked, str(action), job, run_id)
        return error(403, "missing or wrong CSRF token: reload the page and try again", reason="csrf")

    def audit(self, request: Request) -> Response:
        checked = self.site.check(request, Action.READ_AUDIT)
        if not checked.allowed:
            return denied(checked)
        query = request.query_params
        try:
            limit = min(1000, max(1, int(query.get("limit", "100"))))
        except ValueError:
            return error(400, "limit must be a whole number")
        entries = self.site.gate.audit.query(
            limit=limit,
            user=query.get("user") or None,
            job=query.get("job") or None,
            denied=query.get("denied") in ("1", "true"),
        )
        return JSONResponse({"entries": [entry.as_json() for entry in entries]})


async def _json_body(request: Request) -> dict[str, Any] | None:
    """The JSON object sent (an empty body: `{}`); None when it is not one."""
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        data = json.loads(raw)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


async def _in_thread(work: Callable[..., Response], *args: Any) -> Response:
    """Blocking work (SQLite, waiting for the loop's answer) off the event loop."""
    from starlette.concurrency import run_in_threadpool

    return await run_in_threadpool(work, *args)


def _text(body: dict[str, Any], key: str) -> str | None:
    value = body.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) > _SAFE_TEXT or any(ch in value for ch in "\r\n\x00"):
        raise ValueError(f"`{key}` must be a one-line string of at most {_SAFE_TEXT} characters")
    return value


# ---------------------------------------------------------------------- OpenAPI


def _op(summary: str, responses: dict[str, str], **more: Any) -> dict[str, Any]:
    return {
        "summary": summary,
        "security": [{"bearer": []}],
        "responses": {code: {"description": text} for code, text in responses.items()},
        **more,
    }


_READ = {"200": "OK", "401": "no or bad credentials", "403": "role or job scope too narrow"}
_MUTATE = {
    **_READ,
    "202": "accepted by the daemon",
    "403": "role, scope, read_only or CSRF",
    "404": "no such job or run",
    "409": "refused by the daemon (code, reason)",
}
_JOB = [{"name": "job", "in": "path", "required": True, "schema": {"type": "string"}}]
_RUN = [{"name": "run_id", "in": "path", "required": True, "schema": {"type": "string"}}]


def openapi_document(base_url: str | None) -> dict[str, Any]:
    """The OpenAPI 3.1 description of the API routes above (hand-built: eight routes)."""
    query = [
        {"name": "limit", "in": "query", "schema": {"type": "integer", "maximum": RUNS_LIMIT}},
        {"name": "outcome", "in": "query", "schema": {"type": "string"}},
        {"name": "trigger", "in": "query", "schema": {"type": "string"}},
    ]
    run_now_body = {
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "properties": {"target": {"type": "string"}, "select": {"type": "string"}},
                }
            }
        }
    }
    from lib import __version__

    return {
        "openapi": "3.1.0",
        "info": {"title": "dbt-scheduler", "version": __version__},
        "servers": [{"url": base_url}] if base_url else [],
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
        "paths": {
            "/api/whoami": {"get": _op("Who the caller is taken for, and the session's CSRF token", _READ)},
            "/api/jobs": {"get": _op("Every job: schedule in words, next run, last run", _READ)},
            "/api/jobs/{job}/runs": {
                "get": _op(
                    "A job's runs, newest first", {**_READ, "404": "no such job"}, parameters=_JOB + query
                ),
                "post": _op(
                    "Run the job now (recorded as triggered by the caller)",
                    _MUTATE,
                    parameters=_JOB,
                    requestBody=run_now_body,
                ),
            },
            "/api/runs/{run_id}": {
                "get": _op("The run's report.json", {**_READ, "404": "no such run"}, parameters=_RUN)
            },
            "/api/runs/{run_id}/log": {
                "get": _op(
                    "run.log from byte `offset` (headers X-Log-Offset, X-Run-Running)",
                    {**_READ, "404": "no such run"},
                    parameters=[*_RUN, {"name": "offset", "in": "query", "schema": {"type": "integer"}}],
                )
            },
            "/api/runs/{run_id}/cancel": {
                "post": _op("Cancel a running or waiting run", _MUTATE, parameters=_RUN)
            },
            "/api/audit": {"get": _op("The audit log, newest first (admins)", _READ)},
            "/metrics": {"get": _op("Prometheus metrics", _READ)},
            "/healthz": {
                "get": {
                    "summary": "Health check, no authentication",
                    "responses": {"200": {"description": "ok"}},
                }
            },
        },
    }
