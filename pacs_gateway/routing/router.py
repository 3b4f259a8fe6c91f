"""The router: wires rules, destinations, the ledger and the Huey lanes into the gateway.

- A transactional hook on ``series.complete`` / ``series.updated`` writes the
  ledger rows inside the transaction that marks the series complete, so nothing
  routable can be forgotten; a subscriber on the same events dispatches them as
  soon as that transaction has committed.
- :meth:`Router.route_instances` is the same path for objects telerad creates
  itself (triage results, reports).
- :meth:`Router.sweep` (the periodic Huey task) re-queues expired leases and
  dispatches whatever is due and not covered by a queued task.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from datetime import datetime, timezone

from sqlalchemy import Connection, Engine

from pacs_gateway import events as ev
from pacs_gateway.config import GatewaySettings
from pacs_gateway.routing import ledger
from pacs_gateway.routing.clinic_return import return_to_clinic
from pacs_gateway.routing.deliver import DeliveryWorker
from pacs_gateway.routing.destinations import DestinationRegistry
from pacs_gateway.routing.queue import DeliveryQueue
from pacs_gateway.routing.rules import unknown_destinations
from pacs_gateway.routing.sender import SenderOptions
from pacs_gateway.store import ObjectStore
from telerad.errors import ConfigError

log = logging.getLogger(__name__)


class Router:
    def __init__(self, settings: GatewaySettings, engine: Engine, sessions, store: ObjectStore, bus: ev.EventBus | None = None):
        self.settings, self.engine, self.store = settings, engine, store
        self.routing = settings.routing
        self.registry = DestinationRegistry(sessions)
        self.registry.sync_config(settings.destinations)
        self.check_rules()
        self.stop_event = threading.Event()
        self.options = SenderOptions(
            calling_ae=settings.dicom.ae_title,
            connect_timeout_s=self.routing.connect_timeout_s,
            dimse_timeout_s=self.routing.dimse_timeout_s,
            max_pdu=settings.dicom.max_pdu,
            scratch_dir=store.tmp,
            stop=self.stop_event,
            implementation=self.routing.sender,
        )
        self.worker = DeliveryWorker(engine, self.registry, self.routing, self.options, store.root, self._schedule_retry,
                                     fetch=store.fetch if getattr(store, "kind", "local") != "local" else None)
        self.queue = DeliveryQueue(settings, self._deliver_task, self.sweep)
        # a task lost between dequeue and lease is dispatched again after this long
        self.redispatch_after_s = max(60.0, 4 * self.routing.lease_s)
        if bus is not None:
            for etype in (ev.SERIES_COMPLETE, ev.SERIES_UPDATED):
                bus.add_transaction_hook(etype, self._on_series_event)
                bus.subscribe(etype, self._after_series_event)

    def check_rules(self) -> None:
        """Every destination a rule names must exist (in the config or added with the CLI)."""
        known = [d.name for d in self.registry.list()]
        bad = unknown_destinations(self.routing, known)
        if bad:
            field, name = bad[0]
            have = ", ".join(known) or "none"
            raise ConfigError(f"setting '{field}': no destination named '{name}' (destinations: {have})")

    # lifecycle -------------------------------------------------------------------
    def start(self) -> None:
        self.stop_event.clear()
        self.queue.start()

    def stop(self) -> None:
        self.stop_event.set()
        self.queue.stop()

    # routing ---------------------------------------------------------------------
    def route_instances(
        self,
        conn: Connection,
        *,
        study_uid: str,
        series_uid: str,
        sop_uids: Sequence[str] | None = None,
        kind: str | None = None,
    ) -> ledger.Routed:
        """Route instances through the rules inside ``conn``'s transaction.

        Call :meth:`dispatch_pending` after the commit for immediate delivery;
        otherwise the periodic sweep dispatches them within ``routing.sweep_interval_s``.
        """
        return ledger.route_instances(
            conn, self.routing, study_uid=study_uid, series_uid=series_uid, sop_uids=sop_uids, kind=kind
        )

    def route_results(self, study_uid: str, sop_uids_by_series: dict[str, list[str]], kind: str | None, *,
                      return_rule: str) -> int:
        """Route objects telerad created for a study: the routing rules (with ``kind``), then back to the
        sending clinic when it has a DICOM address (stroke lane, ``return_rule`` in the ledger); dispatched
        at once. Returns the ledger rows written."""
        rows = 0
        with self.engine.begin() as conn:
            for series_uid, sops in sop_uids_by_series.items():
                rows += self.route_instances(conn, study_uid=study_uid, series_uid=series_uid, sop_uids=sops,
                                             kind=kind).rows
            rows += return_to_clinic(conn, study_uid, [sop for sops in sop_uids_by_series.values() for sop in sops],
                                     rule=return_rule)
        self.dispatch_pending()
        return rows

    def _on_series_event(self, conn: Connection, event: dict) -> None:
        payload = event.get("payload") or {}
        self.route_instances(conn, study_uid=event["study_uid"], series_uid=event["series_uid"], kind=payload.get("kind"))

    def _after_series_event(self, event: dict) -> None:
        self.dispatch_pending()

    # dispatching -----------------------------------------------------------------
    def dispatch_pending(self) -> int:
        """Enqueue a task for every group with due rows that no task covers; returns how many."""
        groups = ledger.take_due_groups(self.engine, redispatch_after_s=self.redispatch_after_s)
        for series_id, destination_id, lane in sorted(groups, key=lambda g: g[2] != "stroke"):
            self.queue.enqueue(series_id, destination_id, lane)
        return len(groups)

    def sweep(self) -> None:
        """The periodic task: expired leases back to queued, then dispatch what is due."""
        try:
            n = ledger.expire_leases(self.engine)
            if n:
                log.warning("%d delivery lease(s) expired (a worker stopped mid-delivery); requeued", n)
            self.dispatch_pending()
        except Exception:  # the next sweep tries again
            log.exception("delivery sweep failed")

    def _deliver_task(self, series_id: int, destination_id: int, lane: str) -> int:
        if self.stop_event.is_set():  # dequeued while shutting down: put it back for the next run
            self.queue.enqueue(series_id, destination_id, lane)
            return 0
        return self.worker.run((series_id, destination_id, lane))

    def _schedule_retry(self, group: ledger.Group, when: datetime) -> None:
        delay = max(0.0, (when - datetime.now(timezone.utc)).total_seconds())
        ledger.mark_enqueued(self.engine, group, when)
        self.queue.enqueue(*group, delay_s=delay)
