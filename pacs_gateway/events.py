"""The internal event bus.

Events are rows in the ``events`` table, written in the same transaction as the
state change they announce (an outbox), so they survive a crash. A dispatcher
thread hands each undelivered event to the in-process subscribers in order and
then marks it dispatched. Subscribers that must act atomically with the state
change (routing writes its delivery ledger that way) register a transactional
hook instead, which runs inside the writing transaction.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypedDict

from sqlalchemy import Connection, insert, select, update
from sqlalchemy.orm import sessionmaker

from pacs_gateway.index.models import Event
from telerad.clock import utcnow

log = logging.getLogger(__name__)

SERIES_COMPLETE = "series.complete"
SERIES_UPDATED = "series.updated"
INSTANCE_NEW_VERSION = "instance.new_version"



class EventRecord(TypedDict):
    """What a subscriber receives: one row of the ``events`` table. ``payload``: for the series events
    ``kind`` (the series kind from ``classify``) and ``instance_count``; for ``instance.new_version``
    ``sop_instance_uid``, ``version`` and ``previous_path``."""

    id: int
    type: str
    study_uid: str | None
    series_uid: str | None
    payload: dict[str, Any]
    created_at: datetime


Subscriber = Callable[[EventRecord], None]
TxnHook = Callable[[Connection, dict], None]


class EventBus:
    def __init__(self, sessions: sessionmaker, poll_s: float = 1.0):
        self._sessions = sessions
        self.poll_s = poll_s  # a process that does not receive learns of events only by looking
        self._subscribers: dict[str, list[Subscriber]] = {}
        self._hooks: dict[str, list[TxnHook]] = {}
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # registration -------------------------------------------------------
    def subscribe(self, event_type: str, fn: Subscriber) -> None:
        """Call ``fn(event_dict)`` after commit, once per event, in order."""
        self._subscribers.setdefault(event_type, []).append(fn)

    def add_transaction_hook(self, event_type: str, fn: TxnHook) -> None:
        """Call ``fn(connection, event_dict)`` inside the transaction that emits the event."""
        self._hooks.setdefault(event_type, []).append(fn)

    # emitting (inside a transaction) -------------------------------------
    def emit(self, conn: Connection, event_type: str, *, study_uid=None, series_uid=None, payload=None) -> None:
        row = {
            "type": event_type,
            "study_uid": study_uid,
            "series_uid": series_uid,
            "payload": payload or {},
            "created_at": utcnow(),
        }
        result = conn.execute(insert(Event).values(**row))
        row["id"] = result.inserted_primary_key[0]
        for hook in self._hooks.get(event_type, ()):
            hook(conn, row)

    def notify(self) -> None:
        self._wake.set()

    # dispatching ----------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="event-dispatcher", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread:
            self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(timeout=self.poll_s)
            self._wake.clear()
            try:
                self.dispatch_pending()
            except Exception:  # keep the bus alive; the event stays pending and is retried
                log.exception("event dispatch failed; will retry")
                self._stop.wait(1.0)

    def dispatch_pending(self, limit: int = 500) -> int:
        """Hand each undispatched event to the subscribers once, in order; returns how many.

        With several processes on one PostgreSQL index, each event is taken under a row lock
        (``FOR UPDATE SKIP LOCKED``) and marked dispatched in the same transaction: one process
        dispatches it, and if that process dies first, the lock goes with it and another one does.
        (SQLite serves one process: the event is read, dispatched, then marked, as before, because
        a read snapshot held across the subscribers' own writes could not be upgraded to a write.)
        """
        with self._sessions() as s:
            shared = s.get_bind().dialect.name == "postgresql"
            rows = s.execute(
                select(Event).where(Event.dispatched_at.is_(None)).order_by(Event.id).limit(limit)
            ).scalars().all()
        n = 0
        for ev in rows:
            if not shared:
                self._call(ev)
                with self._sessions.begin() as s:
                    s.execute(update(Event).where(Event.id == ev.id).values(dispatched_at=utcnow()))
                n += 1
                continue
            with self._sessions.begin() as s:
                locked = s.execute(
                    select(Event).where(Event.id == ev.id, Event.dispatched_at.is_(None))
                    .with_for_update(skip_locked=True)
                ).scalar_one_or_none()
                if locked is None:  # another process has it, or had it
                    continue
                self._call(locked)
                s.execute(update(Event).where(Event.id == ev.id).values(dispatched_at=utcnow()))
            n += 1
        return n

    def _call(self, ev: Event) -> None:
        data: EventRecord = {
            "id": ev.id,
            "type": ev.type,
            "study_uid": ev.study_uid,
            "series_uid": ev.series_uid,
            "payload": ev.payload,
            "created_at": ev.created_at,
        }
        for fn in self._subscribers.get(ev.type, ()):
            try:
                fn(data)
            except Exception:
                log.exception("subscriber %s failed on event %s (%s)", getattr(fn, "__name__", fn), ev.id, ev.type)
