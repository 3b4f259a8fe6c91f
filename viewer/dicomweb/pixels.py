"""Pixel data of stored files without decoding them: frame byte ranges and compressed fragments.

The layout of each file (where Pixel Data starts, frame size, encapsulation) is read once
with ``defer_size`` (no pixel bytes are loaded) and kept in a small LRU, so a frame
request costs one ``pread`` of that frame's bytes.
"""

from __future__ import annotations

import os
import struct
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from pydicom import dcmread
from pydicom.encaps import generate_frames
from pydicom.uid import UID

from viewer.problems import Problem

KEPT = 4096


@dataclass(frozen=True)
class Layout:
    path: Path
    mtime_ns: int
    transfer_syntax: str
    offset: int  # of the Pixel Data value in the file
    length: int
    frames: int
    rows: int
    columns: int
    samples: int
    bits_allocated: int
    encapsulated: bool

    @property
    def frame_bits(self) -> int:
        return self.rows * self.columns * self.samples * self.bits_allocated


_cache: OrderedDict[tuple[str, int], Layout] = OrderedDict()
_lock = threading.Lock()


def layout(path: Path) -> Layout:
    """Where the pixels of ``path`` are; a 404 Problem when it has none."""
    st = os.stat(path)
    key = (str(path), st.st_mtime_ns)
    with _lock:
        hit = _cache.get(key)
        if hit is not None:
            _cache.move_to_end(key)
            return hit
    with open(path, "rb") as fp:
        ds = dcmread(fp, stop_before_pixels=True)
        pos = fp.tell()
        head = fp.read(12)
    ts = UID(str(ds.file_meta.TransferSyntaxUID))
    if len(head) < 8 or struct.unpack_from("<HH", head) != (0x7FE0, 0x0010) or "Rows" not in ds:
        raise Problem(404, "No pixel data", f"instance '{ds.get('SOPInstanceUID', '?')}' has no Pixel Data "
                                            "(a structured report or another non-image object)")
    offset, length = -1, -1
    if ts == "1.2.840.10008.1.2":
        offset, length = pos + 8, struct.unpack_from("<I", head, 4)[0]
    elif not ts.is_deflated and len(head) == 12:
        offset, length = pos + 12, struct.unpack_from("<I", head, 8)[0]
    if length == 0xFFFFFFFF:  # encapsulated: read as a whole (the fragments are parsed per request)
        offset, length = -1, -1
    out = Layout(path, st.st_mtime_ns, str(ts), offset, length,
                 int(ds.get("NumberOfFrames", 1) or 1), int(ds.Rows), int(ds.Columns),
                 int(ds.get("SamplesPerPixel", 1) or 1), int(ds.get("BitsAllocated", 16) or 16), ts.is_encapsulated)
    with _lock:
        _cache[key] = out
        while len(_cache) > KEPT:
            _cache.popitem(last=False)
    return out


def _pixel_value(lay: Layout) -> bytes:
    if lay.offset >= 0 and lay.length >= 0:
        with open(lay.path, "rb") as f:
            return os.pread(f.fileno(), lay.length, lay.offset)
    return dcmread(lay.path).PixelData


def check_frames(lay: Layout, numbers: list[int]) -> None:
    bad = [n for n in numbers if not 1 <= n <= lay.frames]
    if bad:
        raise Problem(404, "Frame not found", f"frame {bad[0]} does not exist; the instance has {lay.frames} frame(s), "
                                              "numbered from 1")


def native_frames(lay: Layout, numbers: list[int]) -> list[bytes]:
    """The bytes of native (uncompressed) frames, each as stored (bit-packed for 1-bit data)."""
    check_frames(lay, numbers)
    bits = lay.frame_bits
    out = []
    if bits % 8 == 0 and lay.offset >= 0:
        size = bits // 8
        with open(lay.path, "rb") as f:
            for n in numbers:
                out.append(os.pread(f.fileno(), size, lay.offset + (n - 1) * size))
        return out
    import numpy as np

    value = np.frombuffer(_pixel_value(lay), dtype=np.uint8)
    allbits = np.unpackbits(value, bitorder="little")
    for n in numbers:
        out.append(np.packbits(allbits[(n - 1) * bits:n * bits], bitorder="little").tobytes())
    return out


def encapsulated_frames(lay: Layout, numbers: list[int]) -> list[bytes]:
    """The compressed bitstreams of frames, as stored (fragments of one frame joined)."""
    check_frames(lay, numbers)
    frames = list(generate_frames(_pixel_value(lay), number_of_frames=lay.frames))
    return [frames[n - 1] for n in numbers]


def stored_frames(lay: Layout, numbers: list[int]) -> list[bytes]:
    return encapsulated_frames(lay, numbers) if lay.encapsulated else native_frames(lay, numbers)


def decoded_frames(path: Path, numbers: list[int]) -> list[bytes]:
    """Frames decoded to native little-endian bytes (for clients that do not take the stored syntax)."""
    import numpy as np

    ds = dcmread(path)
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    bad = [n for n in numbers if not 1 <= n <= frames]
    if bad:
        raise Problem(404, "Frame not found", f"frame {bad[0]} does not exist; the instance has {frames} frame(s)")
    arr = ds.pixel_array
    if frames == 1:
        arr = arr[None]
    out = []
    for n in numbers:
        frame = np.ascontiguousarray(arr[n - 1])
        if int(ds.BitsAllocated) == 1:
            out.append(np.packbits(frame.astype(np.uint8).ravel(), bitorder="little").tobytes())
        else:
            out.append(frame.astype(frame.dtype.newbyteorder("<"), copy=False).tobytes())
    return out
