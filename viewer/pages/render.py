"""Jinja2 rendering for the server-side pages (templates in viewer/templates)."""

from __future__ import annotations

from pathlib import Path

from fastapi import Request
from fastapi.templating import Jinja2Templates

from viewer.auth.deps import COOKIE

TEMPLATES = Jinja2Templates(directory=str(Path(__file__).resolve().parent.parent / "templates"))
HOME = {"radiologist": "/worklist", "technician": "/technician", "stroke": "/stroke", "admin": "/admin", "open": "/worklist"}
NAV = {
    "radiologist": [("/worklist", "Worklist"), ("/stroke", "Stroke alerts")],
    "technician": [("/technician", "My clinic")],
    "stroke": [("/stroke", "Stroke alerts")],
    "admin": [("/worklist", "Worklist"), ("/stroke", "Stroke alerts"), ("/technician", "Clinics' studies"),
              ("/admin", "Dashboard"), ("/admin/users", "Users"), ("/admin/audit", "Audit log")],
}
NAV["open"] = NAV["admin"]


def csrf_token(request: Request) -> str:
    return request.app.state.signer.csrf(request.cookies.get(COOKIE, ""))


def render(request: Request, name: str, status_code: int = 200, **context):
    user = getattr(request.state, "user", None)
    context.setdefault("title", "telerad")
    return TEMPLATES.TemplateResponse(request, name, {
        "user": user, "nav": NAV.get(user.role, []) if user else [], "csrf_token": csrf_token(request), **context,
    }, status_code=status_code, headers={"cache-control": "no-store"})
