"""C-ECHO and C-STORE as a service user: one association per batch of files.

Files are sent as stored (raw bytes, no decode) when the peer accepts their
transfer syntax; otherwise they are decoded and sent in a syntax it accepts.
Nagle's algorithm is switched off on the socket (see MEASURED.md).
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from pydicom import dcmread
from pydicom.errors import InvalidDicomError
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE, _config, build_context
from pynetdicom.sop_class import Verification

from pacs_gateway.errors import GatewayError
from pacs_gateway.status import describe

log = logging.getLogger(__name__)
MAX_CONTEXTS = 128
# Send files from disk as they are (chunked, never decoded) when the syntax is accepted.
_config.STORE_SEND_CHUNKED_DATASET = True


class AssociationFailed(GatewayError, ConnectionError):
    exit_code = 3


@dataclass(frozen=True)
class FileInfo:
    path: Path
    sop_class_uid: str
    sop_instance_uid: str
    transfer_syntax: str


@dataclass
class SendResult:
    path: Path
    status: int | None  # None: not sent (unreadable, or association lost)
    message: str

    @property
    def ok(self) -> bool:
        return self.status is not None and (self.status == 0 or (self.status & 0xF000) == 0xB000)


def inspect_file(path: Path) -> FileInfo:
    """Read the identifying header of a Part-10 file (no pixel data)."""
    try:
        ds = dcmread(path, stop_before_pixels=True, specific_tags=["SOPClassUID", "SOPInstanceUID"])
        return FileInfo(
            path,
            str(ds.file_meta.MediaStorageSOPClassUID if "MediaStorageSOPClassUID" in ds.file_meta else ds.SOPClassUID),
            str(ds.file_meta.get("MediaStorageSOPInstanceUID", ds.get("SOPInstanceUID", ""))),
            str(ds.file_meta.TransferSyntaxUID),
        )
    except (InvalidDicomError, AttributeError, KeyError, ValueError, OSError) as exc:
        raise ValueError(f"not a readable DICOM Part-10 file: {exc}") from None


def _nodelay(assoc) -> None:
    try:
        assoc.dul.socket.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except (AttributeError, OSError):
        pass


def _make_ae(calling_ae: str, timeout_s: float, max_pdu: int) -> AE:
    ae = AE(ae_title=calling_ae)
    ae.acse_timeout = timeout_s
    ae.dimse_timeout = timeout_s
    ae.network_timeout = timeout_s
    ae.maximum_pdu_size = max_pdu
    return ae


def echo(host: str, port: int, called_ae: str, calling_ae: str = "TELERAD", timeout_s: float = 10.0) -> int:
    """C-ECHO; returns the status or raises :class:`AssociationFailed`."""
    ae = _make_ae(calling_ae, timeout_s, 16382)
    ae.add_requested_context(Verification)
    assoc = ae.associate(host, port, ae_title=called_ae)
    if not assoc.is_established:
        raise AssociationFailed(association_failure(assoc, host, port, called_ae))
    try:
        st = assoc.send_c_echo()
        if "Status" not in st:
            raise AssociationFailed(f"no C-ECHO response from {called_ae}@{host}:{port}")
        return int(st.Status)
    finally:
        assoc.release()


def association_failure(assoc, host, port, called_ae) -> str:
    where = f"{called_ae}@{host}:{port}"
    if assoc.is_rejected:
        rj = assoc.acceptor.primitive
        reasons = {
            (1, 3): "calling AE title not recognised",
            (1, 7): "called AE title not recognised",
            (3, 2): "local limit exceeded (the peer is busy or out of resources)",
        }
        key = (getattr(rj, "result_source", None), getattr(rj, "diagnostic", None))
        why = reasons.get(key, f"source {key[0]}, reason {key[1]}")
        return f"association rejected by {where}: {why}"
    try:
        socket.create_connection((host, port), timeout=5).close()
    except OSError as exc:
        return f"cannot connect to {where}: {exc.strerror or exc}"
    if assoc.is_aborted:
        return f"association aborted by {where}"
    return f"no answer from {where} (is it a DICOM peer?)"


def _contexts(infos: list[FileInfo]):
    wanted: dict[str, list[str]] = {}
    for i in infos:
        lst = wanted.setdefault(i.sop_class_uid, [])
        if i.transfer_syntax not in lst:
            lst.append(i.transfer_syntax)
    contexts = []
    for sop, syntaxes in wanted.items():
        for ts in syntaxes:
            contexts.append(build_context(sop, [ts]))
        if not ({ExplicitVRLittleEndian, ImplicitVRLittleEndian} <= set(syntaxes)):
            contexts.append(build_context(sop, [ExplicitVRLittleEndian, ImplicitVRLittleEndian]))
    if len(contexts) > MAX_CONTEXTS:
        raise GatewayError(f"these files need {len(contexts)} presentation contexts; one association allows {MAX_CONTEXTS}")
    return contexts


def send_files(
    infos: list[FileInfo],
    host: str,
    port: int,
    called_ae: str,
    calling_ae: str = "TELERAD",
    *,
    timeout_s: float = 30.0,
    max_pdu: int = 262_144,
    on_result: Callable[[SendResult], None] = lambda r: None,
) -> list[SendResult]:
    """C-STORE ``infos`` over one association; one :class:`SendResult` per file."""
    ae = _make_ae(calling_ae, timeout_s, max_pdu)
    ae.requested_contexts = _contexts(infos)
    assoc = ae.associate(host, port, ae_title=called_ae)
    if not assoc.is_established:
        raise AssociationFailed(association_failure(assoc, host, port, called_ae))
    _nodelay(assoc)
    accepted = {(cx.abstract_syntax, cx.transfer_syntax[0]) for cx in assoc.accepted_contexts}
    results: list[SendResult] = []
    try:
        for info in infos:
            result = _send_one(assoc, info, accepted)
            results.append(result)
            on_result(result)
            if not assoc.is_established:
                break
    finally:
        if assoc.is_established:
            assoc.release()
    for info in infos[len(results):]:
        r = SendResult(info.path, None, "not sent: the association was lost")
        results.append(r)
        on_result(r)
    return results


def _send_one(assoc, info: FileInfo, accepted: set) -> SendResult:
    try:
        if (info.sop_class_uid, info.transfer_syntax) in accepted:
            rsp = assoc.send_c_store(info.path)
        else:
            ds = dcmread(info.path)
            target = next(
                (ts for sop, ts in accepted if sop == info.sop_class_uid and ts in (ExplicitVRLittleEndian, ImplicitVRLittleEndian)),
                None,
            )
            if target is None:
                return SendResult(info.path, None, "not sent: the peer accepts no transfer syntax for this SOP class")
            if ds.file_meta.TransferSyntaxUID.is_compressed:
                ds.decompress()
            ds.file_meta.TransferSyntaxUID = target
            rsp = assoc.send_c_store(ds)
    except (ValueError, OSError, RuntimeError, InvalidDicomError) as exc:
        return SendResult(info.path, None, f"not sent: {exc}")
    if rsp is None or "Status" not in rsp:
        return SendResult(info.path, None, "no response (association lost or timed out)")
    st = int(rsp.Status)
    return SendResult(info.path, st, describe(st) if st else "stored")


def expand_paths(paths: Iterable[str | Path]) -> list[Path]:
    """Files named, plus every file under the folders named (sorted, recursive)."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out.extend(sorted(f for f in p.rglob("*") if f.is_file()))
        elif p.exists():
            out.append(p)
        else:
            raise FileNotFoundError(2, "no such file or folder", str(p))
    return out
