"""Delivery against a real local HTTP server: retries on 429/5xx honouring Retry-After,
no retry on other 4xx, a timeout on a server that never answers. Waits go through a
FakeClock, so nothing sleeps on the wall clock."""

from __future__ import annotations

from datetime import UTC, datetime

from lib.notify.delivery import Attempt, retry_after_seconds
from tests.fakes import FakeClock
from tests.notify_helpers import SECRET, HttpStandIn, deliverer, silent_port, stand_in

__all__ = ["silent_port", "stand_in"]  # pytest fixtures


def test_delivered_on_2xx_twice_in_a_row(stand_in: HttpStandIn) -> None:
    send = deliverer()
    for _ in range(2):
        result = send.post("hook", "failed", stand_in.url + "/x", b"{}", {"Content-Type": "application/json"})
        assert (result.status, result.attempts, result.error) == ("delivered", 1, None)
    assert [r.path for r in stand_in.requests] == ["/x", "/x"]


def test_429_waits_for_retry_after_then_delivers(stand_in: HttpStandIn) -> None:
    clock = FakeClock(datetime(2026, 12, 2, tzinfo=UTC))
    stand_in.script = [(429, {"Retry-After": "7"}, b"slow down"), (200, {}, b"ok")]
    result = deliverer(clock).post("slack", "failed", stand_in.url, b"{}")
    assert (result.status, result.attempts) == ("delivered", 2)
    assert clock.waits == [7.0]
    assert len(stand_in.requests) == 2


def test_5xx_is_retried_with_backoff_until_attempts_run_out(stand_in: HttpStandIn) -> None:
    clock = FakeClock(datetime(2026, 12, 2, tzinfo=UTC))
    stand_in.script = [(503, {}, b"down")]
    result = deliverer(clock).post("teams", "failed", stand_in.url, b"{}")
    assert (result.status, result.attempts) == ("failed", 4)
    assert clock.waits == [1.0, 2.0, 4.0]
    assert result.error == "teams: HTTP 503: down"
    assert len(stand_in.requests) == 4


def test_other_4xx_is_not_retried_and_the_error_is_masked(stand_in: HttpStandIn) -> None:
    clock = FakeClock(datetime(2026, 12, 2, tzinfo=UTC))
    stand_in.script = [(404, {}, f"no such hook /{SECRET}\nline two".encode())]
    for _ in range(2):
        result = deliverer(clock).post("hook", "failed", stand_in.url, b"{}")
        assert (result.status, result.attempts) == ("failed", 1)
        assert SECRET not in (result.error or "") and "\n" not in (result.error or "")
        assert (result.error or "").startswith("hook: HTTP 404: no such hook")
    assert clock.waits == []


def test_a_retry_after_beyond_the_limit_fails_instead_of_waiting(stand_in: HttpStandIn) -> None:
    clock = FakeClock(datetime(2026, 12, 2, tzinfo=UTC))
    stand_in.script = [(429, {"Retry-After": "3600"}, b"")]
    result = deliverer(clock).post("slack", "failed", stand_in.url, b"{}")
    assert (result.status, result.attempts) == ("failed", 1)
    assert "Retry-After 3600 s is over the 120 s limit" in (result.error or "")
    assert clock.waits == []


def test_a_server_that_never_answers_times_out(silent_port: str) -> None:
    clock = FakeClock(datetime(2026, 12, 2, tzinfo=UTC))
    result = deliverer(clock, timeout_s=0.2, max_attempts=2).post("hook", "failed", silent_port, b"{}")
    assert (result.status, result.attempts) == ("failed", 2)
    assert result.error == "hook: no answer within 0.2 s"
    assert clock.waits == [1.0]


def test_a_refused_connection_is_retried_and_reported_without_the_url_token() -> None:
    clock = FakeClock(datetime(2026, 12, 2, tzinfo=UTC))
    url = "http://127.0.0.1:9/services/T000/B000/XXXXtokenXXXX"
    for _ in range(2):
        result = deliverer(clock, max_attempts=2).post("slack", "failed", url, b"{}")
        assert (result.status, result.attempts) == ("failed", 2)
        assert result.error and result.error.startswith("slack: ") and "refused" in result.error
        assert "XXXXtokenXXXX" not in result.error


def test_retry_after_as_an_http_date() -> None:
    clock = FakeClock(datetime(2026, 12, 2, 10, 0, 0, tzinfo=UTC))
    assert retry_after_seconds("Wed, 02 Dec 2026 10:00:30 GMT", clock) == 30.0
    assert retry_after_seconds("12", clock) == 12.0
    assert retry_after_seconds("soon", clock) is None


def test_a_channel_bug_becomes_a_failed_result() -> None:
    def broken() -> Attempt:
        raise KeyError("oops")

    result = deliverer(max_attempts=3).run("x", "failed", broken)
    assert (result.status, result.attempts, result.error) == ("failed", 1, "x: KeyError: 'oops'")


def test_shutdown_ends_a_backoff_wait(stand_in: HttpStandIn) -> None:
    stand_in.script = [(503, {}, b"")]
    send = deliverer()
    send.stop.set()
    result = send.post("hook", "failed", stand_in.url, b"{}")
    assert (result.status, result.attempts) == ("failed", 1)
    assert "gave up at shutdown" in (result.error or "")


def test_the_webhook_url_path_is_kept_out_of_errors(stand_in: HttpStandIn) -> None:
    # A Slack/Teams webhook URL is a credential: a server echoing it must not put it in history.
    path = "/services/T000/B000/XXXXtokenXXXX"
    stand_in.script = [(404, {}, f"no route for {path}".encode())]
    for _ in range(2):
        result = deliverer().post("slack", "failed", stand_in.url + path, b"{}")
        assert result.error == "slack: HTTP 404: no route for /…"


def test_importing_the_channel_layer_loads_no_http_or_aws_library() -> None:
    # bench/idle.py measures an idle daemon's RSS: urllib3 and botocore load on first send only.
    import subprocess
    import sys
    from pathlib import Path

    code = (
        "import sys\n"
        "import lib.notify.delivery, lib.notify.hygiene, lib.notify.message\n"
        "from lib.notify.channels import email, healthchecks, pagerduty, slack, sns, teams, webhook\n"
        "print(sorted(m for m in ('urllib3', 'botocore', 'boto3') if m in sys.modules))\n"
    )
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
