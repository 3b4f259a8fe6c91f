"""Residue families, dispersion kernels and the Tmax definition of the randomized phantom.

Independent of the engine's model (``models.residue``): the phantom draws its own transit-time families
so that the engine is tested on shapes it was not built around.

- residue R(t) (fraction of a unit bolus still in the voxel), mean transit time MTT:
  ``exp``: exp(-t / MTT) (well-mixed compartment);
  ``box``: 1 for t < MTT, else 0 (plug flow, every particle takes MTT);
  ``gamma``: 1 - P(k, k t / MTT), transit times gamma-distributed with shape k (k = 1 is ``exp``).
- dispersion kernel of the arterial input on its way from the measured artery to the tissue, unit
  area, mean ``beta``: ``exp``: exp(-t / beta) / beta; ``gamma2``: gamma of shape 2 (peaked, realistic
  for a long vessel).
- Tmax (s) = delay + the time of the maximum of the effective residue (dispersion kernel (x) R), the
  published convention. Plug flow with dispersion is the exception: its effective residue climbs to a
  plateau whose maximum sits at the far end (t = MTT) by a hair, a point no deconvolution can locate, so
  for ``box`` the time the effective residue first reaches ``PLATEAU_FRACTION`` of its maximum is used.
"""

from __future__ import annotations

import numpy as np
from scipy import special

FAMILIES = ("exp", "box", "gamma")
KERNELS = ("exp", "gamma2")
PLATEAU_FRACTION = 0.95


def residue(t: np.ndarray, family: str, mtt_s: np.ndarray, shape_k: float = 3.0) -> np.ndarray:
    """R(t) for each MTT: t (K,) s, mtt_s (M,) s -> (M, K) float64."""
    m = np.asarray(mtt_s, np.float64)[:, None]
    tt = np.asarray(t, np.float64)[None, :]
    if family == "exp":
        return np.exp(-tt / m)
    if family == "box":
        return (tt < m).astype(np.float64)
    if family == "gamma":
        return special.gammaincc(shape_k, shape_k * tt / m)
    raise ValueError(f"Argument 'family' should be one of {FAMILIES}, got {family!r}.")


def kernel(t: np.ndarray, kind: str, beta_s: float) -> np.ndarray | None:
    """Unit-sum dispersion kernel (K,) with mean ``beta_s`` on the uniform grid t, or None for no dispersion."""
    if beta_s <= 0:
        return None
    if kind == "exp":
        k = np.exp(-t / beta_s)
    elif kind == "gamma2":
        theta = beta_s / 2.0
        k = t / theta * np.exp(-t / theta)
    else:
        raise ValueError(f"Argument 'kind' should be one of {KERNELS}, got {kind!r}.")
    return k / k.sum()


def effective_residues(t: np.ndarray, family: str, mtt_s: np.ndarray, kind: str, beta_s: float,
                       shape_k: float = 3.0) -> np.ndarray:
    """Dispersion kernel (x) R for each MTT: (M, K) on the uniform grid t (unit-sum kernel, so R(0) = 1 stays
    the scale: the amplitude in front of it is CBF)."""
    r = residue(t, family, mtt_s, shape_k)
    k = kernel(t, kind, beta_s)
    if k is None:
        return r
    n = t.size
    size = 1 << int(np.ceil(np.log2(2 * n)))
    out = np.fft.irfft(np.fft.rfft(r, size, axis=1) * np.fft.rfft(k, size)[None, :], size, axis=1)[:, :n]
    return out


def time_to_max(t: np.ndarray, h: np.ndarray, fraction: float = 1.0) -> np.ndarray:
    """First time each row of h (M, K) reaches ``fraction`` of its maximum (s, linear between samples;
    fraction 1: the time of the maximum)."""
    peak = h.max(axis=1, keepdims=True)
    level = fraction * peak
    i = np.argmax(h >= level, axis=1)
    rows = np.arange(h.shape[0])
    prev = np.maximum(i - 1, 0)
    y0, y1 = h[rows, prev], h[rows, i]
    w = np.where((i > 0) & (y1 > y0), (level[:, 0] - y0) / np.where(y1 > y0, y1 - y0, 1.0), 0.0)
    return np.where(i > 0, t[prev] + w * (t[i] - t[prev]), t[0])


def tissue_curves(fine_t: np.ndarray, aif_true: np.ndarray, h: np.ndarray, fine_dt: float) -> np.ndarray:
    """Unit-CBF (1 mL/100 g/min) undelayed tissue enhancement (M, K) HU = (rho/k_H)/6000 * AIF (x) h * dt."""
    rho, k_h = 1.04, 0.73
    n = fine_t.size
    size = 1 << int(np.ceil(np.log2(2 * n)))
    conv = np.fft.irfft(np.fft.rfft(h, size, axis=1) * np.fft.rfft(aif_true, size)[None, :], size, axis=1)[:, :n]
    return conv * (rho / k_h) / 6000.0 * fine_dt
