"""One accepted association, served on its own thread with blocking reads.

Negotiation reuses pynetdicom's A-ASSOCIATE PDU classes and its presentation
context negotiation (``negotiate_as_acceptor``). The data phase is a plain
loop: read a PDU, append its PDV fragments, and when a message is whole hand it
to the service's handler and send the response at once. There is no polling
and no per-PDU thread hop, which is what makes this faster than pynetdicom's
reactor-based AE (see ``benchmarks/results/receive.json``).
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass, field

from pydicom.uid import UID
from pynetdicom.pdu import A_ASSOCIATE_AC, A_ASSOCIATE_RQ
from pynetdicom.pdu_primitives import (
    A_ASSOCIATE,
    ImplementationClassUIDNotification,
    ImplementationVersionNameNotification,
    MaximumLengthNotification,
    SCP_SCU_RoleSelectionNegotiation,
)
from pynetdicom.presentation import PresentationContext, negotiate_as_acceptor

from pacs_gateway.ul import dimse, pdu

log = logging.getLogger(__name__)

APPLICATION_CONTEXT = "1.2.840.10008.3.1.1.1"
IMPLEMENTATION_UID = "1.2.826.0.1.3680043.8.498.7.1.1"
IMPLEMENTATION_VERSION = "TELERAD_01"


@dataclass
class AssociationInfo:
    """What the handlers learn about an association."""

    id: str
    calling_ae: str
    called_ae: str
    address: str
    port: int
    peer_max_pdu: int = 0
    contexts: dict[int, str] = field(default_factory=dict)  # context id -> transfer syntax UID
    abstract: dict[int, str] = field(default_factory=dict)  # context id -> abstract syntax UID


@dataclass
class StoreRequest:
    """A whole C-STORE request: the command's fields and the data set bytes as received."""

    assoc: AssociationInfo
    context_id: int
    transfer_syntax: str
    sop_class_uid: str
    sop_instance_uid: str
    message_id: int
    dataset: bytearray


class Handlers:
    """The service's callbacks (all receive the association's ``AssociationInfo``).

    requested(info) -> None or an A-ASSOCIATE-RJ (result, source, diagnostic)
    store(request) -> (status, error_comment or None)
    closed(info, how) -> None, with how in {"released", "aborted", "closed"}
    """

    def __init__(self, requested: Callable, store: Callable, closed: Callable):
        self.requested, self.store, self.closed = requested, store, closed


def user_information(max_pdu: int) -> list:
    """Our User Information items: maximum PDU we receive, implementation class UID and version."""
    ml = MaximumLengthNotification()
    ml.maximum_length_received = max_pdu
    ic = ImplementationClassUIDNotification()
    ic.implementation_class_uid = UID(IMPLEMENTATION_UID)
    iv = ImplementationVersionNameNotification()
    iv.implementation_version_name = IMPLEMENTATION_VERSION
    return [ml, ic, iv]


def _peer_max_pdu(user_information) -> int:
    for item in user_information or ():
        if isinstance(item, MaximumLengthNotification):
            return int(item.maximum_length_received or 0)
    return 0


class Acceptor:
    def __init__(
        self,
        sock: socket.socket,
        info: AssociationInfo,
        *,
        supported: list[PresentationContext],
        handlers: Handlers,
        max_pdu: int,
        acse_timeout: float,
        network_timeout: float,
        refuse: tuple[int, int, int] | None = None,
    ):
        self.sock, self.info, self.supported, self.handlers = sock, info, supported, handlers
        self.max_pdu, self.acse_timeout, self.network_timeout = max_pdu, acse_timeout, network_timeout
        self.refuse = refuse
        slack = max_pdu + 65536 if max_pdu else 1 << 30
        self.reader = pdu.PduReader(sock, slack)

    # -- phases ---------------------------------------------------------------
    def run(self) -> None:
        established = False
        how = "closed"
        try:
            self.sock.settimeout(self.acse_timeout)
            established = self._negotiate()
            if established:
                self.sock.settimeout(self.network_timeout)
                how = self._data_phase()
        except socket.timeout:
            log.warning("association %s from '%s' timed out; aborting", self.info.id, self.info.calling_ae)
            self._send(pdu.abort())
            how = "aborted"
        except pdu.PeerClosed as exc:
            if established:
                log.warning("association %s from '%s': connection lost (%s)", self.info.id, self.info.calling_ae, exc)
            how = "closed"
        except pdu.ProtocolError as exc:
            log.warning("association %s from '%s': %s; aborting", self.info.id, self.info.calling_ae, exc)
            self._send(pdu.abort(0x02, exc.reason))
            how = "aborted"
        finally:
            try:
                self.sock.close()
            except OSError:
                pass
            if established:
                self.handlers.closed(self.info, how)

    def _send(self, data: bytes) -> bool:
        try:
            self.sock.sendall(data)
            return True
        except OSError:
            return False

    def _negotiate(self) -> bool:
        kind, body = self.reader.read()
        if kind != pdu.A_ASSOCIATE_RQ:
            raise pdu.ProtocolError(f"expected A-ASSOCIATE-RQ, got PDU type 0x{kind:02X}", pdu.ABORT_UNEXPECTED_PDU)
        rq = A_ASSOCIATE_RQ()
        try:
            rq.decode(b"\x01\x00" + len(body).to_bytes(4, "big") + bytes(body))
            primitive = rq.to_primitive()
        except Exception as exc:  # pynetdicom raises a variety of errors on malformed items
            raise pdu.ProtocolError(f"malformed A-ASSOCIATE-RQ: {exc}", pdu.ABORT_INVALID_PARAMETER) from None
        self.info.calling_ae = str(primitive.calling_ae_title).strip()
        self.info.called_ae = str(primitive.called_ae_title).strip()
        self.info.peer_max_pdu = _peer_max_pdu(primitive.user_information)
        reason = self.refuse or self.handlers.requested(self.info)
        if reason:
            self._send(pdu.associate_rj(*reason))
            return False
        roles = {
            str(i.sop_class_uid): (i.scu_role, i.scp_role)
            for i in primitive.user_information
            if isinstance(i, SCP_SCU_RoleSelectionNegotiation)
        }
        results, ac_roles = negotiate_as_acceptor(primitive.presentation_context_definition_list, self.supported, roles or None)
        for cx in results:
            if cx.result == 0x00 and cx.transfer_syntax:
                self.info.contexts[int(cx.context_id)] = str(cx.transfer_syntax[0])
                self.info.abstract[int(cx.context_id)] = str(cx.abstract_syntax)
        self._send(self._accept(primitive, results, ac_roles))
        return True

    def _accept(self, rq: A_ASSOCIATE, results, roles) -> bytes:
        p = A_ASSOCIATE()
        p.application_context_name = UID(APPLICATION_CONTEXT)
        p.calling_ae_title = rq.calling_ae_title
        p.called_ae_title = rq.called_ae_title
        p.result = 0x00
        p.result_source = 0x01
        p.presentation_context_definition_results_list = results
        p.user_information = [*user_information(self.max_pdu), *roles]
        ac = A_ASSOCIATE_AC()
        ac.from_primitive(p)
        return ac.encode()

    def _data_phase(self) -> str:
        command = bytearray()
        dataset = bytearray()
        request: dimse.Command | None = None
        context_id = 0
        while True:
            kind, body = self.reader.read()
            if kind == pdu.A_RELEASE_RQ:
                self._send(pdu.release_rp())
                return "released"
            if kind == pdu.A_ABORT:
                return "aborted"
            if kind != pdu.P_DATA_TF:
                raise pdu.ProtocolError(f"unexpected PDU type 0x{kind:02X} in the data phase", pdu.ABORT_UNEXPECTED_PDU)
            for cx, is_command, is_last, fragment in pdu.iter_pdvs(body):
                if cx not in self.info.contexts:
                    raise pdu.ProtocolError(f"PDV on presentation context {cx}, which was not accepted",
                                            pdu.ABORT_INVALID_PARAMETER)
                if is_command:
                    if request is not None:
                        raise pdu.ProtocolError("a new command began before the data set ended", pdu.ABORT_UNEXPECTED_PDU)
                    command += fragment
                    if not is_last:
                        continue
                    try:
                        request = dimse.decode_command(command)
                    except dimse.CommandError as exc:
                        raise pdu.ProtocolError(str(exc), pdu.ABORT_INVALID_PARAMETER) from None
                    command.clear()
                    context_id = cx
                    if request.has_dataset:
                        continue
                else:
                    if request is None:
                        raise pdu.ProtocolError("a data set fragment arrived without its command", pdu.ABORT_UNEXPECTED_PDU)
                    dataset += fragment
                    if not is_last:
                        continue
                self._dispatch(request, context_id, dataset)
                request, dataset = None, bytearray()

    def _dispatch(self, request: dimse.Command, context_id: int, dataset: bytearray) -> None:
        comment = None
        if request.command_field == dimse.C_ECHO_RQ:
            status = 0x0000
        elif request.command_field == dimse.C_STORE_RQ:
            req = StoreRequest(
                assoc=self.info,
                context_id=context_id,
                transfer_syntax=self.info.contexts[context_id],
                sop_class_uid=request.sop_class_uid,
                sop_instance_uid=request.sop_instance_uid,
                message_id=request.message_id,
                dataset=dataset,
            )
            status, comment = self.handlers.store(req)
        else:
            raise pdu.ProtocolError(f"DIMSE command 0x{request.command_field:04X} is not supported here",
                                    pdu.ABORT_UNEXPECTED_PDU)
        if not self._send(pdu.p_data(context_id, dimse.encode_response(request, status, comment))):
            raise pdu.PeerClosed("could not send the response")

