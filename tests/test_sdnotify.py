"""The sd_notify protocol against a real AF_UNIX datagram socket standing in for PID 1."""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from lib.sdnotify import SystemdNotifier, monotonic_usec
from tests.systemd_helpers import NotifySocket


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[NotifySocket]:
    sock = NotifySocket(tmp_path)
    yield sock
    sock.close()


def notifier_for(env: dict[str, str]) -> SystemdNotifier:
    return SystemdNotifier.from_environ(env, os.getpid())


def test_ready_status_and_stopping_reach_a_path_socket(listener: NotifySocket) -> None:
    notifier = notifier_for({"NOTIFY_SOCKET": listener.env})
    assert notifier.enabled
    assert notifier.ready("scheduling 3 job(s)") is True
    assert notifier.status("two\nlines") is True
    assert notifier.stopping() is True
    assert listener.drain() == [
        {"READY": "1", "STATUS": "scheduling 3 job(s)"},
        {"STATUS": "two lines"},  # one assignment per line: a newline would start another
        {"STOPPING": "1"},
    ]


def test_an_abstract_socket_is_named_with_an_at_sign() -> None:
    listener = NotifySocket(abstract=True)
    try:
        assert listener.env.startswith("@")
        notifier = notifier_for({"NOTIFY_SOCKET": listener.env})
        assert notifier.ready() and notifier.ready()
        assert listener.drain() == [{"READY": "1"}, {"READY": "1"}]
    finally:
        listener.close()


def test_reloading_carries_the_monotonic_clock_in_microseconds(listener: NotifySocket) -> None:
    notifier = notifier_for({"NOTIFY_SOCKET": listener.env})
    before = monotonic_usec()
    notifier.reloading("reloading jobs.yaml")
    after = monotonic_usec()
    [message] = listener.drain()
    assert message["RELOADING"] == "1" and message["STATUS"] == "reloading jobs.yaml"
    assert before <= int(message["MONOTONIC_USEC"]) <= after
    # CLOCK_MONOTONIC, the clock systemd reads: Python's time.monotonic() is the same one.
    assert abs(int(message["MONOTONIC_USEC"]) / 1e6 - time.monotonic()) < 5


def test_without_notify_socket_everything_is_a_no_op() -> None:
    notifier = notifier_for({"WATCHDOG_USEC": "400000"})
    assert not notifier.enabled
    assert notifier.watchdog_interval is None  # a watchdog nobody can be told about is off
    assert [notifier.ready("x"), notifier.watchdog(), notifier.reloading(), notifier.stopping()] == [
        False
    ] * 4


def test_the_variables_are_taken_out_of_the_environment_the_jobs_inherit(listener: NotifySocket) -> None:
    env = {
        "NOTIFY_SOCKET": listener.env,
        "WATCHDOG_USEC": "400000",
        "WATCHDOG_PID": str(os.getpid()),
        "X": "1",
    }
    notifier = notifier_for(env)
    assert env == {"X": "1"}
    assert notifier.enabled and notifier.watchdog_interval == pytest.approx(0.2)


@pytest.mark.parametrize(
    ("usec", "pid", "interval"),
    [
        ("400000", None, 0.2),  # half the timeout
        ("120000000", "self", 60.0),  # WatchdogSec=120s
        ("400000", "other", None),  # WATCHDOG_PID names another process (a parent's watchdog)
        ("0", None, None),
        ("-5", None, None),
        ("soon", None, None),
        ("400000", "x", None),
        ("", None, None),
    ],
)
def test_watchdog_interval_is_half_of_watchdog_usec_when_meant_for_us(
    listener: NotifySocket, usec: str, pid: str | None, interval: float | None
) -> None:
    env = {"NOTIFY_SOCKET": listener.env, "WATCHDOG_USEC": usec}
    if pid is not None:
        env["WATCHDOG_PID"] = {"self": str(os.getpid()), "other": str(os.getpid() + 1)}.get(pid, pid)
    notifier = notifier_for(env)
    assert notifier.watchdog_interval == (pytest.approx(interval) if interval is not None else None)
    assert notifier.watchdog() is (interval is not None)
    assert listener.drain() == ([{"WATCHDOG": "1"}] if interval is not None else [])


def test_a_socket_that_is_not_there_never_raises_and_warns_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    notifier = notifier_for({"NOTIFY_SOCKET": str(tmp_path / "gone.sock"), "WATCHDOG_USEC": "400000"})
    with caplog.at_level(logging.DEBUG, logger="dbt_scheduler"):
        assert notifier.ready() is False
        assert notifier.watchdog() is False
        assert notifier.stopping() is False
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "gone.sock" in warnings[0].getMessage()
    assert sum(r.levelno == logging.DEBUG for r in caplog.records) == 2


def test_a_receiver_that_stops_reading_costs_a_bounded_wait_not_a_hang(listener: NotifySocket) -> None:
    # A datagram socket's queue fills (net.unix.max_dgram_qlen): a blocking send would wait
    # for PID 1 for ever. The send times out and the ping is lost instead.
    notifier = SystemdNotifier(listener.env, 400000, timeout=0.05)
    sent = 0
    while sent < 100_000 and notifier.watchdog():
        sent += 1
    assert 0 < sent < 100_000  # the queue filled
    started = time.monotonic()
    assert notifier.watchdog() is False  # full: the send gives up after its timeout
    assert time.monotonic() - started < 1.0
    listener.drain()
    assert notifier.watchdog() is True  # read again: pings go through again


def test_unsupported_addresses_turn_notification_off(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="dbt_scheduler"):
        notifier = notifier_for({"NOTIFY_SOCKET": "vsock:2:1234"})
    assert not notifier.enabled and "vsock:2:1234" in caplog.text
    assert not notifier_for({"NOTIFY_SOCKET": "@"}).enabled


def test_a_socket_of_another_type_is_a_failed_send_not_a_crash(listener: NotifySocket) -> None:
    path = listener.env
    listener.sock.close()
    os.unlink(path)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as stream:
        stream.bind(path)  # a stream socket where a datagram one should be
        assert notifier_for({"NOTIFY_SOCKET": path}).ready() is False
