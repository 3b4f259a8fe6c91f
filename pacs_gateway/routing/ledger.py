"""The delivery ledger: writing rows when a series is routed, and every state change after.

States: ``queued`` → ``sending`` (leased to one worker) → ``delivered`` | ``failed``;
a transient failure puts a row back to ``queued`` with ``next_attempt_at`` later.
Every change is conditional on the state (and, while sending, on the lease owner),
so duplicate tasks, expired leases and a second gateway process are all harmless:
the worst case is sending an instance twice, which a PACS treats as a no-op.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import Connection, Engine, and_, bindparam, insert, or_, select, update

from pacs_gateway.errors import GatewayError
from pacs_gateway.index.models import Clinic, Delivery, Instance, Series, Study
from pacs_gateway.routing.config import RoutingSettings
from pacs_gateway.routing.destinations import load_all
from pacs_gateway.routing.retry import next_attempt, too_old
from pacs_gateway.routing.rules import Route, SeriesFacts, decide
from pacs_gateway.routing.sender import Outcome, Outgoing
from telerad.clock import as_utc, utcnow

log = logging.getLogger(__name__)
CHUNK = 500


class RoutingError(GatewayError, ValueError):
    exit_code = 2


Group = tuple[int, int, str]  # (series_id, destination_id, lane)


@dataclass
class Routed:
    """What :func:`route_instances` wrote: the route and the (series, destination, lane) groups."""

    route: Route | None
    rows: int = 0
    groups: set[Group] = field(default_factory=set)


# ----------------------------------------------------------------------------- routing
def route_instances(
    conn: Connection,
    routing: RoutingSettings,
    *,
    study_uid: str,
    series_uid: str,
    sop_uids: Sequence[str] | None = None,
    kind: str | None = None,
    now: datetime | None = None,
) -> Routed:
    """Route instances of one series through the rules, inside the caller's transaction.

    Writes one ``queued`` ledger row per (instance, destination) that has none, and
    requeues rows whose instance has a newer version than the one delivered.
    ``sop_uids=None`` means every instance of the series; ``kind`` overrides the
    series' kind (objects telerad made itself, such as triage results, pass theirs).
    The rows are picked up by the next dispatch (``Router.dispatch_pending`` or the
    periodic sweep).
    """
    now = now or utcnow()
    srow = conn.execute(
        select(Series.id, Series.study_id, Series.kind, Series.modality).where(Series.series_uid == series_uid)
    ).one_or_none()
    if srow is None:
        raise RoutingError(f"series {series_uid} is not in the index")
    st = conn.execute(
        select(Study.id, Study.study_uid, Study.calling_ae, Study.study_description, Clinic.name)
        .outerjoin(Clinic, Clinic.id == Study.clinic_id)
        .where(Study.id == srow.study_id)
    ).one()
    if st.study_uid != study_uid:
        raise RoutingError(f"series {series_uid} belongs to study {st.study_uid}, not {study_uid}")
    q = select(Instance.id, Instance.version, Instance.sop_uid).where(Instance.series_id == srow.id).order_by(Instance.id)
    instances = [r for r in conn.execute(q) if sop_uids is None or r.sop_uid in set(sop_uids)]
    if not instances:
        return Routed(None)
    first = conn.execute(select(Instance.headers, Instance.calling_ae).where(Instance.id == instances[0].id)).one()
    headers = dict(first.headers or {})
    headers.setdefault("Modality", srow.modality)
    facts = SeriesFacts.from_headers(
        headers,
        kind=kind or srow.kind,
        clinic=st.name,
        calling_ae=first.calling_ae or st.calling_ae,
        study_description=st.study_description,
    )
    dests = load_all(conn)
    route = decide(routing, facts, default_destinations=[d.name for d in dests if d.is_default], now=now)
    by_name = {d.name: d for d in dests}
    targets = []
    for name in route.destinations:
        if name in by_name:
            targets.append(by_name[name])
        else:
            log.warning("rule '%s' names destination '%s', which does not exist; skipped", route.rule, name)
    result = Routed(route)
    if not targets:
        log.info("series %s: no destination (rule %s)", series_uid, route.rule or "defaults")
        return result
    result.rows = queue_instances(
        conn, instances, [d.id for d in targets], series_id=srow.id, study_id=st.id, lane=route.priority,
        rule=route.rule, now=now, groups=result.groups,
    )  # fmt: skip
    log.info(
        "series %s: %d ledger row(s) to %s, priority %s (rule %s)",
        series_uid, result.rows, ", ".join(d.name for d in targets), route.priority, route.rule or "defaults",
    )  # fmt: skip
    return result


def queue_instances(
    conn: Connection,
    instances: Sequence,
    destination_ids: Sequence[int],
    *,
    series_id: int,
    study_id: int,
    lane: str,
    rule: str | None,
    now: datetime,
    groups: set[Group] | None = None,
) -> int:
    """Queue (instance x destination) ledger rows inside the caller's transaction; returns how many.

    instances : rows with ``id`` and ``version`` of one series. A pair that has a row already is
    left alone, unless the instance has a newer version than the row, which is then requeued.
    ``groups`` (when given) receives the (series, destination, lane) groups that got work.
    """
    ids = [r.id for r in instances]
    existing: dict[tuple[int, int], tuple[int, int]] = {}
    for chunk in _chunks(ids):
        for r in conn.execute(
            select(Delivery.id, Delivery.instance_id, Delivery.destination_id, Delivery.version).where(
                Delivery.instance_id.in_(chunk), Delivery.destination_id.in_(list(destination_ids))
            )
        ):
            existing[(r.instance_id, r.destination_id)] = (r.id, r.version)
    new_rows, stale = [], []
    for inst in instances:
        for dest_id in destination_ids:
            have = existing.get((inst.id, dest_id))
            if have is None:
                new_rows.append(
                    dict(
                        instance_id=inst.id, destination_id=dest_id, series_id=series_id, study_id=study_id,
                        lane=lane, rule=rule, state="queued", version=inst.version, attempts=0,
                        created_at=now, queued_at=now, updated_at=now, next_attempt_at=now,
                    )
                )  # fmt: skip
            elif have[1] != inst.version:
                stale.append({"b_id": have[0], "b_version": inst.version})
            else:
                continue
            if groups is not None:
                groups.add((series_id, dest_id, lane))
    for chunk in _chunks(new_rows):
        conn.execute(insert(Delivery), chunk)
    if stale:
        conn.execute(
            update(Delivery)
            .where(Delivery.id == bindparam("b_id"))
            .values(
                version=bindparam("b_version"), state="queued", attempts=0, last_error=None, lane=lane,
                queued_at=now, updated_at=now, next_attempt_at=now, enqueued_at=None, lease_owner=None,
                lease_until=None, delivered_at=None,
            ),  # fmt: skip
            stale,
        )
    return len(new_rows) + len(stale)


def _chunks(seq: Sequence, n: int = CHUNK) -> Iterable[Sequence]:
    for i in range(0, len(seq), n):
        yield seq[i : i + n]


# ----------------------------------------------------------------------------- claiming
@dataclass(frozen=True)
class Claimed:
    item: Outgoing
    attempts: int
    queued_at: datetime
    version: int


def claim(engine: Engine, group: Group, owner: str, lease_s: float, store_root: Path, now: datetime | None = None) -> list[Claimed]:
    """Lease every due ``queued`` row of one (series, destination, lane) to ``owner``."""
    now = now or utcnow()
    series_id, destination_id, lane = group
    where = and_(Delivery.series_id == series_id, Delivery.destination_id == destination_id, Delivery.lane == lane)
    with engine.begin() as conn:
        conn.execute(
            update(Delivery)
            .where(where, Delivery.state == "queued", Delivery.next_attempt_at <= now)
            .values(state="sending", lease_owner=owner, lease_until=now + timedelta(seconds=lease_s), updated_at=now)
        )
        rows = conn.execute(
            select(
                Delivery.id, Delivery.attempts, Delivery.queued_at, Instance.path, Instance.sop_uid,
                Instance.sop_class_uid, Instance.transfer_syntax, Instance.size, Instance.version,
            )  # fmt: skip
            .join(Instance, Instance.id == Delivery.instance_id)
            .where(where, Delivery.state == "sending", Delivery.lease_owner == owner)
            .order_by(Instance.id)
        ).all()
    return [
        Claimed(
            Outgoing(r.id, store_root / r.path, r.sop_class_uid, r.sop_uid, r.transfer_syntax, int(r.size)),
            int(r.attempts), as_utc(r.queued_at), int(r.version),
        )  # fmt: skip
        for r in rows
    ]


def renew(engine: Engine, owner: str, lease_s: float) -> int:
    now = utcnow()
    with engine.begin() as conn:
        return conn.execute(
            update(Delivery)
            .where(Delivery.lease_owner == owner, Delivery.state == "sending")
            .values(lease_until=now + timedelta(seconds=lease_s))
        ).rowcount


# ----------------------------------------------------------------------------- outcomes
def record(engine: Engine, owner: str, outcomes: Sequence[Outcome], claimed: dict[int, Claimed]) -> None:
    """Write final outcomes (delivered, or failed for good) of rows ``owner`` holds."""
    if not outcomes:
        return
    now = utcnow()
    params = []
    for o in outcomes:
        c = claimed[o.key]
        params.append(
            {
                "b_id": o.key,
                "b_state": "delivered" if o.delivered else "failed",
                "b_attempts": c.attempts + 1,
                "b_error": None if (o.delivered and o.status == 0) else o.message,
                "b_delivered_at": o.at if o.delivered else None,
                "b_syntax": o.wire_syntax,
                "b_sent": o.bytes_sent if o.delivered else None,
                "b_saved": o.bytes_saved if o.delivered else None,
                "b_version": c.version,
            }
        )
    stmt = (
        update(Delivery)
        .where(Delivery.id == bindparam("b_id"), Delivery.lease_owner == owner, Delivery.state == "sending")
        .values(
            state=bindparam("b_state"), attempts=bindparam("b_attempts"), last_error=bindparam("b_error"),
            delivered_at=bindparam("b_delivered_at"), wire_syntax=bindparam("b_syntax"), bytes_sent=bindparam("b_sent"),
            bytes_saved=bindparam("b_saved"), version=bindparam("b_version"), updated_at=now, lease_owner=None,
            lease_until=None,
        )  # fmt: skip
    )
    with engine.begin() as conn:
        conn.execute(stmt, params)


def requeue(
    engine: Engine,
    owner: str,
    rows: Sequence[Claimed],
    error: str,
    routing: RoutingSettings,
    *,
    penalize: bool = True,
    rng: random.Random | None = None,
) -> datetime | None:
    """Give leased rows back: retry later with backoff, or fail those past ``max_age_s``.

    ``penalize=False`` (a clean shutdown) requeues at once without counting an attempt.
    Returns the earliest ``next_attempt_at`` of the rows still queued.
    """
    if not rows:
        return None
    now = utcnow()
    # one retry time for the whole batch, so the series stays together on one association
    worst = max(c.attempts for c in rows) + 1
    retry_at = next_attempt(now, worst, routing.retry_initial_s, routing.retry_max_delay_s, rng) if penalize else now
    params, earliest = [], None
    for c in rows:
        attempts = c.attempts + 1 if penalize else c.attempts
        if penalize and too_old(c.queued_at, now, routing.max_age_s):
            state, when = "failed", now
            msg = f"gave up after {attempts} attempt(s) over {(now - c.queued_at).total_seconds():.0f} s: {error}"
        else:
            state, when = "queued", retry_at
            msg = error if penalize else None
            earliest = when
        params.append({"b_id": c.item.key, "b_state": state, "b_attempts": attempts, "b_error": msg, "b_next": when})
    stmt = (
        update(Delivery)
        .where(Delivery.id == bindparam("b_id"), Delivery.lease_owner == owner, Delivery.state == "sending")
        .values(
            state=bindparam("b_state"), attempts=bindparam("b_attempts"), last_error=bindparam("b_error"),
            next_attempt_at=bindparam("b_next"), updated_at=now, enqueued_at=None, lease_owner=None, lease_until=None,
        )  # fmt: skip
    )
    with engine.begin() as conn:
        conn.execute(stmt, params)
    return earliest


# ----------------------------------------------------------------------------- sweeping
def expire_leases(engine: Engine, now: datetime | None = None) -> int:
    """Rows whose worker vanished (crash, lost task) go back to ``queued`` for the next dispatch."""
    now = now or utcnow()
    with engine.begin() as conn:
        return conn.execute(
            update(Delivery)
            .where(Delivery.state == "sending", Delivery.lease_until < now)
            .values(state="queued", lease_owner=None, lease_until=None, enqueued_at=None, updated_at=now)
        ).rowcount


def take_due_groups(engine: Engine, *, redispatch_after_s: float, now: datetime | None = None) -> list[Group]:
    """Groups with due ``queued`` rows that no queued task covers; marks them as enqueued."""
    now = now or utcnow()
    stale = now - timedelta(seconds=redispatch_after_s)
    due = and_(
        Delivery.state == "queued",
        Delivery.next_attempt_at <= now,
        or_(Delivery.enqueued_at.is_(None), Delivery.enqueued_at < stale),
    )
    with engine.begin() as conn:
        groups = [
            (r.series_id, r.destination_id, r.lane)
            for r in conn.execute(select(Delivery.series_id, Delivery.destination_id, Delivery.lane).where(due).distinct())
        ]
        for series_id, destination_id, lane in groups:
            conn.execute(
                update(Delivery)
                .where(due, Delivery.series_id == series_id, Delivery.destination_id == destination_id, Delivery.lane == lane)
                .values(enqueued_at=now)
            )
    return groups


def mark_enqueued(engine: Engine, group: Group, at: datetime) -> None:
    series_id, destination_id, lane = group
    with engine.begin() as conn:
        conn.execute(
            update(Delivery)
            .where(
                Delivery.series_id == series_id, Delivery.destination_id == destination_id, Delivery.lane == lane,
                Delivery.state == "queued",
            )  # fmt: skip
            .values(enqueued_at=at)
        )
