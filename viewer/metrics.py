"""Operational figures: one :func:`collect` for the admin dashboard and ``/metrics`` (Prometheus text).

Turnaround is per clinic, from the study's last series becoming complete to the final report's
signature (median and p90); studies per day (last 14 days, UTC); alerts by type and state and
their time to acknowledgement; the delivery ledger's backlog per state.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from pacs_gateway.index.models import Clinic, Delivery, Series, Study
from stroke.models import Alert
from telerad.clock import as_utc, utcnow
from viewer.models import Report

DAYS = 14


def quantile(values: list[float], q: float) -> float | None:
    """Nearest-rank quantile of ``values`` (None when empty)."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(round(q * len(ordered) + 0.5)) - 1))]


def collect(s: Session) -> dict:
    now = utcnow()
    turnaround: dict[str, list[float]] = {}
    rows = s.execute(select(Clinic.name, Report.signed_at, func.max(Series.completed_at))
                     .select_from(Report).join(Study, Study.study_uid == Report.study_uid)
                     .outerjoin(Clinic, Clinic.id == Study.clinic_id).join(Series, Series.study_id == Study.id)
                     .where(Report.state == "final").group_by(Report.id, Clinic.name, Report.signed_at)).all()
    for clinic, signed, completed in rows:
        if signed and completed:
            turnaround.setdefault(clinic or "(none)", []).append(
                max(0.0, (as_utc(signed) - as_utc(completed)).total_seconds()))
    since = (now - timedelta(days=DAYS - 1)).replace(hour=0, minute=0, second=0, microsecond=0)
    per_day = {(since + timedelta(days=i)).strftime("%Y-%m-%d"): 0 for i in range(DAYS)}
    for (received,) in s.execute(select(Study.first_received_at).where(Study.first_received_at >= since)):
        day = as_utc(received).strftime("%Y-%m-%d")
        if day in per_day:
            per_day[day] += 1
    alerts = [{"type": t, "state": st, "count": n} for t, st, n in s.execute(
        select(Alert.type, Alert.state, func.count()).group_by(Alert.type, Alert.state).order_by(Alert.type, Alert.state))]
    ack = [max(0.0, (as_utc(a) - as_utc(c)).total_seconds()) for c, a in s.execute(
        select(Alert.created_at, Alert.acknowledged_at).where(Alert.acknowledged_at.is_not(None)))]
    unacked = s.execute(select(func.count()).select_from(Alert).where(Alert.requires_ack.is_(True),
                                                                      Alert.acknowledged_at.is_(None))).scalar_one()
    backlog = dict.fromkeys(("queued", "sending", "failed", "delivered"), 0)
    backlog.update({st: n for st, n in s.execute(select(Delivery.state, func.count()).group_by(Delivery.state))})
    oldest = s.execute(select(func.min(Delivery.queued_at)).where(Delivery.state.in_(("queued", "sending")))).scalar()
    return {
        "turnaround": {c: {"count": len(v), "median_s": quantile(v, 0.5), "p90_s": quantile(v, 0.9)}
                       for c, v in sorted(turnaround.items())},
        "studies_per_day": per_day,
        "studies_total": s.execute(select(func.count(Study.id))).scalar_one(),
        "alerts": alerts, "alerts_unacknowledged": unacked,
        "ack": {"count": len(ack), "median_s": quantile(ack, 0.5), "p90_s": quantile(ack, 0.9)},
        "deliveries": backlog,
        "deliveries_oldest_pending_s": (now - as_utc(oldest)).total_seconds() if oldest else 0.0,
    }


def _label(value: str) -> str:
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def prometheus(data: dict) -> str:
    """The Prometheus text exposition format (version 0.0.4) of :func:`collect`'s figures."""
    out: list[str] = []

    def family(name: str, kind: str, help_: str, samples: list[tuple[dict, float | None]]) -> None:
        out.append(f"# HELP {name} {help_}")
        out.append(f"# TYPE {name} {kind}")
        for labels, value in samples:
            if value is None:
                continue
            text = ",".join(f'{k}="{_label(v)}"' for k, v in labels.items())
            out.append(f"{name}{{{text}}} {float(value):g}" if text else f"{name} {float(value):g}")

    ta = data["turnaround"]
    family("telerad_report_turnaround_seconds", "summary", "Study complete to final report, per clinic.",
           [({"clinic": c, "quantile": q}, v[k]) for c, v in ta.items() for q, k in (("0.5", "median_s"), ("0.9", "p90_s"))])
    family("telerad_report_turnaround_seconds_count", "gauge", "Final reports counted in the turnaround.",
           [({"clinic": c}, v["count"]) for c, v in ta.items()])
    family("telerad_studies_received", "gauge", "Studies first received per UTC day (last 14 days).",
           [({"day": d}, n) for d, n in data["studies_per_day"].items()])
    family("telerad_studies", "gauge", "Studies in the index.", [({}, data["studies_total"])])
    family("telerad_alerts", "gauge", "Stroke alerts by type and state.",
           [({"type": a["type"], "state": a["state"]}, a["count"]) for a in data["alerts"]])
    family("telerad_alerts_unacknowledged", "gauge", "Alerts that need and lack an acknowledgement.",
           [({}, data["alerts_unacknowledged"])])
    family("telerad_alert_ack_seconds", "summary", "Alert creation to acknowledgement.",
           [({"quantile": "0.5"}, data["ack"]["median_s"]), ({"quantile": "0.9"}, data["ack"]["p90_s"])])
    family("telerad_alert_ack_seconds_count", "gauge", "Acknowledged alerts.", [({}, data["ack"]["count"])])
    family("telerad_deliveries", "gauge", "Delivery ledger rows by state (the backlog is queued + sending).",
           [({"state": st}, n) for st, n in data["deliveries"].items()])
    family("telerad_deliveries_oldest_pending_seconds", "gauge", "Age of the oldest queued or sending delivery.",
           [({}, data["deliveries_oldest_pending_s"])])
    return "\n".join(out) + "\n"
