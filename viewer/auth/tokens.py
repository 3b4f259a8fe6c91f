"""Signed, expiring tokens: the API's bearer token and the pages' session cookie.

A token is ``base64url(json payload) "." base64url(HMAC-SHA256)``, keyed by a key derived from
``settings.secret_key``. The payload names the user, the kind (``api`` or ``session``), when it
was issued and when it expires; a password change makes older tokens invalid.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class TokenSigner:
    def __init__(self, secret_key: str):
        self._key = hmac.new(secret_key.encode(), b"telerad auth tokens v1", hashlib.sha256).digest()

    def _sig(self, body: str) -> str:
        return _b64(hmac.new(self._key, body.encode(), hashlib.sha256).digest())

    def issue(self, user: str, kind: str, ttl_s: int, now: float | None = None) -> str:
        now = time.time() if now is None else now
        payload = {"sub": user, "kind": kind, "iat": int(now), "exp": int(now + ttl_s), "jti": secrets.token_hex(8)}
        body = _b64(json.dumps(payload, separators=(",", ":")).encode())
        return f"{body}.{self._sig(body)}"

    def verify(self, token: str, kind: str, now: float | None = None) -> dict | None:
        """The payload of a valid, unexpired token of ``kind``; None otherwise."""
        if not token or token.count(".") != 1 or len(token) > 2048:
            return None
        body, sig = token.split(".")
        if not hmac.compare_digest(sig, self._sig(body)):
            return None
        try:
            payload = json.loads(_unb64(body))
        except ValueError:
            return None
        now = time.time() if now is None else now
        if payload.get("kind") != kind or not isinstance(payload.get("exp"), int) or payload["exp"] <= now:
            return None
        return payload

    def csrf(self, session_token: str) -> str:
        """The CSRF token bound to one session cookie (forms send it back as ``csrf_token``)."""
        return self._sig("csrf:" + session_token)[:32]
