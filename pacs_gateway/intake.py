"""One durable intake path for a whole Part-10 file (C-STORE spool files, STOW-RS, generated results).

``ingest_file`` reads the file's header straight from the file (``mmap``: the pixel data is never
loaded), checks it like a received C-STORE, moves it into the store's temp folder and hands it to
the index writer, which renames it into place, fsyncs it and its directory, and commits its row.
It returns only after that (or a failure): the same guarantee a C-STORE Success carries. The file is always consumed: moved into the store, or
removed when it was refused, so nothing is ever half-stored.
"""

from __future__ import annotations

import logging
import mmap
import os
import shutil
import uuid
import zlib
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from pacs_gateway import status
from pacs_gateway.errors import BadDataset, IndexError_
from pacs_gateway.ingest import Incoming, Outcome
from pacs_gateway.store import discard
from telerad import dicom_header
from telerad.dicom_header import Unsupported

log = logging.getLogger(__name__)

_TS_TAG = b"\x02\x00\x10\x00UI"


@dataclass(frozen=True)
class IngestResult:
    """What happened to one file.

    status : the DIMSE status a C-STORE would have answered (``pacs_gateway.status``); 0 is success.
    outcome : ``Outcome.STORED``/``DUPLICATE``/``NEW_VERSION`` when ``status`` is 0, else None.
    error : a specific, human-readable reason when ``status`` is not 0 (safe to log: no PHI).
    """

    status: int
    outcome: Outcome | None = None
    study_uid: str = ""
    series_uid: str = ""
    sop_uid: str = ""
    sop_class_uid: str = ""
    transfer_syntax: str = ""
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == status.SUCCESS


def part10_layout(head: bytes | memoryview | mmap.mmap) -> tuple[int, str]:
    """``(dataset_offset, transfer_syntax_uid)`` of a Part-10 file from its first bytes (the shared reader's).

    Raises :class:`BadDataset` (0xC210) when the bytes are not a Part-10 file with a transfer syntax.
    """
    try:
        return dicom_header.part10_layout(head)
    except Unsupported as exc:
        raise BadDataset(str(exc), status.CANNOT_PARSE) from None


def check_header(ctx, path: Path, offset: int, transfer_syntax: str, *, sop_class_uid: str | None = None,
                 sop_instance_uid: str | None = None):
    """Read and check the header of the data set at ``path[offset:]`` without loading the file.

    Raises :class:`BadDataset` with the status to answer.
    """
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size <= offset:
            raise BadDataset("the data set is empty", status.TRUNCATED)
        mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    try:
        header = ctx.header_reader.read(memoryview(mm)[offset:], transfer_syntax, lambda: bytes(mm))
    except BadDataset as exc:
        raise exc.with_traceback(None) from None  # drop the frames that still view the mapping
    finally:
        try:
            mm.close()
        except BufferError:  # a view is still alive somewhere; the mapping goes when it does
            pass
    if sop_instance_uid is not None and header.sop_uid != sop_instance_uid:
        raise BadDataset(
            f"SOP Instance UID in the data set ({header.sop_uid}) differs from the command's ({sop_instance_uid})",
            status.INSTANCE_MISMATCH,
        )
    if sop_class_uid is not None and header.sop_class_uid and header.sop_class_uid != sop_class_uid:
        raise BadDataset(
            f"SOP Class UID in the data set ({header.sop_class_uid}) differs from the command's ({sop_class_uid})",
            status.SOP_CLASS_MISMATCH,
        )
    return header


def read_part10_header(ctx, path: Path) -> tuple[int, str, object]:
    """``(dataset_offset, transfer_syntax, header)`` of a Part-10 file: its layout from the first 64 KiB, then
    the checked header (:func:`check_header`). Raises :class:`BadDataset` with the status to answer."""
    with open(path, "rb") as f:
        offset, ts = part10_layout(f.read(1 << 16))
    return offset, ts, check_header(ctx, path, offset, ts)


def index_durable(ctx, tmp: Path, header, transfer_syntax: str, *, calling_ae: str, clinic_id: int | None,
                  size: int, crc32: int, timeout_s: float) -> IngestResult:
    """Hand a temp file in ``ctx.store.tmp`` to the index writer and wait until it is durable and indexed."""
    item = Incoming(header=header, transfer_syntax=transfer_syntax, calling_ae=calling_ae, clinic_id=clinic_id,
                    tmp=tmp, size=size, crc32=crc32, received_at=datetime.now(timezone.utc))
    base = dict(study_uid=header.study_uid, series_uid=header.series_uid, sop_uid=header.sop_uid,
                sop_class_uid=header.sop_class_uid, transfer_syntax=transfer_syntax)
    try:
        outcome = ctx.writer.submit(item).result(timeout=timeout_s)
    except (IndexError_, FutureTimeout) as exc:
        log.error("instance %s not indexed: %s", header.sop_uid, exc or "timed out")
        return IngestResult(status.OUT_OF_RESOURCES_INDEX, error="the gateway could not index the instance", **base)
    return IngestResult(status.SUCCESS, outcome, **base)


def _durable_copy(ctx, path: Path) -> Path:
    """Move (or copy, across file systems) ``path`` into the store's temp folder."""
    tmp = ctx.store.tmp / f"{uuid.uuid4().hex}.part"
    try:
        os.rename(path, tmp)
    except OSError:
        with open(path, "rb") as src, open(tmp, "xb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
        os.unlink(path)
    os.chmod(tmp, 0o640)
    return tmp  # the index writer fsyncs it with its rename, before the index commit


def ingest_file(ctx, path: Path, *, calling_ae: str | None = None, clinic_id: int | None = None,
                timeout_s: float | None = None) -> IngestResult:
    """Store one Part-10 file through the C-STORE durability path; see ``Gateway.ingest_file``."""
    path = Path(path)
    if ctx.store.usage_pct() >= ctx.settings.dicom.disk_high_water_pct:
        discard(path)
        return IngestResult(status.OUT_OF_RESOURCES_DISK_FULL, error="the gateway's disk is above its high-water mark")
    calling = calling_ae or ctx.settings.dicom.ae_title
    if clinic_id is None and calling_ae:
        clinic = ctx.clinics.by_ae(calling_ae)
        clinic_id = clinic.id if clinic else None
    tmp: Path | None = None
    try:
        try:
            offset, ts, header = read_part10_header(ctx, path)
        except BadDataset as exc:
            discard(path)
            return IngestResult(exc.status, error=str(exc))
        crc, size = 0, 0
        with open(path, "rb") as f:
            f.seek(offset)
            while chunk := f.read(1 << 20):
                crc = zlib.crc32(chunk, crc)
        size = path.stat().st_size
        try:
            tmp = _durable_copy(ctx, path)
        except OSError as exc:
            log.error("cannot write instance %s: %s", header.sop_uid, exc.strerror or exc)
            discard(path)
            return IngestResult(status.OUT_OF_RESOURCES_WRITE, error="the gateway could not write the instance")
        owned, tmp = tmp, None  # the writer owns it now
        return index_durable(ctx, owned, header, ts, calling_ae=calling, clinic_id=clinic_id, size=size, crc32=crc,
                             timeout_s=timeout_s or ctx.settings.dicom.dimse_timeout_s)
    except OSError as exc:
        discard(path)
        discard(tmp)
        return IngestResult(status.OUT_OF_RESOURCES_WRITE, error=f"cannot read the file: {exc.strerror or exc}")


def index_created_file(ctx, tmp: Path, *, clinic_id: int | None, timeout_s: float = 60.0) -> Outcome:
    """Index a Part-10 file telerad wrote itself in the store's temp folder; see ``Gateway.index_created_file``."""
    try:
        data = tmp.read_bytes()
        offset, ts = part10_layout(data)  # the same Part-10 reading as ingest_file
        dataset = memoryview(data)[offset:]
        header = ctx.header_reader.read(dataset, ts, lambda: data)
    except Exception:
        discard(tmp)
        raise
    item = Incoming(header=header, transfer_syntax=ts, calling_ae=ctx.settings.dicom.ae_title,
                    clinic_id=clinic_id, tmp=tmp, size=len(data), crc32=zlib.crc32(dataset),
                    received_at=datetime.now(timezone.utc))
    return ctx.writer.submit(item).result(timeout=timeout_s)
