"""Reference backend: numpy + scipy.ndimage (float32 BLAS)."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from models.backend import OSVD_THRESHOLDS, Deconvolved, circulant_pinvs, gaussian_kernel

CHUNK_VOXELS = 4096  # bounds the (n_thr, 2T, chunk) residues and their temporaries (~40 MB)
MATCH_CHUNK = 2048  # (chunk, n_atoms) scores: ~12 MB
SMOOTH_CHUNK = 1 << 21  # voxels filtered per block (bounds the temporaries)


def choose_and_peak(k: np.ndarray, oi_max: float, t: int, dt_s: float):
    """Oscillation-index threshold choice (Wu 2003) and parabolic sub-sample peak of the residue.

    k : (n_thr, L, N) residues for each threshold. Returns (peak (N,), tmax_s (N,), choice (N,)).
    """
    n_thr, length, n = k.shape
    kmax = k.max(axis=1)  # (n_thr, N)
    d2 = np.abs(k[:, 2:] - 2.0 * k[:, 1:-1] + k[:, :-2]).sum(axis=1)
    oi = d2 / (length * np.maximum(kmax, 1e-6))
    ok = (oi <= oi_max) & (kmax > 0)
    choice = np.where(ok.any(axis=0), ok.argmax(axis=0), n_thr - 1)
    cols = np.arange(n)
    kc = k[choice, :, cols]  # (N, L)
    i = kc.argmax(axis=1)
    y1 = kc[cols, i]
    y0 = kc[cols, (i - 1) % length]
    y2 = kc[cols, (i + 1) % length]
    den = y0 - 2.0 * y1 + y2
    safe = np.where(np.abs(den) > 1e-12, den, -1.0)
    off = np.where(den < 0, 0.5 * (y0 - y2) / safe, 0.0)
    off = np.clip(off, -0.5, 0.5)
    peak = y1 - 0.25 * (y0 - y2) * off
    pos = i + off
    pos = np.where(pos > 1.5 * t, pos - length, pos)
    return peak, pos * dt_s, choice


class NumpyBackend:
    """numpy/scipy implementation of :class:`models.backend.Backend`."""

    name = "numpy"
    version = "1.0.0"

    def __init__(self, device: str = "cpu") -> None:
        self.device = device

    def deconvolve(self, conc: np.ndarray, aif: np.ndarray, dt_s: float, *, oi_max: float) -> Deconvolved:
        t, n = conc.shape
        pinv = circulant_pinvs(aif, dt_s).astype(np.float32)  # (n_thr, L, T)
        n_thr, length, _ = pinv.shape
        flat = pinv.reshape(n_thr * length, t)
        thr = np.asarray(OSVD_THRESHOLDS, dtype=np.float32)
        peak = np.empty(n, np.float32)
        tmax = np.empty(n, np.float32)
        used = np.empty(n, np.float32)
        c32 = np.ascontiguousarray(conc, dtype=np.float32)
        for s in range(0, n, CHUNK_VOXELS):
            e = min(n, s + CHUNK_VOXELS)
            k = (flat @ c32[:, s:e]).reshape(n_thr, length, e - s)
            p, tm, ch = choose_and_peak(k, oi_max, t, dt_s)
            peak[s:e], tmax[s:e], used[s:e] = p, tm, thr[ch]
        return Deconvolved(peak=peak, tmax_s=tmax, threshold=used)

    def match(self, conc: np.ndarray, atoms: np.ndarray, n_groups: int = 1) -> tuple[np.ndarray, np.ndarray]:
        t, n = conc.shape
        g = atoms.shape[0]
        best = np.empty((n, n_groups), np.int64)
        score = np.empty((n, n_groups), np.float32)
        at = np.ascontiguousarray(atoms.T, dtype=np.float32)  # (T, G)
        ct = np.ascontiguousarray(conc.T, dtype=np.float32)  # (N, T)
        rows = np.arange(MATCH_CHUNK)[:, None]
        grp = np.arange(n_groups)[None, :]
        for s in range(0, n, MATCH_CHUNK):
            e = min(n, s + MATCH_CHUNK)
            sc = (ct[s:e] @ at).reshape(e - s, g // n_groups, n_groups)
            b = sc.argmax(axis=1)  # (n, n_groups)
            best[s:e] = b * n_groups + grp
            score[s:e] = sc[rows[: e - s], b, grp]
        return best, score

    def smooth_inplane(self, arr: np.ndarray, sigma_px: float, weight: np.ndarray | None = None) -> np.ndarray:
        taps = gaussian_kernel(sigma_px).astype(np.float32)
        a = np.asarray(arr, dtype=np.float32)
        out = np.empty(a.shape, np.float32)
        den = None
        if weight is not None:
            w = np.asarray(weight, dtype=np.float32)
            den = ndimage.correlate1d(w, taps, axis=-1, mode="nearest")
            ndimage.correlate1d(den, taps, axis=-2, mode="nearest", output=den)
            np.maximum(den, 1e-3, out=den)
        lead = a.reshape((-1,) + a.shape[-2:]) if a.ndim > 2 else a[None]
        res = out.reshape(lead.shape)
        step = max(1, SMOOTH_CHUNK // max(1, lead[0].size))
        per = int(np.prod(a.shape[1:-2])) if a.ndim > 3 else 1  # planes per leading index (weight repeats)
        for s in range(0, lead.shape[0], step):
            e = min(lead.shape[0], s + step)
            block = lead[s:e]
            if den is not None:
                wb = np.broadcast_to(np.asarray(weight, np.float32).reshape((-1,) + a.shape[-2:]), (per,) + a.shape[-2:])
                idx = np.arange(s, e) % wb.shape[0]
                block = block * wb[idx]
            tmp = ndimage.correlate1d(block, taps, axis=-1, mode="nearest")
            ndimage.correlate1d(tmp, taps, axis=-2, mode="nearest", output=res[s:e])
            if den is not None:
                dd = np.broadcast_to(den.reshape((-1,) + a.shape[-2:]), (per,) + a.shape[-2:])
                res[s:e] /= dd[np.arange(s, e) % dd.shape[0]]
        return out
