"""Sample studies for a fresh install, generated on demand (deterministic, fixed seeds).

Nothing large is committed: ``ensure_sample_studies(dest)`` writes, once,

- ``ctp_left_mca/``: a small CT perfusion (128x128, 8 slices, 30 time points at
  1.5 s, 8 HU noise) with a left MCA core and penumbra; its ground truth is
  ``ctp_left_mca.truth.json`` next to the folder;
- ``ncct_head/``: a 20-slice non-contrast head CT of another patient (one phase,
  not a CTP), so a worklist shows both kinds.

The study folders hold DICOM files only, so they can be pushed as they are.
A ``.<name>.complete`` marker next to each holds :data:`SAMPLES_VERSION`; a folder
without it (an interrupted run, an older version) is rebuilt. Identical inputs
give byte-identical files, so re-generating never creates new UIDs.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

__all__ = ["SAMPLES_VERSION", "SAMPLE_STUDIES", "ensure_sample_studies"]

#: Bump when the generator or the parameters below change, so old copies are rebuilt.
SAMPLES_VERSION = "1"
SAMPLE_STUDIES = ("ctp_left_mca", "ncct_head")
_PIXEL_MM = 1.8  # 230 mm field of view at 128 px


def _write_ctp(dest: Path) -> None:
    from sample_dicom.phantom import make_phantom
    from sample_dicom.writer import uid_from, write_phantom

    phantom = make_phantom(seed=101, shape=(8, 128, 128), n_times=30, dt_s=1.5, noise_hu=8.0, lesion="mca_left",
                           spacing_mm=(5.0, _PIXEL_MM, _PIXEL_MM),
                           study_instance_uid=uid_from("telerad-sample", "ctp-study"),
                           series_instance_uid=uid_from("telerad-sample", "ctp-series"))
    write_phantom(phantom, dest, seed=101, patient_name="SAMPLE^CTP^STROKE", patient_id="TLRD-SAMPLE-01")
    os.replace(dest / "truth.json", dest.parent / "ctp_left_mca.truth.json")


def _write_ncct(dest: Path) -> None:
    from sample_dicom.phantom import make_phantom
    from sample_dicom.writer import uid_from, write_volume

    phantom = make_phantom(seed=102, shape=(20, 128, 128), n_times=2, dt_s=1.5, noise_hu=4.0, lesion="none",
                           spacing_mm=(5.0, _PIXEL_MM, _PIXEL_MM))
    write_volume(phantom.series.hu[0], dest, spacing_mm=phantom.series.spacing_mm, affine=phantom.series.affine,
                 seed=102, study_instance_uid=uid_from("telerad-sample", "ncct-study"),
                 series_instance_uid=uid_from("telerad-sample", "ncct-series"),
                 patient_name="SAMPLE^HEAD^PLAIN", patient_id="TLRD-SAMPLE-02")


_WRITERS = {"ctp_left_mca": _write_ctp, "ncct_head": _write_ncct}


def ensure_sample_studies(dest_dir: str | os.PathLike[str]) -> list[Path]:
    """Make sure the sample studies exist under ``dest_dir``; returns their folders (in SAMPLE_STUDIES order)."""
    root = Path(dest_dir)
    root.mkdir(parents=True, exist_ok=True)
    folders = []
    for name in SAMPLE_STUDIES:
        folder = root / name
        marker = root / f".{name}.complete"
        if not (folder.is_dir() and marker.is_file() and marker.read_text().strip() == SAMPLES_VERSION):
            marker.unlink(missing_ok=True)
            tmp = root / f".{name}.tmp" / name  # the writers may put files next to the study folder
            shutil.rmtree(tmp.parent, ignore_errors=True)
            tmp.parent.mkdir()
            _WRITERS[name](tmp)
            shutil.rmtree(folder, ignore_errors=True)
            for item in tmp.parent.iterdir():
                os.replace(item, root / item.name)
            tmp.parent.rmdir()
            marker.write_text(SAMPLES_VERSION + "\n")
        folders.append(folder)
    return folders
