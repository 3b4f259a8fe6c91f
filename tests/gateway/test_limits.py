"""Acceptor bounds, one at a time, in process: called AE, ARTIM, idle timeout, size cap, disk full, per-address cap."""

from __future__ import annotations

import socket
import time

import pytest
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian
from pynetdicom import AE

from pacs_gateway import status
from telerad.app import build_gateway
from sample_dicom.synthetic import write_ct_series
from tests.gateway.conftest import CLINIC_AE, make_settings, wait_until
from tests.gateway.helpers import instance_count
from tests.peers import run_echoscu


def _assoc(port: int):
    ae = AE(ae_title=CLINIC_AE)
    ae.add_requested_context(CTImageStorage, ExplicitVRLittleEndian)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 10
    return ae.associate("127.0.0.1", port, ae_title="TELERAD")


@pytest.fixture
def limited(tmp_path):
    started = []

    def start(**overrides):
        gw = build_gateway(make_settings(tmp_path, **overrides))
        gw.start()
        started.append(gw)
        return gw

    yield start
    for gw in started:
        gw.stop()


def test_a_wrong_called_ae_title_is_rejected(gateway, caplog):
    r = run_echoscu("127.0.0.1", gateway.settings.dicom.port, calling_ae=CLINIC_AE, called_ae="NOT_US")
    assert r.returncode != 0 and "Called AE Title Not Recognized" in r.stdout + r.stderr
    assert any("called AE title 'NOT_US' is not ours" in m for m in caplog.messages)


def test_artim_closes_a_silent_connection_without_a_thread(limited):
    gw = limited(**{"dicom.acse_timeout_s": 1.0})
    with socket.create_connection(("127.0.0.1", gw.settings.dicom.port), timeout=10) as s:
        wait_until(lambda: gw.server.pending_connections == 1, timeout=5)
        assert gw.server.active_associations == 0
        t0 = time.monotonic()
        assert s.recv(16) == b""  # closed by the server
        assert time.monotonic() - t0 < 5
    assert gw.server.pending_connections == 0


def test_an_idle_association_is_aborted(limited):
    gw = limited(**{"dicom.network_timeout_s": 1.0})
    assoc = _assoc(gw.settings.dicom.port)
    assert assoc.is_established
    wait_until(lambda: assoc.is_aborted, timeout=10)
    wait_until(lambda: gw.server.active_associations == 0, timeout=5)


def test_a_data_set_over_the_cap_is_aborted_and_leaves_nothing(limited, tmp_path, caplog):
    gw = limited(**{"dicom.max_dataset_bytes": 256 * 1024})
    big = write_ct_series(tmp_path / "big", n_images=1, rows=512, cols=512)  # about 512 KiB
    assoc = _assoc(gw.settings.dicom.port)
    rsp = assoc.send_c_store(big[0])
    assert not rsp or "Status" not in rsp
    wait_until(lambda: assoc.is_aborted, timeout=10)
    assert instance_count(gw) == 0 and not list(gw.store.tmp.iterdir())
    assert any("data set larger than the 262144 bytes allowed" in m for m in caplog.messages)


def test_a_full_disk_mid_association_answers_a702_and_stores_nothing(limited, tmp_path, monkeypatch):
    gw = limited()
    files = write_ct_series(tmp_path / "ct", n_images=3, rows=64, cols=64)
    assoc = _assoc(gw.settings.dicom.port)
    try:
        assert assoc.send_c_store(files[0]).Status == 0
        monkeypatch.setattr(gw.store, "usage_pct", lambda: 99.9)
        rsp = assoc.send_c_store(files[1])
        assert rsp.Status == status.OUT_OF_RESOURCES_DISK_FULL
        assert assoc.is_established  # the association carries on
        monkeypatch.undo()
        assert assoc.send_c_store(files[2]).Status == 0
    finally:
        assoc.release()
    assert instance_count(gw) == 2 and not list(gw.store.tmp.iterdir())


def test_one_address_gets_at_most_its_share_of_associations(limited):
    gw = limited(**{"dicom.max_associations_per_ip": 1})
    first = _assoc(gw.settings.dicom.port)
    try:
        second = run_echoscu("127.0.0.1", gw.settings.dicom.port, calling_ae=CLINIC_AE, called_ae="TELERAD")
        out = second.stdout + second.stderr
        assert second.returncode != 0 and "Rejected Transient" in out and "Local Limit Exceeded" in out, out
    finally:
        first.release()
    wait_until(lambda: gw.server.active_associations == 0, timeout=10)
    again = _assoc(gw.settings.dicom.port)
    assert again.is_established
    again.release()
