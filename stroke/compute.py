"""The triage compute, run in the worker process (never in the gateway process).

Two calls per job, so the alert goes out before the slower work:

1. :func:`analyze_job` links the series' files into a scratch folder, runs
   ``triage.analyze`` and writes ``result.json`` and ``summary.png`` to the job's
   outputs folder; returns the ``telerad analyze --json`` object.
2. :func:`finish_job` writes the maps (``maps.npz``) and per-slice PNGs, builds the
   SEG/SR/SC result objects (``triage.dicom_results``) and writes them as Part-10
   files into the store's temp folder; returns their paths. It reuses the
   analysis kept in memory by step 1, or repeats it when the worker was restarted.

Everything here is plain data in, plain data out (the calls cross a process boundary).
:class:`ComputePool` (used by the gateway process) owns that one long-lived worker
process (``spawn``, so no threads are forked). A worker that dies (killed, out of
memory) is replaced on the next call, which raises :class:`WorkerCrashed` so the
job can be retried; a worker whose gateway died ends itself.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import logging
import multiprocessing
import os
import shutil
import threading
import time
import uuid
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures import TimeoutError as FuturesTimeout
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

log = logging.getLogger(__name__)

_CACHE: dict[str, tuple] = {}  # job key -> (result, series, scratch folder)


def warm() -> int:
    """Import the compute stack (about a second) before the first job needs it."""
    import triage.api  # noqa: F401
    import triage.dicom_adapter  # noqa: F401
    import triage.dicom_results  # noqa: F401
    import triage.outputs  # noqa: F401
    import triage.perfusion.pipeline  # noqa: F401

    return os.getpid()


def _link_files(files: list[str], scratch: Path) -> None:
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    for i, src in enumerate(files):
        dst = scratch / f"{i:06d}.dcm"
        try:
            os.link(src, dst)
        except OSError:
            os.symlink(src, dst)


def _analyze(job: dict):
    from triage.api import analyze
    from triage.dicom_adapter import load_ctp

    scratch = Path(job["scratch"])
    _link_files(job["files"], scratch)
    t0 = time.perf_counter()
    series = load_ctp(scratch)
    t1 = time.perf_counter()
    result = analyze(series, backend=job["backend"], device=job["device"])
    timings = {"read_dicom": round(t1 - t0, 3), **dict(result.timings_s or {})}
    timings["total"] = round(time.perf_counter() - t0, 3)
    result = dataclasses.replace(result, timings_s=timings)
    return result, series, scratch


def analyze_job(job: dict) -> dict:
    """Step 1. ``job``: key, files (absolute paths), scratch, outputs (folder), backend, device."""
    from triage.errors import NotCTPError
    from triage.outputs import render_summary

    _CACHE.clear()  # one job at a time: drop anything a failed job left
    try:
        result, series, scratch = _analyze(job)
    except NotCTPError as exc:
        shutil.rmtree(job["scratch"], ignore_errors=True)
        return {"status": "rejected", "error": str(exc)}
    _CACHE[job["key"]] = (result, series, scratch)
    out = Path(job["outputs"])
    out.mkdir(parents=True, exist_ok=True)
    doc = result.to_json_dict()
    _write_atomic(out / "result.json", (json.dumps(doc, indent=2, allow_nan=False) + "\n").encode())
    tmp = out / f".summary-{uuid.uuid4().hex}.png"
    render_summary(result, series).save(tmp)
    os.replace(tmp, out / "summary.png")
    return doc


def finish_job(job: dict) -> list[dict]:
    """Step 2. Extra ``job`` keys: objects_dir (the store's temp folder), created (ISO date-time), write_maps."""
    from triage.dicom_results import build_result_objects
    from triage.outputs import write_outputs

    cached = _CACHE.pop(job["key"], None)
    if cached is None:
        cached = _analyze(job)
    result, series, scratch = cached
    try:
        if job.get("write_maps", True):
            write_outputs(result, series, job["outputs"], nifti=False, pngs=True)
        created = _dt.datetime.fromisoformat(job["created"]).replace(tzinfo=None)
        objects = build_result_objects(result, sorted(scratch.iterdir()), series=series, created=created)
        written = []
        for ds in objects:
            path = Path(job["objects_dir"]) / f"{uuid.uuid4().hex}.part"
            ds.save_as(path, enforce_file_format=True)
            with open(path, "rb") as fh:
                os.fsync(fh.fileno())
            written.append({"path": str(path), "sop_uid": str(ds.SOPInstanceUID),
                            "series_uid": str(ds.SeriesInstanceUID), "modality": str(ds.Modality)})
        return written
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


# ----------------------------------------------------------------------------- the worker process

class WorkerCrashed(RuntimeError):
    pass


PARENT_CHECK_S = 1.0


def _end_with_parent(parent_pid: int) -> None:
    """Worker initializer: end the worker once the process that started it is gone. A gateway killed with SIGKILL
    (out of memory, a crash) cannot stop its worker, and the worker would wait on its job queue forever, holding its
    memory; the restarted gateway starts a new one."""

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(PARENT_CHECK_S)
        os._exit(0)

    threading.Thread(target=watch, name="end-with-parent", daemon=True).start()


class ComputePool:
    def __init__(self):
        self._lock = threading.Lock()
        self._pool: ProcessPoolExecutor | None = None

    def _get(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"),
                                                 initializer=_end_with_parent, initargs=(os.getpid(),))
            return self._pool

    def warm(self) -> None:
        """Start the worker and import the compute stack in it, in the background."""
        self._get().submit(warm)

    def call(self, fn, *args, timeout: float | None = None):
        pool = self._get()
        try:
            return pool.submit(fn, *args).result(timeout=timeout)
        except BrokenProcessPool:
            log.error("the triage worker process died; starting a new one")
            self._discard(pool)
            raise WorkerCrashed("the triage worker process died (killed or out of memory)") from None
        except FuturesTimeout:
            log.error("the triage worker took longer than %s s; killing it and starting a new one", timeout)
            for proc in list((getattr(pool, "_processes", None) or {}).values()):
                proc.kill()
            self._discard(pool)
            raise WorkerCrashed(f"the analysis took longer than triage.lease_s ({timeout:g} s)") from None

    def _discard(self, pool: ProcessPoolExecutor) -> None:
        with self._lock:
            if self._pool is pool:
                self._pool = None
        pool.shutdown(wait=False, cancel_futures=True)

    def stop(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:  # the jobs are stopped first, so the worker is idle (or still importing): end it now
            procs = list((getattr(pool, "_processes", None) or {}).values())
            pool.shutdown(wait=False, cancel_futures=True)
            for proc in procs:
                proc.terminate()
            for proc in procs:
                proc.join(timeout=5)
