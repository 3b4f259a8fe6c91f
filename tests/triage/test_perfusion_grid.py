"""Native-resolution work restricted to the brain's bounding box gives exactly the whole-grid result."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from triage.perfusion import grid, masks

_CROSS = np.zeros((3, 3, 3), bool)
_CROSS[1] = ndimage.generate_binary_structure(2, 1)


def _random_box(rng, shape):
    box = []
    for n in shape:
        a = int(rng.integers(0, n))
        box.append(slice(a, int(rng.integers(a + 1, n + 1))))
    return tuple(box)


@pytest.mark.parametrize("k", [1, 2, 3, 4])
@pytest.mark.parametrize("shape_yx", [(64, 64), (66, 67), (130, 129)])
def test_upsampling_a_box_gives_the_whole_maps_values(k, shape_yx):
    """Boxes anywhere, touching every edge included, and native sizes that do not fill the last block."""
    rng = np.random.default_rng(k * 1000 + shape_yx[1])
    ny, nx = shape_yx
    vol = rng.normal(size=(3, ny // k, nx // k)).astype(np.float32)
    whole = grid.upsample(vol, k, (ny, nx))
    assert whole.shape == (3, ny, nx)
    boxes = [_random_box(rng, (3, ny, nx)) for _ in range(25)]
    boxes += [(slice(0, 3), slice(0, ny), slice(0, nx)), (slice(1, 2), slice(ny - 1, ny), slice(0, 1))]
    for box in boxes:
        part = grid.upsample(vol, k, (ny, nx), box)
        assert part.shape == whole[box].shape, box
        assert np.array_equal(part, whole[box]), box


def test_paste_puts_a_box_back_on_a_zero_grid():
    part = np.arange(24, dtype=np.float32).reshape(2, 3, 4) + 1
    box = (slice(1, 3), slice(2, 5), slice(0, 4))
    out = grid.paste(part, box, (4, 6, 5))
    assert out.dtype == np.float32 and out.shape == (4, 6, 5)
    assert np.array_equal(out[box], part)
    assert out.sum() == part.sum()
    masks_out = grid.paste(part > 12, box, (4, 6, 5))
    assert masks_out.dtype == bool and masks_out.sum() == (part > 12).sum()


def test_the_brain_rim_is_eroded_on_the_intracranial_box_as_on_the_whole_grid():
    """brain_masks erodes the skull-margin rim on the intracranial space's bounding box only (the erosion's border
    counts as outside, as every voxel beyond the box is); the result is the whole-grid erosion's, also where the
    space reaches the image's edge."""
    rng = np.random.default_rng(3)
    for _ in range(40):
        seeds = rng.random((3, 40, 50)) > 0.97
        inside = ndimage.binary_dilation(seeds, _CROSS, iterations=int(rng.integers(1, 6)))
        iterations = int(rng.integers(1, 5))
        box = grid.bounding_box(inside)
        eroded = np.zeros(inside.shape, bool)
        if box is not None:
            eroded[box] = ndimage.binary_erosion(inside[box], _CROSS, iterations=iterations)
        assert np.array_equal(eroded, ndimage.binary_erosion(inside, _CROSS, iterations=iterations))


def test_brain_masks_match_a_whole_grid_erosion_of_the_intracranial_space():
    """A thin elliptical skull one row from the image's top edge."""
    z, y, x = 4, 96, 80
    yy, xx = np.mgrid[:y, :x]
    r = np.hypot((yy - 42) / 41.0, (xx - 40) / 36.0)
    base = np.where(r < 0.93, 35.0, np.where(r < 1.0, 900.0, -1000.0)).astype(np.float32)
    vol = np.repeat(base[None], z, axis=0)
    m = masks.brain_masks(vol, (5.0, 0.25, 0.25))
    margin_px = int(round(masks.SKULL_MARGIN_MM / 0.25))
    expected = ndimage.binary_erosion(m["intracranial"], _CROSS, iterations=margin_px)
    assert m["intracranial"].any() and m["brain"].any()
    assert np.array_equal(m["brain"], expected)


@pytest.mark.parametrize("k", [1, 2, 4])
def test_a_mask_upsampled_on_a_box_is_the_whole_nearest_block_upsampling_there(k):
    rng = np.random.default_rng(k)
    ny, nx = 4 * 16 + 3, 4 * 15 + 1  # native sizes that do not fill the last block
    mask = rng.random((3, ny // k, nx // k)) > 0.5
    whole = np.pad(np.repeat(np.repeat(mask, k, axis=1), k, axis=2),
                   ((0, 0), (0, ny - ny // k * k), (0, nx - nx // k * k)), mode="edge")
    for box in [_random_box(rng, (3, ny, nx)) for _ in range(25)] + [(slice(0, 3), slice(0, ny), slice(0, nx))]:
        assert np.array_equal(grid.upsample_mask(mask, k, box), whole[box]), box
