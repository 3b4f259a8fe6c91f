"""Report lifecycle: save a draft or preliminary, sign the final, add addenda; store and route the objects.

A final report (and each addendum) becomes a Basic Text SR and an Encapsulated PDF in the study,
stored through the gateway's indexed intake (``Gateway.ingest_file``, the C-STORE durability
path) and routed with :func:`stroke.results.route_objects`: the routing rules, then back to the
sending clinic. Every step is written to the audit log.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pydicom
from pydicom.uid import generate_uid
from sqlalchemy import func, select

from pacs_gateway.index.models import Clinic, Instance, Series, Study
from pacs_gateway.routing.config import DEFAULT_STROKE_KINDS
from telerad.clock import isoformat, utcnow
from viewer.auth import audit
from viewer.models import Report, ReportVersion
from viewer.problems import Problem
from viewer.reading import claims
from viewer.reports import dicom, pdf
from viewer.reports.templates import TEMPLATES

log = logging.getLogger(__name__)
MAX_BODY = 100_000


def report_dict(s, study_uid: str) -> dict | None:
    r = s.execute(select(Report).where(Report.study_uid == study_uid)).scalar_one_or_none()
    if r is None:
        return None
    versions = s.execute(select(ReportVersion).where(ReportVersion.report_id == r.id)
                         .order_by(ReportVersion.version)).scalars().all()
    final = next((v for v in versions if v.kind == "final"), None)
    return {"study_instance_uid": r.study_uid, "template": r.template, "state": r.state, "body": r.body,
            "author": r.author, "created_at": isoformat(r.created_at), "updated_at": isoformat(r.updated_at),
            "signed_by": r.signed_by, "signed_at": isoformat(r.signed_at),
            "final_body": final.body if final else None,
            "addenda": [{"version": v.version, "body": v.body, "author": v.author, "at": isoformat(v.at),
                         "objects": v.objects or []} for v in versions if v.kind == "addendum"],
            "objects": [o for v in versions for o in (v.objects or [])],
            "versions": [{"version": v.version, "kind": v.kind, "author": v.author, "at": isoformat(v.at)} for v in versions]}


def _study(s, study_uid: str):
    row = s.execute(select(Study, Clinic.name).outerjoin(Clinic, Clinic.id == Study.clinic_id)
                    .where(Study.study_uid == study_uid)).one_or_none()
    if row is None:
        raise Problem(404, "Study not found", f"no study with Study Instance UID '{study_uid}' is in the index")
    return row


def _next_version(s, report_id: int) -> int:
    return (s.execute(select(func.max(ReportVersion.version)).where(ReportVersion.report_id == report_id)).scalar() or 0) + 1


def _check_body(body: str) -> str:
    body = (body or "").replace("\r\n", "\n")
    if not body.strip():
        raise Problem(422, "Invalid report", "body: the report text is empty")
    if len(body) > MAX_BODY:
        raise Problem(422, "Invalid report", f"body: at most {MAX_BODY} characters")
    return body


def save(sessions, user, study_uid: str, *, template: str, body: str, state: str = "draft", idle_min: float) -> dict:
    """Save a draft or preliminary report (the writer needs the study's claim; it is taken when free, renewed
    when the writer holds it; ``idle_min``: when another's claim lapses)."""
    if template not in TEMPLATES:
        raise Problem(422, "Invalid report", f"template: '{template}' is not one of {', '.join(TEMPLATES)}")
    if state not in ("draft", "preliminary"):
        raise Problem(422, "Invalid report", f"state: '{state}' cannot be saved; use draft or preliminary, or sign")
    body = _check_body(body)
    with sessions() as s:
        _study(s, study_uid)
    claims.require_holder_or_free(sessions, user, study_uid, idle_min=idle_min)
    now = utcnow()
    with sessions.begin() as s:
        r = s.execute(select(Report).where(Report.study_uid == study_uid)).scalar_one_or_none()
        if r is not None and r.state == "final":
            raise Problem(409, "Report is final", "a final report cannot change; add an addendum instead")
        if r is None:
            r = Report(study_uid=study_uid, template=template, state=state, body=body, author=user.name,
                       created_at=now, updated_at=now)
            s.add(r)
            s.flush()
        else:
            r.template, r.state, r.body, r.updated_at = template, state, body, now
        s.add(ReportVersion(report_id=r.id, version=_next_version(s, r.id), kind=state, body=body,
                            author=user.name, at=now))
        audit.add(s, user, f"report.{state}", study_uid, f"template {template}")
        return report_dict(s, study_uid)


def _store_fetch(app):
    """A remote object store's ``fetch`` (files into its local cache before reading), or None."""
    return getattr(getattr(app.state, "metadata", None), "fetch", None)


def _source_header(s, store_root: Path, study_uid: str, fetch=None):
    rows = s.execute(select(Instance.path).join(Series, Series.id == Instance.series_id)
                     .join(Study, Study.id == Series.study_id).where(Study.study_uid == study_uid)
                     .order_by(Instance.id).limit(5)).scalars().all()
    if fetch is not None:
        fetch(rows)
    for rel in rows:
        try:
            return pydicom.dcmread(Path(store_root) / rel, stop_before_pixels=True)
        except (OSError, pydicom.errors.InvalidDicomError):
            continue
    raise Problem(409, "Study has no readable image", "the study's stored files cannot be read; the report cannot be filed")


def _store_and_route(gateway, study_uid: str, datasets: list) -> list[dict]:
    """Ingest each data set like a received instance, then route them (rules, then the sending clinic)."""
    from stroke.results import route_objects

    if gateway is None:
        raise Problem(503, "Gateway not running", "this web service runs without the DICOM gateway; "
                                                   "the signed report cannot be stored or sent")
    folder = Path(gateway.settings.data_dir) / "reports-out"
    objects = []
    with gateway.sessions() as s:
        clinic_id = s.execute(select(Study.clinic_id).where(Study.study_uid == study_uid)).scalar()
        kinds = set(s.execute(select(Series.kind).join(Study, Study.id == Series.study_id)
                              .where(Study.study_uid == study_uid)).scalars())
    for ds in datasets:
        result = gateway.ingest_file(dicom.write(ds, folder), clinic_id=clinic_id)
        if not result.ok:
            raise Problem(500, "Report not stored", f"the gateway refused the report object: {result.error}")
        objects.append({"sop_uid": result.sop_uid, "series_uid": result.series_uid, "modality": ds.Modality})
    stroke_kinds = getattr(getattr(gateway.settings, "routing", None), "stroke_kinds", DEFAULT_STROKE_KINDS)
    kind = next((k for k in sorted(kinds, key=str) if k in stroke_kinds), None)
    route_objects(gateway, study_uid, objects, kind)
    return objects


def _file(app, user, study_uid: str, body: str, kind: str, predecessor: dict | None, number: int) -> list[dict]:
    now = utcnow()
    with app.state.sessions() as s:
        source = _source_header(s, app.state.store_root, study_uid, _store_fetch(app))
        _, clinic = _study(s, study_uid)
        series_uid = predecessor["series_uid"] if predecessor else generate_uid()
        pdf_series = predecessor["pdf_series_uid"] if predecessor else generate_uid()
    signer = user.name
    title = "Radiology report" + (" - addendum" if kind == "addendum" else "")
    sr = dicom.basic_text_sr(source, body=body, signer=signer, institution=None, now=now, series_uid=series_uid,
                             instance_number=number, predecessor=predecessor)
    footer = f"Signed by {signer} {now:%Y-%m-%d %H:%M} UTC - study {study_uid}"
    doc = dicom.encapsulated_pdf(source, pdf=pdf.report_pdf(title + (f" ({clinic})" if clinic else ""), body, footer),
                                 title=title, now=now, series_uid=pdf_series, instance_number=number)
    return _store_and_route(app.state.gateway, study_uid, [sr, doc])


def sign(app, user, study_uid: str, *, template: str, body: str) -> dict:
    """Sign the final report (radiologist); files it as SR + PDF in the study and sends it back."""
    body = _check_body(body)
    if template not in TEMPLATES:
        raise Problem(422, "Invalid report", f"template: '{template}' is not one of {', '.join(TEMPLATES)}")
    sessions = app.state.sessions
    with sessions() as s:
        _study(s, study_uid)
        r = s.execute(select(Report).where(Report.study_uid == study_uid)).scalar_one_or_none()
        if r is not None and r.state == "final":
            raise Problem(409, "Report is final", f"signed by {r.signed_by} at {isoformat(r.signed_at)}; add an addendum instead")
    idle_min = app.state.settings.web.claim_idle_min
    claims.require_holder_or_free(sessions, user, study_uid, idle_min=idle_min)
    final_text = body
    objects = _file(app, user, study_uid, final_text, "final", None, 1)
    now = utcnow()
    with sessions.begin() as s:
        r = s.execute(select(Report).where(Report.study_uid == study_uid)).scalar_one_or_none()
        if r is None:
            r = Report(study_uid=study_uid, template=template, state="final", body=body, author=user.name,
                       created_at=now, updated_at=now)
            s.add(r)
            s.flush()
        r.template, r.state, r.body, r.updated_at, r.signed_by, r.signed_at = template, "final", body, now, user.name, now
        s.add(ReportVersion(report_id=r.id, version=_next_version(s, r.id), kind="final", body=body, author=user.name,
                            at=now, objects=objects))
        audit.add(s, user, "report.sign", study_uid, ", ".join(f"{o['modality']} {o['sop_uid']}" for o in objects))
    claims.release(sessions, user, study_uid, idle_min=idle_min)
    with sessions() as s:
        return report_dict(s, study_uid)


def add_addendum(app, user, study_uid: str, text: str) -> dict:
    """An addendum to a final report: the original stays; a new SR (quoting it) and PDF are filed and sent."""
    text = _check_body(text)
    sessions = app.state.sessions
    with sessions() as s:
        r = s.execute(select(Report).where(Report.study_uid == study_uid)).scalar_one_or_none()
        if r is None or r.state != "final":
            raise Problem(409, "No final report", "an addendum needs a signed final report; edit and sign the report instead")
        versions = s.execute(select(ReportVersion).where(ReportVersion.report_id == r.id, ReportVersion.objects.is_not(None))
                             .order_by(ReportVersion.version)).scalars().all()
        original = next(v for v in versions if v.kind == "final")
        last = versions[-1]
        sr = next(o for o in last.objects if o["modality"] == "SR")
        pdf_obj = next(o for o in original.objects if o["modality"] == "DOC")
        number = len(versions) + 1
    body = (f"{original.body.rstrip()}\n\nADDENDUM:\n{text.strip()}\n(Addendum by {user.name}, "
            f"{utcnow():%Y-%m-%d %H:%M} UTC; the report above was signed by {r.signed_by}.)")
    predecessor = {"sop_uid": sr["sop_uid"], "series_uid": sr["series_uid"], "pdf_series_uid": pdf_obj["series_uid"]}
    objects = _file(app, user, study_uid, body, "addendum", predecessor, number)
    with sessions.begin() as s:
        r = s.execute(select(Report).where(Report.study_uid == study_uid)).scalar_one()
        s.add(ReportVersion(report_id=r.id, version=_next_version(s, r.id), kind="addendum", body=text,
                            author=user.name, at=utcnow(), objects=objects))
        r.updated_at = utcnow()
        audit.add(s, user, "report.addendum", study_uid, ", ".join(o["sop_uid"] for o in objects))
        return report_dict(s, study_uid)


def report_pdf(app, study_uid: str) -> bytes | None:
    """The newest stored PDF of the study's report (the Encapsulated PDF instance), or None."""
    with app.state.sessions() as s:
        d = report_dict(s, study_uid)
        docs = [o for o in (d or {}).get("objects", []) if o["modality"] == "DOC"]
        if not docs:
            return None
        path = s.execute(select(Instance.path).where(Instance.sop_uid == docs[-1]["sop_uid"])).scalar()
    if path is None:
        return None
    if _store_fetch(app) is not None:
        _store_fetch(app)([path])
    ds = pydicom.dcmread(Path(app.state.store_root) / path)
    return bytes(ds.EncapsulatedDocument)[: int(ds.get("EncapsulatedDocumentLength", len(ds.EncapsulatedDocument)))]
