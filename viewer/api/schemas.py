"""Response schemas of the JSON API (``response_model`` of each route, so the OpenAPI spec documents them).

The study views are PHI-free: no patient name, ID or birth date; those appear only on the
server-rendered pages of a logged-in user with access to the study, and in the readers' worklist.
Times are ISO 8601 strings in UTC (``telerad.clock.isoformat``).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field


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


# --------------------------------------------------------------------------- results, triage, alerts
class ResultObject(BaseModel):
    """A DICOM object telerad wrote into the study (a triage result, a signed report)."""

    series_uid: str
    sop_uid: str
    modality: str | None = None


class TriageRunSummary(BaseModel):
    id: int
    study_instance_uid: str
    series_instance_uid: str
    algorithm_version: str
    state: str = Field(description="queued | running | done | covered")
    status: str | None = None
    reason: str | None = None
    core_ml: float | None = None
    tmax6_ml: float | None = None
    tmax10_ml: float | None = None
    reliable: bool | None = None
    quality_warnings: list[str] = Field(description="'severity: message' lines, fatal ones first")
    finished_at: str | None = None
    automated_result: bool = True


class TriageRunDetail(BaseModel):
    id: int
    state: str
    status: str | None = None
    reason: str | None = None
    result: dict | None = Field(None, description="the `telerad analyze --json` object")
    objects: list[ResultObject]
    attempts: int
    queued_at: str | None = None
    started_at: str | None = None
    finished_at: str | None = None
    disclaimer: str


class AlertStepPublic(BaseModel):
    step: str = Field(description="created | sent | acknowledged | escalated | unanswered | undeliverable ...")
    tier: int
    at: str | None = None
    user: str | None = None
    detail: str | None = None


class AlertDeliveryPublic(BaseModel):
    tier: int
    contact: str
    channel: str = Field(description="webhook | email")
    state: str = Field(description="pending | sending | delivered | failed")
    attempts: int
    last_error: str | None = None
    delivered_at: str | None = None


class AlertPublic(BaseModel):
    id: int
    type: str = Field(description="stroke.triage | stroke.incoming | stroke.triage_failed")
    rule: str | None = None
    state: str = Field(description="created | sent | acknowledged | escalated")
    tier: int
    study_instance_uid: str
    series_instance_uid: str | None = None
    clinic: str | None = None
    message: str
    requires_ack: bool
    created_at: str | None = None
    sent_at: str | None = None
    acknowledged_at: str | None = None
    acknowledged_by: str | None = None
    escalate_at: str | None = None
    steps: list[AlertStepPublic]
    deliveries: list[AlertDeliveryPublic]


class AlertDetail(AlertPublic):
    body: dict = Field(description="the webhook JSON body, without per-send fields")


# --------------------------------------------------------------------------- reading room
class WorklistAlert(BaseModel):
    id: int
    type: str
    state: str


class TriagePending(BaseModel):
    kind: Literal["pending"]
    text: str
    algorithm: str


class TriageFailed(BaseModel):
    kind: Literal["failed"]
    text: str
    reason: str | None = None
    algorithm: str


class TriageOk(BaseModel):
    kind: Literal["ok"]
    text: str
    core_ml: float | None = None
    tmax6_ml: float | None = None
    verdict: list[str]
    algorithm: str


TriageBadge = Annotated[TriagePending | TriageFailed | TriageOk, Field(discriminator="kind")]


class WorklistRow(BaseModel):
    """One study to read (readers only: it names the patient)."""

    study_instance_uid: str
    clinic: str | None = None
    patient_name: str
    patient_id: str | None = None
    accession_number: str | None = None
    study_date: str | None = None
    study_description: str | None = None
    modalities: list[str]
    kinds: list[str]
    instance_count: int
    priority: str = Field(description="stroke | urgent | routine")
    alert: WorklistAlert | None = None
    triage: TriageBadge | None = None
    status: str = Field(description="receiving | complete | routed | reading | reported")
    report_state: str | None = None
    claimed_by: str | None = None
    received_at: str
    due_at: str
    waiting_s: int
    overdue: bool


class ClaimPublic(BaseModel):
    study_instance_uid: str
    claimed_by: str | None = None


class AddendumPublic(BaseModel):
    version: int
    body: str
    author: str
    at: str | None = None
    objects: list[ResultObject]


class ReportVersionPublic(BaseModel):
    version: int
    kind: str = Field(description="draft | preliminary | final | addendum")
    author: str
    at: str | None = None


class ReportPublic(BaseModel):
    study_instance_uid: str
    template: str
    state: str = Field(description="draft | preliminary | final")
    body: str
    author: str
    created_at: str | None = None
    updated_at: str | None = None
    signed_by: str | None = None
    signed_at: str | None = None
    final_body: str | None = None
    addenda: list[AddendumPublic]
    objects: list[ResultObject]
    versions: list[ReportVersionPublic]


class AuditEntryPublic(BaseModel):
    id: int
    at: str
    user: str
    role: str | None = None
    action: str
    target: str | None = None
    detail: str | None = None
    client: str | None = None


# --------------------------------------------------------------------------- administration, auth, health
class Quantiles(BaseModel):
    count: int
    median_s: float | None = None
    p90_s: float | None = None


class AlertCount(BaseModel):
    type: str
    state: str
    count: int


class Dashboard(BaseModel):
    turnaround: dict[str, Quantiles] = Field(description="per clinic: series complete -> report signed")
    studies_per_day: dict[str, int]
    studies_total: int
    alerts: list[AlertCount]
    alerts_unacknowledged: int
    ack: Quantiles
    deliveries: dict[str, int]
    deliveries_oldest_pending_s: float


class UserPublic(BaseModel):
    name: str
    role: str
    clinics: list[str]
    disabled: bool
    created_at: str


class Token(BaseModel):
    access_token: str
    token_type: str = "bearer"
    expires_in: int
    role: str | None = None


class Health(BaseModel):
    status: str
    version: str
