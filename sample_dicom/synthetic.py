"""Fast synthetic DICOM fixtures for gateway tests and benchmarks.

Everything here writes valid Part-10 files (preamble, ``DICM``, file meta)
that DCMTK, Orthanc and pydicom read without complaint. The pixel content is
a crude head phantom plus noise; it is meant for moving bytes around, not for
perfusion analysis (the triage phantom generator does that).

Speed matters because tests and benchmarks write thousands of images: one
template :class:`~pydicom.dataset.Dataset` is built per series, only a few
elements change per image, the header is encoded by pydicom and the pixel
data element is appended as raw bytes, so 1,000 512x512 images take a few
seconds (mostly the disk).

Public API::

    write_ct_series(out_dir, n_images=1000, rows=512, cols=512, *, ...) -> list[Path]
    write_xray(out_dir, rows=1024, cols=1024, *, modality="DX", ...) -> Path
    compress_series(files, out_dir, syntax, *, new_uids=False, workers=None) -> list[Path]
    available_syntaxes() -> dict[str, UID]
"""

from __future__ import annotations

import datetime as _dt
import io
import os
import shutil
import struct
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from pydicom import dcmread
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filewriter import dcmwrite
from pydicom.uid import (
    UID,
    CTImageStorage,
    ComputedRadiographyImageStorage,
    DeflatedExplicitVRLittleEndian,
    DigitalXRayImageStorageForPresentation,
    ExplicitVRLittleEndian,
    HTJ2KLossless,
    ImplicitVRLittleEndian,
    JPEG2000,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGLosslessSV1,
    JPEGLSLossless,
    RLELossless,
    generate_uid,
)

__all__ = [
    "SYNTAXES",
    "LOSSLESS",
    "available_syntaxes",
    "compress_series",
    "write_ct_series",
    "write_xray",
]

#: Short names accepted by :func:`compress_series`, mapped to transfer syntax UIDs.
SYNTAXES: dict[str, UID] = {
    "explicit": ExplicitVRLittleEndian,
    "implicit": ImplicitVRLittleEndian,
    "deflate": DeflatedExplicitVRLittleEndian,
    "rle": RLELossless,
    "jpeg-baseline": JPEGBaseline8Bit,
    "jpeg-lossless": JPEGLosslessSV1,
    "jpeg-ls": JPEGLSLossless,
    "j2k-lossless": JPEG2000Lossless,
    "j2k": JPEG2000,
    "htj2k-lossless": HTJ2KLossless,
}

#: Names in :data:`SYNTAXES` whose decoded pixels equal the originals exactly.
LOSSLESS = frozenset(
    {"explicit", "implicit", "deflate", "rle", "jpeg-lossless", "jpeg-ls", "j2k-lossless", "htj2k-lossless"}
)

_PIXEL_TAG_EXPLICIT = struct.pack("<HH", 0x7FE0, 0x0010)
_DCMCJPEG_ARGS = {"jpeg-baseline": ["+eb", "+q", "90"], "jpeg-lossless": ["+e1"]}


# --------------------------------------------------------------------------- pixels
def _phantom(rows: int, cols: int, rng: np.random.Generator) -> np.ndarray:
    """A head-like slice in HU: air, a skull ring, brain with a few blobs.

    Returns ``(rows, cols)`` float32 HU.
    """
    y, x = np.ogrid[-1.0 : 1.0 : rows * 1j, -1.0 : 1.0 : cols * 1j]
    r = np.sqrt((x / 0.80) ** 2 + (y / 0.92) ** 2)
    img = np.full((rows, cols), -1000.0, dtype=np.float32)
    img[r < 1.0] = 900.0  # skull
    img[r < 0.92] = 32.0  # brain
    for cy, cx, rad, hu in ((-0.3, -0.25, 0.12, 45.0), (0.25, 0.3, 0.10, 20.0), (0.0, 0.0, 0.08, 5.0)):
        img[(y - cy) ** 2 + (x - cx) ** 2 < rad**2] = hu
    img += rng.uniform(-60.0, 60.0, size=(rows, cols)).astype(np.float32) * (r < 1.0)
    return img


class _PixelSource:
    """Distinct, cheap frames: a fixed phantom plus a noise window offset per index.

    ``frame(i)`` differs for every ``i < rows * cols`` (the noise field is
    random, so two different windows are equal with negligible probability).
    """

    def __init__(self, rows: int, cols: int, seed: int, bits_allocated: int) -> None:
        rng = np.random.default_rng(seed)
        self.rows, self.cols = rows, cols
        self.bits = bits_allocated
        base = _phantom(rows, cols, rng)
        if bits_allocated == 16:
            # stored value = HU + 1024 (RescaleIntercept -1024), kept in 12 bits
            self.base = np.clip(base + 1024.0, 0, 4000).astype(np.int16)
            self.noise = rng.integers(-12, 13, size=(2 * rows, 2 * cols), dtype=np.int16)
        elif bits_allocated == 8:
            self.base = np.clip((base + 1000.0) * (230.0 / 1900.0), 0, 230).astype(np.uint8)
            self.noise = rng.integers(0, 20, size=(2 * rows, 2 * cols), dtype=np.uint8)
        else:
            raise ValueError(f"Argument 'bits_allocated' should be 8 or 16, not {bits_allocated!r}.")

    def frame(self, i: int) -> np.ndarray:
        """``(rows, cols)`` int16 (16-bit) or uint8 (8-bit) stored values for image ``i``."""
        dy = i % self.rows
        dx = (i // self.rows) % self.cols
        return self.base + self.noise[dy : dy + self.rows, dx : dx + self.cols]


# --------------------------------------------------------------------------- writing
def _file_meta(sop_class: str, sop_instance: str, syntax: str = ExplicitVRLittleEndian) -> FileMetaDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_instance
    meta.TransferSyntaxUID = syntax
    return meta


def _write_fast(path: Path, ds: Dataset, pixels: np.ndarray) -> None:
    """Write ``ds`` (no PixelData) as Explicit VR LE Part 10, then append PixelData raw."""
    buf = io.BytesIO()
    dcmwrite(buf, ds, enforce_file_format=True)
    raw = pixels.tobytes()
    vr = b"OW" if pixels.dtype.itemsize == 2 else b"OB"
    if len(raw) % 2:
        raw += b"\x00"
    tmp = path.with_name(path.name + ".part")
    with open(tmp, "wb") as fh:
        fh.write(buf.getbuffer())
        fh.write(_PIXEL_TAG_EXPLICIT + vr + b"\x00\x00" + struct.pack("<I", len(raw)))
        fh.write(raw)
    os.replace(tmp, path)


def _apply_extra(ds: Dataset, extra: Mapping[str, Any] | None) -> None:
    for keyword, value in (extra or {}).items():
        if keyword == "PixelData":
            raise ValueError("Argument 'extra' must not set PixelData; the generator writes it.")
        setattr(ds, keyword, value)
    for elem in ds:
        if elem.tag > 0x7FE00010:
            raise ValueError(f"Argument 'extra' may only hold elements before PixelData, not {elem.keyword or elem.tag}.")


def _image_pixel_module(ds: Dataset, rows: int, cols: int, bits_allocated: int) -> None:
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = rows
    ds.Columns = cols
    ds.BitsAllocated = bits_allocated
    if bits_allocated == 16:
        ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = 1
    else:
        ds.BitsStored = 8
        ds.HighBit = 7
        ds.PixelRepresentation = 0


def _patient_study(ds: Dataset, study_uid: str, patient_id: str, when: _dt.datetime) -> None:
    ds.PatientName = "SYNTHETIC^PATIENT"
    ds.PatientID = patient_id
    ds.PatientBirthDate = "19500101"
    ds.PatientSex = "O"
    ds.StudyInstanceUID = study_uid
    ds.StudyDate = when.strftime("%Y%m%d")
    ds.StudyTime = when.strftime("%H%M%S")
    ds.StudyID = "1"
    ds.AccessionNumber = "SYN" + study_uid[-8:].replace(".", "")
    ds.ReferringPhysicianName = ""
    ds.StudyDescription = "SYNTHETIC STUDY"
    ds.Manufacturer = "telerad-synthetic"
    ds.InstitutionName = "Synthetic Township Clinic"
    ds.SpecificCharacterSet = "ISO_IR 100"


def write_ct_series(
    out_dir: str | os.PathLike[str],
    n_images: int = 1000,
    rows: int = 512,
    cols: int = 512,
    *,
    seed: int = 0,
    study_uid: str | None = None,
    series_uid: str | None = None,
    modality: str = "CT",
    series_description: str = "SYNTHETIC HEAD",
    body_part: str = "HEAD",
    patient_id: str = "SYN0001",
    image_type: Sequence[str] = ("ORIGINAL", "PRIMARY", "AXIAL"),
    acquisition_number: int | None = 1,
    n_slices: int | None = None,
    slice_thickness: float = 5.0,
    pixel_spacing: float = 0.45,
    frame_interval_s: float = 1.0,
    series_number: int = 1,
    bits_allocated: int = 16,
    extra: Mapping[str, Any] | None = None,
) -> list[Path]:
    """Write ``n_images`` CT Image Storage files, Explicit VR Little Endian.

    Files are named ``IM00001.dcm``... in ``out_dir`` (created if needed) and
    returned in instance order. Each image has distinct pixel data
    (``rows x cols`` int16 stored values, RescaleIntercept -1024; or uint8 when
    ``bits_allocated=8``, e.g. as input for JPEG Baseline).

    Geometry: with ``n_slices=None`` all images are one volume stacked along z
    (``slice_thickness`` apart). With ``n_slices=k`` image ``i`` is slice
    ``i % k`` of time point ``i // k`` (a CT-perfusion layout): positions
    repeat, ``TemporalPositionIndex`` and ``AcquisitionTime`` advance by
    ``frame_interval_s``, and ``AcquisitionNumber`` is the time point + 1 when
    ``acquisition_number`` is None (otherwise fixed).

    UIDs are fresh unless ``study_uid``/``series_uid`` are given; SOP Instance
    UIDs are always fresh. ``extra`` sets further elements by keyword (any tag
    before PixelData) on every image.
    """
    if n_images < 1:
        raise ValueError(f"Argument 'n_images' should be at least 1, not {n_images!r}.")
    if n_slices is not None and n_slices < 1:
        raise ValueError(f"Argument 'n_slices' should be None or at least 1, not {n_slices!r}.")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    source = _PixelSource(rows, cols, seed, bits_allocated)
    study_uid = study_uid or generate_uid()
    series_uid = series_uid or generate_uid()
    when = _dt.datetime(2026, 1, 1, 8, 0, 0) + _dt.timedelta(seconds=seed % 86_000)

    ds = Dataset()
    _patient_study(ds, study_uid, patient_id, when)
    ds.SOPClassUID = CTImageStorage
    ds.Modality = modality
    ds.SeriesInstanceUID = series_uid
    ds.SeriesNumber = series_number
    ds.SeriesDescription = series_description
    ds.SeriesDate = ds.StudyDate
    ds.SeriesTime = ds.StudyTime
    ds.BodyPartExamined = body_part
    ds.PatientPosition = "HFS"
    ds.FrameOfReferenceUID = generate_uid()
    ds.PositionReferenceIndicator = ""
    ds.ImageType = list(image_type)
    ds.KVP = 80 if n_slices else 120
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.PixelSpacing = [pixel_spacing, pixel_spacing]
    ds.SliceThickness = slice_thickness
    ds.RescaleIntercept = -1024 if bits_allocated == 16 else 0
    ds.RescaleSlope = 1
    ds.RescaleType = "HU" if bits_allocated == 16 else "US"
    ds.WindowCenter = 40 if bits_allocated == 16 else 128
    ds.WindowWidth = 80 if bits_allocated == 16 else 256
    _image_pixel_module(ds, rows, cols, bits_allocated)
    _apply_extra(ds, extra)

    x0 = -pixel_spacing * cols / 2.0
    y0 = -pixel_spacing * rows / 2.0
    per_volume = n_slices or n_images
    paths: list[Path] = []
    for i in range(n_images):
        z_index, t_index = i % per_volume, i // per_volume
        sop_uid = generate_uid()
        z = round(z_index * slice_thickness, 3)
        acq = when + _dt.timedelta(seconds=t_index * frame_interval_s)
        ds.file_meta = _file_meta(CTImageStorage, sop_uid)
        ds.SOPInstanceUID = sop_uid
        ds.InstanceNumber = i + 1
        ds.AcquisitionNumber = acquisition_number if acquisition_number is not None else t_index + 1
        ds.ImagePositionPatient = [x0, y0, z]
        ds.SliceLocation = z
        ds.AcquisitionTime = acq.strftime("%H%M%S.%f")
        ds.ContentTime = ds.AcquisitionTime
        ds.ContentDate = ds.StudyDate
        if n_slices:
            ds.TemporalPositionIndex = t_index + 1
        path = out / f"IM{i + 1:05d}.dcm"
        _write_fast(path, ds, source.frame(i))
        paths.append(path)
    return paths


def write_xray(
    out_dir: str | os.PathLike[str],
    rows: int = 1024,
    cols: int = 1024,
    *,
    modality: str = "DX",
    seed: int = 0,
    study_uid: str | None = None,
    series_uid: str | None = None,
    patient_id: str = "SYN0002",
    body_part: str = "CHEST",
    bits_allocated: int = 16,
    extra: Mapping[str, Any] | None = None,
    filename: str = "XR00001.dcm",
) -> Path:
    """Write one projection radiograph (``modality`` "DX" or "CR") and return its path.

    DX uses Digital X-Ray Image Storage - For Presentation, CR uses Computed
    Radiography Image Storage. Pixels are ``rows x cols`` 16-bit (or 8-bit
    with ``bits_allocated=8``), MONOCHROME2.
    """
    if modality not in ("DX", "CR"):
        raise ValueError(f"Argument 'modality' should be 'DX' or 'CR', not {modality!r}.")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    sop_class = DigitalXRayImageStorageForPresentation if modality == "DX" else ComputedRadiographyImageStorage
    sop_uid = generate_uid()
    when = _dt.datetime(2026, 1, 1, 9, 0, 0)
    ds = Dataset()
    ds.file_meta = _file_meta(sop_class, sop_uid)
    _patient_study(ds, study_uid or generate_uid(), patient_id, when)
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_uid
    ds.Modality = modality
    ds.SeriesInstanceUID = series_uid or generate_uid()
    ds.SeriesNumber = 1
    ds.SeriesDescription = f"SYNTHETIC {body_part} {modality}"
    ds.BodyPartExamined = body_part
    ds.InstanceNumber = 1
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.ViewPosition = "PA"
    ds.PatientOrientation = ["L", "F"]
    ds.ContentDate = ds.StudyDate
    ds.ContentTime = ds.StudyTime
    ds.ImagerPixelSpacing = [0.15, 0.15]
    if modality == "DX":
        ds.PresentationIntentType = "FOR PRESENTATION"
        ds.PixelIntensityRelationship = "LOG"
        ds.PixelIntensityRelationshipSign = 1
        ds.BurnedInAnnotation = "NO"
        ds.DetectorType = "SCINTILLATOR"
        ds.PositionerType = "NONE"
        ds.AcquisitionContextSequence = []
        ds.PresentationLUTShape = "IDENTITY"
        ds.LossyImageCompression = "00"
        view = Dataset()
        view.CodeValue = "399348003"
        view.CodingSchemeDesignator = "SCT"
        view.CodeMeaning = "postero-anterior"
        ds.ViewCodeSequence = [view]
        ds.ImageLaterality = "U"
        ds.AnatomicRegionSequence = []
    ds.RescaleIntercept = 0
    ds.RescaleSlope = 1
    ds.RescaleType = "US"
    ds.WindowCenter = 2048 if bits_allocated == 16 else 128
    ds.WindowWidth = 4096 if bits_allocated == 16 else 256
    _image_pixel_module(ds, rows, cols, bits_allocated)
    if bits_allocated == 16:
        ds.PixelRepresentation = 0
        ds.BitsStored = 12
        ds.HighBit = 11
    _apply_extra(ds, extra)
    src = _PixelSource(rows, cols, seed, bits_allocated)
    pixels = src.frame(0)
    if bits_allocated == 16:
        pixels = np.clip(pixels, 0, 4095).astype(np.uint16)
    path = out / filename
    _write_fast(path, ds, pixels)
    return path


# --------------------------------------------------------------------------- compression
def _dcmcjpeg_available() -> bool:
    return shutil.which("dcmcjpeg") is not None


def available_syntaxes() -> dict[str, UID]:
    """The subset of :data:`SYNTAXES` that :func:`compress_series` can produce here."""
    from pydicom.pixels import get_encoder  # local: only needed for the check

    found: dict[str, UID] = {}
    for name, uid in SYNTAXES.items():
        if name in ("explicit", "implicit", "deflate"):
            found[name] = uid
        elif name in _DCMCJPEG_ARGS:
            if _dcmcjpeg_available():
                found[name] = uid
        else:
            try:
                if get_encoder(uid).is_available:
                    found[name] = uid
            except NotImplementedError:
                continue
    return found


def _resolve_syntax(syntax: str) -> str:
    if syntax in SYNTAXES:
        return syntax
    for name, uid in SYNTAXES.items():
        if syntax == uid:
            return name
    raise ValueError(f"Argument 'syntax' should be one of {sorted(SYNTAXES)} or their UIDs, not {syntax!r}.")


def _compress_one(src: Path, dst: Path, name: str, series_uid: str | None) -> Path:
    if name in _DCMCJPEG_ARGS:
        if series_uid is not None:
            raise ValueError("new_uids is not supported with the DCMTK JPEG encoders.")
        cmd = ["dcmcjpeg", *_DCMCJPEG_ARGS[name], str(src), str(dst)]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"dcmcjpeg failed on {src}: {proc.stderr.strip() or proc.stdout.strip()}")
        return dst
    ds = dcmread(src)
    if series_uid is not None:
        ds.SeriesInstanceUID = series_uid
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    uid = SYNTAXES[name]
    if name in ("explicit", "implicit", "deflate"):
        ds.file_meta.TransferSyntaxUID = uid
        ds.save_as(dst, implicit_vr=(name == "implicit"), little_endian=True, enforce_file_format=True)
        return dst
    kwargs: dict[str, Any] = {"generate_instance_uid": False}
    if name == "j2k":
        kwargs["j2k_cr"] = [10.0]
    ds.compress(uid, **kwargs)
    ds.save_as(dst, enforce_file_format=True)
    return dst


def compress_series(
    files: Iterable[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    syntax: str,
    *,
    new_uids: bool = False,
    workers: int | None = None,
) -> list[Path]:
    """Write copies of ``files`` in transfer syntax ``syntax`` into ``out_dir``.

    ``syntax`` is a key of :data:`SYNTAXES` ("rle", "jpeg-baseline",
    "jpeg-lossless", "jpeg-ls", "j2k-lossless", "j2k", "deflate",
    "implicit", "explicit", "htj2k-lossless") or the UID itself. JPEG Baseline
    needs 8-bit input (``write_ct_series(..., bits_allocated=8)``); the JPEG
    processes are encoded with DCMTK ``dcmcjpeg``, the others with pydicom
    (JPEG 2000 needs images of at least 32x32).
    UIDs are kept unless ``new_uids`` (fresh SOP Instance UIDs and one fresh
    Series Instance UID for the batch). Returns the new paths, same order and
    file names as ``files``.
    """
    name = _resolve_syntax(syntax)
    available = available_syntaxes()
    if name not in available:
        raise RuntimeError(f"No encoder for {name} ({SYNTAXES[name].name}) is installed here.")
    sources = [Path(f) for f in files]
    if name == "jpeg-baseline":
        for src in sources[:1]:
            bits = dcmread(src, stop_before_pixels=True).BitsAllocated
            if bits != 8:
                raise ValueError(
                    f"JPEG Baseline needs 8-bit images but {src} has BitsAllocated {bits}; "
                    "write them with bits_allocated=8."
                )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    series_uid = generate_uid() if new_uids else None
    jobs = [(src, out / src.name) for src in sources]
    # DCMTK encodes in child processes, which run in parallel safely; the pydicom encoders
    # (pylibjpeg, pyjpegls, RLE) are not known to be thread-safe: one crashed the
    # interpreter under a thread pool, so they run one image at a time.
    n_workers = workers or (min(8, os.cpu_count() or 1) if name in _DCMCJPEG_ARGS else 1)
    with ThreadPoolExecutor(max_workers=n_workers) as pool:
        return list(pool.map(lambda job: _compress_one(job[0], job[1], name, series_uid), jobs))
