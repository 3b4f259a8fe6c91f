"""Series completion decided once across processes on one PostgreSQL index (``pacs_gateway.presence``).

Two gateways share a database; "another process" is a second :class:`Gateway` with its own owner id.
"""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta, timezone

from pydicom import dcmread
from sqlalchemy import func, select

from pacs_gateway.index.models import Event, Series, SeriesActivity
from pacs_gateway.presence import HOLD_S
from telerad.app import build_gateway
from sample_dicom.synthetic import write_ct_series
from tests.gateway.conftest import CLINIC_AE, make_settings
from tests.peers import run_storescu, stored_ok


def _state(gw, uid):
    with gw.sessions() as s:
        return s.execute(select(Series.state).where(Series.series_uid == uid)).scalar()


def _completes(gw, uid):
    with gw.sessions() as s:
        return s.execute(select(func.count(Event.id)).where(Event.series_uid == uid, Event.type == "series.complete")).scalar()


def test_a_series_held_by_another_gateways_association_is_not_completed(tmp_path, pg_url):
    quiet = 0.5
    a = build_gateway(make_settings(tmp_path / "a", **{"database.url": pg_url, "dicom.quiet_period_s": quiet}))
    b = build_gateway(make_settings(tmp_path / "b", **{"database.url": pg_url, "dicom.quiet_period_s": quiet}))
    a.start()
    try:
        assert a.shared_activity is not None and a.shared_activity.owner != b.shared_activity.owner
        files = write_ct_series(tmp_path / "ct", n_images=4, rows=64, cols=64)
        uid = str(dcmread(files[0], stop_before_pixels=True).SeriesInstanceUID)
        a.activity.touch("assoc-still-open", uid)  # as if a modality kept its association open on gateway A
        assert len(stored_ok(run_storescu(files, "127.0.0.1", a.settings.dicom.port, CLINIC_AE, "TELERAD"))) == 4
        a.shared_activity.publish()
        later = datetime.now(timezone.utc) + timedelta(seconds=30)  # far past the quiet period
        assert b.shared_activity.held_elsewhere() == {uid}
        assert b.writer.complete_quiet_series(now=later) == [], "B must not complete a series A's association holds"
        assert _state(b, uid) == "receiving"

        a.activity.close("assoc-still-open")  # released: held for the quiet period after the release
        a.shared_activity.publish()
        with b.sessions() as s:
            until = s.execute(select(SeriesActivity.hold_until).where(SeriesActivity.series_uid == uid)).scalar()
        assert until <= datetime.now(timezone.utc) + timedelta(seconds=quiet + 0.1)
        deadline = time.monotonic() + 20
        while _state(b, uid) != "complete" and time.monotonic() < deadline:
            b.writer.complete_quiet_series()
            time.sleep(0.1)
        assert _state(b, uid) == "complete" and _completes(b, uid) == 1
        assert a.writer.complete_quiet_series(now=later) == [] and b.writer.complete_quiet_series(now=later) == []
    finally:
        a.stop()
        b.engine.dispose()


def test_rows_of_a_dead_gateway_lapse(tmp_path, pg_url):
    a = build_gateway(make_settings(tmp_path / "a", **{"database.url": pg_url, "dicom.quiet_period_s": 0.2}))
    b = build_gateway(make_settings(tmp_path / "b", **{"database.url": pg_url, "dicom.quiet_period_s": 0.2}))
    try:
        a.activity.touch("open", "1.2.3.4.5")
        a.shared_activity.publish()  # then "killed": nobody refreshes or removes its rows
        assert b.shared_activity.is_busy("1.2.3.4.5")
        assert b.shared_activity.held_elsewhere(datetime.now(timezone.utc) + timedelta(seconds=HOLD_S + 0.1)) == set()
    finally:
        a.engine.dispose()
        b.engine.dispose()


def test_concurrent_completion_by_two_processes_happens_once(tmp_path, pg_url):
    a = build_gateway(make_settings(tmp_path / "a", **{"database.url": pg_url, "dicom.quiet_period_s": 3600}))
    b = build_gateway(make_settings(tmp_path / "b", **{"database.url": pg_url, "dicom.quiet_period_s": 3600}))
    a.start()
    try:
        uids = []
        for k in range(4):
            files = write_ct_series(tmp_path / f"ct{k}", n_images=3, rows=64, cols=64)
            assert len(stored_ok(run_storescu(files, "127.0.0.1", a.settings.dicom.port, CLINIC_AE, "TELERAD"))) == 3
            uids.append(str(dcmread(files[0], stop_before_pixels=True).SeriesInstanceUID))
        a.shared_activity.stop()  # its release rows would hold the series for the (long) quiet period
        later = datetime.now(timezone.utc) + timedelta(hours=2)
        done: dict[str, list[str]] = {}
        start = threading.Barrier(2)

        def run(name, gw):
            start.wait()
            done[name] = gw.writer.complete_quiet_series(now=later)

        threads = [threading.Thread(target=run, args=(n, g)) for n, g in (("a", a), ("b", b))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert sorted(done["a"] + done["b"]) == sorted(uids), "each series completed by exactly one of the two"
        for uid in uids:
            assert _completes(a, uid) == 1
    finally:
        a.stop()
        b.engine.dispose()
