"""Worklist rows: one per study, with clinic, patient, kinds, triage badge, status, claim and SLA due time.

Order: studies with a stroke alert first, then priority (stroke > urgent > routine), then waiting time
(oldest first). Status: receiving -> complete -> routed -> reading -> reported.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from pacs_gateway.index.models import Clinic, Delivery, Series, Study
from pacs_gateway.routing.config import DEFAULT_STROKE_KINDS
from stroke.models import Alert, TriageRun
from telerad.clock import as_utc, utcnow
from viewer.models import Report
from viewer.reading import claims as claim_locks

PRIORITY_RANK = {"stroke": 0, "urgent": 1, "routine": 2}
STATUSES = ("receiving", "complete", "routed", "reading", "reported")


def triage_badge(run: TriageRun | None) -> dict | None:
    """What the worklist shows of the newest triage run: numbers and verdict, or 'analysis failed'."""
    if run is None:
        return None
    label = f"{(run.result or {}).get('algorithm', {}).get('name', 'telerad-ctp')} {run.algorithm_version}"
    if run.state in ("queued", "running"):
        return {"kind": "pending", "text": "analysis running", "algorithm": label}
    if run.status != "ok" or run.reliable is False:
        return {"kind": "failed", "text": "analysis failed", "reason": run.reason, "algorithm": label}
    elig = (run.result or {}).get("eligibility") or {}
    verdict = [name for key, name in (("defuse3", "DEFUSE 3"), ("extend_ia", "EXTEND-IA"))
               if (elig.get(key) or {}).get("eligible")]
    text = f"core {run.core_ml or 0:.0f} mL · Tmax>6s {run.tmax6_ml or 0:.0f} mL"
    text += f" · {', '.join(verdict)} eligible" if verdict else " · not eligible"
    return {"kind": "ok", "text": text, "core_ml": run.core_ml, "tmax6_ml": run.tmax6_ml,
            "verdict": verdict, "algorithm": label}


def study_status(series_states: Iterable[str], deliveries: dict[str, int], claim: str | None,
                 report_state: str | None) -> str:
    if report_state == "final":
        return "reported"
    if claim or report_state in ("draft", "preliminary"):
        return "reading"
    if "receiving" in set(series_states):
        return "receiving"
    if deliveries and not (deliveries.get("queued", 0) or deliveries.get("sending", 0)):
        return "routed"
    return "complete"


def sla_minutes(web, priority: str) -> float:
    return {"stroke": web.sla_stroke_min, "urgent": web.sla_urgent_min}.get(priority, web.sla_routine_min)


def rows(s: Session, web, *, clinics: Iterable[str] | None = None, stroke_kinds=DEFAULT_STROKE_KINDS,
         limit: int = 500, study_uids: Iterable[str] | None = None) -> list[dict]:
    """Worklist rows, ordered; ``clinics``: only these clinics' studies (technicians)."""
    q = (select(Study, Clinic.name).outerjoin(Clinic, Clinic.id == Study.clinic_id)
         .order_by(Study.last_received_at.desc()).limit(limit))
    if clinics is not None:
        q = q.where(Clinic.name.in_(sorted(clinics)))
    if study_uids is not None:
        q = q.where(Study.study_uid.in_(list(study_uids)))
    studies = s.execute(q).all()
    if not studies:
        return []
    ids = [st.id for st, _ in studies]
    uids = [st.study_uid for st, _ in studies]
    series: dict[int, list[Series]] = {}
    for se in s.execute(select(Series).where(Series.study_id.in_(ids))).scalars():
        series.setdefault(se.study_id, []).append(se)
    deliveries: dict[int, dict[str, int]] = {}
    for sid, state, n in s.execute(select(Delivery.study_id, Delivery.state, func.count())
                                   .where(Delivery.study_id.in_(ids)).group_by(Delivery.study_id, Delivery.state)):
        deliveries.setdefault(sid, {})[state] = n
    alerts: dict[str, Alert] = {}
    for a in s.execute(select(Alert).where(Alert.study_uid.in_(uids)).order_by(Alert.id)).scalars():
        if a.type != "stroke.incoming" or a.study_uid not in alerts:
            alerts[a.study_uid] = a
    runs: dict[str, TriageRun] = {}
    for r in s.execute(select(TriageRun).where(TriageRun.study_uid.in_(uids), TriageRun.state != "covered")
                       .order_by(TriageRun.id)).scalars():
        runs[r.study_uid] = r
    claims = {uid: c.user for uid, c in claim_locks.active(s, uids, web.claim_idle_min).items()}
    reports = {r.study_uid: r for r in s.execute(select(Report).where(Report.study_uid.in_(uids))).scalars()}
    out = []
    now = utcnow()
    for st, clinic in studies:
        ss = series.get(st.id, [])
        kinds = sorted({x.kind for x in ss if x.kind})
        alert = alerts.get(st.study_uid)
        priority = "stroke" if alert else ("urgent" if set(kinds) & set(stroke_kinds) else "routine")
        received = as_utc(st.first_received_at)
        report = reports.get(st.study_uid)
        due = received + timedelta(minutes=sla_minutes(web, priority))
        out.append({
            "study_instance_uid": st.study_uid, "clinic": clinic, "patient_name": (st.patient_name or "").replace("^", " ").strip(),
            "patient_id": st.patient_id, "accession_number": st.accession_number, "study_date": st.study_date,
            "study_description": st.study_description, "modalities": sorted({x.modality for x in ss if x.modality}),
            "kinds": kinds, "instance_count": sum(x.instance_count for x in ss), "priority": priority,
            "alert": {"id": alert.id, "type": alert.type, "state": alert.state} if alert else None,
            "triage": triage_badge(runs.get(st.study_uid)),
            "status": study_status([x.state for x in ss], deliveries.get(st.id, {}), claims.get(st.study_uid),
                                   report.state if report else None),
            "report_state": report.state if report else None, "claimed_by": claims.get(st.study_uid),
            "received_at": received.isoformat(), "due_at": due.isoformat(),
            "waiting_s": round((now - received).total_seconds()), "overdue": now > due and not (report and report.state == "final"),
        })
    out.sort(key=lambda r: (r["alert"] is None, PRIORITY_RANK[r["priority"]], r["received_at"]))
    return out
