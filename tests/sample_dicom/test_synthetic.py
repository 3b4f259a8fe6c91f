"""The synthetic fixture generator writes valid, decodable, distinct DICOM."""

from __future__ import annotations

import hashlib

import numpy as np
import pydicom
import pytest
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian

from sample_dicom.synthetic import (
    LOSSLESS,
    SYNTAXES,
    available_syntaxes,
    compress_series,
    write_ct_series,
    write_xray,
)


@pytest.fixture(scope="module")
def small_ct(tmp_path_factory):
    return write_ct_series(tmp_path_factory.mktemp("ct"), 4, 64, 48, seed=3)


@pytest.fixture(scope="module")
def small_ct8(tmp_path_factory):
    return write_ct_series(tmp_path_factory.mktemp("ct8"), 3, 64, 64, bits_allocated=8)


def test_ct_series_is_valid_part10_with_geometry(small_ct):
    assert [p.name for p in small_ct] == ["IM00001.dcm", "IM00002.dcm", "IM00003.dcm", "IM00004.dcm"]
    datasets = [pydicom.dcmread(p) for p in small_ct]
    for i, ds in enumerate(datasets):
        assert ds.preamble is not None
        assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
        assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
        assert ds.SOPClassUID == CTImageStorage
        assert ds.InstanceNumber == i + 1
        assert float(ds.ImagePositionPatient[2]) == pytest.approx(5.0 * i)
        arr = ds.pixel_array
        assert arr.shape == (64, 48) and arr.dtype == np.int16
    assert len({ds.SOPInstanceUID for ds in datasets}) == 4
    assert len({ds.StudyInstanceUID for ds in datasets}) == 1
    assert len({ds.SeriesInstanceUID for ds in datasets}) == 1
    hashes = {hashlib.sha256(ds.PixelData).hexdigest() for ds in datasets}
    assert len(hashes) == 4
    hu = datasets[0].pixel_array * float(datasets[0].RescaleSlope) + float(datasets[0].RescaleIntercept)
    assert hu.min() < -900 and 0 < np.median(hu[20:44, 14:34]) < 100


def test_full_size_image_is_about_half_a_megabyte(tmp_path):
    (path,) = write_ct_series(tmp_path, 1, study_uid="1.2.3.4", series_uid="1.2.3.4.5", extra={"StationName": "CT1"})
    assert 524_288 < path.stat().st_size < 530_000
    ds = pydicom.dcmread(path)
    assert (ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.StationName) == ("1.2.3.4", "1.2.3.4.5", "CT1")
    assert ds.pixel_array.shape == (512, 512)


def test_ctp_layout_repeats_positions_over_time(tmp_path):
    paths = write_ct_series(tmp_path, 6, 32, 32, n_slices=2, acquisition_number=None, frame_interval_s=2.0)
    ds = [pydicom.dcmread(p, stop_before_pixels=True) for p in paths]
    assert [float(d.ImagePositionPatient[2]) for d in ds] == [0.0, 5.0, 0.0, 5.0, 0.0, 5.0]
    assert [d.AcquisitionNumber for d in ds] == [1, 1, 2, 2, 3, 3]
    assert [d.TemporalPositionIndex for d in ds] == [1, 1, 2, 2, 3, 3]
    assert ds[0].AcquisitionTime != ds[2].AcquisitionTime


def test_extra_may_not_touch_pixel_data(tmp_path):
    with pytest.raises(ValueError, match="PixelData"):
        write_ct_series(tmp_path, 1, 8, 8, extra={"PixelData": b"\0" * 128})


@pytest.mark.parametrize("modality", ["DX", "CR"])
def test_xray(tmp_path, modality):
    path = write_xray(tmp_path, 128, 96, modality=modality)
    ds = pydicom.dcmread(path)
    assert ds.Modality == modality
    assert ds.pixel_array.shape == (128, 96)
    assert ds.pixel_array.max() <= 4095


@pytest.mark.parametrize("name", sorted(LOSSLESS - {"htj2k-lossless"}))
def test_lossless_compression_round_trips(tmp_path, small_ct, name):
    out = compress_series(small_ct, tmp_path, name)
    assert [p.name for p in out] == [p.name for p in small_ct]
    for src, dst in zip(small_ct, out):
        a, b = pydicom.dcmread(src), pydicom.dcmread(dst)
        assert b.file_meta.TransferSyntaxUID == SYNTAXES[name]
        assert b.SOPInstanceUID == a.SOPInstanceUID
        np.testing.assert_array_equal(b.pixel_array, a.pixel_array)


def test_jpeg2000_lossy_is_close(tmp_path, small_ct):
    out = compress_series(small_ct[:1], tmp_path, SYNTAXES["j2k"])
    a, b = pydicom.dcmread(small_ct[0]), pydicom.dcmread(out[0])
    assert b.file_meta.TransferSyntaxUID == SYNTAXES["j2k"]
    assert np.abs(a.pixel_array.astype(float) - b.pixel_array).mean() < 100


def test_jpeg_baseline_needs_8_bit(tmp_path, small_ct, small_ct8):
    with pytest.raises(ValueError, match="8-bit"):
        compress_series(small_ct, tmp_path / "no", "jpeg-baseline")
    out = compress_series(small_ct8, tmp_path / "yes", "jpeg-baseline", workers=2)
    a, b = pydicom.dcmread(small_ct8[0]), pydicom.dcmread(out[0])
    assert b.file_meta.TransferSyntaxUID == SYNTAXES["jpeg-baseline"]
    assert b.pixel_array.dtype == np.uint8
    assert np.abs(a.pixel_array.astype(float) - b.pixel_array).mean() < 10


def test_new_uids_gives_fresh_instance_and_series(tmp_path, small_ct):
    out = compress_series(small_ct[:2], tmp_path, "rle", new_uids=True)
    a = [pydicom.dcmread(p, stop_before_pixels=True) for p in small_ct[:2]]
    b = [pydicom.dcmread(p, stop_before_pixels=True) for p in out]
    assert b[0].SeriesInstanceUID == b[1].SeriesInstanceUID != a[0].SeriesInstanceUID
    assert {d.SOPInstanceUID for d in b}.isdisjoint({d.SOPInstanceUID for d in a})
    assert b[0].file_meta.MediaStorageSOPInstanceUID == b[0].SOPInstanceUID


def test_unknown_or_unavailable_syntax_is_refused(tmp_path, small_ct):
    with pytest.raises(ValueError, match="syntax"):
        compress_series(small_ct, tmp_path, "jpeg-xl")
    if "htj2k-lossless" not in available_syntaxes():
        with pytest.raises(RuntimeError, match="No encoder"):
            compress_series(small_ct, tmp_path, "htj2k-lossless")
