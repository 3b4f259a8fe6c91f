"""The technician's page (their clinics' studies, status, final reports, DICOM upload) and the stroke team's."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse
from sqlalchemy import func, select
from starlette.concurrency import run_in_threadpool

from stroke.models import Alert, AlertStep, TriageRun
from stroke.rules import DISCLAIMER, warnings_text
from viewer.auth import CurrentUser, require_roles
from viewer.pages.render import render
from viewer.reading import worklist
from viewer.reports import service

router = APIRouter(include_in_schema=False)
Technician = Annotated[CurrentUser, Depends(require_roles("technician", "admin"))]
StrokeTeam = Annotated[CurrentUser, Depends(require_roles("stroke", "radiologist", "admin"))]


def _clinic_rows(request: Request, user: CurrentUser) -> list[dict]:
    app = request.app
    with app.state.sessions() as s:
        rows = worklist.rows(s, app.state.settings.web, stroke_kinds=app.state.settings.routing.stroke_kinds,
                             clinics=user.clinics if user.role == "technician" else None)
        for r in rows:
            report = service.report_dict(s, r["study_instance_uid"]) if r["report_state"] == "final" else None
            r["report"] = report
    rows.sort(key=lambda r: r["received_at"], reverse=True)
    return rows


@router.get("/technician", response_class=HTMLResponse)
async def technician_page(request: Request, user: Technician):
    rows = await run_in_threadpool(_clinic_rows, request, user)
    return render(request, "technician.html", title="My clinic", rows=rows,
                  clinics=sorted(user.clinics) if user.role == "technician" else [])


@router.get("/technician/rows", response_class=HTMLResponse)
async def technician_rows(request: Request, user: Technician):
    rows = await run_in_threadpool(_clinic_rows, request, user)
    return render(request, "technician_rows.html", rows=rows)


def _alerts(request: Request) -> list[dict]:
    with request.app.state.sessions() as s:
        alerts = s.execute(select(Alert).order_by(Alert.id.desc()).limit(50)).scalars().all()
        runs = {r.id: r for r in s.execute(select(TriageRun).where(
            TriageRun.id.in_([a.triage_run_id for a in alerts if a.triage_run_id]))).scalars()}
        confirmed = dict(s.execute(select(AlertStep.alert_id, func.max(AlertStep.at)).where(
            AlertStep.alert_id.in_([a.id for a in alerts]), AlertStep.step == "confirmed")
            .group_by(AlertStep.alert_id)).all())
    out = []
    for a in alerts:
        run = runs.get(a.triage_run_id)
        result = (a.body or {}).get("result") or {}
        out.append({"alert": a, "run_id": run.id if run and run.outputs_dir else None,
                    "numbers": [(label, result.get(key)) for key, label in (
                        ("core_ml", "Core, mL"), ("tmax6_ml", "Tmax>6 s, mL"), ("mismatch_ml", "Mismatch, mL"),
                        ("mismatch_ratio", "Ratio"))] if result else [],
                    "algorithm": (a.body or {}).get("algorithm"), "warnings": warnings_text(result) if result else [],
                    "confirmed_at": confirmed.get(a.id)})
    return out


@router.get("/stroke", response_class=HTMLResponse)
async def stroke_page(request: Request, user: StrokeTeam):
    alerts = await run_in_threadpool(_alerts, request)
    return render(request, "stroke.html", title="Stroke alerts", alerts=alerts, disclaimer=DISCLAIMER)


@router.get("/stroke/rows", response_class=HTMLResponse)
async def stroke_rows(request: Request, user: StrokeTeam):
    alerts = await run_in_threadpool(_alerts, request)
    return render(request, "stroke_rows.html", alerts=alerts, disclaimer=DISCLAIMER)
