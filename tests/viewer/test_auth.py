"""Accounts and access: tokens, cookies, CSRF, roles, clinics, loopback-only health, the user CLI."""

from __future__ import annotations

import io
import json

import pytest

from tests.viewer.conftest import PASSWORD, STUDY_A, STUDY_B, token
from viewer.auth.tokens import TokenSigner


def test_password_flow_gives_an_expiring_bearer_token(env):
    c = env.client()
    r = c.post("/api/auth/token", data={"username": "rad", "password": PASSWORD})
    assert r.status_code == 200
    body = r.json()
    assert body["token_type"] == "bearer" and body["expires_in"] == 3600
    payload = env.app.state.signer.verify(body["access_token"], "api")
    assert payload["sub"] == "rad" and payload["exp"] - payload["iat"] == 3600
    assert env.app.state.signer.verify(body["access_token"], "api", now=payload["exp"] + 1) is None
    wrong = c.post("/api/auth/token", data={"username": "rad", "password": "nope-nope"})
    assert wrong.status_code == 401 and wrong.headers["content-type"].startswith("application/problem+json")
    assert "wrong" in wrong.json()["detail"]
    assert c.post("/api/auth/token", data={"username": "ghost", "password": PASSWORD}).status_code == 401
    missing = c.post("/api/auth/token", data={"username": "rad"})
    assert missing.status_code == 422 and "password" in missing.json()["detail"]


def test_tokens_signed_with_another_key_or_tampered_are_refused(env):
    c = env.client()
    forged = TokenSigner("another-key").issue("admin1", "api", 600)
    r = c.get("/api/studies", headers={"authorization": f"Bearer {forged}"})
    assert r.status_code == 401 and "invalid or expired" in r.json()["detail"]
    good = token(c, "rad")
    body, sig = good.split(".")
    assert c.get("/api/studies", headers={"authorization": f"Bearer {body}x.{sig}"}).status_code == 401
    session_kind = env.app.state.signer.issue("rad", "session", 600)
    assert c.get("/api/studies", headers={"authorization": f"Bearer {session_kind}"}).status_code == 401


def test_no_credentials_is_401_and_wrong_clinic_is_403(env):
    anon = env.client()
    r = anon.get("/api/studies")
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    assert r.headers["content-type"].startswith("application/problem+json")
    tech = env.client("tech-a")
    assert [s["study_instance_uid"] for s in tech.get("/api/studies").json()] == [STUDY_A]
    assert tech.get(f"/api/studies/{STUDY_A}").status_code == 200
    other = tech.get(f"/api/studies/{STUDY_B}")
    assert other.status_code == 403 and "clinic" in other.json()["detail"]
    assert tech.get("/api/triage").status_code == 403
    rad = env.client("rad")
    listed = rad.get("/api/studies")
    assert {s["study_instance_uid"] for s in listed.json()} == {STUDY_A, STUDY_B}
    assert "Doe" not in listed.text and "patient" not in listed.text  # the JSON carries no PHI


def test_password_change_ends_older_tokens(env):
    c = env.client()
    old = token(c, "rad")
    from viewer.auth import users

    with env.sessions.begin() as s:
        users.set_password(s, "rad", "a brand new password")
        from viewer.models import User

        u = s.query(User).filter(User.name == "rad").one()
        u.password_changed_at = u.password_changed_at.replace(year=u.password_changed_at.year + 1)
    assert c.get("/api/studies", headers={"authorization": f"Bearer {old}"}).status_code == 401
    assert c.post("/api/auth/token", data={"username": "rad", "password": "a brand new password"}).status_code == 200


def test_cookie_login_is_httponly_lax_and_form_posts_need_the_csrf_token(env):
    c = env.client()
    r = c.get("/worklist", headers={"accept": "text/html"})
    assert r.status_code == 303 and r.headers["location"].startswith("/login?next=/worklist")
    r = c.get("/worklist?kind=ctp&status=complete", headers={"accept": "text/html"})
    assert r.headers["location"] == "/login?next=/worklist%3Fkind%3Dctp%26status%3Dcomplete"  # the query survives
    from tests.viewer.conftest import login_page

    done = login_page(c, "rad")
    assert done.status_code == 303 and done.headers["location"] == "/worklist"
    cookie = done.headers["set-cookie"]
    assert "telerad_session=" in cookie and "HttpOnly" in cookie and "SameSite=lax" in cookie.replace("Lax", "lax")
    assert c.get("/api/studies").status_code == 200  # same-origin fetch with the cookie
    refused = c.post("/logout")
    assert refused.status_code == 403 and "CSRF" in refused.json()["title"]
    csrf = env.app.state.signer.csrf(c.cookies.get("telerad_session"))
    assert c.post("/logout", data={"csrf_token": csrf}).status_code == 303


def test_login_form_needs_its_nonce(env):
    c = env.client()
    r = c.post("/login", data={"username": "rad", "password": PASSWORD, "login_csrf": "forged"})
    assert r.status_code == 303 and "error=expired" in r.headers["location"]
    assert "telerad_session" not in r.headers.get("set-cookie", "")


def test_repeated_bad_passwords_are_throttled(env):
    c = env.client()
    for _ in range(10):
        assert c.post("/api/auth/token", data={"username": "stroke1", "password": "bad-bad-bad"}).status_code == 401
    r = c.post("/api/auth/token", data={"username": "stroke1", "password": PASSWORD})
    assert r.status_code == 429 and "wait" in r.json()["detail"]


def test_health_is_open_on_loopback_only_and_docs_need_a_login(env):
    assert env.client(host="127.0.0.1").get("/healthz").status_code == 200
    assert env.client(host="::1").get("/healthz").status_code == 200
    assert env.client(host="10.1.2.3").get("/healthz").status_code == 401
    assert env.client("rad", host="10.1.2.3").get("/healthz").status_code == 403
    assert env.client("admin1", host="10.1.2.3").get("/healthz").status_code == 200
    assert env.client().get("/openapi.json").status_code == 401
    assert env.client().get("/docs").status_code == 401
    spec = env.client("rad").get("/openapi.json").json()
    assert "/api/studies" in spec["paths"]
    assert spec["components"]["securitySchemes"]["OAuth2PasswordBearer"]["flows"]["password"]["tokenUrl"] == "/api/auth/token"


def test_production_refuses_the_default_secret_key(tmp_path, capsys):
    from pacs_gateway.cli.serve import main

    import os

    old = {k: os.environ.get(k) for k in ("TELERAD_ENVIRONMENT",)}
    os.environ["TELERAD_ENVIRONMENT"] = "production"
    try:
        assert main(["--data-dir", str(tmp_path / "var"), "--http-port", "1"]) != 0
    finally:
        for k, v in old.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
    err = capsys.readouterr().err
    assert "secret_key" in err and "Traceback" not in err


def test_user_cli_add_list_passwd_remove(env, tmp_path, monkeypatch, capsys):
    from viewer.auth.cli import main

    data = ["--data-dir", str(tmp_path / "cli")]
    monkeypatch.setattr("sys.stdin", io.StringIO("first password\n"))
    assert main(["add", "nurse", "--role", "radiologist", "--password-stdin", *data]) == 0
    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    assert main(["add", "x", "--role", "radiologist", "--password-stdin", *data]) != 0
    assert "at least 8" in capsys.readouterr().err
    monkeypatch.setattr("sys.stdin", io.StringIO("technician pw\n"))
    assert main(["add", "t1", "--role", "technician", "--password-stdin", *data]) != 0
    assert "--clinic" in capsys.readouterr().err
    monkeypatch.setattr("sys.stdin", io.StringIO("technician pw\n"))
    assert main(["add", "t1", "--role", "technician", "--clinic", "Nowhere", "--password-stdin", *data]) != 0
    assert "no such clinic" in capsys.readouterr().err
    assert main(["list", "--json", *data]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["name"], r["role"]) for r in rows] == [("nurse", "radiologist")]
    monkeypatch.setattr("sys.stdin", io.StringIO("second password\n"))
    assert main(["passwd", "nurse", "--password-stdin", *data]) == 0
    assert main(["remove", "nurse", *data]) == 0
    assert main(["remove", "nurse", *data]) != 0 and "no user named 'nurse'" in capsys.readouterr().err
    from pacs_gateway.index.db import index_sessions
    from viewer.models import User

    with index_sessions(f"sqlite:///{(tmp_path / 'cli' / 'index.sqlite3').resolve()}") as sessions, sessions() as s:
        assert s.query(User).count() == 0


def test_demo_users_are_made_once_with_printed_passwords(tmp_path, capsys):
    from telerad.cli import main

    args = ["user", "demo", "--config", "config/demo.toml", "--data-dir", str(tmp_path / "var")]
    assert main(args) == 0
    out = capsys.readouterr().out
    lines = [line.split() for line in out.splitlines()[1:]]
    assert {line[1] for line in lines} == {"radiologist", "stroke", "admin", "technician"}
    assert main(args) == 0 and "exist already" in capsys.readouterr().out
    from pacs_gateway.index.db import index_sessions
    from viewer.auth.users import authenticate
    from viewer.models import User

    with index_sessions(f"sqlite:///{(tmp_path / 'var' / 'index.sqlite3').resolve()}") as sessions, sessions() as s:
        assert all(lines[i][2] not in u.password_hash for i, u in enumerate(s.query(User).order_by(User.id)))
        tech = next(line for line in lines if line[1] == "technician")
        assert authenticate(s, tech[0], tech[2]).clinics == frozenset({"Demo Township Clinic"})


@pytest.mark.parametrize("path", ["/api/studies", "/api/alerts", "/api/triage"])
def test_open_install_without_accounts_keeps_working(tmp_path, path):
    from starlette.testclient import TestClient

    from pacs_gateway.index.db import open_index
    from telerad.settings import Settings
    from viewer.main import create_app

    engine, sessions = open_index(f"sqlite:///{tmp_path / 'i.sqlite3'}")
    try:
        c = TestClient(create_app(sessions, settings=Settings()))
        assert c.get(path).status_code in (200, 503)
    finally:
        engine.dispose()


@pytest.mark.parametrize("target,expected", [("/studies/1.2.3", "/studies/1.2.3"), ("//evil.example", "/worklist"),
                                             ("/\\evil.example", "/worklist"), ("https://evil.example", "/worklist")])
def test_login_returns_only_to_a_path_of_this_site(env, target, expected):
    import re

    c = env.client()
    nonce = re.search(r'name="login_csrf" value="([^"]+)"', c.get("/login").text).group(1)
    r = c.post("/login", data={"username": "rad", "password": PASSWORD, "login_csrf": nonce, "next": target})
    assert r.status_code == 303 and r.headers["location"] == expected


def test_migration_0004_matches_the_reading_room_models(tmp_path):
    """Alembic's autogenerate finds nothing to change for the reading room's tables after 0004."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from pacs_gateway.index.db import open_index
    from pacs_gateway.index.models import Base
    from viewer import models

    engine, _ = open_index(f"sqlite:///{tmp_path / 'm.sqlite3'}")
    try:
        with engine.connect() as conn:
            assert MigrationContext.configure(conn).get_current_revision() >= "0004"
            ours = {t.name for t in Base.metadata.sorted_tables if t.name in {
                models.User.__tablename__, models.UserClinic.__tablename__, models.AuditEntry.__tablename__,
                models.Report.__tablename__, models.ReportVersion.__tablename__, models.StudyClaim.__tablename__}}
            assert len(ours) == 6
            diffs = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)

            def table_of(d):
                d = d[0] if isinstance(d, list) else d
                for part in d[1:]:
                    name = getattr(part, "name", None) if not isinstance(part, str) else part
                    table = getattr(part, "table", None)
                    if table is not None:
                        return table.name
                    if name in ours:
                        return name
                return None
            assert [d for d in diffs if table_of(d) in ours] == []
    finally:
        engine.dispose()
