"""Scale-out under load: 20 clinics push to 1 or 2 gateways (+2 workers) on PostgreSQL, Redis and S3.

Every configuration is a fresh cluster of real processes (``tests/scale/cluster.py``): ``telerad serve
--no-workers`` gateways and ``telerad worker`` processes sharing one new PostgreSQL database, one Redis
queue name and one moto S3 server (in server mode, on loopback), routing to DCMTK ``storescp``
(``TCP_NODELAY=1``) and alerting a loopback webhook receiver. Per configuration:

1. **idle**: after one warm-up probe (not counted), stroke probes (a phantom CTP, 128x128, 8 slices x 30 time points = 240 images, from its
   own clinic) pushed with nothing else running;
2. **load**: for ``--push-s`` seconds, ``--clinics`` clinics each run DCMTK ``storescu`` in a loop over
   their own studies (a 40-image head CT, then a 2-image X-ray, and so on; 128x128), spread over the
   gateways, while a probe CTP goes in every ``--probe-every-s`` seconds;
3. for each probe: last image received (``instances.received_at``) -> last instance delivered
   (``deliveries.delivered_at``) and -> signed webhook alert received; images/s acknowledged.

Configurations, in one run: ``one`` (1 gateway, 2 workers), ``two`` (2 gateways, 2 workers) and
``two-kill`` (the same, with one gateway and one worker SIGKILLed half-way through the push; the
clinics of the killed gateway fail over to the other). After each: every acknowledged image must be
indexed, in S3, and delivered exactly once per the ledger, and received by storescp.

    .venv/bin/python benchmarks/bench_scale.py [--clinics 20] [--push-s 60] [--probe-every-s 15] [--configs one,two,two-kill]

Writes benchmarks/results/scale.json. Not a test: the JSON says whether the target (stroke latency
under load <= 2x idle) was met.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from pydicom import dcmread  # noqa: E402
from sqlalchemy import create_engine, func, select, text  # noqa: E402

from pacs_gateway.index.models import Delivery, Instance, Series, Study  # noqa: E402
from sample_dicom.cli import main as phantom_main  # noqa: E402
from sample_dicom.synthetic import write_ct_series  # noqa: E402
from tests.peers import StorescpPeer, store_results, storescu_command  # noqa: E402
from tests.peers._common import dcmtk_env  # noqa: E402
from tests.scale.cluster import Cluster, received_sops, write_config  # noqa: E402
from tests.scale.conftest import PG_URL, REDIS_URL, MotoServer  # noqa: E402
from tests.stroke.conftest import SECRET_1, verify_standard_webhook  # noqa: E402
from tests.stroke.receivers import WebhookReceiver  # noqa: E402

CONFIGS = {"one": (1, 2, False), "two": (2, 2, False), "two-kill": (2, 2, True)}  # gateways, workers, kill


# ----------------------------------------------------------------------------- data
def make_pool(root: Path, clinics: int, studies: int) -> dict[int, list[list[Path]]]:
    """Per clinic: alternating head CT (40 images) and X-ray (2 images) studies, 128x128, fresh UIDs."""
    pool: dict[int, list[list[Path]]] = {}
    for c in range(clinics):
        items = []
        for k in range(studies):
            d = root / f"c{c:02d}" / f"s{k:03d}"
            if k % 2 == 0:
                items.append(write_ct_series(d, n_images=40, rows=128, cols=128, patient_id=f"L{c}-{k}",
                                             series_description="HEAD WO CONTRAST", seed=k))
            else:
                items.append(write_ct_series(d, n_images=2, rows=128, cols=128, modality="DX", body_part="CHEST",
                                             series_description="CHEST PA", patient_id=f"L{c}-{k}", seed=k))
        pool[c] = items
    return pool


def make_probes(root: Path, n: int) -> list[list[Path]]:
    out = []
    for i in range(n):
        d = root / f"probe{i:02d}"
        assert phantom_main([str(d), "--size", "128", "--slices", "8", "--times", "30", "--seed", str(100 + i)]) == 0
        out.append(sorted(d.rglob("*.dcm")))
    return out


def push(files: list[Path], port: int, ae: str, timeout: float = 300) -> tuple[list[str], float]:
    """``(files acknowledged with Success, wall time the last answer came)`` of one storescu association."""
    cmd = storescu_command(files, "127.0.0.1", port, ae, "TELERAD", ["-nh"])
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, env=dcmtk_env(), timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return [], time.time()
    return [f for f, st in store_results(r) if st == "Success"], time.time()


# ----------------------------------------------------------------------------- one configuration
class Run:
    def __init__(self, name: str, work: Path, args, pool, probes, hook: WebhookReceiver):
        self.name, self.work, self.args, self.pool, self.probes, self.hook = name, work, args, pool, probes, hook
        self.n_gw, self.n_workers, self.kill = CONFIGS[name]
        self.acked: set[str] = set()
        self.lock = threading.Lock()
        self.probe_results: list[dict] = []
        self.hook_start = len(hook.accepted())  # webhooks before this configuration belong to others

    def setup(self) -> None:
        self.db_name = f"telerad_scale_{uuid.uuid4().hex[:10]}"
        admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as c:
            c.execute(text(f'CREATE DATABASE "{self.db_name}"'))
        admin.dispose()
        self.db_url = PG_URL.rsplit("/", 1)[0] + "/" + self.db_name
        self.moto = MotoServer(self.work / "moto.log").start()
        self.bucket = f"bench-{uuid.uuid4().hex[:10]}"
        self.dest = StorescpPeer(self.work / "dest", aet="LEAD", extra_args=["-uf"]).start()
        clinics = [(f"Clinic {c:02d}", f"CLINIC_{c:02d}") for c in range(self.args.clinics)] + [("Stroke probe", "PROBE")]
        hook_url = self.hook.url
        extra = ("[triage]\nenabled = true\n\n[[oncall]]\nname = \"Bench\"\ntier = 1\n"
                 f"webhook = \"{hook_url}\"\nwebhook_secret = \"{SECRET_1}\"\n")
        config = write_config(self.work / "telerad.toml", db_url=self.db_url, clinics=clinics,
                              destinations=[{"name": "lead", "kind": "dicom", "host": "127.0.0.1",
                                             "port": self.dest.port, "ae_title": "LEAD", "default": True}],
                              quiet_period_s=self.args.quiet_period, extra=extra)
        env = {**self.moto.env(self.bucket), "TELERAD_QUEUE__URL": REDIS_URL,
               "TELERAD_QUEUE__NAME": f"bench-{uuid.uuid4().hex[:8]}", "TELERAD_LOG_LEVEL": "WARNING",
               "TELERAD_ALERTS__PUBLIC_URL": "http://127.0.0.1:9"}
        self.cluster = Cluster(self.work / "cluster", config, env, echo_ae="PROBE")
        self.gateways = [self.cluster.gateway(f"gw{i + 1}") for i in range(self.n_gw)]
        self.workers = [self.cluster.worker(f"w{i + 1}") for i in range(self.n_workers)]
        t0 = time.monotonic()
        self.cluster.start(*[p.name for p in self.gateways + self.workers], timeout=180)
        self.startup_s = time.monotonic() - t0
        self.engine = create_engine(self.db_url, pool_size=2)

    def teardown(self) -> None:
        try:
            self.cluster.stop()
        finally:
            self.engine.dispose()
            self.dest.stop()
            self.moto.stop()
            admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
            with admin.connect() as c:
                c.execute(text(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{self.db_name}'"))
                c.execute(text(f'DROP DATABASE IF EXISTS "{self.db_name}"'))
            admin.dispose()

    def live_ports(self) -> list[int]:
        return [g.dicom_port for g in self.gateways if g.proc and g.proc.poll() is None]

    # probes -----------------------------------------------------------------------------
    def probe(self, files: list[Path], port: int, phase: str) -> None:
        ok, _ = push(files, port, "PROBE")
        if len(ok) < len(files) and self.live_ports():  # its gateway was killed: the modality fails over
            ok += push([f for f in map(str, files) if f not in set(ok)], self.live_ports()[0], "PROBE")[0]
        study = str(dcmread(files[0], stop_before_pixels=True).StudyInstanceUID)
        with self.lock:
            self.acked |= set(ok)
        self.probe_results.append({"phase": phase, "study": study, "images": len(files), "acked": len(ok)})

    def measure_probes(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for r in self.probe_results:
            if "delivery_s" in r:
                continue
            r.update(self._probe_times(r["study"], r["acked"], deadline))  # what the gateways acknowledged

    def _probe_times(self, study: str, n: int, deadline: float) -> dict:
        out: dict = {}
        while time.monotonic() < deadline:
            with self.engine.connect() as c:
                last = c.execute(select(func.max(Instance.received_at)).join(Series, Series.id == Instance.series_id)
                                 .join(Study, Study.id == Series.study_id)
                                 .where(Study.study_uid == study, Series.kind == "ctp")).scalar()
                rows = c.execute(select(Delivery.state, Delivery.delivered_at).join(Instance, Instance.id == Delivery.instance_id)
                                 .join(Series, Series.id == Instance.series_id).join(Study, Study.id == Series.study_id)
                                 .where(Study.study_uid == study, Series.kind == "ctp")).all()
            alert = [q for q in self.hook.accepted()[self.hook_start:] if _is_triage_alert(q["body"], study)]
            if last is not None and len(rows) >= n and all(s == "delivered" for s, _ in rows) and alert:
                last_ts = _ts(last)
                body = verify_standard_webhook(SECRET_1, alert[0])
                out = {"delivery_s": round(max(_ts(d) for _, d in rows) - last_ts, 3),
                       "alert_s": round(alert[0]["at"] - last_ts, 3), "alert_type": body.get("type")}
                with self.engine.connect() as c:  # where the time went
                    done = c.execute(select(func.max(Series.completed_at)).join(Study, Study.id == Series.study_id)
                                     .where(Study.study_uid == study, Series.kind == "ctp")).scalar()
                    t = c.execute(text("SELECT min(started_at), min(finished_at) FROM triage_runs WHERE study_uid = :u"),
                                  {"u": study}).first()
                    out["triage_reason"] = c.execute(text("SELECT max(reason) FROM triage_runs WHERE study_uid = :u"),
                                                     {"u": study}).scalar()
                    made = c.execute(text("SELECT min(created_at) FROM alerts WHERE study_uid = :u AND type LIKE "
                                          "'stroke.triage%'"), {"u": study}).scalar()
                first = min(_ts(d) for _, d in rows)
                out["breakdown_s"] = {
                    "complete": round(_ts(done) - last_ts, 3) if done else None,
                    "first_delivered": round(first - last_ts, 3),
                    "triage_started": round(_ts(t[0]) - last_ts, 3) if t and t[0] else None,
                    "alert_created": round(_ts(made) - last_ts, 3) if made else None}
                break
            time.sleep(0.25)
        return out or {"timeout": True}

    # the load ---------------------------------------------------------------------------
    def clinic_loop(self, c: int, stop_at: float, counts: dict) -> None:
        ports = self.live_ports()
        port = ports[c % len(ports)]
        for files in self.pool[c]:
            if time.monotonic() >= stop_at:
                break
            ok, _ = push([str(f) for f in files], port, f"CLINIC_{c:02d}")
            if len(ok) < len(files):  # the gateway died: fail over and send what was not acknowledged
                ports = self.live_ports()
                port = ports[c % len(ports)]
                rest = [str(f) for f in files if str(f) not in set(ok)]
                ok += push(rest, port, f"CLINIC_{c:02d}")[0]
            with self.lock:
                self.acked |= set(ok)
                counts[c] = counts.get(c, 0) + len(ok)

    def run(self) -> dict:
        result: dict = {"gateways": self.n_gw, "workers": self.n_workers, "sigkill": self.kill}
        result["startup_s"] = round(self.startup_s, 1)
        probes = iter(self.probes)
        self.probe(next(probes), self.gateways[0].dicom_port, "warmup")  # first triage and lanes start cold
        self.measure_probes(timeout=180)
        for _ in range(self.args.idle_probes):
            self.probe(next(probes), self.gateways[0].dicom_port, "idle")
            self.measure_probes(timeout=180)
        counts: dict[int, int] = {}
        t0 = time.monotonic()
        stop_at = t0 + self.args.push_s
        threads = [threading.Thread(target=self.clinic_loop, args=(c, stop_at, counts), daemon=True)
                   for c in range(self.args.clinics)]
        for t in threads:
            t.start()
        killed_at = None
        next_probe, i = t0 + 5, 0
        probe_threads = []
        while time.monotonic() < stop_at:
            if self.kill and killed_at is None and time.monotonic() >= t0 + self.args.push_s / 2:
                self.gateways[-1].kill()
                self.workers[-1].kill()
                killed_at = round(time.monotonic() - t0, 1)
            if time.monotonic() >= next_probe:
                files = next(probes, None)
                if files is not None:
                    ports = self.live_ports()
                    th = threading.Thread(target=self.probe, args=(files, ports[i % len(ports)], "load"), daemon=True)
                    th.start()
                    probe_threads.append(th)
                    i += 1
                next_probe += self.args.probe_every_s
            time.sleep(0.1)
        for t in threads + probe_threads:
            t.join(timeout=600)
        push_s = time.monotonic() - t0
        load_images = sum(counts.values())
        result.update(push_s=round(push_s, 1), load_images_acked=load_images,
                      images_per_s=round(load_images / push_s, 1), killed_at_s=killed_at)
        self.measure_probes(timeout=300)
        # everything acknowledged delivered (bounded drain)
        drain0 = time.monotonic()
        states: dict = {}
        while time.monotonic() - drain0 < 600:
            with self.engine.connect() as c:
                states = dict(c.execute(select(Delivery.state, func.count(Delivery.id)).group_by(Delivery.state)).all())
                indexed = c.execute(select(func.count(Instance.id))).scalar()
            if set(states) <= {"delivered"} and states.get("delivered", 0) >= len(self.acked):
                break
            time.sleep(1.0)
        result["drain_after_push_s"] = round(time.monotonic() - drain0, 1)
        result["ledger_states"] = states
        result["probes"] = self.probe_results
        for phase in ("idle", "load"):
            rows = [r for r in self.probe_results if r["phase"] == phase and "delivery_s" in r]
            if rows:
                result[f"{phase}_delivery_median_s"] = statistics.median(r["delivery_s"] for r in rows)
                result[f"{phase}_alert_median_s"] = statistics.median(r["alert_s"] for r in rows)
        result["exactly_once"] = self.check_exactly_once(indexed)
        return result

    def check_exactly_once(self, indexed: int) -> dict:
        sop_of = {f: str(dcmread(f, stop_before_pixels=True, specific_tags=["SOPInstanceUID"]).SOPInstanceUID)
                  for f in self.acked}
        with self.engine.connect() as c:
            paths = dict(c.execute(select(Instance.sop_uid, Instance.path)).all())
            pairs = c.execute(select(Delivery.instance_id, Delivery.destination_id, func.count(Delivery.id))
                              .group_by(Delivery.instance_id, Delivery.destination_id)).all()
        acked_sops = set(sop_of.values())
        missing_index = acked_sops - set(paths)
        s3 = self.moto.client()
        keys: set[str] = set()
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket):
            keys |= {o["Key"] for o in page.get("Contents", [])}
        missing_s3 = [s for s in acked_sops if s in paths and paths[s] not in keys]
        got = received_sops(self.dest.directory)
        never = acked_sops - set(got)
        return {"acked": len(acked_sops), "indexed": indexed, "acked_not_indexed": len(missing_index),
                "acked_not_in_s3": len(missing_s3), "ledger_pairs_with_more_than_one_row": sum(1 for *_, n in pairs if n > 1),
                "acked_never_received_by_destination": len(never),
                "destination_resends": sum(n - 1 for n in got.values()),
                "ok": not missing_index and not missing_s3 and not never and all(n == 1 for *_, n in pairs)}


def _is_triage_alert(body: bytes, study: str) -> bool:
    """The probe's triage alert (the same probe files go to every configuration; each has its own webhooks)."""
    try:
        doc = json.loads(body)
    except ValueError:
        return False
    return doc.get("study_instance_uid") == study and str(doc.get("type", "")).startswith("stroke.triage")


def _ts(dt: datetime) -> float:
    return (dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)).timestamp()


# ----------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clinics", type=int, default=20)
    ap.add_argument("--push-s", type=float, default=60.0)
    ap.add_argument("--probe-every-s", type=float, default=15.0)
    ap.add_argument("--idle-probes", type=int, default=2)
    ap.add_argument("--studies-per-clinic", type=int, default=24)
    ap.add_argument("--quiet-period", type=float, default=2.0)
    ap.add_argument("--configs", default="one,two,two-kill")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "scale.json"))
    args = ap.parse_args(argv)
    names = [n for n in args.configs.split(",") if n]
    out: dict = {
        "benchmark": "scale-out: 20 clinics push CT/X-ray to 1 or 2 gateways (+2 workers) on PostgreSQL, Redis, S3 (moto)",
        "command": "python benchmarks/bench_scale.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "when_utc": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "load_avg_at_start": os.getloadavg()},
        "target": "stroke probe latency under load (median, last image -> delivered and -> alert) <= 2x idle",
        "configs": {},
    }
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp, WebhookReceiver() as hook:
        work = Path(tmp)
        t0 = time.monotonic()
        pool = make_pool(work / "pool", args.clinics, args.studies_per_clinic)
        n_probes = 1 + args.idle_probes + int(args.push_s // args.probe_every_s) + 1
        probes = make_probes(work / "probes", n_probes)
        out["data"] = {"pool_images": sum(len(s) for c in pool.values() for s in c),
                       "probe_images": len(probes[0]), "generate_s": round(time.monotonic() - t0, 1)}
        for name in names:
            run_dir = work / name
            run_dir.mkdir()
            run = Run(name, run_dir, args, pool, probes, hook)
            print(f"[{name}] starting", flush=True)
            run.setup()
            try:
                out["configs"][name] = run.run()
            finally:
                run.teardown()
            print(f"[{name}] {json.dumps({k: v for k, v in out['configs'][name].items() if k != 'probes'})}", flush=True)
    c = out["configs"]
    summary: dict = {}
    if "one" in c and "two" in c:
        summary["images_per_s_two_over_one"] = round(c["two"]["images_per_s"] / max(c["one"]["images_per_s"], 1e-9), 2)
    for name, r in c.items():
        if "idle_delivery_median_s" in r and "load_delivery_median_s" in r:
            summary[name] = {
                "delivery_load_over_idle": round(r["load_delivery_median_s"] / r["idle_delivery_median_s"], 2),
                "alert_load_over_idle": round(r["load_alert_median_s"] / r["idle_alert_median_s"], 2)}
            summary[name]["target_met"] = (summary[name]["delivery_load_over_idle"] <= 2.0
                                           and summary[name]["alert_load_over_idle"] <= 2.0)
        summary.setdefault(name, {})["exactly_once_ok"] = r["exactly_once"]["ok"]
    out["summary"] = summary
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2, default=str) + "\n")
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
