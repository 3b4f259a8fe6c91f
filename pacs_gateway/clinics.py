"""The calling-AE allow-list: registered clinics, from config and from the CLI."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import sessionmaker

from pacs_gateway.errors import GatewayError
from pacs_gateway.index.models import Clinic
from pacs_gateway.config import ClinicConfig

log = logging.getLogger(__name__)


class ClinicError(GatewayError, ValueError):
    exit_code = 2


@dataclass(frozen=True)
class ClinicInfo:
    id: int
    name: str
    ae_title: str
    host: str | None
    port: int | None
    source: str


def _info(c: Clinic) -> ClinicInfo:
    return ClinicInfo(c.id, c.name, c.ae_title, c.host, c.port, c.source)


class ClinicRegistry:
    """Reads clinics from the index, caching them for ``ttl_s`` so CLI changes apply live."""

    def __init__(self, sessions: sessionmaker, ttl_s: float = 2.0):
        self._sessions = sessions
        self._ttl = ttl_s
        self._lock = threading.Lock()
        self._by_ae: dict[str, ClinicInfo] = {}
        self._loaded_at = 0.0

    def sync_config(self, clinics: list[ClinicConfig]) -> None:
        """Make the index agree with the clinics declared in the config file."""
        with self._sessions.begin() as s:
            for c in clinics:
                row = s.execute(select(Clinic).where(Clinic.name == c.name)).scalar_one_or_none()
                clash = s.execute(select(Clinic).where(Clinic.ae_title == c.ae_title, Clinic.name != c.name)).scalar_one_or_none()
                if clash is not None:
                    raise ClinicError(
                        f"setting 'clinics': AE title '{c.ae_title}' of clinic '{c.name}' is already used by clinic '{clash.name}'"
                    )
                if row is None:
                    s.add(Clinic(name=c.name, ae_title=c.ae_title, host=c.host, port=c.port, source="config", created_at=_now()))
                else:
                    row.ae_title, row.host, row.port, row.source = c.ae_title, c.host, c.port, "config"
        self.invalidate()

    def add(self, name: str, ae_title: str, host: str | None = None, port: int | None = None) -> ClinicInfo:
        ClinicConfig(name=name, ae_title=ae_title, host=host, port=port)  # validates
        try:
            with self._sessions.begin() as s:
                row = Clinic(name=name, ae_title=ae_title.strip(), host=host, port=port, source="cli", created_at=_now())
                s.add(row)
                s.flush()
                info = _info(row)
        except IntegrityError:
            raise ClinicError(f"a clinic named '{name}' or with AE title '{ae_title}' is already registered") from None
        self.invalidate()
        return info

    def remove(self, name: str) -> None:
        with self._sessions.begin() as s:
            n = s.execute(delete(Clinic).where(Clinic.name == name)).rowcount
        if not n:
            raise ClinicError(f"no clinic named '{name}' is registered")
        self.invalidate()

    def set_address(self, name: str, host: str | None, port: int | None) -> None:
        with self._sessions.begin() as s:
            s.execute(update(Clinic).where(Clinic.name == name).values(host=host, port=port))
        self.invalidate()

    def list(self) -> list[ClinicInfo]:
        with self._sessions() as s:
            return [_info(c) for c in s.execute(select(Clinic).order_by(Clinic.name)).scalars()]

    def by_ae(self, ae_title: str) -> ClinicInfo | None:
        with self._lock:
            if time.monotonic() - self._loaded_at > self._ttl:
                self._by_ae = {c.ae_title: c for c in self.list()}
                self._loaded_at = time.monotonic()
            return self._by_ae.get(ae_title.strip())

    def invalidate(self) -> None:
        with self._lock:
            self._loaded_at = 0.0


def _now() -> datetime:
    return datetime.now(timezone.utc)
