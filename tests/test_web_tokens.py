"""API tokens against a real history.db: create, verify, use, expire, revoke; only a
hash is ever stored."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from lib.history import History
from lib.web.roles import Role
from lib.web.tokens import PREFIX, TokenStore, parse_expiry
from tests.fakes import FakeClock

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
DAY = 86400.0


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


@pytest.fixture
def store(tmp_path: Path, clock: FakeClock) -> TokenStore:
    return TokenStore(History(tmp_path / "history.db"), clock)


def dump(store: TokenStore) -> str:
    with store.history.transaction() as conn:
        return "\n".join(conn.iterdump())


def test_the_lifecycle_create_verify_use_expire(store: TokenStore, clock: FakeClock) -> None:
    token, info = store.create("alice", Role.OPERATOR, expires_in=90 * DAY)
    assert token.startswith(PREFIX) and len(token) > 50
    assert (info.user, info.role, info.jobs, info.expires_at) == (
        "alice",
        Role.OPERATOR,
        ("*",),
        T0 + timedelta(days=90),
    )
    assert info.last_used_at is None

    clock.advance(3600)
    checked = store.verify(token)
    assert checked.ok and checked.token is not None
    assert (checked.token.id, checked.token.user, checked.token.role) == (info.id, "alice", Role.OPERATOR)
    assert store.get(info.id).last_used_at == T0 + timedelta(hours=1)  # type: ignore[union-attr]

    # Used again within the minute: not written again; after it: written.
    clock.advance(30)
    assert store.verify(token).ok
    assert store.get(info.id).last_used_at == T0 + timedelta(hours=1)  # type: ignore[union-attr]
    clock.advance(31)
    assert store.verify(token).ok
    assert store.get(info.id).last_used_at == T0 + timedelta(hours=1, seconds=61)  # type: ignore[union-attr]

    clock.set(T0 + timedelta(days=90) - timedelta(seconds=1))
    assert store.verify(token).ok
    clock.advance(1)
    expired = store.verify(token)
    assert (expired.ok, expired.reason) == (False, "expired")
    assert expired.token is not None and expired.token.state(clock.now()) == "expired"


def test_revoked_is_refused_with_its_own_reason_and_stays_revoked(
    store: TokenStore, clock: FakeClock
) -> None:
    token, info = store.create("bob", Role.ADMIN)
    assert store.verify(token).ok
    clock.advance(60)
    revoked = store.revoke(info.id)
    assert revoked is not None and revoked.revoked_at == T0 + timedelta(seconds=60)
    assert store.verify(token).reason == "revoked"
    assert store.check_id(info.id).reason == "revoked"  # a browser session signed in with it ends too
    clock.advance(60)
    assert store.revoke(info.id).revoked_at == T0 + timedelta(seconds=60)  # type: ignore[union-attr]
    assert store.revoke("00000000") is None


def test_a_wrong_secret_an_unknown_id_and_garbage_are_refused(store: TokenStore) -> None:
    token, _ = store.create("carol", Role.VIEWER)
    body = token[:-1] + ("A" if token[-1] != "A" else "B")
    assert store.verify(body).reason == "unknown"  # the id exists, the secret does not match
    other_id = PREFIX + "ffffffff" + token[len(PREFIX) + 8 :]
    assert store.verify(other_id).reason == "unknown"
    for garbage in ("", "dbts_", "Bearer " + token, token + "x", "x" * 5000, "dbts_zzzzzzzz_" + "a" * 43):
        assert store.verify(garbage).reason == "malformed", garbage
    assert store.verify(token).ok


def test_history_holds_the_hash_and_never_the_token(store: TokenStore) -> None:
    tokens = [store.create(user, Role.OPERATOR)[0] for user in ("alice", "bob")]
    for token in tokens:
        assert store.verify(token).ok
    text = dump(store)
    for token in tokens:
        secret = token[len(PREFIX) + 9 :]  # dbts_<8 hex>_<secret>
        assert token not in text and secret not in text
        assert hashlib.sha256(token.encode()).hexdigest() in text
    # And the files themselves (WAL included), not only what SQL shows.
    for path in store.history.path.parent.iterdir():
        raw = path.read_bytes()
        for token in tokens:
            assert token[len(PREFIX) + 9 :].encode() not in raw, path


def test_list_shows_every_token_newest_first_without_its_hash(store: TokenStore, clock: FakeClock) -> None:
    _, first = store.create("alice", Role.VIEWER, jobs=["sales_*", "finance"], expires_in=DAY)
    clock.advance(10)
    _, second = store.create("bob", Role.ADMIN)
    store.revoke(second.id)
    listed = store.list()
    assert [item.id for item in listed] == [second.id, first.id]
    clock.advance(DAY)
    rows = [item.as_json(clock.now()) for item in listed]
    assert [row["state"] for row in rows] == ["revoked", "expired"]
    assert rows[1]["jobs"] == ["sales_*", "finance"]
    assert all("hash" not in row and not any(PREFIX in str(v) for v in row.values()) for row in rows)
    assert set(rows[0]) == {
        "id", "user", "role", "jobs", "state", "created_at", "expires_at", "last_used_at", "revoked_at",
    }  # fmt: skip


def test_two_tokens_of_one_user_are_two_tokens(store: TokenStore) -> None:
    first, a = store.create("alice", Role.OPERATOR)
    second, b = store.create("alice", Role.OPERATOR)
    assert first != second and a.id != b.id
    store.revoke(a.id)
    assert store.verify(first).reason == "revoked" and store.verify(second).ok


@pytest.mark.parametrize("user", ["", "   ", "a\nb", "x" * 65])
def test_a_bad_user_name_is_refused(store: TokenStore, user: str) -> None:
    with pytest.raises(ValueError, match="--user"):
        store.create(user, Role.VIEWER)


def test_a_job_scope_of_star_is_every_job(store: TokenStore) -> None:
    assert store.create("a", Role.VIEWER, jobs=["sales_*", "*"])[1].jobs == ("*",)
    assert store.create("a", Role.VIEWER, jobs=[])[1].jobs == ("*",)
    with pytest.raises(ValueError, match="--jobs"):
        store.create("a", Role.VIEWER, jobs=["bad\tglob"])


def test_expiry_is_a_duration_or_never() -> None:
    assert parse_expiry("90d") == 90 * DAY
    assert parse_expiry("12h") == 12 * 3600
    assert parse_expiry("never") is None
    with pytest.raises(ValueError, match=r"--expires: .* or `never`"):
        parse_expiry("forever")
    with pytest.raises(ValueError, match="366 days"):
        parse_expiry("400d")
