"""The audit log: who viewed, reported or acknowledged what, and when."""

from __future__ import annotations

import logging

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from telerad.clock import isoformat, utcnow
from viewer.models import AuditEntry

log = logging.getLogger(__name__)


def record(sessions: sessionmaker, user, action: str, target: str | None = None, detail: str | None = None,
           client: str | None = None) -> None:
    """Write one entry in its own transaction. ``user``: a CurrentUser (or anything with name/role)."""
    with sessions.begin() as s:
        add(s, user, action, target, detail, client)


def add(s: Session, user, action: str, target: str | None = None, detail: str | None = None,
        client: str | None = None) -> None:
    """Write one entry inside the caller's transaction (so the entry commits with the change)."""
    s.add(AuditEntry(at=utcnow(), user=user.name[:64], role=getattr(user, "role", None), action=action[:32],
                     target=(target or None) and target[:200], detail=detail, client=(client or None) and client[:64]))


def entries(s: Session, *, limit: int = 200, user: str | None = None, action: str | None = None,
            before_id: int | None = None) -> list[dict]:
    q = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit)
    if user:
        q = q.where(AuditEntry.user == user)
    if action:
        q = q.where(AuditEntry.action == action)
    if before_id:
        q = q.where(AuditEntry.id < before_id)
    return [{"id": e.id, "at": isoformat(e.at), "user": e.user, "role": e.role,
             "action": e.action, "target": e.target, "detail": e.detail, "client": e.client}
            for e in s.execute(q).scalars()]
