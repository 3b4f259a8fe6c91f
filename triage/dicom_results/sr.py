"""Comprehensive SR, TID 1500 "Imaging Measurement Report", of one triage result.

Imaging Measurements (status "ok"):

1. TID 1411 volumetric group "Ischemic core (rCBF < 30%)": SCT 118565006
   Volume in mL, finding SCT 55641003 Infarct, referencing SEG segment 1.
2. TID 1411 group "Tmax > 6 s hypoperfusion": Volume, finding SCT 52674009
   Ischemia, referencing SEG segment 2.
3. TID 1501 group "Tmax > 10 s hypoperfusion": Volume, finding Ischemia.
4. TID 1501 group "Target mismatch": mismatch volume (mL), mismatch ratio and
   hypoperfusion intensity ratio ({ratio}), with the DEFUSE 3 and EXTEND-IA
   imaging profiles as Yes/No evaluations.

Each group names the measurement method and carries TID 4019 algorithm
identification (name and version of ``result.algorithm``) and a "result
reliable" Yes/No evaluation. A root "Qualitative Evaluations" container
(TID 1500 row 12) holds the analysis status, reliability, affected side, each
quality warning as TEXT, and the disclaimer. A failed result has one TID 1501
group that says "analysis failed" and the reasons as TEXT: no volumes.
Local codes are in :mod:`triage.dicom_results.codes`.
"""

from __future__ import annotations

import highdicom as hd
from highdicom.sr import CodeContentItem, ContainerContentItem, ContentSequence, TextContentItem

from triage.dicom_results.codes import (
    DCM,
    LN,
    LOCAL,
    QUALITATIVE_EVALUATIONS,
    SCT,
    UCUM_ML,
    UCUM_RATIO,
    coding_scheme_identification,
)
from triage.dicom_results.identity import AUTOMATED_LABEL, Identity
from triage.dicom_results.sources import Sources
from triage.report import DISCLAIMER, warning_lines
from triage.result import TriageResult

__all__ = ["build_sr"]

_CONTAINS = hd.sr.RelationshipTypeValues.CONTAINS


_PLAIN = {"\u2014": "-", "\u2013": "-", "\u2265": ">=", "\u2264": "<=", "\u00d7": "x"}


def _text(value: str) -> str:
    """Text for the SR's character set (the source's, usually ISO_IR 100): dashes and signs spelled out."""
    for char, plain in _PLAIN.items():
        value = value.replace(char, plain)
    return value.encode("latin-1", "replace").decode("latin-1")


def _yes_no(flag: bool) -> hd.sr.CodedConcept:
    return SCT.YES if flag else SCT.NO


def _tracking(ident: Identity, key: str, label: str) -> hd.sr.TrackingIdentifier:
    return hd.sr.TrackingIdentifier(uid=ident.uid("sr", "tracking", key), identifier=label)


def _finding_sites(result: TriageResult) -> list[hd.sr.FindingSite]:
    side = {"left": SCT.LEFT, "right": SCT.RIGHT}.get(str(result.affected_side or "").lower())
    return [hd.sr.FindingSite(anatomic_location=SCT.BRAIN, laterality=side)]


def _volume(value: float, algorithm_id) -> hd.sr.Measurement:
    return hd.sr.Measurement(name=SCT.VOLUME, value=float(value), unit=UCUM_ML, algorithm_id=algorithm_id)


def _groups_ok(result: TriageResult, ident: Identity, seg, algorithm_id, reliable) -> tuple[list, list[str]]:
    notes: list[str] = []
    sites = _finding_sites(result)
    groups: list = []
    for number, key, label, finding, method, value in (
            (1, "core", "Ischemic core (rCBF < 30%)", SCT.INFARCT, LOCAL.METHOD_CORE, result.core_ml),
            (2, "tmax6", "Tmax > 6 s hypoperfusion", SCT.ISCHEMIA, LOCAL.METHOD_TMAX6, result.tmax6_ml)):
        common = dict(tracking_identifier=_tracking(ident, key, label), finding_type=finding,
                      finding_category=SCT.MORPHOLOGICALLY_ABNORMAL_STRUCTURE, method=method,
                      algorithm_id=algorithm_id, finding_sites=sites, measurements=[_volume(value, algorithm_id)],
                      qualitative_evaluations=[reliable])
        if seg is not None:
            ref = hd.sr.ReferencedSegment.from_segmentation(seg, number)
            groups.append(hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(referenced_segment=ref, **common))
        else:
            groups.append(hd.sr.MeasurementsAndQualitativeEvaluations(**common))
    groups.append(hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=_tracking(ident, "tmax10", "Tmax > 10 s hypoperfusion"), finding_type=SCT.ISCHEMIA,
        finding_category=SCT.MORPHOLOGICALLY_ABNORMAL_STRUCTURE, method=LOCAL.METHOD_TMAX10,
        algorithm_id=algorithm_id, finding_sites=sites, measurements=[_volume(result.tmax10_ml, algorithm_id)],
        qualitative_evaluations=[reliable]))
    derived = [hd.sr.Measurement(name=LOCAL.MISMATCH_VOLUME, value=float(result.mismatch_ml), unit=UCUM_ML,
                                 algorithm_id=algorithm_id)]
    if result.mismatch_ratio is not None:
        derived.append(hd.sr.Measurement(name=LOCAL.MISMATCH_RATIO, value=float(result.mismatch_ratio),
                                         unit=UCUM_RATIO, algorithm_id=algorithm_id))
    else:
        notes.append("Mismatch ratio not reported: the core volume is 0 mL (the ratio is infinite).")
    if result.hypoperfusion_intensity_ratio is not None:
        derived.append(hd.sr.Measurement(name=LOCAL.HYPOPERFUSION_INTENSITY_RATIO,
                                         value=float(result.hypoperfusion_intensity_ratio), unit=UCUM_RATIO,
                                         algorithm_id=algorithm_id))
    else:
        notes.append("Hypoperfusion intensity ratio not reported: the Tmax > 6 s volume is 0 mL.")
    evaluations = [reliable]
    for key, concept in (("defuse3", LOCAL.DEFUSE3_PROFILE), ("extend_ia", LOCAL.EXTEND_IA_PROFILE)):
        eligible = ((result.eligibility or {}).get(key) or {}).get("eligible")
        if eligible is not None:
            evaluations.append(hd.sr.QualitativeEvaluation(name=concept, value=_yes_no(bool(eligible))))
    groups.append(hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=_tracking(ident, "mismatch", "Target mismatch"), finding_type=LOCAL.TARGET_MISMATCH,
        algorithm_id=algorithm_id, finding_sites=sites, measurements=derived, qualitative_evaluations=evaluations))
    return groups, notes


def _evaluations_container(result: TriageResult, notes: list[str]) -> ContainerContentItem:
    """TID 1500 row 12: status, reliability, side (CODE); warnings, failure reasons, notes, disclaimer (TEXT)."""
    quality = result.quality or {}
    items = [CodeContentItem(name=LOCAL.ANALYSIS_STATUS, relationship_type=_CONTAINS,
                             value=LOCAL.ANALYSIS_COMPLETED if result.ok else LOCAL.ANALYSIS_FAILED),
             CodeContentItem(name=LOCAL.RESULT_RELIABLE, value=_yes_no(bool(quality.get("reliable"))),
                             relationship_type=_CONTAINS)]
    side = {"left": SCT.LEFT, "right": SCT.RIGHT}.get(str(result.affected_side or "").lower())
    if side is not None:
        items.append(CodeContentItem(name=LOCAL.AFFECTED_SIDE, value=side, relationship_type=_CONTAINS))
    for w in quality.get("warnings") or []:
        if w.get("severity") == "fatal":
            items.append(TextContentItem(name=LOCAL.FAILURE_REASON, relationship_type=_CONTAINS,
                                         value=_text(f"{w.get('code', '?')}: {w.get('message', '')}")))
    items += [TextContentItem(name=LOCAL.QUALITY_WARNING, value=_text(line), relationship_type=_CONTAINS)
              for line in warning_lines(result.to_json_dict())]
    items += [TextContentItem(name=LOCAL.NOTE, value=_text(n), relationship_type=_CONTAINS) for n in notes]
    items.append(TextContentItem(name=LOCAL.DISCLAIMER, value=_text(f"{AUTOMATED_LABEL}. {DISCLAIMER}"),
                                 relationship_type=_CONTAINS))
    container = ContainerContentItem(name=QUALITATIVE_EVALUATIONS, relationship_type=_CONTAINS)
    container.ContentSequence = ContentSequence(items)
    return container


def build_sr(result: TriageResult, sources: Sources, ident: Identity, seg=None) -> hd.sr.ComprehensiveSR:
    """The measurement report; ``seg`` (from :func:`~triage.dicom_results.seg.build_seg`) is referenced when given."""
    algo = result.algorithm or {}
    params = [f"{k}={algo[k]}" for k in ("model", "model_version", "backend", "backend_version", "device")
              if algo.get(k)]
    algorithm_id = hd.sr.AlgorithmIdentification(name=ident.algorithm_name, version=ident.algorithm_version,
                                                 parameters=params or None)
    reliable = hd.sr.QualitativeEvaluation(name=LOCAL.RESULT_RELIABLE,
                                           value=_yes_no(bool((result.quality or {}).get("reliable"))))
    if result.ok:
        groups, notes = _groups_ok(result, ident, seg, algorithm_id, reliable)
    else:
        status = hd.sr.QualitativeEvaluation(name=LOCAL.ANALYSIS_STATUS, value=LOCAL.ANALYSIS_FAILED)
        groups = [hd.sr.MeasurementsAndQualitativeEvaluations(
            tracking_identifier=_tracking(ident, "analysis", "Automated CT perfusion analysis"),
            method=DCM.CT_PERFUSION_ANALYSIS, algorithm_id=algorithm_id, qualitative_evaluations=[status, reliable])]
        notes = ["Automated perfusion analysis failed: no volumes were computed. Read the study manually."]
    device = hd.sr.ObserverContext(
        observer_type=DCM.DEVICE,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=ident.uid("sr", "device"), name=ident.algorithm_name, manufacturer_name="telerad",
            model_name=ident.algorithm_label))
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=device),
        procedure_reported=LN.CT_PERFUSION_HEAD,
        imaging_measurements=groups,
        referenced_images=sources.frames)
    report[0].ContentSequence.append(_evaluations_container(result, notes))
    evidence = [*sources.evidence, *([seg] if seg is not None else [])]
    sr = hd.sr.ComprehensiveSR(
        evidence=evidence,
        content=report[0],
        series_instance_uid=ident.uid("sr", "series"),
        series_number=ident.series_number("sr"),
        sop_instance_uid=ident.uid("sr", "instance", 1),
        instance_number=1,
        is_complete=True,
        is_final=False,
        is_verified=False,
        series_description=ident.series_description("sr"),
        coding_schemes=coding_scheme_identification(),
        **ident.equipment(),
    )
    return ident.stamp(sr)
