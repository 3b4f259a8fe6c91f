"""The fast header reader agrees with pydicom on every field the adapter uses."""

from __future__ import annotations

import dataclasses

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.datadict import tag_for_keyword
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from sample_dicom.writer import write_series
from triage.dicom_adapter import _PydicomFields, read_header
from telerad.dicom_header import Unsupported
from triage.image_header import TAGS, build_header, parse
from triage.series import PerfusionSeries


def test_tags_match_the_dicom_dictionary():
    for keyword, tag in TAGS.items():
        assert tag_for_keyword(keyword) == tag, keyword


def _via_pydicom(path):
    ds = pydicom.dcmread(path, defer_size=512)
    pixel = ds.get_item(0x7FE00010, keep_deferred=True)
    length = int(pixel.length)
    offset = None if length == 0xFFFFFFFF else pixel.value_tell
    return build_header(path, _PydicomFields(ds), str(ds.file_meta.TransferSyntaxUID), offset, length)


def _assert_same(a, b) -> None:
    for f in dataclasses.fields(a):
        x, y = getattr(a, f.name), getattr(b, f.name)
        if isinstance(x, np.ndarray) or isinstance(y, np.ndarray):
            assert np.allclose(x, y), f.name
        else:
            assert x == y, f.name


@pytest.mark.parametrize("name", ["CT_small.dcm", "MR_small.dcm", "JPEG2000.dcm", "SC_rgb_rle.dcm",
                                  "MR_small_jpeg_ls_lossless.dcm"])
def test_raw_reader_matches_pydicom_on_reference_files(name):
    path = get_testdata_file(name, download=False)
    assert path is not None, f"{name} should ship with pydicom's test data"
    with open(path, "rb") as fh:
        raw = parse(fh.read())
    _assert_same(build_header(path, raw, raw.transfer_syntax, raw.pixel_offset, raw.pixel_length), _via_pydicom(path))


@pytest.mark.parametrize("name", ["MR_small_implicit.dcm", "MR_small_bigendian.dcm"])
def test_other_encodings_are_left_to_pydicom(name):
    path = get_testdata_file(name, download=False)
    assert path is not None, f"{name} should ship with pydicom's test data"
    with open(path, "rb") as fh:
        with pytest.raises(Unsupported):
            parse(fh.read())
    header = read_header(path)  # the adapter falls back to pydicom
    assert header.rows == pydicom.dcmread(path).Rows and header.pixel_offset is not None


@pytest.fixture
def ct_file(tmp_path):
    series = PerfusionSeries(hu=np.zeros((1, 1, 8, 8), np.float32), times_s=np.zeros(1), spacing_mm=(5, 1, 1))
    return write_series(series, tmp_path / "plain")[0]


@pytest.mark.parametrize("undefined", [False, True])
def test_nested_sequences_and_long_headers(ct_file, tmp_path, undefined):
    ds = pydicom.dcmread(ct_file)
    inner = Dataset()
    inner.CodeValue, inner.CodeMeaning = "113691", "IEC Body Dosimetry Phantom"
    outer = Dataset()
    outer.ReferencedSOPInstanceUID = "1.2.3"
    outer.CTDIPhantomTypeCodeSequence = Sequence([inner])
    ds.ReferencedImageSequence = Sequence([outer, outer])
    ds.add_new(0x00291010, "OB", b"\x01" * 40_000)  # a private blob: the header outgrows the first read
    if undefined:
        for elem in (ds["ReferencedImageSequence"], outer["CTDIPhantomTypeCodeSequence"]):
            elem.is_undefined_length = True
        for item in (outer, inner):
            item.is_undefined_length_sequence_item = True
    path = tmp_path / "seq.dcm"
    ds.save_as(path, enforce_file_format=True)
    with open(path, "rb") as fh:
        data = fh.read()
    with pytest.raises(Unsupported):
        parse(data[:16384])  # the caller then reads the whole file
    raw = parse(data)
    header = build_header(path, raw, raw.transfer_syntax, raw.pixel_offset, raw.pixel_length)
    _assert_same(header, _via_pydicom(path))
    _assert_same(read_header(path), header)


def test_undefined_length_un_element_is_read(ct_file, tmp_path):
    """A private UN of undefined length (its items are implicit VR) is walked by the raw reader too."""
    data = bytearray(ct_file.read_bytes())
    at = data.index(b"\x28\x00\x10\x00")  # Rows: insert a private UN of undefined length before it
    blob = (b"\x09\x00\x10\x00UN\x00\x00\xff\xff\xff\xff"
            + b"\xfe\xff\x00\xe0\xff\xff\xff\xff" + b"\x09\x00\x11\x00\x04\x00\x00\x00ABCD"
            + b"\xfe\xff\x0d\xe0\x00\x00\x00\x00"
            + b"\xfe\xff\xdd\xe0\x00\x00\x00\x00")
    data[at:at] = blob
    path = tmp_path / "un.dcm"
    path.write_bytes(bytes(data))
    raw = parse(bytes(data))
    header = build_header(path, raw, raw.transfer_syntax, raw.pixel_offset, raw.pixel_length)
    _assert_same(header, _via_pydicom(path))
    assert (header.rows, header.cols) == (8, 8) and header.pixel_length == 128
    _assert_same(read_header(path), header)


def test_implicit_element_in_explicit_data_falls_back(ct_file, tmp_path):
    """An element without a VR in a data set labelled explicit VR is left to pydicom."""
    data = bytearray(ct_file.read_bytes())
    at = data.index(b"\x28\x00\x10\x00")
    data[at:at] = b"\x09\x00\x10\x00\x04\x00\x00\x00ABCD"  # (0009,0010), implicit VR, 4 bytes
    with pytest.raises(Unsupported, match="not explicit VR"):
        parse(bytes(data))
