"""Triage results: the run of a CTP series and its summary PNG (an automated result, not a diagnosis)."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Depends, Request
from fastapi.responses import FileResponse
from sqlalchemy import select

from stroke.models import TriageRun
from stroke.rules import warnings_text
from telerad.clock import isoformat
from viewer.api.deps import SessionDep
from viewer.api.schemas import TriageRunDetail, TriageRunSummary
from viewer.auth import require_roles
from viewer.problems import Problem

# automated results are for the reading and stroke teams (technicians see the final report)
router = APIRouter(prefix="/api/triage", tags=["triage"],
                   dependencies=[Depends(require_roles("radiologist", "stroke", "admin"))])


def _run(session, run_id: int) -> TriageRun:
    run = session.get(TriageRun, run_id)
    if run is None:
        raise Problem(404, "Triage run not found", f"no triage run with id {run_id}")
    return run


@router.get("", response_model=list[TriageRunSummary])
def list_runs(session: SessionDep, study: str | None = None) -> list[dict]:
    q = select(TriageRun).order_by(TriageRun.id.desc()).limit(200)
    if study:
        q = q.where(TriageRun.study_uid == study)
    return [{"id": r.id, "study_instance_uid": r.study_uid, "series_instance_uid": r.series_uid,
             "algorithm_version": r.algorithm_version, "state": r.state, "status": r.status, "reason": r.reason,
             "core_ml": r.core_ml, "tmax6_ml": r.tmax6_ml, "tmax10_ml": r.tmax10_ml, "reliable": r.reliable,
             "quality_warnings": warnings_text(r.result) if r.result else [],
             "finished_at": isoformat(r.finished_at), "automated_result": True} for r in session.execute(q).scalars()]


@router.get("/{run_id}", response_model=TriageRunDetail)
def get_run(run_id: int, session: SessionDep) -> dict:
    r = _run(session, run_id)
    return {"id": r.id, "state": r.state, "status": r.status, "reason": r.reason, "result": r.result,
            "objects": r.objects or [], "attempts": r.attempts, "queued_at": isoformat(r.queued_at),
            "started_at": isoformat(r.started_at), "finished_at": isoformat(r.finished_at),
            "disclaimer": "Automated result, not a diagnosis."}


@router.get("/{run_id}/summary.png")
def summary_png(run_id: int, request: Request, session: SessionDep):
    r = _run(session, run_id)
    root = getattr(request.app.state, "store_root", None)
    path = Path(root) / r.outputs_dir / "summary.png" if root and r.outputs_dir else None
    fetch = getattr(getattr(request.app.state, "metadata", None), "fetch", None)  # a remote object store
    if path is not None and fetch is not None:
        try:
            fetch([path])
        except Exception:  # noqa: BLE001 - the store is unreachable: say so below
            raise Problem(503, "Store unavailable", "the object store cannot be read now; try again") from None
    if path is None or not path.is_file():
        raise Problem(404, "Summary not available", f"triage run {run_id} has no summary image (state {r.state})")
    return FileResponse(path, media_type="image/png")
