"""The storage SCU association against real peers: DCMTK storescp, Orthanc and telerad itself."""

from __future__ import annotations

import mmap
import struct

import pytest
from pydicom import dcmread
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, ImplicitVRLittleEndian, MRImageStorage

from pacs_gateway.ul.requestor import AssociationError, AssociationRejected, StoreAssociation
from sample_dicom.synthetic import write_ct_series
from tests.gateway.conftest import CLINIC_AE
from tests.gateway.helpers import dataset_bytes, instance_count
from tests.peers import OrthancPeer, StorescpPeer, free_port, pixel_sha256

CONTEXTS = [(CTImageStorage, [ExplicitVRLittleEndian, ImplicitVRLittleEndian]), ("1.2.840.10008.1.1", [ExplicitVRLittleEndian])]


def _split(path):
    """(sop class, sop instance, data set bytes after the file meta) of a Part-10 file, via mmap."""
    with open(path, "rb") as f:
        mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    meta_len = 144 + struct.unpack_from("<I", mm, 140)[0]
    ds = dcmread(path, stop_before_pixels=True)
    return ds.SOPClassUID, ds.SOPInstanceUID, memoryview(mm)[meta_len:]


@pytest.fixture(scope="module")
def ct(tmp_path_factory):
    return write_ct_series(tmp_path_factory.mktemp("ct") / "ct", n_images=12, rows=128, cols=128)


@pytest.mark.parametrize("max_pdu", [16384, 0])
def test_store_to_storescp_arrives_byte_identical(tmp_path, ct, max_pdu):
    with StorescpPeer(tmp_path / "scp") as scp:
        with StoreAssociation(scp.host, scp.port, calling_ae="TELERAD", called_ae="STORESCP", contexts=CONTEXTS,
                              max_pdu=max_pdu) as a:
            assert a.echo() == 0
            cid = a.context_for(CTImageStorage, ExplicitVRLittleEndian)
            assert cid is not None
            for f in ct:
                cls, sop, data = _split(f)
                assert a.store(cid, cls, sop, data) == (0, None)
        received = {dcmread(p, stop_before_pixels=True).SOPInstanceUID: p for p in scp.files()}
    assert len(received) == len(ct)
    for f in ct:
        assert dataset_bytes(received[dcmread(f, stop_before_pixels=True).SOPInstanceUID]) == dataset_bytes(f)


def test_store_to_orthanc_pixels_intact(tmp_path, ct):
    with OrthancPeer(tmp_path / "orthanc") as pacs:
        with StoreAssociation(pacs.host, pacs.dicom_port, calling_ae="TELERAD", called_ae=pacs.aet,
                              contexts=CONTEXTS) as a:
            cid = a.context_for(CTImageStorage)
            for f in ct:
                cls, sop, data = _split(f)
                assert a.store(cid, cls, sop, data)[0] == 0
        stored = pacs.sop_instance_uids()
        assert len(stored) == len(ct)
        for f in ct[:3]:
            sop = dcmread(f, stop_before_pixels=True).SOPInstanceUID
            assert pacs.instance_pixel_sha256(stored[sop]) == pixel_sha256(f)


def test_refusals_are_clear(tmp_path, gateway, ct):
    port = gateway.settings.dicom.port
    with pytest.raises(AssociationRejected) as e:  # telerad does not know this calling AE
        StoreAssociation("127.0.0.1", port, calling_ae="STRANGER", called_ae="TELERAD", contexts=CONTEXTS).open()
    assert not e.value.transient and "calling AE title not recognised" in str(e.value)
    with pytest.raises(AssociationError) as e:
        StoreAssociation("127.0.0.1", free_port(), calling_ae=CLINIC_AE, called_ae="X", contexts=CONTEXTS,
                         connect_timeout=2).open()
    assert e.value.transient and "cannot connect" in str(e.value)
    with StorescpPeer(tmp_path / "ct-only", accepted_sop_classes=[CTImageStorage]) as scp:
        with StoreAssociation(scp.host, scp.port, calling_ae="TELERAD", called_ae="STORESCP",
                              contexts=[(MRImageStorage, [ExplicitVRLittleEndian]), *CONTEXTS]) as a:
            assert a.context_for(MRImageStorage) is None and a.context_for(CTImageStorage) is not None


def test_telerad_answers_failures_with_comments(gateway, ct):
    port = gateway.settings.dicom.port
    with StoreAssociation("127.0.0.1", port, calling_ae=CLINIC_AE, called_ae="TELERAD", contexts=CONTEXTS) as a:
        cid = a.context_for(CTImageStorage, ExplicitVRLittleEndian)
        cls, sop, data = _split(ct[0])
        assert a.store(cid, cls, sop, data) == (0, None)
        status, comment = a.store(cid, cls, sop, data[:-500])  # truncated
        assert status == 0xC211 and "truncated" in comment
        cls, sop, data = _split(ct[1])
        assert a.store(cid, cls, sop, data) == (0, None)  # the association carries on
    assert instance_count(gateway) == 2
