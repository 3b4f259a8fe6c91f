"""The index writer: one thread that turns durable temp files into indexed instances.

Association threads parse a few header elements, write the received bytes to a
temp file and fsync it (in parallel), then hand the result here and wait. This
thread takes everything pending as one batch (group commit): it decides each
instance's fate (new, identical duplicate, new version), renames the files into
place, fsyncs each touched directory once, and commits one transaction. Only
then are the waiting handlers released to answer success.

The same thread runs the completeness check, so every series state change is
written by one writer, in order.
"""

from __future__ import annotations

import enum
import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from sqlalchemy import Engine, bindparam, func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import SQLAlchemyError

from pacs_gateway import events as ev
from pacs_gateway.dicom_bytes import Header
from pacs_gateway.errors import IndexError_, StoreError
from pacs_gateway.index.models import Instance, InstanceVersion, Series, Study
from pacs_gateway.store import ObjectStore, discard
from telerad.clock import as_utc
from telerad.logctx import escape, phi

log = logging.getLogger(__name__)

# Header elements kept on the study row (never logged unless log_phi is set).
STUDY_KEYWORDS = ("PatientID", "PatientName", "AccessionNumber", "StudyDate", "StudyDescription")
SERIES_KEYWORDS = ("SeriesDescription", "SeriesNumber")


class Outcome(enum.Enum):
    STORED = "stored"
    DUPLICATE = "duplicate"
    NEW_VERSION = "new_version"


_I, _S, _T = Instance.__table__, Series.__table__, Study.__table__

# The hot statements, built once: building a statement per image (``insert(Instance).values(...)``)
# cost about 1.5 ms of CPU in SQLAlchemy's coercion and cache-key code, ten times the SQL itself.
_SELECT_EXISTING = select(_I.c.sop_uid, _I.c.path, _I.c.size, _I.c.crc32, _I.c.version).where(
    _I.c.sop_uid.in_(bindparam("sops", expanding=True))
)
_INSERT_INSTANCE = _I.insert()
_UPDATE_SERIES = (
    update(_S)
    .where(_S.c.id == bindparam("b_id"))
    .values(instance_count=_S.c.instance_count + bindparam("b_n"), last_received_at=bindparam("b_seen"), state="receiving")
)
_UPDATE_STUDY = update(_T).where(_T.c.id == bindparam("b_id")).values(last_received_at=bindparam("b_seen"))


@dataclass
class Incoming:
    header: Header
    transfer_syntax: str
    calling_ae: str
    clinic_id: int | None
    tmp: Path
    size: int
    crc32: int
    received_at: datetime
    future: Future = field(default_factory=Future)


class IndexWriter:
    def __init__(
        self,
        engine: Engine,
        store: ObjectStore,
        bus: ev.EventBus,
        *,
        quiet_period_s: float,
        classify_study: Callable[[dict[str, list[dict]]], dict[str, str]],
        is_busy: Callable[[str], bool] = lambda uid: False,
        released_at: Callable[[str], float | None] = lambda uid: None,
        tick_s: float = 0.25,
    ):
        self.engine, self.store, self.bus = engine, store, bus
        self.quiet_period_s = quiet_period_s
        self.classify_study = classify_study
        self.is_busy, self.released_at = is_busy, released_at
        self.tick_s = tick_s
        self._q: queue.Queue[Incoming | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._studies: dict[str, int] = {}
        self._series: dict[str, int] = {}
        self._stopping = False

    # lifecycle -------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="index-writer", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping = True
        self._q.put(None)
        if self._thread:
            self._thread.join(timeout=30)

    def submit(self, item: Incoming) -> Future:
        if self._stopping:
            item.future.set_exception(IndexError_("the gateway is shutting down"))
        else:
            self._q.put(item)
        return item.future

    # the loop --------------------------------------------------------------
    def _run(self) -> None:
        next_tick = time.monotonic()
        while True:
            try:
                first = self._q.get(timeout=self.tick_s)
            except queue.Empty:
                first = False
            if first is None:
                self._drain_and_fail()
                return
            batch = [first] if first else []
            while len(batch) < 256:
                try:
                    item = self._q.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    self._q.put(None)
                    break
                batch.append(item)
            if batch:
                self._process(batch)
            if time.monotonic() >= next_tick:
                next_tick = time.monotonic() + self.tick_s
                try:
                    self.complete_quiet_series()
                except Exception:
                    log.exception("completeness check failed; will retry")

    def _drain_and_fail(self) -> None:
        while True:
            try:
                item = self._q.get_nowait()
            except queue.Empty:
                return
            if item is not None:
                discard(item.tmp)
                item.future.set_exception(IndexError_("the gateway is shutting down"))

    def _process(self, batch: list[Incoming]) -> None:
        outcomes: list[Outcome] = []
        renamed: list[Path] = []
        try:
            with self.engine.begin() as conn:
                outcomes = self._index_batch(conn, batch, renamed)
        except (SQLAlchemyError, StoreError, OSError) as exc:
            self._studies.clear()
            self._series.clear()
            msg = f"index write failed: {type(exc).__name__}: {getattr(exc, 'orig', exc)}"
            log.error(msg)
            for item in batch:
                discard(item.tmp)
                if not item.future.done():
                    item.future.set_exception(IndexError_(msg))
            return
        if Outcome.NEW_VERSION in outcomes:  # the only event a batch can emit
            self.bus.notify()
        for item, outcome in zip(batch, outcomes):
            item.future.set_result(outcome)

    def _index_batch(self, conn, batch: list[Incoming], renamed: list[Path]) -> list[Outcome]:
        sops = list({i.header.sop_uid for i in batch})
        existing = {r.sop_uid: r for r in conn.execute(_SELECT_EXISTING, {"sops": sops})}
        new_rows: list[dict] = []
        dirs: set[str] = set()
        series_counts: dict[int, int] = {}
        series_seen: dict[int, datetime] = {}
        study_seen: dict[int, datetime] = {}
        outcomes: list[Outcome] = []
        for item in batch:
            h = item.header
            ex = existing.get(h.sop_uid)
            if ex is not None and ex.size == item.size and ex.crc32 == item.crc32 and self._same_bytes(item.tmp, ex.path):
                discard(item.tmp)
                outcomes.append(Outcome.DUPLICATE)
                continue
            study_id = self._study_id(conn, item)
            series_id = self._series_id(conn, item, study_id)
            if ex is None:
                version, outcome = 1, Outcome.STORED
            else:
                latest = conn.execute(
                    select(func.max(InstanceVersion.version)).where(InstanceVersion.sop_uid == h.sop_uid)
                ).scalar()
                version, outcome = max(ex.version, latest or 0) + 1, Outcome.NEW_VERSION
            # the store says where the object went (a remote store makes each key unique)
            relpath = self.store.place(item.tmp, ObjectStore.relpath_for(h.study_uid, h.series_uid, h.sop_uid, version), dirs)
            renamed.append(self.store.path(relpath))
            row = dict(
                series_id=series_id,
                clinic_id=item.clinic_id,
                calling_ae=item.calling_ae,
                sop_class_uid=h.sop_class_uid,
                transfer_syntax=item.transfer_syntax,
                path=relpath,
                size=item.size,
                crc32=item.crc32,
                version=version,
                headers={k: v for k, v in h.values.items() if k not in STUDY_KEYWORDS},
                received_at=item.received_at,
            )
            if outcome is Outcome.STORED:
                new_rows.append({"sop_uid": h.sop_uid, **row})
                series_counts[series_id] = series_counts.get(series_id, 0) + 1
            else:
                if new_rows:  # the earlier version may be in this very batch
                    conn.execute(_INSERT_INSTANCE, new_rows)
                    new_rows.clear()
                old = conn.execute(select(Instance).where(Instance.sop_uid == h.sop_uid)).mappings().one()
                conn.execute(
                    insert(InstanceVersion).values(
                        sop_uid=h.sop_uid,
                        version=old["version"],
                        path=old["path"],
                        size=old["size"],
                        crc32=old["crc32"],
                        calling_ae=old["calling_ae"],
                        received_at=old["received_at"],
                        superseded_at=item.received_at,
                    )
                )
                conn.execute(update(Instance).where(Instance.sop_uid == h.sop_uid).values(**row))
                self.bus.emit(
                    conn,
                    ev.INSTANCE_NEW_VERSION,
                    study_uid=h.study_uid,
                    series_uid=h.series_uid,
                    payload={"sop_instance_uid": h.sop_uid, "version": version, "previous_path": old["path"]},
                )
                log.warning("instance received again with different bytes; kept both, serving version %d", version)
            existing[h.sop_uid] = _Row(h.sop_uid, relpath, item.size, item.crc32, version)
            series_seen[series_id] = max(item.received_at, series_seen.get(series_id, item.received_at))
            study_seen[study_id] = max(item.received_at, study_seen.get(study_id, item.received_at))
            outcomes.append(outcome)
        if new_rows:
            conn.execute(_INSERT_INSTANCE, new_rows)
        if series_seen:
            conn.execute(
                _UPDATE_SERIES,
                [{"b_id": sid, "b_n": series_counts.get(sid, 0), "b_seen": seen} for sid, seen in series_seen.items()],
            )
        if study_seen:
            conn.execute(_UPDATE_STUDY, [{"b_id": sid, "b_seen": seen} for sid, seen in study_seen.items()])
        # the renamed files' data, their directories, then, on leaving the ``with``, the index: Success is
        # answered only after all three are durable. Syncing the data after the rename lets one journal
        # commit carry both on ext4.
        self.store.sync_files(renamed)
        self.store.sync_dirs(dirs)
        return outcomes

    def _same_bytes(self, tmp: Path, relpath: str) -> bool:
        return self.store.same_bytes(tmp, relpath)

    def _study_id(self, conn, item: Incoming) -> int:
        uid = item.header.study_uid
        if uid in self._studies:
            return self._studies[uid]
        sid = conn.execute(select(Study.id).where(Study.study_uid == uid)).scalar()
        if sid is None:
            v = item.header.values
            sid = _insert_once(
                conn, Study, Study.study_uid,
                dict(
                    study_uid=uid,
                    clinic_id=item.clinic_id,
                    calling_ae=item.calling_ae,
                    patient_id=_s(v.get("PatientID"), 64),
                    patient_name=_s(v.get("PatientName"), 324),
                    accession_number=_s(v.get("AccessionNumber"), 16),
                    study_date=_s(v.get("StudyDate"), 8),
                    study_description=_s(v.get("StudyDescription"), 64),
                    first_received_at=item.received_at,
                    last_received_at=item.received_at,
                ),
            )
            log.info("new study %s from '%s': patient %s / %s, accession %s", uid, escape(item.calling_ae),
                     phi(v.get("PatientID", "")), phi(v.get("PatientName", "")), phi(v.get("AccessionNumber", "")))
        self._studies[uid] = sid
        return sid

    def _series_id(self, conn, item: Incoming, study_id: int) -> int:
        uid = item.header.series_uid
        if uid in self._series:
            return self._series[uid]
        sid = conn.execute(select(Series.id).where(Series.series_uid == uid)).scalar()
        if sid is None:
            v = item.header.values
            number = v.get("SeriesNumber")
            sid = _insert_once(
                conn, Series, Series.series_uid,
                dict(
                    series_uid=uid,
                    study_id=study_id,
                    modality=_s(item.header.modality, 16),
                    series_description=_s(v.get("SeriesDescription"), 64),
                    series_number=int(number) if isinstance(number, (int, float)) else None,
                    state="receiving",
                    completed_once=False,
                    instance_count=0,
                    last_received_at=item.received_at,
                ),
            )
        self._series[uid] = sid
        return sid

    # completeness ------------------------------------------------------------
    def complete_quiet_series(self, now: datetime | None = None) -> list[str]:
        """Mark quiet series complete and emit their events; returns their UIDs."""
        now = now or datetime.now(timezone.utc)
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(Series.id, Series.series_uid, Series.study_id, Series.last_received_at, Series.completed_once).where(
                    Series.state == "receiving"
                )
            ).all()
        done = []
        for row in rows:
            if self.is_busy(row.series_uid):
                continue
            ref = as_utc(row.last_received_at).timestamp()
            released = self.released_at(row.series_uid)
            if released is not None:
                ref = max(ref, released)
            if now.timestamp() - ref < self.quiet_period_s:
                continue
            if self._complete(row, now):  # False: another process completed it, or more instances came
                done.append(row.series_uid)
        if done:
            self.bus.notify()
        return done

    def _complete(self, row, now: datetime) -> bool:
        with self.engine.begin() as conn:
            study_uid = conn.execute(select(Study.study_uid).where(Study.id == row.study_id)).scalar_one()
            headers: dict[str, list[dict]] = {}
            for series_uid, h in conn.execute(
                select(Series.series_uid, Instance.headers)
                .join(Instance, Instance.series_id == Series.id)
                .where(Series.study_id == row.study_id)
            ):
                headers.setdefault(series_uid, []).append(h or {})
            kinds = self.classify_study(headers)
            kind = kinds.get(row.series_uid, "other")
            result = conn.execute(
                update(Series)
                .where(Series.id == row.id, Series.state == "receiving", Series.last_received_at == row.last_received_at)
                .values(state="complete", kind=kind, completed_at=now, completed_once=True)
            )
            if result.rowcount != 1:
                return False  # more instances arrived meanwhile (the next tick decides), or another process won
            count = conn.execute(select(Series.instance_count).where(Series.id == row.id)).scalar_one()
            etype = ev.SERIES_UPDATED if row.completed_once else ev.SERIES_COMPLETE
            self.bus.emit(
                conn,
                etype,
                study_uid=study_uid,
                series_uid=row.series_uid,
                payload={"kind": kind, "instance_count": count},
            )
        log.info("series %s %s: kind=%s, %d instance(s)", row.series_uid, etype.split(".")[1], kind, count)
        return True


def _insert_once(conn, model, key_column, values: dict) -> int:
    """Insert the study or series row, or take the one another gateway inserted at the same moment.

    With several gateways on one PostgreSQL index, two of them can receive the first instances of
    one study together; a plain INSERT would then fail the second batch with a unique violation.
    ``ON CONFLICT DO NOTHING`` waits for the other transaction and, if it committed, inserts
    nothing, so the row is read back instead. SQLite has one writer, so a plain INSERT suffices.
    """
    if conn.dialect.name != "postgresql":
        return conn.execute(insert(model).values(**values)).inserted_primary_key[0]
    stmt = pg_insert(model).values(**values).on_conflict_do_nothing(index_elements=[key_column.name])
    row_id = conn.execute(stmt.returning(model.id)).scalar()
    if row_id is None:
        row_id = conn.execute(select(model.id).where(key_column == values[key_column.name])).scalar_one()
    return row_id


@dataclass(frozen=True)
class _Row:
    sop_uid: str
    path: str
    size: int
    crc32: int
    version: int


def _s(value, limit: int) -> str | None:
    if value is None:
        return None
    text = str(value)
    return text[:limit]
