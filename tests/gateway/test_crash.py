"""Crash consistency: SIGKILL mid-transfer loses nothing that was acknowledged."""

from __future__ import annotations

import subprocess

import pytest
from pydicom import dcmread
from sqlalchemy import create_engine, func, select

from pacs_gateway.index.models import Instance, Series
from sample_dicom.synthetic import write_ct_series
from tests.gateway.helpers import dataset_bytes
from tests.peers import dcmtk_env, run_storescu_concurrently, store_results, storescu_command
from tests.serve_process import ServeProcess, wait_for


def _count_files(store):
    return sum(1 for p in store.rglob("*.dcm"))


@pytest.mark.slow
def test_sigkill_mid_transfer_then_restart(tmp_path):
    batches = [
        write_ct_series(tmp_path / f"src{i}", n_images=150, rows=256, cols=256, series_number=i + 1, seed=i)
        for i in range(4)
    ]
    data = tmp_path / "var"
    server = ServeProcess(data, args=["--accept-any-ae", "--no-http"]).start()
    procs = [
        subprocess.Popen(
            storescu_command(b, "127.0.0.1", server.dicom_port, "MODALITY", "TELERAD", ["-nh"]),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dcmtk_env(),
        )
        for b in batches
    ]
    try:
        wait_for(lambda: _count_files(data / "store") >= 120, timeout=120, interval=0.02)
        server.kill()
        outputs = []
        for p in procs:
            out, err = p.communicate(timeout=120)
            outputs.append(subprocess.CompletedProcess(p.args, p.returncode, out, err))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    acknowledged = [f for r in outputs for f, st in store_results(r) if st == "Success"]
    total = sum(len(b) for b in batches)
    assert 0 < len(acknowledged) < total, "the kill should land mid-transfer"

    # restart: every acknowledged instance is present, indexed and intact
    server = ServeProcess(data, args=["--accept-any-ae", "--no-http"], log_name="serve2.log").start()
    try:
        engine = create_engine(f"sqlite:///{data / 'index.sqlite3'}")
        with engine.connect() as conn:
            paths = dict(conn.execute(select(Instance.sop_uid, Instance.path)).all())
        for f in acknowledged:
            sop = dcmread(f, stop_before_pixels=True).SOPInstanceUID
            assert sop in paths, f"acknowledged instance {f} missing after restart"
            assert dataset_bytes(data / "store" / paths[sop]) == dataset_bytes(open(f, "rb").read())
        assert not [p for p in (data / "store" / ".tmp").rglob("*") if p.is_file()], "partial files must be cleaned up"

        # re-sending everything completes the study with no duplicate rows
        results = run_storescu_concurrently(batches, "127.0.0.1", server.dicom_port, "MODALITY", "TELERAD")
        assert all(st == "Success" for r in results for _, st in store_results(r))
        with engine.connect() as conn:
            n, distinct = conn.execute(select(func.count(Instance.id), func.count(Instance.sop_uid.distinct()))).one()
            assert n == distinct == total
            counts = sorted(conn.execute(select(Series.instance_count)).scalars())
            assert counts == [150, 150, 150, 150]
        engine.dispose()
    finally:
        server.stop()
