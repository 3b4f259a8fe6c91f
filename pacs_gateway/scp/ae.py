"""Wiring of the Storage SCP: presentation contexts, limits and handlers.

The acceptor is ``pacs_gateway.ul`` (a selector stage for connections still
negotiating, then blocking sockets and one thread per association), which uses pynetdicom's PDU classes and presentation-context
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
from pacs_gateway.scp.tls import server_context
from pacs_gateway.ul.acceptor import Handlers
from pacs_gateway.ul.limits import Limits
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


def limits_from(s) -> Limits:
    """The acceptor's bounds from the ``dicom`` settings section."""
    return Limits(
        artim_s=s.acse_timeout_s, idle_s=s.network_timeout_s, pdu_s=s.network_timeout_s,
        message_s=s.dimse_timeout_s, min_rate=s.min_rate_bytes_s, max_pdu=s.max_pdu,
        max_dataset=s.max_dataset_bytes, max_associations=s.max_associations,
        per_ip_associations=s.max_associations_per_ip, max_pending=s.max_pending_connections,
        per_ip_pending=s.max_pending_per_ip,
    )  # fmt: skip


def start_server(ctx) -> StorageServer:
    """Start listening and serving in background threads (``.shutdown()`` stops it)."""
    s = ctx.settings.dicom
    bound = Handlers(
        requested=partial(handlers.handle_requested, ctx=ctx),
        store=partial(handlers.handle_store, ctx=ctx),
        closed=partial(handlers.handle_closed, ctx=ctx),
        file_meta=handlers.file_meta,
        disk_ok=partial(handlers.disk_ok, ctx=ctx),
        spool_dir=ctx.store.tmp,
    )
    ssl_context = None
    if s.tls_port is not None:
        ssl_context = server_context(s.tls_cert, s.tls_key, s.tls_ca, require_client_cert=s.tls_require_client_cert)
    try:
        return StorageServer(
            (s.bind, s.port), supported_contexts(), bound, limits=limits_from(s),
            tls_address=(s.bind, s.tls_port) if s.tls_port is not None else None, ssl_context=ssl_context,
        )  # fmt: skip
    except OSError as exc:
        raise ConfigError(
            f"setting 'dicom.port'/'dicom.tls_port': cannot listen on {s.bind}:{s.port}"
            f"{f' / {s.tls_port}' if s.tls_port else ''}: {exc.strerror or exc} (is another DICOM server using it?)"
        ) from None
