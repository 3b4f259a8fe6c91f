"""The on-call roster: ``[[oncall]]`` in the config plus contacts added with ``telerad oncall add``.

Both live in the ``oncall_contacts`` table (``source`` says which), so a running
gateway sees CLI changes at its next alert.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import sessionmaker

from stroke.config import OncallContactConfig
from stroke.models import OncallContact
from telerad.errors import TeleradError
from telerad.secretbox import ENV_PREFIX, PREFIX, SecretError, seal, unseal


class RosterError(TeleradError, ValueError):
    exit_code = 2


@dataclass(frozen=True)
class Contact:
    name: str
    tier: int
    email: str | None
    webhook_url: str | None
    webhook_secret: str | None
    source: str

    def channels(self) -> list[tuple[str, str]]:
        """``[(channel, target)]``: ``("webhook", url)`` and/or ``("email", address)``."""
        out = []
        if self.webhook_url:
            out.append(("webhook", self.webhook_url))
        if self.email:
            out.append(("email", self.email))
        return out

    def public(self) -> dict:
        """The contact without its webhook secret."""
        return {"name": self.name, "tier": self.tier, "email": self.email, "webhook": self.webhook_url,
                "webhook_secret": "whsec_***" if self.webhook_secret else None, "source": self.source}


def _contact(row: OncallContact) -> Contact:
    """The contact as stored: ``webhook_secret`` stays sealed (``enc:v1:...`` or ``env:NAME``)."""
    return Contact(row.name, row.tier, row.email, row.webhook_url, row.webhook_secret, row.source)


def _same_secret(stored: str | None, value: str | None) -> bool:
    """Whether the stored (sealed) secret already holds ``value``; plaintext rows never count as the same."""
    if stored is None or value is None or value.startswith(ENV_PREFIX):
        return stored == value
    if not stored.startswith(PREFIX):
        return False
    try:
        return unseal(stored) == value
    except SecretError:
        return False


def _now() -> datetime:
    return datetime.now(timezone.utc)


def parse_contact(**fields) -> OncallContactConfig:
    """A contact from CLI options; errors name the option."""
    from telerad.cliutil import model_from_options

    return model_from_options(OncallContactConfig, RosterError, **fields)


class Roster:
    def __init__(self, sessions: sessionmaker):
        self._sessions = sessions

    def sync_config(self, contacts: list[OncallContactConfig]) -> None:
        """Make the table agree with ``[[oncall]]`` (contacts added with the CLI are left alone)."""
        names = {c.name for c in contacts}
        with self._sessions.begin() as s:
            for c in contacts:
                row = s.execute(select(OncallContact).where(OncallContact.name == c.name)).scalar_one_or_none()
                if row is None:
                    row = OncallContact(name=c.name, created_at=_now())
                    s.add(row)
                if not _same_secret(row.webhook_secret, c.webhook_secret):
                    row.webhook_secret = seal(c.webhook_secret)  # unchanged secrets keep their stored form
                row.tier, row.email, row.webhook_url = c.tier, c.email, c.webhook
                row.source = "config"
            s.execute(delete(OncallContact).where(OncallContact.source == "config", OncallContact.name.not_in(names)))

    def add(self, contact: OncallContactConfig) -> Contact:
        try:
            with self._sessions.begin() as s:
                row = OncallContact(name=contact.name, tier=contact.tier, email=contact.email,
                                    webhook_url=contact.webhook, webhook_secret=seal(contact.webhook_secret),
                                    source="cli", created_at=_now())
                s.add(row)
                s.flush()
                return _contact(row)
        except IntegrityError:
            raise RosterError(f"a contact named '{contact.name}' is already on the roster") from None

    def remove(self, name: str) -> None:
        with self._sessions.begin() as s:
            n = s.execute(delete(OncallContact).where(OncallContact.name == name)).rowcount
        if not n:
            raise RosterError(f"no contact named '{name}' is on the roster")

    def list(self) -> list[Contact]:
        with self._sessions() as s:
            rows = s.execute(select(OncallContact).order_by(OncallContact.tier, OncallContact.name)).scalars()
            return [_contact(r) for r in rows]

    def webhook_secret(self, name: str) -> str | None:
        """The usable webhook secret of contact ``name`` (decrypted, or read from its env: variable).

        Deliveries look it up here when they send; it is never copied into a delivery row.
        Raises :class:`~telerad.secretbox.SecretError` when it cannot be decrypted or resolved.
        """
        with self._sessions() as s:
            stored = s.execute(select(OncallContact.webhook_secret).where(OncallContact.name == name)).scalar_one_or_none()
        return unseal(stored, f"webhook secret of contact '{name}'")

    def tier(self, tier: int) -> list[Contact]:
        return [c for c in self.list() if c.tier == tier]

    def next_tier(self, after: int) -> int | None:
        """The lowest tier above ``after`` that has anyone on it."""
        higher = sorted({c.tier for c in self.list() if c.tier > after})
        return higher[0] if higher else None
