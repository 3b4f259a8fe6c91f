"""Series activity shared between gateway processes on one database (the scaled-out mode).

A series is complete when no association is delivering to it and the quiet period has passed since
its last instance and the association's release. One process knows that only about its own
associations (:class:`pacs_gateway.scp.handlers.Activity`); with several gateways, a series may
arrive over two of them, and any process may run the completeness check. So each receiving process
publishes, about every ``PUBLISH_S``, one ``series_activity`` row per series it holds:

- an open association: ``hold_until = now + HOLD_S`` (refreshed while it stays open; the row of a
  process that died lapses within ``HOLD_S``);
- a released one: ``hold_until = release time + quiet period``.

:meth:`SharedActivity.is_busy` is true for a series held by this process or by a live row of any
other. The completion itself is still one conditional ``UPDATE ... WHERE state = 'receiving'``, so
two processes that decide at the same moment complete a series once (the second updates no row).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone

from sqlalchemy import Engine, delete, insert, select

from pacs_gateway.index.models import SeriesActivity

log = logging.getLogger(__name__)

PUBLISH_S = 0.5
HOLD_S = 3.0  # a live process refreshes well within this; a dead one's rows lapse after it
LOOK_S = 0.2  # how stale the view of other processes' rows may be


def owner_id() -> str:
    return f"{socket.gethostname()[:48]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class SharedActivity:
    def __init__(self, engine: Engine, local, quiet_period_s: float, owner: str | None = None):
        self.engine, self.local, self.quiet_period_s = engine, local, quiet_period_s
        self.owner = owner or owner_id()
        self._held: set[str] = set()
        self._held_at = 0.0
        self._published: dict[str, datetime] | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        # one publish at a time: two overlapping delete-then-insert transactions of the same owner
        # would insert the same (owner, series_uid) twice
        self._publish_lock = threading.Lock()

    # the writer's questions ------------------------------------------------------------
    def is_busy(self, series_uid: str) -> bool:
        if self.local.is_busy(series_uid):
            return True
        if time.monotonic() - self._held_at > LOOK_S:
            try:
                self._held = self.held_elsewhere()
            except Exception as exc:  # the index is briefly unreachable: keep the last view
                log.warning("cannot read other gateways' series activity: %s", exc)
            self._held_at = time.monotonic()
        return series_uid in self._held

    def released_at(self, series_uid: str) -> float | None:
        return self.local.released_at(series_uid)

    def held_elsewhere(self, now: datetime | None = None) -> set[str]:
        now = now or datetime.now(timezone.utc)
        with self.engine.connect() as conn:
            return set(conn.execute(select(SeriesActivity.series_uid).where(
                SeriesActivity.hold_until > now, SeriesActivity.owner != self.owner)).scalars())

    # publishing ------------------------------------------------------------------------
    def rows(self, now: datetime | None = None) -> dict[str, datetime]:
        """``{series_uid: hold_until}`` this process holds now."""
        now = now or datetime.now(timezone.utc)
        busy, released = _snapshot(self.local)
        out = {uid: now + timedelta(seconds=HOLD_S) for uid in busy}
        for uid, t in released.items():
            until = datetime.fromtimestamp(t + self.quiet_period_s, timezone.utc)
            if uid not in out and until > now:
                out[uid] = until
        return out

    def publish(self, now: datetime | None = None) -> int:
        with self._publish_lock:
            return self._publish(now)

    def _publish(self, now: datetime | None) -> int:
        now = now or datetime.now(timezone.utc)
        rows = self.rows(now)
        refresh = any(u - now < timedelta(seconds=HOLD_S / 2) for u in rows.values())
        if rows == self._published and not refresh:
            return len(rows)
        with self.engine.begin() as conn:
            conn.execute(delete(SeriesActivity).where(SeriesActivity.owner == self.owner))
            # rows of processes that died long ago
            conn.execute(delete(SeriesActivity).where(SeriesActivity.hold_until < now - timedelta(minutes=10)))
            if rows:
                conn.execute(insert(SeriesActivity), [
                    {"owner": self.owner, "series_uid": uid, "hold_until": until} for uid, until in rows.items()])
        self._published = rows
        return len(rows)

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="series-activity", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=5)
        try:
            with self.engine.begin() as conn:
                # stopped: its associations are closed (the series' last instance still starts its quiet period)
                conn.execute(delete(SeriesActivity).where(SeriesActivity.owner == self.owner))
        except Exception:  # noqa: BLE001 - rows lapse by themselves
            pass

    def _run(self) -> None:
        while not self._stop.wait(PUBLISH_S):
            try:
                self.publish()
            except Exception as exc:  # retried next period; rows lapse only after HOLD_S
                log.warning("cannot publish series activity: %s", exc)


def _snapshot(activity) -> tuple[set[str], dict[str, float]]:
    """``(series with an open association, {series: release time})`` of an in-process ``Activity``."""
    snap = getattr(activity, "snapshot", None)
    if snap is not None:
        return snap()
    with activity._lock:  # the SCP's Activity keeps both under its lock
        return set(activity._open), dict(activity._released)
