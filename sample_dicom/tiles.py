"""Kudo-style tile phantom (Kudo 2010): a grid of CBF x MTT tiles, one slice per bolus delay.

Each tile is a homogeneous square of tissue with known CBF, CBV = CBF * MTT and delay (no dispersion),
separated by non-enhancing gaps. The arterial input is given with the phantom, as in Kudo's digital
phantom, so per-voxel map accuracy is measured without the AIF search.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sample_dicom import physics

CBF_VALUES = (10.0, 20.0, 35.0, 50.0, 70.0)
MTT_VALUES = (3.0, 5.0, 8.0, 12.0)
DELAY_VALUES = (0.0, 1.0, 2.0, 3.0, 4.0)


@dataclass(frozen=True)
class TilePhantom:
    """hu : (T, Z, Y, X) float32 (Z = delays); times_s (T,); aif_hu (T,) arterial enhancement;
    truth_maps : cbf, cbv, mtt, delay (Z, Y, X) float32 and ``tile`` (Z, Y, X) bool (tile interiors);
    spacing_mm (dz, dy, dx); truth : JSON-safe parameters."""

    hu: np.ndarray
    times_s: np.ndarray
    aif_hu: np.ndarray
    truth_maps: dict
    spacing_mm: tuple[float, float, float]
    truth: dict


def make_tile_phantom(*, seed: int = 0, tile_px: int = 12, gap_px: int = 8, n_times: int = 40, dt_s: float = 1.5,
                      noise_hu: float = 5.0, aif_peak_hu: float = 400.0, arrival_s: float = 6.0,
                      cbf_values=CBF_VALUES, mtt_values=MTT_VALUES, delay_values=DELAY_VALUES,
                      spacing_mm: tuple[float, float, float] = (5.0, 1.8, 1.8)) -> TilePhantom:
    """Build the tile phantom: rows are CBF values, columns MTT values, slices delays."""
    rng = np.random.default_rng(seed)
    pitch = tile_px + gap_px
    ny, nx, nz = len(cbf_values) * pitch + gap_px, len(mtt_values) * pitch + gap_px, len(delay_values)
    times = np.arange(n_times) * dt_s
    fine_t = np.arange(0.0, times[-1] + 30.0, physics.FINE_DT_S)
    aif_true = physics.arterial_curve(fine_t, arrival_s=arrival_s, peak_hu=aif_peak_hu)
    maps = {k: np.zeros((nz, ny, nx), np.float32) for k in ("cbf", "cbv", "mtt", "delay")}
    tile = np.zeros((nz, ny, nx), bool)
    hu = np.full((n_times, nz, ny, nx), 35.0, np.float32)
    for z, d in enumerate(delay_values):
        for r, f in enumerate(cbf_values):
            for c, m in enumerate(mtt_values):
                v = f * m / 60.0
                curve = physics.sample(fine_t, physics.tissue_curve(fine_t, aif_true, cbf=f, cbv=v, delay_s=d,
                                                                    beta_s=0.0), times)
                ys, xs = slice(gap_px + r * pitch, gap_px + r * pitch + tile_px), slice(gap_px + c * pitch,
                                                                                      gap_px + c * pitch + tile_px)
                hu[:, z, ys, xs] += curve[:, None, None].astype(np.float32)
                for key, val in (("cbf", f), ("cbv", v), ("mtt", m), ("delay", d)):
                    maps[key][z, ys, xs] = val
                tile[z, ys.start + 2: ys.stop - 2, xs.start + 2: xs.stop - 2] = True
    hu += rng.standard_normal(hu.shape, dtype=np.float32) * np.float32(noise_hu)
    maps["tile"] = tile
    truth = {"seed": seed, "noise_hu": noise_hu, "dt_s": dt_s, "n_times": n_times, "cbf_values": list(cbf_values),
             "mtt_values": list(mtt_values), "delay_values": list(delay_values), "tile_px": tile_px}
    return TilePhantom(hu=hu, times_s=times, aif_hu=physics.sample(fine_t, aif_true, times).astype(np.float32),
                       truth_maps=maps, spacing_mm=tuple(map(float, spacing_mm)), truth=truth)
