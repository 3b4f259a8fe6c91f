"""Accounts: add, list, change password, authenticate, load (shared by the CLI and the web app)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from pacs_gateway.index.models import Clinic
from telerad.clock import as_utc, isoformat, utcnow
from telerad.errors import TeleradError
from viewer.auth.passwords import hash_password, verify_password
from viewer.models import User, UserClinic

ROLES = ("technician", "radiologist", "stroke", "admin")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")


class AccountError(TeleradError, ValueError):
    """A bad account request; the message names the field and the fix."""


@dataclass(frozen=True)
class CurrentUser:
    """The logged-in user of a request. ``clinics``: clinic names (technicians only see these)."""

    name: str
    role: str
    clinics: frozenset[str] = frozenset()


def _check(name: str, role: str, clinics: list[str]) -> None:
    if not NAME_RE.match(name or ""):
        raise AccountError(f"user name '{name}': use 1-64 letters, digits, '.', '_', '@' or '-', starting with a letter or digit")
    if role not in ROLES:
        raise AccountError(f"--role '{role}': must be one of {', '.join(ROLES)}")
    if role == "technician" and not clinics:
        raise AccountError("--clinic: a technician must be bound to at least one clinic (see 'telerad clinic list')")
    if role != "technician" and clinics:
        raise AccountError(f"--clinic: only technicians are bound to clinics, not the role '{role}'")


def _clinic_ids(s: Session, clinics: list[str]) -> list[int]:
    ids = []
    for name in clinics:
        cid = s.execute(select(Clinic.id).where((Clinic.name == name) | (Clinic.ae_title == name))).scalar()
        if cid is None:
            raise AccountError(f"--clinic '{name}': no such clinic (see 'telerad clinic list')")
        ids.append(cid)
    return ids


def add_user(s: Session, name: str, role: str, password: str, clinics: list[str] = ()) -> User:
    clinics = list(clinics or [])
    _check(name, role, clinics)
    if s.execute(select(User.id).where(User.name == name)).scalar() is not None:
        raise AccountError(f"user '{name}' already exists (change the password with 'telerad user passwd {name}')")
    try:
        pw = hash_password(password)
    except ValueError as exc:
        raise AccountError(f"password: {exc}") from None
    now = utcnow()
    user = User(name=name, role=role, password_hash=pw, disabled=False, created_at=now, password_changed_at=now)
    s.add(user)
    s.flush()
    for cid in _clinic_ids(s, clinics):
        s.add(UserClinic(user_id=user.id, clinic_id=cid))
    return user


def set_password(s: Session, name: str, password: str) -> None:
    user = s.execute(select(User).where(User.name == name)).scalar_one_or_none()
    if user is None:
        raise AccountError(f"no user named '{name}' (see 'telerad user list')")
    try:
        user.password_hash = hash_password(password)
    except ValueError as exc:
        raise AccountError(f"password: {exc}") from None
    user.password_changed_at = utcnow()


def remove_user(s: Session, name: str) -> None:
    n = s.execute(delete(User).where(User.name == name)).rowcount
    if not n:
        raise AccountError(f"no user named '{name}' (see 'telerad user list')")


def list_users(s: Session) -> list[dict]:
    clinics = clinics_by_user(s)
    return [{"name": u.name, "role": u.role, "clinics": sorted(clinics.get(u.id, ())), "disabled": u.disabled,
             "created_at": isoformat(u.created_at)}
            for u in s.execute(select(User).order_by(User.name)).scalars()]


def clinics_by_user(s: Session, user_id: int | None = None) -> dict[int, set[str]]:
    q = select(UserClinic.user_id, Clinic.name).join(Clinic, Clinic.id == UserClinic.clinic_id)
    if user_id is not None:
        q = q.where(UserClinic.user_id == user_id)
    out: dict[int, set[str]] = {}
    for uid, name in s.execute(q):
        out.setdefault(uid, set()).add(name)
    return out


def count_users(s: Session) -> int:
    return s.execute(select(func.count(User.id))).scalar_one()


def authenticate(s: Session, name: str, password: str) -> CurrentUser | None:
    """The user when the name and password match an enabled account; None otherwise (same time either way)."""
    user = s.execute(select(User).where(User.name == name)).scalar_one_or_none() if name else None
    ok = verify_password(user.password_hash if user else None, password or "")
    if not ok or user is None or user.disabled:
        return None
    return CurrentUser(user.name, user.role, frozenset(clinics_by_user(s, user.id).get(user.id, ())))


def load_user(s: Session, name: str, issued_at: int) -> CurrentUser | None:
    """The account a token names, unless it is gone, disabled, or changed its password after ``issued_at``."""
    user = s.execute(select(User).where(User.name == name)).scalar_one_or_none()
    if user is None or user.disabled or int(as_utc(user.password_changed_at).timestamp()) > issued_at:
        return None
    return CurrentUser(user.name, user.role, frozenset(clinics_by_user(s, user.id).get(user.id, ())))
