"""The shared raw header reader: values, positions and refusals, against pydicom's encoding of the same data."""

from __future__ import annotations

import io

import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from telerad.dicom_header import PIXEL_DATA, Truncated, Unsupported, parse_part10, part10_layout, walk

ROWS, SOP, REFERENCED = 0x00280010, 0x00080018, 0x00081140


def _dataset() -> Dataset:
    ds = Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    ds.SOPInstanceUID = generate_uid()
    ds.PatientName = "Doe^Jane"
    item = Dataset()
    item.ReferencedSOPInstanceUID = "1.2.3"
    ds.ReferencedImageSequence = Sequence([item])
    ds.Rows, ds.Columns = 4, 4
    ds.BitsAllocated, ds.BitsStored, ds.PixelRepresentation, ds.SamplesPerPixel = 16, 16, 1, 1
    ds.PixelData = b"\x01\x00" * 16
    return ds


def _encode(ds: Dataset, *, implicit: bool, little: bool, undefined: bool = False) -> bytes:
    if undefined:
        ds["ReferencedImageSequence"].is_undefined_length = True
        ds.ReferencedImageSequence[0].is_undefined_length_sequence_item = True
    fp = DicomBytesIO()
    fp.is_implicit_VR, fp.is_little_endian = implicit, little
    write_dataset(fp, ds)
    return fp.getvalue()


@pytest.mark.parametrize("implicit,little", [(False, True), (True, True), (False, False)])
@pytest.mark.parametrize("undefined", [False, True])
def test_walk_keeps_the_wanted_top_level_values(implicit, little, undefined):
    ds = _dataset()
    data = _encode(ds, implicit=implicit, little=little, undefined=undefined)
    found = walk(bytearray(data), implicit=implicit, little=little, want=frozenset({ROWS, SOP, 0x00081155}))
    assert found.values[SOP].rstrip(b"\0").decode() == ds.SOPInstanceUID
    assert int.from_bytes(found.values[ROWS], "little" if little else "big") == 4
    assert 0x00081155 not in found.values  # inside a sequence item: not top level
    assert found.vrs[ROWS] == (b"" if implicit else b"US")


def test_walk_refuses_an_element_past_the_end_with_its_position():
    data = _encode(_dataset(), implicit=False, little=True)
    with pytest.raises(Truncated) as e:
        walk(memoryview(data)[:-10])
    assert e.value.at == len(data)  # where the pixel data value would end
    assert isinstance(e.value, Unsupported)  # a caller that only reads headers falls back to pydicom
    undefined = _encode(_dataset(), implicit=False, little=True, undefined=True)
    cut = undefined.index(b"\xfe\xff\xdd\xe0")  # the sequence never closes
    with pytest.raises(Truncated):
        walk(undefined[:cut])


def _part10(ds: Dataset) -> bytes:
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID, ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPClassUID, ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def test_parse_part10_locates_the_pixel_data_like_pydicom():
    data = _part10(_dataset())
    found = parse_part10(data, {"Rows": ROWS, "SOPInstanceUID": SOP})
    elem = pydicom.dcmread(io.BytesIO(data), defer_size=8).get_item(PIXEL_DATA, keep_deferred=True)
    assert (found.pixel_offset, found.pixel_length) == (elem.value_tell, elem.length)
    assert found.transfer_syntax == ExplicitVRLittleEndian
    assert found.us("Rows", 0) == 4 and found.text("SOPInstanceUID") == pydicom.dcmread(io.BytesIO(data)).SOPInstanceUID
    with pytest.raises(Unsupported, match="no pixel data"):
        parse_part10(data[: found.pixel_offset - 12], {"Rows": ROWS})
    with pytest.raises(Unsupported, match="not a DICOM Part-10 file"):
        parse_part10(data[128:], {"Rows": ROWS})


def test_part10_layout_and_its_refusals():
    data = _part10(_dataset())
    offset, syntax = part10_layout(memoryview(data))
    assert syntax == ExplicitVRLittleEndian
    assert data[offset:offset + 2] == b"\x08\x00"  # the data set starts with group 0008
    meta_len = int.from_bytes(data[140:144], "little")
    assert offset == 144 + meta_len
    with pytest.raises(Unsupported, match="not a DICOM Part-10 file"):
        part10_layout(data[:143])
    with pytest.raises(Unsupported, match="runs past the end"):
        part10_layout(data[:144 + meta_len - 1])
    no_syntax = bytearray(data)
    at = no_syntax.index(b"\x02\x00\x10\x00UI")
    no_syntax[at + 2] = 0x11  # (0002,0011): not the transfer syntax
    with pytest.raises(Unsupported, match="no Transfer Syntax UID"):
        part10_layout(bytes(no_syntax))
