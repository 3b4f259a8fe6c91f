"""Per-stage timings of the CTP analysis in one warm process (the decoding paid once, outside the timings).

Run from the repository root (or from a worktree of another commit, to compare two versions on one machine)::

    .venv/bin/python benchmarks/bench_triage.py --write-case 512 /tmp/ctp512   # the bench_triage phantom
    .venv/bin/python benchmarks/stages_ctp.py /tmp/ctp512 --repeats 3

``analyze()`` runs ``--repeats`` times on the same loaded series; each stage's best time (and the best whole
analysis) is printed as JSON with the volumes, so two versions can be checked for identical results as well.
``--maps FILE.npz`` also saves every output map of the last run for a bit-for-bit comparison. This isolates the
engine's own cost from DICOM reading and the interpreter's start, which ``bench_triage.py`` measures with them.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder", type=Path, help="a folder holding one CTP series")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--maps", type=Path, default=None, help="save the last run's output maps here (.npz)")
    args = ap.parse_args(argv)

    import numpy as np

    from triage.api import analyze
    from triage.dicom_adapter import load_ctp

    series = load_ctp(args.folder)
    best: dict[str, float] = {}
    result = None
    for _ in range(max(1, args.repeats)):
        t0 = time.perf_counter()
        result = analyze(series)
        wall = time.perf_counter() - t0
        for name, value in {**result.timings_s, "analyze": wall}.items():
            best[name] = min(best.get(name, float("inf")), value)
    if args.maps is not None:
        np.savez_compressed(args.maps, **{k: np.asarray(v) for k, v in result.maps.items()})
    print(json.dumps({"code": str(ROOT), "shape_tzyx": list(series.hu.shape), "repeats": args.repeats,
                      "best_s": {k: round(v, 3) for k, v in best.items()},
                      "volumes_ml": {"core": result.core_ml, "tmax6": result.tmax6_ml, "tmax10": result.tmax10_ml},
                      "algorithm": result.algorithm}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
