"""One delivery task: lease a series' due rows for one destination and send them.

The body of the Huey task. It leases every due row of one (series, destination,
lane) group, keeps the lease alive from a heartbeat thread, sends the instances
over one connection (one association for a DICOM destination), records outcomes
in small batches, and on a dropped link resumes at once on a new connection as
long as the last one made progress. When the destination stays unreachable the
rows go back to ``queued`` with exponential backoff (or to ``failed`` past
``routing.max_age_s``), and the retry is scheduled.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from sqlalchemy import Engine

from pacs_gateway.routing import ledger
from pacs_gateway.routing.config import RoutingSettings
from pacs_gateway.routing.destinations import DestinationRegistry
from pacs_gateway.routing.sender import DestinationUnavailable, Outcome, SenderOptions, open_sender
from telerad.logctx import log_context

log = logging.getLogger(__name__)

FLUSH_EVERY = 200  # outcomes
FLUSH_AFTER_S = 0.5
MAX_RESUMES = 5  # new connections in one task, each after one that made progress


class LeaseKeeper:
    """Renews ``owner``'s leases every ``lease_s / 3`` seconds until closed."""

    def __init__(self, engine: Engine, owner: str, lease_s: float):
        self.engine, self.owner, self.lease_s = engine, owner, lease_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"lease-{owner[-6:]}", daemon=True)

    def __enter__(self) -> "LeaseKeeper":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.wait(self.lease_s / 3.0):
            try:
                ledger.renew(self.engine, self.owner, self.lease_s)
            except Exception as exc:  # the lease may lapse; another worker then resends (harmless)
                log.warning("could not renew delivery lease %s: %s", self.owner, exc)


def new_owner() -> str:
    return f"{socket.gethostname()[:24]}:{os.getpid()}:{uuid.uuid4().hex[:12]}"


class DeliveryWorker:
    def __init__(
        self,
        engine: Engine,
        registry: DestinationRegistry,
        routing: RoutingSettings,
        options: SenderOptions,
        store_root: Path,
        schedule_retry: Callable[[ledger.Group, datetime], None],
        fetch: Callable[[list[Path]], None] | None = None,
    ):
        self.engine, self.registry, self.routing = engine, registry, routing
        self.options, self.store_root = options, store_root
        self.schedule_retry = schedule_retry
        self.fetch = fetch  # a remote object store: download the claimed objects into its local cache

    def run(self, group: ledger.Group) -> int:
        """Deliver one group; returns how many rows were delivered."""
        owner = new_owner()
        token = log_context.set(f"dl-{owner[-8:]}")
        try:
            claimed = ledger.claim(self.engine, group, owner, self.routing.lease_s, self.store_root)
            if not claimed:
                return 0
            dest = self.registry.get(group[1])
            if dest is None:
                self.registry.invalidate()
                dest = self.registry.get(group[1])
            if dest is None:
                ledger.requeue(self.engine, owner, claimed, "the destination no longer exists", self.routing)
                return 0
            with LeaseKeeper(self.engine, owner, self.routing.lease_s):
                if self.fetch is not None:
                    try:
                        self.fetch([c.item.path for c in claimed])
                    except Exception as exc:  # the object store is unreachable: retry later, lose nothing
                        self._retry_later(group, owner, claimed, f"cannot read the stored objects: {exc}")
                        return 0
                return self._send(group, owner, dest, claimed)
        finally:
            log_context.reset(token)

    def _send(self, group, owner: str, dest, claimed: list[ledger.Claimed]) -> int:
        by_key = {c.item.key: c for c in claimed}
        remaining = list(claimed)
        delivered = 0
        resumes = 0
        transient: dict[str, list[ledger.Claimed]] = {}
        t0 = time.monotonic()
        while remaining:
            done: set[int] = set()
            buf: list[Outcome] = []
            last_flush = time.monotonic()

            def flush() -> None:
                nonlocal buf, last_flush, delivered
                final = [o for o in buf if o.delivered or o.permanent]
                for o in buf:
                    done.add(o.key)
                    if not (o.delivered or o.permanent):
                        transient.setdefault(o.message, []).append(by_key[o.key])
                    elif not o.delivered:
                        log.warning("delivery of %s to '%s' failed for good: %s", by_key[o.key].item.sop_instance_uid, dest.name, o.message)
                ledger.record(self.engine, owner, final, by_key)
                delivered += sum(o.delivered for o in final)
                buf, last_flush = [], time.monotonic()

            items = [c.item for c in remaining]
            try:
                with open_sender(dest, items, self.options) as sender:
                    for outcome in sender.send(items):
                        buf.append(outcome)
                        if len(buf) >= FLUSH_EVERY or time.monotonic() - last_flush >= FLUSH_AFTER_S:
                            flush()
                    flush()
            except DestinationUnavailable as exc:
                progressed = bool(buf) or bool(done)
                flush()
                remaining = [c for c in remaining if c.item.key not in done]
                if remaining and progressed and resumes < MAX_RESUMES and not self.options.stop.is_set():
                    resumes += 1
                    log.warning("%s; resuming %d instance(s) on a new connection", exc, len(remaining))
                    continue
                self._retry_later(group, owner, remaining, str(exc))
                remaining = []
                break
            except Exception as exc:  # a bug or an unexpected library error: retry later, never lose rows
                log.exception("delivery to '%s' failed unexpectedly", dest.name)
                flush()
                remaining = [c for c in remaining if c.item.key not in done]
                self._retry_later(group, owner, remaining, f"internal error: {type(exc).__name__}: {exc}")
                remaining = []
                break
            remaining = [c for c in remaining if c.item.key not in done]
            if remaining:  # the sender stopped early: shutting down
                ledger.requeue(self.engine, owner, remaining, "", self.routing, penalize=False)
                remaining = []
        for message, rows in transient.items():
            self._retry_later(group, owner, rows, message)
        dt = time.monotonic() - t0
        if delivered:
            log.info("delivered %d instance(s) to '%s' in %.1f s (%.0f/s)", delivered, dest.name, dt, delivered / max(dt, 1e-6))
        return delivered

    def _retry_later(self, group, owner: str, rows: list[ledger.Claimed], error: str) -> None:
        if not rows:
            return
        when = ledger.requeue(self.engine, owner, rows, error, self.routing)
        log.warning("%d instance(s) for '%s' not delivered: %s", len(rows), group, error)
        if when is not None:
            self.schedule_retry(group, when)
