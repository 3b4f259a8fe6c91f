"""The one reader of DICOM element headers: tags, VRs and lengths, never pixels.

Used by the gateway's association thread (``pacs_gateway.dicom_bytes``: the whole
received data set is walked, so one whose elements run past the end of what
arrived is refused, which pydicom would read silently) and by triage's file
loading (``triage.dicom_adapter``: a CT file's header is read up to the pixel
data, whose offset and length are kept). Building a pydicom Dataset costs
0.3-0.9 ms per image, most of it objects nobody looks at; this walks the
elements with ``struct`` and keeps only the raw bytes of the tags asked for.

:func:`walk` reads a data set in any uncompressed encoding (implicit or explicit
VR, little or big endian), recursing into undefined-length sequences, items,
undefined-length UN (whose content is implicit VR) and encapsulated pixel data.
:func:`parse_part10` reads a Part-10 file start (preamble, ``DICM``, the (0002)
group) with an explicit VR little endian data set, the encoding of CT images from
scanners and of every compressed transfer syntax. What neither handles raises
:class:`Unsupported`; the callers then use pydicom, so odd input costs time,
never correctness. Standard library only (no numpy, no pydicom): both the gateway
and triage import it.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping

__all__ = ["PIXEL_DATA", "Elements", "Truncated", "Unsupported", "parse_part10", "part10_layout", "walk"]

PIXEL_DATA = 0x7FE00010
_ITEM, _ITEM_END, _SEQ_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
_UNDEFINED = 0xFFFFFFFF
_LONG_VRS = frozenset({b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"})
_SHORT_VRS = frozenset({b"AE", b"AS", b"AT", b"CS", b"DA", b"DS", b"DT", b"FD", b"FL", b"IS", b"LO", b"LT", b"PN",
                        b"SH", b"SL", b"SS", b"ST", b"TM", b"UI", b"UL", b"US"})
_ENCAPSULATING_VRS = (b"OB", b"OW")
# Part-10 data sets this reader leaves to pydicom: implicit VR, big endian, deflated
_NOT_LE_EXPLICIT = frozenset({"1.2.840.10008.1.2", "1.2.840.10008.1.2.2", "1.2.840.10008.1.2.1.99"})


class Unsupported(Exception):
    """This input needs the general reader (pydicom): an encoding, VR or character set not handled here."""


class Truncated(Unsupported):
    """An element runs past the end of the bytes; ``at`` is the byte position (from the buffer start)."""

    def __init__(self, at: int) -> None:
        super().__init__(f"truncated at byte {at}")
        self.at = at


class _Codec:
    __slots__ = ("head", "u32", "tag_len")

    def __init__(self, endian: str) -> None:
        self.head = struct.Struct(endian + "HH2sH")  # group, element, VR, short length (explicit VR)
        self.u32 = struct.Struct(endian + "I")
        self.tag_len = struct.Struct(endian + "HHI")  # group, element, length (implicit VR, items)


_LITTLE, _BIG = _Codec("<"), _Codec(">")


class Elements:
    """What a walk kept: top-level ``values`` (tag -> raw value bytes) and ``vrs`` (tag -> VR, ``b""`` when
    implicit) of the wanted tags; for :func:`parse_part10`, also the ``transfer_syntax`` and the pixel data's
    ``pixel_offset`` (None when encapsulated) and ``pixel_length`` (0xFFFFFFFF when encapsulated).

    ``text(keyword)`` and ``us(keyword, default)`` read a wanted value by keyword through ``keywords``
    (keyword -> tag), as text (latin-1, padding stripped) or as the first little-endian US.
    """

    __slots__ = ("values", "vrs", "keywords", "transfer_syntax", "pixel_offset", "pixel_length")

    def __init__(self, keywords: Mapping[str, int] | None = None) -> None:
        self.values: dict[int, bytes] = {}
        self.vrs: dict[int, bytes] = {}
        self.keywords = keywords
        self.transfer_syntax = ""
        self.pixel_offset: int | None = None
        self.pixel_length = 0

    def text(self, keyword: str) -> str:
        raw = self.values.get(self.keywords[keyword])
        return "" if raw is None else raw.decode("latin-1").strip("\x00 ")

    def us(self, keyword: str, default: int) -> int:
        raw = self.values.get(self.keywords[keyword])
        return default if raw is None or len(raw) < 2 else _US.unpack_from(raw)[0]


_US = struct.Struct("<H")


def _element(buf, pos: int, n: int, implicit: bool, codec: _Codec, strict: bool) -> tuple[int, bytes, int, int]:
    """(tag, VR, header length, value length) of the element at ``pos``; VR is ``b""`` when implicit."""
    if pos + 8 > n:
        raise Truncated(pos + 4 if implicit and pos + 4 <= n else pos)
    if implicit:
        group, elem, length = codec.tag_len.unpack_from(buf, pos)
        return group << 16 | elem, b"", 8, length
    group, elem, vr, short = codec.head.unpack_from(buf, pos)
    if group == 0xFFFE:  # items and delimiters have no VR
        return group << 16 | elem, b"", 8, codec.u32.unpack_from(buf, pos + 4)[0]
    if vr in _LONG_VRS:
        if pos + 12 > n:
            raise Truncated(pos + 8)
        return group << 16 | elem, vr, 12, codec.u32.unpack_from(buf, pos + 8)[0]
    if strict and vr not in _SHORT_VRS:
        raise Unsupported(f"not explicit VR: {vr!r} at byte {pos + 4}")
    return group << 16 | elem, vr, 8, short


def _item_elements(buf, pos: int, n: int, implicit: bool, codec: _Codec, strict: bool) -> int:
    """Skip the elements of an undefined-length item; returns the position after its delimiter."""
    while pos < n:
        tag, vr, head, length = _element(buf, pos, n, implicit, codec, strict)
        if tag == _ITEM_END:
            return pos + 8
        pos += head
        if length == _UNDEFINED:
            pos = _undefined(buf, pos, n, tag, vr, implicit, codec, strict)
        else:
            pos += length
            if pos > n:
                raise Truncated(pos)
    raise Truncated(pos)  # an undefined-length item never closed


def _undefined(buf, pos: int, n: int, tag: int, vr: bytes, implicit: bool, codec: _Codec, strict: bool) -> int:
    """Skip the items of an undefined-length SQ, UN or encapsulated pixel data value starting at ``pos``."""
    inner_implicit = implicit or vr == b"UN"
    encapsulated = tag == PIXEL_DATA or vr in _ENCAPSULATING_VRS
    tag_len = codec.tag_len
    while True:
        if pos + 8 > n:
            raise Truncated(pos + 4 if pos + 4 <= n else pos)
        group, elem, length = tag_len.unpack_from(buf, pos)
        item = group << 16 | elem
        pos += 8
        if item == _SEQ_END:
            return pos
        if item != _ITEM:
            raise Truncated(pos)
        if length == _UNDEFINED and not encapsulated:
            pos = _item_elements(buf, pos, n, inner_implicit, codec, strict)
        else:
            pos += length
            if pos > n:
                raise Truncated(pos)


def walk(buf, pos: int = 0, *, implicit: bool = False, little: bool = True, want: frozenset[int] = frozenset(),
         to_pixels: bool = False, out: Elements | None = None) -> Elements:
    """Walk the data set in ``buf`` (bytes, bytearray, memoryview or mmap) from ``pos``.

    Keeps the raw bytes of the top-level elements whose tag is in ``want``. Without ``to_pixels`` every
    element up to the end of ``buf`` is walked, and one that runs past it raises :class:`Truncated`.
    With ``to_pixels`` the walk stops at the top-level pixel data element, whose position it records,
    a short element that is not a known explicit VR raises :class:`Unsupported` (implicit data labelled
    explicit), and so does a buffer that ends (or passes the pixel data's tag) before the pixel data.
    """
    codec = _LITTLE if little else _BIG
    found = out if out is not None else Elements()
    values, vrs = found.values, found.vrs
    n = len(buf)
    while pos < n:
        tag, vr, head, length = _element(buf, pos, n, implicit, codec, to_pixels)
        if tag >= PIXEL_DATA and to_pixels:
            if tag != PIXEL_DATA:
                break
            found.pixel_offset = None if length == _UNDEFINED else pos + head
            found.pixel_length = length
            return found
        if tag == _ITEM_END:  # a delimiter outside any item ends the walk (what follows is not looked at)
            return found
        pos += head
        if length == _UNDEFINED:
            pos = _undefined(buf, pos, n, tag, vr, implicit, codec, to_pixels)
        else:
            end = pos + length
            if end > n:
                raise Truncated(end)
            if tag in want:
                values[tag] = bytes(buf[pos:end])
                vrs[tag] = vr
            pos = end
    if to_pixels:
        raise Unsupported("no pixel data in the bytes read")
    return found


def part10_layout(head) -> tuple[int, str]:
    """``(dataset_offset, transfer_syntax_uid)`` of a Part-10 file from its first bytes (bytes, memoryview, mmap).

    The data set starts where the file meta group length (0002,0000) says. Raises :class:`Unsupported`,
    saying why, when the bytes are not a Part-10 file with a transfer syntax.
    """
    if len(head) < 144 or bytes(head[128:132]) != b"DICM" or bytes(head[132:136]) != b"\x02\x00\x00\x00":
        raise Unsupported("not a DICOM Part-10 file (no 'DICM' preamble and file meta group length)")
    meta_len = _LITTLE.u32.unpack_from(head, 140)[0]
    end = 144 + meta_len
    if meta_len > 1 << 20 or end > len(head):
        raise Unsupported("the file meta information group length runs past the end of the file")
    pos, n = 144, len(head)
    while pos + 8 <= end:
        tag, _, head_len, length = _element(head, pos, n, False, _LITTLE, False)
        if tag == 0x00020010:
            value = bytes(head[pos + head_len:pos + head_len + length])
            return end, value.rstrip(b"\0 ").decode("ascii", "replace")
        pos += head_len + length
    raise Unsupported("the file meta information has no Transfer Syntax UID (0002,0010)")


def parse_part10(buf: bytes, keywords: Mapping[str, int], want: frozenset[int] | None = None) -> Elements:
    """Read a Part-10 file start (through the pixel data element's header) with the values of ``keywords``.

    ``keywords`` maps keyword -> tag; ``want`` is the set of its tags (pass it to save building it per
    file; by default every tag of ``keywords``). Raises :class:`Unsupported` for a file that is not Part-10
    (:func:`part10_layout`), a data set that is not explicit VR little endian, or when ``buf`` ends before
    the pixel data element (read more of the file and call again); a file without pixel data is left to
    pydicom that way too.
    """
    pos, syntax = part10_layout(buf)
    if not syntax or syntax in _NOT_LE_EXPLICIT:
        raise Unsupported(f"transfer syntax {syntax or 'missing'}")
    found = Elements(keywords)
    found.transfer_syntax = syntax
    return walk(buf, pos, want=frozenset(keywords.values()) if want is None else want, to_pixels=True, out=found)
