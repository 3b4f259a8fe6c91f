"""Hostile peers against a real ``telerad serve``, all at once, while a clinic's storescu sends 1,000 images.

The attacks (``hostile.py``): slow-loris during negotiation and during the data phase, a data set
that never ends, a deflate bomb, 500 idle connections, garbage PDUs and command UIDs with
non-ASCII bytes and newlines. Meanwhile the registered clinic (127.0.0.1) must store every image
intact and echo, the server's memory and threads must stay bounded, and nothing may be half-stored.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import pytest
from pydicom import dcmread

from pacs_gateway import status
from sample_dicom.synthetic import write_ct_series
from tests.gateway import hostile
from tests.gateway.helpers import dataset_bytes
from tests.peers import run_echoscu, run_storescu, stored_ok
from tests.serve_process import ServeProcess


MAX_DATASET = 32 << 20
ARTIM_S, IDLE_S, MESSAGE_S = 2.0, 3.0, 6.0
#: the bounds asserted: resident memory may grow by at most this over the idle server's ...
RSS_GROWTH_BOUND = 96 << 20
#: ... and threads by at most the associations the caps allow (clinic + attackers) plus slack
THREAD_GROWTH_BOUND = 24 + 8

CONFIG = f"""
[dicom]
acse_timeout_s = {ARTIM_S}
network_timeout_s = {IDLE_S}
dimse_timeout_s = {MESSAGE_S}
min_rate_bytes_s = 1048576
max_dataset_bytes = {MAX_DATASET}
max_associations = 24
max_associations_per_ip = 4
max_pending_connections = 512
max_pending_per_ip = 16

[[clinics]]
name = "Clinic"
ae_title = "CLINIC"
"""


def _proc_status(pid: int) -> dict[str, int]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM", "Threads"):
            out[key] = int(value.split()[0]) * (1024 if key != "Threads" else 1)
    return out


class _Sampler(threading.Thread):
    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.pid, self.stop, self.peak_rss, self.peak_threads = pid, threading.Event(), 0, 0

    def run(self) -> None:
        while not self.stop.wait(0.1):
            try:
                st = _proc_status(self.pid)
            except OSError:
                return
            self.peak_rss = max(self.peak_rss, st["VmRSS"])
            self.peak_threads = max(self.peak_threads, st["Threads"])


def test_clinic_stores_1000_images_intact_while_hostile_peers_attack(tmp_path):
    files = write_ct_series(tmp_path / "ct", n_images=1000, rows=64, cols=64)
    bomb = hostile.deflate_bomb(4 * MAX_DATASET)
    config = tmp_path / "telerad.toml"
    config.write_text(CONFIG)
    serve = ServeProcess(tmp_path / "var", args=["--config", str(config), "--no-http"])
    serve.echo_ae = "CLINIC"
    with serve:
        port, pid = serve.dicom_port, serve.proc.pid
        assert run_echoscu("127.0.0.1", port, calling_ae="CLINIC", called_ae="TELERAD").returncode == 0
        time.sleep(1.0)
        base = _proc_status(pid)
        sampler = _Sampler(pid)
        sampler.start()
        stop = threading.Event()
        t = {name: hostile.Tally() for name in ("rq", "data", "endless", "bomb", "idle", "garbage", "uid")}
        attackers = [
            threading.Thread(target=hostile.slowloris_rq, args=(stop, port, "127.0.0.2", t["rq"])),
            threading.Thread(target=hostile.slowloris_data, args=(stop, port, "127.0.0.3", t["data"])),
            threading.Thread(target=hostile.endless_fragments, args=(stop, port, "127.0.0.4", t["endless"])),
            threading.Thread(target=hostile.deflate_bombs, args=(stop, port, "127.0.0.5", t["bomb"], bomb)),
            threading.Thread(target=hostile.idle_flood,
                             args=(stop, port, [f"127.0.1.{i}" for i in range(1, 51)], t["idle"])),
            threading.Thread(target=hostile.garbage, args=(stop, port, "127.0.0.6", t["garbage"])),
            threading.Thread(target=hostile.bad_uids, args=(stop, port, "127.0.0.7", t["uid"])),
        ]
        for a in attackers:
            a.daemon = True
            a.start()
        try:
            time.sleep(ARTIM_S + 1.0)  # let the floods fill the pending stage first
            echo = run_echoscu("127.0.0.1", port, calling_ae="CLINIC", called_ae="TELERAD")
            sent = run_storescu(tmp_path / "ct", "127.0.0.1", port, "CLINIC", "TELERAD", timeout=180)
            time.sleep(max(0.0, IDLE_S + 1.0))  # every attack gets at least one full round of its timer
        finally:
            stop.set()
            for a in attackers:
                a.join(timeout=30)
            sampler.stop.set()
            sampler.join(timeout=5)
        after = _proc_status(pid)
        log = serve.log()

    # the clinic was served throughout
    assert echo.returncode == 0, echo.stdout + echo.stderr
    assert len(stored_ok(sent)) == 1000, sent.stderr[-2000:]
    db = sqlite3.connect(tmp_path / "var" / "index.sqlite3")
    rows = dict(db.execute("select sop_uid, path from instances").fetchall())
    assert len(rows) == 1000
    store = tmp_path / "var" / "store"
    for f in files:
        sop = dcmread(f, stop_before_pixels=True).SOPInstanceUID
        assert dataset_bytes(store / rows[sop]) == dataset_bytes(f)
    assert not [p for p in (store / ".tmp").rglob("*") if p.is_file()], "half-stored spool files left behind"

    # each attack was stopped by its bound
    assert t["rq"].closed >= 16 and max(t["rq"].lifetimes) < ARTIM_S + 2.0, t["rq"]
    assert t["data"].connections >= 1 and t["data"].aborted + t["data"].closed == t["data"].connections
    assert max(t["data"].lifetimes) < IDLE_S + 2.0
    assert t["endless"].connections >= 1 and t["endless"].aborted == t["endless"].connections
    # aborted at the cap: what the peer managed to send beyond it sat in the two loopback socket buffers
    assert max(t["endless"].sent_bytes) <= MAX_DATASET + (24 << 20)
    assert f"data set larger than the {MAX_DATASET} bytes allowed" in log
    assert t["bomb"].connections >= 1 and set(t["bomb"].statuses) == {status.CANNOT_PARSE}, t["bomb"]
    assert t["idle"].connections >= 500 and t["idle"].closed >= 100
    assert t["garbage"].connections >= len(hostile.GARBAGE)
    assert t["garbage"].aborted + t["garbage"].closed == t["garbage"].connections
    assert t["uid"].connections >= 1 and t["uid"].aborted == t["uid"].connections
    assert "FORGED LOG LINE" in log and "\nFORGED" not in log and "\n2026-01-01 00:00:00 INFO FORGED" not in log
    assert "Traceback" not in log

    # memory and threads stayed bounded
    print(f"\nhostile: base RSS {base['VmRSS'] >> 20} MiB, peak {sampler.peak_rss >> 20} MiB; threads base "
          f"{base['Threads']}, peak {sampler.peak_threads}, after {after['Threads']}; "
          + ", ".join(f"{k}: {v.connections} conns" for k, v in t.items()))
    assert sampler.peak_rss - base["VmRSS"] < RSS_GROWTH_BOUND, (base, sampler.peak_rss)
    assert sampler.peak_threads - base["Threads"] <= THREAD_GROWTH_BOUND, (base, sampler.peak_threads)
    assert after["Threads"] - base["Threads"] <= 4
