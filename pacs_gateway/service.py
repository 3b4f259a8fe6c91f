"""The running gateway: store, index, event bus, writer and SCP, wired together."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from pacs_gateway.classify import HEADER_KEYWORDS, classify_study
from pacs_gateway.clinics import ClinicRegistry
from pacs_gateway.dicom_bytes import HeaderReader
from pacs_gateway.events import EventBus
from pacs_gateway.index.db import open_index
from pacs_gateway.intake import IngestResult, ingest_file
from pacs_gateway.ingest import SERIES_KEYWORDS, STUDY_KEYWORDS, IndexWriter
from pacs_gateway.routing.router import Router
from pacs_gateway.scp.ae import start_server
from pacs_gateway.scp.handlers import Activity
from pacs_gateway.store import ObjectStore
from telerad.logctx import set_log_phi
from telerad.settings import Settings

log = logging.getLogger(__name__)


def _private_dir(path: Path) -> None:
    """The data and store folders are 0750: the service's user and group (e.g. backup), nobody else."""
    try:
        if path.stat().st_mode & 0o007:
            os.chmod(path, path.stat().st_mode & 0o770 & ~0o020)
    except OSError as exc:
        log.warning("cannot restrict the permissions of %s: %s", path, exc.strerror or exc)


class Gateway:
    """Everything the handlers need, handed to them explicitly as ``ctx``."""

    def __init__(self, settings: Settings):
        self.settings = settings
        set_log_phi(settings.log_phi)
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        _private_dir(settings.data_dir)
        self.store = ObjectStore(settings.store_dir)
        _private_dir(self.store.root)
        self.store.clean_tmp()
        self.engine, self.sessions = open_index(settings.database_url)
        self.bus = EventBus(self.sessions)
        self.clinics = ClinicRegistry(self.sessions)
        self.clinics.sync_config(settings.clinics)
        self.activity = Activity()
        self.header_keywords = tuple(dict.fromkeys((*HEADER_KEYWORDS, *STUDY_KEYWORDS, *SERIES_KEYWORDS)))
        self.header_reader = HeaderReader(self.header_keywords, max_inflated=settings.dicom.max_dataset_bytes,
                                          spool_dir=self.store.tmp)
        self.writer = IndexWriter(
            self.engine,
            self.store,
            self.bus,
            quiet_period_s=settings.dicom.quiet_period_s,
            classify_study=classify_study,
            is_busy=self.activity.is_busy,
            released_at=self.activity.released_at,
        )
        # routing: ledger rows are written by a hook inside the transaction that completes a series
        self.router = Router(settings, self.engine, self.sessions, self.store, self.bus)
        # stroke triage in the loop: triage jobs on ctp series, results back as DICOM, alerts
        from stroke.jobs import StrokeLoop

        self.stroke = StrokeLoop(self)
        self.server = None

    def start(self, dicom: bool = True) -> None:
        self.writer.start()
        self.bus.start()
        self.router.start()
        self.stroke.start()
        if dicom:
            self.server = start_server(self)
            log.info(
                "DICOM SCP '%s' listening on %s:%d",
                self.settings.dicom.ae_title, self.settings.dicom.bind, self.settings.dicom.port,
            )

    def ingest_file(self, path: Path, *, calling_ae: str | None = None, clinic_id: int | None = None) -> IngestResult:
        """Store one Part-10 file through the same durability path as a C-STORE (stable public API).

        ``Gateway.ingest_file(path: Path, *, calling_ae: str | None = None, clinic_id: int | None = None)
        -> IngestResult``

        The header is read from the file (no pixel decoding) and checked like a received C-STORE;
        the bytes are fsynced in the store's temp folder and indexed by the index writer, and this
        returns only after that transaction committed. ``result.status`` is the DIMSE status a
        C-STORE would get (0 = success; 0xC210-0xC213/0xA900 for malformed data with a specific
        ``result.error``; 0xA700-0xA702 for write, index or disk-full failures). ``result.outcome``
        says stored / duplicate (identical bytes, a no-op) / new_version. The file at ``path`` is
        always consumed: moved into the store, or removed when refused; nothing is half-stored.
        ``calling_ae`` defaults to our own AE title; ``clinic_id`` defaults to the clinic of
        ``calling_ae``. Safe to call from any thread (the writer must be started).
        """
        return ingest_file(self, path, calling_ae=calling_ae, clinic_id=clinic_id)

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server = None
        self.stroke.stop()
        self.writer.stop()
        self.bus.stop()
        self.router.stop()
        self.engine.dispose()

    def __enter__(self) -> "Gateway":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
