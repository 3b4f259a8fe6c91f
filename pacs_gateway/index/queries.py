"""Read-side queries of the index, shared by the CLI and the web app."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from pacs_gateway.index.models import Clinic, Instance, Series, Study
from telerad.clock import isoformat


def _study_dict(st: Study, clinic: Clinic | None, series: list[Series]) -> dict:
    states = {s.state for s in series}
    return {
        "study_instance_uid": st.study_uid,
        "clinic": clinic.name if clinic else None,
        "calling_ae": st.calling_ae,
        "study_date": st.study_date,
        "study_description": st.study_description,
        "accession_number": st.accession_number,
        "first_received_at": isoformat(st.first_received_at),
        "last_received_at": isoformat(st.last_received_at),
        "state": "receiving" if "receiving" in states else "complete",
        "kinds": sorted({s.kind for s in series if s.kind}),
        "instance_count": sum(s.instance_count for s in series),
        "series": [
            {
                "series_instance_uid": s.series_uid,
                "modality": s.modality,
                "series_description": s.series_description,
                "series_number": s.series_number,
                "kind": s.kind,
                "state": s.state,
                "instance_count": s.instance_count,
                "last_received_at": isoformat(s.last_received_at),
                "completed_at": isoformat(s.completed_at),
            }
            for s in sorted(series, key=lambda s: (s.series_number is None, s.series_number or 0, s.id))
        ],
    }


def list_studies(session: Session, limit: int = 200, offset: int = 0) -> list[dict]:
    rows = session.execute(
        select(Study, Clinic).outerjoin(Clinic, Clinic.id == Study.clinic_id)
        .order_by(Study.last_received_at.desc()).limit(limit).offset(offset)
    ).all()
    ids = [st.id for st, _ in rows]
    by_study: dict[int, list[Series]] = {i: [] for i in ids}
    if ids:
        for s in session.execute(select(Series).where(Series.study_id.in_(ids))).scalars():
            by_study[s.study_id].append(s)
    return [_study_dict(st, cl, by_study[st.id]) for st, cl in rows]


def get_study(session: Session, study_uid: str) -> dict | None:
    row = session.execute(
        select(Study, Clinic).outerjoin(Clinic, Clinic.id == Study.clinic_id).where(Study.study_uid == study_uid)
    ).first()
    if row is None:
        return None
    st, cl = row
    series = list(session.execute(select(Series).where(Series.study_id == st.id)).scalars())
    out = _study_dict(st, cl, series)
    from pacs_gateway.routing.report import study_deliveries

    per_study, per_series = study_deliveries(session, st.id)
    out["deliveries"] = per_study
    uid_to_id = {s.series_uid: s.id for s in series}
    for s in out["series"]:
        s["deliveries"] = per_series.get(uid_to_id[s["series_instance_uid"]], [])
    return out


def count_instances(session: Session) -> int:
    return session.execute(select(func.count(Instance.id))).scalar_one()


def series_files(session: Session, series_uid: str) -> list[str]:
    """Store-relative paths of a series' current instances."""
    return list(
        session.execute(
            select(Instance.path).join(Series, Series.id == Instance.series_id).where(Series.series_uid == series_uid)
        ).scalars()
    )
