"""``telerad serve`` as a real process: HTTP API over a socket, samples, clean errors."""

from __future__ import annotations

import subprocess
import sys

import httpx
import pytest

from sample_dicom.synthetic import write_ct_series
from tests.peers import free_port, run_storescu, stored_ok
from tests.serve_process import ServeProcess, wait_for


def test_http_api_over_a_real_socket(tmp_path):
    with ServeProcess(tmp_path / "var", args=["--accept-any-ae"], env={"TELERAD_DICOM__QUIET_PERIOD_S": "0.5"}) as srv:
        base = f"http://127.0.0.1:{srv.http_port}"
        wait_for(lambda: _ok(base + "/healthz"), timeout=30)
        assert httpx.get(base + "/healthz").json()["status"] == "ok"
        files = write_ct_series(tmp_path / "ct", n_images=8, rows=64, cols=64)
        assert len(stored_ok(run_storescu(files, "127.0.0.1", srv.dicom_port, "MODALITY", "TELERAD"))) == 8
        studies = httpx.get(base + "/api/studies").json()
        assert len(studies) == 1 and studies[0]["instance_count"] == 8
        uid = studies[0]["study_instance_uid"]
        study = wait_for(lambda: (s := httpx.get(f"{base}/api/studies/{uid}").json())["series"][0]["state"] == "complete" and s)
        (series,) = study["series"]
        assert series["kind"] == "ncct_head" and series["instance_count"] == 8
        assert "patient_name" not in study and "patient_id" not in study
        missing = httpx.get(base + "/api/studies/1.2.3")
        assert missing.status_code == 404
        assert missing.headers["content-type"].startswith("application/problem+json")
        assert missing.json()["title"] == "Study not found"
        bad = httpx.get(base + "/api/studies?limit=0")
        assert bad.status_code == 422 and bad.json()["status"] == 422


def _ok(url):
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.mark.slow
def test_demo_config_loads_the_bundled_samples_once(tmp_path):
    """What `make run` does: demo clinic, samples pushed in through the DICOM port."""
    data = tmp_path / "var"
    args = ["--config", "config/demo.toml", "--load-samples"]
    srv = ServeProcess(data, args=args, env={"TELERAD_DICOM__QUIET_PERIOD_S": "0.5"})
    srv.echo_ae = "DEMO_CLINIC"
    srv.start()
    try:
        base = f"http://127.0.0.1:{srv.http_port}"
        studies = wait_for(lambda: _complete(base), timeout=180, interval=0.5)
        assert all(s["clinic"] == "Demo Township Clinic" for s in studies)
        kinds = {k for s in studies for k in s["kinds"]}
        assert {"ctp", "ncct_head"} <= kinds
        assert "Loaded" in srv.log() and "telerad is running" in srv.log()
    finally:
        srv.stop()
    count = sum(s["instance_count"] for s in studies)
    srv2 = ServeProcess(data, args=args, log_name="serve2.log")
    srv2.echo_ae = "DEMO_CLINIC"
    with srv2:
        base = f"http://127.0.0.1:{srv2.http_port}"
        wait_for(lambda: _ok(base + "/healthz"), timeout=30)
        assert sum(s["instance_count"] for s in httpx.get(base + "/api/studies").json()) == count
        assert "Loaded" not in srv2.log()


def _complete(base):
    try:
        studies = httpx.get(base + "/api/studies", timeout=5).json()
    except httpx.HTTPError:
        return None
    return studies if len(studies) >= 2 and all(s["state"] == "complete" for s in studies) else None


def test_port_in_use_is_a_clear_error(tmp_path):
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen()
    port = s.getsockname()[1]
    try:
        r = subprocess.run(
            [sys.executable, "-m", "telerad.cli", "serve", "--data-dir", str(tmp_path / "v"), "--dicom-port", str(port),
             "--http-port", str(free_port()), "--accept-any-ae"],
            capture_output=True, text=True, timeout=60, env={**__import__("os").environ, "TELERAD_DICOM__BIND": "127.0.0.1"},
        )
    finally:
        s.close()
    assert r.returncode != 0
    assert "Traceback" not in r.stderr and "dicom.port" in r.stderr
