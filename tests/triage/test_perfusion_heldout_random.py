"""Issue 8 acceptance: the held-out score of the engine on randomized phantoms it was not tuned on.

The scores over the six held-out sets (1000-1039, scored once with the final 2.0.0; 2000-2039, declared
afterwards, before any engine ran on them; 3000-3039, declared in round 3 and first scored with 2.1.0; 4000-4039,
declared with 2.1.0 and first scored with 2.1.1; 5000-5039, declared with 2.1.1 and first scored with 2.1.2;
6000-6039, declared with 2.1.2 and first scored with 2.2.0; about a quarter of the cases 512x512) are measured by
``benchmarks/bench_generalization.py`` and committed in ``benchmarks/results/triage_generalization.json``.
Here the committed numbers are checked, and a CI-sized subset of the held-out seeds (the first ten 256x256
ones of the fresh set, about a minute) is re-run and must reproduce them.

The floors are the scores measured for this algorithm version, not the issue's 90% target, which this
version does not reach (docs/perfusion.md, "Generalization"). The hits of the ``residue_shape`` and
``fragile_eligibility`` warnings on the held-out sets are checked here too.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from sample_dicom.random_cases import (FRESH_HELDOUT_SEEDS, SCORED_HELDOUT_SETS, SEVENTH_HELDOUT_SEEDS,
                                      TUNING_SEEDS, score_case)
from sample_dicom.random_phantom import draw_parameters, make_random_phantom
from triage import ALGORITHM, analyze

RESULTS = Path(__file__).resolve().parents[2] / "benchmarks" / "results" / "triage_generalization.json"
CI_CASES = 10
#: set key in the JSON -> the fraction within tolerance measured for telerad-ctp 2.2.0: 34, 34, 31, 34 and 33 of 40 on
#: the first five sets (2.1.0-2.1.3: 34, 33, 31, 35, 34), and 31 of 40 on the sixth, first scored with 2.2.0; the third
#: (2.1.0), the fourth (2.1.1), the fifth (2.1.2) and the sixth (2.2.0) had never been seen by any engine; the issue
#: asks 0.9, not met
FLOORS = {"heldout": 0.85, "heldout_fresh": 0.85, "heldout_third": 0.775, "heldout_fourth": 0.85,
          "heldout_fifth": 0.825, "heldout_sixth": 0.775}


def _committed() -> dict:
    return json.loads(RESULTS.read_text())


@pytest.mark.parametrize("key", sorted(FLOORS))
def test_committed_heldout_score(key):
    data = _committed()
    seeds_allowed, floor = SCORED_HELDOUT_SETS[key], FLOORS[key]
    held = data[key]
    cases, s = held["cases"], held["summary"]
    seeds = [c["seed"] for c in cases]
    assert len(seeds) >= 30 and set(seeds).isdisjoint(TUNING_SEEDS) and set(seeds) <= set(seeds_allowed)
    assert data["algorithm"]["version"] == ALGORITHM["version"], "rerun benchmarks/bench_generalization.py"
    assert s["within_tolerance"] == sum(c["ok"] for c in cases) and s["cases"] == len(cases)
    assert s["within_tolerance"] / s["cases"] >= floor, s
    for c in cases:  # lesion-free brains stay clean
        if c["core_truth_ml"] == 0 and c["tmax6_truth_ml"] == 0:
            assert c["status"] == "ok" and c["core_ml"] < 5 and c["tmax6_ml"] < 5, c


def test_committed_plug_flow_warnings():
    """residue_shape flags plug-flow cases only (measured with 2.1.0: 22 of the 28 plug-flow cases of the first three
    sets, none of the 92 others; 2.1.1 on the fourth: 5 of 9, none of 31; 2.1.2 on the fifth: 11 of 15, none of 25;
    2.2.0 on all six: 45 of 68, none of 172)."""
    data = _committed()
    cases = [c for key in FLOORS for c in data[key]["cases"]]
    flagged = [c for c in cases if "residue_shape" in c["warnings"]]
    box = [c for c in cases if c["residue"] == "box"]
    assert all(c["residue"] == "box" for c in flagged), [c["seed"] for c in flagged if c["residue"] != "box"]
    assert len(flagged) >= 0.6 * len(box), (len(flagged), len(box))
    assert all(not c["reliable"] for c in flagged)


def test_committed_high_noise_info():
    """high_noise (2.1.2; threshold set on the tuning seeds) marks the scans whose volumes are right less often: measured
    on the four held-out sets scored when it came, 31 of the 44 flagged results within tolerance against 102 of the 116
    others; with the fifth set, 38 of 53 against 129 of 147; 2.2.0 on the six sets, 48 of 63 against 149 of 177. It is
    info: it never makes a result unreliable by itself."""
    data = _committed()
    cases = [c for key in FLOORS for c in data[key]["cases"]]
    flagged = [c for c in cases if "high_noise" in c["warnings"]]
    others = [c for c in cases if "high_noise" not in c["warnings"]]
    assert (sum(c["ok"] for c in flagged), len(flagged)) == (48, 63)
    assert (sum(c["ok"] for c in others), len(others)) == (149, 177)
    assert sum(c["ok"] for c in flagged) / len(flagged) < sum(c["ok"] for c in others) / len(others)
    assert any(c["reliable"] for c in flagged)


def test_committed_fragile_eligibility():
    """The DEFUSE 3 verdict beside the score, and the fragile_eligibility warning (2.1.1): measured on the five sets,
    the verdict right in 194 of 200, all 6 wrong ones flagged, 17 cases flagged in all; 2.2.0 on the six sets: right in
    233 of 240, 5 of the 7 wrong ones flagged (not 2039 and 6009), 24 flagged in all."""
    data = _committed()
    cases = [c for key in FLOORS for c in data[key]["cases"] if c["status"] == "ok"]
    for key in FLOORS:
        s = data[key]["summary"]["fragile_eligibility"]
        done = [c for c in data[key]["cases"] if c["status"] == "ok"]
        assert s["defuse3_wrong"] == [c["seed"] for c in done if not c["defuse3_ok"]]
        assert s["flagged"] == sum("fragile_eligibility" in c["warnings"] for c in done)
    flagged = [c for c in cases if "fragile_eligibility" in c["warnings"]]
    wrong = [c for c in cases if c["defuse3"] != c["defuse3_truth"]]
    assert len(wrong) <= 0.05 * len(cases), [c["seed"] for c in wrong]
    assert len(flagged) <= 0.1 * len(cases), [c["seed"] for c in flagged]
    assert sum("fragile_eligibility" in c["warnings"] for c in wrong) >= 0.5 * len(wrong), [c["seed"] for c in wrong]
    assert all(not c["reliable"] for c in flagged)


def test_the_held_out_sets_are_apart():
    sets = [set(s) for s in SCORED_HELDOUT_SETS.values()] + [set(SEVENTH_HELDOUT_SEEDS), set(TUNING_SEEDS)]
    assert sum(len(s) for s in sets) == len(set().union(*sets))


@pytest.mark.slow
def test_heldout_subset_reproduces_the_committed_numbers():
    committed = {c["seed"]: c for c in _committed()["heldout_fresh"]["cases"]}
    seeds = [s for s in FRESH_HELDOUT_SEEDS if draw_parameters(s)["matrix"] == 256][:CI_CASES]
    rows = []
    for s in seeds:
        p = make_random_phantom(s)
        row = score_case(analyze(p.series), p.truth)
        rows.append(row)
        ref = committed[s]
        assert row["status"] == ref["status"] and row["side"] == ref["side"], (s, row, ref)
        assert ("residue_shape" in row["warnings"]) == ("residue_shape" in ref["warnings"]), (s, row["warnings"])
        if row["status"] == "ok":  # BLAS differences may move a voxel or two across a threshold
            assert abs(row["core_ml"] - ref["core_ml"]) < 1.0 and abs(row["tmax6_ml"] - ref["tmax6_ml"]) < 1.5, (s, row)
    # a case sitting on a tolerance edge may flip with a voxel or two
    assert abs(sum(r["ok"] for r in rows) - sum(committed[s]["ok"] for s in seeds)) <= 1, rows


def test_tuning_tool_scores_tuning_seeds_only_and_restores_the_aif():
    """benchmarks/tune_ctp.py refuses held-out seeds; its true-AIF switch is undone after each case."""
    import subprocess
    import sys

    root = RESULTS.parents[2]
    tool = root / "benchmarks" / "tune_ctp.py"
    proc = subprocess.run([sys.executable, str(tool), "--seeds", str(FRESH_HELDOUT_SEEDS[0])],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "only tuning seeds" in proc.stderr
    sys.path.insert(0, str(root))
    try:
        from benchmarks.tune_ctp import true_aif
    finally:
        sys.path.remove(str(root))
    from triage.perfusion import pipeline

    before = pipeline.maps.perfusion_maps
    p = draw_parameters(TUNING_SEEDS[0], matrix=256, max_slices=6)
    series = make_random_phantom(TUNING_SEEDS[0], params=p).series
    with true_aif(p):
        assert pipeline.maps.perfusion_maps is not before
        r = analyze(series)
    assert pipeline.maps.perfusion_maps is before and r.status == "ok"
    measured = analyze(series)  # the measured AIF again: other maps
    assert r.maps["tmax"].shape == measured.maps["tmax"].shape
    assert not np.array_equal(r.maps["tmax"], measured.maps["tmax"])


def test_absolute_cbf_and_cbv_against_the_truth_outside_the_lesion():
    """bench_generalization.healthy_ratios (not scored): 1 for the truth itself; on a phantom the engine's CBV is near
    the truth while its absolute CBF is not calibrated (docs/perfusion.md, "Absolute CBF and CBV")."""
    from benchmarks.bench_generalization import healthy_ratios

    p = make_random_phantom(TUNING_SEEDS[0], params=draw_parameters(TUNING_SEEDS[0], matrix=256, max_slices=6))
    assert healthy_ratios(p.truth_maps, p.truth_maps) == {"cbf_ratio": 1.0, "cbv_ratio": 1.0}
    ratios = healthy_ratios(analyze(p.series).maps, p.truth_maps)
    assert 0.7 < ratios["cbv_ratio"] < 1.3 and ratios["cbf_ratio"] > 0.7
    tuning = json.loads((RESULTS.parent / "triage_tuning.json").read_text())["summary"]["healthy_ratio_median"]
    assert all(0.85 < tuning[f]["cbv"] < 1.15 for f in ("all", "exp", "gamma", "box"))
    assert tuning["exp"]["cbf"] < tuning["gamma"]["cbf"] < tuning["box"]["cbf"]  # the residue family sets the bias
