"""Builds the FastAPI application."""

from __future__ import annotations

from pathlib import Path

from fastapi import Depends, FastAPI
from fastapi.staticfiles import StaticFiles
from sqlalchemy import text
from sqlalchemy.orm import sessionmaker

from telerad import __version__
from viewer import dicomweb, problems
from viewer.api import alerts as alerts_api
from viewer.api import reading, studies, triage
from viewer.api.schemas import Health
from viewer.auth import routes as auth_routes
from viewer.auth.deps import open_on_loopback
from viewer.auth.tokens import TokenSigner
from viewer.pages import install as install_pages


def create_app(sessions: sessionmaker, *, settings, ready=lambda: True, alerts=None, store_root=None,
               gateway=None) -> FastAPI:
    """``settings``: the Settings (secret key, web section), handed in by the caller (``telerad.app``);
    ``alerts``: the gateway's AlertService (acknowledgements); ``store_root``: where summary PNGs live;
    ``gateway``: the running Gateway, which stores and routes final reports."""
    app = FastAPI(title="telerad", version=__version__, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.sessions = sessions
    app.state.alerts = alerts
    app.state.store_root = store_root
    app.state.settings = settings
    app.state.gateway = gateway
    app.state.signer = TokenSigner(settings.secret_key)
    problems.install(app)
    auth_routes.install(app)
    app.include_router(auth_routes.router)
    auth_routes.include_docs(app)
    app.mount("/static", StaticFiles(directory=str(Path(__file__).with_name("static"))), name="static")
    app.include_router(studies.router)
    app.include_router(alerts_api.router)
    app.include_router(triage.router)
    dicomweb.install(app, sessions=sessions, store_root=store_root, gateway=gateway)
    app.include_router(reading.router)
    install_pages(app)

    @app.get("/healthz", tags=["health"], dependencies=[Depends(open_on_loopback)], response_model=Health)
    def healthz():
        with sessions() as s:
            s.execute(text("SELECT 1"))
        if not ready():
            raise problems.Problem(503, "Not ready", "the DICOM gateway is not running")
        return {"status": "ok", "version": __version__}

    return app
