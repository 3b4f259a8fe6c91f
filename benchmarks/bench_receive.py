"""Receive throughput: telerad vs Orthanc vs DCMTK storescp, in one run.

DCMTK ``storescu`` (``TCP_NODELAY=1``) pushes N synthetic 512x512 CT images
(about 0.5 MB each) over loopback, once over 1 association and once over 4
concurrent associations (the files split in 4, 4 storescu processes), to:

- telerad: ``telerad serve --accept-any-ae`` doing its full durable path
  (fsync, rename, index) before answering;
- Orthanc (Debian package, default SQLite index, synchronous storage);
- storescp (``--fork`` for the concurrent case), which only writes files.

Each (receiver, mode, repeat) gets a fresh receiver and data dir. Reported per
receiver and mode: images/s and MB/s (median over repeats, 1 MB = 10^6 bytes
of the sent files), CPU seconds of the receiver's process tree during the
transfer (from /proc), and a check that every image is stored. Ratios
telerad/Orthanc and telerad/storescp are computed from the medians.

    .venv/bin/python benchmarks/bench_receive.py [--images 1000] [--repeats 3]

Writes benchmarks/results/receive.json. Not a test: nothing here asserts speed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from sample_dicom.synthetic import write_ct_series  # noqa: E402
from tests.peers import (  # noqa: E402
    LOOPBACK,
    OrthancPeer,
    StorescpPeer,
    TeleradPeer,
    run_storescu,
    run_storescu_concurrently,
    stored_ok,
    tree_cpu_seconds,
)

RECEIVERS = ("telerad", "orthanc", "storescp")
MODES = (1, 4)


class Receiver:
    """A started receiver: where to send, whose CPU to count, how to count what it stored."""

    def __init__(self, name: str, peer: Any, port: int, called_ae: str, count: Callable[[], int]) -> None:
        self.name, self.peer, self.port, self.called_ae, self.count = name, peer, port, called_ae, count

    @property
    def pid(self) -> int:
        return self.peer.pid


def start_receiver(name: str, workdir: Path, associations: int) -> Receiver:
    if name == "telerad":
        peer = TeleradPeer(workdir / "data", ae_title="TELERAD", accept_any_ae=True).start()
        return Receiver(name, peer, peer.dicom_port, "TELERAD", lambda: len(peer.stored_files()))
    if name == "orthanc":
        peer = OrthancPeer(workdir / "orthanc").start()
        return Receiver(name, peer, peer.dicom_port, "ORTHANC", peer.count_instances)
    if name == "storescp":
        peer = StorescpPeer(workdir / "received", fork=associations > 1).start()
        return Receiver(name, peer, peer.port, "STORESCP", lambda: len(peer.files()))
    raise ValueError(f"unknown receiver {name!r}; choose from {RECEIVERS}")


def send(receiver: Receiver, files: list[Path], associations: int, timeout: float) -> tuple[float, int, list[str]]:
    """Push ``files``; return (wall seconds, successes, error tails)."""
    t0 = time.perf_counter()
    size = -(-len(files) // associations)
    batches = [files[i : i + size] for i in range(0, len(files), size)]
    if associations == 1:
        results = [run_storescu(files, LOOPBACK, receiver.port, called_ae=receiver.called_ae, timeout=timeout)]
    else:
        results = run_storescu_concurrently(batches, LOOPBACK, receiver.port, called_ae=receiver.called_ae, timeout=timeout)
    wall = time.perf_counter() - t0
    ok = sum(len(stored_ok(r)) for r in results)
    # a storescu that failed or stored fewer files than it was given (not its argv length)
    errors = [r.stderr[-400:] for r, batch in zip(results, batches)
              if r.returncode != 0 or len(stored_ok(r)) != len(batch)]
    return wall, ok, errors


def one_run(name: str, files: list[Path], total_bytes: int, associations: int, scratch: Path) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix=f"{name}-{associations}-", dir=scratch))
    timeout = 120 + len(files) / 5
    record: dict[str, Any] = {"receiver": name, "associations": associations}
    receiver = None
    try:
        receiver = start_receiver(name, workdir, associations)
        cpu0 = tree_cpu_seconds(receiver.pid)
        wall, ok, errors = send(receiver, files, associations, timeout)
        cpu1 = tree_cpu_seconds(receiver.pid)
        stored = receiver.count()
        record.update(
            wall_s=round(wall, 3),
            images_per_s=round(len(files) / wall, 1),
            mb_per_s=round(total_bytes / 1e6 / wall, 1),
            receiver_cpu_s=round(cpu1 - cpu0, 2),
            success_responses=ok,
            stored=stored,
            complete=(ok == len(files) and stored == len(files)),
        )
        if errors:
            record["errors"] = errors
    except Exception as exc:  # a receiver that fails must not hide the others' figures
        record.update(error=f"{type(exc).__name__}: {exc}"[-1500:], complete=False)
    finally:
        if receiver is not None:
            receiver.peer.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    return record


def summarize(runs: list[dict[str, Any]], receivers: list[str]) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for name in receivers:
        for assoc in MODES:
            good = [r for r in runs if r["receiver"] == name and r["associations"] == assoc and "wall_s" in r]
            if not good:
                continue
            summary.setdefault(name, {})[f"{assoc}_assoc"] = {
                "images_per_s": round(statistics.median(r["images_per_s"] for r in good), 1),
                "mb_per_s": round(statistics.median(r["mb_per_s"] for r in good), 1),
                "receiver_cpu_s": round(statistics.median(r["receiver_cpu_s"] for r in good), 2),
                "runs": len(good),
                "all_complete": all(r["complete"] for r in good)
                and len(good) == sum(1 for r in runs if r["receiver"] == name and r["associations"] == assoc),
            }
    ratios: dict[str, float] = {}
    for other in ("orthanc", "storescp"):
        for assoc in MODES:
            key = f"{assoc}_assoc"
            try:
                ratio = summary["telerad"][key]["images_per_s"] / summary[other][key]["images_per_s"]
            except KeyError:
                continue
            ratios[f"telerad/{other} {key}"] = round(ratio, 2)
    return {"receivers": summary, "ratios": ratios}


def tool_versions() -> dict[str, str]:
    versions: dict[str, str] = {"python": platform.python_version()}
    for tool, args in (("storescu", ["--version"]), ("Orthanc", ["--version"])):
        exe = shutil.which(tool) or (f"/usr/sbin/{tool}" if os.path.exists(f"/usr/sbin/{tool}") else None)
        if exe:
            out = subprocess.run([exe, *args], capture_output=True, text=True, timeout=30, check=False)
            versions[tool] = (out.stdout or out.stderr).strip().splitlines()[0] if (out.stdout or out.stderr) else "?"
    for mod in ("pydicom", "pynetdicom"):
        try:
            versions[mod] = __import__(mod).__version__
        except Exception:  # noqa: BLE001 - reporting only
            versions[mod] = "?"
    return versions


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=int, default=1000, help="images per run (default 1000)")
    p.add_argument("--repeats", type=int, default=1, help="runs per receiver and mode; medians are reported")
    p.add_argument("--size", type=int, default=512, help="rows = columns (default 512)")
    p.add_argument("--receivers", default=",".join(RECEIVERS), help="comma list from telerad,orthanc,storescp")
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "receive.json")
    p.add_argument("--scratch", type=Path, default=None, help="working folder (default: a temp dir, removed)")
    args = p.parse_args(argv)
    receivers = [r.strip() for r in args.receivers.split(",") if r.strip()]
    for name in receivers:
        if name not in RECEIVERS:
            p.error(f"unknown receiver {name!r}; choose from {', '.join(RECEIVERS)}")

    scratch = Path(tempfile.mkdtemp(prefix="bench_receive-", dir=args.scratch))
    try:
        t0 = time.perf_counter()
        files = write_ct_series(scratch / "ct", args.images, args.size, args.size, seed=7)
        total_bytes = sum(f.stat().st_size for f in files)
        for f in files:  # warm the page cache so every receiver is fed the same way
            f.read_bytes()
        print(f"wrote {len(files)} images, {total_bytes / 1e6:.0f} MB in {time.perf_counter() - t0:.1f}s", flush=True)

        runs: list[dict[str, Any]] = []
        for rep in range(args.repeats):
            for assoc in MODES:
                for name in receivers:  # interleaved so drift hits every receiver alike
                    record = one_run(name, files, total_bytes, assoc, scratch)
                    record["repeat"] = rep
                    runs.append(record)
                    shown = {k: record.get(k) for k in ("images_per_s", "mb_per_s", "receiver_cpu_s", "complete")}
                    print(f"[{rep}] {name:8s} {assoc} assoc: {shown}" + (f" ERROR {record['error']}" if "error" in record else ""), flush=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    result = {
        "benchmark": "receive",
        "description": "DCMTK storescu (TCP_NODELAY=1) -> receiver over loopback, 1 and 4 concurrent associations",
        "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "versions": tool_versions(),
        "images": args.images,
        "rows": args.size,
        "cols": args.size,
        "bytes_sent": total_bytes,
        "repeats": args.repeats,
        **summarize(runs, receivers),
        "runs": runs,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({"receivers": result["receivers"], "ratios": result["ratios"]}, indent=2))
    print(f"wrote {args.out}")
    complete = all(r.get("complete") for r in runs)
    return 0 if complete else 1


if __name__ == "__main__":
    sys.exit(main())
