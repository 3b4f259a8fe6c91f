"""Wiring of the Storage SCP: presentation contexts, limits and handlers.

The acceptor is ``pacs_gateway.ul`` (blocking sockets, one thread per
association), which uses pynetdicom's PDU classes and presentation-context
negotiation. Verification and every storage SOP class pynetdicom knows are
accepted in every transfer syntax below.
"""

from __future__ import annotations

from functools import partial

from pydicom.uid import (
    JPEG2000,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    HTJ2K,
    HTJ2KLossless,
    HTJ2KLosslessRPCL,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
)
from pynetdicom import AllStoragePresentationContexts
from pynetdicom.presentation import PresentationContext, build_context
from pynetdicom.sop_class import Verification

from pacs_gateway.scp import handlers
from pacs_gateway.ul.acceptor import Handlers
from pacs_gateway.ul.server import StorageServer
from telerad.errors import ConfigError

TRANSFER_SYNTAXES = [
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    RLELossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    JPEG2000Lossless,
    JPEG2000,
    HTJ2KLossless,
    HTJ2KLosslessRPCL,
    HTJ2K,
]


def supported_contexts() -> list[PresentationContext]:
    """Verification plus every storage SOP class, each in every transfer syntax we store."""
    contexts = [build_context(Verification, [ExplicitVRLittleEndian, ImplicitVRLittleEndian, ExplicitVRBigEndian])]
    contexts += [build_context(cx.abstract_syntax, TRANSFER_SYNTAXES) for cx in AllStoragePresentationContexts]
    return contexts


def start_server(ctx) -> StorageServer:
    """Start listening and serving in background threads (``.shutdown()`` stops it)."""
    s = ctx.settings.dicom
    bound = Handlers(
        requested=partial(handlers.handle_requested, ctx=ctx),
        store=partial(handlers.handle_store, ctx=ctx),
        closed=partial(handlers.handle_closed, ctx=ctx),
    )
    try:
        return StorageServer(
            (s.bind, s.port), supported_contexts(), bound,
            max_pdu=s.max_pdu, max_associations=s.max_associations,
            acse_timeout=s.acse_timeout_s, network_timeout=s.network_timeout_s,
        )  # fmt: skip
    except OSError as exc:
        raise ConfigError(
            f"setting 'dicom.port': cannot listen on {s.bind}:{s.port}: {exc.strerror or exc} (is another DICOM server using it?)"
        ) from None
