"""The DICOM listener: a cheap pre-association stage, then one thread per negotiated association.

``StorageServer(address, supported_contexts, handlers, limits=...)`` starts listening at once
(an ``OSError`` such as "address in use" propagates) and serves in background threads.

Accepted sockets cost no thread until they are negotiated. One selector thread holds every
connection that is still in its TLS handshake or still sending its A-ASSOCIATE-RQ, each under an
ARTIM deadline for the whole of that stage (not per ``recv``), with caps on how many such
connections one address and all addresses may hold; past a cap the *oldest* waiting connection is
dropped, so a flood of silent or slow sockets can never keep a clinic's fresh connection out. Only a
complete, allowed A-ASSOCIATE-RQ (known calling AE, our called AE, disk below its high-water mark,
under the association caps) gets a worker thread (``acceptor.py``). ``shutdown()`` stops accepting
and waits (bounded) for running associations.
"""

from __future__ import annotations

import logging
import selectors
import socket
import ssl
import struct
import threading
import time
import uuid
from collections import Counter

from pynetdicom.presentation import PresentationContext

from pacs_gateway.ul import pdu
from pacs_gateway.ul.acceptor import Acceptor, AssociationInfo, Handlers, decode_rq, fill_info
from pacs_gateway.ul.limits import Limits
from telerad.logctx import escape, log_context

log = logging.getLogger(__name__)

#: A-ASSOCIATE-RJ: rejected-transient, service-provider (presentation), local limit exceeded
REJECT_TOO_MANY = (0x02, 0x03, 0x02)


class _Quota:
    """At most ``burst`` lines per kind every ``period_s``; then one summary line with the count.

    A flood of hostile connections must not flood the log (and the disk) as well.
    """

    def __init__(self, burst: int = 20, period_s: float = 10.0):
        self.burst, self.period_s = burst, period_s
        self._window: dict[str, list] = {}  # kind -> [window start, lines, suppressed]

    def warn(self, kind: str, msg: str, *args) -> None:
        now = time.monotonic()
        w = self._window.setdefault(kind, [now, 0, 0])
        if now - w[0] >= self.period_s:
            if w[2]:
                log.warning("%d more '%s' events in the last %.0f s (not logged one by one)", w[2], kind, now - w[0])
            w[:] = [now, 0, 0]
        if w[1] < self.burst:
            w[1] += 1
            log.warning(msg, *args)
        else:
            w[2] += 1


#: how long a refused peer gets to read our A-ASSOCIATE-RJ / A-ABORT and close first
CLOSE_WAIT_S = 3.0


class _Closing:
    __slots__ = ("sock", "fd", "deadline")

    def __init__(self, sock, deadline: float):
        self.sock, self.fd, self.deadline = sock, sock.fileno(), deadline


class _Pending:
    __slots__ = ("sock", "ip", "port", "deadline", "head", "body", "need", "tls", "handshaking", "cn")

    def __init__(self, sock, peer, deadline: float, tls: bool):
        self.sock, self.ip, self.port = sock, peer[0], peer[1]
        self.deadline, self.tls, self.handshaking = deadline, tls, tls
        self.head, self.body, self.need, self.cn = bytearray(), bytearray(), -1, None


def _listen(address: tuple[str, int], backlog: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(backlog)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


def _common_name(cert: dict | None) -> str | None:
    for rdn in (cert or {}).get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return value
    return None


class StorageServer:
    def __init__(
        self,
        address: tuple[str, int],
        supported: list[PresentationContext],
        handlers: Handlers,
        *,
        limits: Limits | None = None,
        tls_address: tuple[str, int] | None = None,
        ssl_context: ssl.SSLContext | None = None,
        backlog: int = 128,
    ):
        self.supported, self.handlers = supported, handlers
        self.limits = limits or Limits()
        self.max_associations = self.limits.max_associations
        self._listeners: dict[socket.socket, bool] = {}
        try:
            plain = _listen(address, backlog)
            self._listeners[plain] = False
            if tls_address is not None:
                if ssl_context is None:
                    raise ValueError("a TLS port needs an SSL context")
                self._listeners[_listen(tls_address, backlog)] = True
        except OSError:
            for s in self._listeners:
                s.close()
            raise
        self.address = plain.getsockname()[:2]
        self.tls_address = next((s.getsockname()[:2] for s, t in self._listeners.items() if t), None)
        self.ssl_context = ssl_context
        self._lock = threading.Lock()
        self._active: dict[threading.Thread, str] = {}  # worker -> peer address
        self._per_ip = Counter()
        self._pending: dict[int, _Pending] = {}  # insertion order: oldest first
        self._pending_per_ip = Counter()
        self._closing: dict[int, _Closing] = {}  # refused connections waiting for the peer to close
        self._stopping = threading.Event()
        self._quota = _Quota()
        self._sel = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._sel.register(self._wake_r, selectors.EVENT_READ, None)
        for s in self._listeners:
            self._sel.register(s, selectors.EVENT_READ, "listen")
        self._thread = threading.Thread(target=self._loop, name="dicom-accept", daemon=True)
        self._thread.start()

    @property
    def active_associations(self) -> int:
        with self._lock:
            return len(self._active)

    @property
    def pending_connections(self) -> int:
        return len(self._pending)

    # -- the pre-association stage (one thread, non-blocking sockets) ------------------------------
    def _loop(self) -> None:
        while not self._stopping.is_set():
            now = time.monotonic()
            first = next(iter(self._pending.values()), None)
            wait = 0.5 if first is None else max(0.0, min(0.5, min(p.deadline for p in self._pending.values()) - now))
            if self._closing:
                wait = min(wait, 0.25)
            try:
                events = self._sel.select(wait)
            except OSError:
                if self._stopping.is_set():
                    break
                raise
            for key, _mask in events:
                if key.data == "listen":
                    self._accept_all(key.fileobj)
                elif isinstance(key.data, _Closing):
                    self._closing_readable(key.data)
                elif isinstance(key.data, _Pending):
                    p = key.data
                    if self._pending.get(p.sock.fileno()) is p:  # not dropped earlier in this round
                        self._advance(p)
            now = time.monotonic()
            for p in [p for p in self._pending.values() if p.deadline <= now]:
                stage = "TLS handshake" if p.handshaking else "A-ASSOCIATE-RQ"
                self._quota.warn("ARTIM", "connection from %s:%d: no complete %s within %g s (ARTIM); closed",
                                 p.ip, p.port, stage, self.limits.artim_s)
                self._drop(p)
            for c in [c for c in self._closing.values() if c.deadline <= now]:
                self._closed(c)
        for p in list(self._pending.values()):
            self._drop(p)
        for c in list(self._closing.values()):
            self._closed(c)

    def _accept_all(self, listener: socket.socket) -> None:
        tls = self._listeners.get(listener, False)
        for _ in range(64):  # bounded per wakeup so deadlines keep being checked
            try:
                conn, peer = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if not self._stopping.is_set():
                    log.error("accept failed: %s; continuing", exc.strerror or exc)
                return
            self._admit(conn, peer, tls)

    def _admit(self, conn: socket.socket, peer, tls: bool) -> None:
        lim, ip = self.limits, peer[0]
        if self._pending_per_ip[ip] >= lim.per_ip_pending:
            oldest = next(p for p in self._pending.values() if p.ip == ip)
            self._quota.warn("per-address cap", "%s holds %d connections that have not associated; dropping its oldest",
                             ip, lim.per_ip_pending)
            self._drop(oldest)
        if len(self._pending) >= lim.max_pending:
            oldest = next(iter(self._pending.values()))
            self._quota.warn("total cap", "%d connections have not associated; dropping the oldest (from %s)",
                             lim.max_pending, oldest.ip)
            self._drop(oldest)
        try:
            conn.setblocking(False)
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if tls:
                conn = self.ssl_context.wrap_socket(conn, server_side=True, do_handshake_on_connect=False)
            p = _Pending(conn, peer, time.monotonic() + lim.artim_s, tls)
            self._sel.register(conn, selectors.EVENT_READ, p)
        except (OSError, ValueError) as exc:
            log.warning("connection from %s dropped at accept: %s", ip, escape(exc))
            conn.close()
            return
        self._pending[conn.fileno()] = p
        self._pending_per_ip[ip] += 1

    def _drop(self, p: _Pending, *, close: bool = True) -> None:
        if self._pending.pop(p.sock.fileno(), None) is not None:
            self._pending_per_ip[p.ip] -= 1
            if self._pending_per_ip[p.ip] <= 0:
                del self._pending_per_ip[p.ip]
        try:
            self._sel.unregister(p.sock)
        except (KeyError, ValueError, OSError):
            pass
        if close:
            try:
                p.sock.close()
            except OSError:
                pass

    def _abort(self, p: _Pending, message: str, reason: int) -> None:
        self._quota.warn("malformed", "connection from %s:%d: %s; aborting", p.ip, p.port, message)
        self._drop(p, close=False)
        self._answer_and_close(p.sock, pdu.abort(0x02, reason))

    def _answer_and_close(self, sock: socket.socket, data: bytes) -> None:
        """Send a last PDU (A-ASSOCIATE-RJ or A-ABORT), then let the peer close first (PS3.8 9.1.5:
        after a reject the requestor closes the transport), so the PDU is read, not lost to a reset;
        the socket is closed anyway after ``CLOSE_WAIT_S``."""
        try:
            sock.settimeout(1.0)
            sock.sendall(data)
            sock.setblocking(False)
            if len(self._closing) >= self.limits.max_pending:
                self._closed(next(iter(self._closing.values())))
            c = _Closing(sock, time.monotonic() + min(CLOSE_WAIT_S, self.limits.artim_s))
            self._sel.register(sock, selectors.EVENT_READ, c)
            self._closing[sock.fileno()] = c
        except (OSError, ValueError):
            sock.close()

    def _closing_readable(self, c: "_Closing") -> None:
        try:
            if c.sock.recv(4096):
                return  # whatever the peer still sends is dropped
        except (BlockingIOError, InterruptedError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
            return
        except (OSError, ValueError):
            pass
        self._closed(c)

    def _closed(self, c: "_Closing") -> None:
        self._closing.pop(c.fd, None)
        try:
            self._sel.unregister(c.sock)
        except (KeyError, ValueError, OSError):
            pass
        try:
            c.sock.close()
        except OSError:
            pass

    def _advance(self, p: _Pending) -> None:
        if p.handshaking:
            try:
                p.sock.do_handshake()
            except ssl.SSLWantReadError:
                self._sel.modify(p.sock, selectors.EVENT_READ, p)
                return
            except ssl.SSLWantWriteError:
                self._sel.modify(p.sock, selectors.EVENT_READ | selectors.EVENT_WRITE, p)
                return
            except (ssl.SSLError, OSError) as exc:
                self._quota.warn("TLS", "connection from %s:%d: TLS handshake failed: %s", p.ip, p.port, escape(exc, 160))
                self._drop(p)
                return
            p.handshaking = False
            p.cn = _common_name(p.sock.getpeercert())
            self._sel.modify(p.sock, selectors.EVENT_READ, p)
        while True:
            want = 6 - len(p.head) if p.need < 0 else p.need - len(p.body)
            try:
                data = p.sock.recv(want)
            except (BlockingIOError, InterruptedError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
                return
            except OSError as exc:
                log.info("connection from %s:%d lost before associating: %s", p.ip, p.port, escape(exc))
                self._drop(p)
                return
            if not data:
                self._drop(p)  # closed before associating: nothing to answer
                return
            if p.need < 0:
                p.head += data
                if len(p.head) < 6:
                    continue
                kind, length = struct.unpack(">BxI", p.head)
                if kind != pdu.A_ASSOCIATE_RQ:
                    self._abort(p, f"expected A-ASSOCIATE-RQ, got PDU type 0x{kind:02X}", pdu.ABORT_UNEXPECTED_PDU)
                    return
                if length > self.limits.max_rq:
                    self._abort(p, f"A-ASSOCIATE-RQ of {length} bytes is longer than {self.limits.max_rq}",
                                pdu.ABORT_INVALID_PARAMETER)
                    return
                p.need = length
                if length:
                    continue
            else:
                p.body += data
                if len(p.body) < p.need:
                    continue
            self._judge(p)
            return

    def _judge(self, p: _Pending) -> None:
        self._drop(p, close=False)
        try:
            primitive = decode_rq(p.body)
        except pdu.ProtocolError as exc:
            self._abort(p, str(exc), exc.reason)
            return
        info = AssociationInfo(id=f"as-{uuid.uuid4().hex[:8]}", calling_ae="", called_ae="",
                               address=p.ip, port=p.port, tls=p.tls, peer_cert_cn=p.cn)
        fill_info(info, primitive)
        try:
            reason = self.handlers.requested(info)
        except Exception as exc:  # the service's check failed: refuse transiently, keep serving
            log.error("association from %s: the acceptance check failed: %s", p.ip, escape(exc, 200))
            reason = REJECT_TOO_MANY
        if reason is None:
            with self._lock:
                if len(self._active) >= self.limits.max_associations:
                    reason = REJECT_TOO_MANY
                    log.warning("rejected association from %s (%s): %d associations already active",
                                p.ip, escape(info.calling_ae), self.limits.max_associations)
                elif self._per_ip[p.ip] >= self.limits.per_ip_associations:
                    reason = REJECT_TOO_MANY
                    log.warning("rejected association from %s (%s): it already holds %d associations",
                                p.ip, escape(info.calling_ae), self.limits.per_ip_associations)
                else:
                    t = threading.Thread(target=self._serve, args=(p.sock, info, primitive), name=info.id, daemon=True)
                    self._active[t] = p.ip
                    self._per_ip[p.ip] += 1
        if reason is not None:
            self._answer_and_close(p.sock, pdu.associate_rj(*reason))
            return
        t.start()

    # -- negotiated associations (one thread each) ----------------------------------------------
    def _serve(self, conn: socket.socket, info: AssociationInfo, primitive) -> None:
        token = log_context.set(info.id)
        try:
            conn.setblocking(True)
            Acceptor(conn, info, primitive, supported=self.supported, handlers=self.handlers, limits=self.limits).run()
        except Exception:  # one association's bug must not take the server down
            log.exception("association %s failed", info.id)
        finally:
            log_context.reset(token)
            with self._lock:
                ip = self._active.pop(threading.current_thread(), None)
                if ip is not None:
                    self._per_ip[ip] -= 1
                    if self._per_ip[ip] <= 0:
                        del self._per_ip[ip]

    def shutdown(self, timeout: float = 10.0) -> None:
        self._stopping.set()
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass
        self._thread.join(timeout=5.0)
        for s in self._listeners:
            try:
                s.close()
            except OSError:
                pass
        for s in (self._wake_r, self._wake_w):
            s.close()
        with self._lock:
            running = list(self._active)
        for t in running:
            t.join(timeout=timeout / max(1, len(running)))
