"""Seed ranges and the scoring rule of the randomized-phantom generalization test (issue 8).

Tuning seeds 0-99 may be looked at while developing the engine; held-out seeds 1000-1039, 2000-2039,
3000-3039, 4000-4039, 5000-5039, 6000-6039 and 7000-7039 are only scored (benchmarks/bench_generalization.py writes
benchmarks/results/triage_generalization.json, and tests/triage/test_perfusion_heldout_random.py asserts on it).
"""

from __future__ import annotations

import numpy as np

TUNING_SEEDS = tuple(range(0, 100))
HELDOUT_SEEDS = tuple(range(1000, 1040))        # scored once with the final 2.0.0
FRESH_HELDOUT_SEEDS = tuple(range(2000, 2040))  # declared after that, before any engine ran on them
#: declared 2026-12-02 12:55 UTC, before any engine ran on them: the two sets above were seen by candidate 2.1.0,
#: so the next engine is judged here; they are scored once, with the engine that is shipped
THIRD_HELDOUT_SEEDS = tuple(range(3000, 3040))    # first scored with the shipped 2.1.0 (2026-12-03)
#: declared 2026-12-03 with 2.1.0, before any engine ran on them; first scored with 2.1.1 (2.1.0's numbers), no
#: engine change having come in round 6: a second never-seen estimate of the shipped engine
FOURTH_HELDOUT_SEEDS = tuple(range(4000, 4040))
#: declared 2026-12-03 10:05 UTC with 2.1.1, before any engine ran on them; first scored with 2.1.2 (2.1.0's numbers)
#: on 2026-12-03 in round 9, whose engine variants gained nothing: a third never-seen estimate of the shipped engine
FIFTH_HELDOUT_SEEDS = tuple(range(5000, 5040))
#: declared 2026-12-03 17:26 UTC with 2.1.2, before any engine ran on them; first scored with 2.2.0 (round 10), the
#: next engine whose numbers changed
SIXTH_HELDOUT_SEEDS = tuple(range(6000, 6040))
#: declared 2026-12-03 19:56 UTC with 2.2.0, before any engine ran on them: the set the next engine is judged on
SEVENTH_HELDOUT_SEEDS = tuple(range(7000, 7040))
#: the scored held-out sets by their key in triage_generalization.json (the seventh is not scored yet)
SCORED_HELDOUT_SETS = {"heldout": HELDOUT_SEEDS, "heldout_fresh": FRESH_HELDOUT_SEEDS,
                       "heldout_third": THIRD_HELDOUT_SEEDS, "heldout_fourth": FOURTH_HELDOUT_SEEDS,
                       "heldout_fifth": FIFTH_HELDOUT_SEEDS, "heldout_sixth": SIXTH_HELDOUT_SEEDS}
CORE_TOL = (5.0, 0.15)    # within max(5 mL, 15% of truth)
TMAX6_TOL = (10.0, 0.15)  # within max(10 mL, 15% of truth)
CLEAN_MAX_ML = 5.0        # lesion-free: core and Tmax > 6 s below this


def within(measured: float | None, truth: float, tol: tuple[float, float]) -> bool:
    return measured is not None and abs(measured - truth) <= max(tol[0], tol[1] * truth)


def score_case(result, truth: dict) -> dict:
    """Compare one ``TriageResult`` with a random phantom's truth. Returns JSON-safe numbers and ``ok``."""
    r = result
    lesion = truth.get("lesion_side") is not None
    out = {"status": r.status, "core_ml": r.core_ml, "core_truth_ml": truth["core_ml"], "tmax6_ml": r.tmax6_ml,
           "tmax6_truth_ml": truth["tmax6_ml"], "side": r.affected_side, "side_truth": truth["affected_side"],
           "reliable": bool(r.quality.get("reliable")),
           "warnings": sorted({w["code"] for w in r.quality.get("warnings", [])})}
    if r.status != "ok":
        out.update(ok=False, core_err_ml=None, tmax6_err_ml=None, reason="analysis failed")
        return out
    out["core_err_ml"] = r.core_ml - truth["core_ml"]
    out["tmax6_err_ml"] = r.tmax6_ml - truth["tmax6_ml"]
    core_ok = within(r.core_ml, truth["core_ml"], CORE_TOL)
    tmax_ok = within(r.tmax6_ml, truth["tmax6_ml"], TMAX6_TOL)
    side_ok = r.affected_side == truth["affected_side"]
    clean_ok = lesion or (r.core_ml < CLEAN_MAX_ML and r.tmax6_ml < CLEAN_MAX_ML)
    # the DEFUSE 3 verdict is reported beside the score, not part of it (the volumes' tolerance decides "ok")
    defuse3 = bool((r.eligibility or {}).get("defuse3", {}).get("eligible"))
    out.update(core_ok=core_ok, tmax6_ok=tmax_ok, side_ok=side_ok, clean_ok=clean_ok,
               ok=bool(core_ok and tmax_ok and side_ok and clean_ok), defuse3=defuse3,
               defuse3_truth=bool(truth["defuse3"]), defuse3_ok=defuse3 == bool(truth["defuse3"]))
    return out


#: true-Tmax bands (s) for ``tmax_bands``: normal tissue, the oligaemic rim, the two sides of the 6 s threshold, deep
TMAX_BANDS = ((None, 3.0), (3.0, 5.0), (5.0, 6.0), (6.0, 7.0), (7.0, 9.0), (9.0, None))


def tmax_bands(maps: dict, truth_maps: dict, voxel_ml: float, min_voxels: int = 50) -> dict:
    """Where a case's Tmax > 6 s error comes from (a development aid for tuning seeds; not part of the score).

    maps : the engine's ``TriageResult.maps`` ("tmax", "tmax6"); truth_maps : ``RandomPhantom.truth_maps``. For each
    band of the true Tmax: "bias_s", the median engine-minus-true Tmax (s) over the band's tissue (None under
    ``min_voxels``), and "extra_ml" / "missing_ml", the volume the engine's Tmax > 6 s mask wrongly includes / leaves
    out there. Returns {band label: {...}}.
    """
    tissue, true_t = truth_maps["tissue"], truth_maps["tmax"]
    err = maps["tmax"] - true_t
    extra = maps["tmax6"] & ~truth_maps["tmax6"]
    missing = truth_maps["tmax6"] & ~maps["tmax6"]
    out = {}
    for lo, hi in TMAX_BANDS:
        band = tissue.copy()
        if lo is not None:
            band &= true_t > lo
        if hi is not None:
            band &= true_t <= hi
        label = f"{'' if lo is None else f'{lo:g}'}-{'' if hi is None else f'{hi:g}'}s"
        n = int(band.sum())
        out[label] = {"bias_s": round(float(np.median(err[band])), 2) if n >= min_voxels else None,
                      "extra_ml": round(float((extra & band).sum() * voxel_ml), 2),
                      "missing_ml": round(float((missing & band).sum() * voxel_ml), 2)}
    return out
