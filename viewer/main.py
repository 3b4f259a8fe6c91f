"""Builds the FastAPI application."""

from __future__ import annotations

from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.orm import sessionmaker

from telerad import __version__
from viewer import problems
from viewer.api import studies


def create_app(sessions: sessionmaker, *, ready=lambda: True) -> FastAPI:
    app = FastAPI(title="telerad", version=__version__)
    app.state.sessions = sessions
    problems.install(app)
    app.include_router(studies.router)

    @app.get("/healthz", tags=["health"])
    def healthz():
        with sessions() as s:
            s.execute(text("SELECT 1"))
        if not ready():
            raise problems.Problem(503, "Not ready", "the DICOM gateway is not running")
        return {"status": "ok", "version": __version__}

    return app
