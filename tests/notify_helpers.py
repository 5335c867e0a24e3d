"""Local stand-ins for the notification services, and Alerts built from real artifacts.

`HttpStandIn` is a real HTTP server on 127.0.0.1 (stdlib `http.server`, one thread)
that records each request and answers from a script of responses, so a test sees what
Slack, Teams, PagerDuty, a webhook receiver or healthchecks would receive.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from lib.dbt_results import load_node_results
from lib.models import RunOutcome, RunRecord, RunStatus, TriggerKind
from lib.notify.delivery import Deliverer
from lib.notify.message import Alert, build_alert
from lib.report.files import record_to_dict
from lib.secrets import SecretMasker
from tests.fakes import FakeClock

FAILING = Path(__file__).parent / "data" / "artifacts" / "failing"
SECRET = "hunter2-s3cr3t-value"


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class HttpStandIn:
    url: str
    requests: list[Received] = field(default_factory=list)
    # (status, headers, body) per request in order; the last one repeats.
    script: list[tuple[int, dict[str, str], bytes]] = field(default_factory=lambda: [(200, {}, b"ok")])
    # Server-side checks (the service's own limits): an error string answers 400.
    check: Callable[[Received], str | None] | None = None


@pytest.fixture
def stand_in() -> Iterator[HttpStandIn]:
    state: HttpStandIn

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            received = Received(self.command, self.path, dict(self.headers.items()), self.rfile.read(length))
            state.requests.append(received)
            problem = state.check(received) if state.check else None
            if problem:
                status, headers, body = 400, {}, problem.encode()
            else:
                index = min(len(state.requests) - 1, len(state.script) - 1)
                status, headers, body = state.script[index]
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_POST = do_GET = _answer

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state = HttpStandIn(url=f"http://127.0.0.1:{server.server_address[1]}")
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def silent_port() -> Iterator[str]:
    """A URL whose server accepts connections and never answers (a blackholed endpoint)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/hook"
    finally:
        sock.close()


def failing_report(run_id: str = "nightly-20261202T020000Z", **changes: Any) -> dict[str, Any]:
    """report.json data of the fixture project's failing run (a failing not_null test
    upstream of orders/customers, an erroring model, a failing unit test)."""
    nodes = load_node_results(FAILING)
    assert nodes
    outcome = RunOutcome(
        status=RunStatus.FAILED,
        reason=f"dbt build failed: 1 error, 2 failures (password {SECRET} in a message)",
        exit_code=1,
        nodes=nodes,
        git_sha="0123456789abcdef0123",
        log_url="https://eu-west-1.console.aws.amazon.com/cloudwatch/home#logsV2:x",
    )
    record = RunRecord(
        job="nightly",
        run_id=run_id,
        trigger=TriggerKind.MANUAL,
        outcome=outcome,
        started_at=datetime(2026, 12, 2, 2, 0, tzinfo=UTC),
        finished_at=datetime(2026, 12, 2, 2, 3, 7, tzinfo=UTC),
        triggered_by="ada",
        target_override="prod",
    )
    data = record_to_dict(record)
    data.update(changes)
    return data


def failing_manifest() -> dict[str, Any]:
    """The fixture manifest with owners added the three ways dbt records them."""
    manifest = json.loads((FAILING / "manifest.json").read_text())
    test_id = next(
        k for k in manifest["nodes"] if k.startswith("test.fixture_shop.not_null_stg_orders_order_id")
    )
    manifest["nodes"][test_id]["meta"] = {"owner": "orders-team@example.com"}
    manifest["nodes"]["model.fixture_shop.customer_names"].setdefault("config", {})["meta"] = {
        "owner": ["grace", "ada"]
    }
    manifest["nodes"]["model.fixture_shop.customer_names"]["group"] = "crm"
    manifest["groups"] = {"group.fixture_shop.crm": {"name": "crm", "owner": {"name": "CRM squad"}}}
    return manifest


def failing_alert(event: str = "failed", **context: Any) -> Alert:
    context.setdefault("consecutive_failures", 2)
    return build_alert(
        event,
        failing_report(),
        mask=SecretMasker([SECRET]),
        manifest=failing_manifest(),
        base_url="https://dbt.example.com",
        **context,
    )


def deliverer(clock: FakeClock | None = None, **kwargs: Any) -> Deliverer:
    return Deliverer(
        mask=SecretMasker([SECRET]), clock=clock or FakeClock(datetime(2026, 12, 2, tzinfo=UTC)), **kwargs
    )
