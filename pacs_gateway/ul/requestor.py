"""A storage SCU association with blocking sockets: negotiate once, then C-STORE many.

The data set goes out with ``socket.sendmsg`` straight from the caller's buffer
(a memory-mapped file works), cut into P-DATA-TF PDUs of the peer's maximum
size, and each response is read at once. pynetdicom's A-ASSOCIATE PDU classes
encode and decode the negotiation; nothing here polls.

    with StoreAssociation(host, port, calling_ae="TELERAD", called_ae="PACS",
                          contexts=[(CTImageStorage, [ExplicitVRLittleEndian])]) as a:
        cid = a.context_for(CTImageStorage, ExplicitVRLittleEndian)
        status, comment = a.store(cid, sop_class, sop_instance, dataset_bytes)
"""

from __future__ import annotations

import socket
from collections.abc import Sequence

from pydicom.uid import UID
from pynetdicom.pdu import A_ASSOCIATE_AC, A_ASSOCIATE_RJ, A_ASSOCIATE_RQ
from pynetdicom.pdu_primitives import A_ASSOCIATE
from pynetdicom.presentation import PresentationContext

from pacs_gateway.ul import dimse, pdu
from pacs_gateway.ul.acceptor import APPLICATION_CONTEXT, _peer_max_pdu, user_information

_IOV_MAX = 512  # buffers per sendmsg call


class AssociationError(Exception):
    """The association could not be made or broke; ``transient`` says whether retrying may help."""

    def __init__(self, message: str, *, transient: bool = True):
        super().__init__(message)
        self.transient = transient


class AssociationRejected(AssociationError):
    def __init__(self, result: int, source: int, diagnostic: int):
        permanent = result == 0x01
        super().__init__(
            f"association rejected ({'permanent' if permanent else 'transient'}, source {source}, "
            f"reason {diagnostic}{': calling AE title not recognised' if (source, diagnostic) == (1, 3) else ''}"
            f"{': called AE title not recognised' if (source, diagnostic) == (1, 7) else ''})",
            transient=not permanent,
        )
        self.result, self.source, self.diagnostic = result, source, diagnostic


class StoreAssociation:
    def __init__(
        self,
        host: str,
        port: int,
        *,
        calling_ae: str,
        called_ae: str,
        contexts: Sequence[tuple[str, Sequence[str]]],
        max_pdu: int = 262_144,
        timeout: float = 30.0,
        connect_timeout: float = 10.0,
    ):
        if not 1 <= len(contexts) <= 128:
            raise ValueError("Argument 'contexts' should hold 1 to 128 (abstract syntax, transfer syntaxes) pairs.")
        self.host, self.port = host, port
        self.calling_ae, self.called_ae = calling_ae, called_ae
        self.requested = list(contexts)
        self.max_pdu, self.timeout, self.connect_timeout = max_pdu, timeout, connect_timeout
        self.peer_max_pdu = 0
        self.accepted: dict[int, tuple[str, str]] = {}  # context id -> (abstract syntax, transfer syntax)
        self.sock: socket.socket | None = None
        self._reader: pdu.PduReader | None = None
        self._message_id = 0

    # -- lifecycle ------------------------------------------------------------
    def __enter__(self) -> StoreAssociation:
        self.open()
        return self

    def __exit__(self, exc_type, *_) -> None:
        if exc_type is None:
            self.release()
        else:
            self.abort()

    def open(self) -> None:
        try:
            sock = socket.create_connection((self.host, self.port), timeout=self.connect_timeout)
        except OSError as exc:
            raise AssociationError(f"cannot connect to {self.host}:{self.port}: {exc.strerror or exc}") from None
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.settimeout(self.timeout)
        self.sock = sock
        self._reader = pdu.PduReader(sock, max(self.max_pdu, 1 << 16) + 65536 if self.max_pdu else 1 << 30)
        self._reader.send_timeout = self.timeout
        try:
            self._negotiate()
        except BaseException:
            self.close()
            raise

    def _rq_bytes(self) -> bytes:
        p = A_ASSOCIATE()
        p.application_context_name = UID(APPLICATION_CONTEXT)
        p.calling_ae_title = self.calling_ae
        p.called_ae_title = self.called_ae
        cxs = []
        for i, (abstract, syntaxes) in enumerate(self.requested):
            cx = PresentationContext()
            cx.context_id = 2 * i + 1
            cx.abstract_syntax = UID(abstract)
            cx.transfer_syntax = [UID(s) for s in syntaxes]
            cxs.append(cx)
        p.presentation_context_definition_list = cxs
        p.user_information = user_information(self.max_pdu)
        rq = A_ASSOCIATE_RQ()
        rq.from_primitive(p)
        return rq.encode()

    def _negotiate(self) -> None:
        self._sendall(self._rq_bytes())
        kind, body = self._read()
        raw = bytes([kind, 0]) + len(body).to_bytes(4, "big") + bytes(body)
        if kind == pdu.A_ASSOCIATE_RJ:
            rj = A_ASSOCIATE_RJ()
            rj.decode(raw)
            raise AssociationRejected(rj.result, rj.source, rj.reason_diagnostic)
        if kind == pdu.A_ABORT:
            raise AssociationError("the peer aborted the association request")
        if kind != pdu.A_ASSOCIATE_AC:
            raise AssociationError(f"unexpected PDU type 0x{kind:02X} in answer to A-ASSOCIATE-RQ", transient=False)
        ac = A_ASSOCIATE_AC()
        ac.decode(raw)
        prim = ac.to_primitive()
        self.peer_max_pdu = _peer_max_pdu(prim.user_information)
        for cx in prim.presentation_context_definition_results_list:
            cid = int(cx.context_id)
            if cx.result == 0x00 and cx.transfer_syntax and 1 <= cid <= 2 * len(self.requested) - 1:
                self.accepted[cid] = (self.requested[(cid - 1) // 2][0], str(cx.transfer_syntax[0]))

    def release(self) -> None:
        if self.sock is None:
            return
        try:
            self._sendall(pdu.release_rq())
            kind, _ = self._read()
            if kind not in (pdu.A_RELEASE_RP, pdu.A_ABORT):
                raise AssociationError(f"unexpected PDU type 0x{kind:02X} in answer to A-RELEASE-RQ")
        except AssociationError:
            pass
        finally:
            self.close()

    def abort(self) -> None:
        if self.sock is not None:
            try:
                self.sock.sendall(pdu.abort(0x00, 0x00))
            except OSError:
                pass
        self.close()

    def close(self) -> None:
        if self.sock is not None:
            try:
                self.sock.close()
            finally:
                self.sock = None

    # -- services -------------------------------------------------------------
    def context_for(self, abstract: str, transfer_syntax: str | None = None) -> int | None:
        """The accepted context for ``abstract`` (in ``transfer_syntax`` when given), or None."""
        for cid, (a, ts) in self.accepted.items():
            if a == abstract and (transfer_syntax is None or ts == transfer_syntax):
                return cid
        return None

    def store(self, context_id: int, sop_class: str, sop_instance: str, dataset, priority: int = 0) -> tuple[int, str | None]:
        """Send one C-STORE and wait for its response; returns (status, error comment)."""
        if context_id not in self.accepted:
            raise ValueError(f"Argument 'context_id' should be an accepted presentation context, got {context_id}.")
        self._message_id = (self._message_id % 0xFFFF) + 1
        command = dimse.encode_store_request(self._message_id, sop_class, sop_instance, priority)
        buffers = [pdu.p_data(context_id, command), *pdu.data_buffers(context_id, dataset, self.peer_max_pdu)]
        self._sendmsg(buffers)
        return self._response(self._message_id)

    def echo(self) -> int:
        cid = self.context_for("1.2.840.10008.1.1")
        if cid is None:
            raise ValueError("Verification was not negotiated on this association.")
        self._message_id = (self._message_id % 0xFFFF) + 1
        self._sendall(pdu.p_data(cid, dimse.encode_echo_request(self._message_id)))
        return self._response(self._message_id)[0]

    def _response(self, message_id: int) -> tuple[int, str | None]:
        command = bytearray()
        while True:
            kind, body = self._read()
            if kind == pdu.A_ABORT:
                self.close()
                raise AssociationError("the peer aborted the association")
            if kind == pdu.A_RELEASE_RQ:
                self._sendall(pdu.release_rp())
                self.close()
                raise AssociationError("the peer released the association before answering")
            if kind != pdu.P_DATA_TF:
                raise AssociationError(f"unexpected PDU type 0x{kind:02X} while waiting for a response")
            for _cid, is_command, is_last, fragment in pdu.iter_pdvs(body):
                if not is_command:
                    continue
                command += fragment
                if is_last:
                    rsp = dimse.decode_command(command)
                    command.clear()
                    if rsp.message_id == message_id and rsp.status is not None:
                        return rsp.status, rsp.error_comment

    # -- transport ------------------------------------------------------------
    def _sendall(self, data: bytes) -> None:
        self._sendmsg([data])

    def _sendmsg(self, buffers: list) -> None:
        if self.sock is None:
            raise AssociationError("the association is closed")
        try:
            pending = [memoryview(b).cast("B") for b in buffers]
            while pending:
                sent = self.sock.sendmsg(pending[:_IOV_MAX])
                while pending and sent >= len(pending[0]):
                    sent -= len(pending[0])
                    pending.pop(0)
                if pending and sent:
                    pending[0] = pending[0][sent:]
        except socket.timeout:
            self.abort()
            raise AssociationError(f"timed out sending to {self.host}:{self.port}") from None
        except OSError as exc:
            self.close()
            raise AssociationError(f"connection to {self.host}:{self.port} lost: {exc.strerror or exc}") from None

    def _read(self) -> tuple[int, memoryview]:
        try:
            return self._reader.read(self.timeout, self.timeout)
        except (socket.timeout, pdu.Timeout):
            self.abort()
            raise AssociationError(f"no answer from {self.host}:{self.port} within {self.timeout:g} s") from None
        except pdu.PeerClosed as exc:
            self.close()
            raise AssociationError(f"connection to {self.host}:{self.port} lost: {exc}") from None
        except pdu.ProtocolError as exc:
            self.abort()
            raise AssociationError(f"protocol error from {self.host}:{self.port}: {exc}", transient=False) from None
