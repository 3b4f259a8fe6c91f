"""One long-lived worker process for the triage compute (``spawn``, so no threads are forked).

Receiving and routing keep the gateway process; the numpy work and its memory stay
in the worker. A worker that dies (killed, out of memory) is replaced on the next
call, which raises :class:`WorkerCrashed` so the job can be retried.
"""

from __future__ import annotations

import logging
import multiprocessing
import threading
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

log = logging.getLogger(__name__)


class WorkerCrashed(RuntimeError):
    pass


class ComputePool:
    def __init__(self):
        self._lock = threading.Lock()
        self._pool: ProcessPoolExecutor | None = None

    def _get(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"))
            return self._pool

    def warm(self) -> None:
        """Start the worker and import the compute stack in it, in the background."""
        from stroke import compute

        self._get().submit(compute.warm)

    def call(self, fn, *args, timeout: float | None = None):
        pool = self._get()
        try:
            return pool.submit(fn, *args).result(timeout=timeout)
        except BrokenProcessPool:
            log.error("the triage worker process died; starting a new one")
            with self._lock:
                if self._pool is pool:
                    self._pool = None
            pool.shutdown(wait=False, cancel_futures=True)
            raise WorkerCrashed("the triage worker process died (killed or out of memory)") from None

    def stop(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
