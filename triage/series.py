"""The array form of a CT-perfusion acquisition, built once by the DICOM adapter."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from triage.errors import NotCTPError


@dataclass(frozen=True)
class PerfusionSeries:
    """A 4D CTP with its geometry.

    hu : (T, Z, Y, X) float32, Hounsfield units (rescale applied)
    times_s : (T,) float64, seconds since the first frame, strictly increasing
    spacing_mm : (dz, dy, dx) voxel spacing in mm
    affine : (4, 4) float64, maps (x, y, z, 1) voxel indices to patient LPS mm
    """

    hu: np.ndarray
    times_s: np.ndarray
    spacing_mm: tuple[float, float, float]
    affine: np.ndarray = field(default_factory=lambda: np.eye(4))
    study_instance_uid: str = ""
    series_instance_uid: str = ""
    source: dict = field(default_factory=dict)  # free-form provenance (layout, file count, ...)

    def __post_init__(self) -> None:
        hu, t = self.hu, np.asarray(self.times_s, dtype=np.float64)
        if hu.ndim != 4:
            raise NotCTPError(f"Argument 'hu' should be a 4D (T, Z, Y, X) array, got shape {hu.shape}.")
        if t.shape != (hu.shape[0],):
            raise NotCTPError(f"Argument 'times_s' should have length T={hu.shape[0]}, got {t.shape}.")
        if hu.shape[0] > 1 and not np.all(np.diff(t) > 0):
            raise NotCTPError("Argument 'times_s' should be strictly increasing.")
        if len(self.spacing_mm) != 3 or min(self.spacing_mm) <= 0:
            raise NotCTPError(f"Argument 'spacing_mm' should be three positive numbers, got {self.spacing_mm}.")
        object.__setattr__(self, "times_s", t)

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return tuple(self.hu.shape)  # type: ignore[return-value]

    @property
    def voxel_ml(self) -> float:
        dz, dy, dx = self.spacing_mm
        return dz * dy * dx / 1000.0
