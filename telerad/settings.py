"""The one typed settings object.

Values come, highest priority first, from explicit overrides (CLI flags), from
``TELERAD_*`` environment variables (nested with ``__``, for example
``TELERAD_DICOM__PORT=11112``), from the TOML file given with ``--config`` (or
``TELERAD_CONFIG``), and from the defaults below. Every field is documented in
the README's Configuration table.
"""

from __future__ import annotations

import argparse
import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from pacs_gateway.config import (  # noqa: F401  (re-exported: the gateway owns its sections)
    QUEUE_SCHEMES,
    ClinicConfig,
    DatabaseSettings,
    DicomSettings,
    QueueSettings,
    S3StoreSettings,
    StoreSettings,
)
from pacs_gateway.routing.config import DestinationConfig, RoutingSettings
from stroke.config import AlertSettings, OncallContactConfig, TriageSettings
from telerad import secretbox
from telerad.errors import ConfigError

DEFAULT_SECRET = "change-me-telerad-dev-secret"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


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
    claim_idle_min: float = Field(default=30, gt=0)  # a reading claim lapses after this long without its holder's activity
    token_ttl_s: int = Field(default=3600, ge=60)  # API bearer tokens
    session_ttl_s: int = Field(default=43200, ge=300)  # page login cookie (12 h)
    cookie_secure: bool = False  # set true behind HTTPS


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


# before load_settings installs a configuration's key, secrets in the index are sealed with the default settings' key
secretbox.set_default_settings(Settings)


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
    secretbox.install(built)  # secrets in the index are sealed with this configuration's key
    return built


def settings_from_args(args: argparse.Namespace, **overrides: Any) -> Settings:
    """The settings of a command line: ``--config``, ``--data-dir`` and ``--log-level`` (``telerad.cliutil.add_common_args``),
    then ``overrides`` (None = not given)."""
    return load_settings(
        getattr(args, "config", None),
        data_dir=getattr(args, "data_dir", None),
        log_level=getattr(args, "log_level", None),
        **overrides,
    )


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
