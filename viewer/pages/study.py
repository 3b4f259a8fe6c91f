"""The study page: OHIF images, triage summary and numbers (automated, not a diagnosis), alerts,
deliveries, prior studies of the same patient, and the report editor."""

from __future__ import annotations

import json
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from pacs_gateway.index import queries
from pacs_gateway.index.models import Clinic, Study
from stroke.models import Alert, TriageRun
from stroke.rules import DISCLAIMER, warnings_text
from viewer.auth import ROLES, CurrentUser, audit, require_clinic, require_roles
from viewer.pages.render import render
from viewer.problems import Problem
from viewer.reading import claims
from viewer.reading.worklist import triage_badge
from viewer.reports import service
from viewer.reports.templates import TEMPLATES, suggest, triage_paragraph

router = APIRouter(include_in_schema=False)
AnyRole = Annotated[CurrentUser, Depends(require_roles(*ROLES))]


def ohif_url(study_uid: str) -> str:
    return f"/ohif/viewer?StudyInstanceUIDs={study_uid}"


def _runs(s, study_uid: str) -> list[dict]:
    out = []
    for r in s.execute(select(TriageRun).where(TriageRun.study_uid == study_uid, TriageRun.state != "covered")
                       .order_by(TriageRun.id.desc())).scalars():
        result = r.result or {}
        out.append({"id": r.id, "state": r.state, "status": r.status, "reason": r.reason, "badge": triage_badge(r),
                    "algorithm": f"{(result.get('algorithm') or {}).get('name', 'telerad-ctp')} {r.algorithm_version}",
                    "numbers": [(label, result.get(key)) for key, label in (
                        ("core_ml", "Core (rCBF<30%), mL"), ("tmax6_ml", "Tmax>6 s, mL"), ("tmax10_ml", "Tmax>10 s, mL"),
                        ("mismatch_ml", "Mismatch, mL"), ("mismatch_ratio", "Mismatch ratio"),
                        ("hypoperfusion_intensity_ratio", "Hypoperfusion intensity ratio"),
                        ("affected_side", "Affected side"))],
                    "warnings": warnings_text(result) if result else [], "has_summary": bool(r.outputs_dir),
                    "model": r})
    return out


def _priors(s, study: Study) -> list[dict]:
    if not study.patient_id:
        return []
    rows = s.execute(select(Study, Clinic.name).outerjoin(Clinic, Clinic.id == Study.clinic_id)
                     .where(Study.patient_id == study.patient_id, Study.study_uid != study.study_uid)
                     .order_by(Study.first_received_at.desc()).limit(20)).all()
    return [{"study_instance_uid": p.study_uid, "study_date": p.study_date, "description": p.study_description,
             "clinic": clinic} for p, clinic in rows]


def _page_data(request: Request, user: CurrentUser, study_uid: str) -> dict:
    with request.app.state.sessions() as s:
        study = s.execute(select(Study).where(Study.study_uid == study_uid)).scalar_one_or_none()
        summary = queries.get_study(s, study_uid) if study else None
        if summary is None:
            raise Problem(404, "Study not found", f"no study with Study Instance UID '{study_uid}' is in the index")
        require_clinic(user, summary["clinic"])
        runs = _runs(s, study_uid)
        alerts = list(s.execute(select(Alert).where(Alert.study_uid == study_uid).order_by(Alert.id)).scalars())
        claim = claims.active(s, [study_uid], request.app.state.settings.web.claim_idle_min).get(study_uid)
        report = service.report_dict(s, study_uid)
        priors = _priors(s, study)
    if user.role == "technician":  # the clinic sees the final report, not automated numbers or drafts
        runs, alerts = [], []
        if report and report["state"] != "final":
            report = None
    kinds = summary["kinds"]
    modalities = sorted({se["modality"] for se in summary["series"] if se["modality"]})
    template = (report or {}).get("template") or suggest(kinds, modalities)
    draft_body = (report or {}).get("body") or (TEMPLATES[template].body + (
        triage_paragraph(runs[0]["model"]) if runs and template == "ct_perfusion" else ""))
    audit.record(request.app.state.sessions, user, "study.view", study_uid, "page")
    return {"study": study, "summary": summary, "runs": runs, "alerts": alerts, "claim": claim, "report": report,
            "priors": priors, "template": template, "draft_body": draft_body, "templates": TEMPLATES,
            "ohif_url": ohif_url(study_uid), "disclaimer": DISCLAIMER,
            "templates_json": json.dumps({k: t.body for k, t in TEMPLATES.items()}).replace("</", "<\\/"),
            "ohif_installed": _ohif_installed(request)}


def _ohif_installed(request: Request) -> bool:
    """Whether the OHIF Viewer is served at /ohif/ (``make viewer`` installs it)."""
    try:
        from viewer.ohif_fetch import DIST, installed
    except ImportError:
        return False
    return bool(installed(getattr(request.app.state, "ohif_dist", DIST)))


@router.get("/studies/{study_uid}", response_class=HTMLResponse)
async def study_page(study_uid: str, request: Request, user: AnyRole):
    data = await run_in_threadpool(_page_data, request, user, study_uid)
    return render(request, "study.html", title=data["summary"]["study_description"] or "Study", **data)
