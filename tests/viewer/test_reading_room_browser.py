"""The reading room in a real browser (Debian chromium driven by playwright), against ``telerad serve``.

Radiologist logs in; the worklist shows the CT perfusion study with a stroke alert first; its page
shows the triage summary and the OHIF link; the radiologist writes and signs a report; the Basic
Text SR and the PDF reach a DCMTK storescp standing in for the clinic; the clinic's technician sees
the report, and not another clinic's study, and uploads a study from the page (STOW-RS).
Screenshots go to test-artifacts/.
"""

from __future__ import annotations

import io
import time
from pathlib import Path

import httpx
import pydicom
import pytest

from sample_dicom.synthetic import write_ct_series
from tests.peers import LOOPBACK, StorescpPeer, TeleradPeer, have_dcmtk, run_storescu, stored_ok
from tests.serve_process import wait_for
from tests.stroke.conftest import write_config, write_phantom
from viewer.reports.dicom import BASIC_TEXT_SR, ENCAPSULATED_PDF

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "reading_room"
PASSWORDS = {"dr-rad": "radiologist pw 1", "tech-a": "technician pw A", "tech-b": "technician pw B"}

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not CHROMIUM.exists() or not have_dcmtk(), reason="needs Debian chromium and dcmtk")]


def wait_until(fn, timeout: float, what: str):
    return wait_for(fn, timeout, what, interval=0.5)


def add_user(data_dir: Path, name: str, role: str, clinic: str | None, monkeypatch) -> None:
    from viewer.auth.cli import main

    monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORDS[name] + "\n"))
    extra = ["--clinic", clinic] if clinic else []
    assert main(["add", name, "--role", role, *extra, "--password-stdin", "--data-dir", str(data_dir)]) == 0


def login(page, base: str, name: str) -> None:
    page.goto(f"{base}/login")
    page.fill("input[name=username]", name)
    page.fill("input[name=password]", PASSWORDS[name])
    page.click("button[type=submit]")
    page.wait_for_load_state("load")


def test_radiologist_reads_signs_and_the_clinic_gets_the_report(tmp_path, monkeypatch):
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    clinic = StorescpPeer(tmp_path / "clinic" / "received", aet="CLINIC_SCP").start()
    peer = TeleradPeer(tmp_path / "var", extra_args=["--config", str(tmp_path / "telerad.toml")],
                       env={"TELERAD_SECRET_KEY": "browser-test-secret"})
    write_config(tmp_path / "telerad.toml",
                 sections={"dicom": {"quiet_period_s": 1.0}, "routing": {"sweep_interval_s": 1},
                           "alerts": {"public_url": peer.url}},
                 tables={"clinics": [{"name": "Township A", "ae_title": "CLINIC_A", "host": LOOPBACK, "port": clinic.port},
                                     {"name": "Township B", "ae_title": "CLINIC_B"}]})
    try:
        peer.start()
        add_user(peer.data_dir, "dr-rad", "radiologist", None, monkeypatch)
        add_user(peer.data_dir, "tech-a", "technician", "Township A", monkeypatch)
        add_user(peer.data_dir, "tech-b", "technician", "Township B", monkeypatch)
        base = peer.url
        # a routine chest CT from each clinic first (they wait longest), then the perfusion CT from clinic A
        chest_a = write_ct_series(tmp_path / "chest_a", 4, 64, 64, seed=5, series_description="CT CHEST",
                                  body_part="CHEST", patient_id="PA1")
        chest_b = write_ct_series(tmp_path / "chest_b", 4, 64, 64, seed=6, series_description="CT CHEST",
                                  body_part="CHEST", patient_id="PB1")
        assert len(stored_ok(run_storescu(chest_a, LOOPBACK, peer.dicom_port, "CLINIC_A", peer.ae_title))) == 4
        assert len(stored_ok(run_storescu(chest_b, LOOPBACK, peer.dicom_port, "CLINIC_B", peer.ae_title))) == 4
        ctp = write_phantom(tmp_path / "ctp", "--seed", "21")
        assert len(stored_ok(run_storescu(ctp, LOOPBACK, peer.dicom_port, "CLINIC_A", peer.ae_title))) == len(ctp)
        ctp_uid = str(pydicom.dcmread(ctp[0], stop_before_pixels=True).StudyInstanceUID)
        chest_b_uid = str(pydicom.dcmread(chest_b[0], stop_before_pixels=True).StudyInstanceUID)

        with httpx.Client(base_url=base, timeout=10) as api:
            assert api.get("/api/studies").status_code == 401  # accounts exist: the API is closed
            token = api.post("/api/auth/token", data={"username": "dr-rad", "password": PASSWORDS["dr-rad"]}).json()
            api.headers["authorization"] = f"Bearer {token['access_token']}"
            # stroke.triage, or stroke.triage_failed when the analysis calls the phantom unreliable: both alert
            alert = wait_until(lambda: next((a for a in api.get("/api/alerts").json() if a["type"].startswith(
                "stroke.triage") and a["study_instance_uid"] == ctp_uid), None), 180, "the stroke alert of the CTP")
            assert api.get(f"/api/alerts/{alert['id']}").json()["body"]["links"]["study"] == f"{base}/studies/{ctp_uid}"
            # the alert goes out a moment before its triage run is marked done; the page shows the finished run
            wait_until(lambda: (runs := api.get("/api/triage", params={"study": ctp_uid}).json()) and all(
                r["state"] in ("done", "covered") for r in runs), 60, "the triage run to finish")

        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
            try:
                page = browser.new_page(viewport={"width": 1400, "height": 1000})
                # 1) log in as radiologist
                login(page, base, "dr-rad")
                assert page.url.endswith("/worklist")
                # 2) the worklist shows the study with the stroke alert first
                first = page.locator("#rows tr").first
                assert first.get_attribute("data-study") == ctp_uid
                assert "alert" in first.inner_text() and "stroke" in first.inner_text()
                assert page.locator("#rows tr").count() == 3
                page.screenshot(path=str(ARTIFACTS / "1-worklist.png"), full_page=True)
                # live: a claim made elsewhere shows up without a reload (SSE, then the rows are fetched again)
                with httpx.Client(base_url=base, timeout=10, headers=api.headers) as other:
                    assert other.post(f"/api/studies/{chest_b_uid}/claim").status_code == 200
                page.wait_for_selector(f"#rows tr[data-study='{chest_b_uid}'] >> text=dr-rad", timeout=15_000)
                first = page.locator("#rows tr").first
                # 3) open it: the triage summary (automated, with its version) and the OHIF link
                first.locator("a").first.click()
                page.wait_for_load_state("load")
                assert page.url.endswith(f"/studies/{ctp_uid}")
                img = page.locator(".triage .summary img").first
                img.wait_for(state="visible", timeout=20_000)
                page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=img.element_handle(),
                                       timeout=20_000)
                card = page.locator(".triage").first.inner_text()
                assert "Automated result, not a diagnosis" in card and "telerad-ctp" in card
                assert page.get_attribute("#ohif-link", "href") == f"/ohif/viewer?StudyInstanceUIDs={ctp_uid}"
                page.screenshot(path=str(ARTIFACTS / "2-study.png"), full_page=True)
                # 4) write and sign the report
                assert page.input_value("#template") == "ct_perfusion"
                body = page.input_value("#report-body")
                assert "Automated perfusion analysis" in body  # prefilled, labelled as automated
                page.fill("#report-body", body.replace("IMPRESSION:\n", "IMPRESSION:\nRight MCA territory perfusion "
                                                                       "deficit with a large mismatch.\n"))
                page.click("button[data-state=draft]")
                page.wait_for_selector("#report-message:has-text('Saved as draft')", timeout=10_000)
                page.click("#sign")
                page.wait_for_selector("#final-report", timeout=60_000)
                assert "Signed by" in page.inner_text("#report-card") and "dr-rad" in page.inner_text("#report-card")
                page.screenshot(path=str(ARTIFACTS / "3-signed.png"), full_page=True)
                # the stroke team page: acknowledge the alert as the logged-in user
                page.goto(f"{base}/stroke")
                box = page.locator(f".alert[data-alert='{alert['id']}']")
                assert box.locator("img").count() == 1 and "not a diagnosis" in box.inner_text()
                box.locator("button.ack").click()
                page.wait_for_selector(f".alert[data-alert='{alert['id']}'] >> text=Acknowledged by dr-rad",
                                       timeout=15_000)
                # 6) the technician of clinic A sees the report; clinic B's study is not theirs
                tech = browser.new_page(viewport={"width": 1400, "height": 1000})
                login(tech, base, "tech-a")
                assert tech.url.endswith("/technician")
                row = tech.locator(f"#rows tr[data-study='{ctp_uid}']")
                assert "reported" in row.inner_text() and "Final report by dr-rad" in row.inner_text()
                assert tech.locator(f"#rows tr[data-study='{chest_b_uid}']").count() == 0
                row.locator("summary").click()
                assert "Right MCA territory perfusion deficit" in row.inner_text()
                tech.screenshot(path=str(ARTIFACTS / "4-technician.png"), full_page=True)
                # the technician uploads a study (STOW-RS from the page, with progress); it lists as theirs
                upload = write_ct_series(tmp_path / "upload", 2, 32, 32, seed=8, series_description="CT HEAD UPLOAD",
                                         body_part="CHEST", patient_id="PA2")
                upload_uid = str(pydicom.dcmread(upload[0], stop_before_pixels=True).StudyInstanceUID)
                tech.set_input_files("#files", [str(p) for p in upload])
                tech.wait_for_selector("#upload-message:has-text('uploaded and stored')", timeout=30_000)
                assert tech.get_attribute("#upload-progress", "value") == "100"
                tech.wait_for_selector(f"#rows tr[data-study='{upload_uid}']", timeout=15_000)
                assert "Township A" in tech.inner_text(f"#rows tr[data-study='{upload_uid}']")
                tech.screenshot(path=str(ARTIFACTS / "5-technician-upload.png"), full_page=True)
                # a file that is not DICOM, next to a good one: refused with a clear message, nothing stored
                bad = tmp_path / "notes.dcm"
                bad.write_bytes(b"this is not a DICOM file" * 10)
                extra = write_ct_series(tmp_path / "upload2", 1, 32, 32, seed=9, patient_id="PA3")
                rows_before = tech.locator("#rows tr").count()
                tech.set_input_files("#files", [str(extra[0]), str(bad)])
                tech.wait_for_selector("#upload-message:has-text('Upload refused')", timeout=30_000)
                assert "HTTP 4" in tech.inner_text("#upload-message")
                time.sleep(1.0)
                tech.reload()
                assert tech.locator("#rows tr").count() == rows_before
                refused = tech.goto(f"{base}/studies/{chest_b_uid}")
                assert refused.status == 403
            except Exception:  # keep what each open page showed, for the CI artifacts
                for n, open_page in enumerate(p for ctx in browser.contexts for p in ctx.pages):
                    open_page.screenshot(path=str(ARTIFACTS / f"failure-{n}.png"), full_page=True)
                raise
            finally:
                browser.close()

        # 5) the Basic Text SR and the PDF reached the clinic's DICOM address (storescp)
        def report_objects():
            found = {}
            for f in clinic.files():
                ds = pydicom.dcmread(f)
                if ds.SOPClassUID in (BASIC_TEXT_SR, ENCAPSULATED_PDF):
                    found[str(ds.SOPClassUID)] = ds
            return found if len(found) == 2 else None
        found = wait_until(report_objects, 60, "the report's SR and PDF at the clinic")
        sr, doc = found[BASIC_TEXT_SR], found[ENCAPSULATED_PDF]
        assert sr.StudyInstanceUID == ctp_uid == doc.StudyInstanceUID
        assert sr.VerificationFlag == "VERIFIED" and sr.VerifyingObserverSequence[0].VerifyingObserverName == "dr-rad"
        texts = [item.ContentSequence[0].TextValue for item in sr.ContentSequence if item.ValueType == "CONTAINER"]
        assert any("Right MCA territory perfusion deficit" in t for t in texts)
        assert bytes(doc.EncapsulatedDocument).startswith(b"%PDF-1.4")
    finally:
        peer.stop()
        clinic.stop()
