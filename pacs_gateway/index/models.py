"""SQLAlchemy 2 models of the gateway's tables in the index. Migrations in ``migrations/versions`` mirror them.

``Base`` is the index's one metadata: the packages above the gateway declare their own tables on it
(``stroke.models``, ``viewer.models``); the gateway never imports or reads them.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, BigInteger, Boolean, DateTime, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class Clinic(Base):
    __tablename__ = "clinics"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    ae_title: Mapped[str] = mapped_column(String(16), unique=True)
    host: Mapped[str | None] = mapped_column(String(255))
    port: Mapped[int | None] = mapped_column(Integer)
    source: Mapped[str] = mapped_column(String(16), default="cli")  # "cli" | "config"
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Study(Base):
    __tablename__ = "studies"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_uid: Mapped[str] = mapped_column(String(64), unique=True)
    clinic_id: Mapped[int | None] = mapped_column(ForeignKey("clinics.id", ondelete="SET NULL"), index=True)
    calling_ae: Mapped[str | None] = mapped_column(String(16))
    patient_id: Mapped[str | None] = mapped_column(String(64))
    patient_name: Mapped[str | None] = mapped_column(String(324))
    accession_number: Mapped[str | None] = mapped_column(String(16))
    study_date: Mapped[str | None] = mapped_column(String(8))
    study_description: Mapped[str | None] = mapped_column(String(64))
    first_received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)


class Series(Base):
    __tablename__ = "series"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    series_uid: Mapped[str] = mapped_column(String(64), unique=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"), index=True)
    modality: Mapped[str | None] = mapped_column(String(16))
    series_description: Mapped[str | None] = mapped_column(String(64))
    series_number: Mapped[int | None] = mapped_column(Integer)
    kind: Mapped[str | None] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(16), default="receiving", index=True)  # receiving | complete
    completed_once: Mapped[bool] = mapped_column(Boolean, default=False)
    instance_count: Mapped[int] = mapped_column(Integer, default=0)
    last_received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Instance(Base):
    __tablename__ = "instances"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sop_uid: Mapped[str] = mapped_column(String(64), unique=True)
    series_id: Mapped[int] = mapped_column(ForeignKey("series.id", ondelete="CASCADE"), index=True)
    clinic_id: Mapped[int | None] = mapped_column(ForeignKey("clinics.id", ondelete="SET NULL"))
    calling_ae: Mapped[str | None] = mapped_column(String(16))
    sop_class_uid: Mapped[str] = mapped_column(String(64))
    transfer_syntax: Mapped[str] = mapped_column(String(64))
    path: Mapped[str] = mapped_column(Text)  # relative to the store root
    size: Mapped[int] = mapped_column(BigInteger)
    crc32: Mapped[int] = mapped_column(BigInteger)  # of the data set bytes after the file meta
    version: Mapped[int] = mapped_column(Integer, default=1)
    headers: Mapped[dict] = mapped_column(JSON, default=dict)
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class InstanceVersion(Base):
    """A superseded version of an instance: same SOP Instance UID, different bytes."""

    __tablename__ = "instance_versions"
    __table_args__ = (UniqueConstraint("sop_uid", "version"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sop_uid: Mapped[str] = mapped_column(String(64), index=True)
    version: Mapped[int] = mapped_column(Integer)
    path: Mapped[str] = mapped_column(Text)
    size: Mapped[int] = mapped_column(BigInteger)
    crc32: Mapped[int] = mapped_column(BigInteger)
    calling_ae: Mapped[str | None] = mapped_column(String(16))
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    superseded_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Event(Base):
    """The internal event bus's outbox: written in the transaction that changes state."""

    __tablename__ = "events"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    type: Mapped[str] = mapped_column(String(48), index=True)
    study_uid: Mapped[str | None] = mapped_column(String(64), index=True)
    series_uid: Mapped[str | None] = mapped_column(String(64))
    payload: Mapped[dict] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    dispatched_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), index=True)


class Setting(Base):
    """Small key/value facts the gateway keeps (e.g. whether samples were loaded)."""

    __tablename__ = "gateway_state"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class SeriesActivity(Base):
    """Series an association of some gateway process is delivering to (scaled-out completeness).

    Each receiving process refreshes its rows about once a second: ``hold_until`` is a little ahead
    while an association is open, and the release time plus the quiet period after it closed. No
    process completes a series with a row still holding it; a dead process's rows simply lapse.
    """

    __tablename__ = "series_activity"
    owner: Mapped[str] = mapped_column(String(96), primary_key=True)
    series_uid: Mapped[str] = mapped_column(String(64), primary_key=True)
    hold_until: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)


class Destination(Base):
    """A place routed instances go: ``dicom`` (C-STORE) or ``dicomweb`` (STOW-RS)."""

    __tablename__ = "destinations"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    kind: Mapped[str] = mapped_column(String(16))
    is_default: Mapped[bool] = mapped_column(Boolean, default=False)
    config: Mapped[dict] = mapped_column(JSON, default=dict)  # a DestinationConfig, as JSON
    source: Mapped[str] = mapped_column(String(16), default="cli")  # "cli" | "config"
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Delivery(Base):
    """The delivery ledger: one row per (instance, destination). The truth about what was sent.

    state: queued -> sending (leased by one worker until lease_until) -> delivered | failed;
    a transient failure puts the row back to queued with next_attempt_at in the future.
    """

    __tablename__ = "deliveries"
    __table_args__ = (
        UniqueConstraint("instance_id", "destination_id"),
        Index("ix_deliveries_group", "series_id", "destination_id", "state"),
        Index("ix_deliveries_due", "state", "next_attempt_at"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    instance_id: Mapped[int] = mapped_column(ForeignKey("instances.id", ondelete="CASCADE"))
    destination_id: Mapped[int] = mapped_column(ForeignKey("destinations.id", ondelete="CASCADE"), index=True)
    series_id: Mapped[int] = mapped_column(ForeignKey("series.id", ondelete="CASCADE"))
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"), index=True)
    lane: Mapped[str] = mapped_column(String(8))  # "stroke" | "routine"
    rule: Mapped[str | None] = mapped_column(String(128))  # the routing rule that chose it (None: defaults)
    state: Mapped[str] = mapped_column(String(12), default="queued")
    version: Mapped[int] = mapped_column(Integer, default=1)  # instance version this row delivers
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    queued_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))  # start of the retry window (max age)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    enqueued_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))  # a task was queued for it
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    lease_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    wire_syntax: Mapped[str | None] = mapped_column(String(64))  # transfer syntax it went out in
    bytes_sent: Mapped[int | None] = mapped_column(BigInteger)
    bytes_saved: Mapped[int | None] = mapped_column(BigInteger)  # by lossless wire compression

