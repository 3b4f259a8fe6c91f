"""The bounds an acceptor holds every peer to: time, bytes and connections.

A peer that is slow, silent, endless or numerous must never hold the port, the
memory or the threads a registered clinic needs. Each bound here is one setting
(``dicom.*``, see the README's Configuration table).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

GiB = 1 << 30


@dataclass(frozen=True)
class Limits:
    """time
    artim_s : from accept to a whole A-ASSOCIATE-RQ (TLS handshake included), in total.
    idle_s : the longest silence between PDUs once associated (the ARTIM-style idle timer).
    pdu_s : a PDU must arrive whole within this long after its first byte.
    message_s : a DIMSE message (command and data set) gets this long, plus ``1 s`` per
        ``min_rate`` bytes received, from its first fragment to its last.
    min_rate : bytes/s a slow but honest link still achieves (a township clinic's uplink).

    bytes
    max_pdu : the largest P-DATA-TF we announce; a PDU longer than it plus slack aborts.
    max_command : the largest command set (they are a few hundred bytes).
    max_dataset : the largest data set (spooled to disk, never held in memory).
    max_rq : the largest A-ASSOCIATE-RQ accepted.

    connections
    max_associations / per_ip_associations : negotiated associations (each has a thread).
    max_pending / per_ip_pending : accepted sockets still negotiating (no thread; oldest evicted).
    """

    artim_s: float = 30.0
    idle_s: float = 60.0
    pdu_s: float = 60.0
    message_s: float = 60.0
    min_rate: int = 16 * 1024
    max_pdu: int = 262_144
    max_command: int = 64 * 1024
    max_dataset: int = 2 * GiB
    max_rq: int = 256 * 1024
    max_associations: int = 16
    per_ip_associations: int = 8
    max_pending: int = 512
    per_ip_pending: int = 16


class Deadline:
    """A monotonic deadline; ``remaining()`` raises ``TimeoutError(what)`` once it has passed."""

    __slots__ = ("at", "what")

    def __init__(self, seconds: float, what: str):
        self.at = time.monotonic() + seconds
        self.what = what

    def extend(self, seconds: float) -> None:
        self.at += seconds

    def remaining(self) -> float:
        left = self.at - time.monotonic()
        if left <= 0:
            raise TimeoutError(self.what)
        return left
