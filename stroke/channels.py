"""Alert channels: a Standard Webhooks POST and an SMTP e-mail with the summary PNG attached.

Signing follows Standard Webhooks (https://www.standardwebhooks.com/, "Symmetric"):
headers ``webhook-id`` (the message id, the same on every retry so receivers can
dedupe), ``webhook-timestamp`` (integer Unix seconds) and ``webhook-signature:
v1,<base64 HMAC-SHA256 over "<id>.<timestamp>.<body>">``; the key is the base64
decoded part of the ``whsec_`` secret after the prefix.

Each ``send_*`` returns a short description on success and raises
:class:`ChannelError` (``permanent`` when retrying cannot help) on failure.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import smtplib
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from email.message import EmailMessage

from stroke.config import SmtpSettings, check_webhook_secret
from telerad.secretbox import SecretError, resolve_env


# ----------------------------------------------------------------------------- signing

def secret_key(secret: str) -> bytes:
    """The HMAC key of a ``whsec_...`` secret."""
    value = check_webhook_secret(secret)
    if value.startswith("env:"):
        raise ChannelError("the webhook secret is an unresolved env: reference", permanent=True)
    return base64.b64decode(value[len("whsec_"):])


def redact_url(url: str) -> str:
    """``scheme://host[:port]/...``: enough to tell which endpoint, never a token in its path or query."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or "?"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}/..." if (parts.path not in ("", "/") or parts.query) else f"{parts.scheme}://{host}{port}/"


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A webhook that answers 3xx was not delivered: urllib would re-send it as a GET without the body."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


_OPENER = urllib.request.build_opener(_NoRedirect())


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` header value for one message."""
    signed = f"{msg_id}.{int(timestamp)}.".encode() + body
    digest = hmac.new(secret_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def signed_headers(secret: str, msg_id: str, body: bytes, timestamp: int | None = None) -> dict[str, str]:
    ts = int(time.time()) if timestamp is None else int(timestamp)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(ts),
        "webhook-signature": sign(secret, msg_id, ts, body),
        "content-type": "application/json",
    }


def verify(secret: str, msg_id: str, timestamp: str, signature_header: str, body: bytes,
           *, tolerance_s: float = 300.0, now: float | None = None) -> bool:
    """True when one of the space-separated ``v1,`` signatures matches and the timestamp is recent."""
    try:
        ts = int(timestamp)
    except (TypeError, ValueError):
        return False
    if abs((time.time() if now is None else now) - ts) > tolerance_s:
        return False
    expected = sign(secret, msg_id, ts, body).split(",", 1)[1]
    for part in (signature_header or "").split():
        version, _, sig = part.partition(",")
        if version == "v1" and hmac.compare_digest(sig, expected):
            return True
    return False


# ----------------------------------------------------------------------------- channels
class ChannelError(Exception):
    def __init__(self, message: str, permanent: bool = False):
        super().__init__(message)
        self.permanent = permanent


def send_webhook(url: str, secret: str, msg_id: str, body: bytes, *, timeout_s: float) -> str:
    """POST ``body`` (JSON bytes) signed per Standard Webhooks; only a 2xx answer is success.

    Redirects are not followed (a 3xx is a permanent failure naming the status); errors name the
    endpoint as ``scheme://host:port/...`` so a token in the URL never reaches the logs or the index.
    """
    where = redact_url(url)
    req = urllib.request.Request(url, data=body, method="POST",
                                 headers={**signed_headers(secret, msg_id, body), "user-agent": "telerad-alerts"})
    try:
        with _OPENER.open(req, timeout=timeout_s) as resp:
            if not 200 <= resp.status < 300:
                raise ChannelError(f"webhook {where} answered HTTP {resp.status}, not 2xx", permanent=False)
            return f"HTTP {resp.status}"
    except urllib.error.HTTPError as exc:
        if 300 <= exc.code < 400:
            raise ChannelError(f"webhook {where} answered HTTP {exc.code} (a redirect); redirects are not followed, "
                               "configure the final URL", permanent=True) from None
        # 4xx other than 408/429 means the receiver refuses this message; retrying will not help
        permanent = 400 <= exc.code < 500 and exc.code not in (408, 409, 425, 429)
        raise ChannelError(f"webhook {where} answered HTTP {exc.code}", permanent=permanent) from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ChannelError(f"webhook {where} unreachable: {reason}") from None


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
                if not (smtp.ssl or smtp.starttls or smtp.allow_login_without_tls):
                    raise ChannelError(
                        f"SMTP {smtp.host}:{smtp.port}: refusing to send the password without TLS; set "
                        "'alerts.smtp.starttls' or 'alerts.smtp.ssl' (or 'alerts.smtp.allow_login_without_tls' "
                        "for a relay on a trusted host)", permanent=True)
                conn.login(smtp.username, resolve_env(smtp.password, "setting 'alerts.smtp.password'") or "")
            refused = conn.send_message(msg)
    except smtplib.SMTPRecipientsRefused as exc:
        raise ChannelError(f"SMTP server refused {to}: {exc.recipients}", permanent=True) from None
    except SecretError as exc:
        raise ChannelError(str(exc), permanent=True) from None
    except (smtplib.SMTPException, OSError) as exc:
        raise ChannelError(f"SMTP {smtp.host}:{smtp.port}: {type(exc).__name__}: {exc}") from None
    if refused:
        raise ChannelError(f"SMTP server refused {', '.join(refused)}", permanent=True)
    return f"accepted by {smtp.host}:{smtp.port}"
