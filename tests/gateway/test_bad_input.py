"""Bad input gets a specific DIMSE status; nothing is stored; the association carries on."""

from __future__ import annotations

import io
import socket
import struct

import pytest
from pydicom import dcmread
from pydicom.dataset import FileMetaDataset
from pydicom.filewriter import write_file_meta_info
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian
from pynetdicom import AE

from pacs_gateway import status
from sample_dicom.synthetic import write_ct_series
from tests.gateway.conftest import CLINIC_AE
from tests.gateway.helpers import instance_count

SOP = "1.2.826.0.1.3680043.8.498.1"


def _part10(dataset: bytes, sop_uid: str = SOP) -> bytes:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    buf = io.BytesIO()
    write_file_meta_info(buf, meta)
    return b"\0" * 128 + b"DICM" + buf.getvalue() + dataset


def _dataset_without(keyword: str, good_file) -> bytes:
    ds = dcmread(good_file)
    delattr(ds, keyword)
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


@pytest.fixture
def good_files(tmp_path):
    return write_ct_series(tmp_path / "good", n_images=6, rows=64, cols=64)


def _cases(good_files, tmp_path):
    truncated = good_files[1].read_bytes()[:-1000]
    ds = dcmread(good_files[2])
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    # the file meta (and so the C-STORE command) names another SOP Instance UID than the data set
    wrong_sop = _part10(buf.getvalue()[144 + struct.unpack_from("<I", buf.getvalue(), 140)[0]:], sop_uid="1.2.3")
    return {
        "missing StudyInstanceUID": (_dataset_without("StudyInstanceUID", good_files[3]), status.MISSING_UID),
        "missing SeriesInstanceUID": (_dataset_without("SeriesInstanceUID", good_files[4]), status.MISSING_UID),
        "unparseable header": (_part10(b"\x08\x00\x16\x00ZZ\x04\x00abcd"), status.CANNOT_PARSE),
        "truncated": (truncated, status.TRUNCATED),
        "instance uid differs from command": (wrong_sop, status.INSTANCE_MISMATCH),
    }


def test_each_bad_dataset_gets_its_status_and_the_association_carries_on(gateway, good_files, tmp_path, caplog, monkeypatch):
    import pynetdicom._config

    monkeypatch.setattr(pynetdicom._config, "STORE_SEND_CHUNKED_DATASET", True)  # send the bytes as they are
    ae = AE(ae_title=CLINIC_AE)
    ae.add_requested_context(CTImageStorage, ExplicitVRLittleEndian)
    assoc = ae.associate("127.0.0.1", gateway.settings.dicom.port, ae_title="TELERAD")
    assert assoc.is_established
    try:
        assert assoc.send_c_store(good_files[0]).Status == 0
        for name, (data, expected) in _cases(good_files, tmp_path).items():
            path = tmp_path / (name.replace(" ", "_") + ".dcm")
            path.write_bytes(data)
            rsp = assoc.send_c_store(path)
            assert rsp.Status == expected, f"{name}: got 0x{rsp.Status:04X}, expected 0x{expected:04X}"
            # the same association still works
            assert assoc.is_established
        assert assoc.send_c_store(good_files[5]).Status == 0
    finally:
        assoc.release()
    assert instance_count(gateway) == 2
    assert not list(gateway.store.tmp.iterdir()), "no partial files may remain"
    msgs = "\n".join(caplog.messages)
    for needle in ("StudyInstanceUID is missing", "SeriesInstanceUID is missing", "cannot be parsed", "truncated", "differs"):
        assert needle in msgs


def test_connection_dropped_mid_pdata_stores_nothing_and_server_carries_on(gateway, good_files):
    """A sender that vanishes in the middle of a data set leaves nothing behind."""
    from pynetdicom.dimse_messages import C_STORE_RQ
    from pynetdicom.dimse_primitives import C_STORE
    from pynetdicom.pdu import P_DATA_TF

    ae = AE(ae_title=CLINIC_AE)
    ae.add_requested_context(CTImageStorage, ExplicitVRLittleEndian)
    assoc = ae.associate("127.0.0.1", gateway.settings.dicom.port, ae_title="TELERAD", max_pdu=4096)
    assert assoc.is_established
    req = C_STORE()
    req.MessageID = 1
    req.AffectedSOPClassUID = CTImageStorage
    req.AffectedSOPInstanceUID = dcmread(good_files[0], stop_before_pixels=True).SOPInstanceUID
    req.Priority = 2
    data = good_files[0].read_bytes()
    req.DataSet = io.BytesIO(data[144 + struct.unpack_from("<I", data, 140)[0]:])
    rq = C_STORE_RQ()
    rq.primitive_to_message(req)
    fragments = list(rq.encode_msg(assoc.accepted_contexts[0].context_id, 4096))
    sock = assoc.dul.socket.socket
    for primitive in fragments[: len(fragments) // 2]:  # half of the P-DATA, then the sender vanishes
        pdu = P_DATA_TF()
        pdu.from_primitive(primitive)
        sock.sendall(pdu.encode())
    sock.shutdown(socket.SHUT_RDWR)
    assoc.abort()
    # the server carries on: a new association stores a good instance
    ae2 = AE(ae_title=CLINIC_AE)
    ae2.add_requested_context(CTImageStorage, ExplicitVRLittleEndian)
    assoc2 = ae2.associate("127.0.0.1", gateway.settings.dicom.port, ae_title="TELERAD")
    assert assoc2.is_established
    assert assoc2.send_c_store(good_files[1]).Status == 0
    assoc2.release()
    assert instance_count(gateway) == 1
    assert not list(gateway.store.tmp.iterdir())
