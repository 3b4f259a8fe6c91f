"""Stroke alerts: list, read, acknowledge, and a live server-sent-events stream of every step.

Every alert shows the algorithm and its version and the quality warnings of its
numbers, and says that they are an automated result, not a diagnosis.
"""

from __future__ import annotations

import asyncio
import json
from typing import Annotated

from fastapi import APIRouter, Body, Depends, Query, Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from stroke import alerts
from stroke.alerts import AlertError
from viewer.api.schemas import AlertDetail, AlertPublic
from viewer.auth import ANONYMOUS, CurrentUser, audit, require_roles
from viewer.problems import Problem

ALERT_ROLES = ("stroke", "radiologist", "admin")
router = APIRouter(prefix="/api/alerts", tags=["alerts"], dependencies=[Depends(require_roles(*ALERT_ROLES))])
HEARTBEAT_S = 15.0


def _service(request: Request):
    svc = getattr(request.app.state, "alerts", None)
    if svc is None:
        raise Problem(503, "Alerts unavailable", "this web service runs without the alert service")
    return svc


def _call(fn, *args):
    try:
        return fn(*args)
    except AlertError as exc:
        raise Problem(exc.status, "Alert error", str(exc)) from None


@router.get("", response_model=list[AlertPublic])
def list_alerts(request: Request, limit: int = Query(100, ge=1, le=1000), study: str | None = None) -> list[dict]:
    return _service(request).list(limit=limit, study_uid=study)


@router.get("/stream")
async def stream(request: Request, since: int | None = Query(None, ge=0)):
    """``text/event-stream``: one event per lifecycle step (``alert.created``, ``alert.sent``, ...).

    Resumes after the ``Last-Event-ID`` header (or ``?since=ID``); otherwise starts with new steps.
    """
    sessions = request.app.state.sessions
    last = request.headers.get("last-event-id")
    start = int(last) if last and last.isdigit() else since

    def newest() -> int:
        with sessions() as s:
            return alerts.newest_step_id(s)

    def fetch(after: int) -> list[tuple[int, str, str]]:
        with sessions() as s:
            return [(step_id, name, json.dumps(data)) for step_id, name, data in alerts.step_events(s, after)]

    async def events():
        after = start if start is not None else await run_in_threadpool(newest)
        idle = 0.0
        yield "retry: 2000\n\n"
        while not await request.is_disconnected():
            rows = await run_in_threadpool(fetch, after)
            for step_id, name, data in rows:
                after = step_id
                yield f"id: {step_id}\nevent: {name}\ndata: {data}\n\n"
            if rows:
                idle = 0.0
                continue
            await asyncio.sleep(0.5)
            idle += 0.5
            if idle >= HEARTBEAT_S:
                idle = 0.0
                yield ": keep-alive\n\n"

    return StreamingResponse(events(), media_type="text/event-stream",
                             headers={"cache-control": "no-cache", "x-accel-buffering": "no"})


@router.get("/{alert_id}", response_model=AlertDetail)
def get_alert(alert_id: int, request: Request) -> dict:
    return _call(_service(request).get, alert_id)


@router.post("/{alert_id}/ack", response_model=AlertDetail)
def acknowledge(alert_id: int, request: Request, who: Annotated[CurrentUser, Depends(require_roles(*ALERT_ROLES))],
                user: str | None = Body(None, embed=True, min_length=1, max_length=128)) -> dict:
    """Acknowledge an alert as the logged-in user; stops its escalation. 409 when already acknowledged.

    Only a development install without accounts takes the name from the body (``{"user": "NAME"}``).
    """
    if who is ANONYMOUS:
        if not user:
            raise Problem(422, "Invalid request", "user: without accounts, an acknowledgement names the user "
                                                  "({\"user\": \"NAME\"})")
        name = user
    else:
        name = who.name
    out = _call(_service(request).acknowledge, alert_id, name)
    audit.record(request.app.state.sessions, who if who is not ANONYMOUS else CurrentUser(name, "open"),
                 "alert.ack", f"alert {alert_id}", f"study {out.get('study_instance_uid')}")
    return out
