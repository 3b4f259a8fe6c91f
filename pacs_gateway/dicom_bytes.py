"""Header reading and structural checks on received bytes, with no pixel decoding.

The association thread must not decode pixels, yet must refuse a data set whose
elements run past the end of what arrived (pydicom reads such data silently).
``HeaderReader`` walks the element headers only, with the shared reader
(:mod:`telerad.dicom_header`: tags and lengths, recursing into undefined-length
sequences and encapsulated pixel data), and answers with the gateway's statuses.
"""

from __future__ import annotations

import contextlib
import io
import mmap
import re
import struct
import tempfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass

from pydicom import dcmread
from pydicom.errors import InvalidDicomError
from pydicom.uid import UID

from pacs_gateway import dicom_values, status
from pacs_gateway.errors import BadDataset
from telerad import dicom_header
from telerad.dicom_header import Elements, Unsupported

_UID_RE = re.compile(r"^[0-9]+(\.[0-9]+)*$")
DEFLATED = "1.2.840.10008.1.2.1.99"


def _walk(buf, ts: UID, want: frozenset[int]) -> Elements:
    """The whole data set walked by the shared reader; an element past the end is refused (0xC211)."""
    try:
        return dicom_header.walk(buf, implicit=ts.is_implicit_VR, little=ts.is_little_endian, want=want)
    except dicom_header.Truncated as exc:
        raise BadDataset(
            f"data set truncated: an element runs past the end of the {len(buf)} bytes received "
            f"(at byte {exc.at})",
            status.TRUNCATED,
        ) from None


@dataclass(frozen=True)
class Header:
    study_uid: str
    series_uid: str
    sop_uid: str
    sop_class_uid: str
    modality: str
    values: dict  # the classification keywords, JSON-safe


def _json_value(value):
    if value is None:
        return None
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return [_json_value(v) for v in value]
    if isinstance(value, (int, float, str)):
        return value if not isinstance(value, str) else str(value)
    try:
        return float(value) if type(value).__name__ in ("DSfloat", "DSdecimal") else str(value)
    except (TypeError, ValueError):
        return str(value)


def read_header(part10: bytes, keywords: tuple[str, ...]) -> Header:
    """Read the UIDs and ``keywords`` from a Part-10 byte string, stopping before pixels."""
    try:
        ds = dcmread(io.BytesIO(part10), stop_before_pixels=True)
        study = str(ds.get("StudyInstanceUID", "") or "").strip()
        series = str(ds.get("SeriesInstanceUID", "") or "").strip()
        sop = str(ds.get("SOPInstanceUID", "") or "").strip()
        sop_class = str(ds.get("SOPClassUID", "") or "").strip()
        modality = str(ds.get("Modality", "") or "").strip()
        values = {}
        for kw in keywords:
            v = ds.get(kw)
            if v is not None and v != "":
                values[kw] = _json_value(v)
    except (InvalidDicomError, ValueError, TypeError, KeyError, struct.error, EOFError, OverflowError, NotImplementedError) as exc:
        raise BadDataset(f"header cannot be parsed: {type(exc).__name__}: {exc}", status.CANNOT_PARSE) from None
    for name, uid in (("StudyInstanceUID", study), ("SeriesInstanceUID", series), ("SOPInstanceUID", sop)):
        if not uid:
            raise BadDataset(f"required attribute {name} is missing or empty", status.MISSING_UID)
        if len(uid) > 64 or not _UID_RE.match(uid):
            raise BadDataset(f"{name} '{uid[:70]}' is not a valid UID", status.MISSING_UID)
    return Header(study, series, sop, sop_class, modality, values)


class HeaderReader:
    """Checks a received data set's structure and reads its header in one walk.

    ``read(dataset, transfer_syntax)`` takes the data set bytes as received (no
    file meta) and returns a :class:`Header`, or raises :class:`BadDataset` with
    the status to answer. Values are decoded from the raw bytes
    (:mod:`pacs_gateway.dicom_values`); a data set with a character set or VR
    that decoder does not handle is read with pydicom instead, so odd input
    costs time, never correctness.
    """

    _UIDS = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID", "Modality")

    def __init__(self, keywords: tuple[str, ...], *, max_inflated: int = 2 << 30, spool_dir=None):
        self.max_inflated, self.spool_dir = max_inflated, spool_dir
        self.keywords = tuple(keywords)
        self._tags = dicom_values.tags_for(tuple(dict.fromkeys((*self._UIDS, *self.keywords))))
        self._want = frozenset((*self._tags, dicom_values.SPECIFIC_CHARACTER_SET))

    def read(self, dataset, transfer_syntax: str, part10: Callable[[], bytes]) -> Header:
        ts = UID(transfer_syntax)
        if transfer_syntax == DEFLATED:
            with self._inflated(dataset) as buf:
                found = _walk(buf, ts, self._want)
                del buf
        else:
            found = _walk(dataset, ts, self._want)
        try:
            return self._header(found, ts)
        except Unsupported:
            return read_header(part10(), self.keywords)

    @contextlib.contextmanager
    def _inflated(self, dataset):
        """The inflated data set, mapped from an anonymous temp file: memory stays flat, size is bounded.

        A data set that inflates past ``max_inflated`` bytes (a deflate bomb) is refused (0xC210)
        after writing at most that many bytes, never holding them in memory.
        """
        src = memoryview(dataset)
        with tempfile.TemporaryFile(dir=self.spool_dir) as out:
            d = zlib.decompressobj(-zlib.MAX_WBITS)
            total, pos, step = 0, 0, 1 << 20
            try:
                while True:
                    chunk = d.decompress(d.unconsumed_tail or src[pos : pos + step], step)
                    if not d.unconsumed_tail:
                        pos += step
                    total += len(chunk)
                    if total > self.max_inflated:
                        raise BadDataset(f"deflated data set inflates past {self.max_inflated} bytes "
                                         f"(dicom.max_dataset_bytes); refused", status.CANNOT_PARSE)
                    out.write(chunk)
                    if d.eof or (pos >= len(src) and not d.unconsumed_tail and not chunk):
                        break
            except zlib.error as exc:
                raise BadDataset(f"deflated data set cannot be inflated: {exc}", status.TRUNCATED) from None
            out.flush()
            if total == 0:
                yield b""
                return
            mm = mmap.mmap(out.fileno(), 0, access=mmap.ACCESS_READ)
            try:
                yield memoryview(mm)
            finally:
                try:
                    mm.close()
                except BufferError:
                    pass

    def _header(self, found: Elements, ts: UID) -> Header:
        little = ts.is_little_endian
        raws, vrs = found.values, found.vrs
        charset = raws.pop(dicom_values.SPECIFIC_CHARACTER_SET, b"").decode("ascii", "replace").strip(" \0")
        encoding = dicom_values.CHARSETS.get(charset)
        if encoding is None:
            raise Unsupported(f"character set {charset!r}")
        values: dict[str, object] = {}
        for tag, raw in raws.items():
            kw, dict_vr = self._tags[tag]
            vr = vrs[tag]
            vr_s = vr.decode("ascii", "replace") if vr else dict_vr
            if vr_s not in dicom_values.ALL_VRS:
                raise Unsupported(f"VR {vr_s}")
            v = dicom_values.decode(vr_s, raw, little, encoding)
            if v is not None and v != "":
                values[kw] = v
        uids = {}
        for name in self._UIDS:
            v = values.get(name)
            uids[name] = str(v).strip() if v is not None and not isinstance(v, list) else ("" if v is None else "\\".join(map(str, v)))
        for name in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"):
            uid = uids[name]
            if not uid:
                raise BadDataset(f"required attribute {name} is missing or empty", status.MISSING_UID)
            if len(uid) > 64 or not _UID_RE.match(uid):
                raise BadDataset(f"{name} '{uid[:70]}' is not a valid UID", status.MISSING_UID)
        kept = {kw: values[kw] for kw in self.keywords if kw in values}
        return Header(uids["StudyInstanceUID"], uids["SeriesInstanceUID"], uids["SOPInstanceUID"],
                      uids["SOPClassUID"], uids["Modality"], kept)
