"""DICOMweb (``/dicomweb``): QIDO-RS search, WADO-RS retrieve and rendering, STOW-RS store.

One router per resource; :data:`router` joins them under the ``/dicomweb`` prefix.
The metadata these routes serve is precomputed by :mod:`pacs_gateway.metadata`.
"""

from __future__ import annotations

from fastapi import APIRouter

from viewer.dicomweb import qido, rendered, stow, wado

router = APIRouter(prefix="/dicomweb", tags=["dicomweb"])
router.include_router(qido.router)
router.include_router(rendered.router)
router.include_router(wado.router)
router.include_router(stow.router)


def install(app, *, sessions, store_root, gateway=None) -> None:
    """Add the routes, the metadata cache and the OHIF Viewer that reads them (``/ohif/``) to ``app``.

    With a running ``gateway`` the metadata is precomputed when series complete (its event
    bus), otherwise built on the first request.
    """
    from pacs_gateway.metadata import MetadataCache
    from viewer import ohif

    app.include_router(router)
    ohif.install(app)
    app.state.metadata = None
    if store_root is not None:
        cache = MetadataCache(store_root, sessions)
        if gateway is not None:
            cache.attach(gateway.bus)
        app.state.metadata = cache
