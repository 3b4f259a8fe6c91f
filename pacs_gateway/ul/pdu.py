"""DICOM Upper Layer PDU framing (PS3.8 section 9) over a blocking socket.

Only the framing lives here: reading one PDU into a reusable buffer, walking
the PDV items of a P-DATA-TF, and encoding the small PDUs the acceptor sends.
A-ASSOCIATE-RQ/AC/RJ bodies are decoded and encoded with pynetdicom's PDU
classes (see ``acceptor.py``).
"""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Iterator

A_ASSOCIATE_RQ, A_ASSOCIATE_AC, A_ASSOCIATE_RJ = 0x01, 0x02, 0x03
P_DATA_TF, A_RELEASE_RQ, A_RELEASE_RP, A_ABORT = 0x04, 0x05, 0x06, 0x07
KNOWN_TYPES = frozenset(range(1, 8))

_HEADER = struct.Struct(">BxI")
_PDV = struct.Struct(">IBB")

#: A-ABORT source 0x02 (service provider) reasons, PS3.8 9.3.8
ABORT_UNRECOGNISED_PDU = 0x01
ABORT_UNEXPECTED_PDU = 0x02
ABORT_INVALID_PARAMETER = 0x06


class PeerClosed(Exception):
    """The peer closed the connection (or it broke) before a whole PDU arrived."""


class ProtocolError(Exception):
    """The peer sent bytes that are not a valid PDU; ``reason`` is the A-ABORT reason."""

    def __init__(self, message: str, reason: int = ABORT_UNRECOGNISED_PDU):
        super().__init__(message)
        self.reason = reason


class Timeout(Exception):
    """A peer was silent, or too slow, for longer than a limit allows (the message names which)."""


class PduReader:
    """Reads whole PDUs from ``sock`` into one buffer reused across PDUs.

    max_length : the largest PDU body accepted (our negotiated maximum plus
    slack for a peer that ignores it); a longer one is a protocol error.
    """

    def __init__(self, sock: socket.socket, max_length: int):
        self.sock = sock
        self.max_length = max_length
        self._buf = bytearray(max(65536, min(max_length, 1 << 22)))
        self._head = bytearray(6)
        #: the socket timeout restored after each read (sends rely on it); None leaves it as it is
        self.send_timeout: float | None = None
        self._timeout: float | None = None  # what the socket's timeout was last set to here

    def _fill(self, view: memoryview, deadline: float, what: str) -> None:
        got, n = 0, len(view)
        sock = self.sock
        while got < n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise Timeout(what)
            # settimeout costs two fcntl calls: change it only when it is 0.5 s off the deadline
            if self._timeout is None or abs(self._timeout - left) > 0.5:
                sock.settimeout(left)
                self._timeout = left
            try:
                k = sock.recv_into(view[got:])
            except socket.timeout:
                if deadline - time.monotonic() > 0:  # the timeout set was a little short of the deadline
                    self._timeout = None
                    continue
                raise Timeout(what) from None
            except (ConnectionError, OSError) as exc:
                raise PeerClosed(str(exc)) from None
            if k == 0:
                raise PeerClosed("connection closed by the peer")
            got += k

    def read(self, idle_s: float = 3600.0, pdu_s: float = 3600.0) -> tuple[int, memoryview]:
        """Return ``(pdu_type, body)``; ``body`` is valid until the next ``read``.

        idle_s : the longest wait for the PDU's first byte; pdu_s : the longest time from its
        first byte to its last. Either passing raises :class:`Timeout`.
        """
        head = memoryview(self._head)
        self._fill(head[:1], time.monotonic() + idle_s, f"no PDU for {idle_s:g} s (idle timeout)")
        deadline = time.monotonic() + pdu_s
        slow = f"a PDU did not arrive whole within {pdu_s:g} s (too slow)"
        self._fill(head[1:], deadline, slow)
        pdu_type, length = _HEADER.unpack(self._head)
        if pdu_type not in KNOWN_TYPES:
            raise ProtocolError(f"unknown PDU type 0x{pdu_type:02X}")
        if length > self.max_length:
            raise ProtocolError(f"PDU of {length} bytes exceeds the negotiated maximum", ABORT_INVALID_PARAMETER)
        if length > len(self._buf):
            self._buf = bytearray(length)
        body = memoryview(self._buf)[:length]
        self._fill(body, deadline, slow)
        if self.send_timeout is not None and self._timeout != self.send_timeout:
            self.sock.settimeout(self.send_timeout)
            self._timeout = self.send_timeout
        return pdu_type, body


def iter_pdvs(body: memoryview) -> Iterator[tuple[int, bool, bool, memoryview]]:
    """Yield ``(context_id, is_command, is_last, fragment)`` for each PDV item of a P-DATA-TF body."""
    pos, end = 0, len(body)
    while pos < end:
        if pos + 6 > end:
            raise ProtocolError("P-DATA-TF ends inside a PDV item header", ABORT_INVALID_PARAMETER)
        length, context_id, header = _PDV.unpack_from(body, pos)
        if length < 2 or pos + 4 + length > end:
            raise ProtocolError("PDV item length runs past the end of its P-DATA-TF", ABORT_INVALID_PARAMETER)
        yield context_id, bool(header & 0x01), bool(header & 0x02), body[pos + 6 : pos + 4 + length]
        pos += 4 + length


def p_data(context_id: int, command: bytes, max_pdu: int = 0) -> bytes:
    """One P-DATA-TF carrying a whole command set (commands are small: one PDV)."""
    if max_pdu and len(command) + 6 > max_pdu:
        raise ValueError("command set larger than the peer's maximum PDU")
    pdv = _PDV.pack(len(command) + 2, context_id, 0x03) + command
    return _HEADER.pack(P_DATA_TF, len(pdv)) + pdv


def release_rp() -> bytes:
    return _HEADER.pack(A_RELEASE_RP, 4) + b"\0\0\0\0"


def abort(source: int = 0x02, reason: int = 0x00) -> bytes:
    return _HEADER.pack(A_ABORT, 4) + bytes((0, 0, source, reason))


def associate_rj(result: int, source: int, diagnostic: int) -> bytes:
    return _HEADER.pack(A_ASSOCIATE_RJ, 4) + bytes((0, result, source, diagnostic))


def data_buffers(context_id: int, data, max_pdu: int) -> list:
    """The buffers of the P-DATA-TF PDUs carrying a data set, one PDV per PDU, for ``socket.sendmsg``.

    max_pdu : the peer's maximum length of a P-DATA-TF variable field (0 means unlimited; fragments
    are then 1 MiB). The data set bytes are not copied: the list holds header bytes and slices.
    """
    view = memoryview(data)
    step = (max_pdu or (1 << 20) + 6) - 6
    out: list = []
    n = len(view)
    for start in range(0, max(n, 1), step):
        chunk = view[start : start + step]
        last = start + step >= n
        out.append(_HEADER.pack(P_DATA_TF, len(chunk) + 6) + _PDV.pack(len(chunk) + 2, context_id, 0x02 if last else 0x00))
        out.append(chunk)
    return out


def release_rq() -> bytes:
    return _HEADER.pack(A_RELEASE_RQ, 4) + b"\0\0\0\0"
