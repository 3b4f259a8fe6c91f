"""Bolus timing, baseline noise, and automatic arterial (AIF) and venous (VOF) output functions.

Baseline: the bolus arrival is the first frame where the mean curve of all intracranial voxels passes
10% of its peak. That curve is mostly brain tissue: the most-enhancing voxels alone would often be the
venous sinus (the tallest curve, and the last to arrive) and would put bolus frames into the baseline;
any selection by enhancement also biases the first frames low. Frames before the one preceding the
arrival are baseline. "No bolus" is judged on the 0.2% most-enhancing voxels.

Noise: the median absolute deviation of frame-to-frame differences over the baseline frames of brain
tissue (static anatomy cancels in a difference; the MAD ignores vessels and edges), / sqrt(2).

AIF/VOF: the reference is the brain tissue's own time to peak (TTP of the mean tissue curve). Arterial
candidates peak before it, and within one frame of the earliest tall curve (a sinus can also peak before a
late, broad tissue curve, but never before the arteries); venous ones peak at or after the tissue, or at least
VOF_MIN_LAG_S after the arteries (a sinus can peak before a tissue curve that a large delayed lesion pulls late).
Candidate working voxels are ranked (arterial: peak height; venous: area) and their native-resolution curves
sampled (motion-compensated) so that a small artery is not diluted by binning. The AIF averages the tallest native
arterial voxels among the earliest-peaking ones, the VOF the largest-area late ones; each takes its baseline from
the mean curve, after the choice (a choice by height over single voxels' own baselines selects their baseline
noise). A curve peaking at or after the tissue is never used as an AIF. The AIF is rescaled by the VOF/AIF area
ratio to undo arterial partial volume (the venous sinus is wide enough to be full). An AIF is never invented: when
no candidate passes, the caller fails the analysis with "no_aif".
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

MIN_BOLUS_HU = 25.0
MIN_AIF_HU = 40.0
WEAK_AIF_HU = 150.0
AIF_NOISE_FACTOR = 6.0   # an AIF peaks at least this many single-voxel noise sd above baseline
N_AIF = 6
N_VOF = 6
N_CANDIDATES = 24        # working voxels per pool (arterial, venous)
MAX_VOF_SCALE = 4.0
MAX_BASE_HU = 120.0      # pre-contrast HU of blood is 30-60; higher means bone partial volume
TISSUE_MAX_PEAK_HU = 100.0  # voxels enhancing more than this are vessels, not tissue, for the tissue TTP
MAD_TO_SD = 1.4826
EARLY_TALL_FRACTION = 0.25  # a working voxel this tall (of the tallest early one) sets the arterial time
#: a venous outflow curve peaks at least this long after the arteries (the sinuses peak 4-8 s after them). It may
#: peak before the mean tissue curve, whose peak a large delayed lesion pulls late: on clean scans with such a
#: lesion, requiring "after the tissue" found no VOF at all (docs/perfusion.md, "Round 9")
VOF_MIN_LAG_S = 2.0


def robust_noise(frames: np.ndarray) -> float:
    """Per-voxel white-noise sd (HU) from baseline frames (B, N), B >= 2: MAD of frame differences / sqrt 2."""
    d = np.diff(frames, axis=0).ravel()
    if d.size == 0:
        return float("nan")
    return float(MAD_TO_SD * np.median(np.abs(d - np.median(d))) / np.sqrt(2.0))


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
    if g.max() - g[:2].mean() < MIN_BOLUS_HU:
        return None
    whole = work[:, intracranial_w].mean(axis=1)  # no selection: no noise-selection bias in its first frames
    whole -= whole[:2].mean()
    arrival = max(1, int(np.argmax(whole >= 0.1 * whole.max())))
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


def peak_time(c: np.ndarray, times: np.ndarray) -> np.ndarray:
    """Sub-frame time to peak (s) of curves c (T, M) by a parabola through the peak and its neighbours."""
    i = c.argmax(axis=0)
    t = c.shape[0]
    cols = np.arange(c.shape[1])
    y0, y1, y2 = c[np.maximum(i - 1, 0), cols], c[i, cols], c[np.minimum(i + 1, t - 1), cols]
    den = y0 - 2 * y1 + y2
    off = np.where((i > 0) & (i < t - 1) & (den < 0), 0.5 * (y0 - y2) / np.where(den < 0, den, -1.0), 0.0)
    off = np.clip(off, -0.5, 0.5)
    dt = np.gradient(times)[i]
    return times[i] + off * dt


def tissue_ttp(conc_w: np.ndarray, tissue_w: np.ndarray, times: np.ndarray) -> float:
    """Time to peak (s) of the mean enhancement of brain tissue (voxels enhancing like vessels excluded)."""
    vals = conc_w[:, tissue_w]  # (T, N)
    keep = vals.max(axis=0) < TISSUE_MAX_PEAK_HU
    mean = (vals[:, keep] if keep.any() else vals).mean(axis=1)
    return float(peak_time(mean[:, None], times)[0])


def own_baseline(curves: np.ndarray, baseline_end: int) -> np.ndarray:
    """Pre-contrast level (M,) of each curve (T, M): the mean of the baseline frames before its own arrival.

    The common baseline ends where the tissue starts to enhance; an artery arrives earlier, so its last
    common-baseline frames may already rise. Each curve's arrival is the first frame above 10% of its peak
    (over the median of the common baseline); at least one frame is kept.
    """
    b0 = np.median(curves[:baseline_end], axis=0)
    c = curves - b0
    arrival = np.argmax(c >= 0.1 * c.max(axis=0), axis=0)
    n = np.clip(arrival - 1, 1, baseline_end)  # frames before the one preceding the arrival
    cum = np.cumsum(curves[:baseline_end], axis=0)
    return cum[n - 1, np.arange(curves.shape[1])] / n


def _pick(flat: np.ndarray, rank: np.ndarray, n: int) -> np.ndarray:
    return flat[np.argsort(-rank[flat])[:n]] if flat.size else flat


def _mean_of_top(curves: np.ndarray, mask: np.ndarray, rank: np.ndarray, n: int,
                 baseline_end: int) -> tuple[np.ndarray | None, np.ndarray]:
    """Enhancement (T,) of the mean of the ``n`` raw curves (T, M) ranked highest by ``rank`` within ``mask`` (None
    when the mask is empty), and their column indices.

    The baseline is taken from the mean curve, after the choice (``own_baseline``): with each voxel's own baseline
    subtracted first, a ranking by height prefers the voxels whose few baseline frames happen to read low, and at
    16-20 HU the mean of the six chosen sat 12-35 HU above the true curve from the first frame to the last
    (docs/perfusion.md, "Round 10")."""
    idx = _pick(np.flatnonzero(mask), rank, n)
    if not idx.size:
        return None, idx
    mean = curves[:, idx].mean(axis=1)
    return mean - own_baseline(mean[:, None], baseline_end)[0], idx


def select_aif_vof(hu: np.ndarray, conc_w: np.ndarray, search_w: np.ndarray, tissue_w: np.ndarray,
                   times: np.ndarray, baseline_end: int, k: int, motion_params: np.ndarray, keep: np.ndarray,
                   noise_native: float) -> dict:
    """Pick AIF and VOF voxels inside search_w (working bool mask). hu : native (T0, Z, Y, X); conc_w : working
    (T, Z, y, x) enhancement over baseline of the kept frames; tissue_w : working brain tissue (the TTP
    reference); keep : (T0,) bool frames kept after motion; times : (T,) s of kept frames; noise_native :
    per-voxel noise sd (HU) of the native data.

    Returns {"ok": bool, "reason": str, "aif": (T,), "vof": (T,) or None, "aif_voxels"/"vof_voxels":
    (M, 3) native z, y, x, "scale": VOF/AIF area ratio applied, "aif_peak_hu", "tissue_ttp_s", ...}.
    """
    ttp_tis = tissue_ttp(conc_w, tissue_w, times)
    peak_w = conc_w.max(axis=0)
    peak_w[~search_w] = -np.inf
    finite = np.isfinite(peak_w)
    if not finite.any():
        return {"ok": False, "reason": "no intracranial voxels to search for an artery", "tissue_ttp_s": ttp_tis}
    ttp_w = np.stack([conc_w[:, z].argmax(axis=0) for z in range(conc_w.shape[1])])  # argmax copies: per slice
    ttp_w_s = times[ttp_w]
    tall = finite & (peak_w >= MIN_AIF_HU)
    area_w = np.zeros(peak_w.shape, np.float32)
    area_w[tall] = np.clip(conc_w[:, tall], 0, None).sum(axis=0)
    early_m = tall & (ttp_w_s <= ttp_tis)
    if early_m.any():  # the earliest tall group: a sinus peaking before a late, broad tissue curve comes later
        first_tall = ttp_w_s[early_m & (peak_w >= EARLY_TALL_FRACTION * peak_w[early_m].max())].min()
        early_m &= ttp_w_s <= first_tall + float(np.median(np.diff(times)))
    early = np.flatnonzero(early_m)
    late_m = tall & (ttp_w_s >= ttp_tis)
    if early.size:  # and the tall curves well after the arteries, even if before the tissue
        late_m |= tall & (ttp_w_s >= ttp_w_s.ravel()[early].min() + VOF_MIN_LAG_S)
    late = np.flatnonzero(late_m)
    flat = np.concatenate([_pick(early, peak_w.ravel(), N_CANDIDATES), _pick(late, area_w.ravel(), N_CANDIDATES)])
    if flat.size == 0:
        return {"ok": False, "reason": f"no intracranial curve peaks {MIN_AIF_HU:.0f} HU above baseline",
                "tissue_ttp_s": ttp_tis}
    wz, wy, wx = np.unravel_index(flat, peak_w.shape)
    dy, dx = np.meshgrid(np.arange(k), np.arange(k), indexing="ij")
    pts = np.stack([np.repeat(wz, k * k), (wy[:, None] * k + dy.ravel()).ravel(),
                    (wx[:, None] * k + dx.ravel()).ravel()], axis=1)
    curves = _native_curves(hu, pts, motion_params, k, peak_w.shape)[keep]
    # ranked over the median of the common baseline frames: a median ignores an artery's rising last frame, and a
    # choice among many voxels by a baseline of one or two frames each selects their noise (see _mean_of_top)
    base = np.median(curves[:baseline_end], axis=0)
    c = curves - base
    p = np.where(base < MAX_BASE_HU, c.max(axis=0), 0.0)  # skull-edge voxels moving in and out are not vessels
    tp = peak_time(c, times)
    area = np.clip(c, 0, None).sum(axis=0)
    arterial = (p >= MIN_AIF_HU) & (tp < ttp_tis)
    result: dict = {"tissue_ttp_s": ttp_tis, "aif_voxels": None, "vof_voxels": None, "aif_raw": None, "vof": None}
    venous = (p >= MIN_AIF_HU) & (tp >= ttp_tis)
    # reported if no AIF is found; redone once the AIF's time is known
    vof, v_idx = _mean_of_top(curves, venous, area, N_VOF, baseline_end)
    result.update(vof=vof, vof_voxels=pts[v_idx] if v_idx.size else None)
    if not arterial.any():
        tallest = float(p.max())
        return {**result, "ok": False, "vein_like": bool(venous.any()),
                "reason": f"no curve peaks before the brain tissue (tissue time to peak {ttp_tis:.1f} s; the tallest "
                          f"curve, {tallest:.0f} HU, is venous)" if venous.any() else
                          f"the tallest intracranial curve peaks at {tallest:.0f} HU above baseline; an artery needs "
                          f"at least {MIN_AIF_HU:.0f} HU"}
    p_art = np.where(arterial, p, 0.0)
    tall_a = p_art >= 0.5 * p_art.max()
    first = tp[tall_a].min()
    dt = float(np.median(np.diff(times)))
    chosen = arterial & (tp <= first + dt) & (p_art >= 0.5 * p_art.max())
    aif, a_idx = _mean_of_top(curves, chosen, p, N_AIF, baseline_end)
    aif_peak = float(aif.max())
    aif_ttp = float(peak_time(aif[:, None], times)[0])
    result.update(aif_raw=aif, aif_voxels=pts[a_idx], aif_peak_raw_hu=aif_peak, aif_ttp_s=aif_ttp)
    if int(aif.argmax()) < baseline_end or aif_peak < MIN_AIF_HU:
        return {**result, "ok": False, "reason": "no early, tall arterial curve after the baseline"}
    if aif_ttp >= ttp_tis:
        return {**result, "ok": False, "vein_like": True,
                "reason": f"the arterial candidate peaks at {aif_ttp:.1f} s, not before the tissue ({ttp_tis:.1f} s)"}
    if noise_native > 0 and aif_peak < AIF_NOISE_FACTOR * noise_native:
        return {**result, "ok": False, "reason": f"arterial peak {aif_peak:.0f} HU is within {AIF_NOISE_FACTOR:.0f}x "
                                                 f"the noise ({noise_native:.0f} HU)"}
    # the VOF: the largest-area curves peaking after the tissue or well after the chosen arteries
    vof, v_idx = _mean_of_top(curves, venous | ((p >= MIN_AIF_HU) & (tp >= aif_ttp + VOF_MIN_LAG_S)), area, N_VOF,
                              baseline_end)
    result.update(vof=vof, vof_voxels=pts[v_idx] if v_idx.size else None)
    scale = 1.0
    if vof is not None:
        a_area = np.trapezoid(np.clip(aif, 0, None), times)
        v_area = np.trapezoid(np.clip(vof, 0, None), times)
        scale = float(np.clip(v_area / max(a_area, 1e-6), 1.0, MAX_VOF_SCALE))
    result.update(ok=True, reason="", aif=(aif * scale).astype(np.float32), scale=scale,
                  aif_peak_hu=aif_peak * scale, aif_noise_hu=noise_native, vein_like=False,
                  truncated=bool(aif[-1] > 0.5 * aif_peak),
                  vof_truncated=bool(vof is not None and vof[-1] > 0.5 * vof.max()))
    return result
