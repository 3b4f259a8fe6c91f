"""``telerad worker``: routing, triage and alerts, with no DICOM port and no HTTP.

Several ``telerad worker`` and ``telerad serve --no-workers`` processes share one PostgreSQL index,
one Redis (or PostgreSQL) queue and one S3-compatible store (README, "Scaling out"). Delivery and
triage leases and the delivery ledger keep every delivery and every alert to one process; a worker
that dies has its leases expire and its work taken up by the others.
"""

from __future__ import annotations

import logging
import signal
import threading

from telerad.cliutil import ArgumentParser, add_common_args, configure_logging, run_cli
from telerad.errors import ConfigError
from telerad.settings import settings_from_args

log = logging.getLogger("telerad.worker")


def build_parser() -> ArgumentParser:
    p = ArgumentParser(prog="telerad worker",
                       description="Run routing, triage and alerts (no DICOM port, no HTTP) on the shared index, "
                                   "queue and store.")
    add_common_args(p)
    p.add_argument("--allow-local", action="store_true",
                   help="allow a SQLite index or queue (only workers on the same host as the gateway can share them)")
    return p


def check_shared(settings, allow_local: bool) -> None:
    """A worker is useful only on shared state; say which setting is missing otherwise."""
    if allow_local:
        return
    if not settings.database.url:
        raise ConfigError("setting 'database.url': telerad worker needs the shared index "
                          "(postgresql://...); use --allow-local to share a SQLite index on one host")
    if not settings.queue.url:
        raise ConfigError("setting 'queue.url': telerad worker needs the shared queue "
                          "(redis://... or postgresql://...); use --allow-local to share the SQLite queue on one host")


def main(argv: list[str] | None = None) -> int:
    def body() -> int:
        args = build_parser().parse_args(argv)
        settings = settings_from_args(args, roles=["work"])
        check_shared(settings, args.allow_local)
        configure_logging(settings.log_level)
        from telerad.app import build_gateway

        gateway = build_gateway(settings)
        gateway.start(dicom=False)
        print(f"telerad worker is running (routing, triage, alerts); index {settings.database.url and 'shared' or 'local'}, "
              f"queue '{settings.queue.name}', store {getattr(gateway.store, 'kind', 'local')}. Press Ctrl+C to stop.",
              flush=True)
        stop = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
        try:
            while not stop.wait(1.0):
                pass
        finally:
            log.info("shutting down")
            gateway.stop()
        return 0

    return run_cli("telerad worker", body)
