"""Versioned parametric residue model used for model-based CBF/Tmax estimation.

A tissue curve is modelled as ``(rho/k_H) * CBF * (AIF_d (x) R)(t)`` with R(0) = 1 from one of three
transit-time families, mean transit time MTT: ``exp`` exp(-t / MTT) (well mixed), ``box`` 1 for t < MTT
(plug flow) and ``gamma3`` 1 - P(3, 3 t / MTT) (gamma-distributed transit times, shape 3). AIF_d is the
measured AIF delayed by ``delay`` and dispersed by exp(-t / beta) / beta (the vascular model of
Calamante 2006 / Mehndiratta 2014). For a grid of (delay, MTT, shape = family x beta) the unit-CBF
curves are built once per series ("atoms"); every voxel then picks the atom with the largest normalized
correlation (a linear least-squares fit of CBF for each atom, solved for all voxels with one matrix
product), and the delay is refined between grid points by a parabola through the neighbouring scores.

``family_evidence`` compares the families on a whole series by cross-validation (the ``residue_shape`` warning);
the fit itself stays exponential.

Tmax = delay + the time of the maximum of the fitted effective residue (dispersion (x) R), the published
convention (exponential family: delay + beta*MTT*ln(MTT/beta)/(MTT-beta)); for plug flow, whose dispersed
residue climbs to a plateau, the time it reaches 95% of it (PEAK_FRACTION).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import special

MODEL_NAME = "exp-residue-dispersion-grid"
MODEL_VERSION = "1.2.0"
RHO_G_PER_ML = 1.04
K_H = 0.73
MTT_GRID_S = tuple(np.round(np.geomspace(1.5, 24.0, 13), 3))
#: (family, dispersion beta s) pairs: the "shape" axis of the grid. Exponential only, by measurement
#: (docs/perfusion.md): with box and gamma3 shapes (FAMILY_SHAPES) short-MTT atoms of another family matched
#: grey matter and inflated CBF 1.6-2x in some voxels and not others, so rCBF and the core got worse; with
#: box shapes used for Tmax only (CBF_SHAPES the exponential ones), Tmax > 6 s of plug-flow cases got worse too.
SHAPES = (("exp", 0.0), ("exp", 1.0), ("exp", 2.0), ("exp", 3.5))
FAMILY_SHAPES = SHAPES + (("box", 0.0), ("box", 1.0), ("box", 2.0), ("box", 3.5), ("gamma3", 0.0),
                          ("gamma3", 1.0), ("gamma3", 2.5))
CBF_SHAPES = tuple(i for i, (fam, _) in enumerate(SHAPES) if fam == "exp")
#: fraction of its maximum at which a family's effective residue counts as peaked: the maximum itself, except
#: for plug flow, whose dispersed residue climbs to a plateau (the same rule as the randomized phantom's truth)
PEAK_FRACTION = {"exp": 1.0, "box": 0.95, "gamma3": 1.0}
BETA_GRID_S = tuple(b for _, b in SHAPES)
DELAY_RANGE_S = (-3.0, 18.0)
FINE_STEPS = 10  # fine sub-steps per frame interval for the model convolution


@dataclass(frozen=True)
class Dictionary:
    """atoms : (G, T) float32 unit-norm curves; norms : (G,) float64 norm of the unit-CBF curve (HU per
    mL/100 g/min); delay_s, mtt_s, beta_s : (G,) parameters; family : (G,) index into SHAPES; peak_s : (G,)
    time (s) to the effective residue's peak (PEAK_FRACTION); shape (n_delay, n_mtt,
    n_shape) with delay varying slowest; delay_step_s : grid step of the delays."""

    atoms: np.ndarray
    norms: np.ndarray
    delay_s: np.ndarray
    mtt_s: np.ndarray
    beta_s: np.ndarray
    shape: tuple[int, int, int]
    delay_step_s: float
    family: np.ndarray
    peak_s: np.ndarray


def residue_tmax(delay_s, mtt_s, beta_s) -> np.ndarray:
    """Time to peak (s) of exp(-t/beta)/beta (x) exp(-t/MTT), delayed by ``delay_s`` (the analytic maximum)."""
    d, m, b = (np.asarray(v, dtype=np.float64) for v in (delay_s, mtt_s, beta_s))
    bs = np.where(b > 0, b, 1.0)
    ms = np.where(np.abs(m - bs) > 1e-6, m, m + 1e-3)
    peak = bs * ms * np.log(np.maximum(ms / bs, 1e-12)) / (ms - bs)
    return d + np.where(b > 0, peak, 0.0)


def residue(t: np.ndarray, family: str, mtt_s: float) -> np.ndarray:
    """R(t) (K,) of one family with mean transit time ``mtt_s``; t (K,) s from 0."""
    if family == "exp":
        return np.exp(-t / mtt_s)
    if family == "box":
        return (t < mtt_s).astype(np.float64)
    if family == "gamma3":
        return special.gammaincc(3.0, 3.0 * t / mtt_s)
    raise ValueError(f"Argument 'family' should be 'exp', 'box' or 'gamma3', got {family!r}.")


def effective_residue(t: np.ndarray, family: str, mtt_s: float, beta_s: float) -> np.ndarray:
    """exp(-t/beta)/beta (unit sum) (x) R on the uniform grid t (K,); R itself when beta is 0."""
    r = residue(t, family, mtt_s)
    if beta_s <= 0:
        return r
    disp = np.exp(-t / beta_s)
    disp /= disp.sum()
    return np.convolve(disp, r)[: t.size]


def time_to_fraction(t: np.ndarray, h: np.ndarray, fraction: float = 1.0) -> float:
    """First time (s, linear between samples) the curve h (K,) reaches ``fraction`` of its maximum."""
    level = fraction * h.max()
    i = int(np.argmax(h >= level))
    if i == 0:
        return float(t[0])
    y0, y1 = h[i - 1], h[i]
    w = (level - y0) / (y1 - y0) if y1 > y0 else 0.0
    return float(t[i - 1] + w * (t[i] - t[i - 1]))


def build_dictionary(aif: np.ndarray, dt_s: float, shapes: tuple[tuple[str, float], ...] = SHAPES) -> Dictionary:
    """Unit-CBF model curves for the measured AIF (T,) HU sampled every ``dt_s`` from t = 0, one per delay, MTT
    and (family, dispersion) pair of ``shapes``."""
    t = aif.shape[0]
    times = np.arange(t) * dt_s
    fine_dt = dt_s / FINE_STEPS
    fine_t = np.arange(0.0, times[-1] + fine_dt / 2, fine_dt)
    aif_f = np.interp(fine_t, times, np.asarray(aif, dtype=np.float64))
    step = dt_s / 2.0
    delays = np.arange(DELAY_RANGE_S[0], DELAY_RANGE_S[1] + 1e-9, step)
    mtts = np.asarray(MTT_GRID_S)
    scale = (RHO_G_PER_ML / K_H) / 6000.0 * fine_dt
    long_t = np.arange(0.0, max(fine_t[-1], 3.0 * mtts[-1]) + fine_dt / 2, fine_dt)  # whole residue for peak_s
    curves = np.empty((len(mtts), len(shapes), fine_t.size))
    peaks = np.empty((len(mtts), len(shapes)))
    for i, m in enumerate(mtts):
        for j, (fam, b) in enumerate(shapes):
            h = effective_residue(long_t, fam, m, b)
            if fam == "exp":  # exact
                peaks[i, j] = float(residue_tmax(0.0, m, b))
            else:
                peaks[i, j] = time_to_fraction(long_t, h, PEAK_FRACTION[fam])
            curves[i, j] = np.convolve(aif_f, h[: fine_t.size])[: fine_t.size] * scale
    # delay: sample each fine curve at times - delay (zero before the start)
    shifted = times[None, :] - delays[:, None]  # (n_delay, T)
    idx = shifted / fine_dt
    lo = np.clip(np.floor(idx).astype(int), 0, fine_t.size - 2)
    w = np.clip(idx - lo, 0.0, 1.0)
    valid = shifted >= 0
    c_lo = curves[:, :, lo]  # (n_mtt, n_shape, n_delay, T)
    c_hi = curves[:, :, lo + 1]
    sampled = np.where(valid, c_lo * (1 - w) + c_hi * w, 0.0)
    atoms = np.transpose(sampled, (2, 0, 1, 3)).reshape(-1, t)  # (n_delay * n_mtt * n_shape, T)
    norms = np.linalg.norm(atoms, axis=1)
    atoms = atoms / np.maximum(norms, 1e-12)[:, None]
    n_shape = len(shapes)
    dd, mm, jj = np.meshgrid(delays, mtts, np.arange(n_shape), indexing="ij")
    betas = np.asarray([b for _, b in shapes])[jj.ravel()]
    # No atom disperses longer than its MTT (1.2.0): exp(-t/b)/b (x) exp(-t/m) is m/b times exp(-t/m)/m (x) exp(-t/b),
    # so the two stages can be swapped and no data tell them apart. With both orders, noise sent healthy voxels to the
    # short-MTT order with b/m times their CBF (2-4x), inflating the reference and the core, most on clean scans
    # (docs/perfusion.md, "Round 5"). By convention the faster stage is the arterial dispersion. A zero atom
    # correlates with nothing, so it is never chosen.
    atoms[betas > mm.ravel() + 1e-9] = 0.0
    pk = np.broadcast_to(peaks[None], (len(delays), len(mtts), n_shape))
    return Dictionary(atoms=atoms.astype(np.float32), norms=norms, delay_s=dd.ravel(), mtt_s=mm.ravel(),
                      beta_s=betas, shape=(len(delays), len(mtts), n_shape),
                      delay_step_s=step, family=jj.ravel(), peak_s=pk.ravel().copy())


def select(best: np.ndarray, score: np.ndarray, groups: tuple[int, ...] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The best atom over the shape groups (all, or the listed ones). best, score : (N, n_shape) -> (N,), (N,).

    Measured alternatives (docs/perfusion.md): an AIC-style penalty on dispersion and a posterior
    average over the levels both moved the phantom volumes further from truth.
    """
    if groups is not None:
        best, score = best[:, list(groups)], score[:, list(groups)]
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
    tmax = delay + dic.peak_s[best]
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


#: residue families compared by ``family_evidence`` (the fit itself uses SHAPES, exponential only)
EVIDENCE_FAMILIES = ("exp", "gamma3", "box")
EVIDENCE_VOXELS = 4000


def family_evidence(aif: np.ndarray, dt_s: float, conc: np.ndarray, backend, n_max: int = EVIDENCE_VOXELS,
                    fitted: Dictionary | None = None) -> dict:
    """How well each residue family of EVIDENCE_FAMILIES (with the fit's dispersions) explains the tissue curves.

    conc : (T, N) float32 HU (the shape-smoothed curves). Up to ``n_max`` voxels, evenly strided, are fitted by
    two-fold cross-validation over the frames: the best atom and its amplitude are chosen on the even frames and
    the residual is measured on the odd ones, then the other way round. A family with more freedom cannot win
    by fitting noise, because the noise of the left-out frames is independent of the fit. Returns
    {"residual": {family: left-out residual energy / signal energy}, "best": family, "voxels": n}. ``fitted``:
    the fit's own dictionary (``build_dictionary(aif, dt_s)``), reused for the family whose shapes are SHAPES.
    """
    n = conc.shape[1]
    sub = np.ascontiguousarray(conc[:, :: max(1, n // n_max)], dtype=np.float32)
    energy = float(np.sum(np.square(sub, dtype=np.float64)))
    if not energy > 0:  # no signal: nothing to compare
        return {"residual": {}, "best": None, "voxels": int(sub.shape[1])}
    out: dict[str, float] = {}
    for fam in EVIDENCE_FAMILIES:
        shapes = tuple((fam, b) for _, b in SHAPES)
        dic = fitted if fitted is not None and shapes == SHAPES else build_dictionary(aif, dt_s, shapes)
        res = 0.0
        for fit_rows, test_rows in ((slice(0, None, 2), slice(1, None, 2)), (slice(1, None, 2), slice(0, None, 2))):
            part = dic.atoms[:, fit_rows].astype(np.float64)
            pnorm = np.linalg.norm(part, axis=1)
            unit = (part / np.maximum(pnorm, 1e-12)[:, None]).astype(np.float32)
            best, score = backend.match(np.ascontiguousarray(sub[fit_rows]), unit, 1)
            best, amp = best[:, 0], np.maximum(score[:, 0], 0.0) / np.maximum(pnorm[best[:, 0]], 1e-12)
            pred = amp[:, None] * dic.atoms[best][:, test_rows]  # (n, T/2)
            res += float(np.sum(np.square(sub[test_rows].T - pred, dtype=np.float64)))
        out[fam] = res / energy
    return {"residual": out, "best": min(out, key=out.get), "voxels": int(sub.shape[1])}
