"""Every JSON route of the API documents its response with a schema, and the answers fit it."""

from __future__ import annotations

import pytest

from tests.viewer.conftest import STUDY_A

# not JSON: a PDF, a PNG, an event stream, the Prometheus text
NOT_JSON = {"/api/reports/{study_uid}/pdf", "/api/triage/{run_id}/summary.png", "/api/alerts/stream", "/metrics"}


def test_every_json_route_has_a_response_schema(module_env):
    spec = module_env.client("admin1").get("/openapi.json").json()
    missing = []
    for path, operations in spec["paths"].items():
        if not (path.startswith("/api/") or path == "/healthz") or path in NOT_JSON:
            continue
        for method, op in operations.items():
            schema = op["responses"]["200"]["content"]["application/json"]["schema"]
            ref = schema.get("$ref") or schema.get("items", {}).get("$ref")
            if not ref:
                missing.append(f"{method.upper()} {path}")
    assert not missing, "routes without a response_model:\n" + "\n".join(missing)
    assert {"StudyPublic", "WorklistRow", "ReportPublic", "AlertDetail", "TriageRunDetail", "Token"} <= set(
        spec["components"]["schemas"])


@pytest.mark.parametrize("path,keys", [
    ("/api/worklist", {"study_instance_uid", "clinic", "patient_name", "patient_id", "accession_number", "study_date",
                       "study_description", "modalities", "kinds", "instance_count", "priority", "alert", "triage",
                       "status", "report_state", "claimed_by", "received_at", "due_at", "waiting_s", "overdue"}),
    ("/api/users", {"name", "role", "clinics", "disabled", "created_at"}),
    ("/api/audit", {"id", "at", "user", "role", "action", "target", "detail", "client"}),
])
def test_list_answers_keep_their_keys_and_no_more(module_env, path, keys):
    rows = module_env.client("admin1").get(path).json()
    assert rows and all(set(row) == keys for row in rows)


def test_dashboard_and_claim_answers(module_env):
    admin = module_env.client("admin1")
    figures = admin.get("/api/admin/dashboard").json()
    assert set(figures) == {"turnaround", "studies_per_day", "studies_total", "alerts", "alerts_unacknowledged",
                            "ack", "deliveries", "deliveries_oldest_pending_s"}
    rad = module_env.client("rad")
    assert rad.post(f"/api/studies/{STUDY_A}/claim").json() == {"study_instance_uid": STUDY_A, "claimed_by": "rad"}
    assert rad.delete(f"/api/studies/{STUDY_A}/claim").json() == {"study_instance_uid": STUDY_A, "claimed_by": None}
