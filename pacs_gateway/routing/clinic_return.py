"""Objects telerad created, queued back to the clinic that sent the study (when it has a DICOM address).

The clinic is a ``clinic:<name>`` destination (kind dicom, the clinic's address and AE title), created
or updated here; the rows are written with the routing ledger's :func:`~pacs_gateway.routing.ledger.queue_instances`,
so the delivery engine sends (and re-sends newer versions) like any other route.
"""

from __future__ import annotations

import logging

from sqlalchemy import Connection, insert, select, update

from pacs_gateway.index.models import Clinic, Destination, Instance, Series, Study
from pacs_gateway.routing.config import DestinationConfig
from pacs_gateway.routing.ledger import queue_instances
from telerad.clock import utcnow

log = logging.getLogger(__name__)


def _clinic_destination(conn: Connection, clinic) -> int:
    """The ``clinic:<name>`` destination (kind dicom, the clinic's address and AE title), created or updated."""
    name = f"clinic:{clinic.name}"[:64]
    cfg = DestinationConfig(name=name, kind="dicom", host=clinic.host, port=clinic.port,
                            ae_title=clinic.ae_title).model_dump(mode="json")
    row = conn.execute(select(Destination.id, Destination.config).where(Destination.name == name)).one_or_none()
    if row is None:
        return conn.execute(insert(Destination).values(name=name, kind="dicom", is_default=False, config=cfg,
                                                       source="clinic", created_at=utcnow())
                            ).inserted_primary_key[0]
    if row.config != cfg:
        conn.execute(update(Destination).where(Destination.id == row.id).values(config=cfg))
    return row.id


def return_to_clinic(conn: Connection, study_uid: str, sop_uids: list[str], *, rule: str, lane: str = "stroke") -> int:
    """Queue ``sop_uids`` back to the study's clinic, when it has a DICOM address; returns the rows written."""
    clinic = conn.execute(select(Clinic.name, Clinic.ae_title, Clinic.host, Clinic.port)
                          .join(Study, Study.clinic_id == Clinic.id).where(Study.study_uid == study_uid)).one_or_none()
    if clinic is None or not clinic.host or not clinic.port:
        return 0
    dest_id = _clinic_destination(conn, clinic)
    now = utcnow()
    insts = conn.execute(select(Instance.id, Instance.version, Instance.series_id, Series.study_id)
                         .join(Series, Series.id == Instance.series_id).where(Instance.sop_uid.in_(sop_uids))).all()
    by_series: dict[tuple[int, int], list] = {}
    for i in insts:
        by_series.setdefault((i.series_id, i.study_id), []).append(i)
    rows = sum(queue_instances(conn, group, [dest_id], series_id=series_id, study_id=study_id, lane=lane,
                               rule=rule, now=now) for (series_id, study_id), group in by_series.items())
    if rows:
        log.info("study %s: %d result object(s) queued back to clinic '%s'", study_uid, rows, clinic.name)
    return rows
