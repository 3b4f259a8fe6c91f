"""Core and hypoperfusion segmentation, volumes, and trial eligibility.

- hypoperfusion: Tmax > 6 s (Campbell 2011, Lansberg 2012 / DEFUSE 2 and 3), always including the core;
- severe hypoperfusion: Tmax > 10 s (hypoperfusion intensity ratio, Olivot 2014);
- core: relative CBF < 30% of healthy contralateral tissue (Campbell 2011). Its edge is placed on CBF with the
  smoothing's blur undone (``edge_cbf``), within EDGE_REACH_SIGMAS smoothing widths of the core found on the
  smoothed map: the smoothed core-penumbra step crosses 30% below its midpoint, so the smoothed map alone
  shrinks every core by about 0.7 smoothing widths. A brain without a core on the smoothed map gets none;
- healthy reference: tissue on the unaffected side of the midline with Tmax < 4 s;
- islands (6-connected 3D components) smaller than MIN_ISLAND_ML are removed;
- DEFUSE 3 (Albers 2018): core < 70 mL, mismatch ratio >= 1.8, mismatch volume >= 15 mL;
- EXTEND-IA (Campbell 2015): core < 70 mL, mismatch ratio > 1.2, mismatch volume > 10 mL.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from triage.perfusion.grid import bounding_box

TMAX_HYPO_S = 6.0
TMAX_SEVERE_S = 10.0
TMAX_HEALTHY_S = 4.0
RCBF_CORE = 0.30
MIN_ISLAND_ML = 1.0
MIN_SIDED_ML = 5.0       # hypoperfusion below this volume gives no affected side
SIDE_DOMINANCE = 1.5     # the affected side has at least this many times the other side's volume
MIN_REFERENCE_ML = 20.0
EDGE_REACH_SIGMAS = 1.5  # the core may grow this many smoothing widths (in-plane) on the deblurred CBF
#: the Tmax > 6 s volume is also measured as if every Tmax read this much later and earlier: the engine's Tmax at the
#: 6 s contour is off by up to about this much on its randomized phantoms (residue shape, noise, AIF; docs/perfusion.md)
TMAX_SHIFT_S = 0.5


_INPLANE = ndimage.generate_binary_structure(3, 1) & np.array([False, True, False])[:, None, None]


def remove_islands(mask: np.ndarray, voxel_ml: float, min_ml: float = MIN_ISLAND_ML) -> np.ndarray:
    """Drop 6-connected 3D components of a (Z, Y, X) bool mask smaller than ``min_ml``.

    Labelling runs on the mask's bounding box only (every component lies inside it): on a 512x512 brain that is
    about half the grid, and a small lesion's mask far less."""
    box = bounding_box(mask)
    if box is None:
        return mask
    lab, n = ndimage.label(mask[box])
    sizes = np.bincount(lab.ravel(), minlength=n + 1)
    keep = sizes * voxel_ml >= min_ml
    keep[0] = False
    out = np.zeros(mask.shape, bool)
    out[box] = keep[lab]
    return out


def over(tmax: np.ndarray, tissue: np.ndarray, threshold_s: float, voxel_ml: float) -> np.ndarray:
    """Tissue whose Tmax exceeds ``threshold_s``, islands removed (NaN Tmax never exceeds it)."""
    with np.errstate(invalid="ignore"):
        return remove_islands(tissue & (tmax > threshold_s), voxel_ml)


def segment(cbf: np.ndarray, tmax: np.ndarray, tissue: np.ndarray, side: np.ndarray, voxel_ml: float, *,
            edge_cbf: np.ndarray | None = None, edge_px: int = 0) -> dict:
    """cbf (mL/100 g/min), tmax (s) : (Z, Y, X) float32 native maps (NaN outside tissue); tissue : bool;
    side : int8 +1 patient left, -1 right; edge_cbf : CBF with the smoothing undone (same grid), where the core may
    grow by up to ``edge_px`` native pixels in-plane. Returns masks "core", "tmax6", "tmax10", "rcbf" (float32),
    and "affected_side", "reference_cbf", "reference_ml", "left_ml", "right_ml"."""
    hyp = over(tmax, tissue, TMAX_HYPO_S, voxel_ml)
    left_ml = float((hyp & (side > 0)).sum() * voxel_ml)
    right_ml = float((hyp & (side < 0)).sum() * voxel_ml)
    affected = None
    if max(left_ml, right_ml) >= MIN_SIDED_ML:
        if left_ml >= SIDE_DOMINANCE * right_ml:
            affected = "left"
        elif right_ml >= SIDE_DOMINANCE * left_ml:
            affected = "right"
    with np.errstate(invalid="ignore"):
        healthy = tissue & (tmax < TMAX_HEALTHY_S)
    if affected is not None:
        contra = healthy & (side == (-1 if affected == "left" else 1))
        if contra.sum() * voxel_ml >= MIN_REFERENCE_ML:
            healthy = contra
    if healthy.sum() * voxel_ml < MIN_REFERENCE_ML:
        healthy = tissue
    ref = float(np.nanmean(cbf[healthy])) if healthy.any() else float("nan")
    rcbf = (cbf / ref).astype(np.float32) if ref > 0 else np.full(cbf.shape, np.nan, np.float32)
    with np.errstate(invalid="ignore"):
        core = remove_islands(tissue & (rcbf < RCBF_CORE), voxel_ml)
        if edge_cbf is not None and edge_px > 0 and ref > 0 and core.any():
            near = ndimage.binary_dilation(core, _INPLANE, iterations=edge_px)
            core = remove_islands(core | (near & tissue & (edge_cbf < RCBF_CORE * ref)), voxel_ml)
    tmax10 = over(tmax, tissue, TMAX_SEVERE_S, voxel_ml)
    return {"core": core, "tmax6": hyp | core, "tmax10": tmax10, "rcbf": rcbf, "affected_side": affected,
            "reference_cbf": ref, "reference_ml": float(healthy.sum() * voxel_ml), "left_ml": left_ml,
            "right_ml": right_ml}


def tmax6_range(tmax: np.ndarray, tissue: np.ndarray, core: np.ndarray, voxel_ml: float,
                shift_s: float = TMAX_SHIFT_S) -> tuple[float, float]:
    """The Tmax > 6 s volume (mL, with the core and the island rule of ``segment``) if every Tmax were ``shift_s``
    earlier and later than measured: (volume of Tmax > 6 + shift, volume of Tmax > 6 - shift), smaller first."""
    earlier, later = (float((over(tmax, tissue, TMAX_HYPO_S + d, voxel_ml) | core).sum() * voxel_ml)
                      for d in (shift_s, -shift_s))
    return earlier, later


def metrics(core_ml: float, tmax6_ml: float, tmax10_ml: float) -> dict:
    """Volumes (mL) -> mismatch volume and ratio, hypoperfusion intensity ratio, DEFUSE 3 / EXTEND-IA."""
    mismatch = tmax6_ml - core_ml
    ratio = tmax6_ml / core_ml if core_ml > 0 else None
    hir = tmax10_ml / tmax6_ml if tmax6_ml > 0 else None
    return {"core_ml": core_ml, "tmax6_ml": tmax6_ml, "tmax10_ml": tmax10_ml, "mismatch_ml": mismatch,
            "mismatch_ratio": ratio, "hypoperfusion_intensity_ratio": hir,
            "eligibility": {"defuse3": _verdict(core_ml, mismatch, ratio, 70.0, 15.0, 1.8, strict=False),
                            "extend_ia": _verdict(core_ml, mismatch, ratio, 70.0, 10.0, 1.2, strict=True)}}


def _verdict(core, mismatch, ratio, core_max, mismatch_min, ratio_min, *, strict: bool) -> dict:
    """One target-mismatch profile. A zero core has an infinite ratio (criterion met)."""
    ratio_ok = True if ratio is None else (ratio > ratio_min if strict else ratio >= ratio_min)
    mismatch_ok = mismatch > mismatch_min if strict else mismatch >= mismatch_min
    op = ">" if strict else ">="
    criteria = {
        "core_ml": core, "core_max_ml": core_max, "core_ok": core < core_max,
        "mismatch_ml": mismatch, "mismatch_min_ml": mismatch_min, "mismatch_rule": f"mismatch {op} {mismatch_min:g} mL",
        "mismatch_ok": mismatch_ok, "mismatch_ratio": ratio, "ratio_min": ratio_min,
        "ratio_rule": f"ratio {op} {ratio_min:g}", "ratio_ok": ratio_ok,
    }
    return {"eligible": bool(criteria["core_ok"] and mismatch_ok and ratio_ok), "criteria": criteria}
