"""The web API (lib/web/api.py, lib/web/app.py) through Starlette's TestClient, against a real
Daemon loop (on its own thread, a clock that never moves on its own), a real history.db and
real tokens (tests/web_helpers.py). Runs are released by events, never by timing."""

from __future__ import annotations

from dataclasses import replace

import pytest

from lib.web.roles import Role
from tests.web_helpers import SETTINGS, TIMEOUT, Served, bearer, expired_token, wait_finished

# ---------------------------------------------------------------------- route by role


# (method, path, the least role, the status when allowed); {run} is a finished run of nightly.
ROUTES = [
    ("GET", "/api/jobs", Role.VIEWER, 200),
    ("GET", "/api/jobs/nightly/runs", Role.VIEWER, 200),
    ("GET", "/api/runs/{run}", Role.VIEWER, 200),
    ("GET", "/api/runs/{run}/log", Role.VIEWER, 200),
    ("GET", "/api/openapi.json", Role.VIEWER, 200),
    ("GET", "/metrics", Role.VIEWER, 200),
    ("POST", "/api/jobs/nightly/runs", Role.OPERATOR, 202),
    ("POST", "/api/runs/{run}/cancel", Role.OPERATOR, 409),  # allowed, but it has finished
    ("GET", "/api/audit", Role.ADMIN, 200),
    ("GET", "/api/whoami", Role.VIEWER, 200),
    ("POST", "/api/jobs/nightly/pause", Role.OPERATOR, 200),
    ("POST", "/api/jobs/nightly/resume", Role.OPERATOR, 200),
]
CREDENTIALS = ["none", "viewer", "operator", "admin", "expired", "revoked", "garbage"]


@pytest.mark.parametrize("credential", CREDENTIALS)
@pytest.mark.parametrize(
    ("method", "path", "least", "allowed"), ROUTES, ids=[f"{m} {p}" for m, p, *_ in ROUTES]
)
def test_every_route_answers_each_role_as_the_table_says(
    served: Served, method: str, path: str, least: Role, allowed: int, credential: str
) -> None:
    run_id = served.finished_run()
    headers: dict[str, str] = {}
    if credential in ("viewer", "operator", "admin"):
        headers = bearer(served.token(Role(credential)))
    elif credential == "expired":
        headers = bearer(expired_token(served))
    elif credential == "revoked":
        token, info = served.tokens.create("gone-user", Role.ADMIN)
        served.tokens.revoke(info.id)
        headers = bearer(token)
    elif credential == "garbage":
        headers = bearer("dbts_00000000_not-a-real-secret")
    client = served.client()
    answer = client.request(method, path.format(run=run_id), headers=headers)
    if credential in ("none", "expired", "revoked", "garbage"):
        expected = 401
    else:
        expected = allowed if Role(credential) >= least else 403
    assert answer.status_code == expected, answer.text
    if expected == 401:
        assert answer.headers["www-authenticate"] == "Bearer"
    if expected in (401, 403):
        assert "error" in answer.json()
        [entry] = served.audit.query(denied=True)
        want = {"none": "denied:unauthenticated", "expired": "denied:token_expired"}.get(credential)
        assert want is None or entry.result == want
        assert entry.peer == "127.0.0.1"


def test_healthz_needs_no_credentials_and_says_nothing_else(served: Served) -> None:
    answer = served.client().get("/healthz")
    assert answer.status_code == 200 and answer.text == "ok\n"
    assert served.audit.query() == []


# ---------------------------------------------------------------------- run now, cancel


def test_run_now_over_http_is_recorded_with_the_tokens_user_and_audited(served: Served) -> None:
    client = served.client()
    token = served.token(Role.OPERATOR, user="ci-bot")
    run_ids = []

    def last_run() -> object:
        jobs = client.get("/api/jobs", headers=bearer(token)).json()["jobs"]
        return next(job["last_run"] for job in jobs if job["name"] == "nightly")

    assert last_run() is None
    with served.daemon.control.bus.subscribe(["nightly"]) as events:
        for attempt in (1, 2):
            answer = client.post(
                "/api/jobs/nightly/runs", headers=bearer(token), json={"target": "prod", "select": "orders+"}
            )
            assert answer.status_code == 202, answer.text
            run_ids.append(answer.json()["run_id"])
            wait_finished(events, run_ids[-1])
            assert len(served.app.history.runs("nightly", limit=None)) == attempt
            assert last_run()["run_id"] == run_ids[-1]  # type: ignore[index]  # not a stale answer
    rows = {row["run_id"]: row for row in served.app.history.runs("nightly", limit=None)}
    assert [(rows[r]["triggered_by"], rows[r]["trigger"], rows[r]["outcome"]) for r in run_ids] == [
        ("ci-bot", "manual", "succeeded")
    ] * 2
    assert {rows[r]["target_override"] for r in run_ids} == {"prod"}
    audit = [(e.user, e.action, e.result, e.run_id) for e in reversed(served.audit.query())]
    assert audit == [("ci-bot", "run", "allowed", run_id) for run_id in run_ids]
    # The report and the log of the run, as the API gives them.
    report = client.get(f"/api/runs/{run_ids[0]}", headers=bearer(token)).json()
    assert report["run_id"] == run_ids[0] and report["triggered_by"] == "ci-bot"
    log = client.get(f"/api/runs/{run_ids[0]}/log", headers=bearer(token))
    assert log.text == "hello from nightly\nbye\n" and log.headers["x-run-running"] == "0"
    rest = client.get(f"/api/runs/{run_ids[0]}/log?offset=19", headers=bearer(token))
    assert rest.text == "bye\n" and rest.headers["x-log-offset"] == str(len(log.content))


def test_no_plaintext_token_is_left_in_history_db_after_use(served: Served) -> None:
    token = served.token(Role.OPERATOR, user="ci-bot")
    client = served.client()
    assert client.post("/api/jobs/nightly/runs", headers=bearer(token)).status_code == 202
    assert client.get("/api/jobs", headers=bearer("dbts_12345678_wrong" + token[-10:])).status_code == 401
    secret = token.split("_", 2)[2]
    for path in served.app.history.path.parent.glob("history.db*"):
        assert secret.encode() not in path.read_bytes(), path


def test_a_refused_run_now_is_409_with_the_daemons_reason_and_audited_as_an_error(served: Served) -> None:
    served.runs.hold.add("slow")
    client = served.client()
    token = served.token(Role.OPERATOR, user="op")
    first = client.post("/api/jobs/slow/runs", headers=bearer(token))
    assert first.status_code == 202
    assert served.runs.started.acquire(timeout=TIMEOUT)
    second = client.post("/api/jobs/slow/runs", headers=bearer(token))
    assert second.status_code == 409 and second.json()["code"] == "running"
    assert "already running" in second.json()["error"]
    unknown = client.post("/api/jobs/nope/runs", headers=bearer(token))
    assert unknown.status_code == 404 and unknown.json()["code"] == "unknown-job"
    bad = client.post("/api/jobs/slow/runs", headers=bearer(token), content=b"[1]")
    assert bad.status_code == 400
    # Cancel the running one: it ends cancelled, the cancel audited with its run id.
    run_id = first.json()["run_id"]
    with served.daemon.control.bus.subscribe(["slow"]) as events:
        cancel = client.post(f"/api/runs/{run_id}/cancel", headers=bearer(token))
        assert cancel.status_code == 202 and cancel.json() == {"cancelled": [run_id]}
        wait_finished(events, run_id)
    row = served.app.history.get(run_id)
    assert row is not None and row["outcome"] == "cancelled" and "cancelled by op" in row["reason"]
    results = [(e.action, e.result, e.run_id) for e in reversed(served.audit.query())]
    assert results[0] == ("run", "allowed", run_id)
    assert results[1][:2] == ("run", "error") and results[-1] == ("cancel", "allowed", run_id)
    assert client.post("/api/runs/no-such-run/cancel", headers=bearer(token)).status_code == 404


def test_api_runs_under_max_parallel_wait_for_a_slot(served: Served) -> None:
    served.runs.hold.update({"slow", "nightly", "sales_daily"})
    client = served.client()
    token = served.token(Role.ADMIN, user="boss")
    answers = [client.post(f"/api/jobs/{job}/runs", headers=bearer(token)) for job in ("slow", "nightly")]
    assert [a.json()["waiting"] for a in answers] == [0, 0]
    for _ in answers:
        assert served.runs.started.acquire(timeout=TIMEOUT)
    third = client.post("/api/jobs/sales_daily/runs", headers=bearer(token))
    assert third.status_code == 202 and third.json()["waiting"] == 1  # max_parallel 2
    assert [entry.job for entry in served.daemon.queued_runs()] == ["sales_daily"]
    # A waiting run can be cancelled through the API too: it leaves the queue, recorded skipped.
    queued_id = third.json()["run_id"]
    with served.daemon.control.bus.subscribe(["sales_daily"]) as events:
        assert client.post(f"/api/runs/{queued_id}/cancel", headers=bearer(token)).status_code == 202
        wait_finished(events, queued_id)
    assert served.app.history.get(queued_id)["outcome"] == "skipped"  # type: ignore[index]
    served.runs.release()
    assert served.runs.peak == 2


# ---------------------------------------------------------------------- who may


def test_a_scoped_token_sees_and_runs_only_its_jobs(served: Served) -> None:
    served.finished_run("nightly")
    token = served.token(Role.OPERATOR, user="sales-bot", jobs=["sales_*"])
    client = served.client()
    jobs = client.get("/api/jobs", headers=bearer(token)).json()["jobs"]
    assert [job["name"] for job in jobs] == ["sales_daily"]
    assert jobs[0]["schedule"] and jobs[0]["timezone"] == "UTC"
    assert client.get("/api/jobs/nightly/runs", headers=bearer(token)).status_code == 403
    nightly_run = served.app.history.runs("nightly", limit=1)[0]["run_id"]
    assert client.get(f"/api/runs/{nightly_run}", headers=bearer(token)).status_code == 403
    assert client.post("/api/jobs/nightly/runs", headers=bearer(token)).status_code == 403
    assert client.get("/api/audit", headers=bearer(token)).status_code == 403
    assert client.post("/api/jobs/sales_daily/runs", headers=bearer(token)).status_code == 202
    denied = {(e.action, e.job, e.result) for e in served.audit.query(denied=True)}
    assert ("run", "nightly", "denied:out_of_scope") in denied


PROXY = {"X-Forwarded-User": "dora", "X-Forwarded-Email": "dora@example.com", "X-Forwarded-Groups": "ops"}


def test_proxy_headers_are_believed_from_a_trusted_peer_only(served: Served) -> None:
    trusted = served.client(peer="10.0.0.5")
    assert trusted.get("/api/jobs", headers=PROXY).status_code == 200
    who = trusted.get("/api/whoami", headers=PROXY).json()
    assert who["user"] == "dora" and who["role"] == "operator" and who["source"] == "proxy"
    # A POST from a proxy's user is a browser's: it needs the session's CSRF token.
    refused = trusted.post("/api/jobs/nightly/runs", headers=PROXY)
    assert refused.status_code == 403 and refused.json()["reason"] == "csrf"
    ran = trusted.post("/api/jobs/nightly/runs", headers={**PROXY, "X-CSRF-Token": who["csrf"]})
    assert ran.status_code == 202, ran.text
    # The same headers from any other peer are ignored, X-Forwarded-For naming the proxy or not.
    for headers in (PROXY, {**PROXY, "X-Forwarded-For": "10.0.0.5"}):
        spoofed = served.client(peer="10.9.9.9").post("/api/jobs/nightly/runs", headers=headers)
        assert spoofed.status_code == 401
    results = [(e.user, e.result, e.peer) for e in served.audit.query()]
    assert results[0] == (None, "denied:untrusted_proxy", "10.9.9.9")
    assert ("dora", "denied:csrf", "10.0.0.5") in results and ("dora", "allowed", "10.0.0.5") in results
    run = served.app.history.get(ran.json()["run_id"])
    assert run is None or run["triggered_by"] == "dora"


def test_a_proxy_user_without_a_mapped_group_is_403_not_401(served: Served) -> None:
    answer = served.client(peer="10.0.0.5").get("/api/jobs", headers={"X-Forwarded-User": "eve"})
    assert answer.status_code == 403 and answer.json()["reason"] == "no_role"


def test_read_only_refuses_every_mutation_and_still_serves_reading(served: Served) -> None:
    run_id = served.finished_run()
    client = served.client(settings=replace(SETTINGS, read_only=True))
    token = served.token(Role.ADMIN, user="boss")
    assert client.get("/api/jobs", headers=bearer(token)).status_code == 200
    for path in ("/api/jobs/nightly/runs", f"/api/runs/{run_id}/cancel"):
        answer = client.post(path, headers=bearer(token))
        assert answer.status_code == 403 and answer.json()["reason"] == "read_only"
    assert len(served.app.history.runs("nightly", limit=None)) == 1
    assert [e.result for e in served.audit.query()] == ["denied:read_only"] * 2


def test_the_token_lifecycle_through_http(served: Served) -> None:
    client = served.client()
    token, info = served.tokens.create("temp", Role.VIEWER, expires_in=3600)
    assert client.get("/api/jobs", headers=bearer(token)).status_code == 200  # created, used
    assert served.tokens.get(info.id).last_used_at is not None  # type: ignore[union-attr]
    served.site.clock.advance(3601)  # type: ignore[attr-defined]
    assert client.get("/api/jobs", headers=bearer(token)).status_code == 401  # expired
    other, other_info = served.tokens.create("temp2", Role.VIEWER)
    assert client.get("/api/jobs", headers=bearer(other)).status_code == 200
    served.tokens.revoke(other_info.id)
    assert client.get("/api/jobs", headers=bearer(other)).status_code == 401  # revoked
    assert [e.result for e in served.audit.query()] == ["denied:token_revoked", "denied:token_expired"]


def test_openapi_lists_every_api_route(served: Served) -> None:
    document = served.client().get("/api/openapi.json", headers=bearer(served.token(Role.VIEWER))).json()
    assert document["openapi"].startswith("3.")
    for path in (
        "/api/jobs",
        "/api/jobs/{job}/runs",
        "/api/runs/{run_id}",
        "/api/runs/{run_id}/log",
        "/api/runs/{run_id}/cancel",
        "/api/audit",
        "/metrics",
        "/healthz",
    ):
        assert path in document["paths"], path
    assert set(document["paths"]["/api/jobs/{job}/runs"]) == {"get", "post"}


def test_pause_and_resume_over_the_api_are_audited_and_shown(served: Served) -> None:
    client = served.client()
    op = served.token(Role.OPERATOR, user="op")
    viewer = served.token(Role.VIEWER, user="vic")
    assert client.post("/api/jobs/nightly/pause", headers=bearer(viewer)).status_code == 403
    answer = client.post("/api/jobs/nightly/pause", headers=bearer(op))
    assert answer.status_code == 200 and answer.json() == {"job": "nightly", "paused": True}
    assert "nightly" not in served.daemon.next_fire
    jobs = {job["name"]: job for job in client.get("/api/jobs", headers=bearer(viewer)).json()["jobs"]}
    assert jobs["nightly"]["paused"]["paused_by"] == "op" and jobs["nightly"]["next_run"] is None
    assert jobs["slow"]["paused"] is None and jobs["slow"]["next_run"] is not None
    assert client.post("/api/jobs/nope/pause", headers=bearer(op)).status_code == 404
    assert client.post("/api/jobs/nightly/resume", headers=bearer(op)).status_code == 200
    assert "nightly" in served.daemon.next_fire
    audit = [(e.user, e.action, e.result, e.detail) for e in reversed(served.audit.query())]
    assert audit[0] == ("vic", "pause", "denied:role", audit[0][3])
    assert audit[1] == ("op", "pause", "allowed", "pause") and audit[-1] == (
        "op",
        "pause",
        "allowed",
        "resume",
    )
