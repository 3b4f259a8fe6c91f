"""DICOMweb speed for a viewer: telerad vs Orthanc's DICOMweb plugin, in one run.

One synthetic CT series (N 512x512 images, Explicit VR Little Endian, about 0.5 MB each) is
pushed by DCMTK ``storescu`` to a ``telerad serve`` subprocess and to Orthanc (Debian, with
the Debian DICOMweb plugin). Then, against each, with httpx over loopback, what a viewer
does when it opens the series:

- ``QIDO``: the study's series, and the series' instances (``limit=1000``);
- ``metadata``: WADO-RS series metadata (DICOM JSON of every instance). ``cold`` is the
  first request after the series arrived (telerad precomputed it when the series completed;
  Orthanc builds it then), ``warm`` the median of the repeats;
- ``frames``: every frame of the series, one request per frame
  (``multipart/related; type="application/octet-stream"``, uncompressed, as OHIF's
  ``wadors`` loader asks), with 1 and with 4 concurrent clients: frames/s and MB/s, and the
  server's CPU seconds (process tree, from /proc) per 100 frames.

Medians over ``--repeats``. Ratios are telerad / Orthanc (above 1: telerad faster).

    .venv/bin/python benchmarks/bench_dicomweb.py [--images 320] [--repeats 5]

Writes benchmarks/results/dicomweb.json. Not a test: nothing here asserts speed.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import httpx  # noqa: E402

from sample_dicom.synthetic import write_ct_series  # noqa: E402
from tests.peers import OrthancPeer, TeleradPeer, run_storescu, stored_ok, tree_cpu_seconds  # noqa: E402

FRAME_ACCEPT = 'multipart/related; type="application/octet-stream"'


def _push(files, host, port, called):
    done = stored_ok(run_storescu(files, host, port, "BENCH", called, timeout=600))
    if len(done) != len(files):
        raise SystemExit(f"storescu stored {len(done)} of {len(files)} images at {called}")


def _wait(predicate, timeout=300.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise SystemExit(f"timed out waiting for {what}")


def _timed(client: httpx.Client, url: str, accept: str = "application/dicom+json") -> tuple[float, int]:
    t0 = time.perf_counter()
    r = client.get(url, headers={"accept": accept})
    dt = time.perf_counter() - t0
    if r.status_code != 200:
        raise SystemExit(f"GET {url}: {r.status_code} {r.text[:300]}")
    return dt, len(r.content)


def _frames(root: str, study: str, series: str, sops: list[str], workers: int) -> tuple[float, int]:
    """Fetch frame 1 of every instance with ``workers`` clients; ``(seconds, bytes)``."""
    chunks = [sops[i::workers] for i in range(workers)]

    def run(part):
        n = 0
        with httpx.Client(timeout=60) as c:
            for sop in part:
                r = c.get(f"{root}/studies/{study}/series/{series}/instances/{sop}/frames/1",
                          headers={"accept": FRAME_ACCEPT})
                if r.status_code != 200:
                    raise SystemExit(f"frame of {sop}: {r.status_code} {r.text[:200]}")
                n += len(r.content)
        return n

    t0 = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        total = sum(pool.map(run, chunks))
    return time.perf_counter() - t0, total


def measure(name: str, root: str, pid: int, study: str, series: str, repeats: int) -> dict:
    out: dict = {"server": name}
    with httpx.Client(timeout=120) as c:
        cold, size = _timed(c, f"{root}/studies/{study}/series/{series}/metadata")
        warm = [_timed(c, f"{root}/studies/{study}/series/{series}/metadata")[0] for _ in range(repeats)]
        out["metadata"] = {"cold_s": round(cold, 4), "warm_median_s": round(statistics.median(warm), 4),
                           "bytes": size}
        qs = [_timed(c, f"{root}/studies/{study}/series")[0] for _ in range(repeats)]
        qi = [_timed(c, f"{root}/studies/{study}/series/{series}/instances?limit=1000") for _ in range(repeats)]
        out["qido"] = {"series_median_s": round(statistics.median(qs), 4),
                       "instances_median_s": round(statistics.median(t for t, _ in qi), 4)}
        items = c.get(f"{root}/studies/{study}/series/{series}/instances?limit=1000",
                      headers={"accept": "application/dicom+json"}).json()
    sops = [i["00080018"]["Value"][0] for i in items]
    out["frames"] = {}
    for workers in (1, 4):
        runs = []
        for _ in range(repeats):
            cpu0 = tree_cpu_seconds(pid)
            dt, nbytes = _frames(root, study, series, sops, workers)
            runs.append((dt, nbytes, tree_cpu_seconds(pid) - cpu0))
        dt = statistics.median(r[0] for r in runs)
        out["frames"][f"{workers}_clients"] = {
            "frames": len(sops), "frames_per_s": round(len(sops) / dt, 1), "mb_per_s": round(runs[0][1] / dt / 1e6, 1),
            "server_cpu_s_per_100_frames": round(statistics.median(r[2] for r in runs) * 100 / len(sops), 3)}
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=320)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "dicomweb.json")
    args = p.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="bench-dicomweb-", dir=REPO / "benchmarks" / "work"
                                 if (REPO / "benchmarks" / "work").is_dir() else None))
    try:
        report = run(work, args)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    return 0


def run(work: Path, args) -> dict:
    study = "1.2.826.0.1.3680043.10.77.1"
    files = write_ct_series(work / "ct", args.images, 512, 512, seed=3, study_uid=study)
    from pydicom import dcmread

    series = str(dcmread(files[0], stop_before_pixels=True).SeriesInstanceUID)
    results = []
    telerad = TeleradPeer(work / "telerad" / "var").start()
    try:
        _push(files, telerad.host, telerad.dicom_port, telerad.ae_title)
        cache = work / "telerad" / "var" / "store" / ".dicomweb" / study / series
        _wait(lambda: list(cache.glob("*.json")), what="telerad's precomputed series metadata")
        results.append(measure("telerad", telerad.url + "/dicomweb", telerad.pid, study, series, args.repeats))
    finally:
        telerad.stop()
    orthanc = OrthancPeer(work / "orthanc", dicomweb=True).start()
    try:
        _push(files, orthanc.host, orthanc.dicom_port, orthanc.aet)
        _wait(lambda: orthanc.count_instances() == len(files), what="Orthanc to index the series")
        results.append(measure("orthanc", orthanc.dicomweb_url, orthanc.pid, study, series, args.repeats))
    finally:
        orthanc.stop()
    t, o = results
    ratios = {
        "metadata_cold": round(o["metadata"]["cold_s"] / t["metadata"]["cold_s"], 2),
        "metadata_warm": round(o["metadata"]["warm_median_s"] / t["metadata"]["warm_median_s"], 2),
        "qido_instances": round(o["qido"]["instances_median_s"] / t["qido"]["instances_median_s"], 2),
        "frames_1_client": round(t["frames"]["1_clients"]["frames_per_s"] / o["frames"]["1_clients"]["frames_per_s"], 2),
        "frames_4_clients": round(t["frames"]["4_clients"]["frames_per_s"] / o["frames"]["4_clients"]["frames_per_s"], 2),
    }
    report = {"benchmark": "dicomweb", "images": args.images, "rows": 512, "columns": 512,
              "transfer_syntax": "1.2.840.10008.1.2.1", "repeats": args.repeats, "machine": platform.node(),
              "cpus": __import__("os").cpu_count(), "results": results, "telerad_over_orthanc": ratios,
              "note": "ratios above 1: telerad faster; frames are uncompressed, one request per frame"}
    return report


if __name__ == "__main__":
    sys.exit(main())
