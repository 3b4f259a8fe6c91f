"""Forwarding: telerad -> DCMTK storescp vs DCMTK storescu -> the same storescp, in one run.

For each repeat, one DCMTK ``storescp`` (``TCP_NODELAY=1``) receives:

1. **baseline**: DCMTK ``storescu`` sends the N images straight to it (1 association);
2. **forward**: ``storescu`` pushes the same N images into ``telerad serve`` (a child
   process, full durable path), which routes the complete series to that storescp
   (one association, sent as stored). Forwarding rate = N / (last delivered − series
   complete), from the ledger and the index, so it covers dispatch, association and
   every C-STORE;
3. **CTP latency**: a 1,280-image CT perfusion (32 slices x 40 time points, stroke lane)
   pushed into telerad; latency = last delivered − last instance received, split into
   the quiet period that completes the series, dispatch up to the first delivery, and
   the send itself.

Both DIMSE senders (``routing.sender``: ``pynetdicom``, the default, and ``ul``) are
measured against the same baseline. Targets (issue 4): forwarding >= 0.5x storescu's
rate; CTP latency <= 5 s on loopback. Nothing here asserts them; the JSON says
whether they were met.

    .venv/bin/python benchmarks/bench_route.py [--images 1000] [--size 512] [--repeats 3] [--quiet-period 2] [--senders pynetdicom,ul]

Writes benchmarks/results/route.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from sqlalchemy import create_engine, func, select  # noqa: E402

from pacs_gateway.index.models import Delivery, Instance, Series  # noqa: E402
from sample_dicom.synthetic import write_ct_series  # noqa: E402
from tests.peers import LOOPBACK, StorescpPeer, TeleradPeer, run_storescu, stored_ok, tree_cpu_seconds  # noqa: E402


def _utc(dt: datetime) -> datetime:
    return dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)


def _config(path: Path, storescp: StorescpPeer, quiet_period_s: float, sender: str) -> Path:
    path.write_text(
        f"[dicom]\nbind = \"127.0.0.1\"\nquiet_period_s = {quiet_period_s}\n\n"
        f"[routing]\nsweep_interval_s = 1\nsender = \"{sender}\"\n\n"
        f'[[destinations]]\nname = "storescp"\nkind = "dicom"\nhost = "127.0.0.1"\nport = {storescp.port}\n'
        f'ae_title = "{storescp.aet}"\ndefault = true\n'
    )
    return path


def _ledger(data: Path, n: int, timeout: float) -> dict[str, Any]:
    """Wait until ``n`` rows are delivered; then the timings of the (single) series."""
    engine = create_engine(f"sqlite:///{data / 'index.sqlite3'}")
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            with engine.connect() as c:
                done = c.execute(select(func.count(Delivery.id)).where(Delivery.state == "delivered")).scalar_one()
                failed = c.execute(select(func.count(Delivery.id)).where(Delivery.state == "failed")).scalar_one()
            if done + failed >= n:
                break
            time.sleep(0.05)
        with engine.connect() as c:
            first_del, last_del = c.execute(select(func.min(Delivery.delivered_at), func.max(Delivery.delivered_at))).one()
            last_recv = c.execute(select(func.max(Instance.received_at))).scalar_one()
            completed, kind = c.execute(select(Series.completed_at, Series.kind)).one()
            lanes = sorted(set(c.execute(select(Delivery.lane)).scalars()))
    finally:
        engine.dispose()
    if done < n or last_del is None:
        return {"delivered": done, "failed": failed, "complete": False}
    first_del, last_del, last_recv, completed = map(_utc, (first_del, last_del, last_recv, completed))
    return {
        "delivered": done,
        "failed": failed,
        "complete": done == n,
        "kind": kind,
        "lanes": lanes,
        "forward_s": (last_del - completed).total_seconds(),
        "latency_s": (last_del - last_recv).total_seconds(),
        "quiet_wait_s": (completed - last_recv).total_seconds(),
        "dispatch_s": (first_del - completed).total_seconds(),
        "send_s": (last_del - first_del).total_seconds(),
    }


def baseline(files: list[Path], storescp: StorescpPeer) -> dict[str, Any]:
    t0 = time.perf_counter()
    result = run_storescu(files, LOOPBACK, storescp.port, called_ae=storescp.aet, timeout=600)
    wall = time.perf_counter() - t0
    ok = len(stored_ok(result))
    return {"wall_s": round(wall, 3), "images_per_s": round(len(files) / wall, 1), "complete": ok == len(files)}


def through_telerad(
    files: list[Path], storescp: StorescpPeer, workdir: Path, quiet_period_s: float, sender: str
) -> dict[str, Any]:
    workdir.mkdir(parents=True, exist_ok=True)
    cfg = _config(workdir / "telerad.toml", storescp, quiet_period_s, sender)
    peer = TeleradPeer(workdir / "data", http=False, extra_args=["--config", str(cfg)]).start()
    try:
        cpu0 = tree_cpu_seconds(peer.pid)
        t0 = time.perf_counter()
        pushed = run_storescu(files, LOOPBACK, peer.dicom_port, "MODALITY", peer.ae_title, timeout=600)
        push_s = time.perf_counter() - t0
        if len(stored_ok(pushed)) != len(files):
            return {"complete": False, "error": pushed.stderr[-800:]}
        record = _ledger(workdir / "data", len(files), timeout=120 + len(files) / 10)
        record["push_s"] = round(push_s, 3)
        record["telerad_cpu_s"] = round(tree_cpu_seconds(peer.pid) - cpu0, 2)
    finally:
        peer.stop()
    if "forward_s" in record:
        record["images_per_s"] = round(len(files) / record["forward_s"], 1)
        for k in ("forward_s", "latency_s", "quiet_wait_s", "dispatch_s", "send_s"):
            record[k] = round(record[k], 3)
    return record


def _median(runs: list[dict], key: str) -> float | None:
    vals = [r[key] for r in runs if key in r]
    return round(statistics.median(vals), 3) if vals else None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=int, default=1000, help="images for the throughput runs (default 1000)")
    p.add_argument("--size", type=int, default=512, help="rows = columns (default 512)")
    p.add_argument("--ctp-slices", type=int, default=32)
    p.add_argument("--ctp-times", type=int, default=40)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--quiet-period", type=float, default=2.0,
                   help="dicom.quiet_period_s for telerad (default 2, the setting's default)")
    p.add_argument("--senders", default="pynetdicom,ul", help="routing.sender values to measure (default both)")
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "route.json")
    p.add_argument("--scratch", type=Path, default=None)
    args = p.parse_args(argv)
    senders = [x.strip() for x in args.senders.split(",") if x.strip()]
    for x in senders:
        if x not in ("pynetdicom", "ul"):
            p.error(f"unknown sender {x!r}; choose from pynetdicom, ul")

    scratch = Path(tempfile.mkdtemp(prefix="bench_route-", dir=args.scratch))
    runs: list[dict[str, Any]] = []
    try:
        files = write_ct_series(scratch / "ct", args.images, args.size, args.size, seed=7)
        ctp = write_ct_series(
            scratch / "ctp", args.ctp_slices * args.ctp_times, args.size, args.size, seed=8,
            n_slices=args.ctp_slices, acquisition_number=None, series_description="CTP BRAIN",
        )  # fmt: skip
        for f in (*files, *ctp):
            f.read_bytes()
        for rep in range(args.repeats):
            work = scratch / f"rep{rep}"
            with StorescpPeer(work / "base") as scp:
                base = baseline(files, scp)
            for sender in senders:
                with StorescpPeer(work / f"fwd-{sender}") as scp:
                    fwd = through_telerad(files, scp, work / f"t1-{sender}", args.quiet_period, sender)
                with StorescpPeer(work / f"ctp-{sender}") as scp:
                    lat = through_telerad(ctp, scp, work / f"t2-{sender}", args.quiet_period, sender)
                runs.append({"repeat": rep, "sender": sender, "storescu": base, "telerad_forward": fwd, "ctp": lat})
                print(f"[{rep}] {sender}: storescu {base.get('images_per_s')} img/s | telerad forward "
                      f"{fwd.get('images_per_s')} img/s | CTP latency {lat.get('latency_s')} s (quiet "
                      f"{lat.get('quiet_wait_s')}, dispatch {lat.get('dispatch_s')}, send {lat.get('send_s')})",
                      flush=True)  # fmt: skip
            shutil.rmtree(work, ignore_errors=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    base_rate = _median([r["storescu"] for r in runs], "images_per_s")
    summary: dict[str, Any] = {
        "storescu_images_per_s": base_rate,
        "target_ratio": 0.5,
        "ctp_images": args.ctp_slices * args.ctp_times,
        "target_latency_s": 5.0,
        "senders": {},
    }
    for sender in senders:
        mine = [r for r in runs if r["sender"] == sender]
        fwd_rate = _median([r["telerad_forward"] for r in mine], "images_per_s")
        latency = _median([r["ctp"] for r in mine], "latency_s")
        ratio = round(fwd_rate / base_rate, 2) if base_rate and fwd_rate else None
        send_s = _median([r["ctp"] for r in mine], "send_s")
        summary["senders"][sender] = {
            "telerad_forward_images_per_s": fwd_rate,
            "forward_ratio": ratio,
            "ratio_met": ratio is not None and ratio >= 0.5,
            "ctp_latency_s": latency,
            "ctp_latency_parts_s": {k: _median([r["ctp"] for r in mine], k) for k in ("quiet_wait_s", "dispatch_s", "send_s")},
            "ctp_send_images_per_s": round(args.ctp_slices * args.ctp_times / send_s, 1) if send_s else None,
            "latency_met": latency is not None and latency <= 5.0,
        }
    summary["all_complete"] = all(
        r["storescu"].get("complete") and r["telerad_forward"].get("complete") and r["ctp"].get("complete") for r in runs
    )
    import pydicom
    import pynetdicom

    result = {
        "benchmark": "route",
        "description": __doc__.split("\n\n")[0],
        "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "versions": {"python": platform.python_version(), "pydicom": pydicom.__version__,
                     "pynetdicom": pynetdicom.__version__},  # fmt: skip
        "images": args.images,
        "rows": args.size,
        "cols": args.size,
        "quiet_period_s": args.quiet_period,
        "repeats": args.repeats,
        "summary": summary,
        "runs": runs,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(summary, indent=2))
    print(f"wrote {args.out}")
    return 0 if summary["all_complete"] else 1


if __name__ == "__main__":
    sys.exit(main())
