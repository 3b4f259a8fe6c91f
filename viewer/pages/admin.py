"""Admin pages: dashboard (same figures as /metrics), clinics, destinations, routes, users, audit log."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, PlainTextResponse, RedirectResponse
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from pacs_gateway.index.models import Clinic, Destination
from viewer import metrics
from viewer.api.schemas import Dashboard, UserPublic
from viewer.auth import CurrentUser, audit, require_roles
from viewer.auth.deps import open_on_loopback
from viewer.auth.users import ROLES, AccountError, add_user, list_users, remove_user, set_password
from viewer.pages.render import render

router = APIRouter(include_in_schema=False)
api = APIRouter(tags=["admin"])
Admin = Annotated[CurrentUser, Depends(require_roles("admin"))]


def _figures(request: Request) -> dict:
    with request.app.state.sessions() as s:
        return metrics.collect(s)


@api.get("/metrics", dependencies=[Depends(open_on_loopback)], response_class=PlainTextResponse)
async def prometheus_metrics(request: Request):
    """Prometheus text format; open to loopback clients, admins elsewhere."""
    data = await run_in_threadpool(_figures, request)
    return PlainTextResponse(metrics.prometheus(data), media_type="text/plain; version=0.0.4; charset=utf-8")


@api.get("/api/admin/dashboard", response_model=Dashboard)
def dashboard_json(request: Request, user: Admin) -> dict:
    return _figures(request)


@api.get("/api/users", response_model=list[UserPublic])
def users_json(request: Request, user: Admin) -> list[dict]:
    with request.app.state.sessions() as s:
        return list_users(s)


def _overview(request: Request) -> dict:
    routing = request.app.state.settings.routing
    with request.app.state.sessions() as s:
        clinics = s.execute(select(Clinic).order_by(Clinic.name)).scalars().all()
        destinations = s.execute(select(Destination).order_by(Destination.name)).scalars().all()
    return {"clinics": clinics, "destinations": destinations, "rules": routing.rules,
            "stroke_kinds": routing.stroke_kinds}


@router.get("/admin", response_class=HTMLResponse)
async def dashboard(request: Request, user: Admin, error: str | None = None, done: str | None = None):
    data = await run_in_threadpool(_figures, request)
    overview = await run_in_threadpool(_overview, request)
    return render(request, "admin.html", title="Dashboard", m=data, error=error, done=done, **overview)


@router.get("/admin/users", response_class=HTMLResponse)
async def users_page(request: Request, user: Admin, error: str | None = None, done: str | None = None):
    def load():
        with request.app.state.sessions() as s:
            return list_users(s), list(s.execute(select(Clinic.name).order_by(Clinic.name)).scalars())
    rows, clinics = await run_in_threadpool(load)
    return render(request, "admin_users.html", title="Users", users=rows, clinics=clinics, roles=ROLES,
                  error=error, done=done)


@router.post("/admin/users")
async def users_change(request: Request, user: Admin, action: Annotated[str, Form()], name: Annotated[str, Form(max_length=64)],
                       role: Annotated[str, Form()] = "", clinic: Annotated[list[str], Form()] = [],  # noqa: B006
                       password: Annotated[str, Form(max_length=1024)] = ""):
    def change():
        with request.app.state.sessions.begin() as s:
            if action == "add":
                add_user(s, name, role, password, [c for c in clinic if c])
            elif action == "passwd":
                set_password(s, name, password)
            elif action == "remove":
                if name == user.name:
                    raise AccountError("you cannot remove your own account")
                remove_user(s, name)
            else:
                raise AccountError(f"action '{action}' is not add, passwd or remove")
            audit.add(s, user, f"user.{action}", name, role or None)
    try:
        await run_in_threadpool(change)
    except AccountError as exc:
        from urllib.parse import quote

        return RedirectResponse(f"/admin/users?error={quote(str(exc))}", status_code=303)
    return RedirectResponse(f"/admin/users?done={action}", status_code=303)


@router.post("/admin/clinics")
async def clinics_change(request: Request, user: Admin, action: Annotated[str, Form()],
                         name: Annotated[str, Form(max_length=128)], ae_title: Annotated[str, Form(max_length=16)] = "",
                         host: Annotated[str, Form(max_length=255)] = "", port: Annotated[str, Form(max_length=5)] = ""):
    """Register or remove a sending clinic (as ``telerad clinic add|remove``); the gateway sees it within 2 s."""
    from pydantic import ValidationError

    from pacs_gateway.clinics import ClinicError, ClinicRegistry

    def change():
        reg = ClinicRegistry(request.app.state.sessions)
        if action == "add":
            if port and not (port.isdigit() and 1 <= int(port) <= 65535):
                raise ClinicError("port: a number between 1 and 65535")
            try:
                reg.add(name.strip(), ae_title.strip(), host.strip() or None, int(port) if port else None)
            except ValidationError as exc:
                raise ClinicError("; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())) from None
        elif action == "remove":
            reg.remove(name)
        else:
            raise ClinicError(f"action '{action}' is not add or remove")
        audit.record(request.app.state.sessions, user, f"clinic.{action}", name, ae_title or None)
    try:
        await run_in_threadpool(change)
    except ClinicError as exc:
        from urllib.parse import quote

        return RedirectResponse(f"/admin?error={quote(str(exc))}", status_code=303)
    return RedirectResponse(f"/admin?done=clinic.{action}", status_code=303)


@router.get("/admin/audit", response_class=HTMLResponse)
async def audit_page(request: Request, user: Admin, who: str | None = None, action: str | None = None,
                     before: int | None = None):
    def load():
        with request.app.state.sessions() as s:
            return audit.entries(s, limit=200, user=who or None, action=action or None, before_id=before)
    rows = await run_in_threadpool(load)
    return render(request, "admin_audit.html", title="Audit log", rows=rows, who=who or "", action=action or "")
