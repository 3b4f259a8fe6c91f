"""Versioned parametric residue model used for model-based CBF/Tmax estimation.

A tissue curve is modelled as ``(rho/k_H) * CBF * (AIF_d (x) R)(t)`` with R(t) = exp(-t / MTT) and AIF_d
the measured AIF delayed by ``delay`` and dispersed by exp(-t / beta) / beta (the vascular model of
Calamante 2006 / Mehndiratta 2014). For a grid of (delay, MTT, beta) the unit-CBF curves are built once
per series ("atoms"); every voxel then picks the atom with the largest normalized correlation (a
linear least-squares fit of CBF for each atom, solved for all voxels with one matrix product), and the
delay is refined between grid points by a parabola through the neighbouring scores.

Tmax is the time to peak of the fitted effective residue, delay + beta*MTT*ln(MTT/beta)/(MTT-beta).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MODEL_NAME = "exp-residue-dispersion-grid"
MODEL_VERSION = "1.0.0"
RHO_G_PER_ML = 1.04
K_H = 0.73
MTT_GRID_S = tuple(np.round(np.geomspace(1.5, 24.0, 13), 3))
BETA_GRID_S = (0.0, 1.0, 2.0, 3.5)
DELAY_RANGE_S = (-3.0, 18.0)
FINE_STEPS = 10  # fine sub-steps per frame interval for the model convolution


@dataclass(frozen=True)
class Dictionary:
    """atoms : (G, T) float32 unit-norm curves; norms : (G,) float64 norm of the unit-CBF curve (HU per
    mL/100 g/min); delay_s, mtt_s, beta_s : (G,) parameters; shape (n_delay, n_mtt, n_beta) with delay
    varying slowest; delay_step_s : grid step of the delays."""

    atoms: np.ndarray
    norms: np.ndarray
    delay_s: np.ndarray
    mtt_s: np.ndarray
    beta_s: np.ndarray
    shape: tuple[int, int, int]
    delay_step_s: float


def residue_tmax(delay_s, mtt_s, beta_s) -> np.ndarray:
    """Time to peak (s) of exp(-t/beta)/beta (x) exp(-t/MTT), delayed by ``delay_s``."""
    d, m, b = (np.asarray(v, dtype=np.float64) for v in (delay_s, mtt_s, beta_s))
    bs = np.where(b > 0, b, 1.0)
    ms = np.where(np.abs(m - bs) > 1e-6, m, m + 1e-3)
    peak = bs * ms * np.log(np.maximum(ms / bs, 1e-12)) / (ms - bs)
    return d + np.where(b > 0, peak, 0.0)


def build_dictionary(aif: np.ndarray, dt_s: float) -> Dictionary:
    """Unit-CBF model curves for the measured AIF (T,) HU sampled every ``dt_s`` from t = 0."""
    t = aif.shape[0]
    times = np.arange(t) * dt_s
    fine_dt = dt_s / FINE_STEPS
    fine_t = np.arange(0.0, times[-1] + fine_dt / 2, fine_dt)
    aif_f = np.interp(fine_t, times, np.asarray(aif, dtype=np.float64))
    step = dt_s / 2.0
    delays = np.arange(DELAY_RANGE_S[0], DELAY_RANGE_S[1] + 1e-9, step)
    mtts, betas = np.asarray(MTT_GRID_S), np.asarray(BETA_GRID_S)
    scale = (RHO_G_PER_ML / K_H) / 6000.0 * fine_dt
    curves = np.empty((len(mtts), len(betas), fine_t.size))
    for i, m in enumerate(mtts):
        residue = np.exp(-fine_t / m)
        for j, b in enumerate(betas):
            h = residue
            if b > 0:
                disp = np.exp(-fine_t / b)
                disp /= disp.sum()
                h = np.convolve(disp, residue)[: fine_t.size]
            curves[i, j] = np.convolve(aif_f, h)[: fine_t.size] * scale
    # delay: sample each fine curve at times - delay (zero before the start)
    shifted = times[None, :] - delays[:, None]  # (n_delay, T)
    idx = shifted / fine_dt
    lo = np.clip(np.floor(idx).astype(int), 0, fine_t.size - 2)
    w = np.clip(idx - lo, 0.0, 1.0)
    valid = shifted >= 0
    c_lo = curves[:, :, lo]  # (n_mtt, n_beta, n_delay, T)
    c_hi = curves[:, :, lo + 1]
    sampled = np.where(valid, c_lo * (1 - w) + c_hi * w, 0.0)
    atoms = np.transpose(sampled, (2, 0, 1, 3)).reshape(-1, t)  # (n_delay * n_mtt * n_beta, T)
    norms = np.linalg.norm(atoms, axis=1)
    atoms = atoms / np.maximum(norms, 1e-12)[:, None]
    dd, mm, bb = np.meshgrid(delays, mtts, betas, indexing="ij")
    return Dictionary(atoms=atoms.astype(np.float32), norms=norms, delay_s=dd.ravel(), mtt_s=mm.ravel(),
                      beta_s=bb.ravel(), shape=(len(delays), len(mtts), len(betas)), delay_step_s=step)


def select(best: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The best atom over all dispersion levels. best, score : (N, n_beta) per level -> (N,), (N,).

    Measured alternatives (docs/perfusion.md): an AIC-style penalty on dispersion and a posterior
    average over the levels both moved the phantom volumes further from truth.
    """
    j = score.argmax(axis=1)
    rows = np.arange(score.shape[0])
    return best[rows, j], score[rows, j]


def dots(conc: np.ndarray, atoms: np.ndarray, idx: np.ndarray, chunk: int = 16384) -> np.ndarray:
    """(N,) float64 <conc[:, n], atoms[idx[n]]>, in voxel chunks (no (N, T) temporary)."""
    out = np.empty(idx.shape[0])
    for s in range(0, idx.shape[0], chunk):
        e = min(idx.shape[0], s + chunk)
        out[s:e] = np.einsum("tn,nt->n", conc[:, s:e], atoms[idx[s:e]])
    return out


def refine(dic: Dictionary, conc: np.ndarray, best: np.ndarray, score: np.ndarray) -> dict:
    """Sub-grid delay by a parabola through the scores of the neighbouring delays; then CBF, MTT, Tmax.

    conc : (T, N) float32 HU; best : (N,) atom index; score : (N,) its correlation <c, atom>.
    Returns (N,) float32 arrays "cbf" (mL/100 g/min), "mtt_fit" (s), "tmax" (s), "delay" (s).
    """
    n_delay, n_mtt, n_beta = dic.shape
    per_delay = n_mtt * n_beta
    di = best // per_delay
    lo = np.clip(di - 1, 0, n_delay - 1) * per_delay + best % per_delay
    hi = np.clip(di + 1, 0, n_delay - 1) * per_delay + best % per_delay
    s_lo = dots(conc, dic.atoms, lo)
    s_hi = dots(conc, dic.atoms, hi)
    den = s_lo - 2.0 * score + s_hi
    inner = (di > 0) & (di < n_delay - 1) & (den < 0)
    off = np.where(inner, 0.5 * (s_lo - s_hi) / np.where(den < 0, den, -1.0), 0.0)
    off = np.clip(off, -0.5, 0.5)
    peak = np.where(inner, score - 0.25 * (s_lo - s_hi) * off, score)
    delay = dic.delay_s[best] + off * dic.delay_step_s
    cbf = np.maximum(peak, 0.0) / dic.norms[best]
    mtt = dic.mtt_s[best]
    tmax = residue_tmax(delay, mtt, dic.beta_s[best])
    return {"cbf": cbf.astype(np.float32), "mtt_fit": mtt.astype(np.float32), "tmax": tmax.astype(np.float32),
            "delay": delay.astype(np.float32)}


def amplitude(dic: Dictionary, conc: np.ndarray, best: np.ndarray, delay: np.ndarray) -> np.ndarray:
    """CBF (mL/100 g/min) of conc (T, N) projected on the chosen atoms (shape fixed elsewhere).

    The model curve at a sub-grid delay is the linear interpolation u = (1-w) nb a_b + w no a_o of the
    two neighbouring unit-CBF curves; CBF = <c, u> / <u, u> (least squares).
    """
    n_delay, n_mtt, n_beta = dic.shape
    per_delay = n_mtt * n_beta
    di = best // per_delay
    frac = (delay - dic.delay_s[best]) / dic.delay_step_s  # in [-0.5, 0.5]
    other = np.clip(di + np.where(frac >= 0, 1, -1), 0, n_delay - 1) * per_delay + best % per_delay
    w = np.abs(frac).astype(np.float64)
    nb, no = dic.norms[best], dic.norms[other]
    cross = _pairdots(dic, best, other)
    num = (1 - w) * nb * dots(conc, dic.atoms, best) + w * no * dots(conc, dic.atoms, other)
    den = ((1 - w) * nb) ** 2 + (w * no) ** 2 + 2 * w * (1 - w) * nb * no * cross
    return np.maximum(num / np.maximum(den, 1e-12), 0.0).astype(np.float32)


def _pairdots(dic: Dictionary, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N,) <atoms[a], atoms[b]> for atom pairs that differ by at most one delay step."""
    per_delay = dic.shape[1] * dic.shape[2]
    atoms = dic.atoms.astype(np.float64)
    nxt = np.ones(atoms.shape[0])
    nxt[:-per_delay] = np.einsum("gt,gt->g", atoms[:-per_delay], atoms[per_delay:])  # <a_g, a_{g + one delay}>
    low = np.minimum(a, b)
    return np.where(a == b, 1.0, nxt[low])
