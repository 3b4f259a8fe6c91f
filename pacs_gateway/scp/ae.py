"""Wiring of the pynetdicom Application Entity: contexts, limits and handlers."""

from __future__ import annotations

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
from pynetdicom import AE, AllStoragePresentationContexts, evt
from pynetdicom.sop_class import Verification

from pacs_gateway.scp import handlers
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


def build_ae(ctx) -> AE:
    """An AE accepting Verification and every storage SOP class in every syntax above."""
    s = ctx.settings.dicom
    ae = AE(ae_title=s.ae_title)
    ae.maximum_pdu_size = s.max_pdu
    ae.maximum_associations = s.max_associations
    ae.acse_timeout = s.acse_timeout_s
    ae.dimse_timeout = s.dimse_timeout_s
    ae.network_timeout = s.network_timeout_s
    ae.require_called_aet = False
    ae.add_supported_context(Verification)
    for cx in AllStoragePresentationContexts:
        ae.add_supported_context(cx.abstract_syntax, TRANSFER_SYNTAXES)
    return ae


def event_handlers(ctx) -> list:
    return [
        (evt.EVT_REQUESTED, handlers.handle_requested, [ctx]),
        (evt.EVT_C_ECHO, handlers.handle_echo),
        (evt.EVT_C_STORE, handlers.handle_store, [ctx]),
        (evt.EVT_RELEASED, handlers.handle_closed, [ctx]),
        (evt.EVT_ABORTED, handlers.handle_closed, [ctx]),
        (evt.EVT_CONN_CLOSE, handlers.handle_closed, [ctx]),
    ]


def start_server(ctx):
    """Start the SCP in background threads; returns the server (``.shutdown()`` stops it)."""
    ae = build_ae(ctx)
    bind, port = ctx.settings.dicom.bind, ctx.settings.dicom.port
    try:
        server = ae.start_server((bind, port), block=False, evt_handlers=event_handlers(ctx))
    except OSError as exc:
        raise ConfigError(
            f"setting 'dicom.port': cannot listen on {bind}:{port}: {exc.strerror or exc} (is another DICOM server using it?)"
        ) from None
    return ae, server
