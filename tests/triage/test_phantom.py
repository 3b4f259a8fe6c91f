"""The digital phantoms follow the physics of the issue and their truth is self-consistent."""

from __future__ import annotations

import json

import numpy as np

from sample_dicom import physics
from sample_dicom.phantom import LABELS, make_phantom
from sample_dicom.tiles import make_tile_phantom

SMALL = {"shape": (8, 128, 128), "spacing_mm": (5.0, 1.8, 1.8)}


def test_deterministic_for_a_seed():
    a, b = make_phantom(seed=5, **SMALL), make_phantom(seed=5, **SMALL)
    assert np.array_equal(a.series.hu, b.series.hu)
    assert a.truth == b.truth
    assert not np.array_equal(a.series.hu, make_phantom(seed=6, **SMALL).series.hu)


def test_anatomy_and_truth_are_consistent():
    p = make_phantom(seed=1, noise_hu=0.0, **SMALL)
    lab = p.truth_maps["labels"]
    for name in ("skull", "csf", "gm", "wm", "artery", "sinus"):
        assert (lab == LABELS[name]).any(), name
    t = p.truth
    json.dumps(t, allow_nan=False)
    m = p.truth_maps
    assert np.allclose(m["cbv"], m["cbf"] * m["mtt"] / 60.0, atol=1e-4)  # CBV = CBF * MTT
    assert np.all(m["core"] <= m["tmax6"]) and np.all(m["tmax10"] <= m["tmax6"])
    v = p.series.voxel_ml
    assert np.isclose(t["core_ml"], m["core"].sum() * v) and np.isclose(t["tmax6_ml"], m["tmax6"].sum() * v)
    assert t["affected_side"] == "left" and 5 < t["core_ml"] < t["tmax6_ml"]
    assert np.isclose(t["mismatch_ml"], t["tmax6_ml"] - t["core_ml"])


def test_lesion_lies_on_the_requested_side():
    for lesion, sign in (("mca_left", 1), ("mca_right", -1)):
        p = make_phantom(seed=2, lesion=lesion, **SMALL)
        cols = np.nonzero(p.truth_maps["tmax6"])[2]
        assert np.sign(cols.mean() - (SMALL["shape"][2] - 1) / 2) == sign  # +x columns are patient left (LPS)
        assert p.series.affine[0, 0] > 0


def test_arterial_curve_is_realistic():
    p = make_phantom(seed=3, noise_hu=0.0, **SMALL)
    art = p.series.hu[:, p.truth_maps["labels"] == LABELS["artery"]]
    enh = art - art[:2].mean(axis=0)
    assert 300 * 0.7 <= enh.max() <= 500  # partial volume 0.75 of a 400 HU bolus
    fine = np.arange(0, 80, physics.FINE_DT_S)
    aif = physics.arterial_curve(fine, arrival_s=6.0, peak_hu=400.0)
    after = fine > 6.0 + 4.5 + 6.0
    assert 300 <= aif.max() <= 500 and aif[after].max() > 0.05 * aif.max()  # recirculation bump


def test_noise_level_matches_request():
    p = make_phantom(seed=4, noise_hu=10.0, **SMALL)
    wm = p.series.hu[:3, p.truth_maps["labels"] == LABELS["wm"]]
    assert 9.0 < np.sqrt(wm.var(axis=0, ddof=1).mean()) < 11.0


def test_motion_moves_frames_and_reports_displacement():
    still = make_phantom(seed=5, noise_hu=0.0, **SMALL)
    moved = make_phantom(seed=5, noise_hu=0.0, motion_mm=3.0, **SMALL)
    assert 0 < moved.truth["max_displacement_mm"] <= 3.0 * 1.3
    assert np.array_equal(moved.series.hu[0], still.series.hu[0])
    assert not np.allclose(moved.series.hu[-1], still.series.hu[-1])


def test_tissue_curve_area_follows_indicator_dilution():
    fine = np.arange(0, 120, physics.FINE_DT_S)
    aif = physics.arterial_curve(fine, arrival_s=5.0, peak_hu=400.0)
    c = physics.tissue_curve(fine, aif, cbf=50.0, cbv=4.0, delay_s=2.0, beta_s=1.0)
    ratio = np.trapezoid(c, fine) / np.trapezoid(aif, fine)
    assert np.isclose(ratio, physics.RHO_G_PER_ML / physics.K_H * 4.0 / 100.0, rtol=0.02)


def test_tile_phantom_grid():
    tp = make_tile_phantom(seed=0, noise_hu=0.0)
    m = tp.truth_maps
    assert len(np.unique(m["cbf"][m["tile"]])) == len(tp.truth["cbf_values"])
    assert len(np.unique(m["delay"][m["tile"]])) == len(tp.truth["delay_values"])
    assert tp.hu.shape[1] == len(tp.truth["delay_values"]) and tp.aif_hu.max() > 300
