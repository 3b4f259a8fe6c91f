"""The sender interface: everything the delivery engine needs from "put these instances there".

A sender is a context manager holding one connection (one DICOM association, or
one kept-alive HTTP connection) for a batch of instances of one series::

    with open_sender(destination, items, options) as sender:   # connects or raises DestinationUnavailable
        for outcome in sender.send(items):                     # one Outcome per item, in order
            ...
    # a link that drops mid-way raises DestinationUnavailable from send(); the
    # items without an Outcome were not delivered (the caller resumes with them)

Implementations: :mod:`.dimse_sender` (pynetdicom C-STORE SCU, the default),
:mod:`.ul_sender` (telerad's blocking-socket requestor, ``routing.sender = "ul"``)
and :mod:`.stow_sender` (DICOMweb STOW-RS). A faster DIMSE sender only has to keep
this contract: send as stored when the peer accepts the stored transfer syntax,
compress losslessly for the wire when configured and accepted, and never hang
past ``options.dimse_timeout_s`` without raising.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Protocol

from pacs_gateway.errors import GatewayError
from pacs_gateway.routing.destinations import DestinationInfo


class DestinationUnavailable(GatewayError, ConnectionError):
    """The destination cannot be reached, refused the association, or the link dropped."""


@dataclass(frozen=True)
class Outgoing:
    """One stored instance to send; ``key`` is its ledger row id."""

    key: int
    path: Path
    sop_class_uid: str
    sop_instance_uid: str
    transfer_syntax: str
    size: int


@dataclass(frozen=True)
class Outcome:
    key: int
    delivered: bool
    permanent: bool  # not delivered and never will be (ignored when delivered)
    message: str
    status: int | None = None
    wire_syntax: str | None = None
    bytes_sent: int = 0
    bytes_saved: int = 0
    at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))


@dataclass(frozen=True)
class SenderOptions:
    calling_ae: str = "TELERAD"
    connect_timeout_s: float = 10.0
    dimse_timeout_s: float = 30.0
    max_pdu: int = 262_144
    scratch_dir: Path | None = None  # where wire-compressed copies are written (the store's tmp)
    stop: threading.Event = field(default_factory=threading.Event)  # set: stop after the current item
    implementation: str = "ul"  # DIMSE sender: "ul" or "pynetdicom" (routing.sender)


class Sender(Protocol):
    def __enter__(self) -> "Sender": ...

    def __exit__(self, *exc: object) -> None: ...

    def send(self, items: Sequence[Outgoing]) -> Iterator[Outcome]: ...


def open_sender(destination: DestinationInfo, items: Sequence[Outgoing], options: SenderOptions) -> Sender:
    """The sender for ``destination``'s kind (not yet connected: use it with ``with``)."""
    if destination.kind == "dicom":
        tls = destination.config.tls is not None and destination.config.tls.enabled
        if options.implementation == "ul" and not tls:
            from pacs_gateway.routing.ul_sender import UlSender

            return UlSender(destination, items, options)
        from pacs_gateway.routing.dimse_sender import DimseSender

        return DimseSender(destination, items, options)
    if destination.kind == "dicomweb":
        from pacs_gateway.routing.stow_sender import StowSender

        return StowSender(destination, options)
    raise GatewayError(f"destination '{destination.name}' has an unknown kind '{destination.kind}'")
