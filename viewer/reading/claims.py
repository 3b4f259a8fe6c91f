"""Claims: a radiologist locks a study while reading it; others see who has it; an admin can break it."""

from __future__ import annotations

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from telerad.clock import utcnow
from viewer.auth import audit
from viewer.models import StudyClaim
from viewer.problems import Problem


def holder(s: Session, study_uid: str) -> str | None:
    return s.execute(select(StudyClaim.user).where(StudyClaim.study_uid == study_uid)).scalar()


def claim(sessions, user, study_uid: str) -> dict:
    """Claim ``study_uid`` for ``user``; 409 when someone else holds it. Claiming again is a no-op."""
    try:
        with sessions.begin() as s:
            current = holder(s, study_uid)
            if current == user.name:
                return {"study_instance_uid": study_uid, "claimed_by": user.name}
            if current is not None:
                raise Problem(409, "Study claimed", f"'{current}' is reading this study; an admin can break the claim")
            s.add(StudyClaim(study_uid=study_uid, user=user.name, claimed_at=utcnow()))
            audit.add(s, user, "study.claim", study_uid)
    except IntegrityError:
        raise Problem(409, "Study claimed", "another radiologist claimed this study at the same moment") from None
    return {"study_instance_uid": study_uid, "claimed_by": user.name}


def release(sessions, user, study_uid: str, *, force: bool = False) -> dict:
    """Release a claim: its holder, or an admin with ``force`` (breaking the lock is audited)."""
    with sessions.begin() as s:
        current = holder(s, study_uid)
        if current is None:
            return {"study_instance_uid": study_uid, "claimed_by": None}
        if current != user.name and not (force and user.role in ("admin", "open")):
            raise Problem(403, "Forbidden", f"the claim belongs to '{current}'; only an admin can break it")
        s.execute(delete(StudyClaim).where(StudyClaim.study_uid == study_uid))
        audit.add(s, user, "study.unclaim" if current == user.name else "study.claim_broken", study_uid,
                  None if current == user.name else f"claim of '{current}' broken")
    return {"study_instance_uid": study_uid, "claimed_by": None}


def require_holder_or_free(sessions, user, study_uid: str) -> None:
    """Writing a report needs the claim: take it when the study is free, 409 when another holds it."""
    claim(sessions, user, study_uid)
