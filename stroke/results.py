"""Result objects into the study: the gateway's normal indexed store path, then the routing rules.

Each Part-10 file the worker wrote into the store's temp folder is handed to the
index writer exactly like a received instance (header read, durable rename, one
indexed row; identical bytes again are a no-op), so the objects are listed with
the study. They are then routed through the routing rules with the kind of the
CTP they were computed from (the stroke lane), and back to the sending clinic
when that clinic has a registered DICOM address (``Gateway.route_results``).
"""

from __future__ import annotations

import logging
from pathlib import Path

log = logging.getLogger(__name__)
RETURN_RULE = "return results to the sending clinic"


def store_objects(gateway, files: list[dict], *, clinic_id: int | None, timeout_s: float = 60.0) -> list[dict]:
    """Index each ``{"path", ...}`` temp file through the gateway; returns the files with their outcome."""
    out = []
    for f in files:
        outcome = gateway.index_created_file(Path(f["path"]), clinic_id=clinic_id, timeout_s=timeout_s)
        out.append({**f, "outcome": outcome.value})
    return out


def route_objects(gateway, study_uid: str, objects: list[dict], kind: str) -> int:
    """Route the stored objects (rules, then the clinic); returns the ledger rows written."""
    by_series: dict[str, list[str]] = {}
    for o in objects:
        by_series.setdefault(o["series_uid"], []).append(o["sop_uid"])
    return gateway.route_results(study_uid, by_series, kind, return_rule=RETURN_RULE)
