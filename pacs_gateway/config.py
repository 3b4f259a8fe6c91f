"""The gateway's sections of the settings: ``[[clinics]]``, ``[dicom]``, ``[database]``, ``[queue]``,
``[store]`` (destinations and routing: :mod:`pacs_gateway.routing.config`).

The gateway owns these models; ``telerad.settings.Settings`` (the composition root) assembles them with
the other packages' sections. Pure pydantic: importing this module must stay cheap.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from telerad.validators import ae_title as _ae_title

QUEUE_SCHEMES = ("redis://", "rediss://", "unix://", "postgresql://", "postgres://", "postgresql+psycopg://")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ClinicConfig(_Section):
    """A township clinic allowed to send studies (its modality's calling AE title)."""

    name: str = Field(min_length=1)
    ae_title: str
    host: str | None = None
    port: int | None = Field(default=None, ge=1, le=65535)

    _check_ae = field_validator("ae_title")(_ae_title)


class DicomSettings(_Section):
    ae_title: str = "TELERAD"
    bind: str = "0.0.0.0"
    port: int = Field(default=11112, ge=1, le=65535)
    max_pdu: int = Field(default=262_144, ge=0)
    max_associations: int = Field(default=16, ge=1)
    acse_timeout_s: float = Field(default=30.0, gt=0)
    dimse_timeout_s: float = Field(default=60.0, gt=0)
    network_timeout_s: float = Field(default=60.0, gt=0)
    accept_any_ae: bool = False
    quiet_period_s: float = Field(default=2.0, ge=0)
    disk_high_water_pct: float = Field(default=95.0, gt=0, le=100)
    # hostile-peer bounds (pacs_gateway/ul/limits.py)
    min_rate_bytes_s: int = Field(default=16_384, ge=1)
    max_dataset_bytes: int = Field(default=2 << 30, ge=1024)
    max_associations_per_ip: int = Field(default=8, ge=1)
    max_pending_connections: int = Field(default=512, ge=1)
    max_pending_per_ip: int = Field(default=16, ge=1)
    # DICOM TLS (a second port; PS3.15 Annex B.9 secure transport)
    tls_port: int | None = Field(default=None, ge=1, le=65535)
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_ca: Path | None = None  # CA bundle verifying client certificates
    tls_require_client_cert: bool = False
    tls_client_aes: dict[str, str] = {}  # client certificate common name -> the calling AE title it may use

    _check_ae = field_validator("ae_title")(_ae_title)

    @model_validator(mode="after")
    def _tls_complete(self) -> "DicomSettings":
        if self.tls_port is not None:
            if self.tls_cert is None or self.tls_key is None:
                raise ValueError("dicom.tls_port needs dicom.tls_cert and dicom.tls_key (PEM files)")
            if self.tls_port == self.port:
                raise ValueError("dicom.tls_port must differ from dicom.port")
        if (self.tls_require_client_cert or self.tls_client_aes) and self.tls_ca is None:
            raise ValueError("dicom.tls_require_client_cert and dicom.tls_client_aes need dicom.tls_ca")
        return self


class DatabaseSettings(_Section):
    url: str | None = None  # None: SQLite file <data_dir>/index.sqlite3 (WAL)


class QueueSettings(_Section):
    url: str | None = None  # None: SQLite-backed queue in <data_dir>/queue.sqlite3
    name: str = Field(default="telerad", pattern=r"^[A-Za-z0-9_.-]{1,40}$")  # prefix of the queue names

    @field_validator("url")
    @classmethod
    def _scheme(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(QUEUE_SCHEMES):
            raise ValueError(f"the queue URL must start with one of {', '.join(QUEUE_SCHEMES)}")
        return value


class S3StoreSettings(_Section):
    """An S3-compatible bucket (AWS S3, MinIO, Ceph RGW)."""

    bucket: str = Field(min_length=3, max_length=63, pattern=r"^[a-z0-9][a-z0-9.-]+[a-z0-9]$")
    endpoint_url: str | None = None  # None: AWS; e.g. http://minio:9000
    region: str = "us-east-1"
    prefix: str = ""  # key prefix, e.g. "telerad/"
    access_key_id: str | None = None  # None: the AWS default chain (AWS_ACCESS_KEY_ID, instance role)
    secret_access_key: str | None = None  # or env:NAME (read from that variable)
    create_bucket: bool = False  # create the bucket at start when missing (development)
    workers: int = Field(default=16, ge=1, le=128)  # concurrent uploads and downloads per process
    timeout_s: float = Field(default=30.0, gt=0)


class StoreSettings(_Section):
    kind: Literal["local", "s3"] = "local"  # local: <data_dir>/store
    s3: S3StoreSettings | None = None
    cache_max_gb: float = Field(default=20.0, gt=0)  # s3: local read cache in <data_dir>/s3cache

    @model_validator(mode="after")
    def _s3_complete(self) -> "StoreSettings":
        if self.kind == "s3" and self.s3 is None:
            raise ValueError("store.kind = 's3' needs a [store.s3] table with at least 'bucket'")
        return self


class GatewaySettings(Protocol):
    """What the gateway reads from the one settings object (``telerad.settings.Settings`` satisfies it).

    The gateway depends on this shape, not on the composition root that assembles every section.
    """

    data_dir: Path
    database_url: str
    queue_path: Path
    log_phi: bool
    roles: Any
    dicom: DicomSettings
    queue: QueueSettings
    store: StoreSettings
    clinics: list[ClinicConfig]
    destinations: list[Any]  # pacs_gateway.routing.config.DestinationConfig
    routing: Any  # pacs_gateway.routing.config.RoutingSettings
