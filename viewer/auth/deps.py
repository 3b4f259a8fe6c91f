"""Who is calling: a bearer token (API) or the session cookie (pages, same-origin fetches).

Until the first account exists, a development install stays open as before (every
route sees the ``anonymous`` user); production then refuses every request.
Cookie-authenticated requests that change state must carry the session's CSRF token
(form field ``csrf_token`` or header ``X-CSRF-Token``).
"""

from __future__ import annotations

import hmac
import ipaddress

from typing import Annotated

from fastapi import Request, Security
from fastapi.security import OAuth2PasswordBearer
from starlette.concurrency import run_in_threadpool

from viewer.auth.users import CurrentUser, count_users, load_user
from viewer.problems import Problem

COOKIE = "telerad_session"
# Declares the bearer scheme in the OpenAPI document (the /docs "Authorize" button); reading the
# credentials is current_user's job, so it never answers by itself.
OAUTH2 = OAuth2PasswordBearer(tokenUrl="/api/auth/token", auto_error=False)
ANONYMOUS = CurrentUser("anonymous", "open", frozenset())
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}


class AuthProblem(Problem):
    """401/403 of a role check; pages turn a 401 into a redirect to the login page."""

    def __init__(self, status: int, title: str, detail: str | None = None, headers: dict | None = None):
        super().__init__(status, title, detail)
        self.headers = headers or {}


def is_loopback(request: Request) -> bool:
    host = request.client.host if request.client else ""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host in ("testclient", "localhost")


def accounts_exist(request: Request) -> bool:
    state = request.app.state
    if getattr(state, "accounts_exist", False):
        return True  # once there are accounts the app stays closed
    with state.sessions() as s:
        exists = count_users(s) > 0
    if exists:
        state.accounts_exist = True
    return exists


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


def _resolve(request: Request) -> tuple[CurrentUser | None, str | None]:
    """(user, how) from the request's credentials; (None, reason) when there are none or they are bad."""
    signer = request.app.state.signer
    token = _bearer(request)
    if token is not None:
        payload = signer.verify(token, "api")
        if payload is None:
            return None, "the bearer token is invalid or expired; get a new one at POST /api/auth/token"
        how = "bearer"
    else:
        token = request.cookies.get(COOKIE)
        if not token:
            return None, "log in first: POST /api/auth/token for a bearer token, or /login for the pages"
        payload = signer.verify(token, "session")
        if payload is None:
            return None, "the login session expired; log in again"
        how = "cookie"
    with request.app.state.sessions() as s:
        user = load_user(s, payload["sub"], payload["iat"])
    if user is None:
        return None, "the account of this login no longer exists, is disabled, or changed its password; log in again"
    return user, how


async def _check_csrf(request: Request) -> None:
    if request.method in SAFE_METHODS:
        return
    expected = request.app.state.signer.csrf(request.cookies.get(COOKIE, ""))
    sent = request.headers.get("x-csrf-token")
    if sent is None and request.headers.get("content-type", "").startswith(
            ("application/x-www-form-urlencoded", "multipart/form-data")):
        sent = (await request.form()).get("csrf_token")
    if not sent or not hmac.compare_digest(str(sent), expected):
        raise AuthProblem(403, "CSRF check failed",
                          "a form or fetch authenticated by the session cookie must send the page's csrf_token")


async def current_user(request: Request) -> CurrentUser:
    """Any authenticated user (or ``anonymous`` while a development install has no accounts)."""
    cached = getattr(request.state, "user", None)
    if cached is not None:
        return cached
    if not await run_in_threadpool(accounts_exist, request):
        if request.app.state.settings.environment == "production":
            raise AuthProblem(401, "Not authenticated", "no accounts exist yet: create one with 'telerad user add'")
        request.state.user = ANONYMOUS
        return ANONYMOUS
    user, how = await run_in_threadpool(_resolve, request)
    if user is None:
        raise AuthProblem(401, "Not authenticated", how, headers={"WWW-Authenticate": "Bearer"})
    if how == "cookie":
        await _check_csrf(request)
    request.state.user = user
    return user


def require_roles(*roles: str):
    """A dependency: the current user, who must have one of ``roles`` (403 otherwise).

    Use as ``user: Annotated[CurrentUser, Depends(require_roles("radiologist", "admin"))]``.
    """
    allowed = frozenset(roles)

    async def dependency(request: Request, _bearer: Annotated[str | None, Security(OAUTH2)] = None) -> CurrentUser:
        user = await current_user(request)
        if user is ANONYMOUS or user.role in allowed:
            return user
        raise AuthProblem(403, "Forbidden", f"this needs the role {' or '.join(sorted(allowed))}; "
                                            f"'{user.name}' has the role {user.role}")

    dependency.roles = allowed  # read by the authorization tests
    return dependency


def clinic_visible(user: CurrentUser, clinic_name: str | None) -> bool:
    """Technicians see only their clinics' studies; every other role sees all."""
    if user.role != "technician":
        return True
    return clinic_name is not None and clinic_name in user.clinics


def require_clinic(user: CurrentUser, clinic_name: str | None, what: str = "this study") -> None:
    if not clinic_visible(user, clinic_name):
        raise AuthProblem(403, "Forbidden", f"{what} belongs to a clinic '{user.name}' does not work for")


async def open_on_loopback(request: Request) -> None:
    """``/healthz`` and ``/metrics``: open to clients on this machine; others must log in as admin."""
    if is_loopback(request):
        return
    await require_roles("admin")(request)
