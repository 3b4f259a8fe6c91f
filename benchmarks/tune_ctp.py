"""Score the CTP engine on the randomized phantom's TUNING seeds only, optionally at a fixed noise level.

Run from the repository root::

    .venv/bin/python benchmarks/tune_ctp.py --seeds 0-99             # as bench_generalization.py --tuning 100
    .venv/bin/python benchmarks/tune_ctp.py --seeds 0-49 --noise 2    # the model's own error: 2 HU, no motion
    .venv/bin/python benchmarks/tune_ctp.py --seeds 0-99 --true-aif   # the phantom's true arterial curve as AIF
    .venv/bin/python benchmarks/tune_ctp.py --seeds 7,43 --bands      # + Tmax bias and Tmax > 6 s error by true Tmax

A development tool (issue 8): it refuses held-out seeds (``sample_dicom.random_cases``), runs the cases in
``--jobs`` processes (one BLAS thread each) and writes
``benchmarks/results/triage_tuning[_noiseN][_trueaif][_bands].json`` with one row per case and the misses. With
``--noise`` every case is drawn as usual and then made with that per-voxel noise and without motion, so a miss there
is the model's or the pipeline's error, not the noise's. With ``--true-aif`` the maps are fitted with the phantom's
own arterial curve in place of the measured AIF, so the difference from a plain run is the AIF's share of the error.
With ``--bands`` each row also holds "tmax_bands" (``sample_dicom.random_cases.tmax_bands``): the median Tmax error
and the Tmax > 6 s volume wrongly included or left out, per band of the true Tmax. Engine variants are compared by
running it once per variant (docs/perfusion.md, "Round 3" to "Round 6").
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from sample_dicom.random_cases import TUNING_SEEDS  # noqa: E402


def parse_seeds(spec: str) -> list[int]:
    """'0-9,12' -> [0, ..., 9, 12]."""
    out: list[int] = []
    for part in spec.split(","):
        a, _, b = part.partition("-")
        out += list(range(int(a), int(b or a) + 1))
    return out


@contextlib.contextmanager
def true_aif(params: dict):
    """Within the block the maps are fitted with the phantom's true arterial curve (scaled to the measured AIF's
    peak, so CBF keeps its partial-volume correction) instead of the measured AIF: the AIF's share of the error."""
    from sample_dicom.random_phantom import true_arterial_curve
    from triage.perfusion import pipeline

    measured = pipeline.maps.perfusion_maps

    def with_true_aif(conc, tissue, aif, dt_s, backend, **kw):
        curve = true_arterial_curve(params, np.arange(conc.shape[0]) * dt_s)
        return measured(conc, tissue, (curve * (aif.max() / curve.max())).astype(np.float32), dt_s, backend, **kw)

    pipeline.maps.perfusion_maps = with_true_aif
    try:
        yield
    finally:
        pipeline.maps.perfusion_maps = measured


def score(seeds: list[int], noise: float | None, use_true_aif: bool = False, bands: bool = False) -> list[dict]:
    """One bench_generalization row per seed (the same scoring and fields), phantoms made with ``noise``."""
    from benchmarks.bench_generalization import case_row
    from sample_dicom.random_phantom import draw_parameters, make_random_phantom

    rows = []
    for s in seeds:
        p = draw_parameters(s)
        if noise is not None:
            p.update(noise_hu=noise, motion_mm=0.0)
        with true_aif(p) if use_true_aif else contextlib.nullcontext():
            row = case_row(s, make_random_phantom(s, params=p), "model", "numpy", bands=bands)
        rows.append(row)
        print(f"seed {s}: {'ok ' if row['ok'] else 'MISS'} core {row['core_ml']}/{row['core_truth_ml']} tmax6 "
              f"{row['tmax6_ml']}/{row['tmax6_truth_ml']} {row['residue']}/{row['kernel']} {row['noise_hu']} HU",
              flush=True)
        if "tmax_bands" in row:
            print("    " + "  ".join(f"{k} {v['bias_s']:+.2f}s +{v['extra_ml']}/-{v['missing_ml']} mL"
                                     for k, v in row["tmax_bands"].items() if v["bias_s"] is not None), flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", default="0-99", help="tuning seeds, e.g. 0-49 or 3,7,11")
    ap.add_argument("--noise", type=float, default=None, help="per-voxel noise (HU) for every case, no motion")
    ap.add_argument("--true-aif", action="store_true",
                    help="fit with the phantom's true arterial curve instead of the measured AIF")
    ap.add_argument("--bands", action="store_true", help="add the Tmax error by band of the true Tmax to each row")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--out", default=None)
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)  # internal: result file of one process
    args = ap.parse_args(argv)
    seeds = parse_seeds(args.seeds)
    if not set(seeds) <= set(TUNING_SEEDS):
        ap.error(f"--seeds: only tuning seeds {TUNING_SEEDS[0]}-{TUNING_SEEDS[-1]} may be scored here; "
                 "held-out seeds are scored by bench_generalization.py")
    if args.worker:
        Path(args.worker).write_text(json.dumps(score(seeds, args.noise, args.true_aif, args.bands)))
        return 0
    suffix = ("" if args.noise is None else f"_noise{args.noise:g}") + ("_trueaif" if args.true_aif else "") \
        + ("_bands" if args.bands else "")
    out = Path(args.out or ROOT / "benchmarks" / "results" / f"triage_tuning{suffix}.json")
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    t0 = time.perf_counter()
    parts = [seeds[i::args.jobs] for i in range(args.jobs) if seeds[i::args.jobs]]
    files = [out.with_suffix(f".part{i}") for i in range(len(parts))]
    procs = [subprocess.Popen([sys.executable, __file__, "--seeds", ",".join(map(str, p)), "--worker", str(f)]
                              + ([] if args.noise is None else ["--noise", str(args.noise)])
                              + (["--true-aif"] if args.true_aif else []) + (["--bands"] if args.bands else []),
                              env=env)
             for p, f in zip(parts, files)]
    if any(p.wait() for p in procs):
        print("a worker failed", file=sys.stderr)
        return 1
    rows = sorted((r for f in files for r in json.loads(f.read_text())), key=lambda r: r["seed"])
    for f in files:
        f.unlink()
    from benchmarks.bench_generalization import summary
    from triage import ALGORITHM

    result = {"benchmark": "CTP engine on tuning seeds of the randomized phantom",
              "command": "python benchmarks/tune_ctp.py " + " ".join(argv if argv is not None else sys.argv[1:]),
              "when_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "algorithm": ALGORITHM,
              "noise_hu": args.noise, "true_aif": args.true_aif, "wall_s": round(time.perf_counter() - t0, 1),
              "summary": summary(rows), "cases": rows}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"{result['summary']['within_tolerance']}/{len(rows)} within tolerance; misses {result['summary']['misses']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
