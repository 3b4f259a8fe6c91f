"""The alert worker: sends due deliveries (retried with exponential backoff) and escalates.

One thread polls every ``alerts.poll_s``: it returns expired leases to ``pending``
(a crash mid-send), leases due rows and sends each in a small thread pool, then
escalates unacknowledged alerts whose timeout passed. A retried webhook keeps its
``webhook-id``, so a receiver that saw the first attempt can drop the second.
"""

from __future__ import annotations

import json
import logging
import random
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

from sqlalchemy import select, update
from sqlalchemy.orm import sessionmaker

from stroke.alerts import AlertService
from stroke.channels import ChannelError, send_email, send_webhook
from stroke.config import AlertSettings
from stroke.models import Alert, AlertDelivery, TriageRun
from stroke.runner import OWNER
from telerad.clock import utcnow
from telerad.secretbox import SecretError

log = logging.getLogger(__name__)
LEASE_S = 120.0


def webhook_body(alert: Alert, tier: int, public_url: str) -> bytes:
    """The exact bytes POSTed (and signed): the alert's body plus its id, tier and acknowledgement link."""
    body = dict(alert.body or {})
    body["links"] = {**(body.get("links") or {}), "ack": f"{public_url}/api/alerts/{alert.id}/ack"}
    return json.dumps({**body, "alert_id": alert.id, "tier": tier}, sort_keys=True, allow_nan=False).encode()


def backoff_s(settings: AlertSettings, attempts: int) -> float:
    base = min(settings.retry_max_delay_s, settings.retry_initial_s * 2 ** max(0, attempts - 1))
    return base * random.uniform(0.8, 1.2)


class AlertWorker:
    fetch = None  # set to the object store's ``fetch`` when it is remote
    def __init__(self, settings: AlertSettings, sessions: sessionmaker, service: AlertService, store_root: Path):
        self.settings, self.sessions, self.service = settings, sessions, service
        self.store_root = Path(store_root)
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="alert-send")

    def start(self) -> None:
        self._stop.clear()
        self.resume_interrupted()
        self._thread = threading.Thread(target=self._run, name="alert-worker", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread:
            self._thread.join(timeout=10)
        self._pool.shutdown(wait=True, cancel_futures=True)

    def resume_interrupted(self) -> int:
        """At start, sends left ``sending`` by a process that died are due again at once.

        The crash may have come after the receiver got the message but before it was recorded;
        the repeat carries the same ``webhook-id`` (and e-mail Message-ID), so receivers drop it,
        and the alert's "sent" step is recorded now instead of after the lease expires.
        Only this host's dead processes' sends (``lease_owner``): a send another live worker
        process is making is left to it, and one of a process on another host to its lease.
        """
        from stroke.jobs import _alive

        host = OWNER.split(":", 1)[0]
        with self.sessions.begin() as s:
            rows = s.execute(select(AlertDelivery.id, AlertDelivery.lease_owner)
                             .where(AlertDelivery.state == "sending")).all()
            dead = [r.id for r in rows if r.lease_owner is None or not _alive(r.lease_owner, host)]
            n = s.execute(update(AlertDelivery).where(AlertDelivery.id.in_(dead), AlertDelivery.state == "sending")
                          .values(state="pending", lease_until=None, lease_owner=None,
                                  next_attempt_at=utcnow())).rowcount if dead else 0
            # older versions copied the webhook secret into each delivery row: scrub those copies
            s.execute(update(AlertDelivery).where(AlertDelivery.secret.is_not(None)).values(secret=None))
        if n:
            log.info("%d alert send(s) interrupted by a restart are due again", n)
        return n

    def notify(self) -> None:
        self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.tick()
            except Exception:  # the next tick tries again; the rows stay in the table
                log.exception("alert worker tick failed")
            self._wake.wait(self.settings.poll_s)
            self._wake.clear()

    def tick(self) -> None:
        now = utcnow()
        with self.sessions.begin() as s:
            s.execute(update(AlertDelivery).where(AlertDelivery.state == "sending", AlertDelivery.lease_until < now)
                      .values(state="pending", lease_until=None))
            ids = list(s.execute(select(AlertDelivery.id).where(
                AlertDelivery.state == "pending", AlertDelivery.next_attempt_at <= now)).scalars())
            if ids:  # only the rows this transaction leased: another worker process may have taken some
                ids = list(s.execute(update(AlertDelivery).where(AlertDelivery.id.in_(ids), AlertDelivery.state == "pending")
                                     .values(state="sending", lease_until=now + timedelta(seconds=LEASE_S),
                                             lease_owner=OWNER)
                                     .returning(AlertDelivery.id)).scalars())
        for delivery_id in ids:
            self._pool.submit(self._send_one, delivery_id)
        if self.service.escalate_due(now):
            self._wake.set()

    def _send_one(self, delivery_id: int) -> None:
        with self.sessions() as s:
            d = s.get(AlertDelivery, delivery_id)
            alert = s.get(Alert, d.alert_id)
        try:
            if d.channel == "webhook":
                secret = self._webhook_secret(d.contact)
                detail = send_webhook(d.target, secret, d.message_id, webhook_body(alert, d.tier, self.settings.public_url),
                                      timeout_s=self.settings.send_timeout_s)
            else:
                detail = self._email(alert, d.target)
        except ChannelError as exc:
            self._failed(d, str(exc), exc.permanent)
            return
        except Exception as exc:  # noqa: BLE001 - a bug must not lose the delivery
            log.exception("alert %d: unexpected error sending to %s", alert.id, d.contact)
            self._failed(d, f"{type(exc).__name__}: {exc}", False)
            return
        with self.sessions.begin() as s:  # one transaction: a crash keeps both the delivery and the "sent" step, or neither
            s.execute(update(AlertDelivery).where(AlertDelivery.id == d.id).values(
                state="delivered", attempts=d.attempts + 1, delivered_at=utcnow(), lease_until=None, last_error=None))
            self.service.mark_sent(alert.id, d.tier, f"{d.channel} to {d.contact}: {detail}", s)
        log.info("alert %d: %s to %s delivered (%s)", alert.id, d.channel, d.contact, detail)

    def _webhook_secret(self, contact: str) -> str:
        """The contact's secret from the roster (decrypted now; never stored in the delivery row)."""
        try:
            secret = self.service.roster.webhook_secret(contact)
        except SecretError as exc:
            raise ChannelError(str(exc), permanent=True) from None
        if not secret:
            raise ChannelError(f"contact '{contact}' has no webhook secret any more (changed or removed from the "
                               "roster since the alert was raised)", permanent=True)
        return secret

    def _failed(self, d: AlertDelivery, error: str, permanent: bool) -> None:
        attempts = d.attempts + 1
        final = permanent or attempts >= self.settings.max_attempts
        when = utcnow() + timedelta(seconds=backoff_s(self.settings, attempts))
        with self.sessions.begin() as s:
            s.execute(update(AlertDelivery).where(AlertDelivery.id == d.id).values(
                state="failed" if final else "pending", attempts=attempts, last_error=error[:2000],
                next_attempt_at=when, lease_until=None))
        if final:
            log.error("alert %d: %s to %s failed for good after %d attempt(s): %s", d.alert_id, d.channel,
                      d.contact, attempts, error)
        else:
            log.warning("alert %d: %s to %s failed (attempt %d), retrying: %s", d.alert_id, d.channel,
                        d.contact, attempts, error)

    def _email(self, alert: Alert, to: str) -> str:
        body = alert.body or {}
        png, name = None, "summary.png"
        rel = None
        if alert.triage_run_id is not None:
            with self.sessions() as s:
                run = s.get(TriageRun, alert.triage_run_id)
                rel = f"{run.outputs_dir}/summary.png" if run is not None and run.outputs_dir else None
        if rel and self.fetch is not None:  # a remote object store: into the local cache first
            try:
                self.fetch([rel])
            except Exception as exc:  # noqa: BLE001 - the e-mail goes without the image
                log.error("alert %d: summary PNG %s cannot be fetched: %s", alert.id, rel, exc)
        if rel and (self.store_root / rel).is_file():
            path = self.store_root / rel
            try:
                png = path.read_bytes()
            except OSError as exc:
                log.error("alert %d: summary PNG %s cannot be read: %s", alert.id, rel, exc)
        subject = email_subject(alert.type, alert.clinic, updated=bool(body.get("supersedes")))
        links = body.get("links") or {}
        text = "\n\n".join(filter(None, [
            alert.message,
            f"Study: {alert.study_uid}",
            f"Study page: {links['study']}" if links.get("study") else None,
            f"Summary image: {links['summary_png']}" if links.get("summary_png") else None,
            f"Acknowledge: telerad alerts ack {alert.id} --user NAME, or POST "
            f"{self.settings.public_url}/api/alerts/{alert.id}/ack",
        ]))
        return send_email(self.settings.smtp, to, subject, text, png, name)


def email_subject(alert_type: str, clinic: str | None, *, updated: bool = False) -> str:
    """The e-mail subject of an alert; an alert that supersedes earlier ones says UPDATED first."""
    subject = {"stroke.triage": "Stroke CT perfusion result",
               "stroke.triage_failed": "Stroke CT perfusion: automated analysis failed, read manually",
               "stroke.incoming": "Incoming stroke imaging"}.get(alert_type, "alert")
    return f"[telerad] {'UPDATED: ' if updated else ''}{subject}{f' ({clinic})' if clinic else ''}"
