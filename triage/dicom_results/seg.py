"""DICOM SEG of the ischemic core and the Tmax > 6 s hypoperfusion, on the CTP's native grid.

Segment 1: ischemic core, rCBF < 30% of healthy contralateral tissue
(category SCT 49755003 "Morphologically Abnormal Structure", type SCT
55641003 "Infarct"). Segment 2: Tmax > 6 s hypoperfusion, which includes the
core (type SCT 52674009 "Ischemia"). Both carry the algorithm (name, version,
family DCM 123104 "Morphological Operations", thresholds as parameters) and
the brain as anatomic region; display colours match the PNG overlays (core
magenta, Tmax > 6 s green).
"""

from __future__ import annotations

import highdicom as hd
import numpy as np

from triage.dicom_results.codes import DCM, SCT
from triage.dicom_results.identity import AUTOMATED_LABEL, Identity, ResultObjectError
from triage.dicom_results.sources import Sources
from triage.result import TriageResult

__all__ = ["SEGMENTS", "build_seg"]

#: (segment number, map name, label, type, CIELab display colour, threshold parameter)
SEGMENTS = (
    (1, "core", "Ischemic core (rCBF < 30%)", SCT.INFARCT, (60.3, 98.2, -60.8), {"rCBF threshold": "< 0.30"}),
    (2, "tmax6", "Tmax > 6 s hypoperfusion", SCT.ISCHEMIA, (76.8, -77.1, 74.4), {"Tmax threshold": "> 6 s"}),
)


def _masks(result: TriageResult, shape: tuple[int, int, int]) -> np.ndarray:
    """(Z, Y, X, 2) uint8: the result's core and tmax6 masks as segment channels."""
    planes = []
    for _, name, *_ in SEGMENTS:
        mask = result.maps.get(name)
        if mask is None:
            raise ResultObjectError(f"Argument 'result' has no '{name}' map; a SEG needs an analysed (status "
                                    "'ok') result with its maps.")
        mask = np.asarray(mask)
        if mask.shape != shape:
            raise ResultObjectError(f"Argument 'result': map '{name}' has shape {mask.shape}, the source frames "
                                    f"{shape}.")
        planes.append(mask.astype(bool))
    return np.stack(planes, axis=-1).astype(np.uint8)


def build_seg(result: TriageResult, sources: Sources, ident: Identity) -> hd.seg.Segmentation:
    """The SEG (BINARY, one frame per non-empty slice and segment) referencing ``sources.frames``."""
    frames = sources.frames
    shape = (len(frames), int(frames[0].Rows), int(frames[0].Columns))
    pixels = _masks(result, shape)
    algorithm = result.algorithm or {}
    descriptions = []
    for number, name, label, prop_type, lab, params in SEGMENTS:
        descriptions.append(hd.seg.SegmentDescription(
            segment_number=number,
            segment_label=label,
            segmented_property_category=SCT.MORPHOLOGICALLY_ABNORMAL_STRUCTURE,
            segmented_property_type=prop_type,
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
            algorithm_identification=hd.AlgorithmIdentificationSequence(
                name=ident.algorithm_name, family=DCM.MORPHOLOGICAL_OPERATIONS, version=ident.algorithm_version,
                source="telerad",
                parameters={**params, **({"model": f"{algorithm['model']} {algorithm.get('model_version', '')}"}
                                         if algorithm.get("model") else {})}),
            tracking_uid=ident.uid("seg", "segment", number),
            tracking_id=label,
            anatomic_regions=[SCT.BRAIN],
            display_color=hd.color.CIELabColor(*lab),
        ))
    seg = hd.seg.Segmentation(
        source_images=frames,
        pixel_array=pixels,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions,
        series_instance_uid=ident.uid("seg", "series"),
        series_number=ident.series_number("seg"),
        sop_instance_uid=ident.uid("seg", "instance", 1),
        instance_number=1,
        **ident.equipment(),
        content_label="TELERAD_CTP",
        content_description=AUTOMATED_LABEL,
        content_creator_name="telerad^automated",
        series_description=ident.series_description("seg"),
        omit_empty_frames=bool(pixels.any()),
        content_date=ident.created.date(),
        content_time=ident.created.time().replace(microsecond=0),
    )
    dim_uid = ident.uid("seg", "dimension-organization")
    for item in seg.get("DimensionOrganizationSequence", []):
        item.DimensionOrganizationUID = dim_uid
    for item in seg.get("DimensionIndexSequence", []):
        item.DimensionOrganizationUID = dim_uid
    return ident.stamp(seg)
