"""The ledger's state changes on SQLite and PostgreSQL: one owner per lease, expiry, backoff, max age."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import insert, select, update

from pacs_gateway.index.db import open_index
from pacs_gateway.index.models import Delivery, Destination, Instance, Series, Study
from pacs_gateway.routing import ledger
from pacs_gateway.routing.config import RoutingSettings
from pacs_gateway.routing.sender import Outcome
from telerad.clock import as_utc
from tests.gateway.test_index import db_url  # noqa: F401  (fixture: sqlite and postgresql)

NOW = datetime.now(timezone.utc)


@pytest.fixture
def index(db_url):  # noqa: F811
    engine, sessions = open_index(db_url)
    with engine.begin() as c:
        study = c.execute(insert(Study).values(study_uid="1.2.3", first_received_at=NOW, last_received_at=NOW)).inserted_primary_key[0]
        series = c.execute(
            insert(Series).values(series_uid="1.2.3.4", study_id=study, modality="CT", kind="ctp", state="complete",
                                  completed_once=True, instance_count=5, last_received_at=NOW)  # fmt: skip
        ).inserted_primary_key[0]
        for i in range(5):
            c.execute(insert(Instance).values(
                sop_uid=f"1.2.3.4.{i}", series_id=series, sop_class_uid="1.2.840.10008.5.1.4.1.1.2",
                transfer_syntax="1.2.840.10008.1.2.1", path=f"s/{i}.dcm", size=100, crc32=0, version=1,
                headers={"Modality": "CT", "BodyPartExamined": "HEAD"}, received_at=NOW,
            ))  # fmt: skip
        c.execute(insert(Destination).values(name="lead", kind="dicom", is_default=True, source="cli", created_at=NOW,
                                             config={"name": "lead", "kind": "dicom", "host": "h", "port": 104,
                                                     "ae_title": "LEAD", "default": True}))  # fmt: skip
    yield engine
    engine.dispose()


def route(engine, routing=None) -> ledger.Routed:
    with engine.begin() as c:
        return ledger.route_instances(c, routing or RoutingSettings(), study_uid="1.2.3", series_uid="1.2.3.4")


def states(engine) -> list[str]:
    with engine.connect() as c:
        return list(c.execute(select(Delivery.state).order_by(Delivery.id)).scalars())


def test_routing_writes_one_row_per_instance_and_destination_once(index, tmp_path):
    r = route(index)
    assert r.rows == 5 and r.route.priority == "stroke" and r.groups == {(1, 1, "stroke")}
    assert route(index).rows == 0  # idempotent
    with index.begin() as c:  # a new version of one instance is delivered again
        c.execute(update(Instance).where(Instance.sop_uid == "1.2.3.4.0").values(version=2))
    assert route(index).rows == 1


def test_a_lease_has_one_owner_and_expires_back_to_queued(index, tmp_path):
    route(index)
    group = (1, 1, "stroke")
    a = ledger.claim(index, group, "owner-a", 30, tmp_path)
    b = ledger.claim(index, group, "owner-b", 30, tmp_path)
    assert len(a) == 5 and b == []
    assert a[0].item.path == tmp_path / "s/0.dcm"
    # owner b cannot record outcomes for rows owner a holds
    ledger.record(index, "owner-b", [Outcome(a[0].item.key, True, False, "stored", status=0)], {c.item.key: c for c in a})
    assert states(index) == ["sending"] * 5
    ledger.record(index, "owner-a", [Outcome(a[0].item.key, True, False, "stored", status=0)], {c.item.key: c for c in a})
    assert states(index) == ["delivered"] + ["sending"] * 4
    assert ledger.expire_leases(index, now=NOW + timedelta(seconds=10)) == 0
    assert ledger.expire_leases(index, now=datetime.now(timezone.utc) + timedelta(seconds=31)) == 4
    assert states(index) == ["delivered"] + ["queued"] * 4
    assert ledger.take_due_groups(index, redispatch_after_s=60) == [group]
    assert ledger.take_due_groups(index, redispatch_after_s=60) == []  # covered by the task just enqueued


def test_transient_failures_back_off_together_then_fail_past_max_age(index, tmp_path):
    route(index)
    group = (1, 1, "stroke")
    routing = RoutingSettings(retry_initial_s=10, retry_max_delay_s=40, max_age_s=3600)
    claimed = ledger.claim(index, group, "w", 30, tmp_path)
    when = ledger.requeue(index, "w", claimed, "cannot connect", routing, rng=random.Random(0))
    with index.connect() as c:
        rows = c.execute(select(Delivery.state, Delivery.attempts, Delivery.next_attempt_at, Delivery.last_error)).all()
    assert {(r.state, r.attempts, r.last_error) for r in rows} == {("queued", 1, "cannot connect")}
    assert len({as_utc(r.next_attempt_at) for r in rows}) == 1, "the series retries as one batch"
    assert timedelta(seconds=5) <= when - datetime.now(timezone.utc) <= timedelta(seconds=10)
    assert ledger.claim(index, group, "w2", 30, tmp_path) == [], "not due before the backoff"
    # past max age: failed, with the reason
    with index.begin() as c:
        c.execute(update(Delivery).values(next_attempt_at=NOW - timedelta(hours=2), queued_at=NOW - timedelta(hours=2)))
    claimed = ledger.claim(index, group, "w3", 30, tmp_path)
    assert len(claimed) == 5
    assert ledger.requeue(index, "w3", claimed, "cannot connect", routing) is None
    with index.connect() as c:
        errors = set(c.execute(select(Delivery.last_error)).scalars())
    assert states(index) == ["failed"] * 5
    assert len(errors) == 1 and errors.pop().startswith("gave up after 2 attempt(s)")


def test_clean_shutdown_requeues_without_penalty(index, tmp_path):
    route(index)
    claimed = ledger.claim(index, (1, 1, "stroke"), "w", 30, tmp_path)
    ledger.requeue(index, "w", claimed, "", RoutingSettings(), penalize=False)
    with index.connect() as c:
        rows = c.execute(select(Delivery.state, Delivery.attempts, Delivery.last_error)).all()
    assert set(rows) == {("queued", 0, None)}
