"""The storage acceptor's protocol edges: limits, broken peers, release, responses."""

from __future__ import annotations

import socket

import pytest
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian
from pynetdicom import AE
from pynetdicom.sop_class import Verification

from telerad.app import build_gateway
from pacs_gateway.ul import dimse, pdu
from sample_dicom.synthetic import write_ct_series
from tests.gateway.conftest import CLINIC_AE, make_settings, wait_until
from tests.gateway.helpers import instance_count
from tests.peers import run_echoscu


def _ae():
    ae = AE(ae_title=CLINIC_AE)
    ae.add_requested_context(Verification)
    ae.add_requested_context(CTImageStorage, ExplicitVRLittleEndian)
    return ae


@pytest.fixture
def small_gateway(tmp_path):
    gw = build_gateway(make_settings(tmp_path, **{"dicom.max_associations": 1}))
    gw.start()
    yield gw
    gw.stop()


def test_association_limit_rejects_transiently_then_recovers(small_gateway):
    port = small_gateway.settings.dicom.port
    first = _ae().associate("127.0.0.1", port, ae_title="TELERAD")
    assert first.is_established
    try:
        # DCMTK reads the reject reliably (pynetdicom's requestor sometimes misses a reject that
        # arrives within microseconds, and reports neither rejected nor aborted)
        second = run_echoscu("127.0.0.1", port, calling_ae=CLINIC_AE, called_ae="TELERAD")
        out = second.stdout + second.stderr
        assert second.returncode != 0 and "Rejected Transient" in out and "Local Limit Exceeded" in out, out
    finally:
        first.release()
    wait_until(lambda: small_gateway.server.active_associations == 0, timeout=10)
    again = _ae().associate("127.0.0.1", port, ae_title="TELERAD")
    assert again.is_established
    assert again.send_c_echo().Status == 0
    again.release()


def test_echo_from_dcmtk_and_from_pynetdicom(gateway):
    port = gateway.settings.dicom.port
    assert run_echoscu("127.0.0.1", port, calling_ae=CLINIC_AE, called_ae="TELERAD").returncode == 0
    assoc = _ae().associate("127.0.0.1", port, ae_title="TELERAD")
    assert assoc.send_c_echo().Status == 0
    assoc.release()
    assert assoc.is_released


def test_garbage_and_half_pdus_are_dropped_and_the_server_carries_on(gateway, tmp_path):
    port = gateway.settings.dicom.port
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")  # not a PDU: an A-ABORT comes back
        assert s.recv(16)[:1] == bytes([pdu.A_ABORT])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"\x01\x00\x00\x00\x10\x00\x00\x01")  # an A-ASSOCIATE-RQ header, then silence and close
    files = write_ct_series(tmp_path / "ct", n_images=1, rows=32, cols=32)
    assoc = _ae().associate("127.0.0.1", port, ae_title="TELERAD")
    assert assoc.send_c_store(files[0]).Status == 0
    assoc.release()
    assert instance_count(gateway) == 1


def test_failure_responses_carry_an_error_comment():
    rq = dimse.Command(dimse.C_STORE_RQ, 7, True, CTImageStorage, "1.2.3.4")
    decoded = dimse.decode_command(dimse.encode_response(rq, 0xC211, "data set truncated"))
    assert decoded.command_field == dimse.C_STORE_RSP and decoded.sop_instance_uid == "1.2.3.4"
    from pydicom.filebase import DicomBytesIO
    from pydicom.filereader import read_dataset

    fp = DicomBytesIO(dimse.encode_response(rq, 0xC211, "data set truncated"))
    fp.is_little_endian, fp.is_implicit_VR = True, True
    ds = read_dataset(fp, is_implicit_VR=True, is_little_endian=True)
    assert ds.Status == 0xC211 and ds.ErrorComment == "data set truncated"
    assert ds.MessageIDBeingRespondedTo == 7 and ds.CommandGroupLength == len(fp.getvalue()) - 12
