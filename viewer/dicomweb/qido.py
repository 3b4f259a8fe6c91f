"""QIDO-RS: search for studies, series and instances in the index (PS3.18 10.6).

Matching: single values, UID lists (``a,b`` or ``a\\b``), ``*``/``?`` wildcards on text
attributes (PatientName case-insensitively), date ranges (``20240101-20240131``, ``-2024``,
``2024-``), ``limit``/``offset`` and ``includefield`` (keywords or tags; ``all`` means the
level's defaults). Attributes the index does not keep (e.g. PatientBirthDate) are returned
from the series' precomputed metadata when it is there (a search never builds it; a series
without it is queued for the worker); matching on them is refused with a clear 400.
"""

from __future__ import annotations

import json

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydicom.datadict import dictionary_VR, keyword_for_tag, tag_for_keyword
from sqlalchemy import and_, func, or_, select

from pacs_gateway.index.models import Clinic, Instance, Series, Study
from viewer.dicomweb.common import DICOM_JSON, check_study, visible_clinic_ids
from viewer.dicomweb.deps import ReaderDep
from viewer.problems import Problem

router = APIRouter()
MAX_LIMIT = 1000
CONTROL = {"limit", "offset", "includefield", "fuzzymatching"}

# keyword -> (level, column or None for a computed attribute)
STUDY_ATTRS = {
    "StudyInstanceUID": Study.study_uid, "PatientID": Study.patient_id, "PatientName": Study.patient_name,
    "AccessionNumber": Study.accession_number, "StudyDate": Study.study_date,
    "StudyDescription": Study.study_description, "ModalitiesInStudy": None,
}
SERIES_ATTRS = {
    "SeriesInstanceUID": Series.series_uid, "Modality": Series.modality, "SeriesNumber": Series.series_number,
    "SeriesDescription": Series.series_description,
}
INSTANCE_ATTRS = {"SOPInstanceUID": Instance.sop_uid, "SOPClassUID": Instance.sop_class_uid, "InstanceNumber": None}
UIDS = {"StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID"}
STUDY_DEFAULT = ["StudyDate", "StudyTime", "AccessionNumber", "ModalitiesInStudy", "ReferringPhysicianName",
                 "PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyInstanceUID", "StudyID",
                 "StudyDescription", "NumberOfStudyRelatedSeries", "NumberOfStudyRelatedInstances"]
SERIES_DEFAULT = ["Modality", "SeriesInstanceUID", "SeriesNumber", "SeriesDescription",
                  "NumberOfSeriesRelatedInstances"]
INSTANCE_DEFAULT = ["SOPClassUID", "SOPInstanceUID", "InstanceNumber", "Rows", "Columns", "NumberOfFrames",
                    "BitsAllocated"]


# ----------------------------------------------------------------------------- parameters
def _keyword(name: str) -> str:
    """A query key as a DICOM keyword (``00100020`` and ``PatientID`` both work)."""
    key = name.strip()
    if len(key) == 8 and all(c in "0123456789abcdefABCDEF" for c in key):
        kw = keyword_for_tag(int(key, 16))
        if kw:
            return kw
    elif tag_for_keyword(key) is not None:
        return key
    raise Problem(400, "Invalid query", f"query parameter '{name}' is neither a DICOM keyword nor a tag "
                                        "(use e.g. PatientID or 00100020, or limit/offset/includefield)")


def _params(request: Request) -> tuple[dict[str, str], int, int, set[str]]:
    filters, includes = {}, set()
    limit, offset = MAX_LIMIT, 0
    for name, value in request.query_params.multi_items():
        low = name.lower()
        if low == "limit":
            limit = _int(name, value, 1, MAX_LIMIT)
        elif low == "offset":
            offset = _int(name, value, 0, 10**9)
        elif low == "includefield":
            for field in value.split(","):
                if field.strip():
                    includes.add("all" if field.strip().lower() == "all" else _keyword(field))
        elif low == "fuzzymatching":
            continue
        else:
            filters[_keyword(name)] = value
    return filters, limit, offset, includes


def _int(name: str, value: str, lo: int, hi: int) -> int:
    try:
        n = int(value)
    except ValueError:
        raise Problem(400, "Invalid query", f"'{name}' must be an integer, not '{value}'") from None
    if not lo <= n <= hi:
        raise Problem(400, "Invalid query", f"'{name}' must be between {lo} and {hi}, not {n}")
    return n


def _like(value: str) -> str:
    out = value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return out.replace("*", "%").replace("?", "_")


def _condition(keyword: str, column, value: str):
    """The SQL condition for one attribute of the index."""
    value = value.strip()
    if value in ("", "*"):
        return None
    if keyword in UIDS:
        uids = [u.strip() for u in value.replace("\\", ",").split(",") if u.strip()]
        return column.in_(uids)
    if keyword in ("StudyDate",):
        if "-" in value:
            lo, _, hi = value.partition("-")
            for v in (lo, hi):
                if v and not (len(v) == 8 and v.isdigit()):
                    raise Problem(400, "Invalid query", f"StudyDate range '{value}': dates are YYYYMMDD")
            conds = [column >= lo] if lo else []
            conds += [column <= hi] if hi else []
            return and_(*conds)
        if not (len(value) == 8 and value.isdigit()):
            raise Problem(400, "Invalid query", f"StudyDate '{value}': use YYYYMMDD or a range YYYYMMDD-YYYYMMDD")
        return column == value
    if keyword == "SeriesNumber":
        try:
            return column == int(value)
        except ValueError:
            raise Problem(400, "Invalid query", f"SeriesNumber '{value}' must be an integer") from None
    if keyword == "PatientName":
        return func.lower(column).like(_like(value.lower()), escape="\\")
    if "*" in value or "?" in value:
        return column.like(_like(value), escape="\\")
    values = [v for v in value.split("\\") if v]
    return column.in_(values) if len(values) > 1 else column == value


def _apply(q, filters: dict[str, str], attrs: dict, level: str, extra=None):
    for kw, value in filters.items():
        if kw in attrs:
            if attrs[kw] is None:
                cond = extra(kw, value) if extra else None
            else:
                cond = _condition(kw, attrs[kw], value)
            if cond is not None:
                q = q.where(cond)
        elif not _known_elsewhere(kw):
            raise Problem(400, "Invalid query", f"matching on '{kw}' is not supported for {level} searches; "
                                                f"supported: {', '.join(sorted(_matchable(level)))}")
    return q


def _matchable(level: str) -> set[str]:
    if level == "study":
        return set(STUDY_ATTRS)
    if level == "series":
        return set(STUDY_ATTRS) | set(SERIES_ATTRS)
    return set(STUDY_ATTRS) | set(SERIES_ATTRS) | set(INSTANCE_ATTRS)


def _known_elsewhere(kw: str) -> bool:
    return kw in STUDY_ATTRS or kw in SERIES_ATTRS or kw in INSTANCE_ATTRS


def _check_levels(filters: dict[str, str], level: str) -> None:
    bad = [k for k in filters if k not in _matchable(level)]
    if bad:
        raise Problem(400, "Invalid query", f"matching on {', '.join(bad)} is not supported for {level} searches; "
                                            f"supported: {', '.join(sorted(_matchable(level)))}")


def _modalities_cond(kw: str, value: str):
    mods = [m.strip() for m in value.replace("\\", ",").split(",") if m.strip() and m.strip() != "*"]
    if not mods:
        return None
    return Study.id.in_(select(Series.study_id).where(Series.modality.in_(mods)))


def _instance_number_cond(kw: str, value: str):
    """InstanceNumber lives in the instances' JSON headers: checked here, matched by the caller."""
    if value.strip() not in ("", "*"):
        try:
            int(value)
        except ValueError:
            raise Problem(400, "Invalid query", f"InstanceNumber '{value}' must be an integer") from None
    return None


# ----------------------------------------------------------------------------- DICOM JSON
def attr(keyword: str, value) -> tuple[str, dict]:
    tag = tag_for_keyword(keyword)
    vr = dictionary_VR(tag)
    if vr == "US or SS":
        vr = "US"
    elem = {"vr": vr}
    if value is None or value == "" or value == []:
        return f"{tag:08X}", elem
    values = value if isinstance(value, list) else [value]
    if vr == "PN":
        elem["Value"] = [{"Alphabetic": str(v)} for v in values]
    elif vr in ("IS", "US", "UL", "SL", "SS"):
        elem["Value"] = [int(v) for v in values]
    elif vr in ("DS", "FL", "FD"):
        elem["Value"] = [float(v) for v in values]
    else:
        elem["Value"] = [str(v) for v in values]
    return f"{tag:08X}", elem


def _dataset(pairs: dict) -> dict:
    return dict(sorted(attr(k, v) for k, v in pairs.items()))


def _includes(extra: set[str], defaults: list[str], known: dict) -> list[str]:
    """Keywords to fill from the precomputed metadata (not in ``known``)."""
    wanted = set(defaults) | {k for k in extra if k != "all"}  # "all": the defaults of the level
    return [k for k in wanted if k not in known]


def _from_metadata(request: Request, series_uid: str, keywords: list[str], *, sop_uid: str | None = None,
                   memo: dict | None = None) -> dict:
    """Elements of the series' precomputed metadata (first instance, or ``sop_uid``), by keyword.

    ``memo``: a dict kept for one request, so a series' metadata is looked up once, not per instance.
    """
    cache = getattr(request.app.state, "metadata", None)
    if cache is None or not keywords:
        return {}
    if sop_uid is None:
        item = cache.first_item(series_uid) or {}
    else:
        memo = {} if memo is None else memo
        if series_uid not in memo:
            items = cache.items(series_uid, build=False)
            memo[series_uid] = {it.get("00080018", {}).get("Value", [None])[0]: it for it in items}
        item = memo[series_uid].get(sop_uid, {})
    out = {}
    for kw in keywords:
        tag = tag_for_keyword(kw)
        if tag is not None and f"{tag:08X}" in item and "BulkDataURI" not in item[f"{tag:08X}"]:
            out[f"{tag:08X}"] = item[f"{tag:08X}"]
    return out


def _reply(items: list[dict]) -> Response:
    if not items:
        return Response(status_code=204)
    return Response(json.dumps(items, separators=(",", ":")), media_type=DICOM_JSON)


# ----------------------------------------------------------------------------- routes
def _study_rows(session, user, filters, limit, offset, study_uid=None):
    q = select(Study, Clinic.name).outerjoin(Clinic, Clinic.id == Study.clinic_id)
    clinics = visible_clinic_ids(session, user)
    if clinics is not None:
        q = q.where(Study.clinic_id.in_(clinics))
    if study_uid:
        q = q.where(Study.study_uid == study_uid)
    q = _apply(q, {k: v for k, v in filters.items() if k in STUDY_ATTRS}, STUDY_ATTRS, "study", _modalities_cond)
    return q


def _study_summaries(session, ids: list[int]) -> dict[int, tuple[list[str], int, int]]:
    out: dict[int, tuple[list[str], int, int]] = {}
    for sid, modality, n in session.execute(select(Series.study_id, Series.modality, Series.instance_count)
                                            .where(Series.study_id.in_(ids))):
        mods, ns, ni = out.get(sid, ([], 0, 0))
        if modality and modality not in mods:
            mods.append(modality)
        out[sid] = (mods, ns + 1, ni + (n or 0))
    return out


def _study_pairs(st: Study, summary) -> dict:
    mods, nseries, ninst = summary or ([], 0, 0)
    return {"StudyInstanceUID": st.study_uid, "PatientID": st.patient_id, "PatientName": st.patient_name,
            "AccessionNumber": st.accession_number, "StudyDate": st.study_date,
            "StudyDescription": st.study_description, "ModalitiesInStudy": sorted(mods),
            "NumberOfStudyRelatedSeries": nseries, "NumberOfStudyRelatedInstances": ninst}


@router.get("/studies", summary="QIDO-RS: search for studies")
def search_studies(request: Request, reader: ReaderDep):
    filters, limit, offset, includes = _params(request)
    _check_levels(filters, "study")
    session, user = reader
    q = _study_rows(session, user, filters, limit, offset).order_by(Study.last_received_at.desc(), Study.id)
    rows = session.execute(q.limit(limit).offset(offset)).all()
    summaries = _study_summaries(session, [st.id for st, _ in rows])
    out = []
    for st, _clinic in rows:
        pairs = _study_pairs(st, summaries.get(st.id))
        item = _dataset(pairs)
        missing = _includes(includes, STUDY_DEFAULT, pairs)
        if missing:
            first = session.execute(select(Series.series_uid).where(Series.study_id == st.id)
                                    .order_by(Series.series_number, Series.id).limit(1)).scalar()
            if first:
                item.update(_from_metadata(request, first, missing))
        out.append(dict(sorted(item.items())))
    return _reply(out)


def _series_query(session, user, filters, study_uid):
    q = (select(Series, Study).join(Study, Study.id == Series.study_id))
    clinics = visible_clinic_ids(session, user)
    if clinics is not None:
        q = q.where(Study.clinic_id.in_(clinics))
    if study_uid:
        q = q.where(Study.study_uid == study_uid)
    q = _apply(q, {k: v for k, v in filters.items() if k in STUDY_ATTRS}, STUDY_ATTRS, "series", _modalities_cond)
    q = _apply(q, {k: v for k, v in filters.items() if k in SERIES_ATTRS}, SERIES_ATTRS, "series")
    return q


def _series_pairs(se: Series, st: Study, with_study: bool) -> dict:
    pairs = {"SeriesInstanceUID": se.series_uid, "Modality": se.modality, "SeriesNumber": se.series_number,
             "SeriesDescription": se.series_description, "NumberOfSeriesRelatedInstances": se.instance_count,
             "StudyInstanceUID": st.study_uid}
    if with_study:
        pairs.update({"PatientID": st.patient_id, "PatientName": st.patient_name, "StudyDate": st.study_date,
                      "AccessionNumber": st.accession_number, "StudyDescription": st.study_description})
    return pairs


def _search_series(request: Request, reader, study_uid: str | None):
    filters, limit, offset, includes = _params(request)
    _check_levels(filters, "series")
    session, user = reader
    if study_uid:
        check_study(session, user, study_uid)
    q = _series_query(session, user, filters, study_uid).order_by(Study.id, Series.series_number, Series.id)
    out = []
    for se, st in session.execute(q.limit(limit).offset(offset)).all():
        pairs = _series_pairs(se, st, study_uid is None)
        item = _dataset(pairs)
        missing = _includes(includes, SERIES_DEFAULT, pairs)
        item.update(_from_metadata(request, se.series_uid, missing))
        out.append(dict(sorted(item.items())))
    return _reply(out)


@router.get("/series", summary="QIDO-RS: search for series")
def search_all_series(request: Request, reader: ReaderDep):
    return _search_series(request, reader, None)


@router.get("/studies/{study_uid}/series", summary="QIDO-RS: search for the series of a study")
def search_study_series(study_uid: str, request: Request, reader: ReaderDep):
    return _search_series(request, reader, study_uid)


def _search_instances(request: Request, reader, study_uid: str | None, series_uid: str | None):
    filters, limit, offset, includes = _params(request)
    _check_levels(filters, "instance")
    session, user = reader
    if study_uid:
        check_study(session, user, study_uid)
    q = _series_query(session, user, filters, study_uid)
    q = q.add_columns(Instance).join(Instance, Instance.series_id == Series.id)
    if series_uid:
        q = q.where(Series.series_uid == series_uid)
    q = _apply(q, {k: v for k, v in filters.items() if k in INSTANCE_ATTRS}, INSTANCE_ATTRS, "instance",
               _instance_number_cond)
    number_key = Instance.headers["InstanceNumber"].as_integer()
    number = filters.get("InstanceNumber", "").strip()
    if number not in ("", "*"):
        q = q.where(number_key == int(number))
    q = q.order_by(Study.id, Series.series_number, Series.id, number_key, Instance.id).limit(limit).offset(offset)
    picked = [(se, st, inst, (inst.headers or {}).get("InstanceNumber")) for se, st, inst in session.execute(q).all()]
    out, memo = [], {}
    for se, st, inst, n in picked:
        pairs = {"SOPInstanceUID": inst.sop_uid, "SOPClassUID": inst.sop_class_uid, "InstanceNumber": n,
                 **_series_pairs(se, st, study_uid is None)}
        if series_uid:
            for k in ("SeriesDescription", "NumberOfSeriesRelatedInstances", "SeriesNumber", "Modality"):
                pairs.pop(k, None)
        item = _dataset(pairs)
        missing = _includes(includes, INSTANCE_DEFAULT, pairs)
        item.update(_from_metadata(request, se.series_uid, missing, sop_uid=inst.sop_uid, memo=memo))
        out.append(dict(sorted(item.items())))
    return _reply(out)


@router.get("/instances", summary="QIDO-RS: search for instances")
def search_all_instances(request: Request, reader: ReaderDep):
    return _search_instances(request, reader, None, None)


@router.get("/studies/{study_uid}/instances", summary="QIDO-RS: search for the instances of a study")
def search_study_instances(study_uid: str, request: Request, reader: ReaderDep):
    return _search_instances(request, reader, study_uid, None)


@router.get("/studies/{study_uid}/series/{series_uid}/instances", summary="QIDO-RS: search for the instances of a series")
def search_series_instances(study_uid: str, series_uid: str, request: Request, reader: ReaderDep):
    return _search_instances(request, reader, study_uid, series_uid)
