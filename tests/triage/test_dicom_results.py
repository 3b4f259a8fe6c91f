"""Result objects (SEG, TID 1500 SR, SC) built from real phantom analyses, checked three ways:
``dciodvfy`` (dicom3tools), read back with highdicom, and stored into a real Orthanc with DCMTK storescu.
"""

from __future__ import annotations

import ast
import dataclasses
import datetime as dt
import io
import shutil
import subprocess
import sys
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest

from sample_dicom.cli import main as phantom_main
from tests.peers import OrthancPeer, have_dcmtk, have_orthanc, run_storescu, store_results
from triage import analyze
from triage.dicom_adapter import load_ctp
from triage.dicom_results import AUTOMATED_LABEL, ResultObjectError, build_result_objects
from triage.dicom_results.codes import LOCAL, SCT
from triage.report import warning_lines

ROOT = Path(__file__).resolve().parents[2]
CREATED = dt.datetime(2026, 3, 14, 10, 30, 0)
SEG_UID = pydicom.uid.SegmentationStorage
SR_UID = pydicom.uid.ComprehensiveSRStorage
SC_UID = pydicom.uid.SecondaryCaptureImageStorage
DCIODVFY = "/usr/bin/dciodvfy"


def _case(tmp_path_factory, name: str, *extra: str) -> dict:
    folder = tmp_path_factory.mktemp(name) / "ctp"
    assert phantom_main([str(folder), "--size", "128", "--slices", "8", "--times", "30", *extra]) == 0
    series = load_ctp(folder)
    result = analyze(series)
    objects = build_result_objects(result, folder, series=series, created=CREATED)
    out = folder.parent / "results"
    out.mkdir()
    paths = []
    for i, ds in enumerate(objects):
        paths.append(out / f"{i}_{ds.Modality}.dcm")
        ds.save_as(paths[-1], enforce_file_format=True)
    sources = [pydicom.dcmread(p, stop_before_pixels=True) for p in sorted(folder.rglob("*.dcm"))]
    return {"folder": folder, "series": series, "result": result, "objects": objects, "paths": paths,
            "sources": sources}


@pytest.fixture(scope="module")
def ok(tmp_path_factory):
    case = _case(tmp_path_factory, "ok", "--seed", "3", "--noise", "8")
    assert case["result"].status == "ok" and case["result"].core_ml > 5 and case["result"].tmax6_ml > 20
    return case


@pytest.fixture(scope="module")
def failed(tmp_path_factory):
    case = _case(tmp_path_factory, "failed", "--seed", "5", "--no-aif")
    assert case["result"].status == "failed"
    return case


def _first_timepoint(sources: list[pydicom.Dataset], series_uid: str) -> list[str]:
    """SOP Instance UIDs of the earliest image at each slice position, ordered by z (independent of the code)."""
    by_z: dict[float, pydicom.Dataset] = {}
    for ds in sources:
        if ds.SeriesInstanceUID != series_uid:
            continue
        z = round(float(ds.ImagePositionPatient[2]), 2)
        if z not in by_z or float(ds.AcquisitionTime) < float(by_z[z].AcquisitionTime):
            by_z[z] = ds
    return [by_z[z].SOPInstanceUID for z in sorted(by_z)]


# --------------------------------------------------------------------------- (1) dciodvfy
def _dciodvfy(path: Path) -> list[str]:
    assert Path(DCIODVFY).exists(), "dciodvfy is missing: .ci/run installs Debian dicom3tools"
    proc = subprocess.run([DCIODVFY, str(path)], capture_output=True, text=True, timeout=60)
    return (proc.stdout + proc.stderr).splitlines()


@pytest.mark.parametrize("case_name", ["ok", "failed"])
def test_dciodvfy_finds_no_errors(case_name, request):
    case = request.getfixturevalue(case_name)
    expected = {SEG_UID: "Segmentation", SR_UID: "ComprehensiveSR", SC_UID: "SCImage"}
    for ds, path in zip(case["objects"], case["paths"]):
        lines = _dciodvfy(path)
        assert lines and lines[0].strip() == expected[ds.SOPClassUID], lines[:3]  # the IOD it checked
        errors = [line for line in lines if line.startswith("Error")]
        assert not errors, f"{path.name}: {errors}"
        # the only warnings left are about the documented private coding scheme
        assert all("99TELERAD" in line for line in lines if line.startswith("Warning")), lines


# --------------------------------------------------------------------------- common labelling
def test_every_object_is_a_labelled_new_series_in_the_source_study(ok, failed):
    for case, kinds in ((ok, [SEG_UID, SR_UID, SC_UID, SC_UID]), (failed, [SR_UID, SC_UID, SC_UID])):
        objects, result = case["objects"], case["result"]
        assert [ds.SOPClassUID for ds in objects] == kinds
        source_uids = {u for ds in case["sources"] for u in (ds.SeriesInstanceUID, ds.SOPInstanceUID)}
        source_patient = case["sources"][0].PatientID
        for ds in objects:
            assert ds.StudyInstanceUID == result.study_instance_uid
            assert ds.PatientID == source_patient
            assert ds.SeriesInstanceUID not in source_uids and ds.SOPInstanceUID not in source_uids
            assert ds.SeriesDescription.startswith(AUTOMATED_LABEL)
            assert ds.Manufacturer == "telerad"
            assert ds.ManufacturerModelName == result.algorithm["name"]
            assert f"{result.algorithm['name']} {result.algorithm['version']}" in list(ds.SoftwareVersions)
        assert len({ds.SeriesInstanceUID for ds in objects}) == len(set(kinds))  # one series per kind


def test_uids_are_reproducible_and_follow_the_content(ok):
    again = build_result_objects(ok["result"], ok["folder"], series=ok["series"], created=CREATED)
    assert [d.SOPInstanceUID for d in again] == [d.SOPInstanceUID for d in ok["objects"]]
    for a, b in zip(again, ok["objects"]):  # byte-identical files with the same creation time
        buf_a, buf_b = io.BytesIO(), io.BytesIO()
        a.save_as(buf_a, enforce_file_format=True)
        b.save_as(buf_b, enforce_file_format=True)
        assert buf_a.getvalue() == buf_b.getvalue(), a.Modality
    changed = dataclasses.replace(ok["result"], core_ml=ok["result"].core_ml + 1.0)
    other = build_result_objects(changed, ok["folder"], series=ok["series"], created=CREATED)
    assert not {d.SOPInstanceUID for d in other} & {d.SOPInstanceUID for d in ok["objects"]}


# --------------------------------------------------------------------------- (2) read back: SEG
def test_seg_reads_back_with_segments_and_masks_of_the_result(ok):
    result, series = ok["result"], ok["series"]
    seg = hd.seg.segread(ok["paths"][0])
    assert seg.segmentation_type == hd.seg.SegmentationTypeValues.BINARY
    labels = [seg.get_segment_description(n).SegmentLabel for n in (1, 2)]
    assert labels == ["Ischemic core (rCBF < 30%)", "Tmax > 6 s hypoperfusion"]
    assert seg.segmented_property_types == [SCT.INFARCT, SCT.ISCHEMIA]
    assert seg.segmented_property_categories == [SCT.MORPHOLOGICALLY_ABNORMAL_STRUCTURE]  # unique values
    for n in (1, 2):
        desc = seg.get_segment_description(n)
        algo = desc.SegmentationAlgorithmIdentificationSequence[0]
        assert desc.SegmentAlgorithmType == "AUTOMATIC"
        assert (algo.AlgorithmName, algo.AlgorithmVersion) == (result.algorithm["name"], result.algorithm["version"])
    # references: the first time point of the analysed series, one image per slice, in z order
    reference = _first_timepoint(ok["sources"], result.series_instance_uid)
    assert len(reference) == series.hu.shape[1]
    refs = seg.ReferencedSeriesSequence
    assert [r.SeriesInstanceUID for r in refs] == [result.series_instance_uid]
    assert {i.ReferencedSOPInstanceUID for i in refs[0].ReferencedInstanceSequence} == set(reference)
    pixels = seg.get_pixels_by_source_instance(source_sop_instance_uids=reference, segment_numbers=[1, 2],
                                               assert_missing_frames_are_empty=True)
    assert pixels.shape == (*result.maps["core"].shape, 2)
    assert np.array_equal(pixels[..., 0].astype(bool), result.maps["core"])
    assert np.array_equal(pixels[..., 1].astype(bool), result.maps["tmax6"])
    assert pixels[..., 0].sum() * series.voxel_ml == pytest.approx(result.core_ml, rel=1e-9)
    assert pixels[..., 1].sum() * series.voxel_ml == pytest.approx(result.tmax6_ml, rel=1e-9)


def test_seg_references_the_first_time_point_in_a_shuffled_per_timepoint_layout(tmp_path):
    folder = tmp_path / "ctp"
    assert phantom_main([str(folder), "--size", "64", "--slices", "4", "--times", "20", "--seed", "9",
                         "--layout", "per_timepoint", "--shuffle"]) == 0
    series = load_ctp(folder)
    result = analyze(series)
    assert result.ok
    seg = build_result_objects(result, folder, series=series)[0]
    sources = [pydicom.dcmread(p, stop_before_pixels=True) for p in folder.rglob("*")
               if p.is_file() and p.suffix != ".json"]
    assert len({ds.SeriesInstanceUID for ds in sources}) == 20  # one series per time point
    reference = _first_timepoint(sources, result.series_instance_uid)
    refs = seg.ReferencedSeriesSequence
    assert [r.SeriesInstanceUID for r in refs] == [result.series_instance_uid]
    assert {i.ReferencedSOPInstanceUID for i in refs[0].ReferencedInstanceSequence} <= set(reference)
    seg = hd.seg.Segmentation.from_dataset(seg)
    pixels = seg.get_pixels_by_source_instance(source_sop_instance_uids=reference, segment_numbers=[1, 2])
    assert np.array_equal(pixels[..., 1].astype(bool), result.maps["tmax6"])


# --------------------------------------------------------------------------- (2) read back: SR
def _evaluations(sr) -> dict[str, list]:
    root = sr.ContentSequence
    container = [i for i in root if i.ConceptNameCodeSequence[0].CodeValue == "C0034375"]
    assert len(container) == 1
    out: dict[str, list] = {}
    for item in container[0].ContentSequence:
        name = item.ConceptNameCodeSequence[0].CodeMeaning
        value = item.TextValue if item.ValueType == "TEXT" else item.ConceptCodeSequence[0].CodeValue
        out.setdefault(name, []).append(value)
    return out


def _num_items(items) -> list:
    found = []
    for item in items:
        if item.ValueType == "NUM":
            found.append(item)
        found += _num_items(item.get("ContentSequence", []))
    return found


def test_sr_reads_back_with_the_result_numbers(ok):
    result = ok["result"]
    sr = hd.sr.srread(ok["paths"][1])
    seg_uid = ok["objects"][0].SOPInstanceUID
    report = sr.content
    assert isinstance(report, hd.sr.MeasurementReport)
    assert report[0].ContentTemplateSequence[0].TemplateIdentifier == "1500"
    groups = report.get_volumetric_roi_measurement_groups()
    assert [g.tracking_identifier for g in groups] == ["Ischemic core (rCBF < 30%)", "Tmax > 6 s hypoperfusion"]
    for group, value, finding in ((groups[0], result.core_ml, SCT.INFARCT), (groups[1], result.tmax6_ml, SCT.ISCHEMIA)):
        assert group.finding_type == finding
        (m,) = group.get_measurements(name=SCT.VOLUME)
        assert m.value == pytest.approx(value, rel=1e-12)
        assert (m.unit.value, m.unit.scheme_designator) == ("mL", "UCUM")
    segment_refs = [g.referenced_segment[0].ReferencedSOPSequence[0] for g in groups]
    assert [(r.ReferencedSOPInstanceUID, r.ReferencedSegmentNumber) for r in segment_refs] == [(seg_uid, 1),
                                                                                                (seg_uid, 2)]
    image_groups = {g.tracking_identifier: g for g in report.get_image_measurement_groups()}
    assert set(image_groups) == {"Tmax > 10 s hypoperfusion", "Target mismatch"}
    (t10,) = image_groups["Tmax > 10 s hypoperfusion"].get_measurements(name=SCT.VOLUME)
    assert t10.value == pytest.approx(result.tmax10_ml, rel=1e-12)
    mismatch = image_groups["Target mismatch"]
    for concept, value, unit in ((LOCAL.MISMATCH_VOLUME, result.mismatch_ml, "mL"),
                                 (LOCAL.MISMATCH_RATIO, result.mismatch_ratio, "{ratio}"),
                                 (LOCAL.HYPOPERFUSION_INTENSITY_RATIO, result.hypoperfusion_intensity_ratio,
                                  "{ratio}")):
        (m,) = mismatch.get_measurements(name=concept)
        assert m.value == pytest.approx(value, rel=1e-12) and m.unit.value == unit
    defuse = [e for e in mismatch.get_qualitative_evaluations(name=LOCAL.DEFUSE3_PROFILE)]
    assert defuse[0].value == (SCT.YES if result.eligibility["defuse3"]["eligible"] else SCT.NO)
    # algorithm identification (TID 4019) in every group
    for g in [*groups, *image_groups.values()]:
        texts = {i.ConceptNameCodeSequence[0].CodeMeaning: i.TextValue for i in g[0].ContentSequence
                 if i.ValueType == "TEXT" and i.ConceptNameCodeSequence[0].CodeMeaning.startswith("Algorithm ")}
        assert texts["Algorithm Name"] == result.algorithm["name"]
        assert texts["Algorithm Version"] == result.algorithm["version"]
    ev = _evaluations(sr)
    assert ev["Automated analysis status"] == [LOCAL.ANALYSIS_COMPLETED.value]
    assert ev["Automated result reliable"] == [(SCT.YES if result.quality["reliable"] else SCT.NO).value]
    assert ev["Affected hemisphere"] == [SCT.LEFT.value]
    assert ev["Quality warning"] == warning_lines(result.to_json_dict()) and ev["Quality warning"]
    assert AUTOMATED_LABEL in ev["Disclaimer"][0]
    # evidence: every CT image of the perfusion (all time points) plus the SEG
    evidence = {i.ReferencedSOPInstanceUID for s in sr.CurrentRequestedProcedureEvidenceSequence
                for r in s.ReferencedSeriesSequence for i in r.ReferencedSOPSequence}
    assert evidence == {ds.SOPInstanceUID for ds in ok["sources"]} | {seg_uid}
    assert (sr.CompletionFlag, sr.VerificationFlag, sr.PreliminaryFlag) == ("COMPLETE", "UNVERIFIED", "PRELIMINARY")


def test_failed_triage_sr_says_why_and_invents_no_volume(failed):
    result = failed["result"]
    assert [ds.Modality for ds in failed["objects"]] == ["SR", "OT", "OT"]  # no masks, so no SEG
    sr = hd.sr.srread(failed["paths"][0])
    measurements = [i for i in sr.ContentSequence if i.ConceptNameCodeSequence[0].CodeMeaning == "Imaging Measurements"]
    assert len(measurements) == 1 and _num_items(measurements[0].ContentSequence) == []
    (group,) = sr.content.get_image_measurement_groups()
    assert [e.value for e in group.get_qualitative_evaluations(name=LOCAL.ANALYSIS_STATUS)] == [LOCAL.ANALYSIS_FAILED]
    ev = _evaluations(sr)
    assert ev["Automated analysis status"] == [LOCAL.ANALYSIS_FAILED.value]
    assert ev["Automated result reliable"] == [SCT.NO.value]
    fatal = [w for w in result.quality["warnings"] if w["severity"] == "fatal"]
    assert fatal and ev["Reason for analysis failure"] == [f"{w['code']}: {w['message']}" for w in fatal]
    assert any("failed" in note for note in ev["Note"])


# --------------------------------------------------------------------------- (2) read back: SC
def _overlay_counts(rgb: np.ndarray) -> tuple[int, int]:
    """Magenta and green pixels of the image tiles: the summary's bottom 2 rows of 256-px tiles (8 slices) or
    the key slice's top 512 rows, so that the legend swatches do not count."""
    rgb = rgb[-512:] if rgb.shape[1] == 1024 else rgb[:512]
    r, g, b = (rgb[..., i].astype(int) for i in range(3))
    magenta = (r > 150) & (b > 150) & (g < 100)
    green = (g > 120) & (r < 100) & (b < 100)
    return int(magenta.sum()), int(green.sum())


def test_sc_pages_are_rgb_with_overlays_and_burnt_in_text(ok, failed):
    ok_pages = [pydicom.dcmread(p) for p in ok["paths"][2:]]
    failed_pages = [pydicom.dcmread(p) for p in failed["paths"][1:]]
    for ds in ok_pages + failed_pages:
        assert (ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.BitsAllocated) == (3, "RGB", 8)
        assert ds.BurnedInAnnotation == "YES" and AUTOMATED_LABEL in ds.ImageComments
        assert ds.pixel_array.shape == (ds.Rows, ds.Columns, 3) and ds.Columns >= 512
    for ds in ok_pages:
        magenta, green = _overlay_counts(ds.pixel_array)
        assert magenta > 200 and green > 200  # core magenta and Tmax > 6 s green are drawn
    for ds in failed_pages:
        assert _overlay_counts(ds.pixel_array) == (0, 0)  # no overlay at all
    # the numbers are burnt in: a different core volume changes the text band, not the montage
    changed = dataclasses.replace(ok["result"], core_ml=ok["result"].core_ml + 10.0)
    other = build_result_objects(changed, ok["folder"], series=ok["series"], created=CREATED)[2].pixel_array
    summary = ok_pages[0].pixel_array
    assert other.shape == summary.shape
    rows = np.flatnonzero((other != summary).any(axis=(1, 2)))
    assert rows.size and rows.max() < summary.shape[0] - 2 * 256  # above the 2 rows of 256-pixel tiles


# --------------------------------------------------------------------------- clear errors
def test_mismatched_sources_are_refused_with_a_clear_message(ok, failed):
    with pytest.raises(ResultObjectError, match="no image of study"):
        build_result_objects(ok["result"], failed["folder"])
    with pytest.raises(ResultObjectError, match="no image of study"):
        build_result_objects(ok["result"], [])
    seven = [p for p in ok["folder"].rglob("*.dcm") if not p.name.endswith("_0008.dcm")]
    with pytest.raises(ResultObjectError, match=r"7 slice positions .* maps are \(8, 128, 128\)"):
        build_result_objects(ok["result"], seven)
    with pytest.raises(ResultObjectError, match="should be a TriageResult"):
        build_result_objects(ok["result"].to_json_dict(), ok["folder"])
    no_maps = dataclasses.replace(ok["result"], maps={})
    with pytest.raises(ResultObjectError, match="no 'core'/'tmax6' maps"):
        build_result_objects(no_maps, ok["folder"])


def test_dicom_results_imports_no_networking_or_web_code():
    banned = {"pynetdicom", "fastapi", "pacs_gateway", "viewer"}
    for path in (ROOT / "triage" / "dicom_results").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            assert not {n.split(".")[0] for n in names} & banned, (path.name, names)
    code = "import sys, triage.dicom_results; sys.exit(bool({'pynetdicom', 'fastapi'} & set(sys.modules)))"
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT).returncode == 0


# --------------------------------------------------------------------------- (3) a real Orthanc
def test_orthanc_accepts_every_object(ok, failed, tmp_path):
    assert have_orthanc() and have_dcmtk() and shutil.which("storescu"), "Orthanc and DCMTK are missing: .ci/run installs them"
    paths = [*ok["paths"], *failed["paths"]]
    with OrthancPeer(tmp_path / "orthanc") as orthanc:
        sent = run_storescu(paths, orthanc.host, orthanc.dicom_port, called_ae=orthanc.aet,
                            extra_args=["-R"], timeout=120)  # -R: propose the files' own SOP classes
        statuses = store_results(sent)
        assert [s for _, s in statuses] == ["Success"] * len(paths), sent.stderr[-2000:]
        stored = orthanc.sop_instance_uids()
        for case in (ok, failed):
            for ds in case["objects"]:
                assert ds.SOPInstanceUID in stored
                tags = orthanc.instance_tags(stored[ds.SOPInstanceUID])
                assert tags["StudyInstanceUID"] == case["result"].study_instance_uid
                assert tags["SeriesDescription"].startswith(AUTOMATED_LABEL)
        seg_file = orthanc.instance_file(stored[ok["objects"][0].SOPInstanceUID])
        assert pydicom.dcmread(io.BytesIO(seg_file)).SegmentSequence[1].SegmentLabel == "Tmax > 6 s hypoperfusion"


def test_lesion_free_brain_gives_empty_segments_and_no_invented_ratio(tmp_path):
    folder = tmp_path / "ctp"
    assert phantom_main([str(folder), "--size", "96", "--slices", "4", "--times", "20", "--seed", "2",
                         "--lesion", "none"]) == 0
    series = load_ctp(folder)
    result = analyze(series)
    assert result.ok and result.core_ml == 0 and result.mismatch_ratio is None
    seg, sr = build_result_objects(result, folder, series=series)[:2]
    for ds in (seg, sr):
        path = tmp_path / f"{ds.Modality}.dcm"
        ds.save_as(path, enforce_file_format=True)
        assert not [line for line in _dciodvfy(path) if line.startswith("Error")]
    reference = _first_timepoint([pydicom.dcmread(p, stop_before_pixels=True) for p in folder.glob("*.dcm")],
                                 result.series_instance_uid)
    pixels = hd.seg.Segmentation.from_dataset(seg).get_pixels_by_source_instance(
        source_sop_instance_uids=reference, segment_numbers=[1, 2])
    assert not pixels[..., 0].any() and pixels[..., 1].sum() * series.voxel_ml == pytest.approx(result.tmax6_ml)
    (mismatch,) = [g for g in hd.sr.ComprehensiveSR.from_dataset(sr).content.get_image_measurement_groups()
                   if g.tracking_identifier == "Target mismatch"]
    assert mismatch.get_measurements(name=LOCAL.MISMATCH_RATIO) == []
    assert any("core volume is 0 mL" in note for note in _evaluations(sr)["Note"])
