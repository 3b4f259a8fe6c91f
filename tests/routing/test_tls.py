"""DICOM over TLS to a real DCMTK storescp (+tls), with a certificate made for the test."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time

import pydicom
import pytest

from sample_dicom.synthetic import write_ct_series
from tests.peers import LOOPBACK, dcmtk_env, free_port
from tests.routing.conftest import dicom_destination, ledger_counts, wait_until
from tests.routing.test_delivery import push, sop_uids


@pytest.fixture(autouse=True)
def _tools():
    # .ci/run installs DCMTK, and openssl is on every machine of this kind: missing tools fail, never skip
    assert shutil.which("openssl") and shutil.which("storescp"), "needs openssl and DCMTK storescp (.ci/run installs dcmtk)"


@pytest.fixture
def certificate(tmp_path):
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
         "-days", "2", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return key, cert


@pytest.fixture
def tls_storescp(tmp_path, certificate):
    key, cert = certificate
    out, port = tmp_path / "received", free_port()
    out.mkdir()
    log = open(tmp_path / "storescp-tls.log", "wb")
    proc = subprocess.Popen(
        ["storescp", "-aet", "SECURESCP", "+xa", "-od", str(out), "+tls", str(key), str(cert), "-ic", str(port)],
        stdout=log, stderr=subprocess.STDOUT, env=dcmtk_env(), start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            socket.create_connection((LOOPBACK, port), timeout=1).close()
            break
        except OSError:
            assert proc.poll() is None, (tmp_path / "storescp-tls.log").read_text()
            time.sleep(0.1)
    else:
        proc.kill()
        pytest.fail("storescp with TLS did not start")
    yield port, out, cert
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


def test_delivers_over_tls_and_refuses_an_untrusted_server(gateway_factory, tmp_path, tls_storescp):
    port, out, cert = tls_storescp
    files = write_ct_series(tmp_path / "src", 6, 64, 64, seed=21)
    gw = gateway_factory(destinations=[
        dicom_destination("tls-lead", port, "SECURESCP", tls={"ca_file": str(cert), "server_hostname": "localhost"}),
    ])  # fmt: skip
    push(gw, files)
    wait_until(lambda: ledger_counts(gw) == {"delivered": 6}, timeout=30, what="6 delivered over TLS")
    received = sorted(p for p in out.rglob("*") if p.is_file())
    assert sop_uids(received) == sop_uids(files)
    for f in received:
        assert pydicom.dcmread(f).pixel_array.shape == (64, 64)

    # a destination that does not trust the server's certificate never sends in the clear
    other = gateway_factory(sub="gw2", destinations=[dicom_destination("untrusted", port, "SECURESCP", tls={})])
    push(other, write_ct_series(tmp_path / "src2", 2, 64, 64, seed=22))
    wait_until(lambda: any(_errors(other)), timeout=30, what="a failed attempt recorded")
    assert ledger_counts(other).get("delivered", 0) == 0
    assert len([p for p in out.rglob("*") if p.is_file()]) == 6, "nothing may arrive from the untrusting sender"


def _errors(gw) -> list[str | None]:
    from sqlalchemy import select

    from pacs_gateway.index.models import Delivery

    with gw.sessions() as s:
        return list(s.execute(select(Delivery.last_error)).scalars())
