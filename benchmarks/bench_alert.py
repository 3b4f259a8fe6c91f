"""Alert latency: the last CTP image acknowledged by telerad -> the signed webhook received.

A ``telerad serve`` child (default settings, so the default ``dicom.quiet_period_s``
of 5 s) gets a phantom CTP pushed by DCMTK ``storescu`` (``TCP_NODELAY=1``); a
loopback HTTP receiver records when the Standard-Webhooks-signed alert arrives.
Each run uses a fresh phantom (new seed, new UIDs) on the same running server
(its triage worker is warm after the first run; run 1 is reported separately).

The start of the clock is the receive time of the last CTP instance as telerad
indexed it (``instances.received_at``, taken before the instance is answered), so
the figure is an upper bound of "last image acknowledged -> webhook received".
Per run it also reports where the time went, from the index: quiet period (last
image -> series complete), queueing (-> triage started), analysis and summary PNG
(-> alert created) and sending (-> webhook received).

    .venv/bin/python benchmarks/bench_alert.py [--repeats 5] [--sizes 256,512]

Writes benchmarks/results/alert.json. Not a test: nothing here asserts speed.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from sample_dicom.cli import main as phantom_main  # noqa: E402
from tests.peers import LOOPBACK, TeleradPeer, run_storescu, stored_ok  # noqa: E402
from tests.stroke.conftest import SECRET_1, contact, verify_standard_webhook, write_config  # noqa: E402
from tests.stroke.receivers import WebhookReceiver  # noqa: E402

SHAPES = {"256": (256, 16, 40), "512": (512, 32, 40)}  # size, slices, time points


def _ts(text: str | None) -> float | None:
    if text is None:
        return None
    dt = datetime.fromisoformat(text)
    return (dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)).timestamp()


def _index_times(db: Path, study_uid: str) -> dict:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        q = lambda sql: con.execute(sql, (study_uid,)).fetchone()  # noqa: E731
        last = q("SELECT max(i.received_at) FROM instances i JOIN series s ON s.id = i.series_id "
                 "JOIN studies st ON st.id = s.study_id WHERE st.study_uid = ? AND s.kind = 'ctp'")[0]
        complete = q("SELECT min(s.completed_at) FROM series s JOIN studies st ON st.id = s.study_id "
                     "WHERE st.study_uid = ? AND s.kind = 'ctp'")[0]
        started, run_id = q("SELECT started_at, id FROM triage_runs WHERE study_uid = ?")
        created = q("SELECT created_at FROM alerts WHERE study_uid = ? AND type LIKE 'stroke.triage%'")[0]
    finally:
        con.close()
    return {"last_image": _ts(last), "complete": _ts(complete), "triage_started": _ts(started),
            "alert_created": _ts(created), "run_id": run_id}


def one_run(peer: TeleradPeer, hook: WebhookReceiver, work: Path, size: str, seed: int) -> dict:
    n, slices, times = SHAPES[size]
    folder = work / f"ctp-{size}-{seed}"
    t0 = time.perf_counter()
    assert phantom_main([str(folder), "--size", str(n), "--slices", str(slices), "--times", str(times),
                         "--seed", str(seed)]) == 0
    files = sorted(folder.glob("*.dcm"))
    truth = json.loads((folder / "truth.json").read_text())
    phantom_s = time.perf_counter() - t0
    before = len(hook.accepted())
    sent = run_storescu(files, LOOPBACK, peer.dicom_port, "BENCH_CT", peer.ae_title, timeout=600)
    storescu_exit = time.time()
    assert len(stored_ok(sent)) == len(files), "not every image was stored"
    req = hook.wait(before + 1, 300)[before]
    body = verify_standard_webhook(SECRET_1, req)
    t = _index_times(peer.data_dir / "index.sqlite3", body["study_instance_uid"])
    latency = req["at"] - t["last_image"]
    shutil.rmtree(folder)
    r = body["result"]
    return {
        "seed": seed, "images": len(files), "phantom_s": round(phantom_s, 2),
        "latency_s": round(latency, 3),
        "latency_from_storescu_exit_s": round(req["at"] - storescu_exit, 3),
        "quiet_s": round(t["complete"] - t["last_image"], 3),
        "queue_s": round(t["triage_started"] - t["complete"], 3),
        "analysis_and_summary_s": round(t["alert_created"] - t["triage_started"], 3),
        "send_s": round(req["at"] - t["alert_created"], 3),
        "alert_type": body["type"], "core_ml": r.get("core_ml"), "tmax6_ml": r.get("tmax6_ml"),
        "truth_core_ml": truth.get("core_ml"), "truth_tmax6_ml": truth.get("tmax6_ml"),
        "triage_timings_s": r.get("timings_s"),
    }


def summarize(runs: list[dict], quiet_setting: float) -> dict:
    lat = [r["latency_s"] for r in runs]
    quiet = [r["quiet_s"] for r in runs]
    med = statistics.median(lat)
    return {
        "runs": len(runs), "latency_median_s": round(med, 3), "latency_max_s": round(max(lat), 3),
        "latency_min_s": round(min(lat), 3),
        "quiet_period_setting_s": quiet_setting, "quiet_median_s": round(statistics.median(quiet), 3),
        "quiet_share_of_median": round(statistics.median(quiet) / med, 3),
        "latency_without_quiet_median_s": round(statistics.median(a - b for a, b in zip(lat, quiet)), 3),
        "analysis_and_summary_median_s": round(statistics.median(r["analysis_and_summary_s"] for r in runs), 3),
        "send_median_s": round(statistics.median(r["send_s"] for r in runs), 3),
        "first_run_latency_s": runs[0]["latency_s"],
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--sizes", default="256,512")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "alert.json"))
    args = ap.parse_args(argv)
    sizes = [s for s in args.sizes.split(",") if s]
    results: dict = {
        "benchmark": "last CTP image acknowledged by telerad -> signed webhook received",
        "command": f"python benchmarks/bench_alert.py --repeats {args.repeats} --sizes {','.join(sizes)}",
        "when_utc": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": {"cpus": __import__("os").cpu_count(), "platform": platform.platform(),
                    "python": platform.python_version()},
        "target": {"case": "512", "latency_median_s_max": 15.0}, "cases": {},
    }
    with tempfile.TemporaryDirectory(prefix="bench-alert-") as tmp, WebhookReceiver() as hook:
        work = Path(tmp)
        for size in sizes:
            peer = TeleradPeer(work / f"var-{size}", extra_args=["--config", str(work / "telerad.toml")])
            write_config(work / "telerad.toml", sections={}, tables={"oncall": [contact("Bench", 1, hook)]})
            peer.start()
            try:
                quiet = 5.0  # the default dicom.quiet_period_s (no override in the config)
                runs = []
                for i in range(args.repeats):
                    run = one_run(peer, hook, work, size, seed=100 + 10 * int(size) + i)
                    runs.append(run)
                    print(f"{size}: run {i + 1}/{args.repeats}: {run['latency_s']:.2f} s "
                          f"(quiet {run['quiet_s']:.2f}, analysis {run['analysis_and_summary_s']:.2f}, "
                          f"send {run['send_s']:.3f}); core {run['core_ml']} mL, Tmax>6s {run['tmax6_ml']} mL",
                          flush=True)
            finally:
                peer.stop()
            n, z, t = SHAPES[size]
            results["cases"][size] = {"shape_tzyx": [t, z, n, n], **summarize(runs, quiet), "per_run": runs}
    if "512" in results["cases"]:
        results["target"]["met"] = results["cases"]["512"]["latency_median_s"] <= 15.0
    Path(args.out).write_text(json.dumps(results, indent=1) + "\n")
    for size, c in results["cases"].items():
        print(f"{size}: median {c['latency_median_s']} s, max {c['latency_max_s']} s over {c['runs']} runs; "
              f"quiet period {c['quiet_median_s']} s = {100 * c['quiet_share_of_median']:.0f}% of the median")
    return 0


if __name__ == "__main__":
    sys.exit(main())
