"""WADO-RS rendered resources and thumbnails: JPEG or PNG of an image (PS3.18 10.4.1.1.3, 10.4.1.1.4).

The stored value is rescaled to modality units (Rescale Slope/Intercept), windowed with
``?window=center,width`` or the image's own first window (else its min/max), and scaled
to 8 bits. ``?viewport=w,h`` fits the result in that box (aspect kept); thumbnails fit
in 128x128. A study or series thumbnail shows its middle image.
"""

from __future__ import annotations

import io

import numpy as np
from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydicom import dcmread

from viewer.dicomweb.common import check_study, instances, not_acceptable, parse_accept, readable, store_root
from viewer.dicomweb.deps import ReaderDep
from viewer.dicomweb.wado import INSTANCE, SERIES, frame_numbers
from viewer.problems import Problem

router = APIRouter()
THUMB = (128, 128)
MAX_VIEWPORT = 4096


def _pair(name: str, text: str | None, cast=float):
    if text is None:
        return None
    try:
        a, b = (cast(v) for v in text.split(",")[:2])
    except ValueError:
        raise Problem(400, "Invalid rendering parameter", f"'{name}={text}': give two numbers, e.g. {name}=512,512") from None
    return a, b


def _media(accept: str | None) -> str:
    for m in parse_accept(accept):
        if m.type in ("image/jpeg", "image/*", "*/*"):
            return "image/jpeg"
        if m.type in ("image/png", "image/gif"):
            return "image/png"
    raise not_acceptable("a rendered image", accept, "image/jpeg or image/png")


def render(path, frame: int, *, window=None, viewport=None, media="image/jpeg", quality=90) -> bytes:
    """The encoded image of ``frame`` (1-based) of a stored file."""
    from PIL import Image

    ds = dcmread(path)
    if "PixelData" not in ds:
        raise Problem(404, "No pixel data", f"instance '{ds.get('SOPInstanceUID', '?')}' has no image to render "
                                            "(a structured report or another non-image object)")
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if not 1 <= frame <= frames:
        raise Problem(404, "Frame not found", f"frame {frame} does not exist; the instance has {frames} frame(s)")
    arr = ds.pixel_array
    if frames > 1:
        arr = arr[frame - 1]
    color = arr.ndim == 3
    if color:
        img = Image.fromarray(arr.astype(np.uint8), "RGB")
    else:
        values = arr.astype(np.float32) * float(ds.get("RescaleSlope", 1) or 1) + float(ds.get("RescaleIntercept", 0) or 0)
        if window is None and "WindowCenter" in ds and "WindowWidth" in ds:
            wc, ww = ds.WindowCenter, ds.WindowWidth
            window = (float(wc[0] if ds["WindowCenter"].VM > 1 else wc), float(ww[0] if ds["WindowWidth"].VM > 1 else ww))
        if window is None:
            lo, hi = float(values.min()), float(values.max())
        else:
            lo, hi = window[0] - window[1] / 2, window[0] + window[1] / 2
        scaled = np.clip((values - lo) / max(hi - lo, 1e-6), 0, 1) * 255
        if str(ds.get("PhotometricInterpretation", "")) == "MONOCHROME1":
            scaled = 255 - scaled
        img = Image.fromarray(scaled.astype(np.uint8), "L")
    if viewport is not None:
        img.thumbnail((max(1, min(int(viewport[0]), MAX_VIEWPORT)), max(1, min(int(viewport[1]), MAX_VIEWPORT))))
    buf = io.BytesIO()
    if media == "image/png":
        img.save(buf, "PNG")
    else:
        img.save(buf, "JPEG", quality=max(1, min(int(quality), 100)))
    return buf.getvalue()


def _respond(request: Request, reader, study_uid, series_uid=None, sop_uid=None, frame=1, thumbnail=False):
    session, user = reader
    study = check_study(session, user, study_uid)
    found = instances(session, store_root(request), study, series_uid, sop_uid)
    if sop_uid is None:  # a study or series: its middle image (one that has pixels)
        images = [i for i in found if not i.sop_class_uid.startswith("1.2.840.10008.5.1.4.1.1.88")] or found
        found = [images[len(images) // 2]]
    media = _media(request.headers.get("accept"))
    q = request.query_params
    window = _pair("window", q.get("window"))
    viewport = THUMB if thumbnail and "viewport" not in q else _pair("viewport", q.get("viewport"), int)
    try:
        quality = int(q.get("quality", 90))
    except ValueError:
        raise Problem(400, "Invalid rendering parameter", f"'quality={q.get('quality')}' must be 1-100") from None
    readable(request, found[:1])
    data = render(found[0].path, frame, window=window, viewport=viewport, media=media, quality=quality)
    return Response(data, media_type=media, headers={"cache-control": "private, max-age=300"})


@router.get(INSTANCE + "/rendered", summary="WADO-RS: the instance rendered as JPEG/PNG")
def rendered_instance(study_uid: str, series_uid: str, sop_uid: str, request: Request, reader: ReaderDep):
    return _respond(request, reader, study_uid, series_uid, sop_uid)


@router.get(INSTANCE + "/frames/{frames}/rendered", summary="WADO-RS: a frame rendered as JPEG/PNG")
def rendered_frame(study_uid: str, series_uid: str, sop_uid: str, frames: str, request: Request, reader: ReaderDep):
    numbers = frame_numbers(frames)
    return _respond(request, reader, study_uid, series_uid, sop_uid, frame=numbers[0])


@router.get(INSTANCE + "/thumbnail", summary="WADO-RS: a thumbnail of the instance")
def thumbnail_instance(study_uid: str, series_uid: str, sop_uid: str, request: Request, reader: ReaderDep):
    return _respond(request, reader, study_uid, series_uid, sop_uid, thumbnail=True)


@router.get(INSTANCE + "/frames/{frames}/thumbnail", summary="WADO-RS: a thumbnail of a frame")
def thumbnail_frame(study_uid: str, series_uid: str, sop_uid: str, frames: str, request: Request, reader: ReaderDep):
    return _respond(request, reader, study_uid, series_uid, sop_uid, frame=frame_numbers(frames)[0], thumbnail=True)


@router.get(SERIES + "/rendered", summary="WADO-RS: the series' middle image rendered")
def rendered_series(study_uid: str, series_uid: str, request: Request, reader: ReaderDep):
    return _respond(request, reader, study_uid, series_uid)


@router.get(SERIES + "/thumbnail", summary="WADO-RS: a thumbnail of the series (its middle image)")
def thumbnail_series(study_uid: str, series_uid: str, request: Request, reader: ReaderDep):
    return _respond(request, reader, study_uid, series_uid, thumbnail=True)


@router.get("/studies/{study_uid}/thumbnail", summary="WADO-RS: a thumbnail of the study")
def thumbnail_study(study_uid: str, request: Request, reader: ReaderDep):
    return _respond(request, reader, study_uid, thumbnail=True)
