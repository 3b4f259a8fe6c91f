"""Perfusion maps from tissue enhancement curves: noise-aware smoothing, then a model-based fit.

Default method ("model", see ``models.residue``): each voxel's curve is fitted by
``(rho/k_H) * CBF * (AIF_d (x) exp(-t/MTT))`` over a grid of delays, MTTs and dispersions. The shape
(delay, MTT, dispersion) is chosen on data smoothed ``SHAPE_SIGMA_FACTOR`` times more than the data the
amplitude (CBF) is projected from: the shape varies slowly in space, and a shape picked on quieter data
removes the noise-selection bias that inflates CBF in low-flow tissue (the core).
Tmax = delay + time to peak of the dispersed residue; MTT = the fitted MTT;
CBV = (k_H / rho) * area(tissue) / area(AIF) * 100 mL/100 g (model-free).
Method "osvd" is block-circulant SVD with a per-voxel oscillation-index threshold (Wu 2003); its CBF is
always reported as the delay-insensitive map "cbf_bcsvd". docs/perfusion.md compares both on phantoms.

Smoothing is a Gaussian normalized convolution inside the tissue mask (CSF and vessels do not bleed
in) whose width follows the measured baseline noise.
"""

from __future__ import annotations

import numpy as np

from models import residue
from triage.perfusion import grid

RHO_G_PER_ML = 1.04
K_H = 0.73
METHOD = "model"           # chosen on the phantoms (docs/perfusion.md)
SHAPE_SIGMA_FACTOR = 2.5   # shapes are fitted on data smoothed this much more than the amplitude
SHAPE_SIGMA_MAX_PX = 3.0   # ... but no wider (working pixels): wider blurs the lesion's delays into its surroundings
MTT_FROM_FIT = True        # MTT from the fitted residue (True) or CBV / CBF (False)
MTT_MAX_S = 30.0
REFINE_ON_LIGHT = True     # refine the delay and score on the lightly smoothed data (measured: +1-2% Tmax volumes)
BCSVD_MAP = True           # also output the block-circulant oSVD CBF map "cbf_bcsvd"
OI_MAX = 0.12              # oscillation-index ceiling of the oSVD (Wu 2003 used 0.035-0.095 at lower SNR)
TARGET_NOISE_HU = 1.7      # residual noise wanted after smoothing, per 1.5 s (1.4 with the old sd estimate, 17% low)
SIGMA_RANGE_PX = (0.7, 3.0)


def noise_sigma_px(noise_hu: float, dt_s: float = 1.5) -> float:
    """Gaussian sigma (working pixels) that brings white noise of ``noise_hu`` per frame down to
    TARGET_NOISE_HU per 1.5 s of acquisition (faster sampling carries more frames, so each may be
    noisier): a 2D Gaussian of sigma s divides white-noise sd by 2 sqrt(pi) s."""
    s = noise_hu * np.sqrt(dt_s / 1.5) / (2.0 * np.sqrt(np.pi) * TARGET_NOISE_HU)
    return float(np.clip(s, *SIGMA_RANGE_PX))


def fit_curves(c: np.ndarray, aif: np.ndarray, dt_s: float, backend, *, noise_hu: float,
               method: str | None = None, oi_max: float | None = None, c_shape: np.ndarray | None = None) -> dict:
    """Per-voxel perfusion from enhancement curves c : (T, N) float32 HU (uniform grid from t = 0) and the
    AIF (T,) HU. Returns (N,) float32 "cbf" (mL/100 g/min), "cbv" (mL/100 g), "mtt" (s), "tmax" (s).

    method "model": parametric residue fit (models.residue); "osvd": block-circulant oscillation-index SVD.
    CBV is the model-free area ratio in both; MTT is the fitted one ("model", when MTT_FROM_FIT) or
    CBV / CBF, clipped to [0, MTT_MAX_S]. ``c_shape`` (T, N): more smoothed curves for the model's shape.
    ``noise_hu`` is the per-frame noise left in ``c`` (reported, and kept for noise-aware choices).
    "fit_r2" (float): the share of the shape data's energy the fitted curves explain (model only);
    "residue_evidence" (dict or None): ``models.residue.family_evidence`` on the shape data (model only).
    """
    method = METHOD if method is None else method
    oi_max = OI_MAX if oi_max is None else oi_max
    factor = K_H / RHO_G_PER_ML
    if method == "model":
        dic = residue.build_dictionary(aif, dt_s)
        cs = c if c_shape is None else c_shape
        best_g, score_g = backend.match(cs, dic.atoms, dic.shape[2])
        fits = []
        all_groups = len(residue.CBF_SHAPES) == dic.shape[2]
        for groups in ((None,) if all_groups else (residue.CBF_SHAPES, None)):  # CBF: CBF_SHAPES; Tmax: all
            best, score = residue.select(best_g, score_g, groups)
            if REFINE_ON_LIGHT and c_shape is not None:
                res = residue.refine(dic, c, best, residue.dots(c, dic.atoms, best).astype(np.float32))
            else:
                res = residue.refine(dic, cs, best, score)
            if c_shape is not None:  # amplitude from the lightly smoothed data, projected on the fitted shape
                res["cbf"] = residue.amplitude(dic, c, best, res["delay"])
            fits.append(res)
        res = fits[0]
        cbf, tmax = res["cbf"], fits[-1]["tmax"]
        evidence = residue.family_evidence(aif, dt_s, cs, backend, fitted=dic)
        top = residue.select(best_g, score_g)[1]
        energy = float(np.einsum("tn,tn->", cs, cs, dtype=np.float64))
        fit_r2 = float(np.sum(np.square(top, dtype=np.float64)) / energy) if energy > 0 else 0.0
    elif method == "osvd":
        fit_r2, evidence = float("nan"), None
        dec = backend.deconvolve(c, aif, dt_s, oi_max=oi_max)
        peak, tmax = dec.peak, dec.tmax_s
        cbf = peak * np.float32(factor * 6000.0)
    else:
        raise ValueError(f"Argument 'method' should be 'model' or 'osvd', got {method!r}.")
    a_area = float(np.trapezoid(aif, dx=dt_s))
    cbv = np.trapezoid(c, dx=dt_s, axis=0).astype(np.float32) * np.float32(factor * 100.0 / a_area)
    if method == "model" and MTT_FROM_FIT:
        mtt = res["mtt_fit"]
    else:
        mtt = np.where(cbf > 1e-3, 60.0 * cbv / np.maximum(cbf, 1e-3), 0.0)
    mtt = np.clip(mtt, 0.0, MTT_MAX_S).astype(np.float32)
    return {"cbf": cbf.astype(np.float32), "cbv": cbv, "mtt": mtt, "tmax": tmax.astype(np.float32), "fit_r2": fit_r2,
            "residue_evidence": evidence}


def baseline_noise(conc: np.ndarray, tissue: np.ndarray, baseline_end: int) -> float:
    """Per-frame noise sd (HU) over tissue from the baseline frames of conc (T, Z, y, x): the median absolute
    deviation of frame-to-frame differences / sqrt(2) (static anatomy cancels; the first two frames are
    used when the baseline is shorter)."""
    from triage.perfusion.bolus import robust_noise

    return robust_noise(conc[: max(2, baseline_end)][:, tissue])


def perfusion_maps(conc: np.ndarray, tissue: np.ndarray, aif: np.ndarray, dt_s: float, backend, *,
                   noise_hu: float, method: str | None = None, oi_max: float | None = None) -> dict:
    """conc : (T, Z, y, x) float32 HU over baseline on a uniform time grid; tissue : (Z, y, x) bool;
    aif : (T,) HU (partial-volume corrected). Returns float32 (Z, y, x) maps "cbf", "cbv", "mtt", "tmax"
    and "cbf_bcsvd" (NaN outside tissue), "cbf_edge" (CBF sharpened by an unsharp mask of the smoothing sigma, for
    the core's edge only), and scalars "sigma_px", "noise_after_hu", "tissue_peak_hu",
    "unwashed_fraction"."""
    method = METHOD if method is None else method
    box = grid.bounding_box(tissue, pad_inplane=2)  # the caller checked that there is tissue
    sub_mask = tissue[box]
    sigma = noise_sigma_px(noise_hu, dt_s)
    raw = conc[(slice(None),) + box]
    c = backend.smooth_inplane(raw, sigma, sub_mask)[:, sub_mask]  # (T, N)
    c_shape = None
    if method == "model" and SHAPE_SIGMA_FACTOR > 1:
        c_shape = backend.smooth_inplane(raw, min(sigma * SHAPE_SIGMA_FACTOR, SHAPE_SIGMA_MAX_PX), sub_mask)[:, sub_mask]
    fit = fit_curves(c, aif, dt_s, backend, noise_hu=noise_hu / (2.0 * np.sqrt(np.pi) * sigma), method=method,
                     oi_max=oi_max, c_shape=c_shape)
    # CBF with the amplitude smoothing's blur undone to first order (unsharp mask of the same sigma): used only to
    # place the core's edge next to a core already found on the smoothed map (segment.segment, "edge_cbf")
    cbf_full = np.zeros(sub_mask.shape, np.float32)
    cbf_full[sub_mask] = fit["cbf"]
    blurred = backend.smooth_inplane(cbf_full[None], sigma, sub_mask)[0][sub_mask]
    fit["cbf_edge"] = np.maximum(2.0 * fit["cbf"] - blurred, 0.0).astype(np.float32)
    out = {}
    names = ["cbf", "cbv", "mtt", "tmax", "cbf_edge"]
    if BCSVD_MAP:  # the reference block-circulant oSVD CBF (Wu 2003), reported alongside, not segmented
        if method == "osvd":
            fit["cbf_bcsvd"] = fit["cbf"]
        else:
            dec = backend.deconvolve(c, aif, dt_s, oi_max=OI_MAX)
            fit["cbf_bcsvd"] = dec.peak * np.float32(K_H / RHO_G_PER_ML * 6000.0)
        names.append("cbf_bcsvd")
    for name in names:
        vals = fit[name]
        full = np.full(tissue.shape, np.nan, np.float32)
        full[box][sub_mask] = vals
        out[name] = full
    out["sigma_px"] = sigma
    out["fit_r2"] = fit["fit_r2"]
    out["residue_evidence"] = fit["residue_evidence"]
    out["noise_after_hu"] = noise_hu / (2.0 * np.sqrt(np.pi) * sigma)
    peak = c.max(axis=0)
    out["tissue_peak_hu"] = float(np.median(peak))
    # no wash-out: the curve still holds more than half its peak at the last frame
    out["unwashed_fraction"] = float(np.mean(c[-1] > 0.5 * np.maximum(peak, 1e-6)))
    return out
