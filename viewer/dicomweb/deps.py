"""Dependencies of the DICOMweb routes: an index session and the authenticated user.

Credentials are those of :mod:`viewer.auth`: a bearer token or the session cookie (OHIF,
served from the same origin, sends the cookie). Every role may read; technicians only see
their clinics' studies (QIDO filters them out, WADO answers 403). Uploads (STOW-RS) need
the technician, radiologist or admin role; a technician stores only as one of their clinics.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from viewer.auth import ANY_ROLE, CurrentUser, require_roles

READ_ROLES = ANY_ROLE
STOW_ROLES = ("technician", "radiologist", "admin")

_read = require_roles(*READ_ROLES)
_stow = require_roles(*STOW_ROLES)


def _reader(request: Request, user: Annotated[CurrentUser, Depends(_read)]) -> Iterator[tuple[Session, CurrentUser]]:
    with request.app.state.sessions() as session:
        yield session, user


ReaderDep = Annotated[tuple[Session, CurrentUser], Depends(_reader)]
UploaderDep = Annotated[CurrentUser, Depends(_stow)]
