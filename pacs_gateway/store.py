"""The local object store: ``<root>/<study>/<series>/<sop>.dcm``, written atomically.

A received file is written to ``<root>/.tmp`` and renamed into place by the
index writer, which then fsyncs the file's data and its directory (grouped
across concurrent writers, see ``ingest.IndexWriter``) before the index commit
and the success status.
"""

from __future__ import annotations

import filecmp
import logging
import os
import shutil
import socket
import threading
import uuid
import zlib
from dataclasses import dataclass
from pathlib import Path

from pacs_gateway.errors import StoreError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StoredFile:
    relpath: str
    size: int
    crc32: int

    @property
    def directory(self) -> str:
        return os.path.dirname(self.relpath)


def discard(path: Path | str | None) -> None:
    """Remove a temp file if it exists; a failure here must not hide the original one."""
    if path is None:
        return
    try:
        os.unlink(path)
    except OSError:
        pass


def fsync_dir(path: Path | str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fdatasync(path: Path | str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fdatasync(fd)
    finally:
        os.close(fd)


_pool = None
_pool_lock = threading.Lock()


def _sync_pool():
    global _pool
    with _pool_lock:
        if _pool is None:
            from concurrent.futures import ThreadPoolExecutor

            _pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="fsync")
        return _pool


def process_tag() -> str:
    """``<host>-<pid>``: names this process's spool folder, so processes sharing a store never touch
    each other's temp files."""
    host = "".join(c if c.isalnum() or c in "-_." else "_" for c in socket.gethostname()[:48]) or "host"
    return f"{host}-{os.getpid()}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True
    return True


class ObjectStore:
    """The local-files object store (the default; see :mod:`pacs_gateway.objectstore`)."""

    kind = "local"

    def __init__(self, root: Path):
        self.root = Path(root)
        self.spool_root = self.root / ".tmp"
        self.tmp = self.spool_root / process_tag()  # this process's temp and spool files only
        self.tmp.mkdir(parents=True, exist_ok=True)

    @staticmethod
    def relpath_for(study_uid: str, series_uid: str, sop_uid: str, version: int = 1) -> str:
        name = f"{sop_uid}.dcm" if version == 1 else f"{sop_uid}.v{version}.dcm"
        return f"{study_uid}/{series_uid}/{name}"

    def path(self, relpath: str) -> Path:
        return self.root / relpath

    def write(self, relpath: str, chunks: list[bytes], crc_of: bytes) -> StoredFile:
        """Write ``chunks`` durably at ``relpath`` (all but the directory fsync).

        crc_of : the bytes whose CRC-32 is recorded (the data set after the file meta).
        Leaves no partial file behind on failure.
        """
        target = self.root / relpath
        tmp = self.tmp / f"{uuid.uuid4().hex}.part"
        size = 0
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
            try:
                for chunk in chunks:
                    view = memoryview(chunk)
                    while view:
                        n = os.write(fd, view)
                        view = view[n:]
                        size += n
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, target)
        except OSError as exc:
            try:
                tmp.unlink(missing_ok=True)
            except OSError:
                pass
            raise StoreError(f"cannot write {relpath}: {exc.strerror or exc}") from None
        return StoredFile(relpath, size, zlib.crc32(crc_of))

    def sync_files(self, paths: list[Path]) -> None:
        """Make the data of ``paths`` durable: one file on this thread (a hand-off to another thread
        costs more than it saves on a busy machine), several in parallel, so the file system batches
        them into one journal commit. Raises ``OSError`` if one failed."""
        if len(paths) == 1:
            _fdatasync(paths[0])
        elif paths:
            list(_sync_pool().map(_fdatasync, paths))

    def sync_dirs(self, relpaths: set[str]) -> None:
        """fsync each directory once (in parallel when several), making the renames into it durable."""
        if len(relpaths) > 1:
            list(_sync_pool().map(fsync_dir, [self.root / rel for rel in relpaths]))
        else:
            for rel in relpaths:
                fsync_dir(self.root / rel)

    def read(self, relpath: str) -> bytes:
        return (self.root / relpath).read_bytes()

    def remove(self, relpath: str) -> None:
        (self.root / relpath).unlink(missing_ok=True)

    def clean_tmp(self) -> int:
        """Remove temp files a crash left behind; returns how many.

        Only this process's spool folder, the folders of processes of this host that are no longer
        running, and loose files of older versions: another gateway sharing the store keeps its own.
        """
        n = 0
        host = process_tag().rsplit("-", 1)[0]
        for entry in list(self.spool_root.iterdir()) if self.spool_root.is_dir() else []:
            if entry.is_file() and entry.suffix == ".part":
                entry.unlink(missing_ok=True)
                n += 1
                continue
            name_host, _, pid = entry.name.rpartition("-")
            if not entry.is_dir() or name_host != host or not pid.isdigit():
                continue
            if entry == self.tmp:
                for p in self.tmp.iterdir():
                    if p.is_file():
                        p.unlink(missing_ok=True)
                        n += 1
                    else:
                        shutil.rmtree(p, ignore_errors=True)
            elif not _pid_alive(int(pid)):
                n += sum(1 for p in entry.rglob("*") if p.is_file())
                shutil.rmtree(entry, ignore_errors=True)
        if n:
            log.info("removed %d partial file(s) left by an earlier crash", n)
        return n

    # the object-store interface (pacs_gateway.objectstore) ---------------------------
    def same_bytes(self, tmp: Path, relpath: str) -> bool:
        """Whether the stored object at ``relpath`` has exactly the bytes of the file ``tmp``."""
        try:
            return filecmp.cmp(tmp, self.path(relpath), shallow=False)
        except OSError:
            return False

    def place(self, tmp: Path, relpath: str, dirs: set[str]) -> str:
        """Move the file ``tmp`` to ``relpath``; returns the path recorded in the index.

        ``dirs`` collects the folders to fsync in :meth:`sync_dirs`; it and :meth:`sync_files` must
        run (and succeed) before the index commit.
        """
        target = self.path(relpath)
        parent = target.parent
        if not parent.is_dir():
            study_dir = parent.parent
            if not study_dir.is_dir():
                study_dir.mkdir(parents=True, exist_ok=True)
                dirs.add(".")
            parent.mkdir(exist_ok=True)
            dirs.add(os.path.relpath(study_dir, self.root))
        os.replace(tmp, target)
        dirs.add(os.path.dirname(relpath))
        return relpath

    def fetch(self, paths) -> None:
        """Make stored objects readable at ``root / relpath`` (``paths``: relpaths or paths under root).

        Local files always are; a remote store downloads them into its local cache.
        """

    def put_tree(self, relpath: str) -> int:
        """Publish files written locally under ``root / relpath`` (triage outputs); returns how many."""
        return 0

    def close(self) -> None:
        """Release connections and threads (nothing to do for local files)."""

    def usage_pct(self) -> float:
        du = shutil.disk_usage(self.root)
        return 100.0 * (du.total - du.free) / du.total if du.total else 0.0
