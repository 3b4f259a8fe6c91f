"""Validated settings of triage-in-the-loop and of stroke alerts: ``[triage]`` and ``[alerts]``.

Pure pydantic, cheap to import (``telerad.settings`` imports it). A bad value stops
the program with a message naming the field, e.g.
``setting 'alerts.rules.0.any.0.metric': Input should be 'core_ml', ...``.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Metric = Literal["core_ml", "tmax6_ml", "tmax10_ml", "mismatch_ml", "mismatch_ratio", "hypoperfusion_intensity_ratio"]
AlertOn = Literal["triage", "triage_failed", "incoming"]
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+$")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


def check_webhook_secret(value: str) -> str:
    """A Standard Webhooks secret: ``whsec_`` followed by base64 of at least 16 bytes, or ``env:NAME``
    (the secret is then read from that environment variable when a webhook is sent)."""
    value = value.strip()
    if value.startswith("env:"):
        from telerad.secretbox import check_env_reference

        check_env_reference(value)
        return value
    if not value.startswith("whsec_"):
        raise ValueError("a webhook secret must start with 'whsec_' (Standard Webhooks)")
    try:
        key = base64.b64decode(value[len("whsec_"):], validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("the part after 'whsec_' must be base64") from None
    if len(key) < 16:
        raise ValueError("the webhook key must be at least 16 bytes (24 base64 characters)")
    return value


def check_url(value: str) -> str:
    value = value.strip()
    if not re.match(r"^https?://[^/\s]+", value):
        raise ValueError("a webhook URL must look like 'http(s)://host[:port]/path'")
    return value


def check_email(value: str) -> str:
    value = value.strip()
    if not _EMAIL.match(value):
        raise ValueError(f"'{value}' is not an e-mail address")
    return value


class OncallContactConfig(_Model):
    """One person on call: tier 1 is alerted first, tier 2 on escalation, and so on."""

    name: str = Field(min_length=1, max_length=128)
    tier: int = Field(default=1, ge=1, le=9)
    email: str | None = None
    webhook: str | None = None
    webhook_secret: str | None = None

    _email = field_validator("email")(lambda v: None if v is None else check_email(v))
    _url = field_validator("webhook")(lambda v: None if v is None else check_url(v))
    _secret = field_validator("webhook_secret")(lambda v: None if v is None else check_webhook_secret(v))

    @model_validator(mode="after")
    def _channels(self) -> "OncallContactConfig":
        if (self.webhook is None) != (self.webhook_secret is None):
            raise ValueError("webhook and webhook_secret must be given together")
        if self.email is None and self.webhook is None:
            raise ValueError(f"contact '{self.name}' needs at least one channel (email or webhook)")
        return self


class Condition(_Model):
    """``metric op value``, for example ``tmax6_ml >= 15``."""

    metric: Metric
    op: Literal[">=", ">", "<=", "<"] = ">="
    value: float


class AlertRule(_Model):
    """Which results alert whom. ``on`` says which outcome the rule looks at:

    - ``triage``: a reliable analysis; it fires when ``any`` condition holds (no conditions: always);
    - ``triage_failed``: a failed or unreliable analysis (always fires);
    - ``incoming``: a non-contrast or CTA head series arrived (the pre-alert).

    The first matching rule wins; ``tier`` is the first tier alerted, ``escalate`` whether
    the alert waits for an acknowledgement and escalates to the next tier without one.
    """

    name: str = Field(min_length=1, max_length=128)
    on: AlertOn
    any: list[Condition] = []
    tier: int = Field(default=1, ge=1, le=9)
    escalate: bool = True


DEFAULT_RULES = [
    AlertRule(name="perfusion deficit", on="triage",
              any=[Condition(metric="tmax6_ml", value=15), Condition(metric="core_ml", value=1)]),
    AlertRule(name="triage failed", on="triage_failed"),
    AlertRule(name="incoming stroke imaging", on="incoming", escalate=False),
]


class SmtpSettings(_Model):
    host: str | None = None  # None: no e-mail channel
    port: int = Field(default=25, ge=1, le=65535)
    username: str | None = None
    password: str | None = None  # or "env:NAME": read from that environment variable when sending
    sender: str = "telerad@localhost"
    starttls: bool = False
    ssl: bool = False
    allow_login_without_tls: bool = False  # only for a relay on a trusted host: the password travels in clear
    timeout_s: float = Field(default=20.0, gt=0)

    @model_validator(mode="after")
    def _tls(self) -> "SmtpSettings":
        if self.starttls and self.ssl:
            raise ValueError("choose starttls or ssl, not both")
        if self.password is not None and self.password.startswith("env:"):
            from telerad.secretbox import check_env_reference

            check_env_reference(self.password)
        return self


class AlertSettings(_Model):
    enabled: bool = True
    rules: list[AlertRule] = Field(default_factory=lambda: list(DEFAULT_RULES))
    escalation_timeout_s: float = Field(default=300.0, gt=0)
    public_url: str = "http://127.0.0.1:8080"  # base of the links in alerts (study page, summary PNG)
    retry_initial_s: float = Field(default=2.0, gt=0)
    retry_max_delay_s: float = Field(default=120.0, gt=0)
    max_attempts: int = Field(default=10, ge=1)
    send_timeout_s: float = Field(default=10.0, gt=0)
    poll_s: float = Field(default=0.5, gt=0, le=10)
    smtp: SmtpSettings = SmtpSettings()

    _url = field_validator("public_url")(lambda v: check_url(v).rstrip("/"))

    @model_validator(mode="after")
    def _names(self) -> "AlertSettings":
        seen: set[str] = set()
        for i, rule in enumerate(self.rules):
            if rule.name in seen:
                raise ValueError(f"rules.{i}.name: another rule is already named '{rule.name}'")
            seen.add(rule.name)
        return self


class TriageSettings(_Model):
    enabled: bool = True
    backend: Literal["numpy", "torch"] = "numpy"
    device: Literal["cpu", "cuda"] = "cpu"
    max_attempts: int = Field(default=3, ge=1, le=10)
    lease_s: float = Field(default=600.0, ge=10)
    write_maps: bool = True

    @model_validator(mode="after")
    def _device(self) -> "TriageSettings":
        if self.device == "cuda" and self.backend != "torch":
            raise ValueError("device 'cuda' needs backend 'torch'")
        return self
