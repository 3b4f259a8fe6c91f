"""Indicator-dilution physics shared by the phantoms: AIF, residue, tissue curves, true Tmax.

Tissue enhancement follows ``dHU(t) = (rho / k_H) * CBF * (AIF_d (x) R)(t)`` with ``R(t) = exp(-t / MTT)``,
``CBV = CBF * MTT`` and ``AIF_d`` the AIF delayed by ``delay`` and dispersed by the unit-area kernel
``exp(-t / beta) / beta`` (Calamante 2006 style vascular model).
"""

from __future__ import annotations

import numpy as np

RHO_G_PER_ML = 1.04
K_H = 0.73
FINE_DT_S = 0.05


def gamma_variate(t: np.ndarray, t0: float, alpha: float, beta: float) -> np.ndarray:
    """Unit-peak gamma variate starting at ``t0``: ((t-t0)/(alpha beta))^alpha exp(alpha - (t-t0)/beta)."""
    s = np.clip(t - t0, 0.0, None) / (alpha * beta)
    return np.where(t > t0, s**alpha * np.exp(alpha * (1.0 - s)), 0.0)


def arterial_curve(t: np.ndarray, *, arrival_s: float, peak_hu: float, alpha: float = 3.0, beta: float = 1.5,
                   recirculation: float = 0.12) -> np.ndarray:
    """True arterial enhancement (HU): a gamma-variate first pass plus a later, broader recirculation.

    t : (K,) seconds. The recirculation peak is ``recirculation * peak_hu``, 9 s after the first pass peak.
    """
    first = gamma_variate(t, arrival_s, alpha, beta)
    recirc = gamma_variate(t, arrival_s + 9.0, 3.0, 3.0)
    return peak_hu * (first + recirculation * recirc)


def dispersed_delayed(fine_t: np.ndarray, curve: np.ndarray, delay_s: float, beta_s: float) -> np.ndarray:
    """curve (K,) on the fine grid, delayed by ``delay_s`` and convolved with exp(-t/beta)/beta."""
    shifted = np.interp(fine_t - delay_s, fine_t, curve, left=0.0, right=curve[-1])
    if beta_s <= 0:
        return shifted
    kernel = np.exp(-fine_t / beta_s) / beta_s * FINE_DT_S
    kernel /= kernel.sum()
    return np.convolve(shifted, kernel)[: fine_t.size]


def tissue_curve(fine_t: np.ndarray, aif_true: np.ndarray, *, cbf: float, cbv: float, delay_s: float,
                 beta_s: float) -> np.ndarray:
    """Tissue enhancement (HU) on the fine grid. cbf mL/100 g/min, cbv mL/100 g (MTT = CBV / CBF)."""
    if cbf <= 0 or cbv <= 0:
        return np.zeros_like(fine_t)
    mtt = 60.0 * cbv / cbf
    inflow = dispersed_delayed(fine_t, aif_true, delay_s, beta_s)
    residue = np.exp(-fine_t / mtt)
    f = cbf / 6000.0  # mL/g/s
    return (RHO_G_PER_ML / K_H) * f * np.convolve(inflow, residue)[: fine_t.size] * FINE_DT_S


def true_tmax(delay_s: np.ndarray, beta_s: np.ndarray, mtt_s: np.ndarray) -> np.ndarray:
    """Time to the peak of the delayed, dispersed residue exp(-t/beta)/beta (x) exp(-t/MTT), in s."""
    d, b, m = (np.asarray(v, dtype=np.float64) for v in (delay_s, beta_s, mtt_s))
    b_safe = np.where(b > 0, b, 1.0)
    m_safe = np.where(np.abs(m - b_safe) > 1e-6, m, m + 1e-3)
    peak = b_safe * m_safe * np.log(np.maximum(m_safe / b_safe, 1e-12)) / (m_safe - b_safe)
    return d + np.where(b > 0, peak, 0.0)


def sample(fine_t: np.ndarray, curve: np.ndarray, times_s: np.ndarray) -> np.ndarray:
    """Point-sample a fine-grid curve at acquisition times."""
    return np.interp(times_s, fine_t, curve)
