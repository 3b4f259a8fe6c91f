"""Write a :class:`~triage.series.PerfusionSeries` (or a phantom) as DICOM CT images.

The files look like a scanner's: CT Image Storage, int16 stored values with
``RescaleSlope``/``RescaleIntercept``, patient-space geometry taken from the
series affine, acquisition and content times that advance with ``times_s``,
``AcquisitionNumber`` and ``TemporalPositionIdentifier`` per time point.

Vendor layouts (``layout``):

- ``"single"``: one series; every time point is an acquisition of the same
  slice positions (the common Siemens/GE/Canon export).
- ``"per_timepoint"``: one series per time point, all in one frame of
  reference (some consoles and PACS exports), one sub-folder each.

``shuffle=True`` gives the files random names, writes them in random order
into one flat folder, so nothing about the order survives but the headers.

Speed: one template :class:`~pydicom.dataset.Dataset` is built per call and
encoded once by pydicom in runs between the few elements that change per
image; per file only those elements (UIDs, times, position, numbers) are
encoded and spliced in, and the pixel data element is appended as raw bytes.
1,280 images of 512x512 take a few seconds, mostly the disk.

Public API::

    write_series(series, out_dir, *, layout="single", shuffle=False, ...) -> list[Path]
    write_volume(hu, out_dir, *, spacing_mm, ...) -> list[Path]     # one phase, e.g. a plain head CT
    write_phantom(phantom, out_dir, *, layout="single", shuffle=False, ...) -> Path  # + truth.json
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import struct
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from pydicom.dataset import Dataset
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, CTImageStorage, ExplicitVRLittleEndian

from triage.series import PerfusionSeries

__all__ = ["LAYOUTS", "uid_from", "write_phantom", "write_series", "write_volume"]

LAYOUTS = ("single", "per_timepoint")

_UID_ROOT = "1.2.826.0.1.3680043.8.498."  # pydicom's root for generated UIDs
_PIXEL_HEADER = struct.pack("<HH", 0x7FE0, 0x0010) + b"OW\x00\x00"
_INTERCEPT = -1024.0
_START = _dt.datetime(2026, 3, 14, 10, 0, 0)
_IMPLEMENTATION_NAME = "TELERAD_PHANTOM"
_PLACEHOLDERS = {"ImagePositionPatient": ["0", "0", "0"], "AcquisitionTime": "000000", "ContentTime": "000000"}
_DYNAMIC = (
    "SOPInstanceUID",
    "AcquisitionTime",
    "ContentTime",
    "SeriesDescription",
    "SeriesInstanceUID",
    "SeriesNumber",
    "AcquisitionNumber",
    "InstanceNumber",
    "ImagePositionPatient",
    "TemporalPositionIdentifier",
    "SliceLocation",
)


def uid_from(*parts: object) -> str:
    """A deterministic DICOM UID (at most 50 characters) derived from ``parts``.

    Leaves room for two more ``.N`` components of up to 6 digits each.
    """
    digest = hashlib.sha256("|".join(map(str, parts)).encode()).digest()
    return _UID_ROOT + str(int.from_bytes(digest[:8], "big") % 10**20 + 1)


# --------------------------------------------------------------------------- geometry
def _geometry(affine: np.ndarray, spacing_mm: tuple[float, float, float], shape_zyx: tuple[int, int, int]):
    """Orientation, pixel spacing and per-slice positions from a voxel->LPS affine.

    affine : (4, 4) maps (x, y, z, 1) voxel indices to LPS mm. When it does not
    carry ``spacing_mm`` (an identity default), an axial grid centred on the
    origin is used instead.
    Returns ``(iop (6,), pixel_spacing [dy, dx], positions (Z, 3))``.
    """
    dz, dy, dx = (float(s) for s in spacing_mm)
    nz, ny, nx = shape_zyx
    a = np.asarray(affine, dtype=np.float64)
    norms = np.linalg.norm(a[:3, :3], axis=0)
    if a.shape != (4, 4) or not np.allclose(norms, [dx, dy, dz], rtol=1e-3):
        a = np.diag([dx, dy, dz, 1.0])
        a[:3, 3] = [-dx * (nx - 1) / 2.0, -dy * (ny - 1) / 2.0, -dz * (nz - 1) / 2.0]
        norms = np.array([dx, dy, dz])
    row_dir = a[:3, 0] / norms[0]
    col_dir = a[:3, 1] / norms[1]
    positions = a[:3, 3][None, :] + np.arange(nz)[:, None] * a[:3, 2][None, :]
    return np.concatenate([row_dir, col_dir]), [norms[1], norms[0]], positions


def _ds_str(values) -> list[str]:
    """Decimal strings (DS) of at most 16 characters."""
    return [f"{float(v):.6g}" if abs(float(v)) >= 1e-9 else "0" for v in values]


# --------------------------------------------------------------------------- template
def _template(
    *,
    study_uid: str,
    series_uid: str,
    frame_uid: str,
    rows: int,
    cols: int,
    iop,
    pixel_spacing,
    slice_thickness: float,
    patient_name: str,
    patient_id: str,
    study_description: str,
    series_description: str,
    manufacturer: str,
    image_type: tuple[str, ...],
    kvp: float,
    extra: Mapping[str, Any] | None,
) -> Dataset:
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = list(image_type)
    ds.SOPClassUID = CTImageStorage
    ds.StudyDate = ds.SeriesDate = ds.AcquisitionDate = ds.ContentDate = _START.strftime("%Y%m%d")
    ds.StudyTime = ds.SeriesTime = _START.strftime("%H%M%S")
    ds.AccessionNumber = "PH" + hashlib.sha256(study_uid.encode()).hexdigest()[:10].upper()
    ds.Modality = "CT"
    ds.Manufacturer = manufacturer
    ds.InstitutionName = "telerad phantom clinic"
    ds.ReferringPhysicianName = ""
    ds.StudyDescription = study_description
    ds.SeriesDescription = series_description
    ds.ManufacturerModelName = "digital phantom"
    ds.PatientName = patient_name
    ds.PatientID = patient_id
    ds.PatientBirthDate = "19540101"
    ds.PatientSex = "O"
    ds.BodyPartExamined = "HEAD"
    ds.SliceThickness = _ds_str([slice_thickness])[0]
    ds.KVP = _ds_str([kvp])[0]
    ds.SpacingBetweenSlices = _ds_str([slice_thickness])[0]
    ds.PatientPosition = "HFS"
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.StudyID = "1"
    ds.SeriesNumber = 1
    ds.FrameOfReferenceUID = frame_uid
    ds.PositionReferenceIndicator = ""
    ds.ImageOrientationPatient = _ds_str(iop)
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = rows
    ds.Columns = cols
    ds.PixelSpacing = _ds_str(pixel_spacing)
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1
    ds.WindowCenter = "40"
    ds.WindowWidth = "80"
    ds.RescaleIntercept = _ds_str([_INTERCEPT])[0]
    ds.RescaleSlope = "1"
    ds.RescaleType = "HU"
    for keyword, value in (extra or {}).items():
        setattr(ds, keyword, value)
    return ds


def _to_stored(hu: np.ndarray, scratch: np.ndarray) -> np.ndarray:
    """HU float (Y, X) -> int16 stored values, ``round(HU - intercept)`` clipped.

    scratch : (Y, X) float32 work buffer, reused between calls.
    """
    np.subtract(hu, _INTERCEPT, out=scratch, casting="unsafe")
    np.rint(scratch, out=scratch)
    np.clip(scratch, -32768, 32767, out=scratch)
    return scratch.astype("<i2")


def _short_element(tag: int, vr: bytes, value: str) -> bytes:
    """Explicit VR little endian encoding of a short-form text element."""
    raw = value.encode("ascii")
    if len(raw) % 2:
        raw += b"\x00" if vr == b"UI" else b" "
    return struct.pack("<HH", tag >> 16, tag & 0xFFFF) + vr + struct.pack("<H", len(raw)) + raw


class _FastEncoder:
    """Encode a template dataset once; per file, splice in only the changing elements.

    The static runs between the dynamic tags are encoded by pydicom itself
    (``write_dataset``); the dynamic elements are text VRs (UI, TM, IS, DS, LO)
    written in explicit VR little endian, the same bytes pydicom would write.
    """

    def __init__(self, template: Dataset, dynamic: tuple[str, ...]) -> None:
        from pydicom.datadict import dictionary_VR, tag_for_keyword

        self.dynamic = {tag_for_keyword(k): (k, dictionary_VR(k).encode()) for k in dynamic}
        self.parts: list[bytes | int] = []
        run = Dataset()
        for elem in template:
            if elem.tag in self.dynamic:
                self._flush(run)
                run = Dataset()
                self.parts.append(int(elem.tag))
            else:
                run.add(elem)
        self._flush(run)

    def _flush(self, run: Dataset) -> None:
        from pydicom.filebase import DicomBytesIO
        from pydicom.filewriter import write_dataset

        if len(run):
            fp = DicomBytesIO()
            fp.is_little_endian, fp.is_implicit_VR = True, False
            write_dataset(fp, run)
            self.parts.append(fp.getvalue())

    def encode(self, values: Mapping[str, str]) -> bytes:
        out = []
        for part in self.parts:
            if isinstance(part, bytes):
                out.append(part)
            else:
                keyword, vr = self.dynamic[part]
                out.append(_short_element(part, vr, values[keyword]))
        return b"".join(out)


def _file_meta(sop_instance_uid: str) -> bytes:
    """Preamble, ``DICM`` and the (0002) group for a CT image, explicit VR LE."""
    body = (
        struct.pack("<HH", 0x0002, 0x0001) + b"OB\x00\x00" + struct.pack("<I", 2) + b"\x00\x01"
        + _short_element(0x00020002, b"UI", CTImageStorage)
        + _short_element(0x00020003, b"UI", sop_instance_uid)
        + _short_element(0x00020010, b"UI", ExplicitVRLittleEndian)
        + _short_element(0x00020012, b"UI", PYDICOM_IMPLEMENTATION_UID)
        + _short_element(0x00020013, b"SH", _IMPLEMENTATION_NAME)
    )
    length = struct.pack("<HH", 0x0002, 0x0000) + b"UL" + struct.pack("<HI", 4, len(body))
    return b"\x00" * 128 + b"DICM" + length + body


def _write_file(path: Path, header: bytes, meta: bytes, pixels: np.ndarray) -> None:
    """Write Part 10 meta + encoded dataset, then the PixelData element (OW) raw."""
    raw = pixels.tobytes()
    with open(path, "wb") as fh:
        fh.write(meta)
        fh.write(header)
        fh.write(_PIXEL_HEADER + struct.pack("<I", len(raw)))
        fh.write(raw)


def _time_str(t_s: float) -> str:
    return (_START + _dt.timedelta(seconds=float(t_s))).strftime("%H%M%S.%f")


# --------------------------------------------------------------------------- public
def write_series(
    series: PerfusionSeries,
    out_dir: str | os.PathLike[str],
    *,
    layout: str = "single",
    shuffle: bool = False,
    seed: int = 0,
    patient_name: str = "PHANTOM^CTP",
    patient_id: str = "PHANTOM0001",
    study_description: str = "CT PERFUSION HEAD",
    series_description: str = "CTP 4D Perfusion",
    manufacturer: str = "telerad phantom",
    image_type: tuple[str, ...] = ("ORIGINAL", "PRIMARY", "AXIAL", "CT_PERFUSION"),
    extra: Mapping[str, Any] | None = None,
) -> list[Path]:
    """Write a 4D CTP as CT Image Storage files; returns the paths (time-major order).

    series.hu : (T, Z, Y, X) float32 HU, written as int16 with RescaleIntercept -1024.
    UIDs come from ``series.study_instance_uid``/``series_instance_uid`` when set,
    otherwise they are derived deterministically from ``seed``. With
    ``layout="per_timepoint"`` time point ``t`` becomes series number ``t + 1``
    with its own Series Instance UID, in sub-folder ``T{t:03d}`` (flat when shuffled).
    """
    if layout not in LAYOUTS:
        raise ValueError(f"Argument 'layout' should be one of {LAYOUTS}, not {layout!r}.")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    nt, nz, ny, nx = series.hu.shape
    iop, pixel_spacing, positions = _geometry(series.affine, series.spacing_mm, (nz, ny, nx))
    normal = np.cross(iop[:3], iop[3:])
    study_uid = series.study_instance_uid or uid_from("study", seed)
    series_uid = series.series_instance_uid or uid_from("series", seed, layout)
    ds = _template(
        study_uid=study_uid,
        series_uid=series_uid,
        frame_uid=uid_from("frame", study_uid),
        rows=ny,
        cols=nx,
        iop=iop,
        pixel_spacing=pixel_spacing,
        slice_thickness=float(series.spacing_mm[0]),
        patient_name=patient_name,
        patient_id=patient_id,
        study_description=study_description,
        series_description=series_description,
        manufacturer=manufacturer,
        image_type=image_type,
        kvp=80,
        extra=extra,
    )
    base = series_uid if len(series_uid) <= 50 else uid_from("base", series_uid)
    order = np.arange(nt * nz)
    rng = np.random.default_rng(seed + 7919)
    names: dict[int, str] = {}
    if shuffle:
        rng.shuffle(order)
        tokens = rng.choice(np.iinfo(np.int64).max, size=nt * nz, replace=False)
        names = {int(i): f"{int(tok):x}" for i, tok in enumerate(tokens)}
    for keyword in _DYNAMIC:  # placeholders; the encoder splices real values
        setattr(ds, keyword, _PLACEHOLDERS.get(keyword, "1"))
    ds.SeriesDescription = series_description
    ds.NumberOfTemporalPositions = nt
    encoder = _FastEncoder(ds, _DYNAMIC)
    scratch = np.empty((ny, nx), dtype=np.float32)
    paths: list[Path | None] = [None] * (nt * nz)
    made: set[Path] = set()
    for flat in order.tolist():
        t, z = divmod(flat, nz)
        sop_uid = f"{base}.{t + 1}.{z + 1}"
        when = _time_str(series.times_s[t])
        values = {
            "SOPInstanceUID": sop_uid,
            "AcquisitionTime": when,
            "ContentTime": when,
            "SeriesDescription": series_description,
            "SeriesInstanceUID": series_uid,
            "SeriesNumber": "1",
            "AcquisitionNumber": str(t + 1),
            "InstanceNumber": str(flat + 1),
            "ImagePositionPatient": "\\".join(_ds_str(positions[z])),
            "TemporalPositionIdentifier": str(t + 1),
            "SliceLocation": _ds_str([float(positions[z] @ normal)])[0],
        }
        folder = out
        if layout == "per_timepoint":
            values["SeriesInstanceUID"] = f"{base}.{t + 1}"
            values["SeriesNumber"] = str(t + 1)
            values["SeriesDescription"] = f"{series_description} t={float(series.times_s[t]):.1f}s"
            values["InstanceNumber"] = str(z + 1)
            if not shuffle:
                folder = out / f"T{t:03d}"
                if folder not in made:
                    folder.mkdir(exist_ok=True)
                    made.add(folder)
        path = folder / (names.get(flat) or f"IM{t + 1:03d}_{z + 1:04d}.dcm")
        _write_file(path, encoder.encode(values), _file_meta(sop_uid), _to_stored(series.hu[t, z], scratch))
        paths[flat] = path
    return [p for p in paths if p is not None]


def write_volume(
    hu: np.ndarray,
    out_dir: str | os.PathLike[str],
    *,
    spacing_mm: tuple[float, float, float],
    affine: np.ndarray | None = None,
    seed: int = 0,
    study_instance_uid: str = "",
    series_instance_uid: str = "",
    patient_name: str = "PHANTOM^HEAD",
    patient_id: str = "PHANTOM0002",
    study_description: str = "CT HEAD WITHOUT CONTRAST",
    series_description: str = "Head 5mm",
    manufacturer: str = "telerad phantom",
) -> list[Path]:
    """Write one 3D CT volume (a single phase, e.g. a non-contrast head CT).

    hu : (Z, Y, X) float HU. Returns the paths in slice order.
    """
    hu = np.asarray(hu, dtype=np.float32)
    if hu.ndim != 3:
        raise ValueError(f"Argument 'hu' should be a 3D (Z, Y, X) array, got shape {hu.shape}.")
    series = PerfusionSeries(
        hu=hu[None],
        times_s=np.zeros(1),
        spacing_mm=spacing_mm,
        affine=np.eye(4) if affine is None else affine,
        study_instance_uid=study_instance_uid or uid_from("ncct-study", seed),
        series_instance_uid=series_instance_uid or uid_from("ncct-series", seed),
    )
    return write_series(
        series,
        out_dir,
        seed=seed,
        patient_name=patient_name,
        patient_id=patient_id,
        study_description=study_description,
        series_description=series_description,
        manufacturer=manufacturer,
        image_type=("ORIGINAL", "PRIMARY", "AXIAL"),
    )


def _json_safe(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist() if value.size <= 4096 else f"<array {value.shape} {value.dtype}>"
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def write_phantom(
    phantom: Any,
    out_dir: str | os.PathLike[str],
    *,
    layout: str = "single",
    shuffle: bool = False,
    seed: int = 0,
    truth_name: str = "truth.json",
    **kwargs: Any,
) -> Path:
    """Write ``phantom.series`` as DICOM plus ``truth.json`` (``phantom.truth``) into ``out_dir``.

    ``phantom`` is a :class:`sample_dicom.phantom.Phantom` (anything with
    ``series`` and ``truth``). Returns ``out_dir``. ``kwargs`` go to :func:`write_series`.
    """
    out = Path(out_dir)
    files = write_series(phantom.series, out, layout=layout, shuffle=shuffle, seed=seed, **kwargs)
    series = phantom.series
    truth = dict(_json_safe(getattr(phantom, "truth", {}) or {}))
    truth["dicom"] = {
        "layout": layout,
        "shuffled": bool(shuffle),
        "n_files": len(files),
        "shape_tzyx": list(series.hu.shape),
        "times_s": [round(float(t), 4) for t in series.times_s],
        "spacing_mm": [float(s) for s in series.spacing_mm],
        "seed": seed,
    }
    (out / truth_name).write_text(json.dumps(truth, indent=2, sort_keys=True) + "\n")
    return out
