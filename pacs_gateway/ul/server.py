"""A threaded DICOM acceptor: one listening socket, one thread per association.

``StorageServer(address, supported_contexts, handlers, ...)`` starts listening
at once (an ``OSError`` such as "address in use" propagates to the caller) and
serves in background threads; ``shutdown()`` stops accepting, aborts nothing
in flight, and waits (bounded) for running associations to finish.
"""

from __future__ import annotations

import logging
import socket
import threading
import uuid

from pynetdicom.presentation import PresentationContext

from telerad.logctx import log_context

from pacs_gateway.ul.acceptor import Acceptor, AssociationInfo, Handlers

log = logging.getLogger(__name__)

#: A-ASSOCIATE-RJ: rejected-transient, service-provider (presentation), local limit exceeded
REJECT_TOO_MANY = (0x02, 0x03, 0x02)


class StorageServer:
    def __init__(
        self,
        address: tuple[str, int],
        supported: list[PresentationContext],
        handlers: Handlers,
        *,
        max_pdu: int = 262_144,
        max_associations: int = 16,
        acse_timeout: float = 30.0,
        network_timeout: float = 60.0,
        backlog: int = 64,
    ):
        self.supported, self.handlers = supported, handlers
        self.max_pdu, self.max_associations = max_pdu, max_associations
        self.acse_timeout, self.network_timeout = acse_timeout, network_timeout
        family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self._sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self._sock.bind(address)
            self._sock.listen(backlog)
        except OSError:
            self._sock.close()
            raise
        self.address = self._sock.getsockname()[:2]
        self._lock = threading.Lock()
        self._active: set[threading.Thread] = set()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._accept_loop, name="dicom-accept", daemon=True)
        self._thread.start()

    @property
    def active_associations(self) -> int:
        with self._lock:
            return len(self._active)

    def _accept_loop(self) -> None:
        self._sock.settimeout(0.5)
        while not self._stopping.is_set():
            try:
                conn, peer = self._sock.accept()
            except socket.timeout:
                continue
            except OSError:
                if self._stopping.is_set():
                    return
                log.exception("accept failed; continuing")
                continue
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn.settimeout(self.acse_timeout)
            info = AssociationInfo(id=f"as-{uuid.uuid4().hex[:8]}", calling_ae="", called_ae="",
                                   address=peer[0], port=peer[1])
            with self._lock:
                refuse = REJECT_TOO_MANY if len(self._active) >= self.max_associations else None
                t = threading.Thread(target=self._serve, args=(conn, info, refuse), name=info.id, daemon=True)
                self._active.add(t)
            t.start()

    def _serve(self, conn: socket.socket, info: AssociationInfo, refuse) -> None:
        token = log_context.set(info.id)
        try:
            if refuse:
                log.warning("rejected association from %s:%d: %d associations already active",
                            info.address, info.port, self.max_associations)
            Acceptor(
                conn, info,
                supported=self.supported, handlers=self.handlers, max_pdu=self.max_pdu,
                acse_timeout=self.acse_timeout, network_timeout=self.network_timeout, refuse=refuse,
            ).run()  # fmt: skip
        except Exception:  # one association's bug must not take the server down
            log.exception("association %s failed", info.id)
        finally:
            log_context.reset(token)
            with self._lock:
                self._active.discard(threading.current_thread())

    def shutdown(self, timeout: float = 10.0) -> None:
        self._stopping.set()
        try:
            self._sock.close()
        except OSError:
            pass
        self._thread.join(timeout=2.0)
        with self._lock:
            running = list(self._active)
        for t in running:
            t.join(timeout=timeout / max(1, len(running)))
