"""One negotiated association, served on its own thread with blocking reads.

Negotiation reuses pynetdicom's A-ASSOCIATE PDU classes and its presentation
context negotiation (``negotiate_as_acceptor``). The data phase is a plain
loop: read a PDU (within the idle and per-PDU deadlines), append its data set
fragments to a spool file on disk (``spool.py``), and when a message is whole
hand it to the service's handler and send the response at once. There is no
polling and no per-PDU thread hop, which is what makes this faster than
pynetdicom's reactor-based AE (see ``benchmarks/results/receive.json``). The
A-ASSOCIATE-RQ was read and judged before this thread existed (``server.py``).
"""

from __future__ import annotations

import logging
import socket
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

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
from pacs_gateway.ul.limits import Deadline, Limits
from pacs_gateway.ul.spool import Sink, Spool, Spooled, TooLarge
from telerad.logctx import escape

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
    tls: bool = False
    peer_cert_cn: str | None = None  # the TLS client certificate's subject common name, when one was verified


@dataclass
class StoreRequest:
    """A whole C-STORE request: the command's fields and the durable spool file holding the data set.

    The handler owns ``spooled.path`` and must move it into the store or remove it. ``disk_full``
    means the data set was read but not kept (answer 0xA702); ``spooled`` is then None.
    """

    assoc: AssociationInfo
    context_id: int
    transfer_syntax: str
    sop_class_uid: str
    sop_instance_uid: str
    message_id: int
    spooled: Spooled | None
    disk_full: bool = False


@dataclass
class Handlers:
    """The service's callbacks (all receive the association's ``AssociationInfo``).

    requested(info) -> None or an A-ASSOCIATE-RJ (result, source, diagnostic)
    store(request) -> (status, error_comment or None)
    closed(info, how) -> None, with how in {"released", "aborted", "closed"}
    file_meta(sop_class, sop_instance, transfer_syntax) -> the Part-10 prefix the spool file starts with
    disk_ok() -> False when new data must be refused (the disk is above its high-water mark)
    spool_dir : where data sets are spooled (on the store's file system, so the rename is atomic)
    """

    requested: Callable
    store: Callable
    closed: Callable
    file_meta: Callable = lambda *a: b""
    disk_ok: Callable = lambda: True
    spool_dir: Path | None = None


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


class _NoTraceback(logging.Filter):
    """pynetdicom logs a traceback for each undecodable byte string in a PDU; a peer's junk is one
    warning line of ours (``decode_rq``), not a traceback in the operator's log."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.exc_info is None


logging.getLogger("pynetdicom.utils").addFilter(_NoTraceback())


def decode_rq(body) -> A_ASSOCIATE:
    """The A-ASSOCIATE primitive of an A-ASSOCIATE-RQ body; ProtocolError when it is malformed."""
    if len(body) < 68:
        raise pdu.ProtocolError(f"A-ASSOCIATE-RQ of {len(body)} bytes is too short", pdu.ABORT_INVALID_PARAMETER)
    for name, raw in (("called", bytes(body[4:20])), ("calling", bytes(body[20:36]))):
        if any(b < 0x20 or b > 0x7E for b in raw) or raw.strip(b" ") == b"":
            raise pdu.ProtocolError(f"A-ASSOCIATE-RQ {name} AE title '{escape(raw)}' is not 1-16 printable ASCII "
                                    "characters", pdu.ABORT_INVALID_PARAMETER)
    rq = A_ASSOCIATE_RQ()
    try:
        rq.decode(b"\x01\x00" + len(body).to_bytes(4, "big") + bytes(body))
        primitive = rq.to_primitive()
        str(primitive.calling_ae_title), str(primitive.called_ae_title)
    except Exception as exc:  # pynetdicom raises a variety of errors on malformed items
        raise pdu.ProtocolError(f"malformed A-ASSOCIATE-RQ: {escape(exc)}", pdu.ABORT_INVALID_PARAMETER) from None
    return primitive


def fill_info(info: AssociationInfo, primitive: A_ASSOCIATE) -> None:
    info.calling_ae = str(primitive.calling_ae_title).strip()
    info.called_ae = str(primitive.called_ae_title).strip()
    info.peer_max_pdu = _peer_max_pdu(primitive.user_information)


class Acceptor:
    """Serves one association whose A-ASSOCIATE-RQ was read, decoded and allowed (``server.py``).

    Runs on the association's own thread: answers A-ASSOCIATE-AC, then reads PDUs under the
    idle/PDU/message deadlines of ``limits`` and spools each data set to disk as it arrives.
    """

    def __init__(self, sock: socket.socket, info: AssociationInfo, primitive: A_ASSOCIATE, *,
                 supported: list[PresentationContext], handlers: Handlers, limits: Limits):
        self.sock, self.info, self.primitive = sock, info, primitive
        self.supported, self.handlers, self.limits = supported, handlers, limits
        self.max_pdu = limits.max_pdu
        slack = self.max_pdu + 65536 if self.max_pdu else 1 << 30
        self.reader = pdu.PduReader(sock, slack)
        self.reader.send_timeout = limits.idle_s
        self.spool_dir = handlers.spool_dir or Path(tempfile.gettempdir())

    # -- phases ---------------------------------------------------------------
    def run(self) -> None:
        how = "closed"
        spool = None
        ident = f"association {self.info.id} from '{escape(self.info.calling_ae)}' ({self.info.address})"
        try:
            self.sock.settimeout(self.limits.idle_s)
            self._send(self._accept())
            how, spool = self._data_phase()
        except pdu.Timeout as exc:
            log.warning("%s: %s; aborting", ident, exc)
            self._send(pdu.abort())
            how = "aborted"
        except pdu.PeerClosed as exc:
            log.warning("%s: connection lost (%s)", ident, escape(exc))
        except pdu.ProtocolError as exc:
            log.warning("%s: %s; aborting", ident, exc)
            self._send(pdu.abort(0x02, exc.reason))
            how = "aborted"
        except Exception as exc:  # a bug must cost one association, answered with an A-ABORT, never the server
            log.error("%s: internal error %s: %s; aborting", ident, type(exc).__name__, escape(exc, 200),
                      exc_info=log.isEnabledFor(logging.DEBUG))
            self._send(pdu.abort())
            how = "aborted"
        finally:
            if self._open_spool is not None:
                self._open_spool.discard()
            try:
                self.sock.close()
            except OSError:
                pass
            self.handlers.closed(self.info, how)

    _open_spool = None

    def _send(self, data: bytes) -> bool:
        try:
            self.sock.sendall(data)
            return True
        except OSError:
            return False

    def _accept(self) -> bytes:
        rq = self.primitive
        roles = {
            str(i.sop_class_uid): (i.scu_role, i.scp_role)
            for i in rq.user_information
            if isinstance(i, SCP_SCU_RoleSelectionNegotiation)
        }
        results, ac_roles = negotiate_as_acceptor(rq.presentation_context_definition_list, self.supported, roles or None)
        for cx in results:
            if cx.result == 0x00 and cx.transfer_syntax:
                self.info.contexts[int(cx.context_id)] = str(cx.transfer_syntax[0])
                self.info.abstract[int(cx.context_id)] = str(cx.abstract_syntax)
        p = A_ASSOCIATE()
        p.application_context_name = UID(APPLICATION_CONTEXT)
        p.calling_ae_title = rq.calling_ae_title
        p.called_ae_title = rq.called_ae_title
        p.result = 0x00
        p.result_source = 0x01
        p.presentation_context_definition_results_list = results
        p.user_information = [*user_information(self.max_pdu), *ac_roles]
        ac = A_ASSOCIATE_AC()
        ac.from_primitive(p)
        return ac.encode()

    def _data_phase(self) -> tuple[str, None]:
        lim = self.limits
        command = bytearray()
        request: dimse.Command | None = None
        context_id = 0
        message: Deadline | None = None
        while True:
            kind, body = self.reader.read(lim.idle_s, lim.pdu_s)
            if kind == pdu.A_RELEASE_RQ:
                if request is not None:
                    raise pdu.ProtocolError("A-RELEASE-RQ in the middle of a DIMSE message", pdu.ABORT_UNEXPECTED_PDU)
                self._send(pdu.release_rp())
                return "released", None
            if kind == pdu.A_ABORT:
                return "aborted", None
            if kind != pdu.P_DATA_TF:
                raise pdu.ProtocolError(f"unexpected PDU type 0x{kind:02X} in the data phase", pdu.ABORT_UNEXPECTED_PDU)
            if message is None:
                message = Deadline(lim.message_s, f"a DIMSE message did not arrive whole within its time "
                                                  f"({lim.message_s:g} s + 1 s per {lim.min_rate} bytes)")
            else:
                message.extend(len(body) / lim.min_rate)
                try:
                    message.remaining()
                except TimeoutError as exc:
                    raise pdu.Timeout(str(exc)) from None
            for cx, is_command, is_last, fragment in pdu.iter_pdvs(body):
                if cx not in self.info.contexts:
                    raise pdu.ProtocolError(f"PDV on presentation context {cx}, which was not accepted",
                                            pdu.ABORT_INVALID_PARAMETER)
                if is_command:
                    if request is not None:
                        raise pdu.ProtocolError("a new command began before the data set ended", pdu.ABORT_UNEXPECTED_PDU)
                    command += fragment
                    if len(command) > lim.max_command:
                        raise pdu.ProtocolError(f"command set longer than {lim.max_command} bytes",
                                                pdu.ABORT_INVALID_PARAMETER)
                    if not is_last:
                        continue
                    try:
                        request = dimse.decode_command(command)
                    except dimse.CommandError as exc:
                        raise pdu.ProtocolError(str(exc), pdu.ABORT_INVALID_PARAMETER) from None
                    command.clear()
                    context_id = cx
                    if request.has_dataset:
                        self._open_spool = self._start_spool(request, cx)
                        continue
                else:
                    if request is None or self._open_spool is None:
                        raise pdu.ProtocolError("a data set fragment arrived without its command", pdu.ABORT_UNEXPECTED_PDU)
                    if cx != context_id:
                        raise pdu.ProtocolError("a data set fragment changed presentation context", pdu.ABORT_INVALID_PARAMETER)
                    try:
                        self._open_spool.write(fragment)
                    except TooLarge as exc:
                        raise pdu.ProtocolError(str(exc), pdu.ABORT_INVALID_PARAMETER) from None
                    if not is_last:
                        continue
                self._dispatch(request, context_id)
                request, message = None, None

    def _start_spool(self, request: dimse.Command, cx: int):
        if request.command_field != dimse.C_STORE_RQ:
            raise pdu.ProtocolError(f"DIMSE command 0x{request.command_field:04X} is not supported here",
                                    pdu.ABORT_UNEXPECTED_PDU)
        if not self.handlers.disk_ok():
            return Sink(self.limits.max_dataset, disk_full=True)
        meta = self.handlers.file_meta(request.sop_class_uid, request.sop_instance_uid, self.info.contexts[cx])
        try:
            return Spool(self.spool_dir, meta, self.limits.max_dataset, self.handlers.disk_ok)
        except OSError as exc:
            log.error("cannot open a spool file in %s: %s", self.spool_dir, exc.strerror or exc)
            return Sink(self.limits.max_dataset, disk_full=False)

    def _dispatch(self, request: dimse.Command, context_id: int) -> None:
        comment = None
        if request.command_field == dimse.C_ECHO_RQ:
            status = 0x0000
        elif request.command_field == dimse.C_STORE_RQ:
            spool, self._open_spool = self._open_spool, None
            spooled = None
            if spool is not None and spool.stored and not spool.disk_full:
                try:
                    spooled = spool.finish()
                except OSError as exc:
                    log.error("cannot make instance %s durable: %s", request.sop_instance_uid, exc.strerror or exc)
                    spool.discard()
            elif spool is not None:
                spool.discard()
            req = StoreRequest(
                assoc=self.info,
                context_id=context_id,
                transfer_syntax=self.info.contexts[context_id],
                sop_class_uid=request.sop_class_uid,
                sop_instance_uid=request.sop_instance_uid,
                message_id=request.message_id,
                spooled=spooled,
                disk_full=spool is not None and spool.disk_full,
            )
            status, comment = self.handlers.store(req)
        else:
            raise pdu.ProtocolError(f"DIMSE command 0x{request.command_field:04X} is not supported here",
                                    pdu.ABORT_UNEXPECTED_PDU)
        if not self._send(pdu.p_data(context_id, dimse.encode_response(request, status, comment))):
            raise pdu.PeerClosed("could not send the response")
