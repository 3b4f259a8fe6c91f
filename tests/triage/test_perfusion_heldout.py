"""Held-out phantoms: parameters drawn at random (fixed seed), never used to tune the method."""

from __future__ import annotations

import numpy as np
import pytest

from sample_dicom.phantom import make_phantom
from triage import analyze


def _draws(n: int = 10) -> list[dict]:
    rng = np.random.default_rng(123)
    out = []
    for i in range(n):
        dt = float(rng.choice([1.0, 1.5, 2.0]))
        out.append({"seed": 100 + i, "lesion": str(rng.choice(["mca_left", "mca_right"])),
                    "noise_hu": round(float(rng.uniform(5, 12)), 2), "dt_s": dt, "n_times": int(60 / dt),
                    "core_scale": round(float(rng.uniform(0.5, 3.0)), 2),
                    "penumbra_scale": round(float(rng.uniform(0.7, 1.6)), 2),
                    "delay_s": round(float(rng.uniform(4.5, 6.0)), 2), "shape": (12, 256, 256)})
    return out


@pytest.mark.slow
@pytest.mark.parametrize("kw", _draws(), ids=lambda kw: f"seed{kw['seed']}")
def test_heldout_volumes_and_verdict(kw):
    p = make_phantom(**kw)
    r = analyze(p.series)
    t = p.truth
    core_err, tmax_err = abs(r.core_ml - t["core_ml"]), abs(r.tmax6_ml - t["tmax6_ml"])
    assert core_err <= 5.0 or core_err <= 0.15 * t["core_ml"], (r.core_ml, t["core_ml"])
    assert tmax_err <= 10.0 or tmax_err <= 0.15 * t["tmax6_ml"], (r.tmax6_ml, t["tmax6_ml"])
    assert r.eligibility["defuse3"]["eligible"] == t["defuse3"]
    assert r.affected_side == t["affected_side"]
