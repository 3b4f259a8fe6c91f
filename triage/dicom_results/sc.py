"""Secondary Capture summary images: the PNG pages of :mod:`triage.outputs`, as RGB DICOM.

Instance 1 is the one-page summary (volumes, verdicts, every quality warning,
algorithm name and version, the disclaimer, and a montage of slices with the
core in magenta and Tmax > 6 s in green); instance 2 is the key slice (the
one with the most Tmax > 6 s tissue, or the middle slice) at 512 pixels. The
text is burnt into the pixels, so any PACS viewer shows it. For a failed
analysis both pages say "ANALYSIS FAILED" with the reasons and show no
overlay.
"""

from __future__ import annotations

import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian

from triage.dicom_results.identity import AUTOMATED_LABEL, Identity
from triage.dicom_results.sources import Sources
from triage.outputs import render_slice, render_summary
from triage.result import TriageResult
from triage.series import PerfusionSeries

__all__ = ["build_sc", "key_slice", "render_pages"]


def key_slice(result: TriageResult, nz: int) -> int:
    """The slice with the most Tmax > 6 s voxels; the middle slice when there are none (or no maps)."""
    tmax6 = result.maps.get("tmax6")
    if tmax6 is None or not np.asarray(tmax6).any():
        return nz // 2
    return int(np.asarray(tmax6).reshape(nz, -1).sum(axis=1).argmax())


def render_pages(result: TriageResult, sources: Sources, base: np.ndarray) -> list[np.ndarray]:
    """[summary, key slice] as (rows, cols, 3) uint8 RGB; base : (Z, Y, X) float32 HU on the maps' grid."""
    geometry = PerfusionSeries(hu=base[None], times_s=np.zeros(1), spacing_mm=sources.spacing_mm,
                               affine=sources.affine, study_instance_uid=result.study_instance_uid)
    summary = render_summary(result, geometry, base=base)
    z = key_slice(result, base.shape[0])
    masks = [None if result.maps.get(n) is None else np.asarray(result.maps[n][z], bool) for n in ("core", "tmax6")]
    pos = sources.affine[:3, 3] + z * sources.affine[:3, 2]
    title = f"key slice {z + 1}/{base.shape[0]}  z={pos[2]:.1f} mm"
    key = render_slice(result.to_json_dict(), base[z], *masks, affine=sources.affine,
                       spacing_yx=(sources.spacing_mm[1], sources.spacing_mm[2]), title=title)
    return [np.asarray(summary.convert("RGB"), dtype=np.uint8), np.asarray(key.convert("RGB"), dtype=np.uint8)]


def _orientation_letter(v: np.ndarray) -> str:
    """Patient-orientation letters (LPS) of a direction, main axis first, e.g. 'L' or 'LP'."""
    letters = ""
    for axis in np.argsort(-np.abs(v)):
        if abs(v[axis]) > 0.25:
            letters += ("L", "P", "H")[axis] if v[axis] > 0 else ("R", "A", "F")[axis]
    return letters or "L"


def _reference(ds: Dataset) -> Dataset:
    item = Dataset()
    item.ReferencedSOPClassUID = ds.SOPClassUID
    item.ReferencedSOPInstanceUID = ds.SOPInstanceUID
    return item


def build_sc(result: TriageResult, sources: Sources, ident: Identity,
             base: np.ndarray | None = None) -> list[hd.sc.SCImage]:
    """The SC series: one single-frame RGB Secondary Capture image per page of :func:`render_pages`."""
    base = sources.base_hu() if base is None else np.asarray(base, dtype=np.float32)
    iop = np.asarray(sources.frames[0].ImageOrientationPatient, dtype=np.float64)
    orientation = (_orientation_letter(iop[:3]), _orientation_letter(iop[3:]))
    series_uid = ident.uid("sc", "series")
    out = []
    for number, pixels in enumerate(render_pages(result, sources, base), start=1):
        sc = hd.sc.SCImage.from_ref_dataset(
            ref_dataset=sources.frames[0],
            pixel_array=pixels,
            photometric_interpretation=hd.PhotometricInterpretationValues.RGB,
            bits_allocated=8,
            coordinate_system=hd.CoordinateSystemNames.PATIENT,
            series_instance_uid=series_uid,
            series_number=ident.series_number("sc"),
            sop_instance_uid=ident.uid("sc", "instance", number),
            instance_number=number,
            patient_orientation=orientation,
            transfer_syntax_uid=ExplicitVRLittleEndian,
            series_description=ident.series_description("sc"),
            **ident.equipment(),
        )
        sc.BurnedInAnnotation = "YES"
        if sources.frames[0].get("BodyPartExamined"):
            sc.BodyPartExamined = sources.frames[0].BodyPartExamined
        sc.ImageComments = (f"{AUTOMATED_LABEL}. {'Summary' if number == 1 else 'Key slice'} of "
                            f"{ident.algorithm_label}; status {result.status}.")
        sc.DerivationDescription = "Rendered from the CT perfusion result maps; text and overlays burnt in."
        sc.SourceImageSequence = [_reference(ds) for ds in sources.frames]
        out.append(ident.stamp(sc))
    return out
