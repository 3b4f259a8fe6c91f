"""Claims: a radiologist locks a study while reading it; others see who has it; an admin can break it.

A claim lapses when its holder has done nothing with the study for ``web.claim_idle_min`` minutes (claiming it
again or saving a report renews it): a radiologist who leaves without releasing never blocks a study for longer.
A lapsed claim reads as free everywhere; the next radiologist's claim replaces it, and the audit log records it
as ``study.claim_lapsed``.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from telerad.clock import as_utc, utcnow
from viewer.auth import audit
from viewer.models import StudyClaim
from viewer.problems import Problem


def live_since(idle_min: float, now: datetime | None = None) -> datetime:
    """A claim taken or renewed after this moment has not lapsed."""
    return (now or utcnow()) - timedelta(minutes=idle_min)


def _live(c: StudyClaim, idle_min: float, now: datetime) -> bool:
    return as_utc(c.claimed_at) > live_since(idle_min, now)


def active(s: Session, study_uids: list[str], idle_min: float) -> dict[str, StudyClaim]:
    """The claims of ``study_uids`` that have not lapsed, by study."""
    rows = s.execute(select(StudyClaim).where(StudyClaim.study_uid.in_(study_uids),
                                              StudyClaim.claimed_at > live_since(idle_min))).scalars()
    return {c.study_uid: c for c in rows}


def claim(sessions, user, study_uid: str, *, idle_min: float) -> dict:
    """Claim ``study_uid`` for ``user``; 409 when someone else holds a live claim. Claiming again renews it."""
    now = utcnow()
    try:
        with sessions.begin() as s:
            current = s.get(StudyClaim, study_uid)
            if current is not None and current.user == user.name:
                current.claimed_at = now
                return {"study_instance_uid": study_uid, "claimed_by": user.name}
            if current is not None and _live(current, idle_min, now):
                raise Problem(409, "Study claimed", f"'{current.user}' is reading this study; an admin can break the "
                                                    f"claim, and it lapses after {idle_min:g} minutes without activity")
            if current is not None:
                idle = (now - as_utc(current.claimed_at)).total_seconds() / 60.0
                audit.add(s, user, "study.claim_lapsed", study_uid,
                          f"claim of '{current.user}' lapsed after {idle:.0f} minutes without activity")
                s.delete(current)
                s.flush()
            s.add(StudyClaim(study_uid=study_uid, user=user.name, claimed_at=now))
            audit.add(s, user, "study.claim", study_uid)
    except IntegrityError:
        raise Problem(409, "Study claimed", "another radiologist claimed this study at the same moment") from None
    return {"study_instance_uid": study_uid, "claimed_by": user.name}


def release(sessions, user, study_uid: str, *, idle_min: float, force: bool = False) -> dict:
    """Release a claim: its holder, or an admin with ``force`` (breaking the lock is audited). A lapsed claim of
    someone else's is already free: nothing to release."""
    with sessions.begin() as s:
        current = s.get(StudyClaim, study_uid)
        if current is None or (current.user != user.name and not _live(current, idle_min, utcnow())):
            return {"study_instance_uid": study_uid, "claimed_by": None}
        if current.user != user.name and not (force and user.role in ("admin", "open")):
            raise Problem(403, "Forbidden", f"the claim belongs to '{current.user}'; only an admin can break it")
        holder = current.user
        s.execute(delete(StudyClaim).where(StudyClaim.study_uid == study_uid))
        audit.add(s, user, "study.unclaim" if holder == user.name else "study.claim_broken", study_uid,
                  None if holder == user.name else f"claim of '{holder}' broken")
    return {"study_instance_uid": study_uid, "claimed_by": None}


def require_holder_or_free(sessions, user, study_uid: str, *, idle_min: float) -> None:
    """Writing a report needs the claim: take (or renew) it when the study is free, 409 when another holds it."""
    claim(sessions, user, study_uid, idle_min=idle_min)
