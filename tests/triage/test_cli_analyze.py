"""``telerad analyze``: exit codes, one JSON object, human summary, --out files, phantoms end to end."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sample_dicom.phantom import make_phantom
from sample_dicom.writer import write_phantom, write_series, write_volume
from triage.cli import main
from triage.result import JSON_KEYS

ROOT = Path(__file__).resolve().parents[2]
SHAPE = (8, 96, 96)
SPACING = (5.0, 2.4, 2.4)  # a 230 mm field of view at 96 px


def _phantom(folder: Path, **overrides) -> dict:
    params = dict(seed=21, shape=SHAPE, n_times=30, dt_s=1.5, noise_hu=8.0, lesion="mca_left", spacing_mm=SPACING)
    layout = overrides.pop("layout", "single")
    shuffle = overrides.pop("shuffle", False)
    params.update(overrides)
    phantom = make_phantom(**params)
    write_phantom(phantom, folder, layout=layout, shuffle=shuffle, seed=params["seed"])
    return phantom.truth


def _run_json(capsys, *argv: str) -> tuple[int, dict, str]:
    rc = main([*argv, "--json"])
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert len(lines) == 1, captured.out  # exactly one JSON object, nothing else on stdout
    return rc, json.loads(lines[0]), captured.err


@pytest.fixture(scope="module")
def ctp(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ctp")
    return folder, _phantom(folder)


def test_json_result_has_the_issue_keys(ctp, capsys):
    folder, truth = ctp
    rc, doc, err = _run_json(capsys, str(folder))
    assert rc == 0 and "error" not in err
    assert list(doc) == list(JSON_KEYS)
    assert doc["status"] == "ok"
    assert doc["algorithm"]["name"] and doc["algorithm"]["version"]
    assert doc["study_instance_uid"] == "2.25.1021"
    assert doc["affected_side"] == "left"
    assert 0 < doc["core_ml"] < doc["tmax6_ml"]
    assert doc["mismatch_ml"] == pytest.approx(doc["tmax6_ml"] - doc["core_ml"])
    assert set(doc["eligibility"]) == {"defuse3", "extend_ia"}
    assert isinstance(doc["quality"]["reliable"], bool) and isinstance(doc["quality"]["warnings"], list)
    assert doc["timings_s"]["read_dicom"] > 0 and doc["timings_s"]["total"] >= doc["timings_s"]["read_dicom"]


def test_human_summary(ctp, capsys):
    folder, _ = ctp
    assert main([str(folder)]) == 0
    out = capsys.readouterr().out
    for text in ("Core (rCBF < 30%)", "Tmax > 6 s", "Mismatch ratio", "DEFUSE 3", "EXTEND-IA", "telerad-ctp",
                 "not a diagnosis"):
        assert text in out
    with pytest.raises(json.JSONDecodeError):
        json.loads(out)


def test_out_writes_maps_and_readable_pngs(ctp, tmp_path, capsys):
    import nibabel as nib

    folder, _ = ctp
    out = tmp_path / "out"
    rc, doc, _ = _run_json(capsys, str(folder), "--out", str(out))
    assert rc == 0 and doc["timings_s"]["outputs"] > 0
    assert json.loads((out / "result.json").read_text())["core_ml"] == doc["core_ml"]
    with np.load(out / "maps.npz") as maps:
        assert {"cbf", "cbv", "mtt", "tmax", "rcbf", "core", "tmax6", "tmax10", "brain", "affine"} <= set(maps)
        assert maps["core"].shape == SHAPE and maps["core"].dtype == bool
        core_voxels = int(maps["core"].sum())
    core_img = nib.load(out / "nifti" / "core.nii.gz")
    assert core_img.shape == (SHAPE[2], SHAPE[1], SHAPE[0])
    assert int(np.asarray(core_img.dataobj).sum()) == core_voxels
    assert np.allclose(np.abs(np.diag(core_img.affine)[:3]), [SPACING[2], SPACING[1], SPACING[0]])
    slices = sorted((out / "slices").glob("*.png"))
    assert len(slices) == SHAPE[0]
    summary = Image.open(out / "summary.png")
    assert summary.mode == "RGB" and summary.width >= 1000
    pixels = np.asarray(Image.open(slices[SHAPE[0] // 2]).convert("RGB")).reshape(-1, 3)
    assert np.any((pixels[:, 0] > 200) & (pixels[:, 1] < 120) & (pixels[:, 2] > 200))  # magenta core
    assert np.any((pixels[:, 1] > 150) & (pixels[:, 0] < 120) & (pixels[:, 2] < 120))  # green Tmax > 6 s


def test_layouts_give_identical_results(ctp, tmp_path, capsys):
    folder, _ = ctp
    _, reference, _ = _run_json(capsys, str(folder))
    other = tmp_path / "per_tp"
    _phantom(other, layout="per_timepoint", shuffle=True)
    rc, doc, _ = _run_json(capsys, str(other))
    assert rc == 0
    for key in ("core_ml", "tmax6_ml", "tmax10_ml", "affected_side"):
        assert doc[key] == reference[key]


@pytest.mark.parametrize(("dt_s", "n_times"), [(1.0, 40), (2.0, 20)])
def test_sampling_from_1_to_2_seconds(tmp_path, capsys, dt_s, n_times):
    _phantom(tmp_path, dt_s=dt_s, n_times=n_times, shuffle=True)
    rc, doc, _ = _run_json(capsys, str(tmp_path))
    assert rc == 0 and doc["status"] == "ok" and doc["affected_side"] == "left"


def test_irregular_sampling_end_to_end(tmp_path, capsys):
    """1 s sampling during the bolus, then 3 s (a common two-rate protocol)."""
    from triage.dicom_adapter import load_ctp
    from triage.series import PerfusionSeries

    s = make_phantom(seed=21, shape=SHAPE, n_times=60, dt_s=1.0, noise_hu=8.0, spacing_mm=SPACING).series
    keep = list(range(24)) + list(range(26, 60, 3))
    write_series(PerfusionSeries(hu=np.ascontiguousarray(s.hu[keep]), times_s=s.times_s[keep], spacing_mm=s.spacing_mm,
                                 affine=s.affine, study_instance_uid=s.study_instance_uid,
                                 series_instance_uid=s.series_instance_uid), tmp_path, shuffle=True)
    sampling = load_ctp(tmp_path).source["sampling"]
    assert not sampling["regular"] and sampling["max_dt_s"] == pytest.approx(3.0, abs=1e-3)
    rc, doc, _ = _run_json(capsys, str(tmp_path))
    assert rc == 0 and doc["status"] == "ok" and doc["affected_side"] == "left"


def test_motion_phantom_end_to_end(tmp_path, capsys):
    truth = _phantom(tmp_path, motion_mm=3.0)
    rc, doc, _ = _run_json(capsys, str(tmp_path))
    assert rc == 0 and doc["status"] == "ok"
    assert doc["quality"]["max_displacement_mm"] == pytest.approx(truth["max_displacement_mm"], abs=1.5)
    assert "motion" in {w["code"] for w in doc["quality"]["warnings"]}


def test_no_aif_is_a_failed_result_exit_3(tmp_path, capsys):
    folder, out = tmp_path / "ctp", tmp_path / "out"
    _phantom(folder, aif="none")
    rc, doc, _ = _run_json(capsys, str(folder), "--out", str(out))
    assert rc == 3
    assert doc["status"] == "failed" and doc["core_ml"] is None
    assert any(w["severity"] == "fatal" for w in doc["quality"]["warnings"])
    assert json.loads((out / "result.json").read_text())["status"] == "failed"
    assert (out / "summary.png").is_file() and not (out / "maps.npz").exists()
    assert main([str(folder)]) == 3
    assert "FAILED" in capsys.readouterr().out


def test_non_ctp_is_refused_with_exit_2(tmp_path, capsys):
    write_volume(np.zeros((20, 32, 32), np.float32), tmp_path, spacing_mm=(5.0, 1.0, 1.0))
    assert main([str(tmp_path)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("telerad analyze: error: single phase")
    assert "Traceback" not in captured.err
    rc, doc, _ = _run_json(capsys, str(tmp_path))
    assert rc == 2 and doc["status"] == "rejected" and "single phase" in doc["error"]


def test_missing_folder_and_bad_options(tmp_path, capsys):
    assert main([str(tmp_path / "missing")]) == 2
    assert "is not a folder" in capsys.readouterr().err
    assert main([str(tmp_path), "--device", "cuda"]) == 2
    assert "--backend torch" in capsys.readouterr().err
    assert main([str(tmp_path), "--backend", "tensorflow"]) == 2
    assert "invalid choice" in capsys.readouterr().err


def test_torch_backend_through_the_cli(ctp, capsys):
    pytest.importorskip("torch", reason="torch is not installed (optional extra telerad[torch]; make test installs it)")
    folder, _ = ctp
    _, reference, _ = _run_json(capsys, str(folder))
    rc, doc, _ = _run_json(capsys, str(folder), "--backend", "torch", "--device", "cpu")
    assert rc == 0 and doc["algorithm"]["backend"] == "torch"
    for key in ("core_ml", "tmax6_ml", "tmax10_ml"):
        assert doc[key] == pytest.approx(reference[key], abs=1.0)


def test_console_script_subprocess(ctp):
    folder, _ = ctp
    script = Path(sys.executable).with_name("telerad")
    cmd = [str(script)] if script.is_file() else [sys.executable, "-m", "telerad.cli"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([*cmd, "analyze", str(folder), "--json"], capture_output=True, text=True, timeout=300,
                          cwd=ROOT, env=env, check=False)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["status"] == "ok"
    empty = folder.parent / "empty_for_cli"
    empty.mkdir(exist_ok=True)
    proc = subprocess.run([*cmd, "analyze", str(empty)], capture_output=True, text=True, timeout=300, cwd=ROOT,
                          env=env, check=False)
    assert proc.returncode == 2 and "no DICOM images" in proc.stderr and proc.stdout == ""
    shutil.rmtree(empty)


def test_the_stage_timing_tool_reports_every_stage_and_the_volumes(tmp_path, capsys):
    """benchmarks/stages_ctp.py (the engine's own cost, decoding excluded) on a small written phantom."""
    from benchmarks.stages_ctp import main as stages_main

    truth = _phantom(tmp_path / "ctp")
    assert stages_main([str(tmp_path / "ctp"), "--repeats", "2", "--maps", str(tmp_path / "maps.npz")]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["repeats"] == 2 and {"bin", "masks", "aif", "deconvolution", "segmentation", "analyze"} <= set(out["best_s"])
    assert abs(out["volumes_ml"]["core"] - truth["core_ml"]) <= max(5.0, 0.15 * truth["core_ml"])
    assert set(np.load(tmp_path / "maps.npz").files) >= {"cbf", "tmax", "core", "tmax6", "brain"}
