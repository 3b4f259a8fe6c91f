"""The alert body: what the webhook POSTs (and the e-mail and the stream show).

Keys: ``type`` (``stroke.triage``, ``stroke.incoming``, ``stroke.triage_failed``),
``study_instance_uid``, ``series_instance_uid``, ``clinic``, ``result`` (the
``telerad analyze --json`` object, or null for a pre-alert), ``message``,
``algorithm``, ``quality_warnings``, ``automated_result`` and ``disclaimer``,
``links`` (``study`` page, ``summary_png``; ``ack`` is added per send) and
``created_at``. The sender adds ``alert_id`` and ``tier``.
"""

from __future__ import annotations

from datetime import datetime
from urllib.parse import quote

from stroke.rules import DISCLAIMER, message, warnings_text


def study_url(public_url: str, study_uid: str) -> str:
    return f"{public_url}/api/studies/{quote(study_uid)}"


def summary_url(public_url: str, run_id: int) -> str:
    return f"{public_url}/api/triage/{run_id}/summary.png"


def build_body(alert_type: str, *, study_uid: str, series_uid: str | None, clinic: str | None,
               result: dict | None, public_url: str, created_at: datetime, run_id: int | None = None,
               series_description: str | None = None, has_summary: bool = False) -> dict:
    links = {"study": study_url(public_url, study_uid)}
    if run_id is not None and has_summary:
        links["summary_png"] = summary_url(public_url, run_id)
    return {
        "type": alert_type,
        "study_instance_uid": study_uid,
        "series_instance_uid": series_uid,
        "clinic": clinic,
        "result": result,
        "message": message(alert_type, result, clinic=clinic, series=series_description),
        "algorithm": (result or {}).get("algorithm"),
        "quality_warnings": warnings_text(result) if result else [],
        "automated_result": True,
        "disclaimer": DISCLAIMER,
        "links": links,
        "created_at": created_at.isoformat(),
    }
