"""The composition root: builds the gateway, the triage loop and the web app from one settings object.

Only this module (with ``telerad.settings``, which assembles each package's settings section, and the
command lines) knows every package; each package below it imports only the layers under it
(docs/architecture.md, checked by tests/test_architecture.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pacs_gateway.service import Gateway
from stroke.jobs import StrokeLoop
from telerad.settings import Settings

if TYPE_CHECKING:
    from fastapi import FastAPI
    from sqlalchemy import MetaData


def build_gateway(settings: Settings) -> Gateway:
    """A gateway with stroke triage in the loop (``gateway.stroke``: triage jobs on ctp series,
    results back as DICOM, alerts), not yet started."""
    return Gateway(settings, extensions={"stroke": StrokeLoop})


def build_web_app(gateway: Gateway) -> FastAPI:
    """The web app of a running gateway; with a remote object store its readers fetch through the cache."""
    from viewer.main import create_app  # a worker (no web app) does not pay for importing FastAPI

    app = create_app(gateway.sessions, ready=lambda: gateway.server is not None, alerts=gateway.stroke.alerts,
                     store_root=gateway.store.root, settings=gateway.settings, gateway=gateway)
    if getattr(gateway.store, "kind", "local") != "local" and getattr(app.state, "metadata", None) is not None:
        app.state.metadata.fetch = gateway.store.fetch  # DICOMweb, triage PNGs and reports read through the cache
    return app


def index_metadata() -> MetaData:
    """The index's metadata with every package's tables: the gateway's, stroke's and the reading room's.

    What alembic's autogenerate compares the database against (``config.attributes["target_metadata"]``
    of ``pacs_gateway/index/migrations/env.py``); the gateway alone knows only its own tables.
    """
    import stroke.models  # noqa: F401  (declares its tables on the shared Base)
    import viewer.models  # noqa: F401
    from pacs_gateway.index.models import Base

    return Base.metadata
