"""The running gateway: store, index, event bus, writer and SCP, wired together."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Protocol

from pacs_gateway.classify import HEADER_KEYWORDS, classify_study
from pacs_gateway.clinics import ClinicRegistry
from pacs_gateway.config import GatewaySettings
from pacs_gateway.dicom_bytes import HeaderReader
from pacs_gateway.events import EventBus
from pacs_gateway.index.db import open_index
from pacs_gateway.intake import IngestResult, index_created_file, ingest_file, read_part10_header
from pacs_gateway.ingest import SERIES_KEYWORDS, STUDY_KEYWORDS, IndexWriter, Outcome
from pacs_gateway.routing.queue import make_huey
from pacs_gateway.routing.router import Router
from pacs_gateway.scp.ae import start_server
from pacs_gateway.scp.handlers import Activity
from pacs_gateway.objectstore import open_store
from pacs_gateway.presence import SharedActivity
from telerad.logctx import set_log_phi

log = logging.getLogger(__name__)


def _private_dir(path: Path) -> None:
    """The data and store folders are 0750: the service's user and group (e.g. backup), nobody else."""
    try:
        if path.stat().st_mode & 0o007:
            os.chmod(path, path.stat().st_mode & 0o770 & ~0o020)
    except OSError as exc:
        log.warning("cannot restrict the permissions of %s: %s", path, exc.strerror or exc)


@contextmanager
def startup_lock(engine):
    """On PostgreSQL, a session advisory lock held while a process syncs clinics, destinations and the
    roster from its config, so gateways and workers starting at once do not insert the same rows."""
    if engine.dialect.name != "postgresql":
        yield
        return
    with engine.connect() as conn:
        conn.exec_driver_sql("SELECT pg_advisory_lock(7412002)")
        try:
            yield
        finally:
            conn.exec_driver_sql("SELECT pg_advisory_unlock(7412002)")
            conn.commit()


class Extension(Protocol):
    """Work that runs inside a gateway's ``work`` role (e.g. stroke triage and alerts): built by the
    composition root's factory once the gateway is wired, started after routing, stopped first."""

    def start(self) -> None: ...

    def stop(self) -> None: ...


ExtensionFactory = Callable[["Gateway"], Extension]


class Gateway:
    """Everything the handlers need, handed to them explicitly as ``ctx``.

    ``extensions`` maps a name to a factory called with the wired gateway; each extension is then
    reachable as ``gateway.<name>`` (``telerad.app.build_gateway`` adds ``stroke``). The gateway itself
    imports nothing above it.
    """

    def __init__(self, settings: GatewaySettings, *, extensions: Mapping[str, ExtensionFactory] | None = None):
        self.settings = settings
        self._extension_factories = dict(extensions or {})
        self.extensions: dict[str, Extension] = {}
        set_log_phi(settings.log_phi)
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        _private_dir(settings.data_dir)
        self.roles = frozenset(getattr(settings, "roles", None) or ("receive", "api", "work"))
        self.store = open_store(settings)  # local files, or S3 with a local cache
        _private_dir(self.store.root)
        self.store.clean_tmp()
        self.engine, self.sessions = open_index(settings.database_url)
        # a process that does not receive hears of new events only by looking, so it looks often
        self.bus = EventBus(self.sessions, poll_s=1.0 if "receive" in self.roles else 0.2)
        with startup_lock(self.engine):  # processes starting together write the config's rows one at a time
            self._wire(settings)

    def _wire(self, settings: GatewaySettings) -> None:
        self.clinics = ClinicRegistry(self.sessions)
        self.clinics.sync_config(settings.clinics)
        self.activity = Activity()
        # several processes on one PostgreSQL index: series held by any gateway's association count as busy
        self.shared_activity = (SharedActivity(self.engine, self.activity, settings.dicom.quiet_period_s)
                                if self.engine.dialect.name == "postgresql" else None)
        busy = self.shared_activity or self.activity
        self.header_keywords = tuple(dict.fromkeys((*HEADER_KEYWORDS, *STUDY_KEYWORDS, *SERIES_KEYWORDS)))
        self.header_reader = HeaderReader(self.header_keywords, max_inflated=settings.dicom.max_dataset_bytes,
                                          spool_dir=self.store.tmp)
        self.writer = IndexWriter(
            self.engine,
            self.store,
            self.bus,
            quiet_period_s=settings.dicom.quiet_period_s,
            classify_study=classify_study,
            is_busy=busy.is_busy,
            released_at=busy.released_at,
        )
        # routing: ledger rows are written by a hook inside the transaction that completes a series
        self.router = Router(settings, self.engine, self.sessions, self.store, self.bus)
        # what the composition root adds (stroke triage in the loop: triage jobs, results back, alerts)
        for name, build in self._extension_factories.items():
            if hasattr(self, name):
                raise ValueError(f"extension name '{name}' clashes with a Gateway attribute")
            extension = build(self)
            self.extensions[name] = extension
            setattr(self, name, extension)
        self.server = None

    def start(self, dicom: bool = True) -> None:
        """Start what ``settings.roles`` asks for: the index writer always (it also stores the objects
        triage creates), the event dispatcher, routing, triage and alerts for ``work``, the DICOM port
        (and the series activity other processes see) for ``receive``."""
        self.writer.start()
        if "work" in self.roles:
            self.bus.start()
            self.router.start()
            for extension in self.extensions.values():
                extension.start()
        if self.shared_activity is not None and "receive" in self.roles:
            self.shared_activity.start()
        if dicom and "receive" in self.roles:
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

    def check_file(self, path: Path):
        """Read and check the header of a Part-10 file as ``ingest_file`` would, storing nothing (stable public API).

        Returns the header (``study_uid``, ``series_uid``, ``sop_uid``, ``sop_class_uid``, ...). Raises
        :class:`pacs_gateway.errors.BadDataset` with the specific reason and the DIMSE status a C-STORE
        would get (``exc.status``) when ``ingest_file`` would refuse the file as malformed. The file stays
        where it is. Lets an upload of several files (STOW-RS) refuse all of them before storing any.
        """
        return read_part10_header(self, Path(path))[2]

    def index_created_file(self, tmp: Path, *, clinic_id: int | None, timeout_s: float = 60.0) -> Outcome:
        """Index a Part-10 file telerad wrote itself (triage results) in ``store.tmp``: header read, durable
        rename, one indexed row, identical bytes again a no-op; returns the outcome once committed. The
        file is discarded when its header cannot be read (the error is raised)."""
        return index_created_file(self, tmp, clinic_id=clinic_id, timeout_s=timeout_s)

    def route_results(self, study_uid: str, sop_uids_by_series: dict[str, list[str]], kind: str | None, *,
                      return_rule: str) -> int:
        """Route stored objects telerad created: the routing rules with ``kind``, then back to the study's
        clinic when it has a DICOM address; returns the ledger rows written (see ``Router.route_results``)."""
        return self.router.route_results(study_uid, sop_uids_by_series, kind, return_rule=return_rule)

    def task_queue(self, name: str):
        """A Huey task queue ``<queue.name>-<name>`` on the configured queue backend (SQLite file, Redis or
        PostgreSQL: the one routing uses), e.g. stroke's ``triage`` queue."""
        return make_huey(self.settings, name)

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server = None
        for extension in reversed(self.extensions.values()):
            extension.stop()
        self.writer.stop()
        if self.shared_activity is not None:
            self.shared_activity.stop()
        self.bus.stop()
        self.router.stop()
        self.store.close()
        self.engine.dispose()

    def __enter__(self) -> "Gateway":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
