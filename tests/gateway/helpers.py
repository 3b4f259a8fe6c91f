"""Small helpers shared by the gateway tests."""

from __future__ import annotations

from pathlib import Path

from pydicom.filereader import read_preamble
from sqlalchemy import func, select

from pacs_gateway.index.models import Event, Instance, Series


def dataset_bytes(path: Path | bytes) -> bytes:
    """Everything after the Part-10 file meta of a file (or of its bytes)."""
    import io
    import struct

    data = path if isinstance(path, bytes) else Path(path).read_bytes()
    read_preamble(io.BytesIO(data), False)
    return data[144 + struct.unpack_from("<I", data, 140)[0]:]


def instance_count(gw) -> int:
    with gw.sessions() as s:
        return s.execute(select(func.count(Instance.id))).scalar_one()


def series_row(gw, series_uid: str) -> Series | None:
    with gw.sessions() as s:
        return s.execute(select(Series).where(Series.series_uid == series_uid)).scalar_one_or_none()


def events(gw, etype: str | None = None) -> list[Event]:
    with gw.sessions() as s:
        q = select(Event).order_by(Event.id)
        if etype:
            q = q.where(Event.type == etype)
        return list(s.execute(q).scalars())


def stored_path(gw, sop_uid: str) -> Path:
    with gw.sessions() as s:
        rel = s.execute(select(Instance.path).where(Instance.sop_uid == sop_uid)).scalar_one()
    return gw.store.path(rel)
