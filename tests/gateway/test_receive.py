"""Receiving with real DCMTK storescu/echoscu as the modality."""

from __future__ import annotations

import pytest
from pydicom import dcmread

from tests.gateway.conftest import CLINIC_AE, wait_until
from tests.gateway.helpers import dataset_bytes, events, instance_count, series_row, stored_path
from tests.peers import run_echoscu, run_storescu, run_storescu_concurrently, store_results, stored_ok
from sample_dicom.synthetic import write_ct_series


def test_echo_from_registered_clinic(gateway):
    r = run_echoscu("127.0.0.1", gateway.settings.dicom.port, calling_ae=CLINIC_AE, called_ae="TELERAD")
    assert r.returncode == 0, r.stderr


def test_unknown_calling_ae_is_rejected_and_logged(gateway, caplog):
    r = run_echoscu("127.0.0.1", gateway.settings.dicom.port, calling_ae="STRANGER", called_ae="TELERAD")
    assert r.returncode != 0
    assert "Calling AE Title Not Recognized" in (r.stderr + r.stdout)
    assert any("calling AE title 'STRANGER' not recognised" in m for m in caplog.messages)


@pytest.mark.slow
def test_1000_image_series_round_trips_byte_identical(gateway, tmp_path):
    files = write_ct_series(tmp_path / "ct", n_images=1000, rows=512, cols=512)
    r = run_storescu(tmp_path / "ct", "127.0.0.1", gateway.settings.dicom.port, CLINIC_AE, "TELERAD", timeout=600)
    assert len(stored_ok(r)) == 1000, r.stderr[-2000:]
    assert instance_count(gateway) == 1000
    for f in files:
        sop = dcmread(f, stop_before_pixels=True).SOPInstanceUID
        assert dataset_bytes(stored_path(gateway, sop)) == dataset_bytes(f)
    series_uid = dcmread(files[0], stop_before_pixels=True).SeriesInstanceUID
    row = wait_until(lambda: (r := series_row(gateway, series_uid)) is not None and r.state == "complete" and r)
    assert row.instance_count == 1000 and row.kind == "ncct_head"
    with gateway.sessions() as s:
        from sqlalchemy import select

        from pacs_gateway.index.models import Clinic, Instance

        clinics = set(s.execute(select(Clinic.name).join(Instance, Instance.clinic_id == Clinic.id)).scalars())
    assert clinics == {"Test Clinic"}


def test_concurrent_senders(gateway, tmp_path):
    batches = [write_ct_series(tmp_path / f"s{i}", n_images=40, rows=128, cols=128, series_number=i + 1) for i in range(4)]
    results = run_storescu_concurrently(batches, "127.0.0.1", gateway.settings.dicom.port, CLINIC_AE, "TELERAD")
    assert [len(stored_ok(r)) for r in results] == [40, 40, 40, 40]
    assert instance_count(gateway) == 160
    wait_until(lambda: len(events(gateway, "series.complete")) == 4)


def test_series_complete_once_then_updated(gateway, tmp_path):
    files = write_ct_series(tmp_path / "a", n_images=10, rows=64, cols=64)
    port = gateway.settings.dicom.port
    assert len(stored_ok(run_storescu(files[:6], "127.0.0.1", port, CLINIC_AE, "TELERAD"))) == 6
    series_uid = dcmread(files[0], stop_before_pixels=True).SeriesInstanceUID
    wait_until(lambda: len(events(gateway, "series.complete")) == 1)
    assert series_row(gateway, series_uid).state == "complete"
    assert len(stored_ok(run_storescu(files[6:], "127.0.0.1", port, CLINIC_AE, "TELERAD"))) == 4
    wait_until(lambda: len(events(gateway, "series.updated")) == 1)
    row = series_row(gateway, series_uid)
    assert row.state == "complete" and row.instance_count == 10
    assert len(events(gateway, "series.complete")) == 1
    ev = events(gateway, "series.updated")[0]
    assert ev.series_uid == series_uid and ev.payload["instance_count"] == 10


def test_identical_resend_is_a_noop(gateway, tmp_path):
    files = write_ct_series(tmp_path / "a", n_images=5, rows=64, cols=64)
    port = gateway.settings.dicom.port
    for _ in range(2):
        assert len(stored_ok(run_storescu(files, "127.0.0.1", port, CLINIC_AE, "TELERAD"))) == 5
    assert instance_count(gateway) == 5
    assert not events(gateway, "instance.new_version")


def test_different_bytes_keep_both_versions_and_serve_newest(gateway, tmp_path):
    files = write_ct_series(tmp_path / "a", n_images=1, rows=64, cols=64)
    port = gateway.settings.dicom.port
    assert stored_ok(run_storescu(files, "127.0.0.1", port, CLINIC_AE, "TELERAD"))
    ds = dcmread(files[0])
    first = stored_path(gateway, ds.SOPInstanceUID)
    ds.SeriesDescription = "CORRECTED"
    ds.save_as(tmp_path / "v2.dcm", enforce_file_format=True)
    assert stored_ok(run_storescu([tmp_path / "v2.dcm"], "127.0.0.1", port, CLINIC_AE, "TELERAD"))
    assert instance_count(gateway) == 1
    newest = stored_path(gateway, ds.SOPInstanceUID)
    assert newest != first and first.exists() and newest.exists()
    assert dcmread(newest).SeriesDescription == "CORRECTED"
    (ev,) = events(gateway, "instance.new_version")
    assert ev.payload["sop_instance_uid"] == ds.SOPInstanceUID and ev.payload["version"] == 2


def test_disk_high_water_mark_refuses_new_associations(tmp_path):
    from telerad.app import build_gateway
    from tests.gateway.conftest import make_settings

    gw = build_gateway(make_settings(tmp_path, **{"dicom.disk_high_water_pct": 0.001}))
    gw.start()
    try:
        r = run_echoscu("127.0.0.1", gw.settings.dicom.port, calling_ae=CLINIC_AE, called_ae="TELERAD")
        assert r.returncode != 0
        assert "Local Limit Exceeded" in (r.stderr + r.stdout) or "Rejected" in (r.stderr + r.stdout)
    finally:
        gw.stop()


def test_storescu_reports_each_file(gateway, tmp_path):
    files = write_ct_series(tmp_path / "a", n_images=3, rows=64, cols=64)
    r = run_storescu(files, "127.0.0.1", gateway.settings.dicom.port, CLINIC_AE, "TELERAD")
    assert [s for _, s in store_results(r)] == ["Success"] * 3
