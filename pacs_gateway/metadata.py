"""DICOM JSON metadata of a series, precomputed off the C-STORE path and cached in the store.

WADO-RS metadata requests (``/dicomweb/studies/{s}/series/{se}/metadata``) must not
re-parse hundreds of files, so the JSON of each series is built once, when the series
completes or changes (``series.complete``, ``series.updated`` and
``instance.new_version`` events), by a worker thread of its own (the event dispatcher
only queues the series), and kept at ``<store>/.dicomweb/<study>/<series>/<key>.json`` (with ``<key>.first.json``, the
first instance alone, for searches).

``key`` is a fingerprint of the series' current instances in the index (count, newest
row, sum of versions), so a cached file is valid exactly while it matches the index; a
request that finds no valid file builds it on demand (:meth:`MetadataCache.get`).

Bulk data (Pixel Data and binary elements over 1 KiB) is not inlined but referenced by a
``BulkDataURI`` that starts with :data:`BASE_TOKEN`; the web layer replaces the token by
its own DICOMweb root URL when it serves the JSON.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import queue
import threading
import uuid
from pathlib import Path

from pydicom import dcmread
from pydicom.uid import UID
from sqlalchemy import func, select

from pacs_gateway import events as ev
from pacs_gateway.index.models import Instance, Series, Study
from pacs_gateway.store import fsync_dir

log = logging.getLogger(__name__)

BASE_TOKEN = "@@DICOMWEB_BASE@@"
BULK_THRESHOLD = 1024
CACHE_DIR = ".dicomweb"
PIXEL_DATA = 0x7FE00010
PARSED_KEPT = 16  # series kept parsed in memory for QIDO's includefield of instances
FIRST_KEPT = 4096  # first instances kept parsed for study and series searches


def series_key(session, series_uid: str) -> tuple[str, str] | None:
    """``(study_uid, fingerprint)`` of a series' current instances, or None if the series is unknown."""
    row = session.execute(
        select(Study.study_uid, func.count(Instance.id), func.max(Instance.id), func.sum(Instance.version))
        .select_from(Series).join(Study, Study.id == Series.study_id)
        .outerjoin(Instance, Instance.series_id == Series.id)
        .where(Series.series_uid == series_uid).group_by(Study.study_uid)
    ).first()
    if row is None:
        return None
    study_uid, count, newest, versions = row
    return study_uid, hashlib.sha1(f"{count}:{newest}:{versions}".encode()).hexdigest()[:16]


def instance_json(path: Path, study_uid: str, series_uid: str) -> dict:
    """The DICOM JSON of one stored file; Pixel Data and large binary values become BulkDataURIs."""
    ds = dcmread(path, stop_before_pixels=True)
    sop_uid = str(ds.SOPInstanceUID)
    inst = f"{BASE_TOKEN}/studies/{study_uid}/series/{series_uid}/instances/{sop_uid}"

    def bulk(elem) -> str:
        return f"{inst}/bulkdata/{elem.tag:08X}"

    out = ds.to_json_dict(bulk_data_threshold=BULK_THRESHOLD, bulk_data_element_handler=bulk)
    has_pixels = "Rows" in ds and "Columns" in ds and ("BitsAllocated" in ds)
    if has_pixels:
        ts = UID(str(ds.file_meta.get("TransferSyntaxUID", "1.2.840.10008.1.2")))
        vr = "OB" if ts.is_compressed or int(ds.BitsAllocated) <= 8 else "OW"
        out["7FE00010"] = {"vr": vr, "BulkDataURI": f"{inst}/bulkdata/7FE00010"}
    # the transfer syntax of the stored file, as DICOMweb servers report it (0008,3002)
    ts_uid = str(ds.file_meta.get("TransferSyntaxUID", ""))
    if ts_uid:
        out["00083002"] = {"vr": "UI", "Value": [ts_uid]}
    return out


def build_series(store_root: Path, session, series_uid: str, fetch=None) -> tuple[str, bytes] | None:
    """Build ``(key, json_bytes)`` for a series from its stored files (instance order), or None if unknown.

    fetch : a remote object store's ``fetch`` (downloads the files into its local cache first).
    """
    key = series_key(session, series_uid)
    if key is None:
        return None
    study_uid, fingerprint = key
    rows = session.execute(
        select(Instance.path, Instance.headers).join(Series, Series.id == Instance.series_id)
        .where(Series.series_uid == series_uid)
    ).all()

    def order(r):
        n = (r.headers or {}).get("InstanceNumber")
        try:
            return (0, int(n), r.path)
        except (TypeError, ValueError):
            return (1, 0, r.path)

    if fetch is not None:
        fetch([r.path for r in rows])
    items = []
    for r in sorted(rows, key=order):
        try:
            items.append(instance_json(Path(store_root) / r.path, study_uid, series_uid))
        except Exception as exc:  # one unreadable file must not hide the rest of the series
            log.warning("metadata: cannot read %s: %s", r.path, exc)
    return fingerprint, json.dumps(items, separators=(",", ":")).encode()


class MetadataCache:
    """Series metadata files under ``<store>/.dicomweb``, built by a background worker or on demand."""

    def __init__(self, store_root: Path, sessions):
        self.root = Path(store_root) / CACHE_DIR
        self.store_root = Path(store_root)
        self.sessions = sessions
        self._q: queue.Queue[str | None] = queue.Queue()
        self._pending: set[str] = set()
        self._lock = threading.Lock()
        self._build_locks: dict[str, threading.Lock] = {}
        self._thread: threading.Thread | None = None
        self._parsed: dict[tuple[str, str], list[dict]] = {}
        self._first: dict[tuple[str, str], dict] = {}
        self.fetch = None  # set to a remote object store's ``fetch``: files are downloaded before reading

    # the precompute worker ------------------------------------------------
    def attach(self, bus: ev.EventBus) -> "MetadataCache":
        """Subscribe to the series events and start the worker thread."""
        for etype in (ev.SERIES_COMPLETE, ev.SERIES_UPDATED, ev.INSTANCE_NEW_VERSION):
            bus.subscribe(etype, self._on_event)
        self._thread = threading.Thread(target=self._run, name="dicomweb-metadata", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._q.put(None)
        if self._thread:
            self._thread.join(timeout=30)

    def _on_event(self, event: dict) -> None:
        uid = event.get("series_uid")
        if uid:
            self.schedule(uid)

    def schedule(self, series_uid: str) -> None:
        """Queue a series for the worker (a no-op without one: then requests build on demand)."""
        if self._thread is None or not self._thread.is_alive():
            return
        with self._lock:
            if series_uid in self._pending:
                return
            self._pending.add(series_uid)
        self._q.put(series_uid)

    def _run(self) -> None:
        while True:
            uid = self._q.get()
            if uid is None:
                return
            with self._lock:
                self._pending.discard(uid)
            try:
                self.get(uid)
            except Exception:
                log.exception("metadata precompute of series %s failed; it is built on the next request", uid)

    # reading -----------------------------------------------------------------
    def _dir(self, study_uid: str, series_uid: str) -> Path:
        return self.root / study_uid / series_uid

    def items(self, series_uid: str, *, build: bool = True) -> list[dict]:
        """The series' metadata as parsed JSON (a few recent series are kept parsed in memory).

        ``build=False``: only what is already cached; a missing file is queued for the worker and
        ``[]`` returned now (a search must not parse a hundred series' files on the spot).
        """
        with self.sessions() as s:
            key = series_key(s, series_uid)
        if key is None:
            return []
        with self._lock:
            hit = self._parsed.get((series_uid, key[1]))
        if hit is not None:
            return hit
        if not build and not (self._dir(key[0], series_uid) / f"{key[1]}.json").is_file():
            self.schedule(series_uid)
            return []
        data = self.get(series_uid, key)
        items = json.loads(data) if data else []
        with self._lock:
            self._parsed[(series_uid, key[1])] = items
            while len(self._parsed) > PARSED_KEPT:
                self._parsed.pop(next(iter(self._parsed)))
        return items

    def first_item(self, series_uid: str) -> dict | None:
        """The first instance's metadata (study and series attributes for searches), if already built.

        Read from a small ``<key>.first.json`` kept next to the series' file; a series whose metadata
        is not built yet is queued for the worker and None returned (searches never build it).
        """
        with self.sessions() as s:
            key = series_key(s, series_uid)
        if key is None:
            return None
        with self._lock:
            hit = self._first.get((series_uid, key[1]))
        if hit is not None:
            return hit
        folder = self._dir(key[0], series_uid)
        try:
            item = json.loads((folder / f"{key[1]}.first.json").read_bytes())
        except FileNotFoundError:
            try:
                items = json.loads((folder / f"{key[1]}.json").read_bytes())  # written by an older version
            except FileNotFoundError:
                self.schedule(series_uid)
                return None
            item = items[0] if items else {}
            self._write_first(folder, key[1], item)
        with self._lock:
            self._first[(series_uid, key[1])] = item
            while len(self._first) > FIRST_KEPT:
                self._first.pop(next(iter(self._first)))
        return item

    def get(self, series_uid: str, key: tuple[str, str] | None = None) -> bytes | None:
        """The series' DICOM JSON (with :data:`BASE_TOKEN`), from the cache or built now; None if unknown."""
        if key is None:
            with self.sessions() as s:
                key = series_key(s, series_uid)
        if key is None:
            return None
        study_uid, fingerprint = key
        path = self._dir(study_uid, series_uid) / f"{fingerprint}.json"
        try:
            return path.read_bytes()
        except FileNotFoundError:
            pass
        with self._lock:
            lock = self._build_locks.setdefault(series_uid, threading.Lock())
        with lock:
            try:
                return path.read_bytes()
            except FileNotFoundError:
                pass
            with self.sessions() as s:
                built = build_series(self.store_root, s, series_uid, self.fetch)
            if built is None:
                return None
            fingerprint, data = built
            self._write(study_uid, series_uid, fingerprint, data)
        with self._lock:  # the file is there now: later requests read it without the lock
            self._build_locks.pop(series_uid, None)
        return data

    def _write_first(self, folder: Path, fingerprint: str, item: dict) -> None:
        tmp = folder / f".{uuid.uuid4().hex}.tmp"
        try:
            tmp.write_bytes(json.dumps(item, separators=(",", ":")).encode())
            os.replace(tmp, folder / f"{fingerprint}.first.json")
        except OSError as exc:
            log.warning("metadata cache: cannot write %s: %s", folder, exc)
            tmp.unlink(missing_ok=True)

    def _write(self, study_uid: str, series_uid: str, fingerprint: str, data: bytes) -> None:
        folder = self._dir(study_uid, series_uid)
        folder.mkdir(parents=True, exist_ok=True)
        items = json.loads(data)
        self._write_first(folder, fingerprint, items[0] if items else {})
        tmp = folder / f".{uuid.uuid4().hex}.tmp"
        try:
            with open(tmp, "wb") as f:
                f.write(data)
            os.replace(tmp, folder / f"{fingerprint}.json")
            fsync_dir(folder)
        except OSError as exc:  # a cache: serve the built bytes even when they cannot be kept
            log.warning("metadata cache: cannot write %s: %s", folder, exc)
            Path(tmp).unlink(missing_ok=True)
            return
        for old in folder.glob("*.json"):
            if not old.name.startswith(f"{fingerprint}."):
                old.unlink(missing_ok=True)
