"""Real loopback receivers for alert tests: an HTTP webhook endpoint and an SMTP server (aiosmtpd).

Both record what arrived; every wait is bounded.
"""

from __future__ import annotations

import email
import threading
import time
from email import policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tests.peers import LOOPBACK, free_port


class WebhookReceiver:
    """``ThreadingHTTPServer`` on 127.0.0.1 recording each POST (headers, raw body, arrival time).

    ``fail_first=N`` answers HTTP 503 to the first N requests (to exercise retries).
    """

    def __init__(self, fail_first: int = 0):
        self.requests: list[dict] = []
        self.fail_first = fail_first
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server API
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                with receiver._cond:
                    n = len(receiver.requests)
                    receiver.requests.append({"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()},
                                              "body": body, "at": time.time(), "refused": n < receiver.fail_first})
                    receiver._cond.notify_all()
                self.send_response(503 if n < receiver.fail_first else 204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.port = free_port()
        self.server = ThreadingHTTPServer((LOOPBACK, self.port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}/hook"

    def accepted(self) -> list[dict]:
        with self._lock:
            return [r for r in self.requests if not r["refused"]]

    def wait(self, n: int, timeout: float) -> list[dict]:
        """Wait until ``n`` requests were accepted (not refused); returns them."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while sum(not r["refused"] for r in self.requests) < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"{n} webhook(s) expected within {timeout}s, got "
                                         f"{[r['body'][:200] for r in self.requests]}")
                self._cond.wait(left)
            return [r for r in self.requests if not r["refused"]]

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


class SmtpReceiver:
    """An aiosmtpd SMTP server on 127.0.0.1 keeping every message as an ``email.message.EmailMessage``."""

    def __init__(self):
        from aiosmtpd.controller import Controller

        self.messages: list = []
        self._cond = threading.Condition()
        receiver = self

        class Handler:
            async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd API
                msg = email.message_from_bytes(envelope.content, policy=policy.default)
                with receiver._cond:
                    receiver.messages.append({"msg": msg, "rcpt": list(envelope.rcpt_tos), "at": time.time()})
                    receiver._cond.notify_all()
                return "250 OK"

        self.port = free_port()
        self.controller = Controller(Handler(), hostname=LOOPBACK, port=self.port)

    def wait(self, n: int, timeout: float) -> list[dict]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self.messages) < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"{n} e-mail(s) expected within {timeout}s, got {len(self.messages)}")
                self._cond.wait(left)
            return list(self.messages)

    def __enter__(self):
        self.controller.start()
        return self

    def __exit__(self, *exc):
        self.controller.stop()
