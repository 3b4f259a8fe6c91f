"""Studies: the index as JSON (no patient names or IDs in this view).

Technicians see only their clinics' studies; opening a study is written to the audit log.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from sqlalchemy import select

from pacs_gateway.index import queries
from pacs_gateway.index.models import Clinic, Study
from viewer.auth import ROLES, CurrentUser, audit, require_clinic, require_roles
from viewer.api.deps import SessionDep
from viewer.api.schemas import StudyPublic
from viewer.problems import Problem

router = APIRouter(prefix="/api/studies", tags=["studies"])
AnyRole = Annotated[CurrentUser, Depends(require_roles(*ROLES))]


@router.get("", response_model=list[StudyPublic])
def list_studies(session: SessionDep, user: AnyRole, limit: int = Query(200, ge=1, le=1000),
                 offset: int = Query(0, ge=0)) -> list[dict]:
    if user.role != "technician":
        return queries.list_studies(session, limit=limit, offset=offset)
    uids = session.execute(select(Study.study_uid).join(Clinic, Clinic.id == Study.clinic_id)
                           .where(Clinic.name.in_(sorted(user.clinics)))
                           .order_by(Study.last_received_at.desc()).limit(limit).offset(offset)).scalars().all()
    out = [queries.get_study(session, uid) for uid in uids]
    for s in out:
        s.pop("deliveries", None)
        for se in s["series"]:
            se.pop("deliveries", None)
    return out


@router.get("/{study_uid}", response_model=StudyPublic)
def get_study(study_uid: str, session: SessionDep, user: AnyRole, request: Request) -> dict:
    study = queries.get_study(session, study_uid)
    if study is None:
        raise Problem(404, "Study not found", f"no study with Study Instance UID '{study_uid}' is in the index")
    require_clinic(user, study["clinic"])
    audit.record(request.app.state.sessions, user, "study.view", study_uid, "api")
    return study
