"""Destinations: declared in ``[[destinations]]`` or added with ``telerad destination add``.

Both live in the ``destinations`` table (``source`` says which), so the ledger can
reference them and a running gateway sees CLI changes within ``ttl_s``.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone

from sqlalchemy import Connection, delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import sessionmaker

from pacs_gateway.errors import GatewayError
from pacs_gateway.index.models import Delivery, Destination
from pacs_gateway.routing.config import DestinationConfig
from telerad.secretbox import SecretError, seal, unseal

log = logging.getLogger(__name__)

PENDING_STATES = ("queued", "sending")


class DestinationError(GatewayError, ValueError):
    exit_code = 2


@dataclass(frozen=True)
class DestinationInfo:
    id: int
    name: str
    kind: str
    is_default: bool
    source: str
    config: DestinationConfig

    def address(self) -> str:
        c = self.config
        if c.kind == "dicom":
            tls = " (TLS)" if c.tls and c.tls.enabled else ""
            return f"{c.ae_title}@{c.host}:{c.port}{tls}"
        return str(c.url)


def stored_config(config: DestinationConfig) -> dict:
    """The JSON kept in the ``destinations`` table: the auth header's value sealed (``enc:v1:`` or ``env:``)."""
    data = config.model_dump(mode="json")
    if config.auth_header:
        name, value = config.auth_header.split(":", 1)
        data["auth_header"] = f"{name}: {seal(value.strip())}"
    return data


def loaded_config(data: dict, name: str = "?") -> DestinationConfig:
    """The usable config from a stored row (auth header decrypted, or read from its env: variable).

    A header that cannot be opened stays sealed; the STOW-RS sender then refuses to send with it.
    """
    header = data.get("auth_header")
    if header:
        hname, value = header.split(":", 1)
        try:
            data = {**data, "auth_header": f"{hname}: {unseal(value.strip(), f'destination {name!r} auth_header')}"}
        except SecretError as exc:
            log.error("%s", exc)
    return DestinationConfig(**data)


def _info(row: Destination) -> DestinationInfo:
    return DestinationInfo(row.id, row.name, row.kind, bool(row.is_default), row.source, loaded_config(row.config, row.name))


def _now() -> datetime:
    return datetime.now(timezone.utc)


def load_all(conn: Connection) -> list[DestinationInfo]:
    """Every destination, read on ``conn`` (so routing sees its own transaction's view)."""
    return [
        DestinationInfo(r["id"], r["name"], r["kind"], bool(r["is_default"]), r["source"], loaded_config(r["config"], r["name"]))
        for r in conn.execute(select(Destination.__table__).order_by(Destination.name)).mappings()
    ]


class DestinationRegistry:
    def __init__(self, sessions: sessionmaker, ttl_s: float = 2.0):
        self._sessions = sessions
        self._ttl = ttl_s
        self._lock = threading.Lock()
        self._by_id: dict[int, DestinationInfo] = {}
        self._loaded_at = 0.0

    def sync_config(self, destinations: list[DestinationConfig]) -> None:
        """Make the table agree with ``[[destinations]]`` (CLI-added ones are left alone)."""
        names = {d.name for d in destinations}
        with self._sessions.begin() as s:
            for d in destinations:
                row = s.execute(select(Destination).where(Destination.name == d.name)).scalar_one_or_none()
                data = stored_config(d)
                if row is None:
                    s.add(Destination(name=d.name, kind=d.kind, is_default=d.default, config=data, source="config", created_at=_now()))
                else:
                    row.kind, row.is_default, row.config, row.source = d.kind, d.default, data, "config"
            for row in s.execute(select(Destination).where(Destination.source == "config")).scalars():
                if row.name in names:
                    continue
                pending = _pending(s, row.id)
                if pending:
                    log.warning(
                        "destination '%s' is no longer in the config but has %d pending deliveries; kept "
                        "(remove it with 'telerad destination remove --force')", row.name, pending,
                    )
                else:
                    s.delete(row)
        self.invalidate()

    def add(self, config: DestinationConfig) -> DestinationInfo:
        try:
            with self._sessions.begin() as s:
                row = Destination(
                    name=config.name, kind=config.kind, is_default=config.default,
                    config=stored_config(config), source="cli", created_at=_now(),
                )  # fmt: skip
                s.add(row)
                s.flush()
                info = _info(row)
        except IntegrityError:
            raise DestinationError(f"a destination named '{config.name}' already exists") from None
        self.invalidate()
        return info

    def remove(self, name: str, *, force: bool = False) -> int:
        """Delete a destination and its ledger rows; returns how many pending rows were dropped."""
        with self._sessions.begin() as s:
            row = s.execute(select(Destination).where(Destination.name == name)).scalar_one_or_none()
            if row is None:
                raise DestinationError(f"no destination named '{name}'")
            pending = _pending(s, row.id)
            if pending and not force:
                raise DestinationError(
                    f"destination '{name}' has {pending} pending deliveries; use --force to drop them"
                )
            s.execute(delete(Delivery).where(Delivery.destination_id == row.id))
            s.delete(row)
        self.invalidate()
        return pending

    def list(self) -> list[DestinationInfo]:
        with self._sessions() as s:
            return [_info(r) for r in s.execute(select(Destination).order_by(Destination.name)).scalars()]

    def get(self, destination_id: int) -> DestinationInfo | None:
        with self._lock:
            if time.monotonic() - self._loaded_at > self._ttl:
                self._by_id = {d.id: d for d in self.list()}
                self._loaded_at = time.monotonic()
            return self._by_id.get(destination_id)

    def invalidate(self) -> None:
        with self._lock:
            self._loaded_at = 0.0


def _pending(session, destination_id: int) -> int:
    return session.execute(
        select(func.count(Delivery.id)).where(Delivery.destination_id == destination_id, Delivery.state.in_(PENDING_STATES))
    ).scalar_one()


def parse_destination(**fields) -> DestinationConfig:
    """A :class:`DestinationConfig` from CLI options; errors name the option."""
    from telerad.cliutil import model_from_options

    return model_from_options(DestinationConfig, DestinationError, **fields)
