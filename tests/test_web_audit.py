"""The audit log against a real history.db: recorded, queried with filters, masked."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from lib.history import History
from lib.secrets import SecretMasker
from lib.web.audit import AuditLog
from lib.web.identity import Identity
from lib.web.roles import Action, Role, authorize
from tests.fakes import FakeClock

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


@pytest.fixture
def audit(tmp_path: Path, clock: FakeClock) -> AuditLog:
    return AuditLog(History(tmp_path / "history.db"), clock, mask=SecretMasker(["hunter2-secret"]))


def test_a_mutation_and_a_refusal_are_recorded_with_every_field(audit: AuditLog, clock: FakeClock) -> None:
    operator = Identity("alice", "proxy", Role.OPERATOR)
    viewer = Identity("bob", "token", Role.VIEWER, token_id="a1b2c3d4")
    allowed = authorize(operator, Action.RUN, job="nightly")
    audit.record(
        user=operator.name,
        source=operator.source,
        action=Action.RUN,
        result=allowed.audit_result,
        peer="127.0.0.1",
        job="nightly",
        run_id="20260301T090000Z-abc123",
    )
    clock.advance(5)
    refused = authorize(viewer, Action.CANCEL, job="nightly")
    audit.record(
        user=viewer.name,
        source=viewer.source,
        action=Action.CANCEL,
        result=refused.audit_result,
        peer="10.0.0.7",
        job="nightly",
        run_id="20260301T090000Z-abc123",
        detail=refused.detail,
    )
    newest, oldest = audit.query()
    assert newest.as_json() == {
        "at": "2026-03-01T09:00:05+00:00",
        "user": "bob",
        "source": "token",
        "peer": "10.0.0.7",
        "action": "cancel",
        "job": "nightly",
        "run_id": "20260301T090000Z-abc123",
        "result": "denied:role",
        "detail": "cancel needs the operator role; bob is viewer",
    }
    assert (oldest.user, oldest.source, oldest.action, oldest.result, oldest.at) == (
        "alice",
        "proxy",
        "run",
        "allowed",
        T0,
    )


def test_queries_filter_by_user_job_action_refusal_and_time(audit: AuditLog, clock: FakeClock) -> None:
    for user, job, action, result in [
        ("alice", "nightly", "run", "allowed"),
        ("bob", "hourly", "run", "denied:role"),
        ("alice", "hourly", "cancel", "allowed"),
        (None, None, "view", "denied:unauthenticated"),
        ("carol", None, "token_create", "allowed"),
    ]:
        audit.record(
            user=user, source="anonymous" if user is None else "token", action=action, result=result, job=job
        )
        clock.advance(60)
    assert [e.action for e in audit.query(user="alice")] == ["cancel", "run"]
    assert [e.user for e in audit.query(job="hourly")] == ["alice", "bob"]
    assert [e.user for e in audit.query(action="run")] == ["bob", "alice"]
    assert [e.result for e in audit.query(denied=True)] == ["denied:unauthenticated", "denied:role"]
    assert [e.action for e in audit.query(since=T0 + timedelta(minutes=3))] == ["token_create", "view"]
    assert len(audit.query(limit=2)) == 2
    assert audit.query(user="nobody") == []
    assert audit.prune(T0 + timedelta(minutes=2)) == 2
    assert len(audit.query()) == 3


def test_free_text_is_masked_and_tokens_are_cut_to_their_id(audit: AuditLog) -> None:
    token = "dbts_a1b2c3d4_" + "Z" * 43
    audit.record(
        user="mallory hunter2-secret",
        source="anonymous",
        action="view",
        result="denied:unauthenticated",
        detail=f"sent {token} and https://user:hunter2-secret@example.com",
    )
    [entry] = audit.query()
    assert entry.user == "mallory *****"
    assert entry.detail == "sent dbts_a1b2c3d4_***** and https://*****@example.com"
    with audit.history.transaction() as conn:
        dumped = "\n".join(conn.iterdump())
    assert "Z" * 43 not in dumped and "hunter2-secret" not in dumped


@pytest.mark.parametrize(
    "field,value",
    [("source", "web"), ("action", "Run now"), ("result", "denied"), ("result", "ok")],
)
def test_a_malformed_entry_is_a_programming_error(audit: AuditLog, field: str, value: str) -> None:
    entry = {"user": "a", "source": "cli", "action": "run", "result": "allowed", field: value}
    with pytest.raises(ValueError):
        audit.record(**entry)
    assert audit.query() == []
