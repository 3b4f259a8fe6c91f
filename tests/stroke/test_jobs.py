"""Triage jobs in an in-process gateway: a one-series-per-time-point CTP, and a worker process that dies."""

from __future__ import annotations

import os
import signal

import pytest
from sqlalchemy import select

from stroke.models import Alert, TriageRun
from telerad.app import build_gateway
from tests.gateway.conftest import CLINIC_AE as GATEWAY_AE
from tests.gateway.conftest import make_settings
from tests.peers import LOOPBACK, have_dcmtk, run_storescu, stored_ok
from tests.routing.conftest import wait_until
from tests.stroke.conftest import SECRET_1, contact, verify_standard_webhook, write_phantom

pytestmark = pytest.mark.skipif(not have_dcmtk(), reason="needs dcmtk")


def _runs(gw) -> list[TriageRun]:
    with gw.sessions() as s:
        return list(s.execute(select(TriageRun).order_by(TriageRun.id)).scalars())


def _alerts(gw) -> list[Alert]:
    with gw.sessions() as s:
        return list(s.execute(select(Alert)).scalars())


def test_one_series_per_time_point_gives_one_analysis_and_one_alert(tmp_path, webhook):
    files = write_phantom(tmp_path / "ctp", "--seed", "24", "--layout", "per_timepoint")
    # This study used to be analysed twice in some CI runs (29 time points, then 30: two alerts): the runner read the
    # CTP series and "anything still arriving" in two statements, and the last series completed between them
    # (stroke.runner._inputs now reads them once). The failure message lists the done runs should it recur.
    gw = build_gateway(make_settings(tmp_path, oncall=[contact("Dr A", 1, webhook)], **{"dicom.quiet_period_s": 3.0}))
    gw.start()
    try:
        assert len(stored_ok(run_storescu(files, LOOPBACK, gw.settings.dicom.port, GATEWAY_AE, "TELERAD"))) == 240
        body = verify_standard_webhook(SECRET_1, webhook.wait(1, 90)[0])
        assert body["type"] == "stroke.triage" and body["result"]["status"] == "ok"
        wait_until(lambda: len(_runs(gw)) == 30 and all(r.state in ("done", "covered") for r in _runs(gw)), 90,
                   what="every run done or covered")
        states = sorted(r.state for r in _runs(gw))
        assert states.count("done") == 1 and states.count("covered") == 29, [
            (r.series_uid, r.state, len(r.source_series or []), r.queued_at, r.started_at, r.finished_at, r.attempts)
            for r in _runs(gw) if r.state == "done"]
        (done,) = [r for r in _runs(gw) if r.state == "done"]
        assert len(done.source_series) == 30
        assert len(_alerts(gw)) == 1 and len(webhook.accepted()) == 1
    finally:
        gw.stop()


def _time_point(path) -> int:
    import pydicom

    return int(pydicom.dcmread(path, stop_before_pixels=True).TemporalPositionIdentifier)


def test_images_arriving_after_the_analysis_give_an_updated_alert_that_supersedes_the_first(tmp_path, webhook):
    """A modality sends 20 of a CTP's 30 time points, pauses past the quiet period (the study is analysed and alerted),
    then sends the rest: the series is analysed again, and the stroke team gets one UPDATED alert naming the first,
    which stops escalating. Before, the second analysis raised nothing and the alert kept the partial numbers (here
    the first reads as unreliable: a fifth of the tissue has not washed out by the 20th time point)."""
    files = write_phantom(tmp_path / "ctp", "--seed", "26")
    early = [f for f in files if _time_point(f) <= 20]
    late = [f for f in files if _time_point(f) > 20]
    assert len(early) == 160 and len(late) == 80
    gw = build_gateway(make_settings(tmp_path, oncall=[contact("Dr A", 1, webhook)], **{"dicom.quiet_period_s": 2.0}))
    gw.start()
    try:
        assert len(stored_ok(run_storescu(early, LOOPBACK, gw.settings.dicom.port, GATEWAY_AE, "TELERAD"))) == 160
        first = verify_standard_webhook(SECRET_1, webhook.wait(1, 90)[0])
        assert "supersedes" not in first and not first["message"].startswith("UPDATED")
        assert len(stored_ok(run_storescu(late, LOOPBACK, gw.settings.dicom.port, GATEWAY_AE, "TELERAD"))) == 80
        second = verify_standard_webhook(SECRET_1, webhook.wait(2, 90)[1])
        assert second["supersedes"] == [first["alert_id"]], second
        assert second["message"].startswith(f"UPDATED, replaces alert #{first['alert_id']} ")
        assert second["type"] == "stroke.triage" and second["result"]["status"] == "ok"
        wait_until(lambda: [r.state for r in _runs(gw)] == ["done"], 60, what="the one run done")
        assert _runs(gw)[0].generation == 2
        alerts = {a.id: a for a in _alerts(gw)}
        assert len(alerts) == 2 and len(webhook.accepted()) == 2
        assert alerts[first["alert_id"]].state == "superseded" and alerts[first["alert_id"]].escalate_at is None
        assert alerts[second["alert_id"]].escalate_at is not None  # the newer alert is the one that escalates
    finally:
        gw.stop()


def test_a_later_analysis_that_matches_no_rule_still_supersedes_the_alert_the_team_got(tmp_path, webhook):
    """Only failed or unreliable analyses alert here. The partial study alerts; the complete one is reliable and matches
    no rule, yet the team is told (an UPDATED alert that needs no acknowledgement), and the first stops escalating."""
    files = write_phantom(tmp_path / "ctp", "--seed", "26")
    early = [f for f in files if _time_point(f) <= 20]
    late = [f for f in files if _time_point(f) > 20]
    rules = [{"name": "failed only", "on": "triage_failed", "tier": 1, "escalate": True}]
    gw = build_gateway(make_settings(tmp_path, oncall=[contact("Dr A", 1, webhook)],
                                     **{"dicom.quiet_period_s": 2.0, "alerts.rules": rules}))
    gw.start()
    try:
        assert len(stored_ok(run_storescu(early, LOOPBACK, gw.settings.dicom.port, GATEWAY_AE, "TELERAD"))) == 160
        first = verify_standard_webhook(SECRET_1, webhook.wait(1, 90)[0])
        assert first["type"] == "stroke.triage_failed"
        assert len(stored_ok(run_storescu(late, LOOPBACK, gw.settings.dicom.port, GATEWAY_AE, "TELERAD"))) == 80
        second = verify_standard_webhook(SECRET_1, webhook.wait(2, 90)[1])
        assert second["type"] == "stroke.triage" and second["supersedes"] == [first["alert_id"]]
        assert second["result"]["quality"]["reliable"] and second["message"].startswith("UPDATED, replaces alert #")
        alerts = {a.id: a for a in _alerts(gw)}
        assert alerts[second["alert_id"]].rule == "update: the later analysis matches no rule"
        assert alerts[second["alert_id"]].requires_ack is False and alerts[second["alert_id"]].escalate_at is None
        assert alerts[first["alert_id"]].state == "superseded" and alerts[first["alert_id"]].escalate_at is None
    finally:
        gw.stop()


def test_a_resent_study_is_analysed_again_but_pages_nobody_twice(tmp_path, webhook):
    """The modality resends the whole CTP, re-encoded (implicit VR: other bytes, the same images): the new versions
    make the series analysed again (generation 2), with the same result, so the team gets no second page; the first
    alert is confirmed (a step) and keeps escalating. Before, the resend raised an UPDATED alert with the same
    numbers. (A byte-identical resend is a duplicate and is not analysed again.)"""
    import time

    import pydicom

    from stroke.models import AlertStep

    files = write_phantom(tmp_path / "ctp", "--seed", "26")
    resent = []
    for i, f in enumerate(files):
        ds = pydicom.dcmread(f)
        ds.file_meta.TransferSyntaxUID = pydicom.uid.ImplicitVRLittleEndian
        resent.append(tmp_path / "resent" / f"{i:04d}.dcm")
        resent[-1].parent.mkdir(exist_ok=True)
        ds.save_as(resent[-1], implicit_vr=True, little_endian=True, enforce_file_format=True)
    assert resent[0].read_bytes() != files[0].read_bytes()
    gw = build_gateway(make_settings(tmp_path, oncall=[contact("Dr A", 1, webhook)], **{"dicom.quiet_period_s": 2.0}))
    gw.start()
    try:
        assert len(stored_ok(run_storescu(files, LOOPBACK, gw.settings.dicom.port, GATEWAY_AE, "TELERAD"))) == 240
        first = verify_standard_webhook(SECRET_1, webhook.wait(1, 90)[0])
        wait_until(lambda: [(r.state, r.generation) for r in _runs(gw)] == [("done", 1)], 60, what="the first run")
        assert len(stored_ok(run_storescu(resent, LOOPBACK, gw.settings.dicom.port, GATEWAY_AE, "TELERAD"))) == 240
        wait_until(lambda: [(r.state, r.generation) for r in _runs(gw)] == [("done", 2)], 90,
                   what="the second analysis done")

        def confirmed():
            with gw.sessions() as s:
                return s.execute(select(AlertStep).where(AlertStep.alert_id == first["alert_id"],
                                                         AlertStep.step == "confirmed")).scalar()
        step = wait_until(confirmed, 30, what="the confirmed step")
        assert "gave the same result" in step.detail
        time.sleep(1.0)  # the alert worker polls every 0.1-1 s: a second page would have gone out by now
        assert len(webhook.accepted()) == 1 and len(_alerts(gw)) == 1
        (alert,) = _alerts(gw)
        assert alert.state != "superseded" and alert.escalate_at is not None
    finally:
        gw.stop()


def test_a_killed_worker_process_is_replaced_and_the_job_rerun(tmp_path, webhook):
    files = write_phantom(tmp_path / "ctp", "--seed", "25", "--size", "256")
    gw = build_gateway(make_settings(tmp_path, oncall=[contact("Dr A", 1, webhook)]))
    gw.start()
    try:
        assert len(stored_ok(run_storescu(files, LOOPBACK, gw.settings.dicom.port, GATEWAY_AE, "TELERAD"))) == 240
        wait_until(lambda: _runs(gw) and _runs(gw)[0].state == "running", 60, interval=0.02, what="a running job")
        pids = list(gw.stroke.pool._get()._processes)  # the worker process(es) of the compute pool
        assert pids
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        verify_standard_webhook(SECRET_1, webhook.wait(1, 90)[0])
        wait_until(lambda: _runs(gw)[0].state == "done", 90, what="the re-run to finish")
        (run,) = _runs(gw)
        assert run.status == "ok" and run.attempts == 2 and len(run.objects) == 4
        assert len(_alerts(gw)) == 1
    finally:
        gw.stop()
