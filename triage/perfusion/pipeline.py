"""The CTP pipeline: checks -> bin -> motion -> masks -> bolus/AIF/VOF -> maps -> segmentation -> result.

Memory: besides the input, one working copy at ~1.8 mm in-plane (a quarter of the input for 0.9 mm
pixels) is allocated once and reused in place (motion correction, baseline subtraction); smoothing
and deconvolution run on the brain bounding box of that copy only.
"""

from __future__ import annotations

import logging
from time import perf_counter

import numpy as np
from scipy import ndimage

from models import get_backend
from triage.perfusion import bolus, grid, masks, maps, motion, quality, segment
from triage.result import TriageResult
from triage.series import PerfusionSeries

log = logging.getLogger(__name__)

VESSEL_MIN_HU = 60.0
VESSEL_AIF_FRACTION = 0.3
MIN_KEPT_FRACTION = 0.75
UNWASHED_MAX = 0.05


class _Clock:
    def __init__(self) -> None:
        self.t0 = self.last = perf_counter()
        self.timings: dict[str, float] = {}

    def lap(self, name: str) -> None:
        now = perf_counter()
        self.timings[name] = round(now - self.last, 4)
        self.last = now

    def done(self) -> dict:
        self.timings["total"] = round(perf_counter() - self.t0, 4)
        return self.timings


def _nearest_index(valid: np.ndarray) -> tuple[np.ndarray, ...] | None:
    """Index arrays mapping every (Z, y, x) voxel to the nearest valid voxel of the same slice (other
    slices only when a slice has none); None when all voxels are valid or none is."""
    if valid.all() or not valid.any():
        return None
    idx = ndimage.distance_transform_edt(~valid, sampling=(1e3, 1.0, 1.0), return_distances=False,
                                         return_indices=True)
    return tuple(idx)


def _fill(vol: np.ndarray, index: tuple[np.ndarray, ...] | None) -> np.ndarray:
    """Replace voxels outside the tissue (NaN) by their nearest tissue value."""
    return np.nan_to_num(vol) if index is None else np.nan_to_num(vol[index])


def run_pipeline(series: PerfusionSeries, *, backend: str = "numpy", device: str = "cpu") -> TriageResult:
    """See ``triage.api.analyze``."""
    clock = _Clock()
    be = get_backend(backend, device)
    facts = grid.check_series(series)
    hu = series.hu if series.hu.dtype == np.float32 else series.hu.astype(np.float32)
    t0, nz, ny, nx = hu.shape
    dz, dy, dx = series.spacing_mm
    clock.lap("validate")

    k = grid.bin_factor(series.spacing_mm)
    work = grid.bin_inplane(hu, k)
    pix_mm = float(min(dy, dx) * k)
    clock.lap("bin")

    mot = motion.estimate_motion(work, pix_mm)
    motion.apply_motion(work, mot["params"], mot["displacement_mm"] / pix_mm)
    keep = ~mot["dropped"]
    max_mm = float(mot["displacement_mm"][keep].max())
    warnings = quality.motion_warnings(max_mm, int((~keep).sum()), t0)
    clock.lap("motion")
    if keep.mean() < MIN_KEPT_FRACTION or keep.sum() < grid.MIN_TIME_POINTS:
        warnings.append(quality.warning("motion", "fatal", f"{int((~keep).sum())} of {t0} frames could not be "
                                        "realigned; the perfusion cannot be measured.", dropped_frames=int((~keep).sum())))
        return quality.failed_result(series, be, warnings, clock.done(), max_displacement_mm=max_mm)
    times = series.times_s[keep]
    if not keep.all():
        work = work[keep]

    first_masks = masks.brain_masks(work[0], (dz, pix_mm, pix_mm))
    timing = bolus.bolus_timing(work, first_masks["intracranial"])
    clock.lap("bolus")
    if timing is None:
        warnings.append(quality.warning("no_aif", "fatal", "no contrast bolus reached the head (no intracranial "
                                        f"curve rises {bolus.MIN_BOLUS_HU:.0f} HU above baseline); no AIF."))
        return quality.failed_result(series, be, warnings, clock.done(), max_displacement_mm=max_mm)
    be_end = timing["baseline_end"]
    if be_end < 2:
        warnings.append(quality.warning("truncated_bolus", "warning", "the bolus arrives within the first frames; "
                                        "the baseline is too short to be reliable.", baseline_frames=be_end))

    kept_idx = np.flatnonzero(keep)
    still = [i for i in kept_idx[:be_end] if mot["displacement_mm"][i] < 0.5] or [0]
    native_base = np.zeros(hu.shape[1:], np.float32)
    for i in still:  # running sum: no copy of the selected frames
        native_base += hu[i]
    native_base /= len(still)
    m = masks.brain_masks(native_base, series.spacing_mm)
    tissue_w = grid.downsample_mask(m["tissue"], k, 0.5)
    clock.lap("masks")

    base_w = work[:be_end].mean(axis=0)
    work -= base_w[None]  # work is now the enhancement (T, Z, y, x)
    brain_w = grid.downsample_mask(m["brain"], k, 1.0)
    noise_native = _native_noise(hu, m["tissue"], still if len(still) >= 2 else list(kept_idx[:max(2, be_end)]))
    sel = bolus.select_aif_vof(hu, work, brain_w, tissue_w, times, be_end, k, mot["params"], keep, noise_native)
    clock.lap("aif")
    aif_report = quality.curve_report(sel.get("aif_raw"), sel.get("aif_voxels"), series.affine, times,
                                      partial_volume_scale=round(float(sel.get("scale", 1.0)), 3))
    vof_report = quality.curve_report(sel.get("vof"), sel.get("vof_voxels"), series.affine, times)
    aif_report = {**aif_report, "tissue_time_to_peak_s": round(float(sel.get("tissue_ttp_s", float("nan"))), 2)} \
        if aif_report else aif_report
    if not sel["ok"]:
        warnings.append(quality.warning("no_aif", "fatal", f"no usable arterial input function: {sel['reason']}.",
                                        vein_like=bool(sel.get("vein_like", False))))
        return quality.failed_result(series, be, warnings, clock.done(), max_displacement_mm=max_mm,
                                     aif=aif_report, vof=vof_report)
    if sel["aif_peak_hu"] < bolus.WEAK_AIF_HU:
        warnings.append(quality.warning("weak_aif", "warning", f"the arterial peak is only {sel['aif_peak_hu']:.0f} HU "
                                        f"(expected 300-500); perfusion values are noisy.",
                                        aif_peak_hu=sel["aif_peak_hu"]))
    if sel["truncated"] or sel["vof_truncated"]:
        warnings.append(quality.warning("truncated_bolus", "warning", "the acquisition ends before the contrast "
                                        "washes out; CBV and MTT are underestimated."))
    if sel["vof"] is None:
        warnings.append(quality.warning("no_vof", "info", "no venous outflow curve found; the AIF is not corrected "
                                        "for partial volume (relative maps are unaffected)."))

    vessel_w = work.max(axis=0) > max(VESSEL_MIN_HU, VESSEL_AIF_FRACTION * sel["aif_peak_raw_hu"])
    vessel_w = ndimage.binary_dilation(vessel_w, structure=masks_struct())
    tissue_w &= ~vessel_w
    aif = sel["aif"]
    dt = facts["median_dt_s"]
    conc = work
    if facts["irregular"] or not keep.all():
        new_t = grid.uniform_times(times, dt)
        conc = grid.resample_time(work, times, new_t)
        aif = grid.resample_time(aif, times, new_t)
    if not tissue_w.any():
        warnings.append(quality.warning("no_brain", "fatal", "no brain tissue found inside the skull."))
        return quality.failed_result(series, be, warnings, clock.done(), max_displacement_mm=max_mm, aif=aif_report)
    noise_w = maps.baseline_noise(conc, tissue_w, be_end)
    pm = maps.perfusion_maps(conc, tissue_w, aif, dt, be, noise_hu=noise_w)
    clock.lap("deconvolution")

    # native-resolution work (maps, segmentation) runs on the brain's bounding box: every tissue voxel is inside it
    brain = m["brain"]
    box = grid.bounding_box(brain)
    tissue = m["tissue"][box] & ~grid.upsample_mask(vessel_w, k, box)
    index = _nearest_index(tissue_w)
    native = {name: grid.upsample(_fill(pm[name], index), k, (ny, nx), box)
              for name in ("cbf", "cbv", "mtt", "tmax", "cbf_bcsvd", "cbf_edge") if name in pm}
    side = masks.side_map((nz, ny, nx), masks.midline(brain), series.affine)[box]
    seg = segment.segment(native["cbf"], native["tmax"], tissue, side, series.voxel_ml, edge_cbf=native.pop("cbf_edge"),
                          edge_px=int(np.ceil(segment.EDGE_REACH_SIGMAS * pm["sigma_px"] * k)))
    vols = {name: float(seg[name].sum() * series.voxel_ml) for name in ("core", "tmax6", "tmax10")}
    met = segment.metrics(vols["core"], vols["tmax6"], vols["tmax10"])
    t6_range = segment.tmax6_range(native["tmax"], tissue, seg["core"], series.voxel_ml)
    clock.lap("segmentation")

    if pm["unwashed_fraction"] > UNWASHED_MAX and not any(w["code"] == "truncated_bolus" for w in warnings):
        warnings.append(quality.warning("truncated_bolus", "warning", f"{100 * pm['unwashed_fraction']:.0f}% of the "
                                        "tissue has not washed out by the last frame; the acquisition is too short "
                                        "and late (hypoperfused) tissue is under-measured.",
                                        unwashed_fraction=pm["unwashed_fraction"]))
    warnings += quality.noise_warnings(noise_native, k)
    warnings += quality.high_noise_warnings(noise_native, k, dt, pix_mm)
    if pm["fit_r2"] < quality.MIN_FIT_R2:
        warnings.append(quality.warning("poor_fit", "warning", f"the perfusion model explains only "
                                        f"{100 * pm['fit_r2']:.0f}% of the tissue signal (expected > "
                                        f"{100 * quality.MIN_FIT_R2:.0f}%); the AIF or the data are not trustworthy.",
                                        fit_r2=pm["fit_r2"]))
    warnings += quality.residue_warnings(pm["residue_evidence"])
    warnings += quality.eligibility_warnings(vols["core"], vols["tmax6"], vols["tmax10"], t6_range,
                                             segment.TMAX_SHIFT_S)
    cnr = pm["tissue_peak_hu"] / max(pm["noise_after_hu"], 1e-6)
    if cnr < quality.MIN_CNR:
        warnings.append(quality.warning("low_cnr", "warning", f"tissue contrast-to-noise {cnr:.1f} is below "
                                        f"{quality.MIN_CNR:.0f}; maps are unreliable.", cnr=cnr))
    native["rcbf"] = np.nan_to_num(seg["rcbf"], copy=False)
    outside = ~brain[box]
    for vol in native.values():  # the float maps, shown inside the brain only
        np.copyto(vol, np.float32(0.0), where=outside)
    out_maps = {name: grid.paste(vol, box, brain.shape)
                for name, vol in {**native, "core": seg["core"], "tmax6": seg["tmax6"], "tmax10": seg["tmax10"]}.items()}
    out_maps["brain"] = brain
    edge = bool(out_maps["tmax6"][0].any() or out_maps["tmax6"][-1].any())
    warnings += quality.coverage_warnings(nz, dz, edge)
    q = {"reliable": quality.is_reliable(warnings), "warnings": warnings, "max_displacement_mm": max_mm,
         "dropped_frames": [int(i) for i in np.flatnonzero(~keep)], "aif": aif_report, "vof": vof_report,
         "cnr": cnr, "noise_hu": noise_w, "noise_native_hu": noise_native, "fit_r2": pm["fit_r2"],
         "residue_evidence": pm["residue_evidence"], "smoothing_sigma_mm": pm["sigma_px"] * pix_mm,
         "working_pixel_mm": pix_mm, "baseline_frames": be_end, "reference_cbf": seg["reference_cbf"],
         "reference_ml": seg["reference_ml"], "hemisphere_tmax6_ml": {"left": seg["left_ml"], "right": seg["right_ml"]},
         "tmax6_range_ml": list(t6_range), "tmax6_range_shift_s": segment.TMAX_SHIFT_S,
         "time_resampled": bool(facts["irregular"] or not keep.all()), "unwashed_fraction": pm["unwashed_fraction"]}
    return TriageResult(
        status="ok", study_instance_uid=series.study_instance_uid, series_instance_uid=series.series_instance_uid,
        algorithm=quality.algorithm_info(be), core_ml=met["core_ml"], tmax6_ml=met["tmax6_ml"],
        tmax10_ml=met["tmax10_ml"], mismatch_ml=met["mismatch_ml"], mismatch_ratio=met["mismatch_ratio"],
        hypoperfusion_intensity_ratio=met["hypoperfusion_intensity_ratio"], affected_side=seg["affected_side"],
        eligibility=met["eligibility"], quality=q, timings_s=clock.done(), maps=out_maps)


def _native_noise(hu: np.ndarray, tissue: np.ndarray, frames: list[int]) -> float:
    """Per-voxel noise sd (HU) of the native data: robust frame-difference MAD over baseline frames of tissue
    (every other row and column: plenty of voxels, a quarter of the reads)."""
    sub = tissue[:, ::2, ::2]
    if not sub.any():
        return float("nan")
    return bolus.robust_noise(np.stack([hu[i][:, ::2, ::2][sub] for i in frames]))


def masks_struct() -> np.ndarray:
    """In-plane 3x3 cross, no through-plane neighbours."""
    s = np.zeros((3, 3, 3), bool)
    s[1] = ndimage.generate_binary_structure(2, 1)
    return s
