"""Per-voxel map accuracy on the Kudo-style tile phantom (CBF x MTT tiles, one slice per delay)."""

from __future__ import annotations

import numpy as np
import pytest

from models import get_backend
from sample_dicom.tiles import make_tile_phantom
from triage.perfusion import maps


@pytest.fixture(scope="module", params=[(1.5, 5.0, 0), (1.0, 5.0, 1), (2.0, 3.0, 2)], ids=["dt1.5", "dt1.0", "dt2.0"])
def fitted(request):
    dt, noise, seed = request.param
    tp = make_tile_phantom(seed=seed, noise_hu=noise, dt_s=dt, n_times=int(round(60 / dt)))
    truth = tp.truth_maps
    tissue = truth["cbf"] > 0
    conc = tp.hu - tp.hu[:3].mean(axis=0)
    noise_hu = maps.baseline_noise(conc, tissue, 3)
    pm = maps.perfusion_maps(conc, tissue, tp.aif_hu, dt, get_backend("numpy"), noise_hu=noise_hu)
    return tp, pm


def _tile_means(tp, values):
    """Mean of ``values`` over each tile's interior -> (n_tiles,)."""
    t = tp.truth_maps
    inner = t["tile"]
    key = np.round(t["cbf"][inner] * 1e6 + t["mtt"][inner] * 1e3 + t["delay"][inner]).astype(np.int64)
    _, inv = np.unique(key, return_inverse=True)
    return np.bincount(inv, values[inner]) / np.bincount(inv)


@pytest.mark.parametrize("name", ["cbf", "cbv", "mtt"])
def test_tile_correlation(fitted, name):
    tp, pm = fitted
    est, true = _tile_means(tp, pm[name]), _tile_means(tp, tp.truth_maps[name])
    assert np.corrcoef(est, true)[0, 1] >= 0.9


def test_cbf_is_delay_insensitive(fitted):
    tp, pm = fitted
    inner = tp.truth_maps["tile"]
    ratio = pm["cbf"][inner] / tp.truth_maps["cbf"][inner]
    delay = tp.truth_maps["delay"][inner]
    bias = np.array([ratio[delay == d].mean() for d in tp.truth["delay_values"]])
    assert bias.max() / bias.min() - 1.0 <= 0.10, bias


def test_tmax_follows_delay(fitted):
    tp, pm = fitted
    inner = tp.truth_maps["tile"]
    delay = tp.truth_maps["delay"][inner]
    med = np.array([np.median(pm["tmax"][inner][delay == d]) for d in tp.truth["delay_values"]])
    assert np.all(np.diff(med) > 0.5) and np.all(np.abs(med - np.asarray(tp.truth["delay_values"])) < 1.0), med
