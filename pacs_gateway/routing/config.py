"""Validated models for destinations, routing rules and the delivery engine's settings.

They are sections of the one settings object (``telerad.settings.Settings``):
``[[destinations]]``, ``[routing]`` and ``[[routing.rules]]`` in the TOML file. A
bad value stops the program with a message naming the field, for example
``setting 'routing.rules.0.match.kind.0': Input should be 'ctp', ...``.

Pure pydantic: importing this module must stay cheap (the settings import it).
"""

from __future__ import annotations

import re
from datetime import time
from pathlib import Path
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from telerad.validators import ae_title

KINDS = ("ctp", "ncct_head", "cta_head", "xray", "other")
Kind = Literal["ctp", "ncct_head", "cta_head", "xray", "other"]
Priority = Literal["stroke", "routine"]
PRIORITIES: tuple[str, ...] = ("stroke", "routine")
Compression = Literal["none", "jpeg2000-lossless", "jpeg-ls-lossless", "deflate"]
DEFAULT_STROKE_KINDS = ("ctp", "ncct_head", "cta_head")


def _listify(value):
    """Let a single string stand for a one-element list (``kind = "ctp"``)."""
    if isinstance(value, str):
        return [value]
    return value


StrList = Annotated[list[str], BeforeValidator(_listify)]
KindList = Annotated[list[Kind], BeforeValidator(_listify)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TlsConfig(_Model):
    """TLS for a ``dicom`` destination (DICOM over TLS) or the ``https`` URL of a ``dicomweb`` one."""

    enabled: bool = True
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    verify: bool = True
    server_hostname: str | None = None

    @field_validator("ca_file", "cert_file", "key_file")
    @classmethod
    def _exists(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError(f"file '{value}' does not exist")
        return value

    @model_validator(mode="after")
    def _pair(self) -> "TlsConfig":
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file must be given together")
        return self


class DestinationConfig(_Model):
    """Where routed instances go: a DICOM peer (C-STORE) or a DICOMweb server (STOW-RS)."""

    name: str = Field(min_length=1, max_length=64)
    kind: Literal["dicom", "dicomweb"]
    default: bool = False
    # kind = "dicom"
    host: str | None = None
    port: int | None = Field(default=None, ge=1, le=65535)
    ae_title: str | None = None  # the destination's (called) AE title
    calling_ae: str | None = None  # ours towards it; default dicom.ae_title
    compression: Compression = "none"
    # kind = "dicomweb"
    url: str | None = None  # the DICOMweb root, e.g. https://pacs.example/dicom-web
    auth_header: str | None = None  # "Name: value", e.g. "Authorization: Bearer ..."
    # both
    tls: TlsConfig | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        value = value.strip()
        if not value or any(ord(c) < 32 for c in value):
            raise ValueError("a destination name must be non-empty and printable")
        return value

    @field_validator("ae_title", "calling_ae")
    @classmethod
    def _ae(cls, value: str | None) -> str | None:
        return None if value is None else ae_title(value)

    @field_validator("auth_header")
    @classmethod
    def _header(cls, value: str | None) -> str | None:
        if value is None:
            return None
        name, sep, rest = value.partition(":")
        if not sep or not name.strip() or not rest.strip() or not re.fullmatch(r"[A-Za-z0-9-]+", name.strip()):
            raise ValueError("auth_header should look like 'Authorization: Bearer <token>'")
        if any(c in value for c in "\r\n"):
            raise ValueError("auth_header must be one line")
        return f"{name.strip()}: {rest.strip()}"

    @model_validator(mode="after")
    def _by_kind(self) -> "DestinationConfig":
        if self.kind == "dicom":
            missing = [f for f in ("host", "port", "ae_title") if getattr(self, f) in (None, "")]
            if missing:
                raise ValueError(f"a 'dicom' destination needs {', '.join(missing)}")
            if self.url or self.auth_header:
                raise ValueError("url and auth_header belong to 'dicomweb' destinations")
        else:
            if not self.url or not re.match(r"https?://[^/\s]+", self.url):
                raise ValueError("a 'dicomweb' destination needs url = 'http(s)://host[:port]/path'")
            if self.host or self.port or self.ae_title:
                raise ValueError("host, port and ae_title belong to 'dicom' destinations")
            if self.compression != "none":
                raise ValueError("compression applies to 'dicom' destinations only")
        return self

    def public(self) -> dict:
        """The settings without secrets (the auth header value is redacted)."""
        data = self.model_dump(mode="json", exclude_none=True)
        if self.auth_header:
            data["auth_header"] = self.auth_header.split(":", 1)[0] + ": ***"
        return data


def _parse_time(text: str) -> time:
    m = re.fullmatch(r"\s*(\d{1,2}):(\d{2})\s*", text)
    if not m or int(m.group(1)) > 23 or int(m.group(2)) > 59:
        raise ValueError(f"'{text}' is not a time of day HH:MM")
    return time(int(m.group(1)), int(m.group(2)))


class RuleMatch(_Model):
    """What a rule matches. Every field given must match; lists mean "any of"; an empty match matches all."""

    clinic: StrList = []  # registered clinic names
    calling_ae: StrList = []
    modality: StrList = []
    kind: KindList = []
    body_part: StrList = []
    study_description: str | None = None  # regular expression, searched case-insensitively
    time_of_day: str | None = None  # "HH:MM-HH:MM", local time; may wrap midnight ("20:00-08:00")

    @field_validator("study_description")
    @classmethod
    def _regex(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"not a valid regular expression: {exc}") from None
        return value

    @field_validator("time_of_day")
    @classmethod
    def _window(cls, value: str | None) -> str | None:
        if value is None:
            return None
        start, sep, end = value.partition("-")
        if not sep:
            raise ValueError("time_of_day should look like '08:00-18:00'")
        a, b = _parse_time(start), _parse_time(end)
        if a == b:
            raise ValueError("time_of_day start and end must differ")
        return f"{a:%H:%M}-{b:%H:%M}"

    def window(self) -> tuple[time, time] | None:
        if self.time_of_day is None:
            return None
        a, b = self.time_of_day.split("-")
        return _parse_time(a), _parse_time(b)


class RoutingRule(_Model):
    """``match`` → ``destinations`` with a ``priority``. The first matching rule wins.

    ``destinations`` left out means the default destinations; ``[]`` routes nowhere.
    ``priority`` left out means ``stroke`` for the stroke kinds, ``routine`` otherwise.
    """

    name: str = Field(min_length=1, max_length=128)
    match: RuleMatch = RuleMatch()
    destinations: StrList | None = None
    priority: Priority | None = None


class RoutingSettings(_Model):
    rules: list[RoutingRule] = []
    stroke_kinds: KindList = list(DEFAULT_STROKE_KINDS)
    timezone: str | None = None  # IANA name for time_of_day; default the host's local time
    stroke_associations: int = Field(default=2, ge=1, le=32)
    routine_associations: int = Field(default=2, ge=1, le=32)
    retry_initial_s: float = Field(default=5.0, gt=0)
    retry_max_delay_s: float = Field(default=300.0, gt=0)
    max_age_s: float = Field(default=86_400.0, gt=0)
    lease_s: float = Field(default=60.0, ge=1)
    sweep_interval_s: float = Field(default=5.0, ge=1, le=60)
    connect_timeout_s: float = Field(default=10.0, gt=0)
    dimse_timeout_s: float = Field(default=30.0, gt=0)
    sender: Literal["pynetdicom", "ul"] = "ul"  # DIMSE sender implementation (TLS destinations use pynetdicom)

    @field_validator("timezone")
    @classmethod
    def _tz(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                ZoneInfo(value)
            except (ZoneInfoNotFoundError, ValueError):
                raise ValueError(f"unknown time zone '{value}' (use an IANA name such as 'Asia/Shanghai')") from None
        return value

    @model_validator(mode="after")
    def _names(self) -> "RoutingSettings":
        seen: set[str] = set()
        for i, rule in enumerate(self.rules):
            if rule.name in seen:
                raise ValueError(f"rules.{i}.name: another rule is already named '{rule.name}'")
            seen.add(rule.name)
        if self.retry_max_delay_s < self.retry_initial_s:
            raise ValueError("retry_max_delay_s must not be below retry_initial_s")
        return self
