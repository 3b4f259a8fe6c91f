"""Randomized CT-perfusion head phantom: every property drawn from a seed, truth from its own parameters.

A different digital head from ``sample_dicom.phantom`` (which the engine was first tuned on):

- anatomy: ellipsoidal head of random size, aspect, yaw and offset; random scalp, skull, CSF-rim and
  cortex thickness; grey-matter patches from a smooth random field; random deep nuclei and ventricles;
- vessels: one to two arteries (1.5-3 mm radius) on 1-3 slices at a random lateral position on either
  side; a venous sinus somewhere posterior (superior sagittal or transverse) and optional cortical
  veins. The sinus is taller than the artery in ~60% of the cases (the artery's signal is reduced by a
  random partial-volume factor; the veins keep the whole arterial area: mass is conserved);
- perfusion: random grey/white CBF and MTT with a smooth +-10% heterogeneity, random normal delay and
  dispersion; one residue family per case (exponential, plug-flow box, gamma-distributed transit times)
  and one dispersion kernel (exponential or gamma-2);
- lesion (85% of the cases): an MCA-territory lesion on a random side, random centre, extent and
  irregular shape, with delay and dispersion growing continuously towards its centre and an optional core
  (rCBF 5-20%);
- acquisition: matrix 256 or 512, 1.0-2.0 s sampling, 25-60 frames, 3-6 baseline frames, noise 5-20 HU,
  optional rigid motion, random slab coverage.

Ground truth comes from these parameters only: CBF, CBV, MTT, delay and Tmax per voxel (Tmax = delay +
time to the maximum of the dispersed residue; for plug flow, to 95% of its plateau: ``random_residue``), core = true CBF below
30% of the mean true CBF of the contralateral normal tissue, Tmax > 6 s and > 10 s volumes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from sample_dicom import physics
from sample_dicom import random_residue as rr
from sample_dicom.phantom import _apply_motion
from triage.series import PerfusionSeries

LABELS = {"air": 0, "scalp": 1, "skull": 2, "csf": 3, "gm": 4, "wm": 5, "artery": 6, "vein": 7}
BASE_HU = np.array([-1000.0, 40.0, 1100.0, 8.0, 38.0, 28.0, 42.0, 42.0], np.float32)
QUANT = {"delay": 0.25, "beta": 0.25, "mtt": 0.25}


@dataclass(frozen=True)
class RandomPhantom:
    """series : the CTP; truth : JSON-safe numbers and drawn parameters; truth_maps : (Z, Y, X) arrays."""

    series: PerfusionSeries
    truth: dict
    truth_maps: dict


def draw_parameters(seed: int, *, matrix: int | None = None, max_slices: int | None = None) -> dict:
    """All random choices of one case (JSON-safe). ``matrix`` / ``max_slices`` override the draw."""
    rng = np.random.default_rng([seed, 7919])
    u = lambda a, b: float(rng.uniform(a, b))  # noqa: E731
    mat = int(matrix or (512 if rng.random() < 0.25 else 256))
    dt = float(rng.choice([1.0, 1.25, 1.5, 1.75, 2.0]))
    n_times = int(np.clip(round(u(50, 80) / dt), 25, 60))
    nz = int(rng.integers(6, 11) if mat == 512 else rng.integers(8, 17))
    if max_slices:
        nz = min(nz, max_slices)
    lesion = rng.random() < 0.85
    family = str(rng.choice(rr.FAMILIES))
    p = {
        "seed": seed, "matrix": mat, "fov_mm": u(215, 245), "slices": nz, "slice_mm": float(rng.choice([4.0, 5.0])),
        "dt_s": dt, "n_times": n_times, "noise_hu": u(5, 20),
        "motion_mm": 0.0 if rng.random() < 0.65 else u(0.5, 3.0),
        "head": {"a_mm": u(66, 78), "b_mm": u(84, 98), "c_mm": u(75, 92), "yaw_deg": u(-8, 8),
                 "offset_mm": [u(-6, 6), u(-6, 6)], "slab_center_mm": u(-10, 30), "scalp_mm": u(3, 6),
                 "skull_mm": u(4, 8), "csf_mm": u(1.5, 3.0), "cortex_mm": u(2.5, 5.0), "gm_patch": u(0.05, 0.25),
                 "ventricle": u(0.6, 1.4), "deep_gm": u(0.7, 1.3)},
        "tissue": {"gm_cbf": u(48, 72), "wm_ratio": u(0.38, 0.5), "gm_mtt_s": u(3.5, 5.0), "wm_mtt_s": u(4.0, 6.0),
                   "delay_s": u(0.0, 1.5), "beta_s": u(0.0, 1.0), "heterogeneity": u(0.04, 0.10)},
        "residue": {"family": family, "shape_k": u(2.0, 5.0) if family == "gamma" else None,
                    "kernel": str(rng.choice(rr.KERNELS))},
        "aif": {"peak_hu": u(300, 500), "alpha": u(2.5, 4.0), "beta_s": u(1.0, 2.0), "recirculation": u(0.05, 0.2),
                "arrival_s": dt * u(4.0, 6.5)},
        "artery": {"side": str(rng.choice(["left", "right"])), "radius_mm": u(1.5, 3.0), "n_slices": int(rng.integers(1, 4)),
                   "u_frac": u(0.25, 0.5), "v_frac": u(-0.35, 0.05), "z_frac": u(0.0, 1.0),
                   "second": bool(rng.random() < 0.5), "radius2_mm": u(1.5, 3.0)},
        "vein": {"kind": str(rng.choice(["sagittal", "transverse"])), "radius_mm": u(3.5, 6.0), "u_mm": u(-8, 8),
                 "inset_mm": u(5, 11), "delay_s": u(3.0, 6.0), "beta_s": u(2.0, 4.0),
                 "sinus_over_artery": u(1.15, 1.3) if rng.random() < 0.6 else u(0.7, 1.1),
                 "cortical": int(rng.integers(0, 4))},
        "lesion": None,
    }
    if lesion:
        p["lesion"] = {"side": str(rng.choice(["left", "right"])), "u_frac": u(0.3, 0.55), "v_frac": u(-0.35, 0.25),
                       "z_frac": u(0.2, 0.8), "radii_mm": [u(15, 38), u(20, 48), u(15, 40)],
                       "irregularity": u(0.05, 0.2), "core_frac": 0.0 if rng.random() < 0.1 else u(0.25, 0.7),
                       "edge_delay_s": u(2.5, 4.0), "max_delay_s": u(7.0, 15.0), "delay_power": u(0.6, 1.5),
                       "beta_s": u(0.5, 3.0), "penumbra_cbf": u(0.65, 0.9), "penumbra_cbv": u(1.0, 1.25),
                       "core_cbf": u(0.05, 0.2), "core_cbv": u(0.3, 0.6)}
    return p


def _smooth_field(rng, shape, scale_px: float) -> np.ndarray:
    """Unit-sd smooth random field (Z, Y, X) built at low resolution and zoomed (cheap at 512)."""
    nz, ny, nx = shape
    low = (nz, max(4, int(ny / scale_px)), max(4, int(nx / scale_px)))
    f = ndimage.gaussian_filter(rng.standard_normal(low), (0.7, 1.0, 1.0))
    f = ndimage.zoom(f, (1, ny / low[1], nx / low[2]), order=1)[:, :ny, :nx]
    return ((f - f.mean()) / max(f.std(), 1e-6)).astype(np.float32)


def _geometry(p: dict):
    """Native grids: z (Z,1,1), rotated head coordinates u (LR, + patient left), v (AP, + posterior) (1,Y,X)."""
    n, fov = p["matrix"], p["fov_mm"]
    pix = fov / n
    h = p["head"]
    z = ((np.arange(p["slices"]) - (p["slices"] - 1) / 2) * p["slice_mm"] + h["slab_center_mm"])[:, None, None]
    c = (np.arange(n) - (n - 1) / 2) * pix
    x, y = c[None, None, :] - h["offset_mm"][0], c[None, :, None] - h["offset_mm"][1]
    a = np.deg2rad(h["yaw_deg"])
    uu = np.cos(a) * x + np.sin(a) * y
    vv = -np.sin(a) * x + np.cos(a) * y
    scale = np.sqrt(np.clip(1 - (z / h["c_mm"]) ** 2, 0.25, 1.0))
    return z, uu.astype(np.float32), vv.astype(np.float32), scale, pix


def _anatomy(p, rng, z, uu, vv, scale):
    h = p["head"]
    a_out, b_out = h["a_mm"] * scale, h["b_mm"] * scale

    def inside(inset):
        return (uu / np.maximum(a_out - inset, 1)) ** 2 + (vv / np.maximum(b_out - inset, 1)) ** 2 <= 1.0

    shape = (p["slices"], p["matrix"], p["matrix"])
    lab = np.zeros(shape, np.int8)
    t_sk = h["scalp_mm"] + h["skull_mm"]
    lab[inside(0.0)] = LABELS["scalp"]
    lab[inside(h["scalp_mm"])] = LABELS["skull"]
    lab[inside(t_sk)] = LABELS["csf"]
    lab[inside(t_sk + h["csf_mm"])] = LABELS["gm"]
    lab[inside(t_sk + h["csf_mm"] + h["cortex_mm"])] = LABELS["wm"]
    patches = _smooth_field(rng, shape, 6.0 / p["fov_mm"] * p["matrix"]) > (1.0 - 3 * h["gm_patch"])
    lab[patches & (lab == LABELS["wm"])] = LABELS["gm"]
    s = h["deep_gm"]
    deep = (((np.abs(uu) - 20 * s) / (9 * s)) ** 2 + ((vv + 2) / (13 * s)) ** 2 + (z / (22 * s)) ** 2) <= 1.0
    lab[deep & (lab == LABELS["wm"])] = LABELS["gm"]
    s = h["ventricle"]
    vent = (((np.abs(uu) - 7 * s) / (4.5 * s)) ** 2 + ((vv + 6) / (20 * s)) ** 2 + ((z - 5) / (26 * s)) ** 2) <= 1.0
    fissure = (np.abs(uu) < 1.2) & ((vv < -0.35 * b_out) | (vv > 0.3 * b_out)) & inside(t_sk)
    lab[(vent | fissure) & (lab >= LABELS["csf"])] = LABELS["csf"]
    return lab, inside


def _disk_fraction(d_mm: np.ndarray, radius: float, pix: float) -> np.ndarray:
    """Partial-volume fraction of a vessel of ``radius`` at distance d from its axis (PSF ~ a pixel)."""
    w = max(pix, 0.6)
    return np.clip(0.5 + (radius - d_mm) / w, 0.0, 1.0).astype(np.float32)


def _vessels(p, z, uu, vv, scale, pix, intracranial):
    """Arterial and venous fraction maps (Z, Y, X) float32 in [0, 1] and the artery slices used."""
    shape = intracranial.shape
    art = np.zeros(shape, np.float32)
    ven = np.zeros(shape, np.float32)
    h, a, v = p["head"], p["artery"], p["vein"]
    inner_a = h["a_mm"] - h["scalp_mm"] - h["skull_mm"]
    inner_b = h["b_mm"] - h["scalp_mm"] - h["skull_mm"]
    nz = shape[0]
    n_sl = min(a["n_slices"], nz)
    z0 = int(round(a["z_frac"] * (nz - n_sl)))
    sides = [1.0 if a["side"] == "left" else -1.0]
    radii = [a["radius_mm"]]
    if a["second"]:
        sides.append(-sides[0])
        radii.append(a["radius2_mm"])
    for sgn, r in zip(sides, radii):
        for zi in range(z0, z0 + n_sl):
            cu = sgn * a["u_frac"] * inner_a * scale[zi, 0, 0]
            cv = a["v_frac"] * inner_b * scale[zi, 0, 0]
            d = np.hypot(uu[0] - cu, vv[0] - cv)
            art[zi] = np.maximum(art[zi], _disk_fraction(d, r, pix))
    for zi in range(nz):
        s = scale[zi, 0, 0]
        if v["kind"] == "sagittal" and zi >= nz // 3:
            d = np.hypot(uu[0] - v["u_mm"], vv[0] - (inner_b * s - v["inset_mm"]))
            ven[zi] = _disk_fraction(d, v["radius_mm"], pix)
        elif v["kind"] == "transverse" and zi < max(2, nz // 2):
            for sgn in (1.0, -1.0):
                cu = sgn * 0.45 * inner_a * s
                cv = np.sqrt(max(1 - 0.45**2, 0.0)) * inner_b * s - v["inset_mm"]
                ven[zi] = np.maximum(ven[zi], _disk_fraction(np.hypot(uu[0] - cu, vv[0] - cv), v["radius_mm"], pix))
    rng = np.random.default_rng([p["seed"], 31])
    for _ in range(v["cortical"]):  # small cortical veins near the surface
        zi = int(rng.integers(0, nz))
        ang = rng.uniform(0, 2 * np.pi)
        s = scale[zi, 0, 0]
        cu, cv = 0.85 * inner_a * s * np.cos(ang), 0.85 * inner_b * s * np.sin(ang)
        ven[zi] = np.maximum(ven[zi], 0.6 * _disk_fraction(np.hypot(uu[0] - cu, vv[0] - cv), 1.2, pix))
    art *= intracranial
    ven *= intracranial
    return art, ven, list(range(z0, z0 + n_sl))


def _lesion_fields(p, rng, z, uu, vv, scale, tissue):
    """Normalized lesion radius rho (Z, Y, X) (inf without lesion) and the lesion side (+1 left, -1 right, 0)."""
    les = p["lesion"]
    if les is None:
        return np.full(tissue.shape, np.inf, np.float32), 0
    sgn = 1.0 if les["side"] == "left" else -1.0
    h = p["head"]
    inner_a = h["a_mm"] - h["scalp_mm"] - h["skull_mm"]
    inner_b = h["b_mm"] - h["scalp_mm"] - h["skull_mm"]
    zc = float(z.min() + les["z_frac"] * (z.max() - z.min()))
    cu, cv = sgn * les["u_frac"] * inner_a, les["v_frac"] * inner_b
    rx, ry, rz = les["radii_mm"]
    rho = np.sqrt(((uu - cu) / rx) ** 2 + ((vv - cv) / ry) ** 2 + ((z - zc) / rz) ** 2).astype(np.float32)
    rho += les["irregularity"] * _smooth_field(rng, tissue.shape, 12.0 / p["fov_mm"] * p["matrix"])
    rho = np.where(sgn * uu > 2.0, rho, np.inf).astype(np.float32)  # stays in its hemisphere
    return rho, int(sgn)


def _perfusion_fields(p, rng, lab, rho):
    """Per-voxel true cbf (mL/100 g/min), mtt, delay, beta (s) (Z, Y, X) float32 and the zone map
    (0 normal, 1 oligaemia, 2 hypoperfused, 3 core)."""
    t = p["tissue"]
    gm, wm = lab == LABELS["gm"], lab == LABELS["wm"]
    het = 1.0 + t["heterogeneity"] * _smooth_field(rng, lab.shape, 5.0 / p["fov_mm"] * p["matrix"])
    cbf = np.where(gm, t["gm_cbf"], np.where(wm, t["gm_cbf"] * t["wm_ratio"], 0.0)) * het
    mtt = np.where(gm, t["gm_mtt_s"], t["wm_mtt_s"])
    delay = np.full(lab.shape, t["delay_s"], np.float32)
    beta = np.full(lab.shape, t["beta_s"], np.float32)
    zone = np.zeros(lab.shape, np.int8)
    les = p["lesion"]
    if les is not None:
        olig = (rho >= 1.0) & (rho < 1.3)
        s = np.clip((1.3 - rho) / 0.3, 0, 1)
        delay = np.where(olig, t["delay_s"] + s * (les["edge_delay_s"] - t["delay_s"]), delay)
        cbf = np.where(olig, cbf * (1 - 0.1 * s), cbf)
        hypo = rho < 1.0
        depth = np.clip(1.0 - rho, 0, 1)
        delay = np.where(hypo, les["edge_delay_s"] + (les["max_delay_s"] - les["edge_delay_s"]) * depth ** les["delay_power"],
                         delay)
        beta = np.where(hypo | olig, t["beta_s"] + les["beta_s"] * np.clip(1.3 - rho, 0, 1.3) / 1.3, beta)
        core = rho < les["core_frac"]
        cbff = np.where(core, les["core_cbf"], np.where(hypo, les["penumbra_cbf"], 1.0))
        cbvf = np.where(core, les["core_cbv"], np.where(hypo, les["penumbra_cbv"], 1.0))
        cbf = cbf * cbff
        mtt = mtt * cbvf / cbff
        zone[olig] = 1
        zone[hypo] = 2
        zone[core] = 3
    q = QUANT
    delay = np.round(delay / q["delay"]) * q["delay"]
    beta = np.round(beta / q["beta"]) * q["beta"]
    mtt = np.round(mtt / q["mtt"]) * q["mtt"]
    return (cbf.astype(np.float32), mtt.astype(np.float32), delay.astype(np.float32), beta.astype(np.float32), zone)


def _unit_curves(p, fine_t, aif_true, times, mtt, delay, beta, tissue):
    """Class index (Z, Y, X) int32 (0 = no enhancement), unit-CBF curves (T, n_classes + 1) float32 and the
    true Tmax (Z, Y, X) float32 (delay + time to the effective residue's maximum; 95% of it for plug flow)."""
    fdt = physics.FINE_DT_S
    res = p["residue"]
    q = QUANT
    bi = np.round(beta[tissue] / q["beta"]).astype(np.int64)
    mi = np.round(mtt[tissue] / q["mtt"]).astype(np.int64)
    di = np.round(delay[tissue] / q["delay"]).astype(np.int64)
    key = (bi * 4096 + mi) * 4096 + di
    ukey, inv = np.unique(key, return_inverse=True)
    ub, um, ud = ukey // (4096 * 4096), (ukey // 4096) % 4096, ukey % 4096
    curves = np.zeros((len(times), len(ukey) + 1), np.float32)
    ttm = np.zeros(len(ukey))
    for b in np.unique(ub):
        sel = np.flatnonzero(ub == b)
        pairs, pinv = np.unique(um[sel], return_inverse=True)
        h = rr.effective_residues(fine_t, res["family"], pairs * q["mtt"], res["kernel"], b * q["beta"],
                                  res["shape_k"] or 3.0)
        ttm_pairs = rr.time_to_max(fine_t, h, rr.PLATEAU_FRACTION if res["family"] == "box" else 1.0)
        unit = rr.tissue_curves(fine_t, aif_true, h, fdt)  # (M, K)
        shifted = (times[None, :] - ud[sel, None] * q["delay"]) / fdt  # (n_sel, T)
        lo = np.clip(np.floor(shifted).astype(np.int64), 0, fine_t.size - 2)
        w = np.clip(shifted - lo, 0, 1)
        rows = unit[pinv]
        vals = np.take_along_axis(rows, lo, axis=1) * (1 - w) + np.take_along_axis(rows, lo + 1, axis=1) * w
        curves[:, sel + 1] = np.where(shifted >= 0, vals, 0.0).T
        ttm[sel] = ttm_pairs[pinv]
    cls = np.zeros(tissue.shape, np.int32)
    cls[tissue] = inv.ravel() + 1
    tmax = np.zeros(tissue.shape, np.float32)
    tmax[tissue] = (ud * q["delay"] + ttm)[inv.ravel()]
    return cls, curves, tmax


def true_arterial_curve(p: dict, t: np.ndarray) -> np.ndarray:
    """The case's true arterial enhancement (HU) at times ``t`` (s), from its drawn parameters ``p["aif"]``."""
    a = p["aif"]
    return physics.arterial_curve(t, arrival_s=a["arrival_s"], peak_hu=a["peak_hu"], alpha=a["alpha"],
                                  beta=a["beta_s"], recirculation=a["recirculation"])


def make_random_phantom(seed: int, *, matrix: int | None = None, max_slices: int | None = None,
                        params: dict | None = None) -> RandomPhantom:
    """Build the case drawn from ``seed`` (see ``draw_parameters``); deterministic for a given seed."""
    p = params or draw_parameters(seed, matrix=matrix, max_slices=max_slices)
    rng = np.random.default_rng([p["seed"], 104729])
    z, uu, vv, scale, pix = _geometry(p)
    lab, inside = _anatomy(p, rng, z, uu, vv, scale)
    h = p["head"]
    intracranial = inside(h["scalp_mm"] + h["skull_mm"])
    art, ven, art_slices = _vessels(p, z, uu, vv, scale, pix, intracranial)
    parenchyma = (lab == LABELS["gm"]) | (lab == LABELS["wm"])
    tissue = parenchyma & (art < 0.05) & (ven < 0.05)
    rho, side = _lesion_fields(p, rng, z, uu, vv, scale, tissue)
    cbf, mtt, delay, beta, zone = _perfusion_fields(p, rng, lab, rho)

    times = np.arange(p["n_times"]) * p["dt_s"]
    fine_t = np.arange(0.0, times[-1] + 30.0, physics.FINE_DT_S)
    aif_true = true_arterial_curve(p, fine_t)
    venous = physics.dispersed_delayed(fine_t, aif_true, p["vein"]["delay_s"], p["vein"]["beta_s"])
    pv_art = float(np.clip(venous.max() / (p["vein"]["sinus_over_artery"] * aif_true.max()), 0.35, 1.0))
    cls, curves, tmax = _unit_curves(p, fine_t, aif_true, times, mtt, delay, beta, parenchyma)

    hu = curves[:, cls]  # (T, Z, Y, X)
    hu *= np.where(parenchyma, cbf, 0.0)[None]
    hu += BASE_HU[lab][None]
    art_curve = (pv_art * physics.sample(fine_t, aif_true, times)).astype(np.float32)
    ven_curve = physics.sample(fine_t, venous, times).astype(np.float32)
    for frac, curve in ((art, art_curve), (ven, ven_curve)):
        idx = np.nonzero(frac > 0)
        f = frac[idx]
        hu[(slice(None),) + idx] = (1 - f) * hu[(slice(None),) + idx] + f * (BASE_HU[LABELS["artery"]] + curve[:, None])
    displacement = np.zeros(p["n_times"])
    spacing = (p["slice_mm"], pix, pix)
    if p["motion_mm"] > 0:
        displacement = _apply_motion(hu, rng, p["motion_mm"], spacing)
    hu += rng.standard_normal(hu.shape, dtype=np.float32) * np.float32(p["noise_hu"])

    n = p["matrix"]
    nz = p["slices"]
    affine = np.array([[pix, 0, 0, -(n - 1) / 2 * pix], [0, pix, 0, -(n - 1) / 2 * pix],
                       [0, 0, p["slice_mm"], float(z.min())], [0, 0, 0, 1.0]])
    series = PerfusionSeries(hu=hu, times_s=times, spacing_mm=tuple(map(float, spacing)), affine=affine,
                             study_instance_uid=f"2.25.{3000000 + seed}", series_instance_uid=f"2.25.{4000000 + seed}",
                             source={"phantom": "random", "seed": seed})
    truth, maps = _truth(p, tissue, cbf, mtt, delay, beta, tmax, zone, np.sign(uu) * np.ones_like(cbf), side,
                         series.voxel_ml)
    art_vox = np.argwhere(art >= 0.99)
    ven_vox = np.argwhere(ven >= 0.99)
    truth.update(parameters=p, max_displacement_mm=float(displacement.max()), artery_partial_volume=pv_art,
                 artery_slices=art_slices, artery_peak_hu=float(art_curve.max()), vein_peak_hu=float(ven_curve.max()),
                 artery_voxel_zyx=art_vox.mean(axis=0).tolist() if len(art_vox) else None,
                 vein_voxel_zyx=ven_vox.mean(axis=0).tolist() if len(ven_vox) else None,
                 aif_peak_time_s=float(times[int(art_curve.argmax())]), slices=nz)
    maps["labels"] = lab
    maps["artery_fraction"] = art
    maps["vein_fraction"] = ven
    return RandomPhantom(series=series, truth=truth, truth_maps=maps)


def _truth(p, tissue, cbf, mtt, delay, beta, tmax, zone, side_map, side, voxel_ml):
    """Volumes and verdict inputs from the true maps (clinical definitions, no engine code)."""
    if side == 0:
        healthy = tissue
    else:
        healthy = tissue & (side_map == -side) & (zone == 0)
    ref = float(cbf[healthy].mean())
    core = tissue & (cbf < 0.3 * ref)
    t6 = tissue & (tmax > 6.0)
    t10 = tissue & (tmax > 10.0)
    core_ml, t6_ml, t10_ml = (float(m.sum() * voxel_ml) for m in (core, t6, t10))
    t6_ml_all = float((t6 | core).sum() * voxel_ml)  # the engine's Tmax > 6 s mask always includes the core
    mismatch = t6_ml_all - core_ml
    ratio = t6_ml_all / core_ml if core_ml > 0 else None
    affected = None if side == 0 or t6_ml_all < 5.0 else ("left" if side > 0 else "right")
    truth = {"core_ml": core_ml, "tmax6_ml": t6_ml_all, "tmax6_only_ml": t6_ml, "tmax10_ml": t10_ml,
             "mismatch_ml": mismatch, "mismatch_ratio": ratio, "affected_side": affected,
             "lesion_side": None if side == 0 else ("left" if side > 0 else "right"), "reference_cbf": ref,
             "brain_ml": float(tissue.sum() * voxel_ml),
             "defuse3": bool(core_ml < 70 and mismatch >= 15 and (ratio is None or ratio >= 1.8)) if t6_ml_all > 0 else False}
    maps = {"cbf": cbf, "cbv": (cbf * mtt / 60.0).astype(np.float32), "mtt": mtt, "delay": delay, "beta": beta,
            "tmax": tmax, "core": core, "tmax6": t6 | core, "tmax10": t10, "tissue": tissue, "zone": zone}
    return truth, maps
