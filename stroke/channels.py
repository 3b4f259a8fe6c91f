"""Alert channels: a Standard Webhooks POST and an SMTP e-mail with the summary PNG attached.

Each ``send_*`` returns a short description on success and raises
:class:`ChannelError` (``permanent`` when retrying cannot help) on failure.
"""

from __future__ import annotations

import smtplib
import ssl
import urllib.error
import urllib.request
from email.message import EmailMessage

from stroke import signing
from stroke.config import SmtpSettings


class ChannelError(Exception):
    def __init__(self, message: str, permanent: bool = False):
        super().__init__(message)
        self.permanent = permanent


def send_webhook(url: str, secret: str, msg_id: str, body: bytes, *, timeout_s: float) -> str:
    """POST ``body`` (JSON bytes) signed per Standard Webhooks; a 2xx answer is success."""
    req = urllib.request.Request(url, data=body, method="POST",
                                 headers={**signing.headers(secret, msg_id, body), "user-agent": "telerad-alerts"})
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as resp:
            return f"HTTP {resp.status}"
    except urllib.error.HTTPError as exc:
        # 4xx other than 408/429 means the receiver refuses this message; retrying will not help
        permanent = 400 <= exc.code < 500 and exc.code not in (408, 409, 425, 429)
        raise ChannelError(f"webhook {url} answered HTTP {exc.code}", permanent=permanent) from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ChannelError(f"webhook {url} unreachable: {reason}") from None


def send_email(smtp: SmtpSettings, to: str, subject: str, text: str, png: bytes | None, png_name: str) -> str:
    """Send a plain-text e-mail, with the summary PNG attached when there is one."""
    if not smtp.host:
        raise ChannelError("setting 'alerts.smtp.host' is not set", permanent=True)
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = smtp.sender, to, subject
    msg.set_content(text)
    if png:
        msg.add_attachment(png, maintype="image", subtype="png", filename=png_name)
    try:
        cls = smtplib.SMTP_SSL if smtp.ssl else smtplib.SMTP
        kwargs = {"context": ssl.create_default_context()} if smtp.ssl else {}
        with cls(smtp.host, smtp.port, timeout=smtp.timeout_s, **kwargs) as conn:
            if smtp.starttls:
                conn.starttls(context=ssl.create_default_context())
            if smtp.username:
                conn.login(smtp.username, smtp.password or "")
            refused = conn.send_message(msg)
    except smtplib.SMTPRecipientsRefused as exc:
        raise ChannelError(f"SMTP server refused {to}: {exc.recipients}", permanent=True) from None
    except (smtplib.SMTPException, OSError) as exc:
        raise ChannelError(f"SMTP {smtp.host}:{smtp.port}: {type(exc).__name__}: {exc}") from None
    if refused:
        raise ChannelError(f"SMTP server refused {', '.join(refused)}", permanent=True)
    return f"accepted by {smtp.host}:{smtp.port}"
