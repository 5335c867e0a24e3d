"""The HTML pages (lib/web/pages.py, templates) through Starlette's TestClient on a real Daemon
loop (tests/web_helpers.py): sign-in and the session cookie, CSRF on every form, what each
role sees, the run page's facts, nodes, log and artifacts, the timeline and audit pages."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from starlette.testclient import TestClient

from lib.models import NodeResult, RunOutcome, RunStatus
from lib.web import charts
from lib.web.roles import Role
from tests.web_helpers import TIMEOUT, Served, bearer, wait_finished


def signed_in(served: Served, role: Role, user: str | None = None, **kw: object) -> tuple[TestClient, str]:
    """A browser signed in with a new token of `role`: (the client, the token)."""
    client = served.client(follow_redirects=False)
    token = served.token(role, user=user, **kw)  # type: ignore[arg-type]
    form = client.get("/login")
    answer = client.post("/login", data={"token": token, "csrf": csrf_of(form.text), "next": "/"})
    assert answer.status_code == 303 and answer.headers["location"] == "/", answer.text
    return client, token


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, "no CSRF field in the page"
    return found[1]


# ---------------------------------------------------------------------- signing in


def test_sign_in_gives_a_signed_httponly_samesite_cookie_naming_the_token_not_holding_it(
    served: Served,
) -> None:
    client = served.client(follow_redirects=False)
    assert client.get("/").headers["location"] == "/login?next=%2F"  # no credentials: to the login page
    form = client.get("/login?next=/timeline")
    token = served.token(Role.VIEWER, user="vera")
    answer = client.post("/login", data={"token": token, "csrf": csrf_of(form.text), "next": "/timeline"})
    assert answer.status_code == 303 and answer.headers["location"] == "/timeline"
    cookie = answer.headers["set-cookie"]
    assert (
        cookie.startswith("dbts_session=")
        and "httponly" in cookie.lower()
        and "samesite=lax" in cookie.lower()
    )
    assert "secure" not in cookie.lower()  # base_url is not https here
    assert token.split("_", 2)[2] not in cookie
    page = client.get("/")
    assert page.status_code == 200 and "vera (viewer)" in page.text
    assert (
        page.headers["x-frame-options"] == "DENY"
        and "frame-ancestors 'none'" in page.headers["content-security-policy"]
    )
    assert [(e.user, e.action, e.result) for e in served.audit.query()] == [
        ("vera", "login", "allowed"),
        (None, "view", "denied:unauthenticated"),  # the first visit, before signing in
    ]


def test_a_refused_sign_in_is_401_and_audited_and_a_foreign_next_is_ignored(served: Served) -> None:
    client = served.client(follow_redirects=False)
    csrf = csrf_of(client.get("/login").text)
    wrong = served.token(Role.ADMIN)[:-4] + "AAAA"  # a real token's id, a wrong secret
    refused = client.post("/login", data={"token": wrong, "csrf": csrf})
    assert refused.status_code == 401 and "That token is unknown" in refused.text
    assert (
        client.post("/login", data={"token": served.token(Role.VIEWER), "csrf": "forged"}).status_code == 403
    )
    token = served.token(Role.VIEWER)
    answer = client.post("/login", data={"token": token, "csrf": csrf, "next": "//evil.example/x"})
    assert answer.headers["location"] == "/"
    assert [e.result for e in served.audit.query()][-1] == "denied:token_unknown"


def test_a_session_ends_when_its_token_is_revoked_and_a_tampered_cookie_is_nobody(served: Served) -> None:
    client, _token = signed_in(served, Role.VIEWER, user="vera")
    assert client.get("/").status_code == 200
    [info] = [t for t in served.tokens.list() if t.user == "vera"]
    served.tokens.revoke(info.id)
    assert client.get("/").status_code == 303  # back to the login page
    assert served.audit.query()[0].result == "denied:token_revoked"
    other, _ = signed_in(served, Role.VIEWER, user="walt")
    value = other.cookies["dbts_session"]
    other.cookies.set("dbts_session", value[:-3] + ("abc" if not value.endswith("abc") else "xyz"))
    assert other.get("/").status_code == 303


def test_sign_out_needs_the_csrf_token(served: Served) -> None:
    client, _ = signed_in(served, Role.VIEWER)
    client.post("/logout", data={"csrf": "forged"})
    page = client.get("/")
    assert page.status_code == 200
    client.post("/logout", data={"csrf": csrf_of(page.text)})
    assert client.get("/").status_code == 303


# ---------------------------------------------------------------------- pages by role

PAGES = [
    ("/", Role.VIEWER),
    ("/jobs/nightly", Role.VIEWER),
    ("/runs/{run}", Role.VIEWER),
    ("/runs/{run}/files/run.log", Role.VIEWER),
    ("/timeline", Role.VIEWER),
    ("/timeline?range=7d", Role.VIEWER),
    ("/audit", Role.ADMIN),
]


@pytest.mark.parametrize("who", ["none", "viewer", "operator", "admin", "expired"])
@pytest.mark.parametrize(("path", "least"), PAGES, ids=[p for p, _ in PAGES])
def test_every_page_answers_each_role_as_the_table_says(
    served: Served, path: str, least: Role, who: str
) -> None:
    from tests.web_helpers import expired_token

    run_id = served.finished_run()
    client = served.client(follow_redirects=False)
    headers = {}
    if who == "expired":
        headers = bearer(expired_token(served))
    elif who != "none":
        headers = bearer(served.token(Role(who)))
    answer = client.get(path.format(run=run_id), headers=headers)
    if who in ("none", "expired"):
        assert answer.status_code == 303 and answer.headers["location"].startswith("/login?next=")
    elif Role(who) >= least:
        assert answer.status_code == 200, answer.text
    else:
        assert answer.status_code == 403 and "needs the admin role" in answer.text


# ---------------------------------------------------------------------- what the pages show


def test_the_jobs_page_shows_schedule_next_run_last_outcome_strip_and_sparkline(served: Served) -> None:
    for _ in range(3):
        served.finished_run("nightly")
    served.runs.outcome = RunOutcome(RunStatus.FAILED, reason="dbt failed")
    served.finished_run("nightly")
    client, _ = signed_in(served, Role.VIEWER)
    page = client.get("/").text
    row = page[page.index('href="/jobs/nightly"') : page.index('href="/jobs/sales_daily"')]
    assert "At 06:00" in row and "<code>0 6 * * *</code>" in row  # the schedule in words
    assert "2026-03-02 06:00:00 UTC" in row  # the next run, in the job's timezone
    assert 'class="badge o-failed"' in row  # the last outcome
    assert row.count('<li><a class="o-') == 4 and "last 4 outcomes" in row
    assert '<svg class="spark"' in row and "durations of the last 4 runs" in row
    assert "never run" in page[page.index('href="/jobs/slow"') :]
    # The table is cached until a run starts or ends: the next run shows at once.
    served.runs.outcome = RunOutcome(RunStatus.SUCCEEDED)
    served.finished_run("slow")
    again = client.get("/").text
    assert "never run" not in again[again.index('href="/jobs/slow"') :]
    assert again[again.index('href="/jobs/nightly"') :].count('<li><a class="o-') == 5


def test_a_scoped_viewer_sees_only_its_jobs_and_no_audit_link(served: Served) -> None:
    client, _ = signed_in(served, Role.ADMIN, jobs=["sales_*"])
    page = client.get("/").text
    assert 'href="/jobs/sales_daily"' in page and 'href="/jobs/nightly"' not in page
    assert 'href="/audit"' not in page
    assert client.get("/jobs/nightly").status_code == 403


def test_run_now_from_the_job_page_needs_csrf_and_lands_on_the_run_page(served: Served) -> None:
    client, _ = signed_in(served, Role.OPERATOR, user="olga")
    page = client.get("/jobs/nightly")
    assert "Run nightly now" in page.text
    forged = client.post("/jobs/nightly/run", data={"csrf": "forged"})
    assert forged.status_code == 403 and "reload the page" in forged.text
    assert served.audit.query()[0].result == "denied:csrf"
    with served.daemon.control.bus.subscribe(["nightly"]) as events:
        ran = []
        for _ in range(2):
            answer = client.post("/jobs/nightly/run", data={"csrf": csrf_of(page.text), "target": "prod"})
            assert answer.status_code == 303 and answer.headers["location"].startswith("/runs/")
            ran.append(answer.headers["location"].rsplit("/", 1)[1])
            wait_finished(events, ran[-1])
    rows = [served.app.history.get(run_id) for run_id in ran]
    assert [(r["triggered_by"], r["target_override"]) for r in rows if r] == [("olga", "prod")] * 2
    # The API's CSRF rule for a session: the header, since no bearer token is involved.
    assert client.post("/api/jobs/nightly/runs").status_code == 403
    csrf = client.get("/api/whoami").json()["csrf"]
    assert client.post("/api/jobs/nightly/runs", headers={"X-CSRF-Token": csrf}).status_code == 202


def test_the_pause_toggle_on_the_job_page(served: Served) -> None:
    client, _ = signed_in(served, Role.OPERATOR, user="olga")
    page = client.get("/jobs/nightly")
    assert "Pause the schedule" in page.text
    assert client.post("/jobs/nightly/pause", data={"csrf": "forged", "paused": "1"}).status_code == 403
    answer = client.post("/jobs/nightly/pause", data={"csrf": csrf_of(page.text), "paused": "1"})
    assert answer.status_code == 303 and "nightly" not in served.daemon.next_fire
    paused = client.get("/jobs/nightly").text
    assert "Resume the schedule" in paused and "paused by olga" in paused
    assert '<span class="badge o-cancelled">paused</span>' in client.get("/").text
    client.post("/jobs/nightly/pause", data={"csrf": csrf_of(paused), "paused": "0"})
    assert "nightly" in served.daemon.next_fire and "Pause the schedule" in client.get("/jobs/nightly").text


def test_a_viewer_gets_no_run_now_form_and_its_post_is_refused(served: Served) -> None:
    client, _ = signed_in(served, Role.VIEWER)
    page = client.get("/jobs/nightly")
    assert "Run nightly now" not in page.text and "Pause the schedule" not in page.text
    answer = client.post("/jobs/nightly/run", data={"csrf": csrf_of(page.text)})
    assert answer.status_code == 403 and "needs the operator role" in answer.text


def test_the_job_page_filters_history_by_outcome_and_trigger(served: Served) -> None:
    ok = served.finished_run()
    served.runs.outcome = RunOutcome(RunStatus.FAILED)
    failed = served.finished_run()
    client, _ = signed_in(served, Role.VIEWER)
    both = client.get("/jobs/nightly").text
    assert ok in both and failed in both
    only_failed = client.get("/jobs/nightly?outcome=failed").text
    assert failed in only_failed and ok not in only_failed
    assert "No runs match the filters" in client.get("/jobs/nightly?trigger=schedule").text


def test_the_run_page_shows_facts_nodes_log_and_artifacts(served: Served) -> None:
    served.runs.outcome = RunOutcome(
        RunStatus.FAILED,
        reason="1 model failed",
        exit_code=1,
        git_sha="abc1234",
        external_id="arn:aws:ecs:eu-west-1:123456789012:task/dbt/0f1e",
        log_url="https://console.aws.amazon.com/cloudwatch/home#logsV2",
        image="dbt@sha256:feed",
        nodes=(
            NodeResult("model.shop.orders", "error", message="Division by <zero>", resource_type="model"),
            NodeResult(
                "model.shop.revenue", "skipped", resource_type="model", skipped_because=("model.shop.orders",)
            ),
            NodeResult("test.shop.not_null", "fail", failures=3, execution_time=0.5, resource_type="test"),
        ),
    )
    run_id = served.finished_run()
    client, _ = signed_in(served, Role.VIEWER)
    page = client.get(f"/runs/{run_id}").text
    for fact in ("abc1234", "task/dbt/0f1e", "dbt@sha256:feed", "cloudwatch", "setup", "1 model failed"):
        assert fact in page, fact
    nodes = page[page.index('<table id="nodes">') : page.index("</table>", page.index('<table id="nodes">'))]
    assert nodes.count("<tr>") == 4  # the header and three nodes
    assert "Division by &lt;zero&gt;" in nodes  # escaped
    assert "model.shop.orders</td>" in nodes  # skipped because of
    assert "hello from nightly\nbye\n" in page and 'data-running="0"' in page
    files = re.findall(rf'href="/runs/{run_id}/files/([^"]+)"', page)
    assert {"run.log", "report.json", "report.md"} <= set(files)
    download = client.get(f"/runs/{run_id}/files/run.log")
    assert download.status_code == 200 and download.text == "hello from nightly\nbye\n"
    assert download.headers["content-security-policy"] == "sandbox"
    for sneaky in ("../../history.db", "..%2F..%2Fhistory.db", "work/x", "nope.txt"):
        assert client.get(f"/runs/{run_id}/files/{sneaky}").status_code == 404, sneaky


def test_a_running_run_page_follows_the_log_and_offers_cancel_to_operators(served: Served) -> None:
    served.runs.hold.add("slow")
    client, _ = signed_in(served, Role.OPERATOR, user="olga")
    page = client.get("/jobs/slow")
    answer = client.post("/jobs/slow/run", data={"csrf": csrf_of(page.text)})
    run_id = answer.headers["location"].rsplit("/", 1)[1]
    assert served.runs.started.acquire(timeout=TIMEOUT)
    running = client.get(f"/runs/{run_id}").text
    assert 'data-running="1"' in running and "/static/log.js" in running and "following live" in running
    assert '<meta http-equiv="refresh"' in running  # the no-JS fallback
    offset = int(re.search(r'data-offset="(\d+)"', running)[1])  # type: ignore[index]
    assert offset == len("hello from slow\n")
    more = client.get(f"/api/runs/{run_id}/log?offset={offset}")
    assert more.headers["x-run-running"] == "1" and more.text == ""
    assert "Cancel this run" in running
    with served.daemon.control.bus.subscribe(["slow"]) as events:
        cancel = client.post(f"/runs/{run_id}/cancel", data={"csrf": csrf_of(running)})
        assert cancel.status_code == 303
        wait_finished(events, run_id)
    after = client.get(f"/api/runs/{run_id}/log?offset={offset}")
    assert after.text == "bye\n" and after.headers["x-run-running"] == "0"
    assert served.app.history.get(run_id)["outcome"] == "cancelled"  # type: ignore[index]
    assert "Cancel this run" not in client.get(f"/runs/{run_id}").text


def test_the_timeline_draws_a_bar_per_run_and_the_audit_page_lists_refusals(served: Served) -> None:
    run_ids = [served.finished_run("nightly"), served.finished_run("sales_daily")]
    client, _ = signed_in(served, Role.ADMIN, user="ada")
    timeline = client.get("/timeline").text
    for run_id in run_ids:
        assert f'<a href="/runs/{run_id}"><rect' in timeline
    assert "The same runs as a table (2)" in timeline
    served.client().get("/api/jobs")  # an anonymous refusal
    audit = client.get("/audit?denied=1").text
    assert "denied:unauthenticated" in audit and "ada" not in audit.split("<tbody>")[1]
    full = client.get("/audit").text
    assert "login" in full and "ada" in full


# ---------------------------------------------------------------------- the charts, pure


def test_lanes_put_overlapping_runs_of_a_job_one_below_the_other() -> None:
    t = datetime(2026, 3, 2, tzinfo=UTC)

    def row(job: str, run_id: str, start: int, end: int | None) -> dict[str, object]:
        finished = (t + timedelta(minutes=end)).isoformat() if end is not None else None
        return {
            "job": job,
            "run_id": run_id,
            "outcome": "succeeded",
            "started_at": (t + timedelta(minutes=start)).isoformat(),
            "finished_at": finished,
        }

    rows = [row("a", "1", 0, 10), row("a", "2", 5, 15), row("b", "3", 6, 7), row("a", "4", 12, None)]
    bars = charts.lanes(rows, now=t + timedelta(minutes=30))
    assert [(b.run_id, b.lane) for b in bars] == [("1", 0), ("2", 1), ("3", 0), ("4", 0)]
    assert bars[-1].end == t + timedelta(minutes=30)  # still running: up to now
    svg = charts.gantt(rows, ["a", "b"], t, t + timedelta(hours=1))
    assert svg.count("<rect") == 4 and svg.startswith("<svg")


def test_schedules_are_said_in_words() -> None:
    from zoneinfo import ZoneInfo

    from lib.triggers import CronTrigger
    from lib.web.words import cron_in_words, schedule_in_words

    assert (
        schedule_in_words(CronTrigger("30 2 * * 1-5", ZoneInfo("UTC"))) == "At 02:30, Monday through Friday"
    )
    assert cron_in_words("@daily") == "At 00:00"
    assert cron_in_words("not cron") == "not cron"


def test_the_sparkline_needs_two_runs_and_escapes_what_it_shows() -> None:
    one = [{"duration_s": 3.0, "outcome": "succeeded", "started_at": "x"}]
    assert charts.sparkline(one) == ""
    two = [{"duration_s": 6.0, "outcome": "fail<ed>", "started_at": "<y>"}, *one]  # newest first
    svg = charts.sparkline(two)
    assert svg.count("<circle") == 1 and 'class="o-fail&lt;ed&gt;"' in svg and "latest 6.0 s" in svg
    assert charts.duration_text(3725) == "1 h 2 min" and charts.duration_text(65) == "1 min 5 s"
