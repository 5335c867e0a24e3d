"""Email against a real SMTP server (aiosmtpd on 127.0.0.1), plain and with STARTTLS
and login over a self-signed certificate."""

from __future__ import annotations

import datetime as dt
import email
import ipaddress
import socket
import ssl
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from lib.notify.channels import email as email_channel
from lib.notify.channels.email import SmtpSettings
from tests.notify_helpers import SECRET, deliverer, failing_alert

aiosmtpd_controller = pytest.importorskip("aiosmtpd.controller")
from aiosmtpd.smtp import AuthResult, LoginPassword  # noqa: E402


class Inbox:
    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], bytes]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content))
        return "250 OK"


def _authenticate(server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
    ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (
        b"dbt",
        b"pw-1234",
    )
    # handled=False: aiosmtpd then answers 535 itself (handled=True would leave the reply to us).
    return AuthResult(success=ok, handled=ok)


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 made with the `cryptography` package (skips without it)."""
    pytest.importorskip("cryptography")
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


def _free_port() -> int:
    # aiosmtpd's Controller connects to its own port once started, so port 0 will not do.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def plain_smtp() -> Iterator[tuple[Inbox, int]]:
    inbox, port = Inbox(), _free_port()
    controller = aiosmtpd_controller.Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()


@pytest.fixture
def tls_smtp(tmp_path: Path) -> Iterator[tuple[Inbox, int, ssl.SSLContext]]:
    cert, key = self_signed(tmp_path)
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(cert, key)
    inbox, port = Inbox(), _free_port()
    controller = aiosmtpd_controller.Controller(
        inbox,
        hostname="127.0.0.1",
        port=port,
        tls_context=server_context,
        require_starttls=True,
        authenticator=_authenticate,
        auth_require_tls=True,
    )
    controller.start()
    try:
        yield inbox, port, ssl.create_default_context(cafile=str(cert))
    finally:
        controller.stop()


def _parsed(raw: bytes) -> EmailMessage:
    return email.message_from_bytes(raw, _class=EmailMessage, policy=email.policy.default)  # type: ignore[arg-type]


def test_email_without_starttls_is_plain_text_with_an_html_alternative(plain_smtp: tuple[Inbox, int]) -> None:
    inbox, port = plain_smtp
    smtp = SmtpSettings(
        host="127.0.0.1", port=port, sender="dbt@example.com", to=("a@x.org", "b@x.org"), starttls=False
    )
    for _ in range(2):
        assert email_channel.send(failing_alert(), smtp, deliverer()).status == "delivered"
    assert len(inbox.messages) == 2
    sender, rcpts, raw = inbox.messages[-1]
    assert (sender, rcpts) == ("dbt@example.com", ["a@x.org", "b@x.org"])
    message = _parsed(raw)
    assert message["Subject"] == "❌ nightly failed"
    plain = message.get_body(("plain",)).get_content()
    html = message.get_body(("html",)).get_content()
    for text in (plain, html):
        assert "not_null_stg_orders_order_id" in text and "customer_name_lengths" in text
        assert SECRET not in text
    assert "<table>" in html and "https://dbt.example.com/runs/" in html


def test_email_with_starttls_and_login(tls_smtp: tuple[Inbox, int, ssl.SSLContext]) -> None:
    inbox, port, client_context = tls_smtp
    smtp = SmtpSettings(
        host="127.0.0.1",
        port=port,
        sender="dbt@example.com",
        to=("data@example.com",),
        starttls=True,
        username="dbt",
        password="pw-1234",
        ssl_context=client_context,
    )
    for _ in range(2):
        assert email_channel.send(failing_alert(), smtp, deliverer()).status == "delivered"
    assert len(inbox.messages) == 2
    wrong = SmtpSettings(**{**smtp.__dict__, "password": "nope"})
    result = email_channel.send(failing_alert(), wrong, deliverer())
    assert (result.status, result.attempts) == ("failed", 1)
    assert result.error and result.error.startswith("email: SMTP 535")
    assert "pw-1234" not in result.error


def test_starttls_against_a_server_without_it_fails_with_what_to_do(plain_smtp: tuple[Inbox, int]) -> None:
    _inbox, port = plain_smtp
    smtp = SmtpSettings(host="127.0.0.1", port=port, sender="d@x.org", to=("a@x.org",), starttls=True)
    result = email_channel.send(failing_alert(), smtp, deliverer())
    assert result.status == "failed" and "set starttls: false" in (result.error or "")


def test_login_without_starttls_is_refused_before_connecting() -> None:
    smtp = SmtpSettings(
        host="127.0.0.1", port=9, sender="d@x.org", to=("a@x.org",), starttls=False, username="u"
    )
    result = email_channel.send(failing_alert(), smtp, deliverer())
    assert result.status == "failed" and "login needs starttls: true" in (result.error or "")
