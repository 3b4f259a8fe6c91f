"""Alert decisions: which rule a triage outcome matches, and what the alert says. Pure functions.

``outcome(result)`` sorts a ``telerad analyze --json`` object into ``triage`` (a
reliable analysis) or ``triage_failed`` (failed, rejected or unreliable);
``decide(rules, on, result)`` returns the first matching :class:`AlertRule` or None::

    rule = decide(settings.alerts.rules, outcome(doc), doc)

Messages (:func:`message`) always name the algorithm and its version, carry the
quality warnings and say that the numbers are an automated result, not a diagnosis.

The alert body (:func:`build_body`) is what the webhook POSTs and the e-mail and the
stream show. Keys: ``type`` (``stroke.triage``, ``stroke.incoming``,
``stroke.triage_failed``), ``study_instance_uid``, ``series_instance_uid``, ``clinic``,
``result`` (the ``telerad analyze --json`` object, or null for a pre-alert),
``message``, ``algorithm``, ``quality_warnings``, ``automated_result`` and
``disclaimer``, ``links`` (``study`` page, ``study_api`` JSON, ``summary_png``; ``ack`` is added per send)
and ``created_at``. The sender adds ``alert_id`` and ``tier``.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from datetime import datetime
from urllib.parse import quote

from stroke.config import AlertRule

DISCLAIMER = "Automated result, not a diagnosis."
ALERT_TYPES = {"triage": "stroke.triage", "triage_failed": "stroke.triage_failed", "incoming": "stroke.incoming"}
_OPS = {">=": operator.ge, ">": operator.gt, "<=": operator.le, "<": operator.lt}


def outcome(result: dict) -> str:
    """``triage`` for a reliable ``status: ok`` result, else ``triage_failed``."""
    if result.get("status") == "ok" and (result.get("quality") or {}).get("reliable", False):
        return "triage"
    return "triage_failed"


def _holds(cond, result: dict) -> bool:
    value = result.get(cond.metric)
    return isinstance(value, (int, float)) and _OPS[cond.op](float(value), cond.value)


def decide(rules: Sequence[AlertRule], on: str, result: dict | None = None) -> AlertRule | None:
    """The first rule for ``on`` whose conditions hold (any of them; none given: always)."""
    for rule in rules:
        if rule.on != on:
            continue
        if on != "triage" or not rule.any or any(_holds(c, result or {}) for c in rule.any):
            return rule
    return None


def warnings_text(result: dict) -> list[str]:
    """Quality warnings as short lines, fatal ones first."""
    warns = (result.get("quality") or {}).get("warnings") or []
    order = {"fatal": 0, "warning": 1, "info": 2}
    return [f"{w.get('severity', 'warning')}: {w.get('message') or w.get('code')}"
            for w in sorted(warns, key=lambda w: order.get(w.get("severity"), 1))]


def failure_reason(result: dict) -> str:
    """Why an analysis failed or is unreliable, in a few words."""
    if result.get("status") in ("rejected", "error"):
        return str(result.get("error") or "the series is not a usable CT perfusion").rstrip(". ")
    warns = (result.get("quality") or {}).get("warnings") or []
    bad = [w for w in warns if w.get("severity") == "fatal"] or [w for w in warns if w.get("severity") == "warning"]
    if not bad:
        return "the result is marked unreliable"
    return "; ".join(str(w.get("message") or w.get("code")).rstrip(". ") for w in bad)


def _ml(value) -> str:
    return "n/a" if value is None else f"{float(value):.1f} mL"


def algorithm_label(result: dict) -> str:
    algo = result.get("algorithm") or {}
    return f"{algo.get('name', 'telerad-ctp')} {algo.get('version', '?')}"


def message(alert_type: str, result: dict | None, *, clinic: str | None, series: str | None = None) -> str:
    """The plain-text alert line shown in every channel."""
    where = f" from {clinic}" if clinic else ""
    if alert_type == "stroke.incoming":
        return (f"Incoming stroke imaging{where}: {series or 'head CT'} received; CT perfusion triage follows "
                "when the CTP arrives.")
    result = result or {}
    label = algorithm_label(result)
    if alert_type == "stroke.triage_failed":
        verb = "failed" if result.get("status") != "ok" else "unreliable"
        text = f"Automated perfusion analysis {verb}{where}: {failure_reason(result)}; read manually. ({label})"
        if result.get("status") == "ok":
            text += (f" Unverified numbers: core {_ml(result.get('core_ml'))}, "
                     f"Tmax>6s {_ml(result.get('tmax6_ml'))}.")
        return f"{text} {DISCLAIMER}"
    ratio = result.get("mismatch_ratio")
    text = (f"CT perfusion{where}: core (rCBF<30%) {_ml(result.get('core_ml'))}, Tmax>6s {_ml(result.get('tmax6_ml'))}, "
            f"Tmax>10s {_ml(result.get('tmax10_ml'))}, mismatch {_ml(result.get('mismatch_ml'))}"
            f"{'' if ratio is None else f' (ratio {float(ratio):.1f})'}, side {result.get('affected_side') or 'none'}. "
            f"{label}.")
    elig = result.get("eligibility") or {}
    verdicts = [f"{name} {'eligible' if (elig.get(key) or {}).get('eligible') else 'not eligible'}"
                for key, name in (("defuse3", "DEFUSE 3"), ("extend_ia", "EXTEND-IA")) if key in elig]
    if verdicts:
        text += " " + ", ".join(verdicts) + "."
    warns = warnings_text(result)
    text += f" Quality warnings: {'; '.join(w.rstrip('. ') for w in warns)}." if warns else " Quality warnings: none."
    return f"{text} {DISCLAIMER}"


# ----------------------------------------------------------------------------- the alert body
def study_url(public_url: str, study_uid: str) -> str:
    """The study's HTML page in the reading room (the JSON is ``links.study_api``)."""
    return f"{public_url}/studies/{quote(study_uid)}"


def study_api_url(public_url: str, study_uid: str) -> str:
    return f"{public_url}/api/studies/{quote(study_uid)}"


def summary_url(public_url: str, run_id: int) -> str:
    return f"{public_url}/api/triage/{run_id}/summary.png"


def build_body(alert_type: str, *, study_uid: str, series_uid: str | None, clinic: str | None,
               result: dict | None, public_url: str, created_at: datetime, run_id: int | None = None,
               series_description: str | None = None, has_summary: bool = False) -> dict:
    links = {"study": study_url(public_url, study_uid), "study_api": study_api_url(public_url, study_uid)}
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
