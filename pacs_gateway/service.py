"""The running gateway: store, index, event bus, writer and SCP, wired together."""

from __future__ import annotations

import logging

from pacs_gateway.classify import HEADER_KEYWORDS, classify_study
from pacs_gateway.clinics import ClinicRegistry
from pacs_gateway.dicom_bytes import HeaderReader
from pacs_gateway.events import EventBus
from pacs_gateway.index.db import open_index
from pacs_gateway.ingest import SERIES_KEYWORDS, STUDY_KEYWORDS, IndexWriter
from pacs_gateway.routing.router import Router
from pacs_gateway.scp.ae import start_server
from pacs_gateway.scp.handlers import Activity
from pacs_gateway.store import ObjectStore
from telerad.settings import Settings

log = logging.getLogger(__name__)


class Gateway:
    """Everything the handlers need, handed to them explicitly as ``ctx``."""

    def __init__(self, settings: Settings):
        self.settings = settings
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        self.store = ObjectStore(settings.store_dir)
        self.store.clean_tmp()
        self.engine, self.sessions = open_index(settings.database_url)
        self.bus = EventBus(self.sessions)
        self.clinics = ClinicRegistry(self.sessions)
        self.clinics.sync_config(settings.clinics)
        self.activity = Activity()
        self.header_keywords = tuple(dict.fromkeys((*HEADER_KEYWORDS, *STUDY_KEYWORDS, *SERIES_KEYWORDS)))
        self.header_reader = HeaderReader(self.header_keywords)
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
