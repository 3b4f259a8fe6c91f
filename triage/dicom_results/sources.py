"""The source images a result refers to: loaded, checked and put on the maps' (Z, Y, X) grid.

The maps of a :class:`~triage.result.TriageResult` live on the native grid of
the CTP, slice ``z`` being the ``z``-th slice position along the slice normal
(the order :mod:`triage.dicom_adapter` uses). The SEG references the images of
**one time point** (the first, i.e. the pre-contrast baseline): at every slice
position of the analysed series, the earliest image. The SR's evidence lists
every CT image of the perfusion (all time points, also when each time point is
its own series).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from triage.dicom_results.identity import ResultObjectError
from triage.result import TriageResult

__all__ = ["SourceLike", "Sources", "load_sources", "select_sources"]

SourceLike = Dataset | str | os.PathLike
_POSITION_TOL_MM = 0.05
_GEOMETRY_TOL_MM = 0.5


@dataclass(frozen=True)
class Sources:
    """The reference frames and the evidence of one result.

    frames : the Z images of the first time point, ordered like the maps' Z axis
    evidence : every CT image of the perfusion in the study (for the SR)
    spacing_mm : (dz, dy, dx); affine : (4, 4) voxel (x, y, z, 1) -> LPS mm
    """

    frames: list[Dataset]
    evidence: list[Dataset]
    spacing_mm: tuple[float, float, float]
    affine: np.ndarray

    @property
    def voxel_ml(self) -> float:
        dz, dy, dx = self.spacing_mm
        return dz * dy * dx / 1000.0

    def base_hu(self) -> np.ndarray:
        """(Z, Y, X) float32 HU of the reference frames (decoded here; files are read again if needed)."""
        planes = []
        for ds in self.frames:
            if "PixelData" not in ds:
                ds = pydicom.dcmread(ds.filename)
            slope, intercept = float(ds.get("RescaleSlope", 1) or 1), float(ds.get("RescaleIntercept", 0) or 0)
            planes.append(ds.pixel_array.astype(np.float32) * np.float32(slope) + np.float32(intercept))
        return np.stack(planes)


def _paths(items: Iterable[SourceLike]) -> Iterable[SourceLike]:
    for item in items:
        if isinstance(item, (str, os.PathLike)) and Path(item).is_dir():
            for root, dirs, files in os.walk(item):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                yield from (Path(root, f) for f in sorted(files) if not f.startswith("."))
        else:
            yield item


def load_sources(sources: SourceLike | Sequence[SourceLike]) -> list[Dataset]:
    """Datasets as given; files (and folders, recursively) read without pixel data. Non-DICOM files are skipped."""
    if isinstance(sources, (Dataset, str, os.PathLike)):
        sources = [sources]
    out: list[Dataset] = []
    for item in _paths(sources):
        if isinstance(item, Dataset):
            out.append(item)
            continue
        try:
            out.append(pydicom.dcmread(item, stop_before_pixels=True))
        except (InvalidDicomError, IsADirectoryError):
            continue
        except OSError as exc:
            raise ResultObjectError(f"Argument 'source_datasets_or_paths': cannot read {item}: {exc}") from None
    return out


def _seconds(ds: Dataset) -> tuple[str, float]:
    """(date, seconds of day) from acquisition then content time; ('', 0) when neither is there."""
    for kind in ("Acquisition", "Content"):
        tm = str(ds.get(f"{kind}Time", "") or "")
        if tm:
            digits = tm.replace(":", "")
            h, m = int(digits[0:2] or 0), int(digits[2:4] or 0)
            s = float(digits[4:] or 0)
            return str(ds.get(f"{kind}Date", "") or ""), h * 3600 + m * 60 + s
    return "", 0.0


def _is_image(ds: Dataset) -> bool:
    return all(k in ds for k in ("Rows", "Columns", "ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing"))


def _normal(ds: Dataset) -> np.ndarray:
    iop = np.asarray(ds.ImageOrientationPatient, dtype=np.float64)
    return np.cross(iop[:3], iop[3:])


def _affine(frames: list[Dataset]) -> tuple[np.ndarray, tuple[float, float, float]]:
    iop = np.asarray(frames[0].ImageOrientationPatient, dtype=np.float64)
    dy, dx = (float(v) for v in frames[0].PixelSpacing)
    pos = np.array([[float(v) for v in ds.ImagePositionPatient] for ds in frames])
    if len(frames) > 1:
        step = (pos[-1] - pos[0]) / (len(frames) - 1)
        dz = float(np.linalg.norm(step))
    else:
        dz = float(frames[0].get("SpacingBetweenSlices") or frames[0].get("SliceThickness") or 1.0)
        step = _normal(frames[0]) * dz
    affine = np.eye(4)
    affine[:3, :] = np.column_stack([iop[:3] * dx, iop[3:] * dy, step, pos[0]])
    return affine, (dz, dy, dx)


def select_sources(datasets: list[Dataset], result: TriageResult, shape_zyx: tuple[int, int, int] | None,
                   affine: np.ndarray | None = None) -> Sources:
    """Pick the first time point of the analysed series and check it against the maps' grid.

    shape_zyx : the maps' shape, or None for a failed result (no maps); affine : the series affine when
    known (from the PerfusionSeries), checked against the chosen images' positions.
    """
    arg = "Argument 'source_datasets_or_paths'"
    study = [ds for ds in datasets if ds.get("StudyInstanceUID") == result.study_instance_uid and _is_image(ds)]
    if not study:
        raise ResultObjectError(f"{arg} holds no image of study {result.study_instance_uid}; pass the CTP files "
                                "the result was computed from.")
    series = [ds for ds in study if ds.get("SeriesInstanceUID") == result.series_instance_uid]
    if not series:
        raise ResultObjectError(f"{arg} holds no image of the analysed series {result.series_instance_uid}.")
    normal = _normal(series[0])
    proj = np.array([float(np.dot(np.asarray(ds.ImagePositionPatient, float), normal)) for ds in series])
    order = np.argsort(proj, kind="stable")
    groups: list[list[int]] = []
    for i in order:
        if groups and abs(proj[i] - proj[groups[-1][0]]) <= _POSITION_TOL_MM:
            groups[-1].append(int(i))
        else:
            groups.append([int(i)])

    def when(i: int) -> tuple:
        ds = series[i]
        return (*_seconds(ds), int(ds.get("AcquisitionNumber") or 0), int(ds.get("InstanceNumber") or 0))

    frames = [series[min(g, key=when)] for g in groups]
    if shape_zyx is not None:
        got = (len(frames), int(frames[0].Rows), int(frames[0].Columns))
        if got != tuple(shape_zyx):
            raise ResultObjectError(f"{arg}: the analysed series has {got[0]} slice positions of "
                                    f"{got[1]}x{got[2]}, but the result's maps are {tuple(shape_zyx)}; pass the "
                                    "files this result was computed from.")
    frame_affine, spacing = _affine(frames)
    if affine is not None:
        z = np.arange(len(frames))
        want = np.asarray(affine)[:3, 3][None] + z[:, None] * np.asarray(affine)[:3, 2][None]
        got_pos = np.array([[float(v) for v in ds.ImagePositionPatient] for ds in frames])
        if np.abs(want - got_pos).max() > _GEOMETRY_TOL_MM:
            raise ResultObjectError(f"{arg}: the image positions differ from the analysed series' geometry "
                                    "by more than 0.5 mm; pass the files this result was computed from.")
    key = (frames[0].get("FrameOfReferenceUID"), int(frames[0].Rows), int(frames[0].Columns))
    evidence = list({ds.SOPInstanceUID: ds for ds in study if ds.get("Modality") == "CT"
                     and (ds.get("FrameOfReferenceUID"), int(ds.Rows), int(ds.Columns)) == key}.values())
    return Sources(frames=frames, evidence=evidence, spacing_mm=spacing, affine=frame_affine)
