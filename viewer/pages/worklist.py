"""The radiologist's worklist (stroke alerts first, then priority, then waiting time), live over SSE."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, StreamingResponse
from sqlalchemy import func, select
from starlette.concurrency import run_in_threadpool

from pacs_gateway.index.models import Clinic, Delivery, Event
from stroke.models import AlertStep
from viewer.auth import CurrentUser, CurrentUserDep, require_roles
from viewer.models import Report, StudyClaim
from viewer.pages.render import HOME, render
from viewer.reading import claims, worklist

router = APIRouter(include_in_schema=False)
Reader = Annotated[CurrentUser, Depends(require_roles("radiologist", "admin"))]
HEARTBEAT_S = 15.0


@router.get("/")
async def home(user: CurrentUserDep):
    return RedirectResponse(HOME.get(user.role, "/login"), status_code=303)


def _rows(request: Request, clinic: str | None, priority: str | None, status: str | None) -> list[dict]:
    """The filtered rows; an empty filter (the form's "all") means no filter."""
    clinic, priority, status = clinic or None, priority or None, status or None
    app = request.app
    routing = getattr(app.state.settings, "routing", None)
    kinds = routing.stroke_kinds if routing is not None else worklist.DEFAULT_STROKE_KINDS
    with app.state.sessions() as s:
        rows = worklist.rows(s, app.state.settings.web, stroke_kinds=kinds,
                             clinics=[clinic] if clinic else None)
    if priority:
        rows = [r for r in rows if r["priority"] == priority]
    if status == "open" or status is None:
        rows = [r for r in rows if r["status"] != "reported"]
    elif status in worklist.STATUSES:
        rows = [r for r in rows if r["status"] == status]
    return rows


def _clinics(request: Request) -> list[str]:
    with request.app.state.sessions() as s:
        return list(s.execute(select(Clinic.name).order_by(Clinic.name)).scalars())


@router.get("/worklist", response_class=HTMLResponse)
async def worklist_page(request: Request, user: Reader, clinic: str | None = None,
                        priority: str | None = Query(None, pattern="^(stroke|urgent|routine)?$"),
                        status: str | None = Query(None, pattern="^(open|all|receiving|complete|routed|reading|reported)?$")):
    rows = await run_in_threadpool(_rows, request, clinic, priority, status)
    clinics = await run_in_threadpool(_clinics, request)
    return render(request, "worklist.html", title="Worklist", rows=rows, clinics=clinics,
                  filters={"clinic": clinic or "", "priority": priority or "", "status": status or "open"})


@router.get("/worklist/rows", response_class=HTMLResponse)
async def worklist_rows(request: Request, user: Reader, clinic: str | None = None,
                        priority: str | None = Query(None, pattern="^(stroke|urgent|routine)?$"),
                        status: str | None = Query(None, pattern="^(open|all|receiving|complete|routed|reading|reported)?$")):
    """The table body alone, which the page fetches again when the stream says something changed."""
    rows = await run_in_threadpool(_rows, request, clinic, priority, status)
    return render(request, "worklist_rows.html", rows=rows)


def fingerprint(sessions, claim_idle_min: float) -> tuple:
    """Changes whenever a study, alert, claim (taken, renewed, released or lapsed), report or delivery changes."""
    since = claims.live_since(claim_idle_min)
    with sessions() as s:
        return (s.execute(select(func.max(Event.id))).scalar(), s.execute(select(func.max(AlertStep.id))).scalar(),
                tuple(s.execute(select(func.count(StudyClaim.study_uid), func.max(StudyClaim.claimed_at))
                                .where(StudyClaim.claimed_at > since)).one()),
                s.execute(select(func.max(Report.updated_at))).scalar(),
                s.execute(select(func.max(Delivery.updated_at))).scalar())


@router.get("/worklist/stream")
async def worklist_stream(request: Request, user: Reader):
    """``text/event-stream``: a ``worklist.changed`` event whenever the worklist would look different."""
    sessions = request.app.state.sessions
    idle_min = request.app.state.settings.web.claim_idle_min

    async def events():
        last = await run_in_threadpool(fingerprint, sessions, idle_min)
        idle = 0.0
        yield "retry: 3000\n\n"
        while not await request.is_disconnected():
            await asyncio.sleep(1.0)
            now = await run_in_threadpool(fingerprint, sessions, idle_min)
            if now != last:
                last, idle = now, 0.0
                yield "event: worklist.changed\ndata: {}\n\n"
                continue
            idle += 1.0
            if idle >= HEARTBEAT_S:
                idle = 0.0
                yield ": keep-alive\n\n"

    return StreamingResponse(events(), media_type="text/event-stream",
                             headers={"cache-control": "no-cache", "x-accel-buffering": "no"})
