"""Association and C-STORE handlers. Thin: no pixel decoding, no state of their own.

Dependencies arrive as explicit handler arguments (``evt_handlers=[(evt, fn, [ctx])]``).
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
from pacs_gateway.dicom_bytes import check_structure, read_header
from pacs_gateway.errors import BadDataset, IndexError_
from pacs_gateway.ingest import Incoming, Outcome
from pacs_gateway.store import discard
from telerad.logctx import log_context

log = logging.getLogger(__name__)


def _assoc_id(event) -> str:
    assoc = event.assoc
    aid = getattr(assoc, "_telerad_id", None)
    if aid is None:
        aid = f"as-{uuid.uuid4().hex[:8]}"
        assoc._telerad_id = aid
    return aid


def handle_requested(event, ctx) -> None:
    """EVT_REQUESTED: refuse unknown calling AEs and a full disk, before negotiation."""
    assoc = event.assoc
    calling = assoc.requestor.primitive.calling_ae_title.strip()
    addr = f"{assoc.requestor.address}:{assoc.requestor.port}"
    token = log_context.set(_assoc_id(event))
    try:
        if not ctx.settings.dicom.accept_any_ae and ctx.clinics.by_ae(calling) is None:
            log.warning("rejected association from %s: calling AE title '%s' not recognised", addr, calling)
            _reject(assoc, status.REJECT_CALLING_AE)
            return
        used = ctx.store.usage_pct()
        if used >= ctx.settings.dicom.disk_high_water_pct:
            log.error(
                "rejected association from %s (%s): disk %.1f%% full, above the %.1f%% high-water mark",
                addr, calling, used, ctx.settings.dicom.disk_high_water_pct,
            )
            _reject(assoc, status.REJECT_LOCAL_LIMIT)
            return
        log.info("association requested by '%s' from %s", calling, addr)
    finally:
        log_context.reset(token)


def _reject(assoc, reason: tuple[int, int, int]) -> None:
    """Send A-ASSOCIATE-RJ and wait until it has left, before the socket is closed."""
    assoc.acse.send_reject(*reason)
    assoc.kill()


def handle_echo(event) -> int:
    return status.SUCCESS


def handle_closed(event, ctx) -> None:
    """EVT_RELEASED / EVT_ABORTED / EVT_CONN_CLOSE: the series it touched start their quiet period."""
    ctx.activity.close(_assoc_id(event))


def _meta_length(part10: bytes) -> int:
    """Length of preamble + prefix + file meta group in a Part-10 byte string."""
    # (0002,0000) UL group length follows the 128-byte preamble and "DICM"
    return 144 + struct.unpack_from("<I", part10, 140)[0]


def handle_store(event, ctx) -> int:
    aid = _assoc_id(event)
    token = log_context.set(aid)
    tmp = None
    try:
        calling = event.assoc.requestor.ae_title.strip()
        ts = str(event.context.transfer_syntax)
        sop_in_command = str(event.request.AffectedSOPInstanceUID)
        class_in_command = str(event.request.AffectedSOPClassUID)
        part10 = event.encoded_dataset(include_meta=True)
        meta_len = _meta_length(part10)
        try:
            check_structure(part10, ts, offset=meta_len)
            header = read_header(part10, ctx.header_keywords)
            if header.sop_uid != sop_in_command:
                raise BadDataset(
                    f"SOP Instance UID in the data set ({header.sop_uid}) differs from the command's ({sop_in_command})",
                    status.INSTANCE_MISMATCH,
                )
            if header.sop_class_uid and header.sop_class_uid != class_in_command:
                raise BadDataset(
                    f"SOP Class UID in the data set ({header.sop_class_uid}) differs from the command's ({class_in_command})",
                    status.SOP_CLASS_MISMATCH,
                )
        except BadDataset as exc:
            log.warning("refused instance %s from '%s': %s (0x%04X)", sop_in_command, calling, exc, exc.status)
            return exc.status
        crc = zlib.crc32(memoryview(part10)[meta_len:])
        try:
            tmp = ctx.store.tmp / f"{uuid.uuid4().hex}.part"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
            try:
                view = memoryview(part10)
                while view:
                    view = view[os.write(fd, view):]
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            log.error("cannot write instance %s: %s", sop_in_command, exc.strerror or exc)
            discard(tmp)
            return status.OUT_OF_RESOURCES_WRITE
        clinic = ctx.clinics.by_ae(calling)
        ctx.activity.touch(aid, header.series_uid)
        item = Incoming(
            header=header,
            transfer_syntax=ts,
            calling_ae=calling,
            clinic_id=clinic.id if clinic else None,
            tmp=tmp,
            size=len(part10),
            crc32=crc,
            received_at=datetime.now(timezone.utc),
        )
        tmp = None  # the writer owns it now
        try:
            outcome = ctx.writer.submit(item).result(timeout=ctx.settings.dicom.dimse_timeout_s)
        except (IndexError_, FutureTimeout) as exc:
            log.error("instance %s not indexed: %s", sop_in_command, exc or "timed out")
            return status.OUT_OF_RESOURCES_INDEX
        if outcome is Outcome.DUPLICATE:
            log.debug("instance %s already stored with identical bytes", sop_in_command)
        return status.SUCCESS
    except Exception:
        log.exception("unexpected failure storing an instance")
        discard(tmp)
        return status.OUT_OF_RESOURCES_WRITE
    finally:
        log_context.reset(token)


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
