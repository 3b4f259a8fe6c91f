"""STOW-RS: store instances over HTTP through the gateway's C-STORE durability path (PS3.18 10.5).

The request is checked whole before anything is stored: every part must be an
``application/dicom`` Part-10 file whose header the gateway can read (the same checks as a
C-STORE: UIDs present, no truncated elements) and, under ``/studies/{uid}``, of that study.
One bad part and the upload is refused (400/409 ``application/problem+json`` naming each
bad part and why); nothing of it is stored. A valid upload is then stored file by file
with ``Gateway.ingest_file`` (fsynced and indexed before it returns), and the answer is the
standard STOW-RS response (DICOM JSON: ReferencedSOPSequence, FailedSOPSequence).

Bounds: the body is at most :data:`MAX_BYTES` (413 beyond) and :data:`MAX_PARTS` parts, and at
most :data:`MAX_CONCURRENT` uploads are read at once (503, ``retry_after`` in the problem, when the others wait
longer than :data:`SLOT_WAIT_S`).
Who: technicians store as their clinic (``?clinic=NAME`` when they have several); other
uploading roles may name a clinic with ``?clinic=`` or store under the gateway's own AE title.
A technician cannot add instances to a study of another clinic (403, nothing stored).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import uuid
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import Response
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from pacs_gateway import status as dimse
from pacs_gateway.errors import BadDataset
from pacs_gateway.index.models import Clinic, Study
from viewer.dicomweb.common import DICOM_JSON, dicomweb_base, split_multipart
from viewer.dicomweb.deps import UploaderDep
from viewer.problems import Problem

log = logging.getLogger(__name__)
router = APIRouter()
MAX_BYTES = 1 << 30
MAX_PARTS = 10000
MAX_CONCURRENT = 2  # uploads held in memory at once (each at most MAX_BYTES)
SLOT_WAIT_S = 30.0
# FailureReason (0008,1197) values, PS3.18 Table I.2-1
PROCESSING_FAILURE = 0x0110
REFERENCED_SOP_CLASS_NOT_SUPPORTED = 0x0122
STUDY_MISMATCH = "study mismatch"  # answered as 409 Conflict


async def _read_body(request: Request) -> bytes:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > MAX_BYTES:
        raise Problem(413, "Upload too large", f"the body is {int(declared)} bytes; at most {MAX_BYTES} per request "
                                               "(split the upload into several requests)")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BYTES:
            raise Problem(413, "Upload too large", f"the body passed {MAX_BYTES} bytes; split the upload into several requests")
        chunks.append(chunk)
    return b"".join(chunks)


def _gateway(request: Request):
    gw = getattr(request.app.state, "gateway", None)
    if gw is None or not hasattr(gw, "ingest_file"):
        raise Problem(503, "Uploads unavailable", "this web service runs without the DICOM gateway, so it cannot store")
    return gw


def _clinic(request: Request, user, session) -> Clinic | None:
    """The clinic the upload is stored as (a technician's own; 403/400 otherwise)."""
    name = request.query_params.get("clinic")
    if user.role == "technician":
        if name is None:
            if len(user.clinics) != 1:
                raise Problem(400, "Clinic needed", "you work for several clinics: say which with ?clinic=NAME "
                                                    f"(one of {', '.join(sorted(user.clinics))})")
            name = next(iter(user.clinics))
        elif name not in user.clinics:
            raise Problem(403, "Forbidden", f"'{user.name}' cannot store as clinic '{name}'")
    if name is None:
        return None
    clinic = session.execute(select(Clinic).where(Clinic.name == name)).scalar_one_or_none()
    if clinic is None:
        raise Problem(400, "Unknown clinic", f"?clinic='{name}': no such clinic (see 'telerad clinic list')")
    return clinic


def _validate(gw, parts, staging: Path, study_uid: str | None) -> tuple[list[tuple[Path, object]], list[dict]]:
    """Write each part to a staging file and check it; ``([(path, header)], failures)``."""
    staged, failures = [], []
    for n, (headers, data) in enumerate(parts, 1):
        ctype = headers.get("content-type", "application/dicom").split(";")[0].strip().lower()
        if ctype != "application/dicom":
            failures.append({"part": n, "reason": f"part {n} is '{ctype}'; this server stores application/dicom parts"
                                                  " (Part-10 files) only", "failure_reason": REFERENCED_SOP_CLASS_NOT_SUPPORTED})
            continue
        path = staging / f"{uuid.uuid4().hex}.part"
        with open(path, "wb") as f:
            f.write(data)
        try:
            header = gw.check_file(path)
        except BadDataset as exc:
            failures.append({"part": n, "reason": f"part {n}: {exc}", "status": f"0x{exc.status:04X}",
                             "failure_reason": PROCESSING_FAILURE})
            path.unlink(missing_ok=True)
            continue
        if study_uid and header.study_uid != study_uid:
            failures.append({"part": n, "sop_instance_uid": header.sop_uid, "failure_reason": STUDY_MISMATCH,
                             "reason": f"part {n} belongs to study '{header.study_uid}', not to '{study_uid}' of the URL"})
            path.unlink(missing_ok=True)
            continue
        staged.append((path, header))
    return staged, failures


def _refuse(failures: list[dict]) -> Problem:
    mismatch = all(f["failure_reason"] == STUDY_MISMATCH for f in failures)
    detail = "; ".join(f["reason"] for f in failures[:20]) + (f"; and {len(failures) - 20} more" if len(failures) > 20 else "")
    return Problem(409 if mismatch else 400, "Invalid upload", f"nothing was stored: {detail}",
                   failures=[{k: v for k, v in f.items() if k != "failure_reason"} for f in failures])


def _store(gw, staged, clinic) -> list[tuple[object, object]]:
    out = []
    for path, header in staged:
        result = gw.ingest_file(path, calling_ae=clinic.ae_title if clinic else None,
                                clinic_id=clinic.id if clinic else None)
        out.append((header, result))
    return out


def _response(request: Request, stored, study_uid: str | None) -> Response:
    base = dicomweb_base(request)
    ok, failed = [], []
    for header, result in stored:
        item = {"00081150": {"vr": "UI", "Value": [header.sop_class_uid]},
                "00081155": {"vr": "UI", "Value": [header.sop_uid]}}
        if result.ok:
            item["00081190"] = {"vr": "UR", "Value": [
                f"{base}/studies/{header.study_uid}/series/{header.series_uid}/instances/{header.sop_uid}"]}
            ok.append(item)
        else:
            item["00081197"] = {"vr": "US", "Value": [result.status if result.status < 0x10000 else PROCESSING_FAILURE]}
            failed.append(item)
            log.warning("STOW-RS: instance refused by the store: %s (%s)", dimse.describe(result.status), result.error)
    body = {}
    uids = {h.study_uid for h, _ in stored}
    if len(uids) == 1:
        body["00081190"] = {"vr": "UR", "Value": [f"{base}/studies/{next(iter(uids))}"]}
    if ok:
        body["00081199"] = {"vr": "SQ", "Value": ok}
    if failed:
        body["00081198"] = {"vr": "SQ", "Value": failed}
    code = 200 if not failed else (202 if ok else 409)
    return Response(json.dumps(body), status_code=code, media_type=DICOM_JSON)


def _foreign_studies(session, user, staged) -> list[dict]:
    """Parts of a technician's upload that would go into a study of a clinic they do not work for."""
    if user.role != "technician":
        return []
    uids = sorted({h.study_uid for _, h in staged})
    owners = dict(session.execute(select(Study.study_uid, Clinic.name).outerjoin(Clinic, Clinic.id == Study.clinic_id)
                                  .where(Study.study_uid.in_(uids))).all())
    return [{"part": n, "sop_instance_uid": h.sop_uid, "failure_reason": "forbidden",
             "reason": f"part {n} belongs to study '{h.study_uid}' of a clinic '{user.name}' does not work for"}
            for n, (_, h) in enumerate(staged, 1) if h.study_uid in owners and owners[h.study_uid] not in user.clinics]


async def _stow(request: Request, user, study_uid: str | None):
    ctype = request.headers.get("content-type", "")
    if not ctype.lower().startswith("multipart/related"):
        raise Problem(415, "Unsupported media type", f"STOW-RS takes multipart/related; type=\"application/dicom\", "
                                                     f"not '{ctype or 'no Content-Type'}'")
    gw = _gateway(request)
    with request.app.state.sessions() as session:
        clinic = _clinic(request, user, session)
    slots = getattr(request.app.state, "stow_slots", None)
    if slots is None:
        slots = request.app.state.stow_slots = asyncio.Semaphore(MAX_CONCURRENT)
    try:
        await asyncio.wait_for(slots.acquire(), timeout=SLOT_WAIT_S)
    except asyncio.TimeoutError:
        raise Problem(503, "Busy", f"{MAX_CONCURRENT} uploads are being stored; try again shortly",
                      retry_after=int(SLOT_WAIT_S)) from None
    try:
        return await _stow_body(request, user, study_uid, gw, clinic, ctype)
    finally:
        slots.release()


async def _stow_body(request: Request, user, study_uid, gw, clinic, ctype: str):
    body = await _read_body(request)
    parts = split_multipart(body, ctype)
    del body
    if len(parts) > MAX_PARTS:
        raise Problem(413, "Upload too large", f"{len(parts)} parts; at most {MAX_PARTS} per request")
    staged, failures = await run_in_threadpool(_validate, gw, parts, gw.store.tmp, study_uid)
    del parts
    if not failures:
        with request.app.state.sessions() as session:
            failures = _foreign_studies(session, user, staged)
    if failures:
        for path, _ in staged:
            path.unlink(missing_ok=True)
        if all(f["failure_reason"] == "forbidden" for f in failures):
            raise Problem(403, "Forbidden", "nothing was stored: " + "; ".join(f["reason"] for f in failures[:5]))
        raise _refuse(failures)
    if not staged:
        raise Problem(400, "Invalid upload", "the multipart body has no parts")
    try:
        stored = await run_in_threadpool(_store, gw, staged, clinic)
    finally:
        for path, _ in staged:
            if os.path.exists(path):
                os.unlink(path)
    from viewer.auth import audit as audit_log

    for uid in sorted({h.study_uid for h, r in stored if r.ok}):
        n = sum(1 for h, r in stored if r.ok and h.study_uid == uid)
        await run_in_threadpool(audit_log.record, request.app.state.sessions, user, "study.upload", uid,
                                f"STOW-RS, {n} instance(s)" + (f" as clinic {clinic.name}" if clinic else ""),
                                request.client.host if request.client else None)
    return _response(request, stored, study_uid)


@router.post("/studies", summary="STOW-RS: store instances (multipart/related; type=application/dicom)")
async def stow(request: Request, user: UploaderDep):
    return await _stow(request, user, None)


@router.post("/studies/{study_uid}", summary="STOW-RS: store instances of one study")
async def stow_study(study_uid: str, request: Request, user: UploaderDep):
    return await _stow(request, user, study_uid)
