"""Triage jobs: gateway events in, a Huey task per CTP series out, and the pre-alert.

:class:`StrokeLoop` wires roster, alerts, the worker process and the jobs into the gateway.

- A transactional hook on ``series.complete``/``series.updated`` writes (or re-queues)
  the ``triage_runs`` row of a ``ctp`` series inside the transaction that completes
  it, so a crash can never lose a job; a subscriber enqueues the Huey task after
  the commit. The run row is the truth (Huey does not acknowledge tasks): at start
  and every few seconds, runs left ``queued`` or ``running`` by a dead process are
  queued again, and a duplicate task finds the run claimed and does nothing.
- Tasks go to their own Huey queue, ``<queue.name>-triage`` (``Gateway.task_queue``, on the
  routing queue's backend), consumed by one dedicated thread whose work runs in the worker
  process (:class:`.compute.ComputePool`), so receiving and routing never wait for triage.
- ``ncct_head``/``cta_head`` series raise the ``stroke.incoming`` pre-alert (one per study).
"""

from __future__ import annotations

import logging
import os
import threading
from datetime import timedelta
from typing import TYPE_CHECKING

from huey.consumer import Consumer
from sqlalchemy import Connection, insert, or_, select, update

from pacs_gateway import events as ev
from pacs_gateway.events import EventRecord
from pacs_gateway.index.models import Clinic, Series, Study
from stroke import rules
from stroke.alerts import AlertService
from stroke.compute import ComputePool
from stroke.delivery import AlertWorker
from stroke.models import TriageRun
from stroke.roster import Roster
from stroke.runner import OWNER, TriageRunner
from telerad.clock import utcnow

if TYPE_CHECKING:
    from pacs_gateway.service import Gateway

log = logging.getLogger(__name__)
PRE_ALERT_KINDS = ("ncct_head", "cta_head")
SWEEP_S = 5.0
LATER_S = 1.0  # a job whose study is still arriving looks again after this


def algorithm_version() -> str:
    """The perfusion algorithm's version (``triage.version`` loads no numpy)."""
    from triage.version import ALGORITHM

    return ALGORITHM["version"]


class _Consumer(Consumer):
    def _set_signal_handlers(self) -> None:  # the host process owns its signals
        pass


class TriageJobs:
    def __init__(self, gateway: Gateway, runner: TriageRunner, alerts: AlertService):
        self.gw, self.runner, self.alerts = gateway, runner, alerts
        self.settings = gateway.settings
        self.version = algorithm_version()
        self.huey = gateway.task_queue("triage")
        self.task = self.huey.task(name="triage", priority=100)(self._task)
        self._consumer: Consumer | None = None
        self._stop = threading.Event()
        self._sweeper: threading.Thread | None = None
        for etype in (ev.SERIES_COMPLETE, ev.SERIES_UPDATED):
            gateway.bus.add_transaction_hook(etype, self._on_series_txn)
            gateway.bus.subscribe(etype, self._after_series)

    # events --------------------------------------------------------------------------
    def _on_series_txn(self, conn: Connection, event: dict) -> None:
        if (event.get("payload") or {}).get("kind") != "ctp" or not self.settings.triage.enabled:
            return
        now = utcnow()
        key = (TriageRun.series_uid == event["series_uid"]) & (TriageRun.algorithm_version == self.version)
        n = conn.execute(update(TriageRun).where(key).values(
            state="queued", generation=TriageRun.generation + 1, attempts=0, queued_at=now, lease_until=None,
            owner=None, finished_at=None)).rowcount
        if n == 0:
            conn.execute(insert(TriageRun).values(study_uid=event["study_uid"], series_uid=event["series_uid"],
                                                  algorithm_version=self.version, state="queued", generation=1,
                                                  attempts=0, queued_at=now))

    def _after_series(self, event: EventRecord) -> None:
        kind = (event.get("payload") or {}).get("kind")
        if kind == "ctp" and self.settings.triage.enabled:
            with self.gw.sessions() as s:
                run_id = s.execute(select(TriageRun.id).where(TriageRun.series_uid == event["series_uid"],
                                                              TriageRun.algorithm_version == self.version)).scalar()
            if run_id is not None:
                self.enqueue(run_id)
        elif kind in PRE_ALERT_KINDS:
            self.pre_alert(event["study_uid"], event["series_uid"], kind)

    def pre_alert(self, study_uid: str, series_uid: str, kind: str) -> int | None:
        if not self.settings.alerts.enabled:
            return None
        rule = rules.decide(self.settings.alerts.rules, "incoming")
        if rule is None:
            return None
        with self.gw.sessions() as s:
            clinic = s.execute(select(Clinic.name).join(Study, Study.clinic_id == Clinic.id)
                               .where(Study.study_uid == study_uid)).scalar()
            desc = s.execute(select(Series.series_description).where(Series.series_uid == series_uid)).scalar()
        label = {"ncct_head": "non-contrast head CT", "cta_head": "CT angiography of the head"}[kind]
        body = rules.build_body("stroke.incoming", study_uid=study_uid, series_uid=series_uid, clinic=clinic,
                                  result=None, public_url=self.settings.alerts.public_url, created_at=utcnow(),
                                  series_description=f"{label} ({desc})" if desc else label)
        return self.alerts.raise_alert(key=f"incoming:{study_uid}", type="stroke.incoming", rule=rule.name,
                                       study_uid=study_uid, series_uid=series_uid, clinic=clinic,
                                       message=body["message"], body=body, requires_ack=rule.escalate, tier=rule.tier)

    # queue ---------------------------------------------------------------------------
    def enqueue(self, run_id: int) -> None:
        self.huey.enqueue(self.task.s(run_id))

    def _task(self, run_id: int) -> str:
        if self._stop.is_set():
            return "stopping"  # the run stays queued; the next start picks it up
        outcome = self.runner.run(run_id)
        if outcome == "retry":
            self.enqueue(run_id)
        elif outcome == "later":
            self.task.schedule(args=(run_id,), delay=LATER_S)
        return outcome

    def start(self) -> None:
        self._stop.clear()
        self._consumer = _Consumer(self.huey, workers=1, periodic=False, initial_delay=0.02, backoff=1.5,
                                   max_delay=0.25, scheduler_interval=1, worker_type="thread",
                                   check_worker_health=False)
        self._consumer.start()
        self.sweep(startup=True)
        self._sweeper = threading.Thread(target=self._sweep_loop, name="triage-sweep", daemon=True)
        self._sweeper.start()

    def stop(self) -> None:
        self._stop.set()
        c, self._consumer = self._consumer, None
        if c is not None:
            c.stop_flag.set()
            for _, t in c.worker_threads:
                t.join(timeout=15)
            c.scheduler.join(timeout=5)
        if self._sweeper:
            self._sweeper.join(timeout=10)
        try:
            self.huey.storage.close()
        except Exception:  # noqa: BLE001 - best effort
            pass

    def _sweep_loop(self) -> None:
        while not self._stop.wait(SWEEP_S):
            try:
                self.sweep()
            except Exception:
                log.exception("triage sweep failed")

    def sweep(self, startup: bool = False) -> int:
        """Queue again the runs a dead process left: expired leases, and (at start) this host's dead runs."""
        now = utcnow()
        host = OWNER.split(":", 1)[0]
        with self.gw.sessions.begin() as s:
            stale = or_(TriageRun.lease_until < now, TriageRun.owner.like(f"{host}:%") & (TriageRun.owner != OWNER))
            running = s.execute(select(TriageRun.id, TriageRun.owner).where(TriageRun.state == "running", stale)).all()
            dead = [r.id for r in running if r.owner is None or not _alive(r.owner, host)]
            if dead:
                s.execute(update(TriageRun).where(TriageRun.id.in_(dead), TriageRun.state == "running")
                          .values(state="queued", owner=None, lease_until=None))
                log.warning("%d triage run(s) interrupted by a crash or restart; queued again", len(dead))
            q = select(TriageRun.id).where(TriageRun.state == "queued")
            if not startup:  # a task lost from the queue: only when nothing is waiting there
                idle = self.huey.pending_count() == 0
                q = q.where(or_(TriageRun.id.in_(dead), TriageRun.queued_at < now - timedelta(seconds=30) if idle
                                else TriageRun.id.in_(dead)))
            queued = list(s.execute(q).scalars())
        for run_id in queued:
            self.enqueue(run_id)
        return len(queued)


def _alive(owner: str, host: str) -> bool:
    """Whether the process named in ``owner`` ("host:pid:boot") still runs on this host."""
    if owner == OWNER:
        return True
    parts = owner.split(":")
    if len(parts) < 2 or parts[0] != host:
        return True  # another machine's run: only its lease can expire it
    try:
        os.kill(int(parts[1]), 0)
    except (ValueError, ProcessLookupError):
        return False
    except PermissionError:
        return True
    return False if int(parts[1]) == os.getpid() else True


# ----------------------------------------------------------------------------- wiring

class StrokeLoop:
    def __init__(self, gateway: Gateway):
        s = gateway.settings
        self.roster = Roster(gateway.sessions)
        self.roster.sync_config(s.oncall)
        self.alerts = AlertService(s.alerts, gateway.sessions, self.roster, on_new=lambda: self.worker.notify())
        self.worker = AlertWorker(s.alerts, gateway.sessions, self.alerts, gateway.store.root)
        if getattr(gateway.store, "kind", "local") != "local":
            self.worker.fetch = gateway.store.fetch
        self.pool = ComputePool()
        self.runner = TriageRunner(gateway, self.alerts, self.pool)
        self.jobs = TriageJobs(gateway, self.runner, self.alerts)

    def start(self) -> None:
        if self.jobs.settings.triage.enabled:
            self.pool.warm()
        self.worker.start()
        self.jobs.start()

    def stop(self) -> None:
        self.jobs.stop()
        self.worker.stop()
        self.pool.stop()
