"""Email through SMTP (smtplib): a plain-text body with an HTML alternative.

STARTTLS and login are optional; login without STARTTLS is refused here, since it would
send the password in clear text. SMTP's 4xx replies are transient (RFC 5321 §4.2.1) and
retried; 5xx replies are not.
"""

from __future__ import annotations

import html
import smtplib
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

from lib.notify.delivery import Attempt, Deliverer, DeliveryResult
from lib.notify.message import Alert, facts, node_line, plain_text, truncate

SUBJECT = 200


@dataclass(frozen=True)
class SmtpSettings:
    host: str
    port: int = 587
    sender: str = ""
    to: tuple[str, ...] = ()
    starttls: bool = True
    username: str | None = None
    password: str | None = None
    ssl_context: ssl.SSLContext | None = None  # None: the system's trust store


def _html(alert: Alert) -> str:
    esc = html.escape
    rows = "".join(
        f"<tr><th align='left'>{esc(label)}</th><td>{esc(value)}</td></tr>" for label, value in facts(alert)
    )
    parts = [f"<h2>{esc(alert.title)}</h2>"]
    if alert.reason:
        parts.append(f"<p>{esc(alert.reason)}</p>")
    parts.append(f"<table>{rows}</table>")
    if alert.nodes:
        items = []
        for node in alert.nodes:
            item = f"<li><b>{esc(node_line(node))}</b>"
            if node.owners:
                item += f"<br>owner: {esc(', '.join(node.owners))}"
            if node.message:
                item += f"<pre>{esc(node.message)}</pre>"
            items.append(item + "</li>")
        parts.append(f"<ul>{''.join(items)}</ul>")
    for label, url in (("Log", alert.log_url), ("Run page", alert.run_url)):
        if url and url.startswith(("http://", "https://")):
            parts.append(f"<p><a href='{esc(url, quote=True)}'>{label}</a></p>")
        elif url:
            parts.append(f"<p>{label}: <code>{esc(url)}</code></p>")
    return "<html><body>" + "".join(parts) + "</body></html>"


def render(alert: Alert, sender: str, to: Sequence[str]) -> EmailMessage:
    """The message: subject is the alert's title (one line), body text/plain and
    text/html alternatives with the same content."""
    message = EmailMessage()
    message["Subject"] = truncate(" ".join(alert.title.split()), SUBJECT)
    message["From"] = sender
    message["To"] = ", ".join(to)
    message["Date"] = formatdate(localtime=False)
    message["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2] or None)
    message.set_content(plain_text(alert))
    message.add_alternative(_html(alert), subtype="html")
    return message


def _login(client: smtplib.SMTP, username: str, password: str) -> None:
    """AUTH PLAIN when the server offers it (over TLS it is the usual one), else
    smtplib's own choice. smtplib.login tries every mechanism in turn after a refusal:
    one wrong password becomes several failed logins (servers lock accounts after a few),
    and against some servers a hung LOGIN exchange that only the timeout ends."""
    client.ehlo_or_helo_if_needed()
    offered = (client.esmtp_features.get("auth") or "").upper().split()
    if "PLAIN" in offered:
        client.user, client.password = username, password
        client.auth("PLAIN", client.auth_plain)
    else:
        client.login(username, password)


def send(alert: Alert, smtp: SmtpSettings, deliverer: Deliverer, channel: str = "email") -> DeliveryResult:
    message = render(alert, smtp.sender, smtp.to)

    def attempt() -> Attempt:
        if smtp.username and not smtp.starttls:
            return Attempt(ok=False, error="login needs starttls: true (the password would go in clear text)")
        try:
            with smtplib.SMTP(smtp.host, smtp.port, timeout=deliverer.timeout_s) as client:
                if smtp.starttls:
                    client.starttls(context=smtp.ssl_context or ssl.create_default_context())
                if smtp.username:
                    _login(client, smtp.username, smtp.password or "")
                client.send_message(message)
        except smtplib.SMTPResponseException as exc:
            text = (
                exc.smtp_error.decode("utf-8", "replace")
                if isinstance(exc.smtp_error, bytes)
                else exc.smtp_error
            )
            return Attempt(ok=False, error=f"SMTP {exc.smtp_code}: {text}", retry=400 <= exc.smtp_code < 500)
        except smtplib.SMTPRecipientsRefused as exc:
            return Attempt(ok=False, error=f"recipients refused: {', '.join(exc.recipients)}")
        except TimeoutError:
            return Attempt(ok=False, error=f"no answer within {deliverer.timeout_s:g} s", retry=True)
        except ssl.SSLError as exc:
            return Attempt(ok=False, error=f"TLS: {exc}")
        except smtplib.SMTPNotSupportedError as exc:
            return Attempt(ok=False, error=f"{exc} (set starttls: false for a server without it)")
        except (OSError, smtplib.SMTPException) as exc:
            return Attempt(ok=False, error=f"{smtp.host}:{smtp.port}: {exc}", retry=True)
        return Attempt(ok=True)

    return deliverer.run(channel, alert.event, attempt)
