"""The association thread's one-pass header reader gives what pydicom gives."""

from __future__ import annotations

import io
import struct
import zlib

import pytest
from pydicom import dcmread
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from pydicom.uid import DeflatedExplicitVRLittleEndian, ExplicitVRBigEndian, ImplicitVRLittleEndian

from pacs_gateway import status
from pacs_gateway.classify import HEADER_KEYWORDS
from pacs_gateway.dicom_bytes import HeaderReader, read_header
from pacs_gateway.errors import BadDataset
from pacs_gateway.ingest import SERIES_KEYWORDS, STUDY_KEYWORDS
from pacs_gateway.scp.handlers import file_meta
from sample_dicom.synthetic import write_ct_series, write_xray

KEYWORDS = tuple(dict.fromkeys((*HEADER_KEYWORDS, *STUDY_KEYWORDS, *SERIES_KEYWORDS)))


def _split(part10: bytes) -> tuple[bytes, str]:
    meta_len = 144 + struct.unpack_from("<I", part10, 140)[0]
    ts = dcmread(io.BytesIO(part10), stop_before_pixels=True).file_meta.TransferSyntaxUID
    return part10[meta_len:], str(ts)


def _encode(ds, syntax) -> bytes:
    ds.file_meta.TransferSyntaxUID = syntax
    buf = io.BytesIO()
    if syntax == ExplicitVRBigEndian:  # re-encoding needs force_encoding; pixels are not compared here
        if "PixelData" in ds:
            del ds.PixelData
        body = DicomBytesIO()
        body.is_little_endian, body.is_implicit_VR = False, False
        write_dataset(body, ds)
        return file_meta(ds.SOPClassUID, ds.SOPInstanceUID, syntax) + body.getvalue()
    else:
        ds.save_as(buf, enforce_file_format=True, implicit_vr=syntax == ImplicitVRLittleEndian)
    return buf.getvalue()


def _both(part10: bytes):
    dataset, ts = _split(part10)
    reader = HeaderReader(KEYWORDS)
    called = []

    def fallback():
        called.append(True)
        return part10

    fast = reader.read(bytearray(dataset), ts, fallback)
    return fast, read_header(part10, KEYWORDS), called


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("hdr")
    ct = write_ct_series(d / "ct", n_images=2, rows=32, cols=32,
                         extra={"ContrastBolusAgent": "Iohexol", "ProtocolName": "HEAD PERFUSION"})
    xr = write_xray(d / "xr")
    return [*ct, xr] if not isinstance(xr, list) else [*ct, *xr]


def test_raw_values_equal_pydicom_values(files):
    for f in files:
        fast, slow, called = _both(f.read_bytes())
        assert not called, f"{f.name} should not need pydicom"
        assert fast == slow, f.name


@pytest.mark.parametrize("syntax", [ImplicitVRLittleEndian, ExplicitVRBigEndian])
def test_other_encodings_read_the_same(files, syntax):
    ds = dcmread(files[0])
    fast, slow, _ = _both(_encode(ds, syntax))
    assert fast == slow
    assert fast.values["ImagePositionPatient"] == slow.values["ImagePositionPatient"]


def test_deflated_data_set_is_inflated_first(files):
    ds = dcmread(files[0])
    plain = _encode(ds, DeflatedExplicitVRLittleEndian)
    fast, slow, _ = _both(plain)
    assert fast == slow


@pytest.mark.parametrize("charset,name", [("ISO_IR 192", "王^小明"), ("GB18030", "李^雷"), ("ISO_IR 192", "Nguyễn^Văn An"), ("ISO_IR 100", "Müller^Jürgen")])
def test_patient_names_in_their_character_set(files, charset, name):
    ds = dcmread(files[0])
    ds.SpecificCharacterSet = charset
    ds.PatientName = name
    part10 = _encode(ds, "1.2.840.10008.1.2.1")
    fast, slow, _ = _both(part10)
    assert fast == slow
    assert str(fast.values["PatientName"]) == str(slow.values["PatientName"])


def test_unknown_character_set_falls_back_to_pydicom(files):
    ds = dcmread(files[0])
    ds.SpecificCharacterSet = ["", "ISO 2022 IR 58"]
    fast, slow, called = _both(_encode(ds, "1.2.840.10008.1.2.1"))
    assert called and fast == slow


def test_missing_uid_and_truncation_get_their_status(files):
    ds = dcmread(files[0])
    del ds.SeriesInstanceUID
    dataset, ts = _split(_encode(ds, "1.2.840.10008.1.2.1"))
    with pytest.raises(BadDataset) as e:
        HeaderReader(KEYWORDS).read(bytearray(dataset), ts, lambda: b"")
    assert e.value.status == status.MISSING_UID
    dataset, ts = _split(files[1].read_bytes())
    with pytest.raises(BadDataset) as e:
        HeaderReader(KEYWORDS).read(bytearray(dataset[:-100]), ts, lambda: b"")
    assert e.value.status == status.TRUNCATED
    with pytest.raises(BadDataset) as e:
        HeaderReader(KEYWORDS).read(bytearray(b"\x78\x9c garbage"), DeflatedExplicitVRLittleEndian, lambda: b"")
    assert e.value.status == status.TRUNCATED


def test_file_meta_is_valid_part10_and_deterministic(files):
    dataset, ts = _split(files[0].read_bytes())
    ds = dcmread(files[0], stop_before_pixels=True)
    meta = file_meta(ds.SOPClassUID, ds.SOPInstanceUID, ts)
    assert meta == file_meta(ds.SOPClassUID, ds.SOPInstanceUID, ts)
    back = dcmread(io.BytesIO(meta + dataset))
    assert back.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
    assert back.file_meta.TransferSyntaxUID == ts
    assert back.SOPInstanceUID == ds.SOPInstanceUID
    assert zlib.crc32(back.PixelData) == zlib.crc32(dcmread(files[0]).PixelData)
