"""WADO-RS: metadata (precomputed DICOM JSON), instances, frames and bulk data (PS3.18 10.4).

Metadata comes from :class:`pacs_gateway.metadata.MetadataCache` (built when a series
completes, or on the first request), so a request reads one file per series instead of
parsing every instance. Frames are read from the stored file without decoding: with
``transfer-syntax=*`` (what OHIF asks for) compressed frames go out exactly as stored;
a client that asks for uncompressed frames gets them decoded.
"""

from __future__ import annotations

import gzip
import io
import json

from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse
from pydicom import dcmread
from pydicom.uid import UID

from pacs_gateway.metadata import BASE_TOKEN
from viewer.dicomweb import pixels
from viewer.dicomweb.common import (DICOM_JSON, EXPLICIT_LE, UNCOMPRESSED, Multipart, audit, check_study,
                                    dicomweb_base, instances, locate, not_acceptable, parse_accept, readable,
                                    store_root)
from viewer.dicomweb.deps import ReaderDep
from viewer.problems import Problem

router = APIRouter()
GZIP_MIN_BYTES = 8192
SERIES = "/studies/{study_uid}/series/{series_uid}"
INSTANCE = SERIES + "/instances/{sop_uid}"

# compressed transfer syntaxes and the media type of their frames (PS3.18 Table 8.7.3-2)
FRAME_MEDIA = {
    "1.2.840.10008.1.2.4.50": "image/jpeg", "1.2.840.10008.1.2.4.51": "image/jpeg",
    "1.2.840.10008.1.2.4.57": "image/jpeg", "1.2.840.10008.1.2.4.70": "image/jpeg",
    "1.2.840.10008.1.2.4.80": "image/jls", "1.2.840.10008.1.2.4.81": "image/jls",
    "1.2.840.10008.1.2.4.90": "image/jp2", "1.2.840.10008.1.2.4.91": "image/jp2",
    "1.2.840.10008.1.2.4.201": "image/jphc", "1.2.840.10008.1.2.4.202": "image/jphc",
    "1.2.840.10008.1.2.4.203": "image/jphc", "1.2.840.10008.1.2.5": "image/dicom-rle",
}


# ----------------------------------------------------------------------------- metadata
def _metadata_cache(request: Request):
    cache = getattr(request.app.state, "metadata", None)
    if cache is None:
        raise Problem(503, "Metadata unavailable", "this web service runs without the object store")
    return cache


def _series_json(request: Request, series_uid: str) -> bytes:
    data = _metadata_cache(request).get(series_uid)
    if data is None:
        raise Problem(404, "Series not found", f"no series with Series Instance UID '{series_uid}' is in the index")
    return data.replace(BASE_TOKEN.encode(), dicomweb_base(request).encode())


def _json_response(body: bytes, request: Request) -> Response:
    """DICOM JSON, gzipped (fast level) for a client that accepts it when large: a 320-image series'
    metadata is about 860 KB and 50 KB gzipped, which matters on a clinic's slow link."""
    if len(body) >= GZIP_MIN_BYTES and "gzip" in request.headers.get("accept-encoding", ""):
        return Response(gzip.compress(body, compresslevel=1), media_type=DICOM_JSON,
                        headers={"content-encoding": "gzip", "vary": "accept-encoding"})
    return Response(body, media_type=DICOM_JSON, headers={"vary": "accept-encoding"})


@router.get("/studies/{study_uid}/metadata", summary="WADO-RS: metadata of every instance of a study")
def study_metadata(study_uid: str, request: Request, reader: ReaderDep):
    session, user = reader
    study = check_study(session, user, study_uid)
    audit(request, user, "study.view", study_uid, "dicomweb metadata")
    series = dict.fromkeys(i.series_uid for i in instances(session, store_root(request), study))
    parts = [_series_json(request, uid).strip() for uid in series]
    return _json_response(b"[" + b",".join(p[1:-1] for p in parts if len(p) > 2) + b"]", request)


@router.get(SERIES + "/metadata", summary="WADO-RS: metadata of every instance of a series")
def series_metadata(study_uid: str, series_uid: str, request: Request, reader: ReaderDep):
    session, user = reader
    study = check_study(session, user, study_uid)
    instances(session, store_root(request), study, series_uid)  # 404 when the series is not in this study
    audit(request, user, "study.view", study_uid, "dicomweb metadata")
    return _json_response(_series_json(request, series_uid), request)


@router.get(INSTANCE + "/metadata", summary="WADO-RS: metadata of one instance")
def instance_metadata(study_uid: str, series_uid: str, sop_uid: str, request: Request, reader: ReaderDep):
    session, user = reader
    study = check_study(session, user, study_uid)
    instances(session, store_root(request), study, series_uid, sop_uid)
    items = json.loads(_series_json(request, series_uid))
    item = [i for i in items if i.get("00080018", {}).get("Value", [None])[0] == sop_uid]
    if not item:
        raise Problem(404, "Instance not found", f"no metadata for instance '{sop_uid}'")
    return _json_response(json.dumps(item, separators=(",", ":")).encode(), request)


# ----------------------------------------------------------------------------- instances
def _instance_syntax(accept: str | None) -> tuple[str, str | None]:
    """``('multipart'|'single', transfer syntax or '*' or None)`` for a request of Part-10 instances."""
    for m in parse_accept(accept):
        if m.type in ("multipart/related", "*/*", "multipart/*"):
            ptype = m.params.get("type", "application/dicom").lower()
            if ptype in ("application/dicom", "application/*", "*/*"):
                return "multipart", m.params.get("transfer-syntax")
        if m.type == "application/dicom":
            return "single", m.params.get("transfer-syntax")
    raise not_acceptable("DICOM instances", accept, 'multipart/related; type="application/dicom"')


def _part10(path, stored_ts: str, wanted: str | None) -> bytes:
    """The file as stored, or transcoded to Explicit VR Little Endian when that is what was asked for."""
    if wanted in ("*", stored_ts) or (wanted is None and stored_ts == EXPLICIT_LE):
        return path.read_bytes()
    if wanted not in (None, EXPLICIT_LE):
        raise Problem(406, "Not acceptable", f"the instance is stored as {stored_ts}; this server returns it as "
                                             f"stored (transfer-syntax=*) or as {EXPLICIT_LE}, not {wanted}")
    ds = dcmread(path)
    if UID(stored_ts).is_compressed:
        ds.decompress()
    ds.file_meta.TransferSyntaxUID = EXPLICIT_LE
    buf = io.BytesIO()
    ds.save_as(buf, implicit_vr=False, little_endian=True, enforce_file_format=True)
    return buf.getvalue()


def _retrieve(request: Request, reader, study_uid: str, series_uid=None, sop_uid=None):
    session, user = reader
    study = check_study(session, user, study_uid)
    accept = request.headers.get("accept")
    mode, wanted = _instance_syntax(accept)
    found = readable(request, instances(session, store_root(request), study, series_uid, sop_uid))
    audit(request, user, "study.retrieve", study_uid, "dicomweb instances")
    other = sorted({i.transfer_syntax for i in found} - {wanted}) if wanted not in (None, "*", EXPLICIT_LE) else []
    if other:  # decided before the first part goes out
        raise Problem(406, "Not acceptable", f"instances are stored as {', '.join(other)}; this server returns them "
                                             f"as stored (transfer-syntax=*) or as {EXPLICIT_LE}, not {wanted}")
    if mode == "single":
        if len(found) != 1:
            raise not_acceptable(f"{len(found)} instances", accept, 'multipart/related; type="application/dicom"')
        i = found[0]
        return Response(_part10(i.path, i.transfer_syntax, wanted), media_type="application/dicom")
    mp = Multipart("application/dicom")

    def body():
        for i in found:
            ts = i.transfer_syntax if wanted in ("*", i.transfer_syntax) else EXPLICIT_LE
            yield mp.part(_part10(i.path, i.transfer_syntax, wanted), f"application/dicom; transfer-syntax={ts}")
        yield mp.end()

    return StreamingResponse(body(), media_type=mp.content_type)


@router.get("/studies/{study_uid}", summary="WADO-RS: every instance of a study (multipart application/dicom)")
def retrieve_study(study_uid: str, request: Request, reader: ReaderDep):
    return _retrieve(request, reader, study_uid)


@router.get(SERIES, summary="WADO-RS: every instance of a series")
def retrieve_series(study_uid: str, series_uid: str, request: Request, reader: ReaderDep):
    return _retrieve(request, reader, study_uid, series_uid)


@router.get(INSTANCE, summary="WADO-RS: one instance")
def retrieve_instance(study_uid: str, series_uid: str, sop_uid: str, request: Request, reader: ReaderDep):
    return _retrieve(request, reader, study_uid, series_uid, sop_uid)


# ----------------------------------------------------------------------------- frames and bulk data
def frame_numbers(text: str) -> list[int]:
    try:
        numbers = [int(n) for n in text.split(",") if n.strip()]
    except ValueError:
        raise Problem(400, "Invalid frame list", f"frames '{text}' must be numbers separated by commas, e.g. 1,2,3") from None
    if not numbers or len(numbers) > 10000:
        raise Problem(400, "Invalid frame list", f"frames '{text}': give 1 to 10000 frame numbers")
    return numbers


def _frame_syntax(accept: str | None, stored_ts: str) -> tuple[bool, bool]:
    """``(as_stored, multipart)`` for a frames request: stored bytes (any syntax) or uncompressed."""
    compressed = UID(stored_ts).is_encapsulated
    for m in parse_accept(accept):
        multipart = m.type.startswith("multipart/") or m.type == "*/*"
        ptype = (m.params.get("type") or ("application/octet-stream" if multipart else m.type)).lower()
        ts = m.params.get("transfer-syntax")
        if ptype in ("application/octet-stream", "*/*", "application/*"):
            if ts == "*" or ts == stored_ts or (not compressed and ts in (None, EXPLICIT_LE, *UNCOMPRESSED)):
                return True, multipart
            if ts in (None, EXPLICIT_LE):
                return False, multipart
        elif compressed and ptype == FRAME_MEDIA.get(stored_ts) and ts in (None, "*", stored_ts):
            return True, multipart
        elif ptype.startswith("image/") and ts == "*":
            return True, multipart
    offered = (f"application/octet-stream (uncompressed) or {FRAME_MEDIA.get(stored_ts, 'application/octet-stream')}"
               f" with transfer-syntax={stored_ts} or *")
    raise not_acceptable("these frames", accept, offered)


def _frames_response(parts: list[bytes], content_type: str, multipart: bool):
    if not multipart:
        if len(parts) != 1:
            raise Problem(406, "Not acceptable", "several frames need a multipart/related Accept header")
        return Response(parts[0], media_type=content_type)
    mp = Multipart(content_type.split(";")[0])
    return Response(b"".join(mp.part(p, content_type) for p in parts) + mp.end(), media_type=mp.content_type)


@router.get(INSTANCE + "/frames/{frames}", summary="WADO-RS: frames (stored bitstreams with transfer-syntax=*)")
def retrieve_frames(study_uid: str, series_uid: str, sop_uid: str, frames: str, request: Request, reader: ReaderDep):
    session, user = reader
    numbers = frame_numbers(frames)
    inst = readable(request, [locate(session, user, store_root(request), study_uid, series_uid, sop_uid)])[0]
    lay = pixels.layout(inst.path)
    if len(numbers) > lay.frames:  # bounds the answer by the size of the instance's pixel data
        raise Problem(400, "Invalid frame list", f"{len(numbers)} frame numbers for an instance of {lay.frames} frame(s)")
    as_stored, multipart = _frame_syntax(request.headers.get("accept"), lay.transfer_syntax)
    if as_stored:
        data = pixels.stored_frames(lay, numbers)
        ts = lay.transfer_syntax if lay.encapsulated else EXPLICIT_LE
        media = FRAME_MEDIA.get(ts, "application/octet-stream")
    else:
        data = pixels.decoded_frames(inst.path, numbers)
        ts, media = EXPLICIT_LE, "application/octet-stream"
    return _frames_response(data, f"{media}; transfer-syntax={ts}", multipart)


@router.get(INSTANCE + "/bulkdata/{tag}", summary="WADO-RS: a bulk data value named by a metadata BulkDataURI")
def retrieve_bulkdata(study_uid: str, series_uid: str, sop_uid: str, tag: str, request: Request, reader: ReaderDep):
    session, user = reader
    try:
        tag_int = int(tag, 16)
    except ValueError:
        raise Problem(400, "Invalid bulk data reference", f"'{tag}' is not a tag (8 hex digits, e.g. 7FE00010)") from None
    inst = readable(request, [locate(session, user, store_root(request), study_uid, series_uid, sop_uid)])[0]
    accept = request.headers.get("accept")
    multipart = not any(m.type == "application/octet-stream" for m in parse_accept(accept))
    if tag_int == 0x7FE00010:
        lay = pixels.layout(inst.path)
        if lay.encapsulated:
            frames = pixels.encapsulated_frames(lay, list(range(1, lay.frames + 1)))
            media = f"{FRAME_MEDIA.get(lay.transfer_syntax, 'application/octet-stream')}; transfer-syntax={lay.transfer_syntax}"
            return _frames_response(frames, media, multipart or len(frames) > 1)
        value = b"".join(pixels.native_frames(lay, list(range(1, lay.frames + 1))))
    else:
        value = _find_value(dcmread(inst.path), tag_int)
        if value is None:
            raise Problem(404, "Bulk data not found", f"instance '{sop_uid}' has no binary element {tag.upper()}")
    return _frames_response([value], f"application/octet-stream; transfer-syntax={EXPLICIT_LE}", multipart)


def _find_value(ds, tag: int) -> bytes | None:
    """The value of ``tag`` at the top level, else the first one found in a sequence (depth first)."""
    if tag in ds and isinstance(ds[tag].value, (bytes, bytearray)):
        return bytes(ds[tag].value)
    for elem in ds:
        if elem.VR == "SQ":
            for item in elem.value:
                found = _find_value(item, tag)
                if found is not None:
                    return found
    return None
