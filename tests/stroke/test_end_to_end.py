"""End to end with real peers: storescu -> telerad serve -> triage -> signed webhook, e-mail, SSE,
SEG/SR/SC into Orthanc (the lead hospital) and back to the clinic's DICOM address (storescp).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pydicom
import pytest

from sample_dicom.synthetic import write_ct_series
from stroke.cli.alerts import main as alerts_main
from tests.peers import (
    LOOPBACK, OrthancPeer, StorescpPeer, TeleradPeer, have_dcmtk, have_orthanc, run_storescu, stored_ok,
)
from tests.routing.conftest import wait_until
from tests.stroke.conftest import CLINIC_AE, SECRET_1, contact, destination, verify_standard_webhook, write_config
from triage.result import JSON_KEYS

pytestmark = pytest.mark.skipif(not (have_orthanc() and have_dcmtk()), reason="needs Debian orthanc and dcmtk")


def _post(url: str, body: dict) -> tuple[int, str, dict]:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.headers.get("content-type", ""), json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("content-type", ""), json.loads(exc.read())


def _sse_events(url: str, want: set[tuple[str, str]], timeout: float = 15.0) -> list[tuple[str, dict]]:
    """Read ``text/event-stream`` until every (event name, alert type) in ``want`` was seen (bounded)."""
    got, name = [], None
    deadline = time.monotonic() + timeout
    seen = lambda: {(n, e["type"]) for n, e in got}  # noqa: E731
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        assert resp.headers["content-type"].startswith("text/event-stream")
        while time.monotonic() < deadline and not want <= seen():
            line = resp.readline().decode().rstrip("\n")
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: ") and name:
                got.append((name, json.loads(line[6:])))
    assert want <= seen(), got
    return got


def test_ctp_to_signed_webhook_email_stream_orthanc_and_clinic(tmp_path, phantom_ctp, webhook, smtp, capsys):
    orthanc = OrthancPeer(tmp_path / "orthanc").start()
    clinic = StorescpPeer(tmp_path / "clinic" / "received", aet="CLINIC_SCP").start()
    peer = TeleradPeer(tmp_path / "var", extra_args=["--config", str(tmp_path / "telerad.toml")])
    write_config(tmp_path / "telerad.toml",
                 sections={"dicom": {"quiet_period_s": 1.0}, "routing": {"sweep_interval_s": 1},
                           "alerts": {"public_url": peer.url},
                           "alerts.smtp": {"host": LOOPBACK, "port": smtp.port, "sender": "telerad@test"}},
                 tables={"clinics": [{"name": "Township A", "ae_title": CLINIC_AE, "host": LOOPBACK,
                                      "port": clinic.port}],
                         "destinations": [destination("lead", orthanc.dicom_port, orthanc.aet)],
                         "oncall": [contact("Dr Li", 1, webhook, email="li@example.org")]})
    try:
        peer.start()
        # a non-contrast head CT first: the "incoming stroke imaging" pre-alert
        ncct = write_ct_series(tmp_path / "ncct", 12, 64, 64, seed=3, series_description="NCCT HEAD")
        assert len(stored_ok(run_storescu(ncct, LOOPBACK, peer.dicom_port, CLINIC_AE, peer.ae_title))) == 12
        pre = verify_standard_webhook(SECRET_1, webhook.wait(1, 60)[0])
        assert pre["type"] == "stroke.incoming" and pre["result"] is None and pre["clinic"] == "Township A"

        sent = run_storescu(phantom_ctp, LOOPBACK, peer.dicom_port, CLINIC_AE, peer.ae_title)
        t_last = time.time()
        assert len(stored_ok(sent)) == len(phantom_ctp) == 240
        req = webhook.wait(2, 90)[1]
        body = verify_standard_webhook(SECRET_1, req)
        assert req["at"] - t_last < 30
        assert req["headers"]["webhook-id"] != webhook.accepted()[0]["headers"]["webhook-id"]

        # the webhook carries what `telerad analyze --json` says about the same files
        ref = json.loads(subprocess.run([sys.executable, "-m", "telerad.cli", "analyze", str(phantom_ctp[0].parent),
                                         "--json"], capture_output=True, text=True, timeout=120).stdout)
        assert body["type"] == "stroke.triage" and body["clinic"] == "Township A"
        assert body["study_instance_uid"] == ref["study_instance_uid"]
        assert set(body["result"]) == set(JSON_KEYS)
        for key in ("status", "core_ml", "tmax6_ml", "tmax10_ml", "mismatch_ml", "mismatch_ratio",
                    "hypoperfusion_intensity_ratio", "affected_side", "eligibility", "algorithm"):
            assert body["result"][key] == ref[key], key
        assert body["result"]["tmax6_ml"] >= 15 and ref["quality"]["reliable"]
        assert f"{ref['algorithm']['name']} {ref['algorithm']['version']}" in body["message"]
        assert "not a diagnosis" in body["message"] and body["automated_result"] is True
        with urllib.request.urlopen(body["links"]["summary_png"], timeout=10) as resp:
            assert resp.headers["content-type"] == "image/png" and resp.read(8) == b"\x89PNG\r\n\x1a\n"
        assert peer.get(body["links"]["study_api"].removeprefix(peer.url))["clinic"] == "Township A"
        assert body["links"]["study"] == f"{peer.url}/studies/{ref['study_instance_uid']}"  # the HTML page

        # e-mail with the summary PNG attached (one for the pre-alert, one for the result)
        mails = smtp.wait(2, 30)
        mail = next(m["msg"] for m in mails if "perfusion result" in m["msg"]["Subject"])
        assert mail["To"] == "li@example.org" and "not a diagnosis" in mail.get_body(("plain",)).get_content()
        (png,) = [p for p in mail.iter_attachments() if p.get_content_type() == "image/png"]
        assert png.get_content().startswith(b"\x89PNG")

        # the live stream replays every step
        _sse_events(f"{peer.url}/api/alerts/stream?since=0",
                    {(step, kind) for step in ("alert.created", "alert.sent") for kind in ("stroke.incoming", "stroke.triage")})

        # SEG, SR and SC in the lead hospital's PACS, and back at the clinic
        def orthanc_modalities():
            series = orthanc.rest("/series?expand")
            return {s["MainDicomTags"].get("Modality") for s in series} >= {"SEG", "SR", "OT"} and series
        series = wait_until(orthanc_modalities, 90, what="SEG, SR and SC in Orthanc")
        ctp_study = next(s["ParentStudy"] for s in series
                         if s["MainDicomTags"].get("SeriesInstanceUID") == ref["series_instance_uid"])
        results = [s for s in series if s["MainDicomTags"].get("Modality") in ("SEG", "SR", "OT")]
        assert len(results) == 3 and all(s["ParentStudy"] == ctp_study for s in results)  # in the CTP's study
        wait_until(lambda: len(clinic.files()) >= 4, 60, what="results back at the clinic")
        back = sorted(pydicom.dcmread(f, stop_before_pixels=True).Modality for f in clinic.files())
        assert back == ["OT", "OT", "SEG", "SR"]
        study = peer.get(f"/api/studies/{ref['study_instance_uid']}")
        assert {s["modality"] for s in study["series"]} == {"CT", "SEG", "SR", "OT"}

        # acknowledgement over HTTP, once; a second is a 409 problem
        alert_id = body["alert_id"]
        status, _, acked = _post(f"{peer.url}/api/alerts/{alert_id}/ack", {"user": "Dr Li"})
        assert status == 200 and acked["state"] == "acknowledged" and acked["acknowledged_by"] == "Dr Li"
        status, ctype, problem = _post(f"{peer.url}/api/alerts/{alert_id}/ack", {"user": "Dr Wang"})
        assert status == 409 and ctype.startswith("application/problem+json") and "already acknowledged" in problem["detail"]
        assert alerts_main(["--json", "--data-dir", str(peer.data_dir)]) == 0
        listed = json.loads(capsys.readouterr().out)
        steps = [s["step"] for s in next(a for a in listed if a["id"] == alert_id)["steps"]]
        assert steps == ["created", "sent", "acknowledged"]
        assert len(listed) == 2  # the pre-alert and the result, each once
    finally:
        peer.stop()
        clinic.stop()
        orthanc.stop()
