"""Read side of the ledger: delivery state per destination (API, CLI) and requeueing failed rows."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timezone

from sqlalchemy import Engine, func, select, update
from sqlalchemy.orm import Session

from pacs_gateway.index.models import Delivery, Destination, Instance, Series, Study
from telerad.clock import as_utc, isoformat

STATES = ("queued", "sending", "delivered", "failed")


def _summaries(session: Session, where, key_cols: Sequence) -> dict[tuple, dict]:
    """Counts per state, bytes saved and last delivery per (key..., destination)."""
    rows = session.execute(
        select(
            *key_cols, Destination.name, Destination.kind, Delivery.state,
            func.count(Delivery.id), func.max(Delivery.delivered_at), func.coalesce(func.sum(Delivery.bytes_saved), 0),
            func.coalesce(func.sum(Delivery.bytes_sent), 0),
        )  # fmt: skip
        .join(Destination, Destination.id == Delivery.destination_id)
        .where(where)
        .group_by(*key_cols, Destination.name, Destination.kind, Delivery.state)
    ).all()
    out: dict[tuple, dict] = {}
    for r in rows:
        *keys, name, kind, state, n, last, saved, sent = r
        d = out.setdefault(
            (*keys, name),
            {"destination": name, "kind": kind, "counts": dict.fromkeys(STATES, 0), "total": 0,
             "last_delivered_at": None, "bytes_sent": 0, "bytes_saved": 0},
        )  # fmt: skip
        d["counts"][state] = d["counts"].get(state, 0) + n
        d["total"] += n
        d["bytes_saved"] += int(saved or 0)
        d["bytes_sent"] += int(sent or 0)
        if last is not None and (d["last_delivered_at"] is None or as_utc(last) > d["last_delivered_at"]):
            d["last_delivered_at"] = as_utc(last)
    return out


def _last_errors(session: Session, where, key_cols: Sequence) -> dict[tuple, str]:
    """The most recent error message per (key..., destination) among rows not delivered."""
    rows = session.execute(
        select(*key_cols, Destination.name, Delivery.last_error, Delivery.updated_at)
        .join(Destination, Destination.id == Delivery.destination_id)
        .where(where, Delivery.last_error.is_not(None), Delivery.state != "delivered")
        .order_by(Delivery.updated_at.desc())
    ).all()
    out: dict[tuple, str] = {}
    for r in rows:
        *keys, name, err, _ = r
        out.setdefault((*keys, name), err)
    return out


def _finish(d: dict, err: str | None) -> dict:
    c = d["counts"]
    d["state"] = (
        "failed" if c["failed"] and not (c["queued"] or c["sending"])
        else "delivered" if c["delivered"] == d["total"]
        else "sending" if c["sending"] or c["delivered"]
        else "queued"
    )  # fmt: skip
    d["delivered_at"] = isoformat(d["last_delivered_at"]) if d["state"] == "delivered" else None
    d["last_delivered_at"] = isoformat(d["last_delivered_at"])
    d["last_error"] = err
    return d


def study_deliveries(session: Session, study_id: int) -> tuple[list[dict], dict[int, list[dict]]]:
    """``(per destination for the study, {series_id: per destination for that series})``."""
    where = Delivery.study_id == study_id
    study = _summaries(session, where, [])
    errs = _last_errors(session, where, [])
    per_study = [_finish(d, errs.get(k)) for k, d in sorted(study.items())]
    series = _summaries(session, where, [Delivery.series_id])
    serrs = _last_errors(session, where, [Delivery.series_id])
    per_series: dict[int, list[dict]] = {}
    for k, d in sorted(series.items()):
        per_series.setdefault(k[0], []).append(_finish(d, serrs.get(k)))
    return per_study, per_series


def list_deliveries(
    session: Session,
    *,
    state: str | None = None,
    destination: str | None = None,
    study_uid: str | None = None,
    limit: int = 200,
) -> list[dict]:
    """One entry per (series, destination), newest first, with counts per state and the last error."""
    where = Delivery.id.is_not(None)
    if state:
        ids = select(Delivery.series_id).where(Delivery.state == state)
        where = where & Delivery.series_id.in_(ids)
    if destination:
        where = where & (Destination.name == destination)
    if study_uid:
        where = where & (Study.study_uid == study_uid)
    keys = [Delivery.series_id]
    base = (
        select(Delivery.series_id, Destination.name, Study.study_uid, Series.series_uid, Series.kind, Delivery.lane,
               func.max(Delivery.updated_at).label("updated"))
        .join(Destination, Destination.id == Delivery.destination_id)
        .join(Series, Series.id == Delivery.series_id)
        .join(Study, Study.id == Delivery.study_id)
        .where(where)
        .group_by(Delivery.series_id, Destination.name, Study.study_uid, Series.series_uid, Series.kind, Delivery.lane)
        .order_by(func.max(Delivery.updated_at).desc())
        .limit(limit)
    )  # fmt: skip
    heads = session.execute(base).all()
    if not heads:
        return []
    sids = list({h.series_id for h in heads})
    cond = Delivery.series_id.in_(sids)
    sums = _summaries(session, cond, keys)
    errs = _last_errors(session, cond, keys)
    out = []
    for h in heads:
        d = sums.get((h.series_id, h.name))
        if d is None:
            continue
        d = _finish(dict(d, counts=dict(d["counts"])), errs.get((h.series_id, h.name)))
        d.update(study_instance_uid=h.study_uid, series_instance_uid=h.series_uid, kind=h.kind, lane=h.lane,
                 updated_at=isoformat(h.updated))  # fmt: skip
        out.append(d)
    return out


def failed_rows(session: Session, *, destination: str | None = None, study_uid: str | None = None, limit: int = 50) -> list[dict]:
    q = (
        select(Instance.sop_uid, Destination.name, Delivery.attempts, Delivery.last_error, Delivery.updated_at)
        .join(Instance, Instance.id == Delivery.instance_id)
        .join(Destination, Destination.id == Delivery.destination_id)
        .join(Study, Study.id == Delivery.study_id)
        .where(Delivery.state == "failed")
        .order_by(Delivery.updated_at.desc())
        .limit(limit)
    )
    if destination:
        q = q.where(Destination.name == destination)
    if study_uid:
        q = q.where(Study.study_uid == study_uid)
    return [
        {"sop_instance_uid": r.sop_uid, "destination": r.name, "attempts": r.attempts, "error": r.last_error,
         "failed_at": isoformat(r.updated_at)}  # fmt: skip
        for r in session.execute(q)
    ]


def retry_failed(
    engine: Engine,
    *,
    destination: str | None = None,
    study_uid: str | None = None,
    series_uid: str | None = None,
) -> int:
    """Requeue ``failed`` rows (with a fresh retry window); the running gateway's sweep sends them."""
    now = datetime.now(timezone.utc)
    cond = Delivery.state == "failed"
    if destination:
        cond = cond & Delivery.destination_id.in_(select(Destination.id).where(Destination.name == destination))
    if study_uid:
        cond = cond & Delivery.study_id.in_(select(Study.id).where(Study.study_uid == study_uid))
    if series_uid:
        cond = cond & Delivery.series_id.in_(select(Series.id).where(Series.series_uid == series_uid))
    with engine.begin() as conn:
        return conn.execute(
            update(Delivery)
            .where(cond)
            .values(
                state="queued", attempts=0, last_error=None, queued_at=now, next_attempt_at=now, updated_at=now,
                enqueued_at=None, lease_owner=None, lease_until=None,
            )  # fmt: skip
        ).rowcount

