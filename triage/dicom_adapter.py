"""The one module that turns DICOM files into a :class:`~triage.series.PerfusionSeries`.

``load_ctp(folder)`` reads a folder recursively, in two passes:

1. **Headers** (pixel data located, never read; explicit VR little endian
   files by the shared raw reader (:mod:`telerad.dicom_header`), anything else by
   pydicom): non-DICOM files are skipped and counted; CT images are grouped
   by series; the CT-perfusion is found either as one series whose slice
   positions repeat over time, or as several single-phase series (one per
   time point) sharing one geometry.
   Geometry (size, orientation, spacing, slice positions) and sampling are
   checked, and every problem that makes the input unusable raises
   :class:`~triage.errors.NotCTPError` with a message that names it.
2. **Pixels**: every image is decoded straight into one preallocated
   ``(T, Z, Y, X)`` float32 HU array. Uncompressed little-endian pixel data
   is read from its file offset into a reused int16 buffer and rescaled in
   one numpy pass (no per-file pydicom decode); compressed transfer syntaxes
   go through pydicom's pixel handlers (pylibjpeg, openjpeg, pyjpegls).

Frame ``t`` is the ``t``-th image in time at every slice position (the projection
of Image Position (Patient) on the slice normal); its time is the median over its slices.
"""

from __future__ import annotations

import logging
import os
import struct
import time
from collections import defaultdict
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import pydicom
from pydicom.datadict import tag_for_keyword
from pydicom.errors import InvalidDicomError
from pydicom.multival import MultiValue
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

from telerad.dicom_header import Elements, Unsupported
from triage.image_header import TAGS, ImageHeader, build_header
from triage.image_header import parse as parse_raw
from triage.errors import NotCTPError
from triage.series import PerfusionSeries

log = logging.getLogger(__name__)

__all__ = ["MIN_TIME_POINTS", "CTPLayout", "ImageHeader", "find_ctp", "load_ctp", "read_header", "read_pixels",
           "scan_headers"]

#: Fewer time points than this cannot cover baseline, bolus and wash-out.
MIN_TIME_POINTS = 15
#: Coarser sampling than this (median seconds between frames) cannot resolve a bolus.
MAX_MEDIAN_DT_S = 4.0
_POSITION_TOL_MM = 0.05
_RAW_SYNTAXES = {ExplicitVRLittleEndian, ImplicitVRLittleEndian}
_HEAD_BYTES = 16384  # enough for the header of most CT images; longer ones are read whole


class _PydicomFields:
    """Field source over a pydicom dataset, reading raw element bytes (pydicom's conversion is the slow part)."""

    def __init__(self, ds) -> None:
        self.ds = ds

    def _element(self, keyword: str):
        return self.ds.get_item(TAGS.get(keyword) or tag_for_keyword(keyword), keep_deferred=True)

    def text(self, keyword: str) -> str:
        elem = self._element(keyword)
        value = None if elem is None else elem.value
        if value is None:
            return ""
        if isinstance(value, bytes):
            return value.decode("latin-1").strip("\x00 ")
        if isinstance(value, (list, tuple, MultiValue)):
            return "\\".join(str(v) for v in value)
        return str(value)

    def us(self, keyword: str, default: int) -> int:
        elem = self._element(keyword)
        value = None if elem is None else elem.value
        if isinstance(value, bytes):
            if len(value) < 2:
                return default
            return struct.unpack("<H" if getattr(elem, "is_little_endian", True) else ">H", value[:2])[0]
        return default if value is None else int(value)


def _read_raw_header(fh, buf: bytes, size: int) -> Elements | None:
    """The fast reader on the first bytes, then on the whole file; None when pydicom is needed."""
    for attempt in range(2):
        try:
            return parse_raw(buf)
        except Unsupported:
            if attempt or size <= len(buf):
                return None
            fh.seek(0)
            buf = fh.read()
    return None


def read_header(path: Path) -> ImageHeader | None:
    """Parse one file's header (pixel data located, not read). None for a DICOM object without pixels.

    Raises InvalidDicomError for files that are not DICOM.
    """
    with open(path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        buf = fh.read(_HEAD_BYTES)
        has_magic = len(buf) >= 132 and buf[128:132] == b"DICM"
        if not has_magic and buf[:2] not in (b"\x08\x00", b"\x02\x00"):
            raise InvalidDicomError(f"{path} is not a DICOM file")
        raw = _read_raw_header(fh, buf, size) if has_magic else None
        if raw is not None:
            src, syntax, offset, length = raw, raw.transfer_syntax, raw.pixel_offset, raw.pixel_length
        else:
            fh.seek(0)
            ds = pydicom.dcmread(fh, defer_size=512, force=not has_magic)
            pixel = ds.get_item(0x7FE00010, keep_deferred=True)
            if pixel is None:
                return None
            offset, length = getattr(pixel, "value_tell", None), int(getattr(pixel, "length", 0) or 0)
            meta = getattr(ds, "file_meta", None)
            syntax = _PydicomFields(meta).text("TransferSyntaxUID") if meta is not None else ""
            if not syntax:  # no meta: pydicom worked the encoding out
                syntax = ImplicitVRLittleEndian if ds.original_encoding[0] else ExplicitVRLittleEndian
            src = _PydicomFields(ds)
    if length == 0xFFFFFFFF:
        offset = None
    elif offset is not None and offset + length > size:
        raise ValueError(f"the pixel data is truncated ({size - offset} of {length} bytes)")
    return build_header(path, src, syntax, offset, length)


class CTPLayout:
    """The chosen CTP: headers on a (T, Z) grid plus the geometry and frame times.

    grid : (T, Z) object array of :class:`ImageHeader`
    times_s : (T,) float64 seconds since the first frame
    affine : (4, 4) voxel (x, y, z, 1) -> LPS mm
    """

    def __init__(self, grid: np.ndarray, times_s: np.ndarray, affine: np.ndarray,
                 spacing_mm: tuple[float, float, float], layout: str, info: dict) -> None:
        self.grid, self.times_s, self.affine, self.spacing_mm, self.layout, self.info = (
            grid, times_s, affine, spacing_mm, layout, info)

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (*self.grid.shape, self.grid[0, 0].rows, self.grid[0, 0].cols)


# --------------------------------------------------------------------------- pass 1: headers
def _walk(folder: Path) -> Iterator[Path]:
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if not name.startswith(".") and name.upper() != "DICOMDIR":
                yield Path(root, name)


def scan_headers(folder: str | os.PathLike[str]) -> tuple[list[ImageHeader], dict]:
    """Read the headers of every DICOM file under ``folder`` (recursively).

    Returns the image headers and counts ``{"files", "not_dicom", "no_pixels", "unreadable", "duplicates"}``
    ("no_pixels": DICOM objects without pixel data, such as reports, presentation states or a DICOMDIR).
    Raises NotCTPError when ``folder`` is not a folder.
    """
    root = Path(folder)
    if not root.is_dir():
        raise NotCTPError(f"'{root}' is not a folder of DICOM files.")
    headers: list[ImageHeader] = []
    seen: set[str] = set()
    counts = {"files": 0, "not_dicom": 0, "no_pixels": 0, "unreadable": 0, "duplicates": 0}
    for path in _walk(root):
        counts["files"] += 1
        try:
            header = read_header(path)
        except InvalidDicomError:
            counts["not_dicom"] += 1
            continue
        except Exception as exc:  # a truncated or corrupt file must not stop the study
            log.warning("skipping unreadable DICOM file %s: %s", path.name, exc)
            counts["unreadable"] += 1
            continue
        if header is None:
            counts["no_pixels"] += 1
            continue
        if header.sop_uid and header.sop_uid in seen:
            counts["duplicates"] += 1
            continue
        seen.add(header.sop_uid)
        headers.append(header)
    return headers, counts


# --------------------------------------------------------------------------- choosing the CTP
def _normal(h: ImageHeader) -> np.ndarray:
    return np.cross(h.iop[:3], h.iop[3:])


def _cluster(values: np.ndarray, tol: float) -> np.ndarray:
    """Cluster ids (0..K-1, ascending) for sorted-by-value 1D positions within ``tol``."""
    order = np.argsort(values, kind="stable")
    ids = np.empty(len(values), dtype=np.int64)
    ids[order] = np.concatenate([[0], np.cumsum(np.diff(values[order]) > tol)])
    return ids


def _slice_ids(headers: list[ImageHeader]) -> tuple[np.ndarray, int]:
    normal = _normal(headers[0])
    proj = np.array([float(np.dot(h.ipp, normal)) for h in headers])
    ids = _cluster(proj, _POSITION_TOL_MM)
    return ids, int(ids.max()) + 1


def _geometry_key(h: ImageHeader) -> tuple:
    return (h.study_uid, h.rows, h.cols, tuple(np.round(h.iop, 3)), tuple(np.round(h.pixel_spacing, 3)))


def _is_time_series(group: list[list[ImageHeader]]) -> bool:
    """3+ single-phase series of one geometry at distinct times form a CTP (two kernels of one scan share times)."""
    times = {round(float(np.median([h.time_s or 0.0 for h in items])), 3) for items in group}
    return len(group) >= 3 and len(times) == len(group)


def _series_kind(headers: list[ImageHeader]) -> str:
    """"dynamic" when some slice position was imaged more than once, else "single_phase"."""
    ids, n_pos = _slice_ids(headers)
    return "dynamic" if np.bincount(ids, minlength=n_pos).max() > 1 else "single_phase"


def find_ctp(headers: list[ImageHeader], *, min_time_points: int = MIN_TIME_POINTS) -> CTPLayout:
    """Find the CT-perfusion among image headers and check it; see the module docstring.

    Raises NotCTPError naming the problem when there is none that is usable.
    """
    ct = [h for h in headers if h.is_ct_image]
    if not headers:
        raise NotCTPError("no DICOM images found in the folder.")
    if not ct:
        kinds = sorted({h.modality or "unknown" for h in headers})
        raise NotCTPError(f"no CT images found (the folder holds {', '.join(kinds)} objects), so no CT perfusion.")
    usable = [h for h in ct if h.frames == 1 and h.iop is not None and h.ipp is not None]
    if not usable:
        raise NotCTPError("the CT images lack Image Position/Orientation (Patient) or are multi-frame "
                          "(enhanced CT), which is not supported; cannot assemble a perfusion series.")
    by_series: dict[str, list[ImageHeader]] = defaultdict(list)
    for h in usable:
        by_series[h.series_uid].append(h)

    candidates: list[tuple[str, list[list[ImageHeader]]]] = []
    singles: dict[tuple, list[list[ImageHeader]]] = defaultdict(list)
    others: list[dict] = []
    for uid, items in by_series.items():
        kind = _series_kind(items)
        if kind == "dynamic":
            candidates.append(("single_series", [items]))
        else:
            positions = tuple(np.round(sorted(float(np.dot(h.ipp, _normal(h))) for h in items), 1))
            singles[(_geometry_key(items[0]), positions)].append(items)
        others.append({"series_instance_uid": uid, "description": items[0].series_description,
                       "images": len(items), "kind": kind})
    for group in singles.values():
        if _is_time_series(group):
            candidates.append(("series_per_timepoint", group))
    if not candidates:
        largest = max(by_series.values(), key=len)
        raise NotCTPError(
            f"single phase: each slice position was imaged once ({len(by_series)} CT series, the largest "
            f"'{largest[0].series_description}' with {len(largest)} images), so this is not a perfusion "
            "series (no repeated acquisitions over time).")
    studies = {c[1][0][0].study_uid for c in candidates}
    if len(studies) > 1:  # never mix patients: the caller must point at one study
        raise NotCTPError(f"the folder holds perfusion series of {len(studies)} different studies; "
                          "analyse one study at a time.")
    # prefer ORIGINAL over derived (MIP, reformatted) dynamic series, then the most images
    layout, parts = max(candidates, key=lambda c: (all(h.is_original for p in c[1] for h in p),
                                                   sum(len(p) for p in c[1])))
    images = [h for part in parts for h in part]
    result = _assemble(images, layout, min_time_points)
    chosen = {h.series_uid for h in images}
    result.info["other_series"] = [o for o in others if o["series_instance_uid"] not in chosen]
    result.info["series_instance_uids"] = sorted(chosen, key=lambda u: min(h.time_s or 0 for h in by_series[u]))
    return result


def _check_same(images: list[ImageHeader]) -> None:
    sizes = {(h.rows, h.cols) for h in images}
    if len(sizes) > 1:
        raise NotCTPError(f"inconsistent geometry: the perfusion images have different sizes {sorted(sizes)}.")
    iops = np.array([h.iop for h in images])
    if np.abs(iops - iops[0]).max() > 1e-3:
        raise NotCTPError("inconsistent geometry: Image Orientation (Patient) differs between perfusion images.")
    spacings = np.array([h.pixel_spacing for h in images])
    if np.abs(spacings - spacings[0]).max() > 1e-3 * spacings[0].max():
        raise NotCTPError("inconsistent geometry: Pixel Spacing differs between perfusion images.")


def _frame_times(images: list[ImageHeader]) -> tuple[np.ndarray, str]:
    """Seconds per image from the first time source that every image has and that varies."""
    for source in ("acquisition", "content", "trigger"):
        values = [h.times.get(source) for h in images]
        if all(v is not None for v in values):
            arr = np.array(values, dtype=np.float64)
            if np.ptp(arr) > 43_200:  # crossed midnight without dates
                arr = np.where(arr < 43_200, arr + 86_400, arr)
            if np.ptp(arr) > 0:
                return arr, source
    numbers = [h.temporal_index for h in images]
    if all(n is not None for n in numbers) and len(set(numbers)) > 1:
        raise NotCTPError("the perfusion images repeat their slice positions but all have the same acquisition "
                          "time (and no usable content or trigger time), so the sampling interval is unknown.")
    raise NotCTPError("single phase: all images have the same acquisition time, so this is not a perfusion series.")


def _assemble(images: list[ImageHeader], layout: str, min_t: int) -> CTPLayout:
    _check_same(images)
    times, time_source = _frame_times(images)
    ids, nz = _slice_ids(images)
    counts = np.bincount(ids, minlength=nz)
    if counts.min() != counts.max():
        common = int(np.bincount(counts).argmax())
        odd = int(np.sum(counts != common))
        raise NotCTPError(
            f"inconsistent geometry: {odd} of {nz} slice positions have a different number of time points "
            f"({counts.min()} to {counts.max()}; most have {common}); files are missing or mixed in.")
    nt = int(counts[0])
    # (T, Z) grid: sort by slice, then time (ties broken by acquisition and instance number)
    keys = np.lexsort((np.array([h.instance_number for h in images]),
                       np.array([h.acquisition_number for h in images]), times, ids))
    order = keys.reshape(nz, nt).T  # (T, Z) indices into images
    items = np.empty(len(images), dtype=object)
    items[:] = images
    grid = items[order]
    t_grid = times[order]  # (T, Z)
    if nt > 1 and np.any(np.diff(t_grid, axis=0) <= 0):
        raise NotCTPError("two images at the same slice position have the same acquisition time "
                          "(duplicate or conflicting files).")
    if nt < min_t:
        raise NotCTPError(f"only {nt} time points; at least {min_t} are needed for perfusion analysis.")
    frame_t = np.median(t_grid, axis=1)
    frame_t -= frame_t[0]
    dt = np.diff(frame_t)
    if np.any(dt <= 0):
        raise NotCTPError("the frames are not in increasing time order: slices of one time point were "
                          "acquired after slices of the next.")
    if np.median(dt) > MAX_MEDIAN_DT_S:
        raise NotCTPError(f"sampling interval {np.median(dt):.1f} s is too coarse for perfusion analysis "
                          f"(at most {MAX_MEDIAN_DT_S:.0f} s).")
    affine, spacing = _affine(grid[0])
    ipp = np.array([[h.ipp for h in row] for row in grid])  # (T, Z, 3)
    drift = float(np.abs(ipp - ipp[:1]).max())
    if drift > 0.5:
        raise NotCTPError(f"inconsistent geometry: slice positions move by {drift:.1f} mm between time points.")
    info = {
        "layout": layout,
        "time_source": time_source,
        "sampling": {"median_dt_s": float(np.median(dt)), "min_dt_s": float(dt.min()), "max_dt_s": float(dt.max()),
                     "regular": bool(dt.max() <= 1.25 * dt.min()),
                     "max_slice_time_spread_s": float(np.ptp(t_grid, axis=1).max())},
    }
    return CTPLayout(grid, frame_t, affine, spacing, layout, info)


def _affine(row: Iterable[ImageHeader]) -> tuple[np.ndarray, tuple[float, float, float]]:
    """Voxel (x, y, z, 1) -> LPS affine and (dz, dy, dx) from one frame's slices (sorted by position)."""
    row = list(row)
    first = row[0]
    dy, dx = first.pixel_spacing
    row_dir, col_dir = np.asarray(first.iop[:3]), np.asarray(first.iop[3:])
    normal = np.cross(row_dir, col_dir)
    positions = np.array([h.ipp for h in row], dtype=np.float64)
    if len(row) > 1:
        steps = np.diff(positions @ normal)
        if steps.min() <= 0 or steps.max() > 1.05 * steps.min():
            raise NotCTPError(f"inconsistent geometry: slice spacing varies from {steps.min():.2f} to "
                              f"{steps.max():.2f} mm (missing slices or mixed stacks).")
        step = (positions[-1] - positions[0]) / (len(row) - 1)
        dz = float(np.median(steps))
    else:
        dz = float(first.slice_thickness or 1.0)
        step = normal * dz
    affine = np.eye(4)
    affine[:3, :] = np.column_stack([row_dir * dx, col_dir * dy, step, positions[0]])
    return affine, (dz, float(dy), float(dx))


# --------------------------------------------------------------------------- pass 2: pixels
def _read_raw(h: ImageHeader, staging: np.ndarray) -> np.ndarray:
    with open(h.path, "rb") as fh:
        fh.seek(h.pixel_offset)
        if fh.readinto(memoryview(staging).cast("B")) != staging.nbytes:
            raise NotCTPError(f"the pixel data of {h.path.name} is truncated.")
    if h.bits_stored < 16:
        shift = 16 - h.bits_stored
        if h.signed:
            np.left_shift(staging, shift, out=staging)
            np.right_shift(staging, shift, out=staging)
        else:
            np.bitwise_and(staging, (1 << h.bits_stored) - 1, out=staging)
    return staging


def _decode(h: ImageHeader) -> np.ndarray:
    try:
        return pydicom.dcmread(h.path).pixel_array
    except Exception as exc:
        raise NotCTPError(f"cannot decode the pixels of {h.path.name} (transfer syntax {h.transfer_syntax}): "
                          f"{exc}") from None


def read_pixels(layout: CTPLayout, out: np.ndarray | None = None) -> np.ndarray:
    """Decode every image into ``out`` : (T, Z, Y, X) float32 HU (allocated when None)."""
    shape = layout.shape
    if out is None:
        out = np.empty(shape, dtype=np.float32)
    elif out.shape != shape or out.dtype != np.float32:
        raise ValueError(f"Argument 'out' should be a float32 array of shape {shape}, got {out.dtype} {out.shape}.")
    stage = {True: np.empty(shape[2:], "<i2"), False: np.empty(shape[2:], "<u2")}
    nbytes = shape[2] * shape[3] * 2
    for (t, z), h in np.ndenumerate(layout.grid):
        dst = out[t, z]
        if (h.transfer_syntax in _RAW_SYNTAXES and h.pixel_offset is not None and h.pixel_length == nbytes
                and h.bits_allocated == 16 and h.samples == 1):
            pixels = _read_raw(h, stage[h.signed])
        else:
            pixels = _decode(h)
            if pixels.shape != shape[2:]:
                raise NotCTPError(f"{h.path.name} decodes to shape {pixels.shape}, expected {shape[2:]}.")
        if h.slope != 1.0:
            np.multiply(pixels, np.float32(h.slope), out=dst, casting="unsafe")
            dst += np.float32(h.intercept)
        else:
            np.add(pixels, np.float32(h.intercept), out=dst, casting="unsafe")
    return out


def load_ctp(folder: str | os.PathLike[str], *, min_time_points: int = MIN_TIME_POINTS) -> PerfusionSeries:
    """Read the CT-perfusion under ``folder`` into a PerfusionSeries (hu (T, Z, Y, X) float32 HU).

    Raises NotCTPError, naming the problem, when the folder holds no usable CTP.
    ``series.source`` records the layout, file counts, time source, sampling and read timings.
    """
    t0 = time.perf_counter()
    headers, counts = scan_headers(folder)
    try:
        layout = find_ctp(headers, min_time_points=min_time_points)
    except NotCTPError as exc:
        if counts["unreadable"]:
            raise NotCTPError(f"{exc} ({counts['unreadable']} unreadable or truncated files were skipped; "
                              "see the log)") from None
        raise
    t1 = time.perf_counter()
    hu = read_pixels(layout)
    t2 = time.perf_counter()
    first = layout.grid[0, 0]
    source = {
        "folder": str(folder),
        **layout.info,
        "files": counts,
        "images_used": int(layout.grid.size),
        "manufacturer": first.manufacturer,
        "series_description": first.series_description,
        "transfer_syntaxes": sorted({str(h.transfer_syntax) for h in layout.grid.flat}),
        "read_s": {"headers": round(t1 - t0, 4), "pixels": round(t2 - t1, 4)},
    }
    return PerfusionSeries(hu=hu, times_s=layout.times_s, spacing_mm=layout.spacing_mm, affine=layout.affine,
                           study_instance_uid=first.study_uid, series_instance_uid=first.series_uid, source=source)
