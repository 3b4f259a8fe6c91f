"""Logging in: the OAuth2 password flow for the API, the login page and its cookie, logging out."""

from __future__ import annotations

import re
import secrets
import time
from collections import deque
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Depends, FastAPI, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from starlette.concurrency import run_in_threadpool

from viewer.api.schemas import Token
from viewer.auth import audit
from viewer.auth.deps import COOKIE, AuthProblem, current_user
from viewer.auth.users import CurrentUser, authenticate
from viewer.problems import Problem, problem

router = APIRouter(tags=["auth"])
LOGIN_CSRF = "telerad_login"
MAX_FAILURES, FAILURE_WINDOW_S = 10, 600


class FailureLimiter:
    """At most MAX_FAILURES bad passwords per (client, user name) in FAILURE_WINDOW_S; bounded memory."""

    def __init__(self, max_keys: int = 10_000):
        self._fails: dict[tuple[str, str], deque] = {}
        self.max_keys = max_keys

    def blocked(self, key: tuple[str, str]) -> bool:
        q = self._fails.get(key)
        now = time.monotonic()
        while q and now - q[0] > FAILURE_WINDOW_S:
            q.popleft()
        return bool(q) and len(q) >= MAX_FAILURES

    def fail(self, key: tuple[str, str]) -> None:
        if key not in self._fails and len(self._fails) >= self.max_keys:
            self._fails.pop(next(iter(self._fails)))
        self._fails.setdefault(key, deque(maxlen=MAX_FAILURES)).append(time.monotonic())

    def clear(self, key: tuple[str, str]) -> None:
        self._fails.pop(key, None)


def _client(request: Request) -> str:
    return request.client.host if request.client else "-"


def _login(request: Request, username: str, password: str) -> CurrentUser | None:
    key = (_client(request), username)
    limiter = request.app.state.login_limiter
    if limiter.blocked(key):
        raise Problem(429, "Too many failed logins", f"wait {FAILURE_WINDOW_S // 60} minutes before trying '{username}' again")
    with request.app.state.sessions() as s:
        user = authenticate(s, username, password)
    if user is None:
        limiter.fail(key)
        audit.record(request.app.state.sessions, CurrentUser(username[:64] or "-", None), "login.failed",
                     client=_client(request))
        return None
    limiter.clear(key)
    audit.record(request.app.state.sessions, user, "login", client=_client(request))
    return user


@router.post("/api/auth/token", response_model=Token)
async def token(request: Request, username: Annotated[str, Form(max_length=64)],
                password: Annotated[str, Form(max_length=1024)]) -> dict:
    """OAuth2 password flow: form fields ``username`` and ``password``; a bearer token for the API."""
    user = await run_in_threadpool(_login, request, username, password)
    if user is None:
        raise AuthProblem(401, "Login failed", "the user name or the password is wrong",
                          headers={"WWW-Authenticate": "Bearer"})
    ttl = request.app.state.settings.web.token_ttl_s
    return {"access_token": request.app.state.signer.issue(user.name, "api", ttl), "token_type": "bearer",
            "expires_in": ttl, "role": user.role}


SAFE_NEXT = re.compile(r"^/(?![/\\])[A-Za-z0-9/_.~%?=&+:;,@-]*$")


def _safe_next(target: str | None) -> str | None:
    """A same-site path to return to after logging in (never another host: no '//', '\\' or control characters)."""
    return target if target and SAFE_NEXT.match(target) else None


@router.get("/login", response_class=HTMLResponse, include_in_schema=False)
def login_page(request: Request, next: str | None = None, error: str | None = None):
    from viewer.pages.render import render

    nonce = secrets.token_urlsafe(16)
    resp = render(request, "login.html", title="Log in", next=_safe_next(next) or "", login_csrf=nonce,
                  error=error, status_code=401 if error else 200)
    resp.set_cookie(LOGIN_CSRF, nonce, httponly=True, samesite="strict", path="/login",
                    secure=request.app.state.settings.web.cookie_secure)
    return resp


@router.post("/login", include_in_schema=False)
async def login_submit(request: Request, username: Annotated[str, Form(max_length=64)],
                       password: Annotated[str, Form(max_length=1024)], login_csrf: Annotated[str, Form()] = "",
                       next: Annotated[str, Form()] = ""):
    from viewer.pages.render import HOME

    cookie_nonce = request.cookies.get(LOGIN_CSRF, "")
    if not cookie_nonce or not secrets.compare_digest(cookie_nonce, login_csrf):
        return RedirectResponse("/login?error=expired", status_code=303)
    user = await run_in_threadpool(_login, request, username, password)
    if user is None:
        return RedirectResponse(f"/login?error=failed&next={quote(next)}", status_code=303)
    web = request.app.state.settings.web
    resp = RedirectResponse(_safe_next(next) or HOME.get(user.role, "/"), status_code=303)
    resp.set_cookie(COOKIE, request.app.state.signer.issue(user.name, "session", web.session_ttl_s),
                    max_age=web.session_ttl_s, httponly=True, samesite="lax", secure=web.cookie_secure, path="/")
    resp.delete_cookie(LOGIN_CSRF, path="/login")
    return resp


@router.post("/logout", include_in_schema=False)
async def logout(request: Request, user: Annotated[CurrentUser, Depends(current_user)]):
    """Ends the page session (a cookie session must send its CSRF token)."""
    await run_in_threadpool(audit.record, request.app.state.sessions, user, "logout", None, None, _client(request))
    resp = RedirectResponse("/login", status_code=303)
    resp.delete_cookie(COOKIE, path="/")
    return resp


def _wants_html(request: Request) -> bool:
    path = request.url.path
    if path.startswith(("/api/", "/dicomweb", "/metrics", "/healthz", "/openapi.json")):
        return False
    return "text/html" in request.headers.get("accept", "")


def install(app: FastAPI) -> None:
    """The 401/403 answers: problem+json for the API; pages redirect to the login page or show the refusal."""
    app.state.login_limiter = FailureLimiter()

    @app.exception_handler(AuthProblem)
    async def _auth_problem(request: Request, exc: AuthProblem):
        if _wants_html(request):
            if exc.status == 401:
                target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                return RedirectResponse(f"/login?next={quote(target)}", status_code=303)
            from viewer.pages.render import render

            return render(request, "error.html", status_code=exc.status, title=exc.title, detail=exc.detail)
        resp = problem(exc.status, exc.title, exc.detail)
        resp.headers.update(exc.headers)
        return resp


def include_docs(app: FastAPI) -> None:
    """``/openapi.json`` and ``/docs`` for logged-in users; not served at all in production."""
    if app.state.settings.environment == "production":
        return
    from fastapi.openapi.docs import get_swagger_ui_html
    from fastapi.responses import JSONResponse

    @app.get("/openapi.json", include_in_schema=False, dependencies=[Depends(current_user)])
    def openapi():
        return JSONResponse(app.openapi())

    @app.get("/docs", include_in_schema=False, dependencies=[Depends(current_user)])
    def docs():
        return get_swagger_ui_html(openapi_url="/openapi.json", title="telerad API")
