"""Studies: the index as JSON (no patient names or IDs in this view)."""

from __future__ import annotations

from fastapi import APIRouter, Query

from pacs_gateway.index import queries
from viewer.api.deps import SessionDep
from viewer.problems import Problem

router = APIRouter(prefix="/api/studies", tags=["studies"])


@router.get("")
def list_studies(session: SessionDep, limit: int = Query(200, ge=1, le=1000), offset: int = Query(0, ge=0)) -> list[dict]:
    return queries.list_studies(session, limit=limit, offset=offset)


@router.get("/{study_uid}")
def get_study(study_uid: str, session: SessionDep) -> dict:
    study = queries.get_study(session, study_uid)
    if study is None:
        raise Problem(404, "Study not found", f"no study with Study Instance UID '{study_uid}' is in the index")
    return study
