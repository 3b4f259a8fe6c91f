"""Bolus timing, baseline, and automatic arterial (AIF) and venous (VOF) output functions.

Baseline: the bolus arrival is the first frame where the mean curve of the most-enhancing intracranial
voxels exceeds 10% of its peak; frames before the one preceding it are baseline.

AIF/VOF: candidate voxels are the tallest working voxels of two pools, early (time to peak within one
frame of the earliest tall voxel) and late (two or more frames later); their native-resolution curves
are sampled (motion-compensated) so that a small artery is not diluted by binning. The AIF averages the
tallest early native voxels, the VOF the tallest late ones (ranking by peak alone: ranking by
narrowness picks noise-narrowed curves and biases the AIF shape). The AIF is rescaled by the
VOF/AIF area ratio to undo arterial partial volume (the venous sinus is wide enough to be full).
An AIF is never invented: when no candidate passes, the caller fails the analysis with "no_aif".
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

MIN_BOLUS_HU = 25.0
MIN_AIF_HU = 40.0
WEAK_AIF_HU = 150.0
N_AIF = 6
N_VOF = 6
N_CANDIDATES = 16  # working voxels per pool (arterial, venous)
MAX_VOF_SCALE = 4.0
MAX_BASE_HU = 120.0  # pre-contrast HU of blood is 30-60; higher means bone partial volume


def bolus_timing(work: np.ndarray, intracranial_w: np.ndarray) -> dict | None:
    """work : (T, Z, y, x) HU. Returns {"arrival": frame, "baseline_end": frame (exclusive), "curve": (T,)} or
    None when nothing enhances (no contrast reached the head)."""
    first = work[:2].mean(axis=0)
    enh = work.max(axis=0)
    enh -= first
    vals = enh[intracranial_w]
    if vals.size == 0:
        return None
    n_top = max(10, int(0.002 * vals.size))
    cut = np.partition(vals, vals.size - n_top)[vals.size - n_top]
    sel = intracranial_w & (enh >= cut)
    g = work[:, sel].mean(axis=1)
    g = g - g[:2].mean()
    if g.max() < MIN_BOLUS_HU:
        return None
    arrival = int(np.argmax(g >= 0.1 * g.max()))
    return {"arrival": arrival, "baseline_end": max(1, arrival - 1), "curve": g}


def _native_curves(hu: np.ndarray, pts: np.ndarray, params: np.ndarray, k: int, shape_w) -> np.ndarray:
    """Motion-compensated native curves (T, M) at native voxel positions pts (M, 3) = (z, y, x)."""
    t = hu.shape[0]
    cy, cx = k * (shape_w[1] - 1) / 2.0 + (k - 1) / 2.0, k * (shape_w[2] - 1) / 2.0 + (k - 1) / 2.0
    out = np.empty((t, len(pts)), np.float32)
    ry, rx = pts[:, 1] - cy, pts[:, 2] - cx
    for i in range(t):
        a, ty, tx = params[i]
        c, s = np.cos(a), np.sin(a)
        y = c * ry - s * rx + cy + k * ty
        x = s * ry + c * rx + cx + k * tx
        if not np.any(params[i]):
            out[i] = hu[i][pts[:, 0], pts[:, 1], pts[:, 2]]
        else:
            out[i] = ndimage.map_coordinates(hu[i], np.stack([pts[:, 0].astype(float), y, x]), order=1,
                                             mode="nearest")
    return out


def select_aif_vof(hu: np.ndarray, conc_w: np.ndarray, search_w: np.ndarray, times: np.ndarray,
                   baseline_end: int, k: int, motion_params: np.ndarray, keep: np.ndarray) -> dict:
    """Pick AIF and VOF voxels inside search_w (working bool mask). hu : native (T0, Z, Y, X); conc_w : working (T, Z, y, x) enhancement over
    baseline of the kept frames; keep : (T0,) bool frames kept after motion; times : (T,) of kept frames.

    Returns {"ok": bool, "reason": str, "aif": (T,), "vof": (T,) or None, "aif_voxels"/"vof_voxels":
    (M, 3) native z, y, x, "scale": VOF/AIF area ratio applied, "aif_peak_hu", ...}.
    """
    peak_w = conc_w.max(axis=0)
    peak_w[~search_w] = -np.inf
    finite = np.isfinite(peak_w)
    if not finite.any():
        return {"ok": False, "reason": "no intracranial voxels to search for an artery"}
    tall_w = finite & (peak_w >= 0.3 * peak_w[finite].max())
    ttp_w = np.stack([conc_w[:, z].argmax(axis=0) for z in range(conc_w.shape[1])])  # argmax copies: per slice
    first = int(ttp_w[tall_w].min())
    pools = {"arterial": tall_w & (ttp_w <= first + 1), "venous": tall_w & (ttp_w >= first + 2)}
    picked = []
    for pool in pools.values():
        flat = np.flatnonzero(pool)
        picked.append(flat[np.argsort(-peak_w.ravel()[flat])[:N_CANDIDATES]])
    flat = np.concatenate(picked)
    wz, wy, wx = np.unravel_index(flat, peak_w.shape)
    dy, dx = np.meshgrid(np.arange(k), np.arange(k), indexing="ij")
    pts = np.stack([np.repeat(wz, k * k), (wy[:, None] * k + dy.ravel()).ravel(),
                    (wx[:, None] * k + dx.ravel()).ravel()], axis=1)
    curves = _native_curves(hu, pts, motion_params, k, peak_w.shape)[keep]
    base = curves[:baseline_end].mean(axis=0)
    c = curves - base
    noise = curves[:baseline_end].std(axis=0) if baseline_end > 2 else np.full(len(pts), np.nan)
    p = np.where(base < MAX_BASE_HU, c.max(axis=0), 0.0)  # skull-edge voxels moving in and out are not vessels
    ttp_i = c.argmax(axis=0)
    if p.max() < MIN_AIF_HU:
        return {"ok": False, "reason": f"the tallest intracranial curve peaks at {p.max():.0f} HU above baseline; "
                                       f"an artery needs at least {MIN_AIF_HU:.0f} HU"}
    tall = p >= 0.4 * p.max()
    ttp_min = ttp_i[tall].min()
    arterial = (p >= 0.4 * p[tall & (ttp_i <= ttp_min + 1)].max()) & (ttp_i <= ttp_min + 1)
    a_idx = np.argsort(-p * arterial)[: min(N_AIF, int(arterial.sum()))]
    aif = c[:, a_idx].mean(axis=1)
    venous = tall & (ttp_i >= ttp_min + 2)
    v_idx = np.argsort(-p * venous)[: min(N_VOF, int(venous.sum()))]
    vof = c[:, v_idx].mean(axis=1) if v_idx.size else None
    aif_peak = float(aif.max())
    result = {"aif_raw": aif, "vof": vof, "aif_voxels": pts[a_idx], "vof_voxels": pts[v_idx] if v_idx.size else None,
              "aif_peak_raw_hu": aif_peak, "aif_ttp_s": float(times[int(aif.argmax())])}
    # shape checks: an arterial curve rises after the baseline and washes out before the end
    if int(aif.argmax()) < baseline_end or aif_peak < MIN_AIF_HU:
        return {**result, "ok": False, "reason": "no early, tall arterial curve after the baseline"}
    aif_noise = float(np.nanmedian(noise[a_idx])) if np.isfinite(noise[a_idx]).any() else 0.0
    if aif_noise > 0 and aif_peak < 6.0 * aif_noise:
        return {**result, "ok": False, "reason": f"arterial peak {aif_peak:.0f} HU is within 6x the noise "
                                                 f"({aif_noise:.0f} HU)"}
    scale = 1.0
    if vof is not None:
        a_area = np.trapezoid(np.clip(aif, 0, None), times)
        v_area = np.trapezoid(np.clip(vof, 0, None), times)
        scale = float(np.clip(v_area / max(a_area, 1e-6), 1.0, MAX_VOF_SCALE))
    result.update(ok=True, reason="", aif=(aif * scale).astype(np.float32), scale=scale,
                  aif_peak_hu=aif_peak * scale, aif_noise_hu=aif_noise,
                  truncated=bool(aif[-1] > 0.5 * aif_peak),
                  vof_truncated=bool(vof is not None and vof[-1] > 0.5 * vof.max()))
    return result
