"""The alert lifecycle: created -> sent (per channel, with delivery status) -> acknowledged, or escalated.

- :meth:`AlertService.raise_alert` is idempotent on the alert ``key`` (one alert per
  analysis of a series, one pre-alert per study): a second call returns None.
- A later analysis of the same study (more images arrived after the first was analysed) raises a
  new alert that *supersedes* the study's earlier triage alerts, in the same transaction: its
  message starts "UPDATED" and names them (``supersedes`` in the body), and they turn
  ``superseded`` (a step) and stop escalating, so the team acts on the newest numbers only. The runner
  raises such an update even when no rule matches the later result, if the team had been alerted. A later
  analysis that tells the team exactly what its live alert says (same type, rule and message: the same rounded
  volumes, verdicts and warnings, e.g. a modality that resent the series) raises nothing: the live alert keeps
  its escalation clock and gets a ``confirmed`` step, so nobody is paged twice for one finding.
- Each step is an ``alert_steps`` row whose unique (alert, step, tier) key makes it
  impossible to repeat; every step is timestamped.
- ``alert_deliveries`` holds one row per (tier, contact, channel); the
  :mod:`.delivery` worker sends them with retries and marks the tier ``sent``.
- An alert that needs an acknowledgement escalates to the next tier of the roster
  ``alerts.escalation_timeout_s`` after its tier was alerted, exactly once per tier.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from stroke.config import AlertSettings
from stroke.models import Alert, AlertDelivery, AlertStep
from stroke.roster import Roster
from telerad.clock import isoformat, utcnow
from telerad.errors import TeleradError

log = logging.getLogger(__name__)
_MSG_NS = uuid.UUID("0c7c5a57-2f8e-4e0b-9a55-0d1f7e7a1e55")


class AlertError(TeleradError, ValueError):
    exit_code = 2

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


def message_id(alert_key: str, tier: int, contact: str, channel: str) -> str:
    """The ``webhook-id`` of one delivery: stable across retries and restarts."""
    return "msg_" + uuid.uuid5(_MSG_NS, "\0".join((alert_key, str(tier), contact, channel))).hex


def add_step(s: Session, alert_id: int, step: str, tier: int, *, user: str | None = None,
             detail: str | None = None, at: datetime | None = None) -> bool:
    """Record one lifecycle step; False (and nothing written) when it was already recorded."""
    try:
        with s.begin_nested():
            s.add(AlertStep(alert_id=alert_id, step=step, tier=tier, at=at or utcnow(), user=user, detail=detail))
    except IntegrityError:
        return False
    return True


def updated_prefix(ids: list[int]) -> str:
    """The start of the message of an alert that supersedes the alerts ``ids``."""
    return f"UPDATED, replaces alert {', '.join(f'#{i}' for i in ids)} (a later analysis of the study): "


def finding(alert: Alert) -> str:
    """What an alert told the team: its message without the UPDATED prefix (the same text for the same finding)."""
    ids = (alert.body or {}).get("supersedes")
    return alert.message.removeprefix(updated_prefix(ids)) if ids else alert.message


class AlertService:
    def __init__(self, settings: AlertSettings, sessions: sessionmaker, roster: Roster, on_new=None):
        self.settings, self.sessions, self.roster = settings, sessions, roster
        self.on_new = on_new  # called after a new alert or escalation is committed (wakes the sender)

    # creating ---------------------------------------------------------------------
    def raise_alert(self, *, key: str, type: str, rule: str | None, study_uid: str, series_uid: str | None,
                    clinic: str | None, message: str, body: dict, requires_ack: bool, tier: int = 1,
                    triage_run_id: int | None = None, supersedes_types: tuple[str, ...] = (),
                    only_to_supersede: bool = False) -> int | None:
        """Create the alert and its tier's deliveries; None when ``key`` exists (a duplicate run).

        supersedes_types : the study's earlier alerts of these types (not yet superseded) are superseded by
        this one: named in its message and body, marked ``superseded`` and no longer escalated.
        only_to_supersede : raise it only if there is such an earlier alert (else None), decided in the same
        transaction. When the newest such alert already says the same (type, rule and message), nothing is
        raised (None) and that alert gets a ``confirmed`` step instead."""
        now = utcnow()
        try:
            with self.sessions.begin() as s:
                earlier = list(s.execute(select(Alert).where(
                    Alert.study_uid == study_uid, Alert.type.in_(supersedes_types), Alert.state != "superseded")
                    .order_by(Alert.id)).scalars()) if supersedes_types else []
                if only_to_supersede and not earlier:
                    return None
                if earlier and (earlier[-1].type, earlier[-1].rule, finding(earlier[-1])) == (type, rule, message):
                    live = earlier[-1]
                    add_step(s, live.id, "confirmed", live.tier, at=now,
                             detail=f"a later analysis of the study ({key}) gave the same result")
                    log.info("alert %d confirmed by a later analysis (%s): the same result, not raised again",
                             live.id, key)
                    return None
                if earlier:
                    message = updated_prefix([a.id for a in earlier]) + message
                    body = {**body, "message": message, "supersedes": [a.id for a in earlier]}
                alert = Alert(key=key, type=type, rule=rule, study_uid=study_uid, series_uid=series_uid,
                              triage_run_id=triage_run_id, clinic=clinic, message=message, body=body,
                              state="created", tier=tier, requires_ack=requires_ack, created_at=now)
                s.add(alert)
                s.flush()
                add_step(s, alert.id, "created", tier, at=now, detail=message)
                self._deliveries_for_tier(s, alert, tier, now)
                alert_id = alert.id
                for old in earlier:
                    old.state, old.escalate_at = "superseded", None
                    add_step(s, old.id, "superseded", old.tier, at=now, detail=f"by alert {alert_id}, a later "
                                                                              "analysis of the study")
        except IntegrityError:
            log.info("alert %s already exists; not raised again", key)
            return None
        log.warning("ALERT %d %s: %s", alert_id, type, message)
        if self.on_new:
            self.on_new()
        return alert_id

    def _deliveries_for_tier(self, s: Session, alert: Alert, tier: int, now: datetime) -> int:
        contacts = self.roster.tier(tier)
        n = 0
        for c in contacts:
            for channel, target in c.channels():
                if channel == "email" and not self.settings.smtp.host:
                    add_step(s, alert.id, "undeliverable", tier, detail=f"{c.name}: e-mail, but alerts.smtp.host is not set")
                    log.error("alert %d: cannot e-mail %s: setting 'alerts.smtp.host' is not set", alert.id, c.name)
                    continue
                s.add(AlertDelivery(alert_id=alert.id, tier=tier, contact=c.name, channel=channel, target=target,
                                    secret=None,  # looked up in the roster when sending, never copied here
                                    message_id=message_id(alert.key, tier, c.name, channel), state="pending",
                                    attempts=0, created_at=now, next_attempt_at=now))
                n += 1
        if alert.requires_ack:
            alert.escalate_at = now + timedelta(seconds=self.settings.escalation_timeout_s)
        if n == 0:
            log.error("alert %d: nobody on call in tier %d can be reached (see 'telerad oncall list')", alert.id, tier)
            add_step(s, alert.id, "undeliverable", tier, detail=f"no reachable contact in tier {tier}")
        return n

    # lifecycle ---------------------------------------------------------------------
    def mark_sent(self, alert_id: int, tier: int, detail: str, session: Session | None = None) -> None:
        """Record the "sent" step (once per tier). Pass ``session`` to record it in the caller's transaction,
        as the alert worker does with the delivery row, so that a crash cannot keep one without the other."""
        if session is None:
            with self.sessions.begin() as s:
                self.mark_sent(alert_id, tier, detail, s)
            return
        if add_step(session, alert_id, "sent", tier, detail=detail):
            now = utcnow()
            session.execute(update(Alert).where(Alert.id == alert_id, Alert.sent_at.is_(None)).values(sent_at=now))
            session.execute(update(Alert).where(Alert.id == alert_id, Alert.state.in_(("created", "escalated")),
                                                Alert.tier == tier).values(state="sent"))

    def acknowledge(self, alert_id: int, user: str) -> dict:
        user = (user or "").strip()
        if not user:
            raise AlertError("an acknowledgement needs the name of the user (--user NAME / {\"user\": ...})", 422)
        now = utcnow()
        with self.sessions.begin() as s:
            alert = s.get(Alert, alert_id)
            if alert is None:
                raise AlertError(f"no alert with id {alert_id}", 404)
            if alert.acknowledged_at is not None:
                raise AlertError(f"alert {alert_id} was already acknowledged by {alert.acknowledged_by} "
                                 f"at {isoformat(alert.acknowledged_at)}", 409)
            n = s.execute(update(Alert).where(Alert.id == alert_id, Alert.acknowledged_at.is_(None)).values(
                state="acknowledged", acknowledged_at=now, acknowledged_by=user[:128], escalate_at=None)).rowcount
            if n != 1:
                raise AlertError(f"alert {alert_id} was acknowledged meanwhile", 409)
            add_step(s, alert_id, "acknowledged", alert.tier, user=user[:128], at=now)
        log.info("alert %d acknowledged by %s", alert_id, user)
        return self.get(alert_id)

    def escalate_due(self, now: datetime | None = None) -> list[int]:
        """Escalate every unacknowledged alert whose timeout passed; returns their ids."""
        now = now or utcnow()
        with self.sessions() as s:
            due = s.execute(select(Alert.id, Alert.tier).where(
                Alert.requires_ack.is_(True), Alert.acknowledged_at.is_(None), Alert.escalate_at.is_not(None),
                Alert.escalate_at <= now)).all()
        done = []
        for alert_id, tier in due:
            nxt = self.roster.next_tier(tier)
            with self.sessions.begin() as s:
                if nxt is None:
                    s.execute(update(Alert).where(Alert.id == alert_id, Alert.tier == tier).values(escalate_at=None))
                    add_step(s, alert_id, "unanswered", tier, detail=f"no acknowledgement and no tier above {tier}")
                    log.error("alert %d: not acknowledged and no on-call tier above %d to escalate to", alert_id, tier)
                    continue
                n = s.execute(update(Alert).where(Alert.id == alert_id, Alert.tier == tier,
                                                  Alert.acknowledged_at.is_(None))
                              .values(tier=nxt, state="escalated")).rowcount
                if n != 1 or not add_step(s, alert_id, "escalated", nxt, at=now,
                                          detail=f"no acknowledgement from tier {tier} within "
                                                 f"{self.settings.escalation_timeout_s:g} s"):
                    continue
                alert = s.get(Alert, alert_id)
                self._deliveries_for_tier(s, alert, nxt, now)
            log.warning("alert %d escalated to tier %d", alert_id, nxt)
            done.append(alert_id)
        return done

    # reading -----------------------------------------------------------------------
    def get(self, alert_id: int) -> dict:
        with self.sessions() as s:
            alert = s.get(Alert, alert_id)
            if alert is None:
                raise AlertError(f"no alert with id {alert_id}", 404)
            return alert_dict(s, alert, full=True)

    def list(self, limit: int = 100, study_uid: str | None = None) -> list[dict]:
        with self.sessions() as s:
            q = select(Alert).order_by(Alert.id.desc()).limit(limit)
            if study_uid:
                q = q.where(Alert.study_uid == study_uid)
            return [alert_dict(s, a) for a in s.execute(q).scalars()]


def newest_step_id(s: Session) -> int:
    """The id of the newest lifecycle step of any alert (0 when there is none)."""
    return s.execute(select(func.max(AlertStep.id))).scalar() or 0


def step_events(s: Session, after: int, limit: int = 200) -> list[tuple[int, str, dict]]:
    """The lifecycle steps after step id ``after``, oldest first, as ``(step id, event name, data)``.

    The event name is ``alert.<step>`` (``alert.created``, ``alert.sent``, ...); the data names the alert,
    its study and its state now, and says it is an automated result.
    """
    rows = s.execute(select(AlertStep, Alert).join(Alert, Alert.id == AlertStep.alert_id)
                     .where(AlertStep.id > after).order_by(AlertStep.id).limit(limit)).all()
    return [(st.id, f"alert.{st.step}", {
        "alert_id": a.id, "type": a.type, "step": st.step, "tier": st.tier, "at": isoformat(st.at),
        "user": st.user, "detail": st.detail, "state": a.state, "study_instance_uid": a.study_uid,
        "clinic": a.clinic, "message": a.message, "automated_result": True}) for st, a in rows]


def alert_dict(s: Session, a: Alert, full: bool = False) -> dict:
    steps = s.execute(select(AlertStep).where(AlertStep.alert_id == a.id).order_by(AlertStep.id)).scalars()
    deliveries = s.execute(select(AlertDelivery).where(AlertDelivery.alert_id == a.id)
                           .order_by(AlertDelivery.id)).scalars()
    out = {
        "id": a.id, "type": a.type, "rule": a.rule, "state": a.state, "tier": a.tier,
        "study_instance_uid": a.study_uid, "series_instance_uid": a.series_uid, "clinic": a.clinic,
        "message": a.message, "requires_ack": a.requires_ack, "created_at": isoformat(a.created_at),
        "sent_at": isoformat(a.sent_at), "acknowledged_at": isoformat(a.acknowledged_at), "acknowledged_by": a.acknowledged_by,
        "escalate_at": isoformat(a.escalate_at),
        "steps": [{"step": st.step, "tier": st.tier, "at": isoformat(st.at), "user": st.user, "detail": st.detail}
                  for st in steps],
        "deliveries": [{"tier": d.tier, "contact": d.contact, "channel": d.channel, "state": d.state,
                        "attempts": d.attempts, "last_error": d.last_error, "delivered_at": isoformat(d.delivered_at)}
                       for d in deliveries],
    }
    if full:
        out["body"] = a.body
    return out


def count_alerts(sessions: sessionmaker) -> int:
    with sessions() as s:
        return s.execute(select(func.count(Alert.id))).scalar_one()
