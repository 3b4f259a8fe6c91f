"""The phantom DICOM writer: valid CT images, scanner-like headers, every vendor layout."""

from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pydicom
import pytest
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian

from sample_dicom.bundled import SAMPLE_STUDIES, ensure_sample_studies
from sample_dicom.cli import main as phantom_main
from sample_dicom.writer import uid_from, write_phantom, write_series, write_volume
from triage.series import PerfusionSeries

T, Z, Y, X = 4, 3, 24, 20


def _series(dt_s: float = 1.5, affine: np.ndarray | None = None) -> PerfusionSeries:
    rng = np.random.default_rng(7)
    hu = rng.uniform(-1000, 1500, size=(T, Z, Y, X)).astype(np.float32)
    if affine is None:
        affine = np.array([[0.5, 0, 0, -5.0], [0, 0.6, 0, -7.0], [0, 0, 4.0, 12.0], [0, 0, 0, 1]])
    return PerfusionSeries(hu=hu, times_s=np.arange(T) * dt_s, spacing_mm=(4.0, 0.6, 0.5), affine=affine,
                           study_instance_uid="1.2.3.4", series_instance_uid="1.2.3.4.5")


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    series = _series()
    return series, write_series(series, tmp_path_factory.mktemp("single"))


def test_single_layout_is_valid_ct_with_scanner_headers(single):
    series, paths = single
    assert len(paths) == T * Z and all(p.is_file() for p in paths)
    ds0 = pydicom.dcmread(paths[0])
    assert ds0.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert ds0.file_meta.MediaStorageSOPInstanceUID == ds0.SOPInstanceUID
    assert ds0.SOPClassUID == CTImageStorage and ds0.Modality == "CT"
    assert ds0.BodyPartExamined == "HEAD" and ds0.Manufacturer
    assert list(ds0.ImageType) == ["ORIGINAL", "PRIMARY", "AXIAL", "CT_PERFUSION"]
    assert ds0.StudyDescription and ds0.SeriesDescription and ds0.FrameOfReferenceUID
    assert ds0.StudyInstanceUID == "1.2.3.4" and ds0.SeriesInstanceUID == "1.2.3.4.5"
    assert [float(v) for v in ds0.PixelSpacing] == [0.6, 0.5]  # row spacing (dy), column spacing (dx)
    assert [float(v) for v in ds0.ImageOrientationPatient] == [1, 0, 0, 0, 1, 0]
    assert float(ds0.SliceThickness) == 4.0
    sops = set()
    for i, path in enumerate(paths):
        t, z = divmod(i, Z)
        ds = pydicom.dcmread(path)
        sops.add(ds.SOPInstanceUID)
        assert (ds.AcquisitionNumber, ds.TemporalPositionIdentifier, ds.InstanceNumber) == (t + 1, t + 1, i + 1)
        assert ds.SeriesInstanceUID == "1.2.3.4.5"
        assert np.allclose([float(v) for v in ds.ImagePositionPatient], series.affine[:3, 3] + z * series.affine[:3, 2])
        seconds = float(ds.AcquisitionTime[4:]) + 60 * int(ds.AcquisitionTime[2:4])
        assert seconds == pytest.approx(1.5 * t)
        assert ds.ContentTime == ds.AcquisitionTime
        hu = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
        assert np.abs(hu - series.hu[t, z]).max() <= 0.5
    assert len(sops) == T * Z


def test_spliced_header_equals_pydicom_encoding(single):
    """The fast per-file encoder writes exactly the bytes pydicom itself would."""
    _, paths = single
    raw = paths[5].read_bytes()
    ds = pydicom.dcmread(paths[5])
    meta_end = 132 + 12 + int.from_bytes(raw[140:144], "little")
    pixel_start = raw.rindex(b"\xe0\x7f\x10\x00OW")
    del ds.PixelData
    fp = DicomBytesIO()
    fp.is_little_endian, fp.is_implicit_VR = True, False
    write_dataset(fp, ds)
    assert raw[meta_end:pixel_start] == fp.getvalue()


@pytest.mark.skipif(shutil.which("dciodvfy") is None, reason="dicom3tools dciodvfy not installed")
def test_dciodvfy_finds_no_errors(single):
    _, paths = single
    proc = subprocess.run(["dciodvfy", str(paths[0])], capture_output=True, text=True, timeout=60)
    report = proc.stdout + proc.stderr
    assert "CTImage" in report
    assert not [line for line in report.splitlines() if line.startswith("Error")], report


def test_per_timepoint_layout_is_one_series_per_time_point(tmp_path):
    paths = write_series(_series(), tmp_path, layout="per_timepoint")
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"T{t:03d}" for t in range(T)]
    headers = [pydicom.dcmread(p, stop_before_pixels=True) for p in paths]
    by_series = {}
    for ds in headers:
        by_series.setdefault(ds.SeriesInstanceUID, []).append(ds)
    assert len(by_series) == T
    assert sorted(int(items[0].SeriesNumber) for items in by_series.values()) == list(range(1, T + 1))
    assert all(len(items) == Z for items in by_series.values())
    assert len({ds.FrameOfReferenceUID for ds in headers}) == 1
    assert len({ds.StudyInstanceUID for ds in headers}) == 1


def test_shuffle_gives_random_flat_names_deterministically(tmp_path):
    a = write_series(_series(), tmp_path / "a", layout="per_timepoint", shuffle=True, seed=3)
    b = write_series(_series(), tmp_path / "b", layout="per_timepoint", shuffle=True, seed=3)
    assert [p.name for p in a] == [p.name for p in b]
    assert all(p.parent == tmp_path / "a" for p in a)
    assert not any(p.name.startswith("IM") for p in a)
    assert sorted(p.name for p in a) != [p.name for p in a]  # name order says nothing about time or slice
    assert all(x.read_bytes() == y.read_bytes() for x, y in zip(a, b))


def test_identity_affine_falls_back_to_spacing(tmp_path):
    paths = write_series(_series(affine=np.eye(4)), tmp_path)
    ds = pydicom.dcmread(paths[1], stop_before_pixels=True)
    assert [float(v) for v in ds.PixelSpacing] == [0.6, 0.5]
    assert float(ds.ImagePositionPatient[2]) - float(pydicom.dcmread(paths[0]).ImagePositionPatient[2]) == 4.0


def test_write_volume_is_a_single_phase(tmp_path):
    hu = np.zeros((5, 16, 16), np.float32)
    paths = write_volume(hu, tmp_path, spacing_mm=(5.0, 1.0, 1.0), seed=4)
    headers = [pydicom.dcmread(p, stop_before_pixels=True) for p in paths]
    assert len(paths) == 5 and len({ds.AcquisitionTime for ds in headers}) == 1
    assert "CT_PERFUSION" not in headers[0].ImageType
    assert headers[0].StudyInstanceUID == uid_from("ncct-study", 4)
    assert len(uid_from("x" * 100)) <= 50


def test_write_phantom_writes_truth_json(tmp_path):
    class Phantom:
        series = _series()
        truth = {"core_ml": np.float64(12.5), "tmax6_ml": 40.0, "nan": float("nan"), "arr": np.arange(3)}

    out = write_phantom(Phantom(), tmp_path, layout="single", shuffle=True)
    truth = json.loads((out / "truth.json").read_text())
    assert truth["core_ml"] == 12.5 and truth["nan"] is None and truth["arr"] == [0, 1, 2]
    assert truth["dicom"]["n_files"] == T * Z and truth["dicom"]["shuffled"] is True
    assert truth["dicom"]["times_s"] == [0.0, 1.5, 3.0, 4.5]


def test_phantom_cli_writes_dicom_and_truth(tmp_path, capsys):
    out = tmp_path / "ctp"
    rc = phantom_main([str(out), "--size", "64", "--slices", "4", "--times", "16", "--dt", "2", "--noise", "5",
                       "--lesion", "mca_right", "--layout", "per_timepoint", "--shuffle", "--truth-maps"])
    assert rc == 0
    assert "wrote 64 DICOM images" in capsys.readouterr().out
    truth = json.loads((out / "truth.json").read_text())
    assert truth["parameters"]["lesion"] == "mca_right" and truth["core_ml"] > 0
    assert truth["dicom"]["layout"] == "per_timepoint"
    assert len([p for p in out.iterdir() if p.suffix not in (".json", ".npz")]) == 64
    with np.load(out / "truth_maps.npz") as maps:
        assert maps["core"].shape == (4, 64, 64)
    ds = pydicom.dcmread(next(p for p in out.iterdir() if p.suffix == ""))
    assert float(ds.PixelSpacing[0]) == pytest.approx(230.4 / 64)


def test_phantom_cli_refuses_a_non_empty_folder_and_bad_numbers(tmp_path, capsys):
    (tmp_path / "x.txt").write_text("keep me")
    assert phantom_main([str(tmp_path)]) == 2
    assert "not an empty folder" in capsys.readouterr().err
    assert phantom_main([str(tmp_path / "new"), "--times", "1"]) == 2
    assert "--times should be at least 2" in capsys.readouterr().err
    assert phantom_main([str(tmp_path / "new"), "--no-aif", "--weak-aif"]) == 2


def test_phantom_cli_tiles(tmp_path, capsys):
    rc = phantom_main([str(tmp_path / "tiles"), "--tiles", "--times", "16", "--seed", "2"])
    assert rc == 0
    truth = json.loads((tmp_path / "tiles" / "truth.json").read_text())
    assert truth["phantom"] == "tiles" and truth["dicom"]["shape_tzyx"][0] == 16


def test_bundled_samples_are_deterministic_and_generated_once(tmp_path):
    first = ensure_sample_studies(tmp_path / "a")
    assert [p.name for p in first] == list(SAMPLE_STUDIES)
    ctp, ncct = first
    assert json.loads((tmp_path / "a" / "ctp_left_mca.truth.json").read_text())["core_ml"] > 0
    for folder in first:  # DICOM files only: a sender can push the folder as it is
        assert all(p.suffix == ".dcm" and not p.name.startswith(".") for p in folder.rglob("*"))
    assert len(list(ncct.glob("*.dcm"))) == 20 and len(list(ctp.glob("*.dcm"))) == 240
    stamp = {p: p.stat().st_mtime_ns for p in ctp.iterdir()}
    assert ensure_sample_studies(tmp_path / "a") == first
    assert {p: p.stat().st_mtime_ns for p in ctp.iterdir()} == stamp
    again = ensure_sample_studies(tmp_path / "b")
    for name in ("IM001_0001.dcm", "IM030_0008.dcm"):
        assert (again[0] / name).read_bytes() == (ctp / name).read_bytes()
    (tmp_path / "a" / ".ncct_head.complete").unlink()  # an interrupted generation is redone
    assert ensure_sample_studies(tmp_path / "a")[1] == ncct
    assert (tmp_path / "a" / ".ncct_head.complete").is_file() and len(list(ncct.glob("*.dcm"))) == 20
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == [
        ".ctp_left_mca.complete", ".ncct_head.complete", "ctp_left_mca", "ctp_left_mca.truth.json", "ncct_head"]


def test_phantom_cli_random(tmp_path, capsys):
    out = tmp_path / "rand"
    assert phantom_main([str(out), "--random", "--seed", "1003", "--slices", "3", "--size", "256"]) == 0
    truth = json.loads((out / "truth.json").read_text())
    p = truth["parameters"]
    assert p["seed"] == 1003 and p["matrix"] == 256 and p["slices"] == 3
    assert p["residue"]["family"] in ("exp", "box", "gamma") and 25 <= p["n_times"] <= 60
    assert truth["dicom"]["n_files"] == 3 * p["n_times"]
    assert phantom_main([str(tmp_path / "x"), "--random", "--tiles"]) == 2
    assert "choose one" in capsys.readouterr().err
    assert phantom_main([str(tmp_path / "y"), "--random", "--size", "300"]) == 2
