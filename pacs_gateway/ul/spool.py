"""A received data set written fragment by fragment to a temp file, never held in memory.

The acceptor opens a :class:`Spool` when a C-STORE command arrives, appends each
P-DATA fragment as it is read (with a running CRC-32 of the data set), and on the
last fragment closes it and hands it to the handler; the index writer makes it
durable together with its rename and the index row.
Memory per association is one PDU whatever the object's size. A spool that is
refused (too large, disk full, association lost) removes its file.
"""

from __future__ import annotations

import os
import uuid
import zlib
from dataclasses import dataclass
from pathlib import Path


class TooLarge(Exception):
    """The data set passed ``max_dataset`` bytes."""


@dataclass(frozen=True)
class Spooled:
    """A whole, durable data set: ``path`` holds ``offset`` bytes of file meta, then the data set."""

    path: Path
    offset: int
    size: int  # whole file
    crc32: int  # of the data set (after the file meta)


class Spool:
    """One data set being received. ``write`` returns False once the disk check says stop."""

    CHECK_EVERY = 64 << 20  # bytes between disk-space checks within one data set

    def __init__(self, directory: Path, meta: bytes, max_dataset: int, disk_ok=lambda: True):
        self.path = Path(directory) / f"{uuid.uuid4().hex}.part"
        self.max_dataset, self.disk_ok = max_dataset, disk_ok
        self.offset = len(meta)
        self.received = 0
        self.crc = 0
        self.disk_full = False
        self.stored = True
        self._next_check = self.CHECK_EVERY
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
        try:
            self._write(memoryview(meta))
        except OSError:
            self.discard()
            raise

    def _write(self, view: memoryview) -> None:
        while view:
            n = os.write(self._fd, view)
            view = view[n:]

    def write(self, fragment: memoryview) -> None:
        """Append one fragment. Raises :class:`TooLarge`, or ``OSError`` when the write fails."""
        self.received += len(fragment)
        if self.received > self.max_dataset:
            raise TooLarge(f"data set larger than the {self.max_dataset} bytes allowed (dicom.max_dataset_bytes)")
        if self.disk_full:
            return  # keep reading the peer's bytes so the refusal can be answered, store none of them
        if self.received >= self._next_check:
            self._next_check += self.CHECK_EVERY
            if not self.disk_ok():
                self.disk_full = True
                return
        self.crc = zlib.crc32(fragment, self.crc)
        self._write(fragment)

    def finish(self) -> Spooled:
        """Close; the caller owns the file from here. Not yet durable: the index writer fsyncs it
        after renaming it into place, before the index commit (``ingest.IndexWriter``)."""
        try:
            # start writing the data back now, in the background, so the writer's fdatasync (after the
            # rename) finds little left to flush; also keeps received images out of the page cache
            os.posix_fadvise(self._fd, 0, 0, os.POSIX_FADV_DONTNEED)
        except OSError:
            pass
        try:
            os.close(self._fd)
        finally:
            self._fd = -1
        return Spooled(self.path, self.offset, self.offset + self.received, self.crc)

    def discard(self) -> None:
        if self._fd >= 0:
            try:
                os.close(self._fd)
            except OSError:
                pass
            self._fd = -1
        try:
            os.unlink(self.path)
        except OSError:
            pass


class Sink:
    """Stands in for a Spool that cannot store (disk full at the command, or the spool file could
    not be opened): counts the bytes against the cap, stores nothing."""

    def __init__(self, max_dataset: int, *, disk_full: bool):
        self.max_dataset, self.received, self.disk_full = max_dataset, 0, disk_full
        self.stored = False

    def write(self, fragment: memoryview) -> None:
        self.received += len(fragment)
        if self.received > self.max_dataset:
            raise TooLarge(f"data set larger than the {self.max_dataset} bytes allowed (dicom.max_dataset_bytes)")

    def discard(self) -> None:
        pass
