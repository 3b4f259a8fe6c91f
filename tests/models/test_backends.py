"""The numpy reference and the torch backend agree (kernels and whole-pipeline volumes)."""

from __future__ import annotations

import numpy as np
import pytest

from models import BACKENDS, Backend, get_backend
from models.residue import MODEL_VERSION, build_dictionary
from sample_dicom.phantom import make_phantom
from sample_dicom.tiles import make_tile_phantom
from telerad.errors import UsageError
from triage import analyze

torch = pytest.importorskip("torch", reason="torch is not installed (optional extra telerad[torch])")


@pytest.fixture(scope="module")
def tile_curves():
    tp = make_tile_phantom(seed=0, noise_hu=5.0)
    inner = tp.truth_maps["tile"]
    conc = (tp.hu - tp.hu[:3].mean(axis=0))[:, inner]
    return np.ascontiguousarray(conc, dtype=np.float32), tp.aif_hu


def test_both_backends_follow_the_protocol():
    assert set(BACKENDS) == {"numpy", "torch"}
    for name in BACKENDS:
        be = get_backend(name)
        assert isinstance(be, Backend) and be.version and be.device == "cpu"


def test_match_kernels_agree(tile_curves):
    conc, aif = tile_curves
    dic = build_dictionary(aif, 1.5)
    b_np, s_np = get_backend("numpy").match(conc, dic.atoms, dic.shape[2])
    b_t, s_t = get_backend("torch").match(conc, dic.atoms, dic.shape[2])
    assert np.mean(b_np == b_t) > 0.999
    np.testing.assert_allclose(s_np, s_t, rtol=1e-4, atol=1e-3)


def test_deconvolve_kernels_agree(tile_curves):
    conc, aif = tile_curves
    d_np = get_backend("numpy").deconvolve(conc, aif, 1.5, oi_max=0.12)
    d_t = get_backend("torch").deconvolve(conc, aif, 1.5, oi_max=0.12)
    same = d_np.threshold == d_t.threshold
    assert same.mean() > 0.99
    np.testing.assert_allclose(d_np.peak[same], d_t.peak[same], rtol=1e-3, atol=1e-6)
    np.testing.assert_allclose(d_np.tmax_s[same], d_t.tmax_s[same], atol=1e-3)


def test_smoothing_kernels_agree():
    rng = np.random.default_rng(0)
    arr = rng.standard_normal((5, 3, 40, 50)).astype(np.float32)
    w = rng.random((3, 40, 50)) > 0.3
    for weight in (None, w):
        a = get_backend("numpy").smooth_inplane(arr, 1.3, weight)
        b = get_backend("torch").smooth_inplane(arr, 1.3, weight)
        np.testing.assert_allclose(a, b, atol=1e-4)


@pytest.mark.parametrize("kw", [{"seed": 21, "lesion": "mca_left"}, {"seed": 22, "lesion": "mca_right", "noise_hu": 8.0}])
def test_pipeline_volumes_agree_within_1_ml(kw):
    p = make_phantom(shape=(10, 128, 128), spacing_mm=(5.0, 1.8, 1.8), noise_hu=kw.pop("noise_hu", 6.0), **kw)
    a = analyze(p.series, backend="numpy")
    b = analyze(p.series, backend="torch")
    for key in ("core_ml", "tmax6_ml", "tmax10_ml", "mismatch_ml"):
        assert abs(getattr(a, key) - getattr(b, key)) <= 1.0, key
    assert a.affected_side == b.affected_side
    assert b.algorithm["backend"] == "torch" and a.algorithm["backend"] == "numpy"
    assert a.algorithm["version"] == b.algorithm["version"]


def test_versions_are_carried(tile_curves):
    assert MODEL_VERSION
    with pytest.raises(UsageError, match="backend"):
        get_backend("jax")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
def test_cuda_matches_cpu(tile_curves):
    conc, aif = tile_curves
    dic = build_dictionary(aif, 1.5)
    b_c, s_c = get_backend("torch", "cuda").match(conc, dic.atoms, dic.shape[2])
    b_n, s_n = get_backend("numpy").match(conc, dic.atoms, dic.shape[2])
    assert np.mean(b_c == b_n) > 0.99
