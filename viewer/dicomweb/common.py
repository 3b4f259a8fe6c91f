"""What the DICOMweb routers share: who may see what, instance lookup, media types, multipart bodies."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from pathlib import Path

from fastapi import Request
from sqlalchemy import select

from pacs_gateway.index.models import Clinic, Instance, Series, Study
from viewer.problems import Problem

DICOM_JSON = "application/dicom+json"
EXPLICIT_LE = "1.2.840.10008.1.2.1"
IMPLICIT_LE = "1.2.840.10008.1.2"
UNCOMPRESSED = {EXPLICIT_LE, IMPLICIT_LE, "1.2.840.10008.1.2.2"}


# ----------------------------------------------------------------------------- access
def visible_clinic_ids(session, user) -> list[int] | None:
    """The clinic ids a user may see; None means every study (every role but technician)."""
    if user is None or user.role != "technician":
        return None
    if not user.clinics:
        return []
    return list(session.execute(select(Clinic.id).where(Clinic.name.in_(sorted(user.clinics)))).scalars())


def check_study(session, user, study_uid: str) -> Study:
    """The study row, 404 when unknown, 403 when the user's clinics do not include its clinic."""
    from viewer.auth import require_clinic

    row = session.execute(select(Study, Clinic.name).outerjoin(Clinic, Clinic.id == Study.clinic_id)
                          .where(Study.study_uid == study_uid)).first()
    if row is None:
        raise Problem(404, "Study not found", f"no study with Study Instance UID '{study_uid}' is in the index")
    if user is not None:
        require_clinic(user, row[1], f"study '{study_uid}'")
    return row[0]


@dataclass(frozen=True)
class StoredInstance:
    sop_uid: str
    series_uid: str
    sop_class_uid: str
    transfer_syntax: str
    path: Path
    instance_number: int | None


def instances(session, store_root: Path, study: Study, series_uid: str | None = None,
              sop_uid: str | None = None) -> list[StoredInstance]:
    """The stored instances of a study (optionally one series / one instance), in series and instance order."""
    q = (select(Instance.sop_uid, Series.series_uid, Instance.sop_class_uid, Instance.transfer_syntax, Instance.path,
                Instance.headers, Series.series_number)
         .join(Series, Series.id == Instance.series_id).where(Series.study_id == study.id))
    if series_uid is not None:
        q = q.where(Series.series_uid == series_uid)
    if sop_uid is not None:
        q = q.where(Instance.sop_uid == sop_uid)
    out = []
    for r in session.execute(q):
        n = (r.headers or {}).get("InstanceNumber")
        try:
            n = int(n)
        except (TypeError, ValueError):
            n = None
        out.append((r.series_number or 0, r.series_uid, n if n is not None else 1 << 30, r.sop_uid,
                    StoredInstance(r.sop_uid, r.series_uid, r.sop_class_uid, r.transfer_syntax,
                                   Path(store_root) / r.path, n)))
    if not out:
        what = (f"instance '{sop_uid}'" if sop_uid else f"series '{series_uid}'") if series_uid or sop_uid else "any instance"
        raise Problem(404, "Not found", f"study '{study.study_uid}' has no {what}")
    return [o[-1] for o in sorted(out, key=lambda o: o[:4])]


def locate(session, user, root: Path, study_uid: str, series_uid: str, sop_uid: str) -> StoredInstance:
    """One instance in one query (the frame path): 404 when not in that series and study, 403 for another clinic."""
    from viewer.auth import require_clinic

    row = session.execute(
        select(Instance.sop_class_uid, Instance.transfer_syntax, Instance.path, Series.series_uid, Study.study_uid,
               Clinic.name)
        .join(Series, Series.id == Instance.series_id).join(Study, Study.id == Series.study_id)
        .outerjoin(Clinic, Clinic.id == Study.clinic_id).where(Instance.sop_uid == sop_uid)
    ).first()
    if row is None or row.study_uid != study_uid or row.series_uid != series_uid:
        check_study(session, user, study_uid)  # the study's own 404/403 first
        raise Problem(404, "Not found", f"study '{study_uid}' has no instance '{sop_uid}' in series '{series_uid}'")
    if user is not None:
        require_clinic(user, row.name, f"study '{study_uid}'")
    return StoredInstance(sop_uid, series_uid, row.sop_class_uid, row.transfer_syntax, Path(root) / row.path, None)


def readable(request: Request, found: list[StoredInstance]) -> list[StoredInstance]:
    """Make the instances' files readable under the store root first (a remote object store
    downloads them into its local cache; local files already are)."""
    fetch = getattr(getattr(request.app.state, "metadata", None), "fetch", None)
    if fetch is not None and found:
        fetch([str(i.path) for i in found])
    return found


def store_root(request: Request) -> Path:
    root = getattr(request.app.state, "store_root", None)
    if root is None:
        raise Problem(503, "Store unavailable", "this web service runs without the object store")
    return Path(root)


def dicomweb_base(request: Request) -> str:
    """Our DICOMweb root as the client reached it (for BulkDataURIs and RetrieveURLs).

    Some clients (dicomweb-client 0.61) send a Host header without the port; without a proxy
    header the port of the socket that took the request is then the one the client used.
    """
    url = request.base_url
    server = request.scope.get("server")
    proxied = any(h in request.headers for h in ("x-forwarded-host", "forwarded", "x-forwarded-proto"))
    if url.port is None and server and not proxied and server[1] not in (None, 80 if url.scheme == "http" else 443):
        url = url.replace(port=server[1])
    return str(url).rstrip("/") + "/dicomweb"


# ----------------------------------------------------------------------------- Accept
@dataclass(frozen=True)
class MediaRange:
    type: str
    params: dict

    @property
    def q(self) -> float:
        try:
            return float(self.params.get("q", 1))
        except ValueError:
            return 0.0


_PARAM = re.compile(r';\s*([A-Za-z0-9_-]+)\s*=\s*("([^"]*)"|[^;,]*)')


def parse_accept(header: str | None) -> list[MediaRange]:
    """The media ranges of an Accept header, best first (``type`` and ``transfer-syntax`` parameters kept)."""
    if not header:
        return [MediaRange("*/*", {})]
    out = []
    for part in _split_accept(header):
        mtype, _, rest = part.partition(";")
        params = {}
        for m in _PARAM.finditer(";" + rest):
            params[m.group(1).lower()] = (m.group(3) if m.group(3) is not None else m.group(2)).strip()
        out.append(MediaRange(mtype.strip().lower(), params))
    return sorted(out, key=lambda m: -m.q)


def _split_accept(header: str) -> list[str]:
    parts, buf, quoted = [], [], False
    for ch in header:
        if ch == '"':
            quoted = not quoted
        if ch == "," and not quoted:
            parts.append("".join(buf))
            buf = []
        else:
            buf.append(ch)
    parts.append("".join(buf))
    return [p.strip() for p in parts if p.strip()]


def not_acceptable(what: str, accept: str | None, offered: str) -> Problem:
    return Problem(406, "Not acceptable", f"{what} cannot be returned as '{accept}'; this server offers {offered}")


# ----------------------------------------------------------------------------- multipart
class Multipart:
    """A ``multipart/related`` body built part by part (``content_type`` has the boundary)."""

    def __init__(self, part_type: str):
        self.boundary = uuid.uuid4().hex
        self.content_type = f'multipart/related; type="{part_type}"; boundary={self.boundary}'

    def part(self, data: bytes, content_type: str, location: str | None = None) -> bytes:
        head = f"--{self.boundary}\r\nContent-Type: {content_type}\r\n"
        if location:
            head += f"Content-Location: {location}\r\n"
        return head.encode() + b"\r\n" + bytes(data) + b"\r\n"

    def end(self) -> bytes:
        return f"--{self.boundary}--\r\n".encode()


def split_multipart(body: bytes, content_type: str) -> list[tuple[dict, bytes]]:
    """``[(headers, data)]`` of a ``multipart/related`` body; a Problem naming what is wrong otherwise."""
    m = re.search(r'boundary\s*=\s*("([^"]+)"|[^;\s]+)', content_type or "", re.I)
    if not m:
        raise Problem(400, "Invalid upload", "the Content-Type has no multipart boundary parameter")
    boundary = (m.group(2) or m.group(1)).encode()
    delim = b"--" + boundary
    chunks = body.split(delim)
    if len(chunks) < 3:
        raise Problem(400, "Invalid upload", "the body has no multipart part delimited by the Content-Type's boundary")
    parts = []
    for i, chunk in enumerate(chunks[1:], 1):
        if chunk.startswith(b"--"):
            break
        if chunk.startswith(b"\r\n"):
            chunk = chunk[2:]
        head, sep, data = chunk.partition(b"\r\n\r\n")
        if not sep:
            raise Problem(400, "Invalid upload", f"part {i} has no header/body separator (a blank line)")
        if data.endswith(b"\r\n"):
            data = data[:-2]
        headers = {}
        for line in head.split(b"\r\n"):
            name, _, value = line.decode("latin-1").partition(":")
            if name.strip():
                headers[name.strip().lower()] = value.strip()
        parts.append((headers, data))
    else:
        raise Problem(400, "Invalid upload", "the multipart body has no closing delimiter (it was cut short?)")
    return parts


# ----------------------------------------------------------------------------- audit
AUDIT_EVERY_S = 600.0
_audited: dict[tuple[str, str, str], float] = {}


def audit(request: Request, user, action: str, study_uid: str, detail: str) -> None:
    """Write ``action`` on ``study_uid`` to the audit log, at most once per user, action and study
    every :data:`AUDIT_EVERY_S` (a viewer fetches a study's metadata and frames in many requests)."""
    import time

    from viewer.auth import audit as audit_log

    key = (user.name, action, study_uid)
    now = time.monotonic()
    if now - _audited.get(key, -AUDIT_EVERY_S) < AUDIT_EVERY_S:
        return
    _audited[key] = now
    if len(_audited) > 10000:
        for k, t in list(_audited.items()):
            if now - t >= AUDIT_EVERY_S:
                del _audited[k]
    client = request.client.host if request.client else None
    audit_log.record(request.app.state.sessions, user, action, study_uid, detail, client)
