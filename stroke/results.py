"""Result objects into the study: the gateway's normal indexed store path, then the routing rules.

Each Part-10 file the worker wrote into the store's temp folder is handed to the
index writer exactly like a received instance (header read, durable rename, one
indexed row; identical bytes again are a no-op), so the objects are listed with
the study. They are then routed through the routing rules with the kind of the
CTP they were computed from (the stroke lane), and back to the sending clinic
when that clinic has a registered DICOM address (:func:`return_to_clinic`).
"""

from __future__ import annotations

import logging
import struct
import zlib
from datetime import datetime, timezone
from pathlib import Path

from pydicom.filereader import read_file_meta_info
from sqlalchemy import Connection, insert, select, update

from pacs_gateway.index.models import Clinic, Destination, Instance, Series, Study
from pacs_gateway.ingest import Incoming
from pacs_gateway.store import discard

log = logging.getLogger(__name__)
RETURN_RULE = "return results to the sending clinic"


def _dataset_offset(data: bytes) -> int:
    """Where the data set starts in a Part-10 file (after the preamble and the file meta group)."""
    if data[128:132] != b"DICM":
        raise ValueError("not a Part-10 file")
    return 144 + struct.unpack_from("<I", data, 140)[0]


def store_objects(gateway, files: list[dict], *, clinic_id: int | None, timeout_s: float = 60.0) -> list[dict]:
    """Index each ``{"path", ...}`` temp file through ``gateway.writer``; returns the files with their outcome."""
    out = []
    for f in files:
        tmp = Path(f["path"])
        try:
            data = tmp.read_bytes()
            ts = str(read_file_meta_info(tmp).TransferSyntaxUID)
            dataset = memoryview(data)[_dataset_offset(data):]
            header = gateway.header_reader.read(dataset, ts, lambda: data)
        except Exception:
            discard(tmp)
            raise
        item = Incoming(header=header, transfer_syntax=ts, calling_ae=gateway.settings.dicom.ae_title,
                        clinic_id=clinic_id, tmp=tmp, size=len(data), crc32=zlib.crc32(dataset),
                        received_at=datetime.now(timezone.utc))
        outcome = gateway.writer.submit(item).result(timeout=timeout_s)
        out.append({**f, "outcome": outcome.value})
    return out


def route_objects(gateway, study_uid: str, objects: list[dict], kind: str) -> int:
    """Route the stored objects (rules, then the clinic); returns the ledger rows written."""
    by_series: dict[str, list[str]] = {}
    for o in objects:
        by_series.setdefault(o["series_uid"], []).append(o["sop_uid"])
    rows = 0
    with gateway.engine.begin() as conn:
        for series_uid, sops in by_series.items():
            routed = gateway.router.route_instances(conn, study_uid=study_uid, series_uid=series_uid,
                                                    sop_uids=sops, kind=kind)
            rows += routed.rows
        rows += return_to_clinic(conn, study_uid, [o["sop_uid"] for o in objects])
    gateway.router.dispatch_pending()
    return rows


def _clinic_destination(conn: Connection, clinic) -> int:
    """The ``clinic:<name>`` destination (kind dicom, the clinic's address and AE title), created or updated."""
    from pacs_gateway.routing.config import DestinationConfig

    name = f"clinic:{clinic.name}"[:64]
    cfg = DestinationConfig(name=name, kind="dicom", host=clinic.host, port=clinic.port,
                            ae_title=clinic.ae_title).model_dump(mode="json")
    row = conn.execute(select(Destination.id, Destination.config).where(Destination.name == name)).one_or_none()
    if row is None:
        return conn.execute(insert(Destination).values(name=name, kind="dicom", is_default=False, config=cfg,
                                                       source="clinic", created_at=datetime.now(timezone.utc))
                            ).inserted_primary_key[0]
    if row.config != cfg:
        conn.execute(update(Destination).where(Destination.id == row.id).values(config=cfg))
    return row.id


def return_to_clinic(conn: Connection, study_uid: str, sop_uids: list[str]) -> int:
    """Queue ``sop_uids`` back to the study's clinic, when it has a DICOM address (stroke lane).

    The clinic is a ``clinic:<name>`` destination; the rows are written with the routing
    ledger's :func:`~pacs_gateway.routing.ledger.queue_instances`, so the delivery engine
    sends (and re-sends newer versions) like any other route.
    """
    from pacs_gateway.routing.ledger import queue_instances

    clinic = conn.execute(select(Clinic.name, Clinic.ae_title, Clinic.host, Clinic.port)
                          .join(Study, Study.clinic_id == Clinic.id).where(Study.study_uid == study_uid)).one_or_none()
    if clinic is None or not clinic.host or not clinic.port:
        return 0
    dest_id = _clinic_destination(conn, clinic)
    now = datetime.now(timezone.utc)
    insts = conn.execute(select(Instance.id, Instance.version, Instance.series_id, Series.study_id)
                         .join(Series, Series.id == Instance.series_id).where(Instance.sop_uid.in_(sop_uids))).all()
    by_series: dict[tuple[int, int], list] = {}
    for i in insts:
        by_series.setdefault((i.series_id, i.study_id), []).append(i)
    rows = sum(queue_instances(conn, group, [dest_id], series_id=series_id, study_id=study_id, lane="stroke",
                               rule=RETURN_RULE, now=now) for (series_id, study_id), group in by_series.items())
    if rows:
        log.info("study %s: %d result object(s) queued back to clinic '%s'", study_uid, rows, clinic.name)
    return rows
