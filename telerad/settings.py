"""The one typed settings object.

Values come, highest priority first, from explicit overrides (CLI flags), from
``TELERAD_*`` environment variables (nested with ``__``, for example
``TELERAD_DICOM__PORT=11112``), from the TOML file given with ``--config`` (or
``TELERAD_CONFIG``), and from the defaults below. Every field is documented in
the README's Configuration table.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from pacs_gateway.routing.config import DestinationConfig, RoutingSettings
from stroke.config import AlertSettings, OncallContactConfig, TriageSettings
from telerad.errors import ConfigError
from telerad.validators import ae_title

DEFAULT_SECRET = "change-me-telerad-dev-secret"
QUEUE_SCHEMES = ("redis://", "rediss://", "unix://", "postgresql://", "postgres://", "postgresql+psycopg://")


_ae_title = ae_title


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


class HttpSettings(_Section):
    bind: str = "127.0.0.1"
    port: int = Field(default=8080, ge=1, le=65535)
    tls_cert: Path | None = None  # PEM; with tls_key the API is served over HTTPS
    tls_key: Path | None = None
    tls_ca: Path | None = None  # CA bundle for optional client certificates

    @model_validator(mode="after")
    def _tls_pair(self) -> "HttpSettings":
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("http.tls_cert and http.tls_key must be given together")
        return self


class WebSettings(_Section):
    """The reading room: SLAs of the worklist, login lifetimes, cookies."""

    sla_stroke_min: float = Field(default=20, gt=0)  # a study with a stroke alert
    sla_urgent_min: float = Field(default=60, gt=0)  # a study with a stroke-lane kind (routing.stroke_kinds)
    sla_routine_min: float = Field(default=1440, gt=0)  # everything else (24 h)
    token_ttl_s: int = Field(default=3600, ge=60)  # API bearer tokens
    session_ttl_s: int = Field(default=43200, ge=300)  # page login cookie (12 h)
    cookie_secure: bool = False  # set true behind HTTPS


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


ROLES = ("receive", "api", "work")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="TELERAD_",
        env_nested_delimiter="__",
        extra="forbid",
    )

    environment: Literal["development", "production"] = "development"
    data_dir: Path = Path("var")
    secret_key: str = DEFAULT_SECRET
    secrets_key: str | None = None  # Fernet key for secrets stored in the index; default: derived from secret_key
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_phi: bool = False
    dicom: DicomSettings = DicomSettings()
    http: HttpSettings = HttpSettings()
    web: WebSettings = WebSettings()
    database: DatabaseSettings = DatabaseSettings()
    queue: QueueSettings = QueueSettings()
    store: StoreSettings = StoreSettings()
    # what this process runs: receive (DICOM port, index writer, series completion), api (HTTP),
    # work (routing, triage, alerts); `telerad worker` is ["work"], `telerad serve --no-workers` drops it
    roles: list[Literal["receive", "api", "work"]] = ["receive", "api", "work"]
    clinics: list[ClinicConfig] = []
    destinations: list[DestinationConfig] = []
    routing: RoutingSettings = RoutingSettings()
    triage: TriageSettings = TriageSettings()
    alerts: AlertSettings = AlertSettings()
    oncall: list[OncallContactConfig] = []

    @model_validator(mode="after")
    def _refuse_unsafe_production(self) -> "Settings":
        names = [d.name for d in self.destinations]
        for i, name in enumerate(names):
            if name in names[:i]:
                raise ValueError(f"destinations.{i}.name: another destination is already named '{name}'")
        if self.environment == "production":
            if self.secret_key == DEFAULT_SECRET:
                raise ValueError("secret_key must be set to a private value when environment is 'production'")
            if self.dicom.accept_any_ae:
                raise ValueError("dicom.accept_any_ae must be false when environment is 'production'")
        return self

    # Derived locations -------------------------------------------------
    @property
    def store_dir(self) -> Path:
        return self.data_dir / "store"

    @property
    def database_url(self) -> str:
        if self.database.url:
            return self.database.url
        return f"sqlite:///{(self.data_dir / 'index.sqlite3').resolve()}"

    @property
    def queue_path(self) -> Path:
        return self.data_dir / "queue.sqlite3"


def _format_validation_error(err: ValidationError, source: str) -> str:
    lines = []
    for e in err.errors():
        field = ".".join(str(p) for p in e.get("loc", ())) or "(settings)"
        msg = e.get("msg", "invalid value")
        if e.get("type") == "extra_forbidden":
            msg = "unknown setting"
        lines.append(f"setting '{field}': {msg}")
    return f"invalid configuration ({source}): " + "; ".join(lines)


def load_settings(config: str | os.PathLike | None = None, **overrides: Any) -> Settings:
    """Build the settings from a TOML file, the environment and ``overrides``.

    Raises :class:`ConfigError` naming the offending field on any problem.
    """
    config = config or os.environ.get("TELERAD_CONFIG") or None
    file_values: dict[str, Any] = {}
    source = "defaults and environment"
    if config:
        path = Path(config)
        source = str(path)
        try:
            file_values = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"config file '{path}' does not exist") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file '{path}' is not valid TOML: {exc}") from None
        except OSError as exc:
            raise ConfigError(f"config file '{path}' cannot be read: {exc.strerror}") from None

    class _FileSettings(Settings):
        # priority: overrides > environment > file > defaults
        @classmethod
        def settings_customise_sources(cls, settings_cls, init_settings, env_settings, dotenv_settings, file_secret_settings):
            from pydantic_settings import InitSettingsSource

            return (init_settings, env_settings, InitSettingsSource(settings_cls, init_kwargs=file_values))

    clean = {k: v for k, v in overrides.items() if v is not None}
    try:
        settings = _FileSettings(**_nest(clean))
    except ValidationError as exc:
        raise ConfigError(_format_validation_error(exc, source)) from None
    built = Settings.model_construct(**{k: getattr(settings, k) for k in Settings.model_fields})
    from telerad import secretbox

    secretbox.install(built)  # secrets in the index are sealed with this configuration's key
    return built


def _nest(flat: dict[str, Any]) -> dict[str, Any]:
    """Turn ``{"dicom.port": 1}`` into ``{"dicom": {"port": 1}}``."""
    out: dict[str, Any] = {}
    for key, value in flat.items():
        parts = key.split(".")
        node = out
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = value
    return out
