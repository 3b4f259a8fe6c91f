"""The OHIF Viewer in a real browser (Debian chromium driven by playwright) over our DICOMweb.

A phantom CT perfusion is pushed by DCMTK ``storescu``; the gateway's triage stores its SEG and
SR into the study. A radiologist logs in, opens the study in OHIF: the viewport shows the CT
(its pixels are not blank), the SEG and SR series are listed and open (the SEG's segments drawn over
the CT), and a JPEG-LS study shows from its passed-through frames. Screenshots go to
``test-artifacts/ohif/``. Needs ``make viewer`` (the OHIF files) and /usr/bin/chromium; a
missing one fails the test with the fix (``.ci/run`` installs both).
"""

from __future__ import annotations

import io
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select

from stroke.models import TriageRun
from tests.viewer.dicomweb_env import PASSWORD, STUDY_B, _push, start
from viewer.ohif_fetch import DIST, installed

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "ohif"


@pytest.fixture(scope="module")
def ctp_study(tmp_path_factory):
    assert installed(DIST), "the OHIF Viewer is not installed: run 'make viewer' (needs npm; .ci/run installs it)"
    assert Path(CHROMIUM).exists(), "chromium is missing: apt-get install -y chromium (.ci/run installs it)"
    from sample_dicom.cli import main as phantom_main

    tmp = tmp_path_factory.mktemp("ohif")
    run = start(tmp, n_images=2)
    try:
        assert phantom_main([str(tmp / "ctp"), "--size", "128", "--slices", "8", "--times", "30", "--seed", "21"]) == 0
        _push(sorted((tmp / "ctp").rglob("*.dcm")), run.gateway.settings.dicom.port, "CLINIC_A")
        deadline = time.monotonic() + 180
        triage = None
        while time.monotonic() < deadline:
            with run.gateway.sessions() as s:
                triage = s.execute(select(TriageRun).where(TriageRun.state == "done")).scalars().first()
            if triage is not None:
                break
            time.sleep(0.5)
        assert triage is not None and triage.objects, "the triage run did not store its SEG and SR"
        yield run, triage
    finally:
        run.stop()


def _viewport_rgb(page) -> np.ndarray:
    from PIL import Image

    canvas = page.locator(".cornerstone-viewport-element canvas, [data-viewport-uid] canvas").first
    return np.asarray(Image.open(io.BytesIO(canvas.screenshot())).convert("RGB"), dtype=np.float32)


def _viewport_pixels(page) -> np.ndarray:
    return _viewport_rgb(page).mean(axis=2)


def _colored(page) -> int:
    """Pixels of the viewport that are clearly not grey (a segmentation drawn over the CT)."""
    rgb = _viewport_rgb(page)
    return int((np.abs(rgb[..., 0] - rgb[..., 1]) + np.abs(rgb[..., 1] - rgb[..., 2]) > 60).sum())


def _wait_for_image(page, timeout_s: float = 60.0) -> np.ndarray:
    deadline = time.monotonic() + timeout_s
    pixels = None
    while time.monotonic() < deadline:
        try:
            pixels = _viewport_pixels(page)
            if pixels.std() > 20 and (pixels > 40).mean() > 0.05:
                return pixels
        except Exception:  # the viewport is not there yet
            pass
        time.sleep(1.0)
    raise AssertionError(f"the OHIF viewport stayed blank for {timeout_s}s (pixel std "
                         f"{None if pixels is None else round(float(pixels.std()), 1)})")


def test_ohif_shows_the_study_and_its_triage_seg_and_sr(ctp_study, tmp_path):
    from playwright.sync_api import sync_playwright

    run, triage = ctp_study
    seg = next(o for o in triage.objects if o["modality"] == "SEG")
    shots = tmp_path / "shots"
    shots.mkdir()
    fetched: dict[str, int] = {}
    failures: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            crashes: list[str] = []  # OHIF's error boundary logs what made it show "Something went wrong"
            page.on("console", lambda m: crashes.append(m.text[:300]) if "Error Boundary" in m.text else None)
            page.set_default_timeout(30_000)

            def on_response(r):
                if "/dicomweb/" in r.url:
                    if r.status >= 400:
                        failures.append(f"{r.status} {r.url}")
                    if seg["sop_uid"] in r.url:
                        fetched["seg"] = r.status

            page.on("response", on_response)
            # not logged in: the viewer page sends us to the login page, and back after it
            target = f"/ohif/viewer?StudyInstanceUIDs={triage.study_uid}"
            page.goto(run.base + target)
            assert "/login" in page.url
            page.fill("input[name=username]", "rad")
            page.fill("input[name=password]", PASSWORD)
            page.locator("button[type=submit], input[type=submit]").first.click()
            page.wait_for_url("**/ohif/viewer**")
            assert triage.study_uid in page.url

            bundle = next(DIST.glob("app.bundle.*.js")).name
            r = page.request.get(f"{run.base}/ohif/{bundle}", headers={"accept-encoding": "gzip"})
            assert r.ok and r.headers.get("content-encoding") == "gzip"  # 17 MB of JavaScript as about 3 MB

            pixels = _wait_for_image(page)
            page.screenshot(path=str(shots / "1-ct.png"))
            assert pixels.shape[0] > 200 and pixels.shape[1] > 200

            for dismiss in ("Skip all", "Confirm and hide"):  # OHIF's tour, its investigational-use notice
                if page.get_by_text(dismiss).count():
                    page.get_by_text(dismiss).first.click()
            browser_panel = page.locator("body")
            for label in ("SEG", "SR"):
                assert page.get_by_text(label, exact=True).count() >= 1, f"the {label} series is not listed"
            assert "AUTOMATED RESULT" in browser_panel.inner_text()

            page.get_by_text("SEG", exact=True).first.dblclick()
            page.get_by_role("button", name="Yes").click(timeout=60_000)  # "Do you want to open this Segmentation?"
            deadline = time.monotonic() + 60
            while fetched.get("seg") is None and time.monotonic() < deadline:
                page.wait_for_timeout(500)
            assert fetched.get("seg") == 200, "OHIF did not fetch the SEG instance"
            page.locator("[data-cy=panelSegmentation-btn]").click()
            page.get_by_text("Ischemic core (rCBF < 30%)").first.wait_for(timeout=60_000)  # the SEG's segments
            assert page.get_by_text("Tmax > 6 s hypoperfusion").count() >= 1
            # the lesion is in the upper slices: scroll there and see the segments drawn over the CT
            grey = _colored(page)
            page.locator(".cornerstone-viewport-element canvas, [data-viewport-uid] canvas").first.hover()
            deadline = time.monotonic() + 30
            while "(8/8)" not in page.locator("body").inner_text() and time.monotonic() < deadline:
                page.mouse.wheel(0, 120)
                page.wait_for_timeout(400)
            assert "(8/8)" in page.locator("body").inner_text(), "could not scroll to the last slice"
            deadline = time.monotonic() + 20
            while _colored(page) < grey + 5000 and time.monotonic() < deadline:
                page.wait_for_timeout(500)
            page.screenshot(path=str(shots / "2-seg.png"))
            colored = _colored(page)
            assert colored >= grey + 5000, f"no segmentation drawn over the CT ({colored} vs {grey} colored pixels)"
            assert _viewport_pixels(page).std() > 20

            # the SR (volumes only, no spatial coordinates): OHIF replaces the CT by its SR viewport. Unfixed,
            # OHIF 3.13.2 fails there ("Something went wrong"; viewer.ohif_fetch.SR_FIXES)
            page.get_by_text("SR", exact=True).first.dblclick()
            deadline = time.monotonic() + 30
            while "TemporalPositionIdentifier" in page.locator("body").inner_text() and time.monotonic() < deadline:
                page.wait_for_timeout(500)
            assert "TemporalPositionIdentifier" not in page.locator("body").inner_text(), "the SR did not open"
            page.wait_for_timeout(1000)
            page.screenshot(path=str(shots / "3-sr.png"))
            text = page.locator("body").inner_text()
            assert "Error" not in text and "went wrong" not in text, text[-500:]
            assert not crashes, crashes

            # a JPEG-LS study: OHIF gets the stored bitstreams (transfer-syntax=*) and decodes them itself
            page.goto(f"{run.base}/ohif/viewer?StudyInstanceUIDs={STUDY_B}")
            _wait_for_image(page)
            page.screenshot(path=str(shots / "4-jpeg-ls.png"))
        finally:
            browser.close()
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            for f in shots.glob("*.png"):
                shutil.copy(f, ARTIFACTS / f.name)
    assert not failures, f"DICOMweb requests of OHIF failed: {failures[:5]}"


def test_without_the_viewer_the_page_says_how_to_install_it(tmp_path):
    from starlette.testclient import TestClient

    from pacs_gateway.index.db import open_index
    from telerad.settings import Settings
    from viewer import ohif
    from viewer.main import create_app

    engine, sessions = open_index(f"sqlite:///{tmp_path / 'index.sqlite3'}")
    try:
        app = create_app(sessions, settings=Settings(data_dir=tmp_path / "var"), store_root=tmp_path / "store")
        app.state.ohif_dist = tmp_path / "no-ohif-here"
        c = TestClient(app)
        r = c.get("/ohif/viewer?StudyInstanceUIDs=1.2.3")
        assert r.status_code == 503 and "make viewer" in r.text and "text/html" in r.headers["content-type"]
        assert c.get("/ohif/").status_code == 503
        assert "/dicomweb" in c.get("/ohif/app-config.js").text
        assert c.get("/api/studies").status_code == 200  # the rest works (no accounts yet: open)
        assert ohif.OHIF_VERSION in r.text
    finally:
        engine.dispose()


def test_the_sr_viewer_fixes_apply_once(tmp_path):
    """viewer.ohif_fetch patches the SR extension's bundle once; the installed copy carries the patch level."""
    from viewer import ohif_fetch

    bundle = tmp_path / "1.bundle.js"
    bundle.write_bytes(b"a;\n" + b"\n".join(old for old, _ in ohif_fetch.SR_FIXES) + b"\nb;")
    (tmp_path / "2.bundle.js").write_bytes(b"untouched")
    assert sum(ohif_fetch._patch_bundles(tmp_path, ohif_fetch.SR_FIXES)) == len(ohif_fetch.SR_FIXES)
    data = bundle.read_bytes()
    assert all(new in data and old not in data for old, new in ohif_fetch.SR_FIXES)
    assert sum(ohif_fetch._patch_bundles(tmp_path, ohif_fetch.SR_FIXES)) == 0
    assert (tmp_path / "2.bundle.js").read_bytes() == b"untouched"
    assert ohif_fetch.install_id("3.13.2") == f"3.13.2+{ohif_fetch.LOCAL_PATCH}"
