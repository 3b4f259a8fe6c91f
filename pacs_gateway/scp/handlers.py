"""Association and C-STORE handlers. Thin: no pixel decoding, no state of their own.

Dependencies arrive as an explicit ``ctx`` argument (bound in ``scp/ae.py``).
"""

from __future__ import annotations

import logging
import os
import struct
import time
import uuid
import zlib
from concurrent.futures import TimeoutError as FutureTimeout
from datetime import datetime, timezone

from pacs_gateway import status
from pacs_gateway.errors import BadDataset, IndexError_
from pacs_gateway.ingest import Incoming, Outcome
from pacs_gateway.store import discard
from pacs_gateway.ul.acceptor import IMPLEMENTATION_UID, IMPLEMENTATION_VERSION, AssociationInfo, StoreRequest

log = logging.getLogger(__name__)


def handle_requested(info: AssociationInfo, ctx) -> tuple[int, int, int] | None:
    """Before negotiation: refuse unknown calling AEs and a full disk (returns the A-ASSOCIATE-RJ reason)."""
    calling, addr = info.calling_ae, f"{info.address}:{info.port}"
    if not ctx.settings.dicom.accept_any_ae and ctx.clinics.by_ae(calling) is None:
        log.warning("rejected association from %s: calling AE title '%s' not recognised", addr, calling)
        return status.REJECT_CALLING_AE
    used = ctx.store.usage_pct()
    if used >= ctx.settings.dicom.disk_high_water_pct:
        log.error(
            "rejected association from %s (%s): disk %.1f%% full, above the %.1f%% high-water mark",
            addr, calling, used, ctx.settings.dicom.disk_high_water_pct,
        )
        return status.REJECT_LOCAL_LIMIT
    log.info("association from '%s' (%s) accepted", calling, addr)
    return None


def handle_closed(info: AssociationInfo, how: str, ctx) -> None:
    """Released, aborted or dropped: the series it touched start their quiet period."""
    log.info("association from '%s' %s", info.calling_ae, how)
    ctx.activity.close(info.id)


def handle_store(req: StoreRequest, ctx) -> tuple[int, str | None]:
    """C-STORE: check, write durably, index; answer only then. Returns (status, error comment)."""
    tmp = None
    calling = req.assoc.calling_ae
    try:
        meta = file_meta(req.sop_class_uid, req.sop_instance_uid, req.transfer_syntax)
        try:
            header = ctx.header_reader.read(req.dataset, req.transfer_syntax, lambda: meta + bytes(req.dataset))
            if header.sop_uid != req.sop_instance_uid:
                raise BadDataset(
                    f"SOP Instance UID in the data set ({header.sop_uid}) differs from the command's ({req.sop_instance_uid})",
                    status.INSTANCE_MISMATCH,
                )
            if header.sop_class_uid and header.sop_class_uid != req.sop_class_uid:
                raise BadDataset(
                    f"SOP Class UID in the data set ({header.sop_class_uid}) differs from the command's ({req.sop_class_uid})",
                    status.SOP_CLASS_MISMATCH,
                )
        except BadDataset as exc:
            log.warning("refused instance %s from '%s': %s (0x%04X)", req.sop_instance_uid, calling, exc, exc.status)
            return exc.status, str(exc)
        crc = zlib.crc32(req.dataset)
        try:
            tmp = ctx.store.tmp / f"{uuid.uuid4().hex}.part"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
            try:
                _write_all(fd, meta, req.dataset)
                os.fdatasync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            log.error("cannot write instance %s: %s", req.sop_instance_uid, exc.strerror or exc)
            discard(tmp)
            return status.OUT_OF_RESOURCES_WRITE, "the gateway could not write the instance"
        clinic = ctx.clinics.by_ae(calling)
        ctx.activity.touch(req.assoc.id, header.series_uid)
        item = Incoming(
            header=header,
            transfer_syntax=req.transfer_syntax,
            calling_ae=calling,
            clinic_id=clinic.id if clinic else None,
            tmp=tmp,
            size=len(meta) + len(req.dataset),
            crc32=crc,
            received_at=datetime.now(timezone.utc),
        )
        tmp = None  # the writer owns it now
        try:
            outcome = ctx.writer.submit(item).result(timeout=ctx.settings.dicom.dimse_timeout_s)
        except (IndexError_, FutureTimeout) as exc:
            log.error("instance %s not indexed: %s", req.sop_instance_uid, exc or "timed out")
            return status.OUT_OF_RESOURCES_INDEX, "the gateway could not index the instance"
        if outcome is Outcome.DUPLICATE:
            log.debug("instance %s already stored with identical bytes", req.sop_instance_uid)
        return status.SUCCESS, None
    except Exception:
        log.exception("unexpected failure storing an instance")
        discard(tmp)
        return status.OUT_OF_RESOURCES_WRITE, "internal error while storing"


def _write_all(fd: int, *parts) -> None:
    views = [memoryview(p) for p in parts]
    while views:
        n = os.writev(fd, views)
        while views and n >= len(views[0]):
            n -= len(views[0])
            views.pop(0)
        if views and n:
            views[0] = views[0][n:]


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
