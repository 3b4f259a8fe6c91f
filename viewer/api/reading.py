"""The reading room's API: worklist, claims, reports (save, sign, addenda, PDF)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from viewer.api.schemas import AuditEntryPublic, ClaimPublic, ReportPublic, WorklistRow
from viewer.auth import ROLES, CurrentUser, audit, require_clinic, require_roles
from viewer.problems import Problem
from viewer.reading import claims, worklist
from viewer.reports import service
from viewer.reports.service import _study

router = APIRouter(tags=["reading"])
Reader = Annotated[CurrentUser, Depends(require_roles("radiologist", "admin"))]
Radiologist = Annotated[CurrentUser, Depends(require_roles("radiologist"))]
AnyRole = Annotated[CurrentUser, Depends(require_roles(*ROLES))]


class ReportDraft(BaseModel):
    template: str = Field(min_length=1, max_length=32, description="ct_head_stroke | ct_perfusion | chest_xray")
    body: str = Field(max_length=service.MAX_BODY)
    state: Literal["draft", "preliminary"] = "draft"


class ReportSign(BaseModel):
    template: str = Field(min_length=1, max_length=32)
    body: str = Field(max_length=service.MAX_BODY)


class Addendum(BaseModel):
    text: str = Field(min_length=1, max_length=service.MAX_BODY)


@router.get("/api/worklist", response_model=list[WorklistRow])
def get_worklist(request: Request, user: Reader, clinic: str | None = None, limit: int = Query(500, ge=1, le=2000)) -> list[dict]:
    """Studies to read: stroke alerts first, then priority, then waiting time; SLA due times."""
    app = request.app
    with app.state.sessions() as s:
        return worklist.rows(s, app.state.settings.web, clinics=[clinic] if clinic else None, limit=limit,
                             stroke_kinds=app.state.settings.routing.stroke_kinds)


@router.post("/api/studies/{study_uid}/claim", response_model=ClaimPublic)
def claim_study(study_uid: str, request: Request, user: Radiologist) -> dict:
    """Claim a study for reading; 409 names who holds it."""
    with request.app.state.sessions() as s:
        _study(s, study_uid)
    return claims.claim(request.app.state.sessions, user, study_uid,
                        idle_min=request.app.state.settings.web.claim_idle_min)


@router.delete("/api/studies/{study_uid}/claim", response_model=ClaimPublic)
def release_claim(study_uid: str, request: Request, user: Reader, force: bool = False) -> dict:
    """Release your claim; an admin breaks another's with ``?force=true``."""
    return claims.release(request.app.state.sessions, user, study_uid, force=force,
                          idle_min=request.app.state.settings.web.claim_idle_min)


def _visible_report(request: Request, user: CurrentUser, study_uid: str) -> dict:
    with request.app.state.sessions() as s:
        _, clinic = _study(s, study_uid)
        require_clinic(user, clinic)
        report = service.report_dict(s, study_uid)
    if report is None or (user.role == "technician" and report["state"] != "final"):
        raise Problem(404, "No report", f"study '{study_uid}' has no {'final ' if user.role == 'technician' else ''}report yet")
    return report


@router.get("/api/reports/{study_uid}", response_model=ReportPublic)
def get_report(study_uid: str, request: Request, user: AnyRole) -> dict:
    report = _visible_report(request, user, study_uid)
    audit.record(request.app.state.sessions, user, "report.view", study_uid)
    return report


@router.put("/api/reports/{study_uid}", response_model=ReportPublic)
def save_report(study_uid: str, draft: ReportDraft, request: Request, user: Reader) -> dict:
    """Save a draft or preliminary report (takes the study's claim when free)."""
    return service.save(request.app.state.sessions, user, study_uid, template=draft.template, body=draft.body,
                        state=draft.state, idle_min=request.app.state.settings.web.claim_idle_min)


@router.post("/api/reports/{study_uid}/sign", response_model=ReportPublic)
async def sign_report(study_uid: str, final: ReportSign, request: Request, user: Radiologist) -> dict:
    """Sign the final report: a Basic Text SR and a PDF in the study, routed back to the clinic."""
    return await run_in_threadpool(service.sign, request.app, user, study_uid, template=final.template, body=final.body)


@router.post("/api/reports/{study_uid}/addenda", response_model=ReportPublic)
async def add_addendum(study_uid: str, addendum: Addendum, request: Request, user: Radiologist) -> dict:
    return await run_in_threadpool(service.add_addendum, request.app, user, study_uid, addendum.text)


@router.get("/api/reports/{study_uid}/pdf")
def report_pdf(study_uid: str, request: Request, user: AnyRole):
    report = _visible_report(request, user, study_uid)
    data = service.report_pdf(request.app, study_uid) if report["state"] == "final" else None
    if data is None:
        raise Problem(404, "No PDF", "the report has no signed PDF yet")
    audit.record(request.app.state.sessions, user, "report.view", study_uid, "pdf")
    return Response(data, media_type="application/pdf",
                    headers={"content-disposition": f'inline; filename="report-{study_uid}.pdf"'})


@router.get("/api/audit", response_model=list[AuditEntryPublic])
def get_audit(request: Request, user: Annotated[CurrentUser, Depends(require_roles("admin"))],
              limit: int = Query(200, ge=1, le=2000), who: str | None = Query(None, alias="user"),
              action: str | None = None, before: int | None = Query(None, ge=1)) -> list[dict]:
    """The audit log, newest first (admin)."""
    with request.app.state.sessions() as s:
        return audit.entries(s, limit=limit, user=who, action=action, before_id=before)
