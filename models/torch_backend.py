"""torch backend (CPU or CUDA): the same kernels as ``models.numpy_backend``, float32.

torch is imported lazily, here only; install it with the ``telerad[torch]`` extra.
"""

from __future__ import annotations

import numpy as np

from models.backend import OSVD_THRESHOLDS, Deconvolved, circulant_pinvs, gaussian_kernel
from telerad.errors import UsageError

CHUNK_VOXELS = 65536


def _torch():
    try:
        import torch
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise UsageError("The torch backend needs PyTorch: install the 'telerad[torch]' extra "
                         "(pip install 'telerad[torch]').") from exc
    return torch


class TorchBackend:
    """torch implementation of :class:`models.backend.Backend`."""

    name = "torch"
    version = "1.0.0"

    def __init__(self, device: str = "cpu") -> None:
        torch = _torch()
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise UsageError("Argument 'device' is 'cuda' but torch sees no CUDA device; use --device cpu.")
        self.torch = torch
        self.device = device
        self._dev = torch.device(device)

    def _t(self, a: np.ndarray):
        return self.torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)).to(self._dev)

    def deconvolve(self, conc: np.ndarray, aif: np.ndarray, dt_s: float, *, oi_max: float) -> Deconvolved:
        torch = self.torch
        t, n = conc.shape
        pinv = circulant_pinvs(aif, dt_s).astype(np.float32)
        n_thr, length, _ = pinv.shape
        flat = self._t(pinv.reshape(n_thr * length, t))
        thr = self._t(np.asarray(OSVD_THRESHOLDS, np.float32))
        c = self._t(conc)
        peaks, tmaxs, used = [], [], []
        for s in range(0, n, CHUNK_VOXELS):
            e = min(n, s + CHUNK_VOXELS)
            k = (flat @ c[:, s:e]).reshape(n_thr, length, e - s)
            kmax = k.amax(dim=1)
            d2 = (k[:, 2:] - 2.0 * k[:, 1:-1] + k[:, :-2]).abs().sum(dim=1)
            oi = d2 / (length * kmax.clamp_min(1e-6))
            ok = (oi <= oi_max) & (kmax > 0)
            first = ok.to(torch.int8).argmax(dim=0)
            choice = torch.where(ok.any(dim=0), first, torch.full_like(first, n_thr - 1))
            cols = torch.arange(e - s, device=self._dev)
            kc = k[choice, :, cols]  # (N, L)
            i = kc.argmax(dim=1)
            y1 = kc[cols, i]
            y0 = kc[cols, (i - 1) % length]
            y2 = kc[cols, (i + 1) % length]
            den = y0 - 2.0 * y1 + y2
            safe = torch.where(den.abs() > 1e-12, den, torch.full_like(den, -1.0))
            off = torch.where(den < 0, 0.5 * (y0 - y2) / safe, torch.zeros_like(den)).clamp(-0.5, 0.5)
            peaks.append(y1 - 0.25 * (y0 - y2) * off)
            pos = i.to(torch.float32) + off
            pos = torch.where(pos > 1.5 * t, pos - length, pos)
            tmaxs.append(pos * dt_s)
            used.append(thr[choice])
        return Deconvolved(peak=torch.cat(peaks).cpu().numpy(), tmax_s=torch.cat(tmaxs).cpu().numpy(),
                           threshold=torch.cat(used).cpu().numpy())

    def match(self, conc: np.ndarray, atoms: np.ndarray, n_groups: int = 1) -> tuple[np.ndarray, np.ndarray]:
        torch = self.torch
        t, n = conc.shape
        g = atoms.shape[0]
        at = self._t(atoms.T)  # (T, G)
        ct = self._t(conc.T)  # (N, T)
        grp = torch.arange(n_groups, device=self._dev)[None, :]
        bests, scores = [], []
        step = max(1024, CHUNK_VOXELS // max(1, g // 256))
        for s in range(0, n, step):
            e = min(n, s + step)
            sc = (ct[s:e] @ at).reshape(e - s, g // n_groups, n_groups)
            val, b = sc.max(dim=1)
            bests.append(b * n_groups + grp)
            scores.append(val)
        return torch.cat(bests).cpu().numpy().astype(np.int64), torch.cat(scores).cpu().numpy()

    def _blur(self, x):
        """x : (B, Y, X) tensor -> separable Gaussian with replicate padding (scipy mode='nearest')."""
        f = self.torch.nn.functional
        taps = self._taps
        r = (taps.numel() - 1) // 2
        y = f.pad(x[:, None], (r, r, r, r), mode="replicate")  # (B, 1, Y + 2r, X + 2r)
        y = f.conv2d(y, taps.view(1, 1, 1, -1))
        y = f.conv2d(y, taps.view(1, 1, -1, 1))
        return y[:, 0]

    def smooth_inplane(self, arr: np.ndarray, sigma_px: float, weight: np.ndarray | None = None) -> np.ndarray:
        self._taps = self._t(gaussian_kernel(sigma_px))
        a = self._t(arr)
        shape = a.shape
        flat = a.reshape(-1, shape[-2], shape[-1])
        if weight is None:
            return self._blur(flat).reshape(shape).cpu().numpy()
        w = self._t(np.asarray(weight, np.float32))
        wb = w.expand(shape).reshape(-1, shape[-2], shape[-1])
        num = self._blur(flat * wb)
        den = self._blur(w.reshape(-1, shape[-2], shape[-1]))
        den = den.reshape(w.shape).expand(shape).reshape(-1, shape[-2], shape[-1])
        return (num / den.clamp_min(1e-3)).reshape(shape).cpu().numpy()
