"""Lossless re-encoding for the wire: JPEG 2000 lossless, JPEG-LS lossless or deflate.

The stored file is never changed. A compressed copy is written to a scratch file
(Part-10, same SOP Instance UID) that the sender sends as it is and deletes.
Only uncompressed stored files are compressed; decoded pixels are identical.
"""

from __future__ import annotations

import io
import os
import uuid
import zlib
from dataclasses import dataclass
from pathlib import Path

from pydicom import dcmread
from pydicom.filereader import read_file_meta_info
from pydicom.filewriter import write_file_meta_info
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLSLossless,
)

from telerad.dicom_header import Unsupported, part10_layout

#: setting ``compression`` → the transfer syntax proposed for it
WIRE_SYNTAXES = {
    "jpeg2000-lossless": str(JPEG2000Lossless),
    "jpeg-ls-lossless": str(JPEGLSLossless),
    "deflate": str(DeflatedExplicitVRLittleEndian),
}
DEFLATE_LEVEL = 1  # zlib level: 4x faster than 6 for about the same ratio on CT
UNCOMPRESSED = {str(ExplicitVRLittleEndian), str(ImplicitVRLittleEndian), str(ExplicitVRBigEndian)}


class WireEncodingError(ValueError):
    """The instance cannot be re-encoded in the wanted syntax (it is then sent as stored)."""


@dataclass(frozen=True)
class WireCopy:
    path: Path
    syntax: str
    size: int  # bytes of the Part-10 copy (compare with the stored file's size)

    def discard(self) -> None:
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


def _deflate_raw(src: Path, dst: Path) -> bool:
    """Deflate an Explicit VR Little Endian file's data set bytes as they are (no decode).

    Returns False when the file is not Explicit VR Little Endian (the caller then re-encodes).
    """
    with open(src, "rb") as fp:
        data = fp.read()
    try:
        meta_end, syntax = part10_layout(data)
    except Unsupported:
        return False
    if syntax != str(ExplicitVRLittleEndian):
        return False
    meta = read_file_meta_info(src)
    meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    out = io.BytesIO()
    write_file_meta_info(out, meta, enforce_standard=True)
    packer = zlib.compressobj(DEFLATE_LEVEL, zlib.DEFLATED, -zlib.MAX_WBITS)
    body = packer.compress(memoryview(data)[meta_end:]) + packer.flush()
    if len(body) % 2:  # DICOM values and PDVs are even-length; pad like pydicom does
        body += b"\x00"
    with open(dst, "wb") as fp:
        fp.write(b"\x00" * 128 + b"DICM" + out.getvalue() + body)
    return True


def can_compress(stored_syntax: str, compression: str) -> bool:
    return compression in WIRE_SYNTAXES and stored_syntax in UNCOMPRESSED


def compress_copy(src: Path, compression: str, scratch: Path) -> WireCopy:
    """Write ``src`` re-encoded with ``compression`` into ``scratch``; raises :class:`WireEncodingError`."""
    target = WIRE_SYNTAXES[compression]
    scratch.mkdir(parents=True, exist_ok=True)
    dst = scratch / f"wire-{uuid.uuid4().hex}.dcm"
    try:
        if target == str(DeflatedExplicitVRLittleEndian) and _deflate_raw(src, dst):
            return WireCopy(dst, target, dst.stat().st_size)
        ds = dcmread(src)
        if target == str(DeflatedExplicitVRLittleEndian):
            ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
        else:
            if "PixelData" not in ds:
                raise WireEncodingError("no pixel data to compress")
            ds.compress(target, generate_instance_uid=False)
        ds.save_as(dst, enforce_file_format=True)
    except WireEncodingError:
        raise
    except (ValueError, RuntimeError, TypeError, AttributeError, NotImplementedError) as exc:
        try:
            os.unlink(dst)
        except FileNotFoundError:
            pass
        raise WireEncodingError(f"cannot encode for the wire as {compression}: {exc}") from None
    return WireCopy(dst, target, dst.stat().st_size)
