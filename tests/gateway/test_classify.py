"""Header-only series classification (pacs_gateway.classify) on vendor-style header dicts."""

from __future__ import annotations

import io
import random
import unicodedata
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from pacs_gateway import classify
from pacs_gateway.classify import (
    HEADER_KEYWORDS, KINDS, ClassifyRulesError, classify_series, classify_study, header_values,
    load_rules, summarize,
)
from telerad.errors import ConfigError

CT_SOP = "1.2.840.10008.5.1.4.1.1.2"
AXIAL = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]


def ct_series(
    n_positions: int = 24,
    n_times: int = 1,
    *,
    timing: str = "acq_time",
    spacing: float = 5.0,
    z0: float = -60.0,
    start_s: float = 36000.0,
    ipp_as_text: bool = False,
    jitter: float = 0.0,
    seed: int = 0,
    **fields,
) -> list[dict]:
    """Header dicts for ``n_times`` passes over ``n_positions`` table positions, shuffled.

    timing: "acq_time" (AcquisitionTime per pass), "acq_number" (AcquisitionNumber per pass,
    one AcquisitionTime for all, GE cine style), "tpi" (TemporalPositionIdentifier only),
    "content" (ContentTime only) or "none" (no time elements at all).
    """
    rng = random.Random(seed)
    out = []
    for t in range(n_times):
        for k in range(n_positions):
            z = z0 + k * spacing + (rng.uniform(-jitter, jitter) if jitter else 0.0)
            inst = {
                "Modality": "CT", "SOPClassUID": CT_SOP, "ImageOrientationPatient": list(AXIAL),
                "ImagePositionPatient": f"-125.0\\-125.0\\{z:.6f}" if ipp_as_text else [-125.0, -125.0, z],
                "SliceThickness": "5", "InstanceNumber": t * n_positions + k + 1,
                "ImageType": ["ORIGINAL", "PRIMARY", "AXIAL"],
            }
            stamp = start_s + 1.5 * t
            tm = f"{int(stamp // 3600):02d}{int(stamp % 3600 // 60):02d}{stamp % 60:09.6f}"
            if timing == "acq_time":
                inst.update(AcquisitionTime=tm, AcquisitionNumber=1)
            elif timing == "acq_number":
                inst.update(AcquisitionTime="100000", AcquisitionNumber=t + 1, ContentTime=tm)
            elif timing == "tpi":
                inst.update(TemporalPositionIdentifier=t + 1, NumberOfTemporalPositions=n_times)
            elif timing == "content":
                inst.update(ContentTime=tm)
            inst.update(fields)
            out.append(inst)
    rng.shuffle(out)
    return out


def jog_series(n_times: int = 20, **fields) -> list[dict]:
    """Philips 'JOG': the table shuttles between two 40 mm blocks, one block per time point."""
    out = []
    for t in range(n_times):
        block = ct_series(8, 1, z0=-40.0 if t % 2 == 0 else 0.0, start_s=36000.0 + 2 * t, seed=t, **fields)
        for inst in block:
            inst["AcquisitionNumber"] = t + 1
        out += block
    random.Random(7).shuffle(out)
    return out


def one(**fields) -> list[dict]:
    """A single-instance series."""
    return [fields]


def nfd(text: str) -> str:
    return unicodedata.normalize("NFD", text)


SERIES_CASES = {
    # --- CT perfusion, one series holding every time point -------------------------------
    "siemens_perfusion_4d": (ct_series(20, 30, SeriesDescription="Perfusion 4D 5.0 Hr36", BodyPartExamined="HEAD"), "ctp"),
    "siemens_vpct_text_ipp": (ct_series(16, 25, SeriesDescription="VPCT Neuro 5.0 Hr36", ipp_as_text=True), "ctp"),
    "ge_cine_acquisition_numbers": (ct_series(8, 40, timing="acq_number", SeriesDescription="Brain Perfusion"), "ctp"),
    "philips_jog": (jog_series(20, SeriesDescription="Brain Perfusion JOG"), "ctp"),
    "canon_4d_volumes": (ct_series(160, 19, spacing=0.5, SeriesDescription="4D 0.5 FC26", SliceThickness="0.5"), "ctp"),
    "structure_beats_plain_name": (ct_series(12, 20, SeriesDescription="Head 5mm"), "ctp"),
    "structure_without_any_name": (ct_series(12, 20), "ctp"),
    "shared_protocol_name_does_not_exclude": (
        ct_series(12, 20, SeriesDescription="Perfusion 5.0", ProtocolName="Stroke_RAPID_Monitoring"), "ctp"),
    "temporal_position_identifier_only": (ct_series(10, 30, timing="tpi", SeriesDescription="Dynamic"), "ctp"),
    "content_time_only": (ct_series(10, 30, timing="content"), "ctp"),
    "jittered_positions": (ct_series(10, 30, jitter=0.01, SeriesDescription="CTP"), "ctp"),
    "keyword_when_structure_unknown": (
        [{"Modality": "CT", "SeriesDescription": "NEURO PCT", "InstanceNumber": i} for i in range(50)], "ctp"),
    "enhanced_ct_temporal_positions": (
        [{"Modality": "CT", "TemporalPositionIdentifier": t, "NumberOfTemporalPositions": 30} for t in range(1, 31)],
        "ctp"),
    "canon_ce_perf_no_positions": (one(Modality="CT", SeriesDescription="CE-Perf Brain"), "ctp"),
    "chinese_perfusion_no_positions": (one(Modality="CT", SeriesDescription="头颅CT灌注"), "ctp"),
    # --- not CTP although it looks a little like it ------------------------------------------
    "perfusion_name_single_volume": (ct_series(24, 1, SeriesDescription="Perfusion", BodyPartExamined="HEAD"), "ncct_head"),
    "perfusion_protocol_on_plain_head": (
        ct_series(24, 1, SeriesDescription="Head 5mm", ProtocolName="NeuroVPCT_Stroke"), "ncct_head"),
    "perfusion_study_description_only": (
        ct_series(24, 1, SeriesDescription="Axial 5mm", StudyDescription="CT BRAIN PERFUSION"), "ncct_head"),
    "bolus_tracking_monitor": (
        ct_series(1, 12, SeriesDescription="Monitoring", BodyPartExamined="HEAD"), "other"),
    "bolus_tracking_unnamed_single_slice": (ct_series(1, 12, BodyPartExamined="HEAD"), "other"),
    "perfusion_cbf_map": (
        ct_series(20, 1, SeriesDescription="Perfusion CBF", ImageType="DERIVED\\SECONDARY\\AXIAL"), "other"),
    "rapid_summary_secondary_capture": (
        one(Modality="CT", SOPClassUID="1.2.840.10008.5.1.4.1.1.7", SeriesDescription="RAPID CTP Summary"), "other"),
    "two_kernels_three_phases": (ct_series(24, 3, SeriesDescription="Head 5mm"), "ncct_head"),
    "cardiac_multiphase": (ct_series(40, 10, SeriesDescription="Cardiac 0.75 Bv40 BestDiast", BodyPartExamined="HEART"), "other"),
    "ctp_repeats_without_any_time": (ct_series(10, 30, timing="none", SeriesDescription="Head"), "ctp"),
    "plain_volume_without_any_time": (ct_series(30, 1, timing="none", SeriesDescription="Head"), "ncct_head"),
    # --- plain head CT --------------------------------------------------------------------------
    "ncct_head_body_part": (ct_series(30, 1, SeriesDescription="Head 5mm Hr38", BodyPartExamined="HEAD"), "ncct_head"),
    "ncct_brain_no_body_part": (ct_series(30, 1, SeriesDescription="Brain routine"), "ncct_head"),
    "ncct_body_part_brain_only": (ct_series(30, 1, SeriesDescription="5mm axial", BodyPartExamined="BRAIN"), "ncct_head"),
    "ncct_chinese_plain": (ct_series(30, 1, SeriesDescription="头颅平扫 5mm"), "ncct_head"),
    "ncct_chinese_brain": (one(Modality="CT", SeriesDescription="颅脑 5mm"), "ncct_head"),
    "ncct_chinese_body_part": (one(Modality="CT", SeriesDescription="5mm", BodyPartExamined="头部"), "ncct_head"),
    "ncct_fullwidth_chinese": (one(Modality="CT", SeriesDescription="ＨＥＡＤ　５ｍｍ"), "ncct_head"),
    "ncct_vietnamese_nfc": (one(Modality="CT", SeriesDescription="Sọ não không cản quang"), "ncct_head"),
    "ncct_vietnamese_nfd": (one(Modality="CT", SeriesDescription=nfd("Sọ não")), "ncct_head"),
    "ncct_vietnamese_unaccented": (one(Modality="CT", SeriesDescription="SO NAO 5MM"), "ncct_head"),
    "ncct_from_study_description": (
        ct_series(30, 1, SeriesDescription="Axial 5mm", StudyDescription="CT HEAD W/O CONTRAST"), "ncct_head"),
    "contrast_head_thick_is_not_ncct": (
        ct_series(30, 1, SeriesDescription="Head C+ 5mm", BodyPartExamined="HEAD"), "other"),
    "head_localizer": (one(Modality="CT", SeriesDescription="Topogram 0.6 T20s", BodyPartExamined="HEAD",
                           ImageType="ORIGINAL\\PRIMARY\\LOCALIZER"), "other"),
    "sinus_ct": (ct_series(30, 1, SeriesDescription="Sinus 1.0 Hr60", BodyPartExamined="HEAD"), "other"),
    # --- CT angiography ---------------------------------------------------------------------------
    "cta_head": (ct_series(200, 1, spacing=0.625, SeriesDescription="CTA Head 0.625", SliceThickness="0.625"), "cta_head"),
    "cta_circle_of_willis": (one(Modality="CT", SeriesDescription="Circle_of_Willis 0.75"), "cta_head"),
    "cta_cow_abbreviation": (one(Modality="CT", SeriesDescription="COW MIP 10mm"), "cta_head"),
    "cta_contrast_agent_thin": (
        ct_series(100, 1, spacing=0.6, SeriesDescription="Head 0.6 Hv40", SliceThickness="0.6",
                  BodyPartExamined="HEAD", ContrastBolusAgent="Omnipaque 350"), "cta_head"),
    "cta_head_and_neck": (one(Modality="CT", SeriesDescription="CTA Head and Neck 1.0", BodyPartExamined="NECK"), "cta_head"),
    "cta_headneck_one_word": (one(Modality="CT", SeriesDescription="CTA_HEADNECK 0.75 Bv36"), "cta_head"),
    "cta_carotids": (one(Modality="CT", SeriesDescription="CTA Carotids 1.0", BodyPartExamined="NECK"), "cta_head"),
    "cta_neck_only": (one(Modality="CT", SeriesDescription="CTA Neck 1.0", BodyPartExamined="NECK"), "other"),
    "cta_chinese_head_neck": (one(Modality="CT", SeriesDescription="头颈CTA 0.625"), "cta_head"),
    "ctpa_is_not_ctp_or_head": (one(Modality="CT", SeriesDescription="CTPA 1.0", BodyPartExamined="CHEST"), "other"),
    "noncontrast_beats_cta_protocol": (
        one(Modality="CT", SeriesDescription="Head NC 5mm", ProtocolName="Stroke_CTA", BodyPartExamined="HEAD"), "ncct_head"),
    "null_contrast_agent_is_no_contrast": (
        ct_series(100, 1, spacing=0.6, SliceThickness="0.6", BodyPartExamined="HEAD", ContrastBolusAgent="NONE"),
        "ncct_head"),
    # --- radiographs ----------------------------------------------------------------------------
    "cr_chest": (one(Modality="CR", SOPClassUID="1.2.840.10008.5.1.4.1.1.1", BodyPartExamined="CHEST"), "xray"),
    "dx_for_presentation": (one(Modality="DX", SOPClassUID="1.2.840.10008.5.1.4.1.1.1.1"), "xray"),
    "dx_for_processing_sop_only": (one(SOPClassUID="1.2.840.10008.5.1.4.1.1.1.1.1"), "xray"),
    "dr_modality": (one(Modality="DR", SeriesDescription="Chest PA"), "xray"),
    "dx_sop_class_with_ot_modality": (one(Modality="OT", SOPClassUID="1.2.840.10008.5.1.4.1.1.1.1"), "xray"),
    # --- other -----------------------------------------------------------------------------------
    "mr_perfusion_4d": (
        [dict(i, Modality="MR", SOPClassUID="1.2.840.10008.5.1.4.1.1.4")
         for i in ct_series(20, 40, SeriesDescription="ep2d_perf")], "other"),
    "ct_chest": (ct_series(60, 1, SeriesDescription="Chest 5mm", BodyPartExamined="CHEST"), "other"),
    "ct_no_region_at_all": (ct_series(60, 1), "other"),
    "ct_sop_without_modality_head": (one(SOPClassUID=CT_SOP, SeriesDescription="Brain"), "ncct_head"),
    "empty_series": ([], "other"),
    "empty_dicts": ([{}, {}], "other"),
    "garbage_values": (
        [{"Modality": None, "ImagePositionPatient": "a\\b", "ImageOrientationPatient": [1, 2],
          "SliceThickness": "thick", "AcquisitionTime": "noon", "ImageType": None, "SeriesDescription": b"HEAD\x00"}],
        "other"),
    "garbage_values_ct_head": (
        [{"Modality": "CT", "ImagePositionPatient": "nan\\0\\0", "SliceThickness": "", "AcquisitionNumber": "x",
          "ContrastBolusAgent": None, "BodyPartExamined": b"HEAD "}], "ncct_head"),
}


@pytest.mark.parametrize("instances, expected", SERIES_CASES.values(), ids=SERIES_CASES.keys())
def test_classify_series(instances, expected):
    assert classify_series(instances) == expected, summarize(instances)


@pytest.mark.parametrize("case", ["siemens_perfusion_4d", "philips_jog", "ge_cine_acquisition_numbers"])
def test_instance_order_does_not_matter(case):
    instances, expected = SERIES_CASES[case]
    assert classify_series(sorted(instances, key=lambda i: i["InstanceNumber"])) == expected
    assert classify_series(list(reversed(instances))) == expected


def test_summarize_explains_the_structure():
    info = summarize(ct_series(20, 30, SeriesDescription="Head 5mm"))
    assert info["kind"] == "ctp"
    assert info["structure"] == "4d"
    assert info["positions"] == 20 and info["max_repetitions"] == 30 and info["instances"] == 600
    assert summarize([])["kind"] == "other"


# ---------------------------------------------------------------------------------------------
# Study level: CTP stored as one series per time point


def per_time_point(n_times: int, *, n_positions: int = 16, same_time: bool = False, desc: str = "Brain Perfusion",
                   prefix: str = "tp", jitter: float = 0.001) -> dict[str, list[dict]]:
    return {
        f"{prefix}{t}": ct_series(n_positions, 1, start_s=36000.0 + (0 if same_time else 2.0 * t),
                                  jitter=jitter, seed=t, SeriesDescription=desc)
        for t in range(n_times)
    }


def test_study_per_time_point_series_are_ctp():
    study = per_time_point(12)
    study["ncct"] = ct_series(30, 1, SeriesDescription="Head 5mm", BodyPartExamined="HEAD")
    study["cta"] = ct_series(200, 1, spacing=0.625, SeriesDescription="CTA Head", start_s=36500.0)
    study["scout"] = one(Modality="CT", SeriesDescription="Topogram", ImageType="ORIGINAL\\PRIMARY\\LOCALIZER")
    kinds = classify_study(dict(random.Random(3).sample(sorted(study.items()), len(study))))
    assert {uid: kinds[uid] for uid in study if uid.startswith("tp")} == {f"tp{t}": "ctp" for t in range(12)}
    assert (kinds["ncct"], kinds["cta"], kinds["scout"]) == ("ncct_head", "cta_head", "other")
    # Each time-point series alone is just a volume.
    assert classify_series(study["tp0"]) != "ctp"


def test_study_per_time_point_without_names_or_head_hints():
    kinds = classify_study(per_time_point(8, desc=""))
    assert set(kinds.values()) == {"ctp"} and len(kinds) == 8


def test_study_jog_per_time_point_two_table_blocks():
    study = {}
    for t in range(14):
        study[f"s{t}"] = ct_series(8, 1, z0=-40.0 if t % 2 == 0 else 0.0, start_s=36000.0 + 2 * t,
                                   SeriesDescription="Brain Perfusion JOG")
    assert set(classify_study(study).values()) == {"ctp"}


def test_study_reconstructions_of_one_acquisition_are_not_ctp():
    study = per_time_point(6, same_time=True, desc="Head 5mm")
    assert set(classify_study(study).values()) == {"ncct_head"}


def test_study_too_few_time_points_are_not_ctp():
    study = per_time_point(4, desc="Head 5mm")
    assert set(classify_study(study).values()) == {"ncct_head"}


def test_study_single_slice_time_points_are_not_ctp():
    study = per_time_point(10, n_positions=1, desc="Head")
    assert set(classify_study(study).values()) == {"ncct_head"}


def test_study_keeps_single_series_ctp_and_handles_empty():
    study = {"perf": ct_series(10, 30, SeriesDescription="VPCT"), "cr": one(Modality="CR"), "empty": []}
    assert classify_study(study) == {"perf": "ctp", "cr": "xray", "empty": "other"}
    assert classify_study({}) == {}


def test_study_different_positions_do_not_group():
    study = {f"s{t}": ct_series(16, 1, z0=-60.0 + 7.0 * t, start_s=36000.0 + t, SeriesDescription="Head")
             for t in range(8)}
    assert set(classify_study(study).values()) == {"ncct_head"}


# ---------------------------------------------------------------------------------------------
# Rules are data


RULES_TEXT = Path(classify.__file__).with_name("classify_rules.toml").read_text(encoding="utf-8")


def write_rules(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "rules.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_default_rules_load_from_package_and_file(tmp_path):
    assert load_rules() == classify.DEFAULT_RULES
    assert load_rules(write_rules(tmp_path, RULES_TEXT)).ctp.min_repetitions == 5


@pytest.mark.parametrize(
    "old, new, named",
    [
        ("min_repetitions = 5", "min_repetitions = 1", "ctp.min_repetitions"),
        ("max_slice_thickness_mm = 1.5", "max_slice_thickness_mm = 1.5\ncolour = 'red'", "cta.colour"),
        ('fields = ["SeriesDescription", "ProtocolName", "ImageType"]\n[ctp.keywords.terms]',
         'fields = ["SeriesDescription", "Pixels"]\n[ctp.keywords.terms]', "ctp.keywords.fields.1"),
        ('derived = ["MIP",', 'derived = ["  ", "MIP",', "ctp.exclude.terms"),
        ("version = 1", "version = 2", "version"),
        ("position_tolerance_mm = 0.1", "position_tolerance_mm = 'small'", "ctp.position_tolerance_mm"),
    ],
    ids=["too_small", "unknown_field", "unknown_header_field", "blank_term", "version", "wrong_type"],
)
def test_bad_rule_file_names_the_field(tmp_path, old, new, named):
    assert old in RULES_TEXT
    with pytest.raises(ClassifyRulesError) as info:
        load_rules(write_rules(tmp_path, RULES_TEXT.replace(old, new, 1)))
    assert f"field '{named}" in str(info.value)
    assert isinstance(info.value, ConfigError) and info.value.exit_code != 0


def test_unreadable_rule_files(tmp_path):
    with pytest.raises(ClassifyRulesError, match="not valid TOML"):
        load_rules(write_rules(tmp_path, "version = = 1"))
    with pytest.raises(ClassifyRulesError, match="cannot read"):
        load_rules(tmp_path / "missing.toml")
    with pytest.raises(ClassifyRulesError, match="field 'ctp'"):
        load_rules(write_rules(tmp_path, RULES_TEXT.split("[ctp]")[0]))


def test_site_rules_change_the_outcome(tmp_path):
    series = one(Modality="CT", SeriesDescription="QX-CRANE 5mm")
    assert classify_series(series) == "other"
    text = RULES_TEXT.replace('german = ["SCHAEDEL",', 'german = ["QX CRANE", "SCHAEDEL",', 1)
    site = load_rules(write_rules(tmp_path, text))
    assert classify_series(series, rules=site) == "ncct_head"
    stricter = load_rules(write_rules(tmp_path, RULES_TEXT.replace("min_repetitions = 5", "min_repetitions = 40")))
    assert classify_series(ct_series(12, 20, SeriesDescription="Head"), rules=stricter) == "ncct_head"


# ---------------------------------------------------------------------------------------------
# What the gateway extracts


def test_header_keywords_are_real_dicom_keywords_without_pixels():
    assert len(HEADER_KEYWORDS) == len(set(HEADER_KEYWORDS)) <= 20
    assert all(pydicom.datadict.tag_for_keyword(k) is not None for k in HEADER_KEYWORDS)
    assert all(pydicom.datadict.tag_for_keyword(k) < 0x7FE00000 for k in HEADER_KEYWORDS)
    assert set(KINDS) == {"ctp", "ncct_head", "cta_head", "xray", "other"}


def _stored_header(fields: dict) -> dict:
    """Write a real Part 10 file, read it back without pixels, extract HEADER_KEYWORDS."""
    ds = Dataset()
    for key, value in fields.items():
        setattr(ds, key, value)
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, ds, enforce_file_format=True)
    buffer.seek(0)
    return header_values(pydicom.dcmread(buffer, stop_before_pixels=True))


def test_headers_read_with_pydicom_classify_like_dicts():
    instances = [_stored_header(dict(i, PatientName="Test^Not^Extracted"))
                 for i in ct_series(6, 8, SeriesDescription="Brain Perfusion", BodyPartExamined="HEAD")]
    assert set(instances[0]) <= set(HEADER_KEYWORDS)
    assert isinstance(instances[0]["ImagePositionPatient"], list)
    assert isinstance(instances[0]["ImagePositionPatient"][2], float)
    assert classify_series(instances) == "ctp"
    one_volume = {round(i["ImagePositionPatient"][2], 3): i for i in instances}
    assert len(one_volume) == 6
    assert classify_series(list(one_volume.values())) == "ncct_head"
    assert header_values({"Modality": "CT", "Unrelated": 1, "SeriesDescription": ""}) == {"Modality": "CT"}
