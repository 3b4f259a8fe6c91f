"""Public (PHI-free) response schemas: what the JSON API may show of a study.

No patient name, ID or birth date: those appear only on the server-rendered pages of a
logged-in user with access to the study.
"""

from __future__ import annotations

from pydantic import BaseModel


class DeliveryPublic(BaseModel):
    destination: str
    kind: str
    state: str
    counts: dict[str, int]
    total: int
    delivered_at: str | None = None
    last_delivered_at: str | None = None
    last_error: str | None = None
    bytes_sent: int = 0
    bytes_saved: int = 0


class SeriesPublic(BaseModel):
    series_instance_uid: str
    modality: str | None = None
    series_description: str | None = None
    series_number: int | None = None
    kind: str | None = None
    state: str
    instance_count: int
    last_received_at: str | None = None
    completed_at: str | None = None
    deliveries: list[DeliveryPublic] = []


class StudyPublic(BaseModel):
    study_instance_uid: str
    clinic: str | None = None
    calling_ae: str | None = None
    study_date: str | None = None
    study_description: str | None = None
    accession_number: str | None = None
    first_received_at: str | None = None
    last_received_at: str | None = None
    state: str
    kinds: list[str]
    instance_count: int
    series: list[SeriesPublic]
    deliveries: list[DeliveryPublic] = []
