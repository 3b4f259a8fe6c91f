"""Stroke's tables (triage runs, the on-call roster, alerts), in the index's metadata.

Declared on the gateway's ``Base`` so one alembic history (``pacs_gateway/index/migrations``) holds
every table; migrations ``0003_triage_runs_and_stroke_alerts`` and ``0006_alert_delivery_owner``
mirror them. The gateway itself never reads them.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Boolean, DateTime, Float, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from pacs_gateway.index.models import Base


class TriageRun(Base):
    """One triage job per (CTP series, algorithm version); the truth about whether it ran.

    state: queued -> running (leased until lease_until) -> done | covered; a job whose study still
    has CT images arriving goes back to queued and looks again a second later.
    ``covered``: a run of another series of the study already analysed these images.
    status (once done): ok | failed (analysis failed or unreliable input) | error.
    """

    __tablename__ = "triage_runs"
    __table_args__ = (UniqueConstraint("series_uid", "algorithm_version"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    study_uid: Mapped[str] = mapped_column(String(64), index=True)
    series_uid: Mapped[str] = mapped_column(String(64))
    algorithm_version: Mapped[str] = mapped_column(String(32))
    state: Mapped[str] = mapped_column(String(12), default="queued", index=True)
    status: Mapped[str | None] = mapped_column(String(12))
    generation: Mapped[int] = mapped_column(Integer, default=1)  # bumped by series.updated
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    reason: Mapped[str | None] = mapped_column(Text)
    reliable: Mapped[bool | None] = mapped_column(Boolean)
    core_ml: Mapped[float | None] = mapped_column(Float)
    tmax6_ml: Mapped[float | None] = mapped_column(Float)
    tmax10_ml: Mapped[float | None] = mapped_column(Float)
    mismatch_ml: Mapped[float | None] = mapped_column(Float)
    mismatch_ratio: Mapped[float | None] = mapped_column(Float)
    result: Mapped[dict | None] = mapped_column(JSON)  # the ``telerad analyze --json`` object
    source_series: Mapped[list | None] = mapped_column(JSON)  # series UIDs the images came from
    outputs_dir: Mapped[str | None] = mapped_column(Text)  # store-relative folder of maps and PNGs
    objects: Mapped[list | None] = mapped_column(JSON)  # [{"series_uid", "sop_uid", "modality"}]
    queued_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    lease_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    owner: Mapped[str | None] = mapped_column(String(128))  # "host:pid:boot" of the process running it


class OncallContact(Base):
    """A person on the on-call roster: a tier and the channels that reach them."""

    __tablename__ = "oncall_contacts"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    tier: Mapped[int] = mapped_column(Integer, index=True)
    email: Mapped[str | None] = mapped_column(String(320))
    webhook_url: Mapped[str | None] = mapped_column(Text)
    webhook_secret: Mapped[str | None] = mapped_column(Text)
    source: Mapped[str] = mapped_column(String(16), default="cli")  # "cli" | "config"
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Alert(Base):
    """A stroke alert. ``key`` makes it idempotent (one per series and algorithm version)."""

    __tablename__ = "alerts"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(200), unique=True)
    type: Mapped[str] = mapped_column(String(32))  # stroke.triage | stroke.incoming | stroke.triage_failed
    rule: Mapped[str | None] = mapped_column(String(128))
    study_uid: Mapped[str] = mapped_column(String(64), index=True)
    series_uid: Mapped[str | None] = mapped_column(String(64))
    triage_run_id: Mapped[int | None] = mapped_column(ForeignKey("triage_runs.id", ondelete="SET NULL"))
    clinic: Mapped[str | None] = mapped_column(String(128))
    message: Mapped[str] = mapped_column(Text)
    body: Mapped[dict] = mapped_column(JSON)  # the webhook JSON body, without per-send fields
    # created|sent|acknowledged|escalated|superseded (a later analysis of the study raised a newer alert)
    state: Mapped[str] = mapped_column(String(16), default="created", index=True)
    tier: Mapped[int] = mapped_column(Integer, default=1)
    requires_ack: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    acknowledged_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    acknowledged_by: Mapped[str | None] = mapped_column(String(128))
    escalate_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), index=True)


class AlertStep(Base):
    """Every lifecycle step of an alert, timestamped; the unique key makes a step impossible to repeat."""

    __tablename__ = "alert_steps"
    __table_args__ = (UniqueConstraint("alert_id", "step", "tier"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    alert_id: Mapped[int] = mapped_column(ForeignKey("alerts.id", ondelete="CASCADE"), index=True)
    # created | sent | acknowledged | escalated | superseded | confirmed | ...
    step: Mapped[str] = mapped_column(String(16))
    tier: Mapped[int] = mapped_column(Integer)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    user: Mapped[str | None] = mapped_column(String(128))
    detail: Mapped[str | None] = mapped_column(Text)


class AlertDelivery(Base):
    """One send of an alert to one contact over one channel (webhook or email), with retries."""

    __tablename__ = "alert_deliveries"
    __table_args__ = (UniqueConstraint("alert_id", "tier", "contact", "channel"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    alert_id: Mapped[int] = mapped_column(ForeignKey("alerts.id", ondelete="CASCADE"), index=True)
    tier: Mapped[int] = mapped_column(Integer)
    contact: Mapped[str] = mapped_column(String(128))
    channel: Mapped[str] = mapped_column(String(16))  # webhook | email
    target: Mapped[str] = mapped_column(Text)  # URL or address
    secret: Mapped[str | None] = mapped_column(Text)  # whsec_ secret of a webhook
    message_id: Mapped[str] = mapped_column(String(64))  # webhook-id: the same on every retry
    state: Mapped[str] = mapped_column(String(12), default="pending", index=True)  # pending|sending|delivered|failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    lease_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    lease_owner: Mapped[str | None] = mapped_column(String(96))  # "host:pid:boot" of the sending process
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
