"""The local object store: ``<root>/<study>/<series>/<sop>.dcm``, written atomically.

A received file is written to ``<root>/.tmp`` and renamed into place by the
index writer, which then fsyncs the file's data and its directory (grouped
across concurrent writers, see ``ingest.IndexWriter``) before the index commit
and the success status.
"""

from __future__ import annotations

import logging
import os
import shutil
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


class ObjectStore:
    def __init__(self, root: Path):
        self.root = Path(root)
        self.tmp = self.root / ".tmp"
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
        """fdatasync each file; several at once in parallel, so the file system can batch them into one
        journal commit (the GIL is released while a thread waits in fdatasync)."""
        if len(paths) == 1:
            _fdatasync(paths[0])
        elif paths:
            list(_sync_pool().map(_fdatasync, paths))

    def sync_dirs(self, relpaths: set[str]) -> None:
        """fsync each directory once, making the renames into it durable."""
        for rel in relpaths:
            fsync_dir(self.root / rel)

    def read(self, relpath: str) -> bytes:
        return (self.root / relpath).read_bytes()

    def remove(self, relpath: str) -> None:
        (self.root / relpath).unlink(missing_ok=True)

    def clean_tmp(self) -> int:
        """Remove temp files a crash left behind; returns how many."""
        n = 0
        for p in self.tmp.glob("*.part"):
            p.unlink(missing_ok=True)
            n += 1
        if n:
            log.info("removed %d partial file(s) left by an earlier crash", n)
        return n

    def usage_pct(self) -> float:
        du = shutil.disk_usage(self.root)
        return 100.0 * (du.total - du.free) / du.total if du.total else 0.0
