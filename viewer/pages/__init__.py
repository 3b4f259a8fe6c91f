"""Server-rendered pages: worklist, study, technician, stroke team, admin."""

from __future__ import annotations

from fastapi import FastAPI


def install(app: FastAPI) -> None:
    from viewer.pages import admin, clinic, study, worklist

    app.include_router(worklist.router)
    app.include_router(study.router)
    app.include_router(clinic.router)
    app.include_router(admin.router)
    app.include_router(admin.api)
