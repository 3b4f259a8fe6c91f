"""Hostile DICOM peers for the denial-of-service tests: each is a bounded loop over raw sockets.

Every attacker binds its own loopback source address (127.0.0.2 and up; the clinic uses
127.0.0.1), as separate machines would, and records what the server did to it in ``Tally``.
Each loop stops when ``stop`` is set or after ``rounds`` connections, whichever is first.
"""

from __future__ import annotations

import os
import socket
import struct
import threading
import time
import zlib
from dataclasses import dataclass, field

from pydicom.uid import CTImageStorage, DeflatedExplicitVRLittleEndian, ExplicitVRLittleEndian

from pacs_gateway.ul import dimse, pdu
from pacs_gateway.ul.requestor import StoreAssociation

SERVER = "127.0.0.1"


@dataclass
class Tally:
    connections: int = 0
    aborted: int = 0  # the server answered A-ABORT
    closed: int = 0  # the server closed the connection without a PDU
    statuses: list[int] = field(default_factory=list)  # C-STORE statuses received
    lifetimes: list[float] = field(default_factory=list)  # seconds from connect to the server ending it
    sent_bytes: list[int] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def rq_bytes(calling: str, ts: str = ExplicitVRLittleEndian, called: str = "TELERAD") -> bytes:
    return StoreAssociation("x", 0, calling_ae=calling, called_ae=called, contexts=[(CTImageStorage, [ts])])._rq_bytes()


def connect(src: str, port: int, timeout: float = 10.0) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind((src, 0))
    s.settimeout(timeout)
    s.connect((SERVER, port))
    return s


def read_pdu(s: socket.socket) -> tuple[int, bytes] | None:
    """One PDU, or None when the server closed the connection."""
    head = b""
    try:
        while len(head) < 6:
            chunk = s.recv(6 - len(head))
            if not chunk:
                return None
            head += chunk
        kind, length = struct.unpack(">BxI", head)
        body = b""
        while len(body) < length:
            chunk = s.recv(min(1 << 16, length - len(body)))
            if not chunk:
                return None
            body += chunk
    except (ConnectionError, OSError):
        return None
    return kind, body


def associate(src: str, port: int, calling: str, ts: str = ExplicitVRLittleEndian) -> socket.socket:
    s = connect(src, port)
    s.sendall(rq_bytes(calling, ts))
    answer = read_pdu(s)
    if answer is None or answer[0] != pdu.A_ASSOCIATE_AC:
        s.close()
        raise AssertionError(f"association from {src} not accepted: {answer and answer[0]}")
    return s


def _ended(s: socket.socket, tally: Tally, started: float) -> None:
    """Wait for the server to end the connection; count how."""
    while True:
        got = read_pdu(s)
        if got is None:
            tally.closed += 1
            break
        if got[0] == pdu.A_ABORT:
            tally.aborted += 1
            break
        if got[0] == pdu.P_DATA_TF:
            tally.statuses.append(dimse.decode_command(got[1][6:]).status)
            break
    tally.lifetimes.append(time.monotonic() - started)
    s.close()


def _fragment(data: bytes, last: bool, command: bool = False) -> bytes:
    flags = (0x01 if command else 0) | (0x02 if last else 0)
    pdv = struct.pack(">IBB", len(data) + 2, 1, flags) + data
    return struct.pack(">BxI", pdu.P_DATA_TF, len(pdv)) + pdv


def store_command(sop_uid: bytes = b"1.2.3.4.5") -> bytes:
    """A C-STORE-RQ command set whose Affected SOP Instance UID is ``sop_uid``, byte for byte."""
    e = dimse._element
    payload = b"".join((
        e(0x0002, CTImageStorage.encode()), e(0x0100, struct.pack("<H", dimse.C_STORE_RQ)),
        e(0x0110, struct.pack("<H", 1)), e(0x0700, b"\0\0"), e(0x0800, b"\0\0"), e(0x1000, sop_uid),
    ))  # fmt: skip
    return e(0x0000, struct.pack("<I", len(payload))) + payload


def slowloris_rq(stop: threading.Event, port: int, src: str, tally: Tally, sockets: int = 16, rounds: int = 400) -> None:
    """``sockets`` connections each sending one byte of an A-ASSOCIATE-RQ every 0.5 s, reopened when dropped."""
    rq = rq_bytes("CLINIC")
    live: list[tuple[socket.socket, int, float]] = []
    while not stop.is_set() and tally.connections < rounds:
        while len(live) < sockets and tally.connections < rounds:
            try:
                live.append((connect(src, port, timeout=0.2), 0, time.monotonic()))
                tally.connections += 1
            except OSError as exc:
                tally.errors.append(str(exc))
                break
        keep = []
        for s, pos, t0 in live:
            try:
                s.send(rq[pos : pos + 1])
                s.settimeout(0.001)
                if s.recv(1) == b"":
                    raise ConnectionError
            except socket.timeout:
                keep.append((s, pos + 1, t0))
                continue
            except OSError:
                pass
            tally.closed += 1
            tally.lifetimes.append(time.monotonic() - t0)
            s.close()
        live = keep
        stop.wait(0.5)
    for s, _, _ in live:
        s.close()


def slowloris_data(stop: threading.Event, port: int, src: str, tally: Tally, rounds: int = 20) -> None:
    """Associate (as a registered AE from elsewhere), then dribble a P-DATA-TF one byte every 0.5 s."""
    while not stop.is_set() and tally.connections < rounds:
        s = associate(src, port, "CLINIC")
        tally.connections += 1
        started = time.monotonic()
        data = _fragment(store_command(), last=True, command=True)
        s.settimeout(0.5)
        for i in range(len(data)):
            try:
                s.send(data[i : i + 1])
                got = s.recv(16)
                if got == b"" or got[:1] == bytes([pdu.A_ABORT]):
                    tally.aborted += got[:1] == bytes([pdu.A_ABORT])
                    tally.closed += got == b""
                    tally.lifetimes.append(time.monotonic() - started)
                    break
            except socket.timeout:
                continue
            except OSError:
                tally.closed += 1
                tally.lifetimes.append(time.monotonic() - started)
                break
        s.close()


def endless_fragments(stop: threading.Event, port: int, src: str, tally: Tally, rounds: int = 3) -> None:
    """A C-STORE whose data set never ends: 256 KiB fragments, none marked last, until the server stops it."""
    chunk = _fragment(os.urandom(256 * 1024 - 12), last=False)
    while not stop.is_set() and tally.connections < rounds:
        s = associate(src, port, "CLINIC")
        tally.connections += 1
        started, sent = time.monotonic(), 0
        try:
            s.sendall(_fragment(store_command(), last=True, command=True))
            while not stop.is_set() and sent < 8 << 30:
                s.sendall(chunk)
                sent += len(chunk)
        except OSError:
            pass
        tally.sent_bytes.append(sent)
        _ended(s, tally, started)


def deflate_bomb(size: int = 256 << 20) -> bytes:
    """A deflated data set of a few hundred KiB that inflates to ``size`` bytes of zeros."""
    c = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    zeros = bytes(1 << 20)
    out = [c.compress(zeros) for _ in range(size >> 20)]
    out.append(c.flush())
    data = b"".join(out)
    return data + (b"\0" if len(data) % 2 else b"")


def deflate_bombs(stop: threading.Event, port: int, src: str, tally: Tally, bomb: bytes, rounds: int = 4) -> None:
    while not stop.is_set() and tally.connections < rounds:
        s = associate(src, port, "CLINIC", ts=DeflatedExplicitVRLittleEndian)
        tally.connections += 1
        started = time.monotonic()
        s.sendall(_fragment(store_command(), last=True, command=True))
        step = 200_000
        for i in range(0, len(bomb), step):
            s.sendall(_fragment(bomb[i : i + step], last=i + step >= len(bomb)))
        _ended(s, tally, started)


def idle_flood(stop: threading.Event, port: int, sources: list[str], tally: Tally, total: int = 500,
               rounds: int = 3000) -> None:
    """Hold ``total`` silent connections open (spread over ``sources``), reopening those the server drops."""
    live: list[tuple[socket.socket, float]] = []
    i = 0
    while not stop.is_set() and tally.connections < rounds:
        while len(live) < total and tally.connections < rounds and not stop.is_set():
            try:
                live.append((connect(sources[i % len(sources)], port, timeout=1.0), time.monotonic()))
                tally.connections += 1
            except OSError as exc:
                tally.errors.append(str(exc))
                break
            i += 1
        keep = []
        for s, t0 in live:
            s.setblocking(False)
            try:
                gone = s.recv(1) == b""
            except BlockingIOError:
                gone = False
            except OSError:
                gone = True
            if gone:
                tally.closed += 1
                tally.lifetimes.append(time.monotonic() - t0)
                s.close()
            else:
                keep.append((s, t0))
        live = keep
        stop.wait(0.3)
    for s, _ in live:
        s.close()


GARBAGE = [
    b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    b"\x09\x00\x00\x00\x00\x04abcd",  # unknown PDU type
    b"\x01\x00\xff\xff\xff\xff",  # an A-ASSOCIATE-RQ claiming 4 GiB
    b"\x01\x00\x00\x00\x00\x10" + b"\xff" * 16,  # a malformed A-ASSOCIATE-RQ body
    b"\x04\x00\x00\x00\x00\x10" + b"\x00" * 16,  # P-DATA before any association
]


def garbage(stop: threading.Event, port: int, src: str, tally: Tally, rounds: int = 200) -> None:
    while not stop.is_set() and tally.connections < rounds:
        data = GARBAGE[tally.connections % len(GARBAGE)]
        try:
            s = connect(src, port, timeout=5.0)
        except OSError as exc:
            tally.errors.append(str(exc))
            stop.wait(0.1)
            continue
        tally.connections += 1
        started = time.monotonic()
        s.sendall(data)
        _ended(s, tally, started)


BAD_UID = b"1.2.3\xff\n2026-01-01 00:00:00 INFO FORGED LOG LINE"


def bad_uids(stop: threading.Event, port: int, src: str, tally: Tally, rounds: int = 50) -> None:
    while not stop.is_set() and tally.connections < rounds:
        s = associate(src, port, "CLINIC")
        tally.connections += 1
        started = time.monotonic()
        s.sendall(_fragment(store_command(BAD_UID), last=True, command=True))
        _ended(s, tally, started)
        stop.wait(0.05)
