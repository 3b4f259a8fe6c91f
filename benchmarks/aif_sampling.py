"""What does knowing the AIF only at the frame times cost Tmax? Noise-free curves, the right residue family.

Each tuning seed of the randomized phantom (``sample_dicom.random_phantom.draw_parameters``) gives an arterial curve,
a sampling interval, a residue family and a dispersion kernel. Tissue curves of that family and kernel are made from
the continuous arterial curve (random dispersion 0-4 s, MTT 3.5-10 s, delay 0-6 s) and sampled at the frame times,
without noise. Each is matched (largest normalized correlation) against a fine library of the same family and kernel
(dispersion every 0.25 s, 40 MTTs from 1.5 to 24 s, delay every 0.25 s) built from the arterial curve known:

- ``continuous``: between the samples too (an oracle no engine has);
- ``linear``: only at the frame times, joined by straight lines (what ``models.residue`` does);
- ``cubic``: only at the frame times, joined by a natural cubic spline.

Reported per residue family: the share of curves whose matched Tmax is within 0.5 s of the truth, the rms and the
mean error (s). The truth and the library use the phantom's own residue functions and Tmax rule (95% of the plateau
for plug flow). Tuning seeds only. Reproduce (about 1 min; docs/perfusion.md, "Round 9")::

    .venv/bin/python benchmarks/aif_sampling.py --out benchmarks/results/aif_sampling.json
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
from scipy.interpolate import CubicSpline  # noqa: E402

from sample_dicom import physics  # noqa: E402
from sample_dicom import random_residue as rr  # noqa: E402
from sample_dicom.random_cases import TUNING_SEEDS  # noqa: E402
from sample_dicom.random_phantom import draw_parameters, true_arterial_curve  # noqa: E402

METHODS = ("continuous", "linear", "cubic")
BETAS_S = np.arange(0.0, 4.51, 0.25)
MTTS_S = np.geomspace(1.5, 24.0, 40)
DELAYS_S = np.arange(-1.0, 12.01, 0.25)


def library(aif_fine: np.ndarray, fine_t: np.ndarray, times: np.ndarray, family: str, kernel: str,
            shape_k: float) -> tuple[np.ndarray, np.ndarray]:
    """Unit-norm sampled curves (G, T) of one family and kernel over the fine grid, and their true Tmax (G,)."""
    rows, tmax = [], []
    for beta in BETAS_S:
        h = rr.effective_residues(fine_t, family, MTTS_S, kernel, float(beta), shape_k)
        ttm = rr.time_to_max(fine_t, h, rr.PLATEAU_FRACTION if family == "box" else 1.0)
        unit = rr.tissue_curves(fine_t, aif_fine, h, physics.FINE_DT_S)
        for d in DELAYS_S:
            rows.append(np.stack([np.interp(times - d, fine_t, u, left=0.0) for u in unit]))
            tmax.append(d + ttm)
    lib = np.concatenate(rows)
    return lib / np.maximum(np.linalg.norm(lib, axis=1), 1e-12)[:, None], np.concatenate(tmax)


def run(seeds: list[int], curves: int, seed: int = 5) -> dict:
    if not set(seeds) <= set(TUNING_SEEDS):
        raise SystemExit("aif_sampling: tuning seeds only (sample_dicom.random_cases.TUNING_SEEDS)")
    rng = np.random.default_rng(seed)
    errors: dict[str, list[tuple[str, float]]] = {m: [] for m in METHODS}
    for s in seeds:
        p = draw_parameters(s)
        fam, ker, k = p["residue"]["family"], p["residue"]["kernel"], p["residue"]["shape_k"] or 3.0
        times = np.arange(p["n_times"]) * p["dt_s"]
        fine_t = np.arange(0.0, times[-1] + 30.0, physics.FINE_DT_S)
        aif_true = true_arterial_curve(p, fine_t)
        sampled = physics.sample(fine_t, aif_true, times)
        known = {"continuous": aif_true, "linear": np.interp(fine_t, times, sampled),
                 "cubic": CubicSpline(times, sampled, bc_type="natural")(np.minimum(fine_t, times[-1]))}
        libs = {m: library(known[m], fine_t, times, fam, ker, k) for m in METHODS}
        for _ in range(curves):
            beta, mtt, delay = round(rng.uniform(0.0, 4.0), 2), rng.uniform(3.5, 10.0), rng.uniform(0.0, 6.0)  # 0.00: none
            h = rr.effective_residues(fine_t, fam, np.array([mtt]), ker, beta, k)
            truth = delay + rr.time_to_max(fine_t, h, rr.PLATEAU_FRACTION if fam == "box" else 1.0)[0]
            y = np.interp(times - delay, fine_t, rr.tissue_curves(fine_t, aif_true, h, physics.FINE_DT_S)[0], left=0.0)
            for m, (lib, tmax) in libs.items():
                errors[m].append((fam, float(tmax[np.argmax(lib @ y)] - truth)))
    out: dict = {}
    for m, rows in errors.items():
        out[m] = {}
        for fam in ("exp", "gamma", "box", "all"):
            e = np.array([x for f, x in rows if fam in ("all", f)])
            if e.size:
                out[m][fam] = {"curves": int(e.size), "within_0_5_s": round(float(np.mean(np.abs(e) <= 0.5)), 3),
                               "rms_s": round(float(np.sqrt(np.mean(e ** 2))), 3), "mean_s": round(float(e.mean()), 3)}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", default="0-99:2", help="tuning seeds 'first-last:step' (default every 2nd)")
    ap.add_argument("--curves", type=int, default=12, help="curves per seed")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    span, _, step = args.seeds.partition(":")
    first, _, last = span.partition("-")
    seeds = list(range(int(first), int(last or first) + 1, int(step or 1)))
    t0 = time.perf_counter()
    result = {"benchmark": "aif_sampling", "command": " ".join(["benchmarks/aif_sampling.py"] + (argv or sys.argv[1:])),
              "when_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "python": platform.python_version(),
              "seeds": seeds, "curves_per_seed": args.curves, "methods": run(seeds, args.curves)}
    result["wall_s"] = round(time.perf_counter() - t0, 1)
    text = json.dumps(result, indent=1)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text + "\n")
    for m, fams in result["methods"].items():
        print(m, " ".join(f"{f}: {v['within_0_5_s']:.0%} rms {v['rms_s']} mean {v['mean_s']:+}" for f, v in fams.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
