"""DIMSE command sets (PS3.7 section 9.3 and annex E): decode requests, encode responses.

Command sets are always Implicit VR Little Endian group 0000 elements, so a
``struct`` walk reads them; no pydicom Dataset is built on the hot path.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from telerad.logctx import escape

C_STORE_RQ, C_STORE_RSP = 0x0001, 0x8001
C_ECHO_RQ, C_ECHO_RSP = 0x0030, 0x8030
NO_DATASET = 0x0101

_ELEM = struct.Struct("<HHI")
_US = struct.Struct("<H")
_UL = struct.Struct("<I")

# tag element numbers of group 0000
_AFFECTED_SOP_CLASS, _COMMAND_FIELD, _MESSAGE_ID = 0x0002, 0x0100, 0x0110
_RESPONDED_TO, _PRIORITY, _DATASET_TYPE, _STATUS = 0x0120, 0x0700, 0x0800, 0x0900
_ERROR_COMMENT, _AFFECTED_SOP_INSTANCE = 0x0902, 0x1000


class CommandError(ValueError):
    """A command set that cannot be decoded."""


@dataclass(frozen=True)
class Command:
    command_field: int
    message_id: int
    has_dataset: bool
    sop_class_uid: str
    sop_instance_uid: str
    priority: int = 0
    status: int | None = None  # responses only
    error_comment: str | None = None


_UID_CHARS = frozenset(b"0123456789.")


def _text(value: bytes) -> str:
    return value.rstrip(b"\0 ").decode("ascii", "replace")


def _uid_value(values: dict[int, bytes], element: int, name: str) -> str:
    """A UID element of the command set; anything but digits and dots (64 at most) is a CommandError."""
    raw = values.get(element, b"").rstrip(b"\0 ")
    if len(raw) > 64 or not _UID_CHARS.issuperset(raw):
        raise CommandError(f"command set {name} (0000,{element:04X}) is not a valid UID: '{escape(raw)}'")
    return raw.decode("ascii")


def decode_command(data: bytes | bytearray | memoryview) -> Command:
    """Decode the elements the acceptor needs from an encoded command set."""
    values: dict[int, bytes] = {}
    pos, end = 0, len(data)
    while pos < end:
        if pos + 8 > end:
            raise CommandError("command set ends inside an element header")
        group, element, length = _ELEM.unpack_from(data, pos)
        pos += 8
        if group != 0x0000 or pos + length > end:
            raise CommandError(f"command set element ({group:04X},{element:04X}) is invalid or runs past the end")
        values[element] = bytes(data[pos : pos + length])
        pos += length

    def us(element: int, default: int | None = None) -> int:
        raw = values.get(element)
        if raw is None or len(raw) < 2:
            if default is None:
                raise CommandError(f"command set lacks (0000,{element:04X})")
            return default
        return _US.unpack_from(raw)[0]

    return Command(
        command_field=us(_COMMAND_FIELD),
        message_id=us(_MESSAGE_ID, us(_RESPONDED_TO, 0)),
        has_dataset=us(_DATASET_TYPE, NO_DATASET) != NO_DATASET,
        sop_class_uid=_uid_value(values, _AFFECTED_SOP_CLASS, "Affected SOP Class UID"),
        sop_instance_uid=_uid_value(values, _AFFECTED_SOP_INSTANCE, "Affected SOP Instance UID"),
        priority=us(_PRIORITY, 0),
        status=us(_STATUS, 0) if _STATUS in values else None,
        error_comment=_text(values[_ERROR_COMMENT]) if _ERROR_COMMENT in values else None,
    )


def _element(element: int, value: bytes) -> bytes:
    if len(value) % 2:
        value += b"\0"
    return _ELEM.pack(0x0000, element, len(value)) + value


def _uid(value: str) -> bytes:
    return value.encode("ascii")


def _lo(value: str) -> bytes:
    raw = value.encode("ascii", "replace")[:64]
    return raw + b" " if len(raw) % 2 else raw


def encode_response(request: Command, status: int, error_comment: str | None = None) -> bytes:
    """The C-STORE-RSP or C-ECHO-RSP command set answering ``request``."""
    field = C_STORE_RSP if request.command_field == C_STORE_RQ else C_ECHO_RSP
    body = [
        _element(_AFFECTED_SOP_CLASS, _uid(request.sop_class_uid)),
        _element(_COMMAND_FIELD, _US.pack(field)),
        _element(_RESPONDED_TO, _US.pack(request.message_id)),
        _element(_DATASET_TYPE, _US.pack(NO_DATASET)),
        _element(_STATUS, _US.pack(status)),
    ]
    if error_comment and status != 0:
        body.append(_element(_ERROR_COMMENT, _lo(error_comment)))
    if request.command_field == C_STORE_RQ and request.sop_instance_uid:
        body.append(_element(_AFFECTED_SOP_INSTANCE, _uid(request.sop_instance_uid)))
    payload = b"".join(body)
    return _element(0x0000, _UL.pack(len(payload))) + payload


def encode_store_request(message_id: int, sop_class: str, sop_instance: str, priority: int = 0) -> bytes:
    """A C-STORE-RQ command set (a data set follows)."""
    payload = b"".join((
        _element(_AFFECTED_SOP_CLASS, _uid(sop_class)),
        _element(_COMMAND_FIELD, _US.pack(C_STORE_RQ)),
        _element(_MESSAGE_ID, _US.pack(message_id & 0xFFFF)),
        _element(_PRIORITY, _US.pack(priority)),
        _element(_DATASET_TYPE, _US.pack(0x0000)),
        _element(_AFFECTED_SOP_INSTANCE, _uid(sop_instance)),
    ))  # fmt: skip
    return _element(0x0000, _UL.pack(len(payload))) + payload


def encode_echo_request(message_id: int) -> bytes:
    payload = b"".join((
        _element(_AFFECTED_SOP_CLASS, _uid("1.2.840.10008.1.1")),
        _element(_COMMAND_FIELD, _US.pack(C_ECHO_RQ)),
        _element(_MESSAGE_ID, _US.pack(message_id & 0xFFFF)),
        _element(_DATASET_TYPE, _US.pack(NO_DATASET)),
    ))  # fmt: skip
    return _element(0x0000, _UL.pack(len(payload))) + payload
