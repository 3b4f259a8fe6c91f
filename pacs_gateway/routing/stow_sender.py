"""The DICOMweb sender: STOW-RS (PS3.18 10.5) over one kept-alive HTTP(S) connection.

Instances go as stored (``application/dicom`` Part-10 files) in
``multipart/related`` requests of at most ``BATCH_FILES`` files or
``BATCH_BYTES`` bytes, streamed from the store. The answer's Failed SOP
Sequence (0008,1198) gives each refused instance its Failure Reason
(0008,1197), which is judged like a C-STORE status. HTTP 401/403/404/408/429
and 5xx, and lost connections, are the destination being unavailable (retried
with backoff); other 4xx answers fail the batch's rows permanently.
"""

from __future__ import annotations

import http.client
import json
import logging
import socket
import ssl
import uuid
from collections.abc import Iterator, Sequence
from urllib.parse import urlsplit

from pacs_gateway.routing.destinations import DestinationInfo
from pacs_gateway.routing.retry import classify_status
from pacs_gateway.routing.sender import DestinationUnavailable, Outcome, Outgoing, SenderOptions

log = logging.getLogger(__name__)

BATCH_FILES = 50
BATCH_BYTES = 32 * 1024 * 1024
_UNAVAILABLE = {401, 403, 404, 408, 429}


def _first(value) -> object:
    if isinstance(value, dict):
        v = value.get("Value") or [None]
        return v[0]
    return None


def _ssl_context(dest: DestinationInfo) -> ssl.SSLContext:
    tls = dest.config.tls
    ctx = ssl.create_default_context(cafile=str(tls.ca_file) if tls and tls.ca_file else None)
    if tls is not None and not tls.verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if tls is not None and tls.cert_file:
        ctx.load_cert_chain(str(tls.cert_file), str(tls.key_file))
    return ctx


class StowSender:
    def __init__(self, destination: DestinationInfo, options: SenderOptions):
        self.dest, self.opts = destination, options
        url = urlsplit(str(destination.config.url))
        self.https = url.scheme == "https"
        self.host, self.port = url.hostname or "", url.port or (443 if self.https else 80)
        self.path = url.path.rstrip("/") + "/studies"
        self.where = f"{url.scheme}://{url.netloc}{self.path}"
        self.conn: http.client.HTTPConnection | None = None

    def __enter__(self) -> "StowSender":
        timeout = max(self.opts.connect_timeout_s, self.opts.dimse_timeout_s)
        try:
            if self.https:
                conn = http.client.HTTPSConnection(self.host, self.port, timeout=timeout, context=_ssl_context(self.dest))
            else:
                conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
            conn.connect()
            conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except (OSError, ssl.SSLError) as exc:
            raise DestinationUnavailable(f"cannot connect to {self.where}: {getattr(exc, 'strerror', None) or exc}") from None
        self.conn = conn
        return self

    def __exit__(self, *exc: object) -> None:
        if self.conn is not None:
            self.conn.close()

    def send(self, items: Sequence[Outgoing]) -> Iterator[Outcome]:
        batch: list[Outgoing] = []
        size = 0
        for it in items:
            if batch and (len(batch) >= BATCH_FILES or size + it.size > BATCH_BYTES):
                yield from self._post(batch)
                batch, size = [], 0
                if self.opts.stop.is_set():
                    return
            batch.append(it)
            size += it.size
        if batch:
            yield from self._post(batch)

    def _post(self, batch: list[Outgoing]) -> list[Outcome]:
        assert self.conn is not None
        boundary = f"telerad-{uuid.uuid4().hex}"
        head = f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode()
        tail = f"\r\n--{boundary}--\r\n".encode()
        sep = f"\r\n--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode()
        readable: list[tuple[Outgoing, int]] = []
        missing: list[Outcome] = []
        for it in batch:
            try:
                readable.append((it, it.path.stat().st_size))
            except FileNotFoundError:
                missing.append(Outcome(it.key, False, True, f"the stored file {it.path} is missing"))
        if not readable:
            return missing
        header = self.dest.config.auth_header
        if header and header.split(":", 1)[1].strip().startswith(("enc:v1:", "env:")):
            why = (f"destination '{self.dest.name}': its auth_header cannot be decrypted or its environment "
                   "variable is not set (see the log); not sent")
            return missing + [Outcome(it.key, False, True, why) for it, _ in readable]
        length = len(head) + len(tail) + len(sep) * (len(readable) - 1) + sum(n for _, n in readable)
        try:
            c = self.conn
            c.putrequest("POST", self.path, skip_accept_encoding=True)
            c.putheader("Content-Type", f'multipart/related; type="application/dicom"; boundary={boundary}')
            c.putheader("Accept", "application/dicom+json")
            c.putheader("Content-Length", str(length))
            if self.dest.config.auth_header:
                name, value = self.dest.config.auth_header.split(":", 1)
                c.putheader(name.strip(), value.strip())
            c.endheaders()
            for i, (it, _) in enumerate(readable):
                c.send(head if i == 0 else sep)
                with open(it.path, "rb") as fp:
                    while chunk := fp.read(1 << 20):
                        c.send(chunk)
            c.send(tail)
            rsp = c.getresponse()
            body = rsp.read()
        except (OSError, http.client.HTTPException) as exc:
            self.conn.close()
            raise DestinationUnavailable(f"STOW-RS to {self.where} failed: {exc}") from None
        return missing + self._judge(rsp.status, rsp.reason, body, [it for it, _ in readable])

    def _judge(self, status: int, reason: str, body: bytes, items: list[Outgoing]) -> list[Outcome]:
        if status in _UNAVAILABLE or status >= 500:
            raise DestinationUnavailable(f"STOW-RS to {self.where} answered HTTP {status} {reason}")
        failed: dict[str, int] = {}
        try:
            doc = json.loads(body) if body else {}
            if isinstance(doc, list):
                doc = doc[0] if doc else {}
            for item in (doc.get("00081198", {}) or {}).get("Value", []) or []:
                uid, why = _first(item.get("00081155")), _first(item.get("00081197"))
                if uid:
                    failed[str(uid)] = int(why) if isinstance(why, (int, float)) else 0xC000
        except (ValueError, AttributeError, TypeError):
            doc = {}
        out = []
        for it in items:
            if it.sop_instance_uid in failed:
                v = classify_status(failed[it.sop_instance_uid])
                out.append(Outcome(it.key, False, v.permanent, f"STOW-RS failure reason: {v.message}", status=failed[it.sop_instance_uid]))
            elif status in (200, 202):
                out.append(Outcome(it.key, True, False, "stored", status=0, wire_syntax=it.transfer_syntax, bytes_sent=it.size))
            else:
                out.append(Outcome(it.key, False, True, f"STOW-RS to {self.where} answered HTTP {status} {reason}"))
        return out
