"""Standard Webhooks signing (https://www.standardwebhooks.com/, "Symmetric" scheme).

Headers: ``webhook-id`` (the message id, the same on every retry so receivers can
dedupe), ``webhook-timestamp`` (integer Unix seconds) and ``webhook-signature:
v1,<base64 HMAC-SHA256 over "<id>.<timestamp>.<body>">``; the key is the base64
decoded part of the ``whsec_`` secret after the prefix.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time

from stroke.config import check_webhook_secret


def secret_key(secret: str) -> bytes:
    """The HMAC key of a ``whsec_...`` secret."""
    return base64.b64decode(check_webhook_secret(secret)[len("whsec_"):])


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` header value for one message."""
    signed = f"{msg_id}.{int(timestamp)}.".encode() + body
    digest = hmac.new(secret_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def headers(secret: str, msg_id: str, body: bytes, timestamp: int | None = None) -> dict[str, str]:
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
