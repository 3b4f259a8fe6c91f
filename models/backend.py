"""The backend protocol: the few heavy kernels of the perfusion pipeline.

Everything else in ``triage.perfusion`` is light numpy. A backend takes and returns numpy arrays so
that the pipeline does not care where the arithmetic ran.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from telerad.errors import UsageError

#: Name -> "module:class" of every backend.
BACKENDS: dict[str, str] = {
    "numpy": "models.numpy_backend:NumpyBackend",
    "torch": "models.torch_backend:TorchBackend",
}

#: Relative singular-value thresholds tried per voxel by the oscillation-index SVD, smallest first.
OSVD_THRESHOLDS: tuple[float, ...] = (0.02, 0.04, 0.06, 0.09, 0.13, 0.18, 0.25, 0.35)


@dataclass(frozen=True)
class Deconvolved:
    """Per-voxel summary of the deconvolved residue function k(t) = (rho/k_H) * CBF * R(t).

    peak : (N,) float32, max of k (1/s, before the k_H/rho factor)
    tmax_s : (N,) float32, sub-sample time of that max in seconds (negative when tissue leads the AIF)
    threshold : (N,) float32, relative SVD threshold the oscillation index chose
    """

    peak: np.ndarray
    tmax_s: np.ndarray
    threshold: np.ndarray


@runtime_checkable
class Backend(Protocol):
    name: str
    version: str
    device: str

    def deconvolve(self, conc: np.ndarray, aif: np.ndarray, dt_s: float, *, oi_max: float) -> Deconvolved:
        """Block-circulant oscillation-index SVD deconvolution (Wu 2003).

        conc : (T, N) float32 tissue enhancement in HU; aif : (T,) arterial enhancement in HU.
        """

    def match(self, conc: np.ndarray, atoms: np.ndarray, n_groups: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """Best-correlating atom per voxel within each of ``n_groups`` interleaved groups (atom g belongs
        to group g % n_groups). conc : (T, N) float32; atoms : (G, T) float32 unit-norm.
        Returns best (N, n_groups) int64 atom indices and score (N, n_groups) float32 = <conc, atom>."""

    def smooth_inplane(self, arr: np.ndarray, sigma_px: float, weight: np.ndarray | None = None) -> np.ndarray:
        """Gaussian filter over the last two axes, normalized by ``weight`` (normalized convolution).

        arr : (..., Y, X) float32; weight : broadcastable (..., Y, X) 0/1 mask or None.
        Voxels outside ``weight`` do not contribute; returns float32 of arr's shape.
        """


def get_backend(name: str = "numpy", device: str = "cpu") -> Backend:
    """Instantiate the backend called ``name`` on ``device`` ("cpu" or "cuda")."""
    if name not in BACKENDS:
        raise UsageError(f"Argument 'backend' should be one of {sorted(BACKENDS)}, got {name!r}.")
    if device not in ("cpu", "cuda") and not device.startswith("cuda:"):
        raise UsageError(f"Argument 'device' should be 'cpu' or 'cuda', got {device!r}.")
    if name == "numpy" and device != "cpu":
        raise UsageError("The numpy backend runs on the CPU only; use --backend torch for --device cuda.")
    module_name, cls_name = BACKENDS[name].split(":")
    import importlib

    cls = getattr(importlib.import_module(module_name), cls_name)
    return cls(device=device)


def circulant_pinvs(aif: np.ndarray, dt_s: float, thresholds: tuple[float, ...] = OSVD_THRESHOLDS) -> np.ndarray:
    """Truncated pseudo-inverses of the zero-padded block-circulant AIF matrix.

    aif : (T,) HU. Returns (n_thresholds, 2T, T) float64: row block i maps a (T,) tissue curve to
    the (2T,) residue k(t) estimated with singular values below ``thresholds[i] * max`` dropped.
    """
    a = np.asarray(aif, dtype=np.float64)
    t = a.shape[0]
    length = 2 * t
    a_pad = np.concatenate([a, np.zeros(t)])
    idx = (np.arange(length)[:, None] - np.arange(length)[None, :]) % length
    d = dt_s * a_pad[idx]
    u, s, vt = np.linalg.svd(d)
    out = np.empty((len(thresholds), length, t))
    for i, thr in enumerate(thresholds):
        s_inv = np.where(s > thr * s[0], 1.0 / np.maximum(s, 1e-12), 0.0)
        out[i] = (vt.T * s_inv) @ u.T[:, :t]
    return out


def gaussian_kernel(sigma_px: float) -> np.ndarray:
    """Normalized 1D Gaussian taps, radius int(4 sigma + 0.5) (float64)."""
    radius = max(1, int(4.0 * sigma_px + 0.5))
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    w = np.exp(-0.5 * (x / sigma_px) ** 2)
    return w / w.sum()

