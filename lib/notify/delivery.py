"""Posting an alert: a 10 s timeout, retries with backoff on 429/5xx honouring
`Retry-After`, no retry on any other 4xx, and a `DeliveryResult` that says what happened.

The clock (for waits and HTTP-date Retry-After values) and the HTTP pool are injected,
so unit tests never sleep on the wall clock. urllib3 is imported only when a default
pool is built: a daemon without notifications never loads it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlsplit

from lib.clock import Clock, SystemClock

TIMEOUT_S = 10.0
MAX_ATTEMPTS = 4
BACKOFF_S = 1.0  # doubled per attempt: 1, 2, 4 s
MAX_WAIT_S = 120.0  # a Retry-After longer than this is a failure, not a wait
RETRYABLE = frozenset({429, 500, 502, 503, 504})


@dataclass(frozen=True)
class DeliveryResult:
    """One delivery: `status` is `delivered` or `failed`; `error` is one masked line."""

    channel: str
    event: str
    status: str
    attempts: int
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == "delivered"


@dataclass(frozen=True)
class Attempt:
    """What one try came to: success, or an error that may be retried after a wait."""

    ok: bool
    error: str | None = None
    retry: bool = False
    retry_after_s: float | None = None


def default_pool() -> Any:
    import urllib3

    # One pool for every channel; urllib3's own retries are off: `Deliverer` retries.
    # Each channel sends on its own thread (lib/notify/dispatcher.py): channels on one
    # host (two Slack webhooks) each keep a connection instead of discarding one.
    return urllib3.PoolManager(retries=False, maxsize=8)


def retry_after_seconds(value: str | None, clock: Clock) -> float | None:
    """`Retry-After` as seconds from now: delta-seconds or an HTTP-date (RFC 9110)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        from email.utils import parsedate_to_datetime  # only a 429/503 with a date needs it

        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - clock.now()).total_seconds())


def redact_url(text: str, url: str) -> str:
    """`text` without `url`'s path and query: a Slack or Teams webhook URL is itself the
    credential (its path holds the token), and urllib3's errors quote the path."""
    parts = urlsplit(url)
    secret = parts.path + (f"?{parts.query}" if parts.query else "")
    if len(secret) <= 1:
        return text
    text = text.replace(url, f"{parts.scheme}://{parts.netloc}/…")
    return text.replace(secret, "/…")


def one_line(text: str, limit: int = 300) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


class Deliverer:
    """Sends with retries. `pool` needs urllib3's `request(method, url, body=, headers=,
    timeout=)`; `clock.wait` does the backoff waits (a FakeClock advances instead);
    `mask` cleans every error line (an URL with a token in it, a server's echo)."""

    def __init__(
        self,
        *,
        mask: Callable[[str], str],
        clock: Clock | None = None,
        pool: Any = None,
        timeout_s: float = TIMEOUT_S,
        max_attempts: int = MAX_ATTEMPTS,
        backoff_s: float = BACKOFF_S,
        max_wait_s: float = MAX_WAIT_S,
        stop: threading.Event | None = None,
    ) -> None:
        self.mask = mask
        self.clock = clock or SystemClock()
        self._pool = pool
        self.timeout_s = timeout_s
        self.max_attempts = max_attempts
        self.backoff_s = backoff_s
        self.max_wait_s = max_wait_s
        # Set at shutdown: a backoff wait ends at once and the delivery gives up.
        self.stop = stop or threading.Event()
        self._lock = threading.Lock()

    @property
    def pool(self) -> Any:
        with self._lock:
            if self._pool is None:
                self._pool = default_pool()
            return self._pool

    def run(self, channel: str, event: str, attempt: Callable[[], Attempt]) -> DeliveryResult:
        """Calls `attempt` until it succeeds, fails for good, or attempts run out."""
        last = Attempt(ok=False, error="not attempted")
        for number in range(1, self.max_attempts + 1):
            try:
                last = attempt()
            except Exception as exc:  # a channel bug must not escape into the daemon
                last = Attempt(ok=False, error=f"{type(exc).__name__}: {exc}")
            if last.ok:
                return DeliveryResult(channel, event, "delivered", number)
            if not last.retry or number == self.max_attempts:
                return self._failed(channel, event, number, last.error)
            wait = self.backoff_s * 2 ** (number - 1)
            if last.retry_after_s is not None:
                if last.retry_after_s > self.max_wait_s:
                    limit = f"{self.max_wait_s:.0f} s"
                    error = f"{last.error}; Retry-After {last.retry_after_s:.0f} s is over the {limit} limit"
                    return self._failed(channel, event, number, error)
                wait = max(wait, last.retry_after_s)
            if self.clock.wait(min(wait, self.max_wait_s), self.stop):
                return self._failed(channel, event, number, f"{last.error}; gave up at shutdown")
        return self._failed(channel, event, self.max_attempts, last.error)

    def _failed(self, channel: str, event: str, attempts: int, error: str | None) -> DeliveryResult:
        text = one_line(self.mask(f"{channel}: {error or 'failed'}"))
        return DeliveryResult(channel, event, "failed", attempts, text)

    def post(
        self,
        channel: str,
        event: str,
        url: str,
        body: bytes | None,
        headers: Mapping[str, str] | None = None,
        *,
        method: str = "POST",
        headers_for_attempt: Callable[[], Mapping[str, str]] | None = None,
    ) -> DeliveryResult:
        """POSTs `body` to `url`: 2xx is delivered; 429 and 5xx are retried (after
        Retry-After when the server sends one); other statuses and bad URLs fail at once;
        timeouts and connection errors are retried. `headers_for_attempt` adds headers
        made fresh per attempt (a webhook signature's timestamp)."""

        def attempt() -> Attempt:
            import urllib3

            sent = dict(headers or {})
            if headers_for_attempt is not None:
                sent.update(headers_for_attempt())
            try:
                timeout = urllib3.Timeout(total=self.timeout_s)
                response = self.pool.request(
                    method, url, body=body, headers=sent, timeout=timeout, redirect=False
                )
            except urllib3.exceptions.LocationValueError as exc:
                return Attempt(ok=False, error=f"bad URL: {exc}")
            except urllib3.exceptions.NewConnectionError as exc:
                # Caught before TimeoutError: urllib3 2 makes it a ConnectTimeoutError subclass.
                reason = str(exc).rpartition(": ")[2] or type(exc).__name__
                return Attempt(ok=False, error=f"cannot connect: {reason}", retry=True)
            except urllib3.exceptions.TimeoutError:
                return Attempt(ok=False, error=f"no answer within {self.timeout_s:g} s", retry=True)
            except urllib3.exceptions.HTTPError as exc:
                return Attempt(ok=False, error=f"{type(exc).__name__}: {exc}", retry=True)
            status = response.status
            if 200 <= status < 300:
                return Attempt(ok=True)
            text = response.data[:200].decode("utf-8", "replace") if response.data else ""
            error = f"HTTP {status}" + (f": {text}" if text else "")
            if status in RETRYABLE:
                after = retry_after_seconds(response.headers.get("Retry-After"), self.clock)
                return Attempt(ok=False, error=error, retry=True, retry_after_s=after)
            return Attempt(ok=False, error=error)

        result = self.run(channel, event, attempt)
        return replace(result, error=redact_url(result.error, url)) if result.error else result
