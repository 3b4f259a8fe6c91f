"""Digital CT-perfusion head phantom with known perfusion and ground truth (array level).

``make_phantom(...)`` builds a ``PerfusionSeries`` (hu (T, Z, Y, X) float32, LPS affine) of a head with
scalp, skull, CSF (subarachnoid, fissure, ventricles), grey and white matter, deep grey nuclei, two
middle cerebral arteries, a superior sagittal sinus and an optional MCA-territory lesion made of nested
zones (benign oligaemia, penumbra, severe hypoperfusion, core) with known CBF, CBV, MTT, delay and
dispersion. ``truth`` holds the volumes the pipeline must reproduce, computed from the true maps with the
same definitions as the pipeline: core = CBF / mean healthy contralateral CBF < 0.3; Tmax > 6 s; Tmax > 10 s.
The Kudo-style tile phantom lives in ``sample_dicom.tiles``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from sample_dicom import physics
from sample_dicom.tiles import TilePhantom, make_tile_phantom
from triage.series import PerfusionSeries

__all__ = ["Phantom", "TilePhantom", "make_phantom", "make_tile_phantom", "LABELS", "TISSUE"]

#: Label values of the anatomy map.
LABELS = {"air": 0, "scalp": 1, "skull": 2, "csf": 3, "gm": 4, "wm": 5, "artery": 6, "sinus": 7}
BASE_HU = {0: -1000.0, 1: 40.0, 2: 1100.0, 3: 8.0, 4: 38.0, 5: 28.0, 6: 45.0, 7: 45.0}
#: Normal tissue: CBF mL/100 g/min, CBV mL/100 g, delay s, dispersion s.
TISSUE = {"gm": (60.0, 4.0, 0.5, 0.5), "wm": (25.0, 2.0, 0.5, 0.5)}
#: Lesion zones: CBF factor, CBV factor, delay (s, "+" relative to delay_s), dispersion s.
ZONES = {
    "oligemia": (0.90, 1.05, 1.5, 1.0),
    "penumbra": (0.75, 1.10, 0.0, 1.5),
    "severe": (0.70, 1.00, 4.0, 2.0),
    "core": (0.12, 0.35, 5.0, 2.0),
}
ZONE_RADII_MM = {"oligemia": (33.0, 50.0, 36.0), "penumbra": (27.0, 41.0, 30.0), "severe": (21.0, 32.0, 25.0),
                 "core": (15.0, 21.0, 19.0)}
ARTERY_PV = 0.75  # fraction of the true arterial signal seen in the small artery's voxels


@dataclass(frozen=True)
class Phantom:
    """series: the CTP; truth: JSON-safe numbers; truth_maps: (Z, Y, X) cbf, cbv, mtt, delay, tmax, core,
    tmax6, tmax10, tissue (bool masks for the last four) and the int8 ``labels``."""

    series: PerfusionSeries
    truth: dict
    truth_maps: dict


def _anatomy(shape, spacing_mm, rng, lesion: str, core_scale: float, penumbra_scale: float):
    """Label map (Z, Y, X) int8 and lesion zone map (Z, Y, X) int8 (0 none, 1..4 oligemia..core)."""
    nz, ny, nx = shape
    dz, dy, dx = spacing_mm
    z = (np.arange(nz) - (nz - 1) / 2) * dz
    y = (np.arange(ny) - (ny - 1) / 2) * dy
    x = (np.arange(nx) - (nx - 1) / 2) * dx
    zz, yy, xx = z[:, None, None], y[None, :, None], x[None, None, :]
    scale = np.sqrt(np.clip(1 - (zz / 115.0) ** 2, 0.2, 1.0))
    fov = min(ny * dy, nx * dx)
    a_out, b_out = 0.34 * fov * scale, 0.42 * fov * scale  # scalp ellipse semi-axes (x, y)

    def ell(inset):
        return (xx / (a_out - inset)) ** 2 + (yy / (b_out - inset)) ** 2 <= 1.0

    lab = np.zeros(shape, np.int8)
    lab[ell(0)] = LABELS["scalp"]
    lab[ell(4)] = LABELS["skull"]
    lab[ell(10)] = LABELS["csf"]
    lab[ell(12)] = LABELS["gm"]
    lab[ell(17.0)] = LABELS["wm"]
    deep = (((np.abs(xx) - 20) / 9) ** 2 + ((yy + 2) / 13) ** 2 + (zz / 22) ** 2) <= 1.0
    lab[deep & (lab == LABELS["wm"])] = LABELS["gm"]
    vent = (((np.abs(xx) - 7) / 4.5) ** 2 + ((yy + 6) / 20) ** 2 + (zz / 26) ** 2) <= 1.0
    fissure = (np.abs(xx) < 1.2) & ((yy < -0.35 * b_out) | (yy > 0.25 * b_out)) & ell(10)
    lab[(vent | fissure) & (lab >= LABELS["csf"])] = LABELS["csf"]
    artery = ((np.abs(xx) - 0.55 * a_out) ** 2 + (yy + 0.12 * b_out) ** 2) <= 2.0**2
    sinus = (xx**2 + (yy - (b_out - 17.0)) ** 2) <= 5.0**2
    lab[artery & ell(12)] = LABELS["artery"]
    lab[sinus & ell(10)] = LABELS["sinus"]

    zones = np.zeros(shape, np.int8)
    if lesion in ("mca_left", "mca_right"):
        side = 1.0 if lesion == "mca_left" else -1.0  # +x (increasing column) is patient left in LPS
        jitter = rng.uniform(0.92, 1.08, size=3)
        cx, cy, cz = side * 0.5 * a_out.max(), rng.uniform(-8, 4), rng.uniform(-4, 4) * dz / 5
        tissue = (lab == LABELS["gm"]) | (lab == LABELS["wm"])
        for k, name in enumerate(("oligemia", "penumbra", "severe", "core"), start=1):
            s = core_scale if name == "core" else penumbra_scale
            rx, ry, rz = np.array(ZONE_RADII_MM[name]) * jitter * s ** (1 / 3)
            if name == "core":  # keep the core inside the severe zone
                rx, ry, rz = np.minimum([rx, ry, rz], np.array(ZONE_RADII_MM["severe"]) * jitter * penumbra_scale ** (1 / 3) * 0.95)
            inside = ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 + ((zz - cz) / rz) ** 2 <= 1.0
            zones[inside & tissue & (side * xx > 2.0)] = k
    return lab, zones


def _truth_maps(lab, zones, delay_s):
    """True per-voxel cbf, cbv, delay, beta (Z, Y, X) float32 and the table of distinct curves."""
    cbf = np.zeros(lab.shape, np.float32)
    cbv = np.zeros(lab.shape, np.float32)
    delay = np.zeros(lab.shape, np.float32)
    beta = np.zeros(lab.shape, np.float32)
    classes = np.zeros(lab.shape, np.int16)  # 0 = no tissue enhancement
    table = []
    names = ("oligemia", "penumbra", "severe", "core")
    for tname in ("gm", "wm"):
        f0, v0, d0, b0 = TISSUE[tname]
        is_t = lab == LABELS[tname]
        for z in range(len(names) + 1):
            if z == 0:
                params = (f0, v0, d0, b0)
            else:
                ff, vf, dd, bb = ZONES[names[z - 1]]
                params = (f0 * ff, v0 * vf, dd if names[z - 1] == "oligemia" else delay_s + dd, bb)
            m = is_t & (zones == z)
            table.append(params)
            classes[m] = len(table)
            cbf[m], cbv[m], delay[m], beta[m] = params
    return cbf, cbv, delay, beta, classes, table


def make_phantom(*, seed: int = 0, shape: tuple[int, int, int] = (16, 256, 256), n_times: int = 40,
                 dt_s: float = 1.5, noise_hu: float = 10.0, lesion: str = "mca_left", core_scale: float = 1.0,
                 penumbra_scale: float = 1.0, delay_s: float = 5.0, motion_mm: float = 0.0,
                 spacing_mm: tuple[float, float, float] = (5.0, 0.9, 0.9), aif: str = "normal",
                 aif_peak_hu: float = 400.0, arrival_s: float = 6.0, study_instance_uid: str = "",
                 series_instance_uid: str = "") -> Phantom:
    """Build a head CTP phantom; see the module docstring. Deterministic for a given ``seed``.

    lesion : "mca_left" | "mca_right" | "none"; delay_s : arterial delay of the penumbra (severe zone and
    core get +4 s and +5 s); aif : "normal" | "weak" (peak 100 HU, a poor injection) | "none" (no
    contrast reached the head: a real CTP without a usable AIF); motion_mm : maximum in-plane rigid
    displacement (translation plus rotation) applied to frames after the first quarter.
    """
    if lesion not in ("mca_left", "mca_right", "none"):
        raise ValueError(f"Argument 'lesion' should be 'mca_left', 'mca_right' or 'none', got {lesion!r}.")
    if aif not in ("normal", "weak", "none"):
        raise ValueError(f"Argument 'aif' should be 'normal', 'weak' or 'none', got {aif!r}.")
    rng = np.random.default_rng(seed)
    lab, zones = _anatomy(shape, spacing_mm, rng, lesion, core_scale, penumbra_scale)
    cbf, cbv, delay, beta, classes, table = _truth_maps(lab, zones, delay_s)

    times = np.arange(n_times) * dt_s
    fine_t = np.arange(0.0, times[-1] + 30.0, physics.FINE_DT_S)
    peak = {"normal": aif_peak_hu, "weak": 100.0, "none": 0.0}[aif]
    aif_true = physics.arterial_curve(fine_t, arrival_s=arrival_s, peak_hu=peak)
    venous = physics.dispersed_delayed(fine_t, aif_true, 2.5, 3.0)
    curves = np.zeros((n_times, len(table) + 3), np.float32)  # col 0: none, then classes, then artery, sinus
    for i, (f, v, d, b) in enumerate(table, start=1):
        curves[:, i] = physics.sample(fine_t, physics.tissue_curve(fine_t, aif_true, cbf=f, cbv=v, delay_s=d,
                                                                   beta_s=b), times)
    art_col, sin_col = len(table) + 1, len(table) + 2
    curves[:, art_col] = ARTERY_PV * physics.sample(fine_t, aif_true, times)
    curves[:, sin_col] = physics.sample(fine_t, venous, times)
    classes[lab == LABELS["artery"]] = art_col
    classes[lab == LABELS["sinus"]] = sin_col

    base = np.vectorize(BASE_HU.get, otypes=[np.float32])(lab)
    hu = curves[:, classes]  # (T, Z, Y, X)
    hu += base[None]
    displacement = np.zeros(n_times)
    if motion_mm > 0:
        displacement = _apply_motion(hu, rng, motion_mm, spacing_mm)
    hu += rng.standard_normal(hu.shape, dtype=np.float32) * np.float32(noise_hu)

    dz, dy, dx = spacing_mm
    affine = np.array([[dx, 0, 0, -(shape[2] - 1) / 2 * dx], [0, dy, 0, -(shape[1] - 1) / 2 * dy],
                       [0, 0, dz, -(shape[0] - 1) / 2 * dz], [0, 0, 0, 1.0]])
    series = PerfusionSeries(hu=hu, times_s=times, spacing_mm=tuple(map(float, spacing_mm)), affine=affine,
                             study_instance_uid=study_instance_uid or f"2.25.{1000 + seed}",
                             series_instance_uid=series_instance_uid or f"2.25.{2000 + seed}",
                             source={"phantom": "head", "seed": seed})
    truth, maps = _truth(lab, zones, cbf, cbv, delay, beta, series.voxel_ml, lesion)
    truth["parameters"] = {"seed": seed, "shape": list(shape), "n_times": n_times, "dt_s": dt_s,
                           "noise_hu": noise_hu, "lesion": lesion, "core_scale": core_scale,
                           "penumbra_scale": penumbra_scale, "delay_s": delay_s, "motion_mm": motion_mm,
                           "spacing_mm": list(spacing_mm), "aif": aif, "aif_peak_hu": peak,
                           "arrival_s": arrival_s, "artery_partial_volume": ARTERY_PV}
    truth["max_displacement_mm"] = float(displacement.max())
    truth["tissues"] = {"normal": {k: dict(zip(("cbf", "cbv", "delay_s", "dispersion_s"), v)) for k, v in TISSUE.items()},
                        "zones": {k: dict(zip(("cbf_factor", "cbv_factor", "delay_s", "dispersion_s"), v))
                                  for k, v in ZONES.items()}}
    maps["labels"] = lab
    return Phantom(series=series, truth=truth, truth_maps=maps)


def _apply_motion(hu: np.ndarray, rng, motion_mm: float, spacing_mm) -> np.ndarray:
    """Rigidly move frames after the first quarter in-plane, in place. Returns (T,) max displacement mm."""
    t, nz, ny, nx = hu.shape
    _, dy, dx = spacing_mm
    disp = np.zeros(t)
    radius_mm = 0.5 * min(ny * dy, nx * dx) * 0.8
    for i in range(t // 4, t):
        angle = rng.uniform(-1, 1) * 0.3 * motion_mm / radius_mm
        shift_mm = rng.uniform(-1, 1, size=2) * 0.7 * motion_mm
        c, s = np.cos(angle), np.sin(angle)
        rot = np.array([[c, -s], [s, c]])
        center = np.array([(ny - 1) / 2, (nx - 1) / 2])
        shift_px = shift_mm / np.array([dy, dx])
        offset = center - rot @ center - rot @ shift_px
        for z in range(nz):
            hu[i, z] = ndimage.affine_transform(hu[i, z], rot, offset=offset, order=1, mode="nearest")
        disp[i] = float(np.hypot(*shift_mm)) + abs(angle) * radius_mm
    return disp


def _truth(lab, zones, cbf, cbv, delay, beta, voxel_ml, lesion):
    tissue = (lab == LABELS["gm"]) | (lab == LABELS["wm"])
    mtt = np.where(cbf > 0, 60.0 * cbv / np.maximum(cbf, 1e-6), 0.0).astype(np.float32)
    tmax = np.where(tissue, physics.true_tmax(delay, beta, mtt), 0.0).astype(np.float32)
    nx = lab.shape[2]
    left = np.zeros(lab.shape, bool)
    left[..., (nx + 1) // 2:] = True  # +x columns are patient left
    if lesion == "none":
        healthy = tissue
    else:
        healthy = tissue & (left if lesion == "mca_right" else ~left) & (zones == 0)
    ref = float(cbf[healthy].mean())
    core = tissue & (cbf / ref < 0.3)
    tmax6 = tissue & (tmax > 6.0)
    tmax10 = tissue & (tmax > 10.0)
    core_ml, t6, t10 = (float(m.sum() * voxel_ml) for m in (core, tmax6, tmax10))
    mismatch = t6 - core_ml
    ratio = t6 / core_ml if core_ml > 0 else None
    truth = {
        "core_ml": core_ml, "tmax6_ml": t6, "tmax10_ml": t10, "mismatch_ml": mismatch, "mismatch_ratio": ratio,
        "hir": t10 / t6 if t6 > 0 else None, "hypoperfusion_intensity_ratio": t10 / t6 if t6 > 0 else None,
        "affected_side": None if lesion == "none" else lesion.split("_")[1], "reference_cbf": ref,
        "defuse3": bool(core_ml < 70 and mismatch >= 15 and (ratio is None or ratio >= 1.8)) if t6 > 0 else False,
        "extend_ia": bool(core_ml < 70 and mismatch > 10 and (ratio is None or ratio > 1.2)) if t6 > 0 else False,
        "brain_ml": float(tissue.sum() * voxel_ml),
    }
    maps = {"cbf": cbf, "cbv": cbv, "mtt": mtt, "delay": delay, "tmax": tmax, "core": core, "tmax6": tmax6,
            "tmax10": tmax10, "tissue": tissue}
    return truth, maps
