"""Huey execution: two priority lanes plus a control queue, consumed by threads in this process.

- ``<queue.name>-stroke`` and ``<queue.name>-routine``: delivery tasks, one per
  (series, destination) group. Each lane has its own consumer whose worker count
  is the lane's association slots (``routing.stroke_associations`` /
  ``routing.routine_associations``), so routine work can never occupy a stroke
  slot, and stroke tasks also carry a higher Huey priority.
- ``<queue.name>-control``: the periodic sweep (every ``routing.sweep_interval_s``),
  which re-queues rows whose lease expired and dispatches anything due that no
  task covers. Huey never acknowledges a task, so the ledger, not the queue, is
  the truth.

Storage: :class:`huey.SqliteHuey` in ``<data_dir>/queue.sqlite3`` by default,
:class:`huey.PriorityRedisHuey` for ``redis://`` (``rediss://``, ``unix://``)
and :class:`huey.PostgresHuey` for ``postgresql://`` URLs in ``queue.url``.
Several gateway processes may share a Redis or PostgreSQL queue.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from huey import PostgresHuey, PriorityRedisHuey, SqliteHuey, crontab
from huey.api import Huey
from huey.consumer import Consumer, Scheduler

from pacs_gateway.config import GatewaySettings
from telerad.errors import ConfigError

log = logging.getLogger(__name__)

LANES = ("stroke", "routine")
PRIORITY = {"stroke": 100, "routine": 0}
IDLE_POLL_S = 0.25  # how long an idle SQLite-queue worker may sleep between looks


def make_huey(settings: GatewaySettings, queue: str) -> Huey:
    """The Huey instance for one queue (``stroke``, ``routine`` or ``control``)."""
    name = f"{settings.queue.name}-{queue}"
    url = settings.queue.url
    try:
        if url is None:
            settings.data_dir.mkdir(parents=True, exist_ok=True)
            return SqliteHuey(name, filename=str(settings.queue_path), results=False, utc=True, timeout=30)
        if url.startswith(("redis://", "rediss://", "unix://")):
            return PriorityRedisHuey(name, url=url, results=False, utc=True, blocking=True, read_timeout=1)
        dsn = url.replace("postgresql+psycopg://", "postgresql://", 1).replace("postgres://", "postgresql://", 1)
        return PostgresHuey(name, dsn=dsn, results=False, utc=True, blocking=True, read_timeout=1)
    except Exception as exc:  # bad URL, server down: name the setting
        raise ConfigError(f"setting 'queue.url': cannot open the delivery queue: {type(exc).__name__}: {exc}") from None


def _consumer(huey: Huey, workers: int, periodic_s: float | None) -> Consumer:
    class _Scheduler(Scheduler):
        periodic_task_seconds = periodic_s or 60

    class _Consumer(Consumer):
        scheduler_class = _Scheduler

        def _set_signal_handlers(self) -> None:  # the host process owns its signals
            pass

    return _Consumer(
        huey,
        workers=workers,
        periodic=periodic_s is not None,
        initial_delay=0.02,
        backoff=1.5,
        max_delay=IDLE_POLL_S,
        scheduler_interval=1,
        worker_type="thread",
        check_worker_health=False,
    )


class DeliveryQueue:
    """Owns the Huey instances, their tasks and their in-process consumers."""

    def __init__(
        self,
        settings: GatewaySettings,
        deliver: Callable[[int, int, str], object],
        sweep: Callable[[], object],
    ):
        self.settings = settings
        r = settings.routing
        self.slots = {"stroke": r.stroke_associations, "routine": r.routine_associations}
        self.hueys = {lane: make_huey(settings, lane) for lane in LANES}
        self.control = make_huey(settings, "control")
        self.tasks = {lane: self.hueys[lane].task(name="deliver")(deliver) for lane in LANES}
        self.sweep_task = self.control.periodic_task(crontab(), name="sweep")(sweep)
        self._consumers: dict[str, Consumer] = {}
        self._lock = threading.Lock()
        self._started = False

    def start(self) -> None:
        """Start the control consumer (the sweep); lane consumers start on first use."""
        with self._lock:
            if self._started:
                return
            self._started = True
            c = _consumer(self.control, 1, self.settings.routing.sweep_interval_s)
            c.start()
            self._consumers["control"] = c

    def _lane(self, lane: str) -> None:
        with self._lock:
            if not self._started or lane in self._consumers:
                return
            c = _consumer(self.hueys[lane], self.slots[lane], None)
            c.start()
            self._consumers[lane] = c
            log.info("%s delivery lane started with %d association slot(s)", lane, self.slots[lane])

    def enqueue(self, series_id: int, destination_id: int, lane: str, delay_s: float | None = None) -> None:
        self._lane(lane)
        task = self.tasks[lane]
        if delay_s and delay_s > 0:
            task.schedule(args=(series_id, destination_id, lane), delay=delay_s, priority=PRIORITY[lane])
        else:
            self.hueys[lane].enqueue(task.s(series_id, destination_id, lane, priority=PRIORITY[lane]))

    def pending(self) -> dict[str, int]:
        """Tasks waiting per queue (for diagnostics)."""
        out = {lane: h.pending_count() for lane, h in self.hueys.items()}
        out["scheduled"] = sum(h.scheduled_count() for h in self.hueys.values())
        return out

    def stop(self, timeout_s: float = 15.0) -> None:
        with self._lock:
            consumers, self._consumers = list(self._consumers.values()), {}
            self._started = False
        for c in consumers:
            c.stop_flag.set()
        for c in consumers:
            for _, t in c.worker_threads:
                t.join(timeout=timeout_s)
            c.scheduler.join(timeout=5)
        for h in (*self.hueys.values(), self.control):
            try:
                h.storage.close()
            except Exception:  # noqa: BLE001 - closing is best effort
                pass
