"""Receive-side TLS: DICOM TLS on dicom.tls_port (DCMTK echoscu/storescu +tls) and HTTPS for the API (httpx)."""

from __future__ import annotations

import json
import os
import shutil
import ssl
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from pacs_gateway.service import Gateway
from telerad.app import build_gateway
from sample_dicom.synthetic import write_ct_series
from tests.gateway.conftest import CLINIC_AE, make_settings
from tests.gateway.helpers import instance_count
from tests.gateway.tls_certs import Pair, issue, make_ca
from tests.peers import dcmtk_env, free_port, run_echoscu, stored_ok
from tests.serve_process import ServeProcess


@pytest.fixture(autouse=True)
def _tools():
    assert shutil.which("openssl") and shutil.which("storescu"), "needs openssl and DCMTK (.ci/run installs dcmtk)"


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    root = tmp_path_factory.mktemp("pki")
    ca = make_ca(root)
    rogue = make_ca(root, "rogue")
    return {
        "ca": ca,
        "server": issue(ca, root, "server", "localhost", server=True),
        "clinic": issue(ca, root, "clinic", "ct.clinic-a", server=False),
        "other": issue(ca, root, "other", "ct.clinic-b", server=False),
        "rogue": issue(rogue, root, "rogue-client", "ct.clinic-a", server=False),
    }


def _tls_args(client: Pair | None, ca: Pair) -> list[str]:
    if client is None:
        return ["+tla", "+cf", str(ca.cert)]
    return ["+tls", str(client.key), str(client.cert), "+cf", str(ca.cert)]


def _echo(port: int, client: Pair | None, ca: Pair, calling: str = CLINIC_AE) -> subprocess.CompletedProcess:
    cmd = ["echoscu", *_tls_args(client, ca), "-aet", calling, "-aec", "TELERAD", "-to", "10", "-ta", "10",
           "127.0.0.1", str(port)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=dcmtk_env())


@pytest.fixture
def tls_gateway(tmp_path, pki):
    def start(**extra):
        gw = build_gateway(make_settings(tmp_path, **{
            "dicom.tls_port": free_port(), "dicom.tls_cert": str(pki["server"].cert),
            "dicom.tls_key": str(pki["server"].key), "dicom.tls_ca": str(pki["ca"].cert), **extra,
        }))  # fmt: skip
        gw.start()
        started.append(gw)
        return gw

    started: list[Gateway] = []
    yield start
    for gw in started:
        gw.stop()


def test_storescu_and_echoscu_over_dicom_tls(tls_gateway, pki, tmp_path):
    gw = tls_gateway()
    port = gw.settings.dicom.tls_port
    assert _echo(port, pki["clinic"], pki["ca"]).returncode == 0
    files = write_ct_series(tmp_path / "ct", n_images=20, rows=64, cols=64)
    cmd = ["storescu", "-v", *_tls_args(pki["clinic"], pki["ca"]), "-aet", CLINIC_AE, "-aec", "TELERAD",
           "-to", "30", "-ta", "30", "-td", "60", "127.0.0.1", str(port), *map(str, files)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=dcmtk_env())
    assert len(stored_ok(r)) == 20, r.stderr[-2000:]
    assert instance_count(gw) == 20
    # the plain port still serves plain DICOM; TLS to it, and plain DICOM to the TLS port, fail
    assert run_echoscu("127.0.0.1", gw.settings.dicom.port, calling_ae=CLINIC_AE, called_ae="TELERAD").returncode == 0
    assert _echo(gw.settings.dicom.port, pki["clinic"], pki["ca"]).returncode != 0
    assert run_echoscu("127.0.0.1", port, calling_ae=CLINIC_AE, called_ae="TELERAD", timeout=5).returncode != 0
    # a client that does not trust our certificate never associates
    assert _echo(port, pki["clinic"], pki["rogue"]).returncode != 0


def test_client_certificates_map_to_clinics(tls_gateway, pki):
    gw = tls_gateway(**{"dicom.tls_require_client_cert": True, "dicom.tls_client_aes": {"ct.clinic-a": CLINIC_AE}})
    port = gw.settings.dicom.tls_port
    assert _echo(port, pki["clinic"], pki["ca"]).returncode == 0
    # no certificate, a certificate from another CA, or a certificate not mapped to this AE: refused
    assert _echo(port, None, pki["ca"]).returncode != 0
    assert _echo(port, pki["rogue"], pki["ca"]).returncode != 0
    r = _echo(port, pki["other"], pki["ca"])
    assert r.returncode != 0 and "Calling AE Title Not Recognized" in r.stdout + r.stderr


def test_https_api_with_a_generated_ca(tmp_path, pki):
    config = tmp_path / "telerad.toml"
    config.write_text(
        f'[http]\ntls_cert = "{pki["server"].cert}"\ntls_key = "{pki["server"].key}"\n'
        f'[[clinics]]\nname = "Clinic"\nae_title = "ECHOSCU"\n'
    )
    with ServeProcess(tmp_path / "var", args=["--config", str(config)]) as serve:
        url = f"https://127.0.0.1:{serve.http_port}/healthz"
        deadline, answer = time.monotonic() + 30, None
        while time.monotonic() < deadline:
            try:
                answer = httpx.get(url, verify=ssl.create_default_context(cafile=str(pki["ca"].cert)), timeout=5)
                break
            except httpx.ConnectError:
                time.sleep(0.2)
        assert answer is not None and answer.status_code == 200, serve.log()[-2000:]
        with pytest.raises(httpx.ConnectError):  # not trusted without our CA
            httpx.get(url, timeout=5)
        with pytest.raises(httpx.HTTPError):  # no plain HTTP on the HTTPS port
            httpx.get(f"http://127.0.0.1:{serve.http_port}/healthz", timeout=5)
        assert "https://127.0.0.1" in serve.log()
        # the Docker image's health check follows TELERAD_HTTP__TLS_CERT to HTTPS
        probe = _docker_healthcheck()
        env = {**os.environ, "TELERAD_HTTP__PORT": str(serve.http_port), "TELERAD_HTTP__TLS_CERT": str(pki["server"].cert)}
        assert subprocess.run([sys.executable, *probe[1:]], env=env, timeout=30).returncode == 0


def _docker_healthcheck() -> list[str]:
    text = (Path(__file__).resolve().parents[2] / "Dockerfile").read_text()
    line = text[text.index("HEALTHCHECK"):].split("CMD", 1)[1].splitlines()[0].strip()
    return json.loads(line)
