"""Reports against a real in-process gateway: sign -> Basic Text SR + PDF in the study (valid per
dciodvfy), addendum keeps the original, states and roles, the technician's view, the audit log."""

from __future__ import annotations

import shutil
import subprocess

import pydicom
import pytest
from starlette.testclient import TestClient

from pacs_gateway.index.models import Instance, Series, Study
from telerad.app import build_gateway
from sample_dicom.synthetic import write_ct_series
from tests.gateway.conftest import make_settings, wait_until
from tests.viewer.conftest import PASSWORD, add_account, token
from viewer.reports.dicom import BASIC_TEXT_SR, ENCAPSULATED_PDF

BODY = "CLINICAL INDICATION:\nHeadache.\n\nFINDINGS:\nNo haemorrhage (see (1)).\n\nIMPRESSION:\nNormal CT head."


@pytest.fixture
def reading(tmp_path):
    from viewer.main import create_app

    gw = build_gateway(make_settings(tmp_path, clinics=[{"name": "Clinic A", "ae_title": "CLINIC_A"},
                                                  {"name": "Clinic B", "ae_title": "CLINIC_B"}],
                               secret_key="reports-test-secret"))
    gw.start()
    try:
        files = write_ct_series(tmp_path / "ct", 3, 32, 32, seed=4, series_description="CT HEAD", patient_id="P9")
        for f in files:
            assert gw.ingest_file(shutil.copy(f, tmp_path / f"in-{f.name}"), calling_ae="CLINIC_A").ok
        def complete():
            with gw.sessions() as s:
                return s.query(Series).filter(Series.state == "complete").count() == 1
        wait_until(complete, 30)  # the series is complete (turnaround counts from then)
        with gw.sessions.begin() as s:
            add_account(s, "rad", "radiologist", [])
            add_account(s, "rad2", "radiologist", [])
            add_account(s, "tech-a", "technician", ["Clinic A"])
            add_account(s, "tech-b", "technician", ["Clinic B"])
            add_account(s, "admin1", "admin", [])
        app = create_app(gw.sessions, settings=gw.settings, gateway=gw, store_root=gw.store.root,
                         alerts=gw.stroke.alerts)
        client = TestClient(app)

        def as_(user):
            return {"authorization": f"Bearer {token(client, user, PASSWORD)}"}
        yield gw, client, as_, str(pydicom.dcmread(files[0], stop_before_pixels=True).StudyInstanceUID)
    finally:
        gw.stop()


def _objects(gw, study_uid):
    with gw.sessions() as s:
        rows = s.execute(Instance.__table__.select().join(Series.__table__).join(Study.__table__)
                         .where(Study.study_uid == study_uid)).all()
    return {r.sop_uid: r for r in rows}


def _dciodvfy_errors(path) -> list[str]:
    out = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=60)
    return [line for line in (out.stdout + out.stderr).splitlines() if line.startswith("Error")]


def test_sign_files_sr_and_pdf_and_an_addendum_keeps_the_original(reading):
    gw, client, as_, uid = reading
    rad, tech_a = as_("rad"), as_("tech-a")
    assert client.put(f"/api/reports/{uid}", json={"template": "ct_head_stroke", "body": BODY, "state": "preliminary"},
                      headers=rad).json()["state"] == "preliminary"
    assert client.get(f"/api/reports/{uid}", headers=tech_a).status_code == 404  # not final yet
    other = client.post(f"/api/reports/{uid}/sign", json={"template": "ct_head_stroke", "body": BODY}, headers=as_("rad2"))
    assert other.status_code == 409 and "'rad' is reading" in other.json()["detail"]
    signed = client.post(f"/api/reports/{uid}/sign", json={"template": "ct_head_stroke", "body": BODY}, headers=rad)
    assert signed.status_code == 200, signed.text
    report = signed.json()
    assert report["state"] == "final" and report["signed_by"] == "rad"
    assert sorted(o["modality"] for o in report["objects"]) == ["DOC", "SR"]
    stored = _objects(gw, uid)
    sr_obj = next(o for o in report["objects"] if o["modality"] == "SR")
    sr = pydicom.dcmread(gw.store.root / stored[sr_obj["sop_uid"]].path)
    assert sr.SOPClassUID == BASIC_TEXT_SR and sr.VerificationFlag == "VERIFIED" and sr.CompletionFlag == "COMPLETE"
    assert sr.StudyInstanceUID == uid and sr.PatientID == "P9"
    texts = {c.ConceptNameCodeSequence[0].CodeMeaning: c.ContentSequence[0].TextValue
             for c in sr.ContentSequence if c.ValueType == "CONTAINER"}
    assert texts["Impressions"] == "Normal CT head." and "see (1)" in texts["Findings"]
    doc_obj = next(o for o in report["objects"] if o["modality"] == "DOC")
    doc_path = gw.store.root / stored[doc_obj["sop_uid"]].path
    assert pydicom.dcmread(doc_path).SOPClassUID == ENCAPSULATED_PDF
    if shutil.which("dciodvfy"):
        assert _dciodvfy_errors(gw.store.root / stored[sr_obj["sop_uid"]].path) == []
        assert _dciodvfy_errors(doc_path) == []
    pdf = client.get(f"/api/reports/{uid}/pdf", headers=tech_a)
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF-1.4") and pdf.content.rstrip().endswith(b"%%EOF")
    assert b"see \\(1\\)" in pdf.content  # text, parentheses escaped
    assert client.get(f"/api/reports/{uid}", headers=as_("tech-b")).status_code == 403
    assert client.get(f"/api/reports/{uid}", headers=tech_a).json()["final_body"] == BODY.replace("\r\n", "\n")

    again = client.post(f"/api/reports/{uid}/sign", json={"template": "ct_head_stroke", "body": "x"}, headers=rad)
    assert again.status_code == 409 and "addendum" in again.json()["detail"]
    assert client.put(f"/api/reports/{uid}", json={"template": "ct_head_stroke", "body": "x"}, headers=rad).status_code == 409

    added = client.post(f"/api/reports/{uid}/addenda", json={"text": "Small old lacune, left."}, headers=rad)
    assert added.status_code == 200, added.text
    after = added.json()
    assert after["final_body"] == BODY and after["addenda"][0]["body"] == "Small old lacune, left."
    new_sr_obj = next(o for o in after["addenda"][0]["objects"] if o["modality"] == "SR")
    new_sr = pydicom.dcmread(gw.store.root / _objects(gw, uid)[new_sr_obj["sop_uid"]].path)
    pred = new_sr.PredecessorDocumentsSequence[0].ReferencedSeriesSequence[0].ReferencedSOPSequence[0]
    assert pred.ReferencedSOPInstanceUID == sr_obj["sop_uid"] and new_sr.SeriesInstanceUID == sr.SeriesInstanceUID
    assert sr_obj["sop_uid"] in _objects(gw, uid)  # the original SR is still in the study
    log = client.get("/api/audit", headers=as_("admin1")).json()
    actions = [e["action"] for e in log if e["target"] == uid]
    assert {"report.preliminary", "report.sign", "report.addendum", "report.view"} <= set(actions)
    assert next(e for e in log if e["action"] == "report.sign")["user"] == "rad"
    dash = client.get("/api/admin/dashboard", headers=as_("admin1")).json()
    assert dash["turnaround"]["Clinic A"]["count"] == 1 and dash["turnaround"]["Clinic A"]["median_s"] >= 0
    assert 'telerad_report_turnaround_seconds_count{clinic="Clinic A"} 1' in client.get("/metrics").text


def test_alert_ack_records_the_logged_in_user(reading):
    gw, client, as_, uid = reading
    alert_id = gw.stroke.alerts.raise_alert(key="k", type="stroke.triage", rule="r", study_uid=uid, series_uid=None,
                                            clinic="Clinic A", message="m", body={}, requires_ack=True)
    r = client.post(f"/api/alerts/{alert_id}/ack", json={"user": "someone else"}, headers=as_("admin1"))
    assert r.status_code == 200 and r.json()["acknowledged_by"] == "admin1"
    assert client.post(f"/api/alerts/{alert_id}/ack", headers=as_("tech-a")).status_code == 403
    log = client.get("/api/audit", params={"action": "alert.ack"}, headers=as_("admin1")).json()
    assert log[0]["user"] == "admin1" and log[0]["target"] == f"alert {alert_id}"
