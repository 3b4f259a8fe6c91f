"""Skull stripping, tissue/CSF/vessel masks, midline and hemisphere sides (native resolution).

All thresholds act on the pre-contrast baseline image (mean of the baseline frames, smoothed in-plane
with sigma = 1 pixel): bone is HU > ``BONE_HU``; the intracranial space is the non-bone region enclosed
by the skull in each slice; CSF is HU < ``CSF_HU`` (CSF is about 0-15 HU, white matter 25-35 HU, grey
matter 35-45 HU); vessels are found later from their enhancement.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from triage.perfusion.grid import bounding_box

BONE_HU = 150.0
CSF_HU = 18.0
TISSUE_MAX_HU = 70.0
SKULL_MARGIN_MM = 1.5


def brain_masks(baseline: np.ndarray, spacing_mm: tuple[float, float, float]) -> dict[str, np.ndarray]:
    """baseline : (Z, Y, X) float32 HU. Returns bool (Z, Y, X) masks: "intracranial", "brain" (intracranial
    without a skull-margin rim), "csf" and "tissue" (brain parenchyma: brain minus CSF and dense voxels)."""
    sm = ndimage.gaussian_filter(baseline, (0, 1.0, 1.0))
    bone = sm > BONE_HU
    soft = ~bone
    slice_conn = np.zeros((3, 3, 3), bool)
    slice_conn[1] = ndimage.generate_binary_structure(2, 1)
    lab, n = ndimage.label(soft, structure=slice_conn)
    if n == 0:
        empty = np.zeros(baseline.shape, bool)
        return {"intracranial": empty, "brain": empty, "csf": empty, "tissue": empty}
    border = np.unique(np.concatenate([lab[:, 0, :].ravel(), lab[:, -1, :].ravel(), lab[:, :, 0].ravel(),
                                       lab[:, :, -1].ravel()]))
    enclosed = np.ones(n + 1, bool)
    enclosed[border] = False
    enclosed[0] = False
    sizes = np.bincount(lab.ravel(), minlength=n + 1)
    min_px = 0.02 * baseline.shape[1] * baseline.shape[2]  # ignore tiny enclosed pockets (sinuses, diploe)
    enclosed &= sizes >= min_px
    intracranial = enclosed[lab]
    margin_px = max(1, int(round(SKULL_MARGIN_MM / min(spacing_mm[1], spacing_mm[2]))))
    brain = np.zeros(baseline.shape, bool)
    box = bounding_box(intracranial)  # eroded on its box: the box's border counts as outside, as the voxels beyond do
    if box is not None:
        brain[box] = ndimage.binary_erosion(intracranial[box], slice_conn, iterations=margin_px)
    csf = brain & (sm < CSF_HU)
    tissue = brain & ~csf & (sm < TISSUE_MAX_HU)
    return {"intracranial": intracranial, "brain": brain, "csf": csf, "tissue": tissue}


def midline(brain: np.ndarray) -> tuple[float, float]:
    """Fit the midsagittal line x = a + b * y (pixels) through the centre of the brain's extent in each row.

    brain : (Z, Y, X) bool. Returns (a, b); rows of every slice vote, weighted by their width.
    """
    z, y, x = brain.shape
    has = brain.any(axis=2)
    first = np.where(has, brain.argmax(axis=2), 0)
    last = np.where(has, x - 1 - brain[:, :, ::-1].argmax(axis=2), 0)
    width = (last - first).astype(float)
    rows = np.broadcast_to(np.arange(y)[None, :], (z, y))
    keep = has & (width > 0.3 * max(float(width.max()), 1.0))
    if keep.sum() < 3:
        return (x - 1) / 2.0, 0.0
    yy, mid, w = rows[keep], (first[keep] + last[keep]) / 2.0, width[keep]
    a_mat = np.stack([np.ones_like(yy, dtype=float), yy.astype(float)], axis=1) * w[:, None]
    a, b = np.linalg.lstsq(a_mat, mid * w, rcond=None)[0]
    return float(a), float(b)


def side_map(shape: tuple[int, int, int], line: tuple[float, float], affine: np.ndarray) -> np.ndarray:
    """int8 (Z, Y, X): +1 on the patient's left of the midline, -1 on the right (LPS: +x is left)."""
    z, y, x = shape
    a, b = line
    mid = a + b * np.arange(y)
    right_of_line = np.arange(x)[None, :] > mid[:, None]  # larger column index than the midline
    # the LPS x component of one column step says whether larger columns are patient left
    col_to_left = 1 if affine[0, 0] >= 0 else -1
    side = np.where(right_of_line, col_to_left, -col_to_left).astype(np.int8)
    return np.broadcast_to(side[None], shape)
