"""Association and C-STORE handlers. Thin: no pixel decoding, no state of their own.

Dependencies arrive as an explicit ``ctx`` argument (bound in ``scp/ae.py``).
"""

from __future__ import annotations

import logging
import struct
import time

from pacs_gateway import status
from pacs_gateway.errors import BadDataset
from pacs_gateway.ingest import Outcome
from pacs_gateway.intake import check_header, index_durable
from pacs_gateway.store import discard
from pacs_gateway.ul.acceptor import IMPLEMENTATION_UID, IMPLEMENTATION_VERSION, AssociationInfo, StoreRequest
from telerad.logctx import escape

log = logging.getLogger(__name__)


def disk_ok(ctx) -> bool:
    """False when the store's disk is at or above ``dicom.disk_high_water_pct`` (checked per C-STORE)."""
    try:
        return ctx.store.usage_pct() < ctx.settings.dicom.disk_high_water_pct
    except OSError:
        return False


def handle_requested(info: AssociationInfo, ctx) -> tuple[int, int, int] | None:
    """Before negotiation: refuse a wrong called AE, unknown calling AEs, a certificate bound to
    another AE and a full disk (returns the A-ASSOCIATE-RJ reason)."""
    s = ctx.settings.dicom
    calling, addr = escape(info.calling_ae), f"{info.address}:{info.port}"
    if info.called_ae != s.ae_title:
        log.warning("rejected association from %s (%s): called AE title '%s' is not ours ('%s')",
                    addr, calling, escape(info.called_ae), s.ae_title)
        return status.REJECT_CALLED_AE
    if not s.accept_any_ae and ctx.clinics.by_ae(info.calling_ae) is None:
        log.warning("rejected association from %s: calling AE title '%s' not recognised", addr, calling)
        return status.REJECT_CALLING_AE
    if info.tls and s.tls_client_aes:
        bound = s.tls_client_aes.get(info.peer_cert_cn or "")
        if bound is None and s.tls_require_client_cert:
            log.warning("rejected association from %s (%s): client certificate '%s' is not mapped to a clinic",
                        addr, calling, escape(info.peer_cert_cn or ""))
            return status.REJECT_CALLING_AE
        if bound is not None and bound != info.calling_ae:
            log.warning("rejected association from %s: certificate '%s' may call as '%s', not '%s'",
                        addr, escape(info.peer_cert_cn or ""), bound, calling)
            return status.REJECT_CALLING_AE
    if not disk_ok(ctx):
        log.error("rejected association from %s (%s): disk above the %.1f%% high-water mark",
                  addr, calling, s.disk_high_water_pct)
        return status.REJECT_LOCAL_LIMIT
    log.info("association from '%s' (%s%s) accepted", calling, addr, ", TLS" if info.tls else "")
    return None


def handle_closed(info: AssociationInfo, how: str, ctx) -> None:
    """Released, aborted or dropped: the series it touched start their quiet period."""
    log.info("association from '%s' %s", escape(info.calling_ae), how)
    ctx.activity.close(info.id)


def handle_store(req: StoreRequest, ctx) -> tuple[int, str | None]:
    """C-STORE: check the spooled data set, index it; answer only then. Returns (status, error comment).

    The index writer renames the spool file into the store and fsyncs it, its directory and the
    index before this answers success; a refused spool file is removed here.
    """
    spooled = req.spooled
    calling = req.assoc.calling_ae
    if spooled is None:
        if req.disk_full:
            log.error("refused instance %s: disk above the %.1f%% high-water mark", req.sop_instance_uid,
                      ctx.settings.dicom.disk_high_water_pct)
            return status.OUT_OF_RESOURCES_DISK_FULL, "the gateway's disk is full"
        return status.OUT_OF_RESOURCES_WRITE, "the gateway could not write the instance"
    try:
        try:
            header = check_header(ctx, spooled.path, spooled.offset, req.transfer_syntax,
                                  sop_class_uid=req.sop_class_uid, sop_instance_uid=req.sop_instance_uid)
        except BadDataset as exc:
            discard(spooled.path)
            log.warning("refused instance %s from '%s': %s (0x%04X)", req.sop_instance_uid, escape(calling),
                        escape(exc, 300), exc.status)
            return exc.status, str(exc)
        clinic = ctx.clinics.by_ae(calling)
        ctx.activity.touch(req.assoc.id, header.series_uid)
        result = index_durable(ctx, spooled.path, header, req.transfer_syntax, calling_ae=calling,
                               clinic_id=clinic.id if clinic else None, size=spooled.size, crc32=spooled.crc32,
                               timeout_s=ctx.settings.dicom.dimse_timeout_s)
        if result.outcome is Outcome.DUPLICATE:
            log.debug("instance %s already stored with identical bytes", req.sop_instance_uid)
        return result.status, result.error
    except Exception:
        log.exception("unexpected failure storing an instance")
        discard(spooled.path)
        return status.OUT_OF_RESOURCES_WRITE, "internal error while storing"


def _element(group: int, element: int, vr: bytes, value: bytes) -> bytes:
    if vr == b"OB":
        return struct.pack("<HH2sxxI", group, element, vr, len(value)) + value
    return struct.pack("<HH2sH", group, element, vr, len(value)) + value


def _ui(uid: str) -> bytes:
    raw = uid.encode("ascii")
    return raw + b"\0" if len(raw) % 2 else raw


def _text(value: str) -> bytes:
    raw = value.encode("ascii", "replace")
    return raw + b" " if len(raw) % 2 else raw


def file_meta(sop_class: str, sop_instance: str, transfer_syntax: str) -> bytes:
    """Preamble, ``DICM`` and the File Meta Information group (PS3.10 7.1) for a received instance.

    Deterministic for the same instance and transfer syntax (no sender AE, no time), so
    an identical re-send gives identical files and is recognised as a duplicate.
    """
    body = b"".join((
        _element(2, 0x0001, b"OB", b"\x00\x01"),
        _element(2, 0x0002, b"UI", _ui(sop_class)),
        _element(2, 0x0003, b"UI", _ui(sop_instance)),
        _element(2, 0x0010, b"UI", _ui(transfer_syntax)),
        _element(2, 0x0012, b"UI", _ui(IMPLEMENTATION_UID)),
        _element(2, 0x0013, b"SH", _text(IMPLEMENTATION_VERSION)),
    ))  # fmt: skip
    return b"\0" * 128 + b"DICM" + _element(2, 0x0000, b"UL", struct.pack("<I", len(body))) + body


class Activity:
    """Which open associations are delivering to which series (in memory)."""

    def __init__(self):
        import threading

        self._lock = threading.Lock()
        self._by_assoc: dict[str, set[str]] = {}
        self._open: dict[str, int] = {}
        self._released: dict[str, float] = {}

    def touch(self, assoc_id: str, series_uid: str) -> None:
        with self._lock:
            seen = self._by_assoc.setdefault(assoc_id, set())
            if series_uid not in seen:
                seen.add(series_uid)
                self._open[series_uid] = self._open.get(series_uid, 0) + 1

    def close(self, assoc_id: str) -> None:
        now = time.time()
        with self._lock:
            for uid in self._by_assoc.pop(assoc_id, ()):
                n = self._open.get(uid, 1) - 1
                if n <= 0:
                    self._open.pop(uid, None)
                else:
                    self._open[uid] = n
                self._released[uid] = now
            if len(self._released) > 10_000:  # forget releases long past any quiet period
                self._released = {k: t for k, t in self._released.items() if now - t < 3600}

    def is_busy(self, series_uid: str) -> bool:
        with self._lock:
            return self._open.get(series_uid, 0) > 0

    def released_at(self, series_uid: str) -> float | None:
        with self._lock:
            return self._released.get(series_uid)
