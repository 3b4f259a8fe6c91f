"""Alert lifecycle against real loopback receivers: escalation exactly once, ack stops it, retries keep the id."""

from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import select

from stroke.models import AlertDelivery
from telerad.app import build_gateway
from stroke.alerts import AlertError
from tests.gateway.conftest import make_settings
from tests.routing.conftest import wait_until
from tests.stroke.conftest import SECRET_1, SECRET_2, contact, verify_standard_webhook
from tests.stroke.receivers import WebhookReceiver

FAST = {"alerts.escalation_timeout_s": 1.5, "alerts.poll_s": 0.1, "alerts.retry_initial_s": 0.2,
        "alerts.retry_max_delay_s": 0.5, "triage.enabled": False}


@pytest.fixture
def two_tiers(tmp_path):
    with WebhookReceiver() as a, WebhookReceiver() as b:
        gw = build_gateway(make_settings(tmp_path, oncall=[contact("Dr A", 1, a), contact("Dr B", 2, b, SECRET_2)], **FAST))
        gw.start()
        try:
            yield gw, a, b
        finally:
            gw.stop()


def _raise(gw, key="triage:1.2.3:1.0.0"):
    body = {"type": "stroke.triage", "study_instance_uid": "1.2.3", "clinic": None, "result": None}
    return gw.stroke.alerts.raise_alert(key=key, type="stroke.triage", rule="perfusion deficit", study_uid="1.2.3",
                                        series_uid="1.2.3.4", clinic=None, message="test alert", body=body,
                                        requires_ack=True, tier=1)


def _steps(gw, alert_id):
    return [(s["step"], s["tier"]) for s in gw.stroke.alerts.get(alert_id)["steps"]]


def test_no_ack_escalates_to_the_next_tier_exactly_once(two_tiers):
    gw, a, b = two_tiers
    alert_id = _raise(gw)
    assert _raise(gw) is None  # the same key again: no second alert
    first = verify_standard_webhook(SECRET_1, a.wait(1, 10)[0])
    assert first["alert_id"] == alert_id and first["tier"] == 1
    t0 = time.monotonic()
    second = verify_standard_webhook(SECRET_2, b.wait(1, 15)[0])
    assert second["alert_id"] == alert_id and second["tier"] == 2
    assert time.monotonic() - t0 >= 1.0  # not before the timeout
    time.sleep(3.5)  # more than two further timeouts: nothing is repeated
    assert len(a.accepted()) == 1 and len(b.accepted()) == 1
    assert _steps(gw, alert_id) == [("created", 1), ("sent", 1), ("escalated", 2), ("sent", 2), ("unanswered", 2)]
    acked = gw.stroke.alerts.acknowledge(alert_id, "Dr B")
    assert acked["state"] == "acknowledged" and acked["tier"] == 2
    with pytest.raises(AlertError, match="already acknowledged by Dr B"):
        gw.stroke.alerts.acknowledge(alert_id, "Dr A")


def test_an_ack_stops_the_escalation(two_tiers):
    gw, a, b = two_tiers
    alert_id = _raise(gw)
    a.wait(1, 10)
    wait_until(lambda: ("sent", 1) in _steps(gw, alert_id), 5, what="the sent step")
    gw.stroke.alerts.acknowledge(alert_id, "Dr A")
    time.sleep(3.0)  # two escalation timeouts
    assert b.accepted() == [] and len(a.accepted()) == 1
    assert _steps(gw, alert_id) == [("created", 1), ("sent", 1), ("acknowledged", 1)]
    assert gw.stroke.alerts.get(alert_id)["acknowledged_by"] == "Dr A"


def test_a_failing_receiver_is_retried_with_backoff_under_one_webhook_id(tmp_path):
    with WebhookReceiver(fail_first=2) as hook:
        gw = build_gateway(make_settings(tmp_path, oncall=[contact("Dr A", 1, hook)], **FAST))
        gw.start()
        try:
            alert_id = _raise(gw)
            (ok,) = hook.wait(1, 20)
            verify_standard_webhook(SECRET_1, ok)
            assert len(hook.requests) == 3 and len({r["headers"]["webhook-id"] for r in hook.requests}) == 1
            gaps = [b["at"] - a["at"] for a, b in zip(hook.requests, hook.requests[1:])]
            assert all(g >= 0.15 for g in gaps)  # backed off, not hammered
            def delivery():
                with gw.sessions() as s:
                    d = s.execute(select(AlertDelivery).where(AlertDelivery.alert_id == alert_id)).scalar_one()
                return d if d.state != "sending" else None
            d = wait_until(delivery, 5, what="the delivery recorded")
            assert (d.state, d.attempts, d.last_error) == ("delivered", 3, None)
        finally:
            gw.stop()


def test_a_crash_cannot_keep_the_delivery_without_its_sent_step(tmp_path, monkeypatch):
    """The delivery row and the alert's "sent" step commit in one transaction. The process dying between
    them (simulated by the step's write failing) leaves the delivery "sending", so a restart sends it again
    under the same webhook-id and records the step; it is never "delivered" with the alert still "created"."""
    with WebhookReceiver() as hook:
        gw = build_gateway(make_settings(tmp_path, oncall=[contact("Dr A", 1, hook)], **FAST))
        died = threading.Event()

        def dies_here(*args, **kwargs):
            died.set()
            raise RuntimeError("the process dies between the delivery and its step")

        monkeypatch.setattr(gw.stroke.alerts, "mark_sent", dies_here)
        gw.start()
        try:
            alert_id = _raise(gw)
            hook.wait(1, 10)
            assert died.wait(10)
            with gw.sessions() as s:
                d = s.execute(select(AlertDelivery).where(AlertDelivery.alert_id == alert_id)).scalar_one()
            assert d.state == "sending" and d.delivered_at is None
            assert _steps(gw, alert_id) == [("created", 1)]
        finally:
            gw.stop()


def test_a_later_analysis_supersedes_the_studys_earlier_alert_which_stops_escalating(two_tiers):
    """More images of a study arrived after it was analysed and alerted: the new analysis's alert says UPDATED and
    names the one it replaces, which turns superseded and never escalates; only the newer alert reaches tier 2."""
    gw, a, b = two_tiers
    first = _raise(gw)
    verify_standard_webhook(SECRET_1, a.wait(1, 10)[0])
    body = {"type": "stroke.triage", "study_instance_uid": "1.2.3", "clinic": None, "result": None, "message": "m2"}
    second = gw.stroke.alerts.raise_alert(key="triage:1.2.3:1.0.0:g2", type="stroke.triage", rule="perfusion deficit",
                                          study_uid="1.2.3", series_uid="1.2.3.4", clinic=None, message="m2",
                                          body=body, requires_ack=True, tier=1,
                                          supersedes_types=("stroke.triage", "stroke.triage_failed"))
    new = verify_standard_webhook(SECRET_1, a.wait(2, 10)[1])
    assert new["alert_id"] == second and new["supersedes"] == [first]
    assert new["message"] == f"UPDATED, replaces alert #{first} (a later analysis of the study): m2"
    old = gw.stroke.alerts.get(first)
    assert old["state"] == "superseded" and ("superseded", 1) in _steps(gw, first)
    escalated = verify_standard_webhook(SECRET_2, b.wait(1, 15)[0])
    assert escalated["alert_id"] == second
    time.sleep(2.5)  # more than one further timeout: the superseded alert never escalates
    assert [m["alert_id"] for m in map(lambda r: verify_standard_webhook(SECRET_2, r), b.accepted())] == [second]
    assert "escalated" not in [step for step, _ in _steps(gw, first)]
    # a third analysis replaces the second only: the first is already superseded
    third = gw.stroke.alerts.raise_alert(key="triage:1.2.3:1.0.0:g3", type="stroke.triage", rule="perfusion deficit",
                                         study_uid="1.2.3", series_uid="1.2.3.4", clinic=None, message="m3",
                                         body={**body, "message": "m3"}, requires_ack=True, tier=1,
                                         supersedes_types=("stroke.triage",))
    assert gw.stroke.alerts.get(third)["message"].startswith(f"UPDATED, replaces alert #{second} (")


def test_a_later_analysis_with_the_same_result_pages_nobody_and_confirms_the_live_alert(two_tiers):
    """A modality resent the series and the new analysis says exactly what the live alert says (same type, rule and
    message): no second page, no UPDATED alert; the live alert gets a "confirmed" step and keeps its escalation.
    A later analysis that says something else still supersedes it."""
    gw, a, b = two_tiers
    body = {"type": "stroke.triage", "study_instance_uid": "1.2.3", "clinic": None, "result": None, "message": "m1"}

    def analysis(generation, message, rule="perfusion deficit"):
        return gw.stroke.alerts.raise_alert(
            key=f"triage:1.2.3:1.0.0:g{generation}", type="stroke.triage", rule=rule, study_uid="1.2.3",
            series_uid="1.2.3.4", clinic=None, message=message, body={**body, "message": message},
            requires_ack=True, tier=1, supersedes_types=("stroke.triage", "stroke.triage_failed"))

    first = analysis(1, "m1")
    a.wait(1, 10)
    assert analysis(2, "m1") is None  # the same finding
    assert ("confirmed", 1) in _steps(gw, first) and gw.stroke.alerts.get(first)["state"] != "superseded"
    assert verify_standard_webhook(SECRET_2, b.wait(1, 15)[0])["alert_id"] == first  # it still escalates
    assert len(a.accepted()) == 1
    assert analysis(3, "m1", rule="large core") is not None  # another rule: a different finding
    second = analysis(4, "m2")
    assert gw.stroke.alerts.get(second)["message"].startswith("UPDATED, replaces alert #")
    # an UPDATED alert is confirmed by its own finding, without the prefix
    assert analysis(5, "m2") is None and ("confirmed", 1) in _steps(gw, second)
