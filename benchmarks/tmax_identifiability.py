"""How well can any per-voxel fit know Tmax near the 6 s contour? The engine's fit against a Bayes estimator.

Single tissue curves are drawn from the randomized phantom's own prior (``sample_dicom.random_residue``: exponential,
plug-flow and gamma residues; exponential and gamma-2 dispersion kernels; MTT 3.5-9 s, dispersion 0-4 s, delay 0-10 s),
each series with its own random sampling and arterial curve (the phantom's ranges), and white noise of a given level
(HU per 1.5 s of acquisition, the level left in the engine's shape data after smoothing: 0.7-1.7 HU). Two estimators
see the same noisy curves and the noise-free arterial curve as the AIF:

- ``engine``: the shipped model fit (``models.residue``: exponential residue, dictionary match, sub-grid delay);
- ``bayes``: the posterior mean of the true Tmax under the phantom's own prior, from an independent library of curves
  drawn from that prior (Gaussian likelihood with the curve's amplitude profiled out). No estimator that sees one
  curve can do better on average under that prior, up to the library's density; it knows the generator exactly,
  which no engine for real scans may, so it bounds what a smarter fit could gain;
- ``bayes_known_family``: the same, told each curve's residue family and dispersion kernel (the library restricted to
  them): what identifying the family per case, pooled over the whole brain, could add at best.

Reported for true Tmax within 4.5-7.5 s (the voxels that decide Tmax > 6 s): per residue family, dispersion kernel
and band of the true dispersion, the mean error (s) of each series' curves in that group (a case of the phantom is
one family and one kernel, so a group's mean is what moves a case's Tmax > 6 s volume), and over all curves the
share within 0.5 s. Reproduce (about 2 min on 2 cores)::

    .venv/bin/python benchmarks/tmax_identifiability.py --out benchmarks/results/tmax_identifiability.json
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

BAND_S = (4.5, 7.5)
BETA_BANDS_S = ((0.0, 1.25), (1.25, 2.5), (2.5, 4.01))
FLOOR_HU = 0.3  # the Bayes weights' noise floor on noise-free curves (the library's spacing, not a noise level)
ESTIMATORS = ("engine", "bayes", "bayes_known_family")


def draw(rng, n: int, fine_t: np.ndarray, aif_true: np.ndarray, times: np.ndarray) -> dict:
    """n unit-amplitude tissue curves (n, T) from the phantom's prior, with their true Tmax and parameters."""
    from sample_dicom import physics
    from sample_dicom import random_residue as rr

    fam = rng.choice(rr.FAMILIES, n)
    ker = rng.choice(rr.KERNELS, n)
    q = 0.25  # the phantom's quantization of MTT, dispersion and delay
    mtt = np.round(rng.uniform(3.5, 9.0, n) / q) * q
    beta = np.round(rng.uniform(0.0, 4.0, n) / q) * q
    delay = np.round(rng.uniform(0.0, 10.0, n) / q) * q
    shape_k = rng.uniform(2.0, 5.0, n)
    curves = np.empty((n, times.size))
    tmax = np.empty(n)
    for i in range(n):
        h = rr.effective_residues(fine_t, fam[i], np.array([mtt[i]]), ker[i], float(beta[i]), float(shape_k[i]))
        tmax[i] = delay[i] + rr.time_to_max(fine_t, h, rr.PLATEAU_FRACTION if fam[i] == "box" else 1.0)[0]
        c = rr.tissue_curves(fine_t, aif_true, h, physics.FINE_DT_S)[0]
        shifted = times - delay[i]
        curves[i] = np.where(shifted >= 0, np.interp(shifted, fine_t, c), 0.0)
    return {"curves": curves, "tmax": tmax, "family": fam, "kernel": ker, "beta": beta}


def bayes_tmax(conc: np.ndarray, library: np.ndarray, lib_tmax: np.ndarray, sigma: float) -> np.ndarray:
    """Posterior mean of Tmax for conc (N, T) against unit-norm library curves (L, T): the amplitude is profiled out,
    so -2 log-likelihood = (|c|^2 - <c, a>^2) / sigma^2 for <c, a> > 0."""
    out = np.empty(conc.shape[0])
    for s in range(0, conc.shape[0], 512):
        c = conc[s:s + 512]
        proj = np.maximum(c @ library.T, 0.0)  # (n, L)
        resid = np.sum(c * c, axis=1, keepdims=True) - proj ** 2
        logw = -(resid - resid.min(axis=1, keepdims=True)) / (2.0 * sigma ** 2)
        w = np.exp(logw)
        out[s:s + 512] = (w @ lib_tmax) / w.sum(axis=1)
    return out


def run(series: int, curves: int, library: int, noises: list[float], seed: int) -> dict:
    from models import residue
    from models.numpy_backend import NumpyBackend
    from sample_dicom import physics

    rng = np.random.default_rng(seed)
    backend = NumpyBackend()
    rows: list[dict] = []
    for s in range(series):
        dt = float(rng.uniform(1.0, 2.0))
        times = np.arange(int(rng.integers(25, 61))) * dt
        fine_t = np.arange(0.0, times[-1] + 30.0, physics.FINE_DT_S)
        aif_true = physics.arterial_curve(fine_t, arrival_s=float(rng.uniform(4.0, 6.5)) * dt,
                                          peak_hu=float(rng.uniform(300, 500)), alpha=float(rng.uniform(2.5, 4.0)),
                                          beta=float(rng.uniform(1.0, 2.0)),
                                          recirculation=float(rng.uniform(0.05, 0.2)))
        aif = physics.sample(fine_t, aif_true, times)
        dic = residue.build_dictionary(aif, dt)
        test = draw(rng, curves, fine_t, aif_true, times)
        lib = draw(rng, library, fine_t, aif_true, times)
        lib_unit = lib["curves"] / np.maximum(np.linalg.norm(lib["curves"], axis=1), 1e-12)[:, None]
        cbf = rng.uniform(20.0, 60.0, curves)  # hypoperfused to normal grey matter, mL/100 g/min
        for noise in noises:
            sd = noise * np.sqrt(1.5 / dt)  # the same noise per 1.5 s of acquisition at every sampling
            conc = test["curves"] * cbf[:, None] + rng.normal(0.0, sd, test["curves"].shape) if sd > 0 else \
                test["curves"] * cbf[:, None]
            c32 = np.ascontiguousarray(conc.T, dtype=np.float32)
            best, score = backend.match(c32, dic.atoms, 1)
            engine = residue.refine(dic, c32, best[:, 0], score[:, 0])["tmax"].astype(np.float64)
            bayes = bayes_tmax(conc, lib_unit, lib["tmax"], max(sd, FLOOR_HU))
            known = np.empty(curves)  # the same, told each curve's residue family and dispersion kernel
            for fam in np.unique(test["family"]):
                for ker in np.unique(test["kernel"]):
                    t_sel = (test["family"] == fam) & (test["kernel"] == ker)
                    l_sel = (lib["family"] == fam) & (lib["kernel"] == ker)
                    if t_sel.any():
                        known[t_sel] = bayes_tmax(conc[t_sel], lib_unit[l_sel], lib["tmax"][l_sel], max(sd, FLOOR_HU))
            for i in range(curves):
                if BAND_S[0] <= test["tmax"][i] <= BAND_S[1]:
                    rows.append({"series": s, "noise": noise, "family": str(test["family"][i]),
                                 "kernel": str(test["kernel"][i]), "beta": float(test["beta"][i]),
                                 "engine": float(engine[i] - test["tmax"][i]),
                                 "bayes": float(bayes[i] - test["tmax"][i]),
                                 "bayes_known_family": float(known[i] - test["tmax"][i])})
    return summarize(rows, noises)


def summarize(rows: list[dict], noises: list[float]) -> dict:
    from sample_dicom import random_residue as rr

    out: dict = {}
    for noise in noises:
        sel = [r for r in rows if r["noise"] == noise]
        entry: dict = {"curves": len(sel)}
        for est in ESTIMATORS:
            err = np.array([r[est] for r in sel])
            entry[est] = {"within_0_5_s": round(float(np.mean(np.abs(err) < 0.5)), 3),
                          "rms_s": round(float(np.sqrt(np.mean(err ** 2))), 3)}
        groups = []
        for fam in rr.FAMILIES:
            for ker in rr.KERNELS:
                for lo, hi in BETA_BANDS_S:
                    g = [r for r in sel if r["family"] == fam and r["kernel"] == ker and lo <= r["beta"] < hi]
                    if len(g) < 10:
                        continue
                    row = {"family": fam, "kernel": ker, "beta_s": [lo, round(hi, 2)], "curves": len(g)}
                    for est in ESTIMATORS:
                        per_series = [float(np.mean([r[est] for r in g if r["series"] == s]))
                                      for s in sorted({r["series"] for r in g})]
                        row[est + "_mean_s"] = round(float(np.mean([r[est] for r in g])), 2)
                        row[est + "_series_means_s"] = [round(v, 2) for v in per_series]
                    groups.append(row)
        entry["groups"] = groups
        entry["groups_mean_beyond_0_5_s"] = {est: sum(abs(g[est + "_mean_s"]) > 0.5 for g in groups)
                                              for est in ESTIMATORS}
        out[f"{noise:g}"] = entry
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--series", type=int, default=6, help="random acquisitions (sampling, frames, AIF)")
    ap.add_argument("--curves", type=int, default=3000, help="test curves per series")
    ap.add_argument("--library", type=int, default=30000, help="library curves per series for the Bayes estimator")
    ap.add_argument("--noise", default="0,0.7,1.7", help="comma-separated noise levels, HU per 1.5 s")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=None, help="write the JSON here as well as to stdout")
    args = ap.parse_args(argv)
    noises = [float(v) for v in args.noise.split(",")]
    t0 = time.perf_counter()
    result = run(args.series, args.curves, args.library, noises, args.seed)
    from models.residue import MODEL_VERSION
    from triage.version import ALGORITHM

    doc = {"benchmark": "tmax_identifiability",
           "command": "benchmarks/tmax_identifiability.py " + " ".join(argv if argv is not None else sys.argv[1:]),
           "when_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
           "machine": {"platform": platform.platform(), "python": platform.python_version()},
           "algorithm": {**ALGORITHM, "model_version": MODEL_VERSION},
           "band_true_tmax_s": list(BAND_S), "series": args.series, "curves_per_series": args.curves,
           "library_per_series": args.library, "seed": args.seed, "by_noise_hu": result,
           "wall_s": round(time.perf_counter() - t0, 1)}
    text = json.dumps(doc, indent=1)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
