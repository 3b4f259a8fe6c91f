"""Accounts and access for the web app.

The agreed interface, for every router (API, pages, DICOMweb):

- ``require_roles(*roles)``: a FastAPI dependency factory; the dependency returns the
  :class:`CurrentUser` or answers 401 (no or bad credentials) / 403 (another role);
- ``CurrentUserDep``: any authenticated user;
- ``clinic_visible(user, clinic_name)``: technicians see only their clinics, other roles all.

Credentials are either a bearer token (``POST /api/auth/token``) or the session cookie the
login page sets (pages and same-origin fetches; state-changing requests also send the CSRF token).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from viewer.auth import audit
from viewer.auth.deps import ANONYMOUS, AuthProblem, clinic_visible, current_user, require_clinic, require_roles
from viewer.auth.users import ROLES, CurrentUser

CurrentUserDep = Annotated[CurrentUser, Depends(current_user)]
ANY_ROLE = ROLES

__all__ = ["ANONYMOUS", "audit", "ANY_ROLE", "AuthProblem", "CurrentUser", "CurrentUserDep", "ROLES", "clinic_visible",
           "current_user", "require_clinic", "require_roles"]
