"""Every route of the app × every role: no credentials 401, another role 403, its roles get through.

The routes are read from the app itself, with the roles their ``require_roles`` dependencies
allow, so a new route without a role check fails ``test_every_route_checks_a_role``.
"""

from __future__ import annotations

import re

import pytest
from fastapi.routing import APIRoute, iter_route_contexts
from sqlalchemy.orm import sessionmaker

from telerad.settings import Settings
from tests.viewer.conftest import ACCOUNTS, token
from viewer.auth import ROLES
from viewer.auth.deps import current_user, open_on_loopback
from viewer.main import create_app

# Public on purpose: logging in, and the OHIF bundle (its page itself asks for a login).
PUBLIC = {("/login", "GET"), ("/login", "POST"), ("/api/auth/token", "POST"), ("/ohif", "GET"),
          ("/ohif/app-config.js", "GET"), ("/ohif/{path:path}", "GET")}
USER_OF_ROLE = {"technician": "tech-a", "radiologist": "rad", "stroke": "stroke1", "admin": "admin1"}
assert {ACCOUNTS[u][0] for u in USER_OF_ROLE.values()} == set(ROLES)


def _roles(dependant) -> frozenset[str] | str | None:
    """The roles a route's dependencies allow: a frozenset, "any", "loopback", or None (no check)."""
    found = None
    for dep in dependant.dependencies:
        call = dep.call
        if getattr(call, "roles", None) is not None:
            return call.roles
        if call is current_user:
            found = "any"
        elif call is open_on_loopback:
            return "loopback"
        inner = _roles(dep)
        if inner is not None:
            return inner
    return found


def _routes() -> list[tuple[str, str, object]]:
    """(path, method, roles) of every API route, also those of included routers."""
    app = create_app(sessionmaker(), settings=Settings())
    out = []
    for rc in iter_route_contexts(app.routes):
        route = rc.original_route
        if isinstance(route, APIRoute):
            dependant = getattr(rc._effective_route, "dependant", None) or route.dependant
            for method in sorted(route.methods - {"HEAD"}):
                out.append((rc.path, method, _roles(dependant)))
    return out


ROUTES = _routes()


def _url(path: str) -> str:
    return re.sub(r"\{(\w+)(:\w+)?\}", lambda m: "999999" if m.group(1).endswith("id") else "1.2.826.0.1.999", path)


def test_every_route_checks_a_role():
    unprotected = [(p, m) for p, m, roles in ROUTES if roles is None and (p, m) not in PUBLIC]
    assert not unprotected, f"routes without require_roles/current_user: {unprotected}"
    assert len(ROUTES) > 30


@pytest.fixture(scope="module")
def tokens(module_env):
    c = module_env.client()
    return {role: token(c, user) for role, user in USER_OF_ROLE.items()}


@pytest.mark.parametrize("path,method,roles", [r for r in ROUTES if (r[0], r[1]) not in PUBLIC],
                         ids=[f"{m} {p}" for p, m, _ in ROUTES if (p, m) not in PUBLIC])
def test_route_answers_each_role(module_env, tokens, path, method, roles):
    url = _url(path)
    headers = {"accept": "application/json"}
    if roles == "loopback":
        assert module_env.client(host="127.0.0.1").request(method, url).status_code == 200
        far = module_env.client(host="203.0.113.9")
        assert far.request(method, url, headers=headers).status_code == 401
        for role, tok in tokens.items():
            status = far.request(method, url, headers={**headers, "authorization": f"Bearer {tok}"}).status_code
            assert status == (200 if role == "admin" else 403), role
        return
    c = module_env.client()
    anon = c.request(method, url, headers=headers)
    assert anon.status_code == 401, anon.text
    assert anon.headers["content-type"].startswith("application/problem+json")
    allowed = set(ROLES) if roles == "any" else set(roles)
    for role, tok in tokens.items():
        if role not in allowed:
            r = c.request(method, url, headers={**headers, "authorization": f"Bearer {tok}"})
            assert r.status_code == 403, (role, r.status_code, r.text[:300])
            assert r.headers["content-type"].startswith("application/problem+json")
        elif not path.endswith("/stream"):  # a granted stream never ends; its refusals are tested above
            r = c.request(method, url, headers={**headers, "authorization": f"Bearer {tok}"})
            clinic_refusal = role == "technician" and r.status_code == 403 and "clinic" in r.text
            assert r.status_code not in (401, 403) or clinic_refusal, (role, r.status_code, r.text[:300])
