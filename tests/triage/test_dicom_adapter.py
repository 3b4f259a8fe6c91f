"""DICOM folder -> PerfusionSeries: every vendor layout, sampling, geometry, and clear refusals."""

from __future__ import annotations

import shutil

import numpy as np
import pydicom
import pytest

from sample_dicom.synthetic import available_syntaxes, compress_series, write_xray
from sample_dicom.writer import write_series, write_volume
from triage.dicom_adapter import MIN_TIME_POINTS, load_ctp, read_header
from triage.errors import NotCTPError
from triage.series import PerfusionSeries

T, Z, Y, X = 16, 4, 20, 24


def _series(dt_s: float = 1.5, *, nt: int = T, nz: int = Z, affine: np.ndarray | None = None, seed: int = 0,
            ny: int = Y, nx: int = X):
    rng = np.random.default_rng(seed)
    hu = rng.uniform(-1000, 2000, size=(nt, nz, ny, nx)).astype(np.float32)
    if affine is None:
        affine = np.array([[0.8, 0, 0, -10.0], [0, 0.9, 0, -9.0], [0, 0, 5.0, -7.5], [0, 0, 0, 1]])
    return PerfusionSeries(hu=hu, times_s=np.arange(nt) * dt_s, spacing_mm=(5.0, 0.9, 0.8), affine=affine,
                           study_instance_uid="1.2.826.0.1.3680043.8.498.1",
                           series_instance_uid="1.2.826.0.1.3680043.8.498.2")


def _same(loaded: PerfusionSeries, truth: PerfusionSeries) -> None:
    assert loaded.hu.shape == truth.hu.shape and loaded.hu.dtype == np.float32
    assert np.abs(loaded.hu - truth.hu).max() <= 0.501  # int16 rounding only
    assert np.allclose(loaded.times_s, truth.times_s, atol=1e-4)
    assert np.allclose(loaded.affine, truth.affine, atol=1e-4)
    assert np.allclose(loaded.spacing_mm, truth.spacing_mm, atol=1e-4)


@pytest.fixture(scope="module")
def truth():
    return _series()


@pytest.mark.parametrize(("layout", "shuffle"), [("single", False), ("single", True),
                                                 ("per_timepoint", False), ("per_timepoint", True)])
def test_every_layout_round_trips(tmp_path, truth, layout, shuffle):
    write_series(truth, tmp_path, layout=layout, shuffle=shuffle, seed=11)
    loaded = load_ctp(tmp_path)
    _same(loaded, truth)
    assert loaded.study_instance_uid == truth.study_instance_uid
    assert loaded.source["layout"] == ("single_series" if layout == "single" else "series_per_timepoint")
    assert loaded.source["images_used"] == T * Z
    if layout == "per_timepoint":
        assert len(loaded.source["series_instance_uids"]) == T
        assert loaded.series_instance_uid == loaded.source["series_instance_uids"][0]
    else:
        assert loaded.series_instance_uid == truth.series_instance_uid


@pytest.mark.parametrize("dt_s", [1.0, 1.3, 2.0])
def test_sampling_interval_is_recovered(tmp_path, dt_s):
    truth = _series(dt_s)
    write_series(truth, tmp_path, shuffle=True)
    loaded = load_ctp(tmp_path)
    _same(loaded, truth)
    sampling = loaded.source["sampling"]
    assert sampling["median_dt_s"] == pytest.approx(dt_s, abs=1e-4) and sampling["regular"]


def test_oblique_orientation_and_descending_slices(tmp_path):
    angle = np.deg2rad(20)
    rot = np.array([[1, 0, 0], [0, np.cos(angle), -np.sin(angle)], [0, np.sin(angle), np.cos(angle)]])
    affine = np.eye(4)
    affine[:3, :3] = rot @ np.diag([0.8, 0.9, -5.0])  # slices written from top to bottom
    affine[:3, 3] = [-10, 20, 40]
    truth = _series(affine=affine)
    write_series(truth, tmp_path, shuffle=True)
    loaded = load_ctp(tmp_path)
    # The adapter orders slices along the slice normal; the same voxels must map to the same place.
    flipped = truth.hu[:, ::-1]
    assert np.abs(loaded.hu - flipped).max() <= 0.501
    for z in range(Z):
        src = truth.affine @ [3, 5, Z - 1 - z, 1]
        assert np.allclose(loaded.affine @ [3, 5, z, 1], src, atol=1e-3)
    assert loaded.spacing_mm == pytest.approx((5.0, 0.9, 0.8), abs=1e-4)


def test_junk_files_and_nested_folders_are_skipped(tmp_path, truth):
    write_series(truth, tmp_path / "a" / "b", layout="per_timepoint")
    (tmp_path / "README.txt").write_text("not dicom")
    (tmp_path / "a" / "notes.json").write_text("{}")
    (tmp_path / "a" / "blob.bin").write_bytes(bytes(range(256)) * 4)
    (tmp_path / "a" / "empty").write_bytes(b"")
    (tmp_path / ".hidden.dcm").write_bytes(b"\x00" * 200)
    (tmp_path / "a" / "fake.dcm").write_bytes(b"\x00" * 128 + b"DICM" + b"\xff" * 7)  # no dataset in it
    loaded = load_ctp(tmp_path)
    _same(loaded, truth)
    files = loaded.source["files"]
    assert (files["not_dicom"], files["no_pixels"], files["unreadable"]) == (4, 1, 0)
    assert files["files"] == T * Z + 5


def test_a_truncated_image_is_skipped_and_named_in_the_refusal(tmp_path, truth):
    paths = write_series(truth, tmp_path)
    paths[9].write_bytes(paths[9].read_bytes()[:-100])
    message = _refusal(tmp_path)
    assert "different number of time points" in message and "1 unreadable or truncated files" in message


def test_duplicate_files_are_ignored(tmp_path, truth):
    paths = write_series(truth, tmp_path / "s")
    shutil.copy(paths[3], tmp_path / "copy_of_one.dcm")
    loaded = load_ctp(tmp_path)
    _same(loaded, truth)
    assert loaded.source["files"]["duplicates"] == 1


def test_ctp_is_found_next_to_other_series(tmp_path, truth):
    write_series(truth, tmp_path / "ctp", shuffle=True)
    write_volume(np.zeros((12, 32, 32), np.float32), tmp_path / "ncct", spacing_mm=(5.0, 1.0, 1.0),
                 study_instance_uid=truth.study_instance_uid)
    write_xray(tmp_path / "xray", 32, 32)
    loaded = load_ctp(tmp_path)
    _same(loaded, truth)
    assert [o["kind"] for o in loaded.source["other_series"]] == ["single_phase"]


@pytest.mark.parametrize("syntax", ["rle", "jpeg-ls", "j2k-lossless"])
def test_compressed_transfer_syntaxes_decode(tmp_path, syntax):
    assert syntax in available_syntaxes(), f"no {syntax} encoder: pylibjpeg-openjpeg and pyjpegls are core dependencies"
    truth = _series(nt=MIN_TIME_POINTS, nz=2, ny=64, nx=64)  # OpenJPEG needs at least 32 px a side
    plain = write_series(truth, tmp_path / "plain", shuffle=True)
    compress_series(plain, tmp_path / "packed", syntax)
    assert pydicom.dcmread(next((tmp_path / "packed").iterdir())).file_meta.TransferSyntaxUID.is_compressed
    _same(load_ctp(tmp_path / "packed"), truth)


def test_implicit_vr_and_12_bit_unsigned_pixels(tmp_path):
    """Unsigned 12-bit data with junk in the unused high bits, implicit VR: same HU as pydicom's decode."""
    truth = _series(nt=MIN_TIME_POINTS, nz=2)
    truth = PerfusionSeries(hu=np.clip(truth.hu, -1024, 3000), times_s=truth.times_s, spacing_mm=truth.spacing_mm,
                            affine=truth.affine)
    for path in write_series(truth, tmp_path):
        ds = pydicom.dcmread(path)
        stored = (np.rint(truth.hu.reshape(-1, Y, X)[ds.InstanceNumber - 1]) + 1024).astype(np.uint16)
        ds.PixelRepresentation, ds.BitsStored, ds.HighBit = 0, 12, 11
        ds.PixelData = (stored | np.uint16(0xA000)).tobytes()
        ds.file_meta.TransferSyntaxUID = pydicom.uid.ImplicitVRLittleEndian
        ds.save_as(path, implicit_vr=True, little_endian=True, enforce_file_format=True)
    header = read_header(next(tmp_path.iterdir()))
    assert header.transfer_syntax == pydicom.uid.ImplicitVRLittleEndian and header.bits_stored == 12
    loaded = load_ctp(tmp_path)
    _same(loaded, truth)
    reference = pydicom.dcmread(sorted(tmp_path.iterdir())[0])
    assert np.array_equal(loaded.hu[0, 0], reference.pixel_array.astype(np.float32) - 1024)


# --------------------------------------------------------------------------- refusals
def _refusal(folder) -> str:
    with pytest.raises(NotCTPError) as info:
        load_ctp(folder)
    assert info.value.exit_code == 2
    return str(info.value)


def test_refuses_a_missing_or_empty_folder(tmp_path):
    assert "not a folder" in _refusal(tmp_path / "nope")
    (tmp_path / "junk.txt").write_text("x")
    assert "no DICOM images" in _refusal(tmp_path)


def test_refuses_non_ct(tmp_path):
    write_xray(tmp_path, 32, 32, modality="DX")
    assert "no CT images" in _refusal(tmp_path)


def test_refuses_a_single_phase(tmp_path):
    write_volume(np.zeros((20, 32, 32), np.float32), tmp_path, spacing_mm=(5.0, 1.0, 1.0))
    message = _refusal(tmp_path)
    assert "single phase" in message and "20 images" in message


def test_refuses_too_few_time_points(tmp_path):
    write_series(_series(nt=10), tmp_path)
    assert "only 10 time points; at least 15" in _refusal(tmp_path)


def test_refuses_coarse_sampling(tmp_path):
    write_series(_series(5.0), tmp_path)
    assert "too coarse" in _refusal(tmp_path)


def test_refuses_a_missing_image(tmp_path, truth):
    paths = write_series(truth, tmp_path)
    paths[7].unlink()
    message = _refusal(tmp_path)
    assert "inconsistent geometry" in message and "different number of time points" in message


def test_refuses_a_gap_between_slices(tmp_path, truth):
    for path in write_series(truth, tmp_path):
        if path.name.endswith("_0002.dcm"):
            path.unlink()
    message = _refusal(tmp_path)
    assert "inconsistent geometry" in message and "slice spacing varies" in message


def test_refuses_mixed_image_sizes(tmp_path, truth):
    paths = write_series(truth, tmp_path)
    ds = pydicom.dcmread(paths[0])
    ds.Rows, ds.Columns = 10, 12
    ds.PixelData = np.zeros((10, 12), np.int16).tobytes()
    ds.save_as(paths[0], enforce_file_format=True)
    assert "different sizes" in _refusal(tmp_path)


def test_refuses_identical_acquisition_times(tmp_path, truth):
    for path in write_series(truth, tmp_path):
        ds = pydicom.dcmread(path)
        ds.AcquisitionTime = ds.ContentTime = "101010"
        ds.save_as(path, enforce_file_format=True)
    assert "same acquisition time" in _refusal(tmp_path)


def test_two_reconstructions_of_one_head_ct_are_not_a_perfusion(tmp_path):
    hu = np.zeros((20, 32, 32), np.float32)
    for kernel in ("soft", "bone"):
        write_volume(hu, tmp_path / kernel, spacing_mm=(5.0, 1.0, 1.0), study_instance_uid="1.2.3",
                     series_instance_uid=f"1.2.3.{len(kernel)}")
    assert "single phase" in _refusal(tmp_path)


def _rewrite(paths, edit) -> None:
    for path in paths:
        ds = pydicom.dcmread(path)
        edit(ds)
        ds.save_as(path, enforce_file_format=True)


def test_content_time_is_used_when_acquisition_time_is_constant(tmp_path, truth):
    paths = write_series(truth, tmp_path, shuffle=True)
    _rewrite(paths, lambda ds: setattr(ds, "AcquisitionTime", "100000"))
    loaded = load_ctp(tmp_path)
    _same(loaded, truth)
    assert loaded.source["time_source"] == "content"


def test_acquisition_datetime_across_midnight(tmp_path, truth):
    paths = write_series(truth, tmp_path, shuffle=True)

    def edit(ds):
        t = float(ds.AcquisitionTime[4:]) + 60 * int(ds.AcquisitionTime[2:4])  # seconds after 10:00
        stamp = 86_400 - 10 + t  # from 23:59:50 on
        day = 14 + int(stamp // 86_400)
        rest = stamp % 86_400
        ds.AcquisitionDateTime = f"202603{day:02d}{int(rest // 3600):02d}{int(rest % 3600 // 60):02d}{rest % 60:09.6f}"
        del ds.AcquisitionTime, ds.ContentTime

    _rewrite(paths, edit)
    loaded = load_ctp(tmp_path)
    _same(loaded, truth)
    assert loaded.source["time_source"] == "acquisition"


def test_original_series_is_preferred_over_a_derived_one(tmp_path, truth):
    write_series(truth, tmp_path / "orig", shuffle=True)
    mip = _series(nt=T + 4, seed=5)  # more images, but a derived reformat
    write_series(PerfusionSeries(hu=mip.hu, times_s=mip.times_s, spacing_mm=mip.spacing_mm, affine=mip.affine,
                                 study_instance_uid=truth.study_instance_uid, series_instance_uid="1.2.3.99"),
                 tmp_path / "mip", image_type=("DERIVED", "SECONDARY", "AXIAL", "MIP"))
    loaded = load_ctp(tmp_path)
    _same(loaded, truth)
    assert [o["series_instance_uid"] for o in loaded.source["other_series"]] == ["1.2.3.99"]


def test_refuses_multiframe_enhanced_ct(tmp_path, truth):
    paths = write_series(_series(nz=1), tmp_path)

    def edit(ds):
        ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2.1"
        ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
        ds.NumberOfFrames = 2
        ds.PixelData = ds.PixelData * 2

    _rewrite(paths, edit)
    assert "multi-frame" in _refusal(tmp_path)


def test_refuses_perfusions_of_two_studies(tmp_path, truth):
    write_series(truth, tmp_path / "one")
    other = _series(seed=3)
    write_series(PerfusionSeries(hu=other.hu, times_s=other.times_s, spacing_mm=other.spacing_mm,
                                 affine=other.affine, study_instance_uid="1.2.3.7", series_instance_uid="1.2.3.7.1"),
                 tmp_path / "two")
    assert "2 different studies" in _refusal(tmp_path)
