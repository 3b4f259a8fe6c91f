"""Builds the FastAPI application."""

from __future__ import annotations

from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.orm import sessionmaker

from telerad import __version__
from viewer import problems
from viewer.api import alerts as alerts_api
from viewer.api import studies, triage


def create_app(sessions: sessionmaker, *, ready=lambda: True, alerts=None, store_root=None) -> FastAPI:
    """``alerts``: the gateway's AlertService (acknowledgements); ``store_root``: where summary PNGs live."""
    app = FastAPI(title="telerad", version=__version__)
    app.state.sessions = sessions
    app.state.alerts = alerts
    app.state.store_root = store_root
    problems.install(app)
    app.include_router(studies.router)
    app.include_router(alerts_api.router)
    app.include_router(triage.router)

    @app.get("/healthz", tags=["health"])
    def healthz():
        with sessions() as s:
            s.execute(text("SELECT 1"))
        if not ready():
            raise problems.Problem(503, "Not ready", "the DICOM gateway is not running")
        return {"status": "ok", "version": __version__}

    return app
