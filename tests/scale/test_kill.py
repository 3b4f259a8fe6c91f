"""Two gateways and two workers on PostgreSQL + Redis + S3 (moto); one gateway and one worker SIGKILLed mid-run.

"Exactly once", as tested here, for every image that got a Success status from ``storescu``:

1. **stored**: its index path names an S3 object whose data set is byte-identical to what was sent;
2. **indexed**: one ``instances`` row (the SOP Instance UID is unique), in a series that completed
   exactly once (one ``series.complete`` event per series, also for the series whose images came
   in over both gateways);
3. **delivered**: exactly one ledger row per (instance, destination), in state ``delivered``, and the
   destination (DCMTK ``storescp``) received it. The destination may have received an image more
   than once only where a worker was killed between the destination's answer and the ledger write:
   the lease expired and another worker re-sent it; the ledger still records one delivery. The
   number of such re-sends is bounded by what one worker holds at a time, and printed.

Reduced size for CI: 3 clinics x 4 series x 50 images (64x64). Every wait is bounded.
"""

from __future__ import annotations

import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.uid import generate_uid
from sqlalchemy import create_engine, func, select

from pacs_gateway.index.models import Delivery, Event, Instance, Series
from sample_dicom.synthetic import write_ct_series
from tests.gateway.helpers import dataset_bytes
from tests.peers import StorescpPeer, have_dcmtk, store_results, storescu_command
from tests.peers._common import dcmtk_env
from tests.scale.cluster import Cluster, received_sops, write_config

pytestmark = pytest.mark.skipif(not have_dcmtk(), reason="DCMTK storescu/storescp are needed (.ci/run installs them)")

CLINICS = [("Clinic A", "CLINIC_A"), ("Clinic B", "CLINIC_B"), ("Clinic C", "CLINIC_C")]
SERIES_PER_CLINIC, IMAGES_PER_SERIES = 4, 50


def _series(root: Path, clinic: int) -> list[list[Path]]:
    out = []
    for k in range(SERIES_PER_CLINIC):
        study = generate_uid()
        out.append(write_ct_series(root / f"c{clinic}" / f"s{k}", n_images=IMAGES_PER_SERIES, rows=64, cols=64,
                                   study_uid=study, series_uid=generate_uid(), patient_id=f"P{clinic}{k}"))
    return out


def _push(files: list[Path], port: int, calling_ae: str) -> subprocess.Popen:
    cmd = storescu_command(files, "127.0.0.1", port, calling_ae, "TELERAD", ["-nh"])
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dcmtk_env())


def _finish(procs: list[subprocess.Popen], timeout: float) -> set[str]:
    """Wait for ``storescu`` runs; returns the files that got a Success status."""
    ok: set[str] = set()
    deadline = time.monotonic() + timeout
    for p in procs:
        try:
            out, err = p.communicate(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            out, err = p.communicate(timeout=10)
        ok |= {f for f, status in store_results(subprocess.CompletedProcess(p.args, p.returncode, out, err))
               if status == "Success"}
    return ok


def test_kill_one_gateway_and_one_worker_mid_run(tmp_path, moto, bucket, pg_url, redis_queue):
    series = {c: _series(tmp_path / "src", c) for c in range(3)}
    sop_of = {str(f): str(dcmread(f, stop_before_pixels=True).SOPInstanceUID)
              for c in series for s in series[c] for f in s}
    with StorescpPeer(tmp_path / "dest", aet="LEAD", extra_args=["-uf"]) as dest:
        config = write_config(tmp_path / "telerad.toml", db_url=pg_url, clinics=CLINICS,
                              destinations=[{"name": "lead", "kind": "dicom", "host": "127.0.0.1", "port": dest.port,
                                             "ae_title": "LEAD", "default": True}],
                              extra="[triage]\nenabled = false\n[alerts]\nenabled = false\n")
        env = {**moto.env(bucket), "TELERAD_QUEUE__URL": redis_queue["queue.url"],
               "TELERAD_QUEUE__NAME": redis_queue["queue.name"], "TELERAD_LOG_LEVEL": "INFO"}
        cluster = Cluster(tmp_path / "cluster", config, env, echo_ae="CLINIC_A")
        gw1, gw2 = cluster.gateway("gw1"), cluster.gateway("gw2")
        w1, w2 = cluster.worker("w1"), cluster.worker("w2")
        try:
            cluster.start("gw1", "gw2", "w1", "w2")
            # clinic A -> gw1, clinic B -> gw2, clinic C: every series split, first half gw1, second half gw2
            half = IMAGES_PER_SERIES // 2
            c_first = [f for s in series[2] for f in s[:half]]
            c_second = [f for s in series[2] for f in s[half:]]
            a_files = [f for s in series[0] for f in s]
            runs = [_push(a_files, gw1.dicom_port, "CLINIC_A"),
                    _push([f for s in series[1] for f in s], gw2.dicom_port, "CLINIC_B"),
                    _push(c_first, gw1.dicom_port, "CLINIC_C"), _push(c_second, gw2.dicom_port, "CLINIC_C")]

            engine = create_engine(pg_url)
            total = len(sop_of)

            def indexed() -> int:
                with engine.connect() as c:
                    return c.execute(select(func.count(Instance.id))).scalar()

            def delivered() -> int:
                with engine.connect() as c:
                    return c.execute(select(func.count(Delivery.id)).where(Delivery.state == "delivered")).scalar()

            deadline = time.monotonic() + 90
            while indexed() < total * 0.4 and time.monotonic() < deadline:
                time.sleep(0.05)
            # mid-run: gw1 while its associations are open, w1 while it holds delivery leases
            gw1.kill()

            def w1_sending() -> int:
                with engine.connect() as c:
                    return c.execute(select(func.count(Delivery.id)).where(
                        Delivery.state == "sending", Delivery.lease_owner.like(f"%:{w1.proc.pid}:%"))).scalar()

            deadline = time.monotonic() + 60
            while not w1_sending() and time.monotonic() < deadline:
                time.sleep(0.02)
            w1.kill()
            at_kill = (indexed(), delivered())
            acked = _finish(runs, timeout=120)
            # the modalities that lost gw1 send everything again to gw2 (already stored ones are no-ops)
            resend = [_push([f for f in a_files], gw2.dicom_port, "CLINIC_A"), _push(c_first, gw2.dicom_port, "CLINIC_C")]
            acked |= _finish(resend, timeout=120)
            assert len(acked) == total, f"after failing over every image is acknowledged ({len(acked)} of {total})"

            # every acknowledged image delivered: the killed worker's leases expire and w2 takes over
            deadline = time.monotonic() + 150
            while time.monotonic() < deadline:
                with engine.connect() as c:
                    states = dict(c.execute(select(Delivery.state, func.count(Delivery.id)).group_by(Delivery.state)).all())
                if states.get("delivered", 0) >= total and not set(states) - {"delivered"}:
                    break
                time.sleep(0.5)
            assert states == {"delivered": total}, f"ledger {states}; killed at {at_kill}\n{cluster.logs()}"

            with engine.connect() as c:
                rows = {r.sop_uid: r for r in c.execute(select(Instance.id, Instance.sop_uid, Instance.path, Instance.crc32))}
                per_pair = Counter(c.execute(select(Delivery.instance_id, Delivery.destination_id)).all())
                completes = Counter(c.execute(select(Event.series_uid).where(Event.type == "series.complete")).scalars())
                n_series = c.execute(select(func.count(Series.id))).scalar()
            engine.dispose()
            # 1. stored: the S3 object of every acknowledged image holds the bytes that were sent
            s3 = moto.client()
            for f in acked:
                row = rows[sop_of[f]]
                body = s3.get_object(Bucket=bucket, Key=row.path)["Body"].read()
                assert dataset_bytes(body) == dataset_bytes(Path(f)), f"S3 object {row.path} differs from {f}"
            # 2. indexed once, each series completed once (the split ones too)
            assert set(rows) == set(sop_of.values())
            assert n_series == 3 * SERIES_PER_CLINIC and len(completes) == n_series
            assert max(completes.values()) == 1, f"a series completed twice: {completes.most_common(2)}"
            # 3. delivered: one ledger row per (instance, destination), delivered; received at the destination
            assert len(per_pair) == total and max(per_pair.values()) == 1
            got = received_sops(dest.directory)
            assert set(got) == set(sop_of.values()), f"{len(set(sop_of.values()) - set(got))} image(s) never arrived"
            resent = sum(n - 1 for n in got.values())
            print(f"killed gw1+w1 at {at_kill[0]} indexed / {at_kill[1]} delivered of {total}; "
                  f"destination re-sends after the worker kill: {resent}")
            assert resent <= 2 * 200, "re-sends are bounded by what the killed worker held"
        finally:
            cluster.stop()
